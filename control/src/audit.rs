//! The audit trail: one JSON line on stdout per call that changes the
//! chain (`SetChain`, `SetHopBypass`) or exposes packets (`Tap`), allowed
//! or not, and per refused call of any tapline method.
//!
//! A line is written whole with one `write` under the stdout lock, so it
//! never interleaves with the log lines; it has `"log_type":"audit"` so a
//! collector can route it (docs/control.md shows Fluent Bit and Vector).
//! Fields:
//!
//! | field | value |
//! |---|---|
//! | `time` | RFC 3339 UTC with milliseconds |
//! | `log_type` | `"audit"` |
//! | `target` | `"tapline_control::audit"` |
//! | `method` | the gRPC path, e.g. `/tapline.v1.Admin/SetChain` |
//! | `identity` | `{"name", "role" (or null), "auth": "bearer_token" \| "client_cert" \| "anonymous"}` |
//! | `peer` | the client's `address:port`, or null |
//! | `tls` | whether the connection was TLS |
//! | `request` | a bounded summary (below); null for a refusal, whose body is never read |
//! | `code` | the gRPC status code name (`OK`, `PERMISSION_DENIED`, ...) |
//! | `message` | the status message (bounded), empty for OK |
//! | `generation` | the chain's generation after the call (SetChain), or null |
//!
//! Summaries: SetChain `{"hops": [names], "hop_count", "expected_generation",
//! "dry_run"}`; SetHopBypass `{"hop", "bypass", "reason"}`; Tap `{"point",
//! "direction", "filter", "max_packets", "max_duration_ms",
//! "snap_length_bytes", "sample_one_in"}`. Strings are cut to
//! [`MAX_STRING`] characters and lists to [`MAX_HOPS`] entries. A token
//! never appears in a line.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};
use tapline_proto::v1;
use tonic::Status;

use crate::auth::Identity;

/// Longest string kept in a summary, in characters.
pub const MAX_STRING: usize = 256;
/// Most hop names kept in a SetChain summary.
pub const MAX_HOPS: usize = 64;

/// Where audit lines go: stdout, or a collector (tests).
#[derive(Clone, Default)]
pub struct AuditLog {
    sink: Option<Arc<Mutex<Vec<String>>>>,
    discard: bool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.sink.is_some() {
            "AuditLog(memory)"
        } else if self.discard {
            "AuditLog(discard)"
        } else {
            "AuditLog(stdout)"
        })
    }
}

impl AuditLog {
    /// Lines to stdout.
    pub fn stdout() -> AuditLog {
        AuditLog::default()
    }

    /// Lines into memory, returned for inspection (tests).
    pub fn memory() -> (AuditLog, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            AuditLog {
                sink: Some(lines.clone()),
                discard: false,
            },
            lines,
        )
    }

    /// No lines (unit tests).
    pub fn discard() -> AuditLog {
        AuditLog {
            sink: None,
            discard: true,
        }
    }

    /// Writes one record.
    pub fn write(&self, record: &AuditRecord) {
        if self.discard {
            return;
        }
        let line = record.to_json().to_string();
        if let Some(sink) = &self.sink {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            return;
        }
        let mut buf = line.into_bytes();
        buf.push(b'\n');
        let mut out = std::io::stdout().lock();
        // Nothing sensible to do when stdout is gone; the call is not
        // failed because of it.
        let _ = out.write_all(&buf).and_then(|()| out.flush());
    }
}

/// One audit line.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub time: SystemTime,
    pub method: String,
    pub identity: Identity,
    pub peer: Option<SocketAddr>,
    pub tls: bool,
    pub request: Value,
    pub code: tonic::Code,
    pub message: String,
    pub generation: Option<u64>,
}

/// A string cut to [`MAX_STRING`] characters (marked with `…`).
pub fn bounded(s: &str) -> String {
    if s.chars().count() <= MAX_STRING {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_STRING).collect();
        t.push('…');
        t
    }
}

/// The canonical name of a status code, as gRPC documents it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl AuditRecord {
    /// A call refused before it reached its service.
    pub fn denied(
        method: &str,
        identity: &Identity,
        peer: Option<SocketAddr>,
        tls: bool,
        status: &Status,
    ) -> AuditRecord {
        AuditRecord {
            time: SystemTime::now(),
            method: bounded(method),
            identity: identity.clone(),
            peer,
            tls,
            request: Value::Null,
            code: status.code(),
            message: bounded(status.message()),
            generation: None,
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "time": rfc3339(self.time),
            "log_type": "audit",
            "target": "tapline_control::audit",
            "method": self.method,
            "identity": {
                "name": bounded(&self.identity.name),
                "role": self.identity.role.map(|r| r.as_str()),
                "auth": self.identity.method.as_str(),
            },
            "peer": self.peer.map(|p| p.to_string()),
            "tls": self.tls,
            "request": self.request,
            "code": code_name(self.code),
            "message": self.message,
            "generation": self.generation,
        })
    }
}

/// The summary of a SetChain request.
pub fn set_chain_summary(r: &v1::SetChainRequest) -> Value {
    let hops = r.spec.as_ref().map(|s| s.hops.as_slice()).unwrap_or(&[]);
    json!({
        "hops": r.spec.as_ref().map(|_| hops
            .iter()
            .take(MAX_HOPS)
            .map(|h| bounded(&h.name))
            .collect::<Vec<_>>()),
        "hop_count": hops.len(),
        "expected_generation": r.expected_generation,
        "dry_run": r.dry_run,
    })
}

/// The summary of a SetHopBypass request.
pub fn set_hop_bypass_summary(r: &v1::SetHopBypassRequest) -> Value {
    json!({
        "hop": bounded(&r.hop),
        "bypass": r.bypass,
        "reason": bounded(&r.reason),
    })
}

/// The summary of a Tap request.
pub fn tap_summary(r: &v1::TapRequest) -> Value {
    let point = r
        .point
        .as_ref()
        .and_then(|p| p.location.as_ref())
        .map(|l| match l {
            v1::tap_point::Location::Port(p) => json!({"port": bounded(p)}),
            v1::tap_point::Location::Hop(h) => json!({
                "hop": bounded(&h.hop),
                "side": v1::HopSide::try_from(h.side).map_or("UNKNOWN", |s| s.as_str_name()),
            }),
        });
    let direction = r
        .point
        .as_ref()
        .map(|p| v1::TapDirection::try_from(p.direction).map_or("UNKNOWN", |d| d.as_str_name()));
    json!({
        "point": point,
        "direction": direction,
        "filter": bounded(&r.filter),
        "max_packets": r.max_packets,
        "max_duration_ms": r.max_duration_ms,
        "snap_length_bytes": r.snap_length_bytes,
        "sample_one_in": r.sample_one_in,
    })
}

/// The `Admin` service with every call audited: wraps the service that
/// does the work, so the audit does not depend on how it does it.
#[derive(Debug, Clone)]
pub struct AuditedAdmin<A> {
    inner: A,
    log: AuditLog,
}

impl<A> AuditedAdmin<A> {
    pub fn new(inner: A, log: AuditLog) -> AuditedAdmin<A> {
        AuditedAdmin { inner, log }
    }
}

/// What every record of a call shares, taken before the request is
/// consumed.
fn started<T>(req: &tonic::Request<T>, method: &str, request: Value) -> AuditRecord {
    AuditRecord {
        time: SystemTime::now(),
        method: method.to_string(),
        identity: crate::auth::identity_of(req),
        peer: crate::auth::peer_of(req),
        tls: crate::auth::tls_of(req),
        request,
        code: tonic::Code::Ok,
        message: String::new(),
        generation: None,
    }
}

fn finish<T>(log: &AuditLog, mut rec: AuditRecord, r: &Result<T, Status>, generation: Option<u64>) {
    if let Err(s) = r {
        rec.code = s.code();
        rec.message = bounded(s.message());
    }
    rec.generation = generation;
    log.write(&rec);
}

#[tonic::async_trait]
impl<A: v1::admin_server::Admin> v1::admin_server::Admin for AuditedAdmin<A> {
    async fn set_chain(
        &self,
        request: tonic::Request<v1::SetChainRequest>,
    ) -> Result<tonic::Response<v1::SetChainResponse>, Status> {
        let rec = started(
            &request,
            "/tapline.v1.Admin/SetChain",
            set_chain_summary(request.get_ref()),
        );
        let r = self.inner.set_chain(request).await;
        let generation = r.as_ref().ok().map(|r| r.get_ref().generation);
        finish(&self.log, rec, &r, generation);
        r
    }

    async fn set_hop_bypass(
        &self,
        request: tonic::Request<v1::SetHopBypassRequest>,
    ) -> Result<tonic::Response<v1::SetHopBypassResponse>, Status> {
        let rec = started(
            &request,
            "/tapline.v1.Admin/SetHopBypass",
            set_hop_bypass_summary(request.get_ref()),
        );
        let r = self.inner.set_hop_bypass(request).await;
        finish(&self.log, rec, &r, None);
        r
    }

    type TapStream = A::TapStream;

    async fn tap(
        &self,
        request: tonic::Request<v1::TapRequest>,
    ) -> Result<tonic::Response<Self::TapStream>, Status> {
        let rec = started(
            &request,
            "/tapline.v1.Admin/Tap",
            tap_summary(request.get_ref()),
        );
        let r = self.inner.tap(request).await;
        finish(&self.log, rec, &r, None);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_733_296_789);
        assert_eq!(rfc3339(t), "2026-12-08T12:34:56.789Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn strings_are_bounded() {
        let long = "x".repeat(1000);
        let b = bounded(&long);
        assert_eq!(b.chars().count(), MAX_STRING + 1);
        assert!(b.ends_with('…'));
        assert_eq!(bounded("ids"), "ids");
    }
}
