//! The machine-readable details of tapline's gRPC error statuses.
//!
//! A `SetChain` that fails validation carries the `ValidationResult` in
//! the status details (`grpc-status-details-bin`). gRPC clients decode that
//! header as a `google.rpc.Status` (the "rich error model"; grpc-go, and so
//! grpcurl, replace the call's code and message with the ones it holds and
//! fail the call with INTERNAL when it does not decode), so the result is
//! wrapped the standard way: a `google.rpc.Status` with the call's code and
//! message whose `details` hold one `google.protobuf.Any` of type
//! [`VALIDATION_RESULT_TYPE_URL`].

use prost::Message;
use tapline_proto::v1;
use tonic::{Code, Status};

/// `google.protobuf.Any.type_url` of an encoded `tapline.v1.ValidationResult`.
pub const VALIDATION_RESULT_TYPE_URL: &str = "type.googleapis.com/tapline.v1.ValidationResult";

/// `google.rpc.Status` (google/rpc/status.proto), the message gRPC clients
/// expect in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// The status code, as in `grpc-status`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// The message, as in `grpc-message`.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// A status with `code` and `message` whose details carry `validation`.
pub fn with_validation(code: Code, message: String, validation: &v1::ValidationResult) -> Status {
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: VALIDATION_RESULT_TYPE_URL.to_string(),
            value: validation.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

/// The `ValidationResult` in the details of `status`, if there is one.
pub fn validation(status: &Status) -> Option<v1::ValidationResult> {
    let rpc = RpcStatus::decode(status.details()).ok()?;
    rpc.details
        .iter()
        .find(|a| a.type_url == VALIDATION_RESULT_TYPE_URL)
        .and_then(|a| v1::ValidationResult::decode(a.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_round_trips_in_a_google_rpc_status() {
        let v = v1::ValidationResult {
            valid: false,
            errors: vec![v1::ValidationIssue {
                field: "hops[1].a".into(),
                message: "interface tool9a does not exist".into(),
            }],
            warnings: vec![],
        };
        let s = with_validation(Code::InvalidArgument, "invalid spec".into(), &v);
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "invalid spec");
        assert_eq!(validation(&s), Some(v));
        // What a grpc-go client decodes: the same code and message.
        let rpc = RpcStatus::decode(s.details()).unwrap();
        assert_eq!(rpc.code, Code::InvalidArgument as i32);
        assert_eq!(rpc.message, "invalid spec");

        assert_eq!(validation(&Status::invalid_argument("no details")), None);
        let garbage = Status::with_details(Code::InvalidArgument, "x", vec![0xff, 0xff].into());
        assert_eq!(validation(&garbage), None);
    }
}
