//! The one table of status codes the command socket answers with
//! (`DataplaneError.code`: the `google.rpc.Code` numbers, so the sidecar
//! maps them to gRPC statuses one to one), and the error answer built from
//! one. Chain requests, tap requests and the socket itself all use it.

use tapline_proto::v1;

/// The request is malformed or out of bounds.
pub const INVALID_ARGUMENT: i32 = 3;
/// What the request names does not exist.
pub const NOT_FOUND: i32 = 5;
/// A bound was reached (connections, taps).
pub const RESOURCE_EXHAUSTED: i32 = 8;
/// The dataplane is not in a state to do it (e.g. no inline pair).
pub const FAILED_PRECONDITION: i32 = 9;
/// The dataplane failed doing it.
pub const INTERNAL: i32 = 13;

/// The error answer with `code` and `message`.
pub fn error(code: i32, message: impl Into<String>) -> v1::dataplane_response::Response {
    v1::dataplane_response::Response::Error(v1::DataplaneError {
        code,
        message: message.into(),
        validation: None,
    })
}
