//! `GET /metrics` over HTTP/1.1, served by hyper: one request per
//! connection (what Prometheus expects of a simple exporter), a bounded
//! request head, a bounded number of connections at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tapline_segment::custody::Keeper;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use super::{render, CONTENT_TYPE};
use crate::state::{stopping, Monitor};

/// Largest request head read before answering 431.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client has this long to send its request head (then the connection
/// is closed).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;

/// The answer to a request: status, body, and whether it is a `HEAD`.
pub(super) fn respond(
    method: &Method,
    path: &str,
    monitor: &Monitor,
    keeper: Option<&Keeper>,
) -> (StatusCode, String) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    if path != "/metrics" {
        return (
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n".into(),
        );
    }
    let live = monitor.sample().ok();
    let mut body = render(live.as_ref().map(|s| &s.snapshot));
    // The kernel fallback counts while the dataplane is down too.
    if let Some(k) = keeper {
        body.push_str(&crate::fallback::render_metrics(&k.status()));
    }
    (StatusCode::OK, body)
}

fn response(
    req: &Request<Incoming>,
    monitor: &Monitor,
    keeper: Option<&Keeper>,
) -> Response<Full<Bytes>> {
    let (code, body) = respond(req.method(), req.uri().path(), monitor, keeper);
    let content_type = if code == StatusCode::OK {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let mut r = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type);
    if code == StatusCode::METHOD_NOT_ALLOWED {
        r = r.header(header::ALLOW, "GET, HEAD");
    }
    // hyper leaves out the body of a HEAD answer and keeps its length.
    r.body(Full::new(Bytes::from(body)))
        .expect("static status and headers are valid")
}

/// Serves `/metrics` on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    monitor: Monitor,
    keeper: Option<Arc<Keeper>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = stopping(&mut shutdown) => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "metrics: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopping(&mut shutdown) => return,
        };
        let monitor = monitor.clone();
        let keeper = keeper.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let r = response(&req, &monitor, keeper.as_deref());
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(REQUEST_TIMEOUT)
                .max_buf_size(MAX_REQUEST_BYTES)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "metrics: connection ended with an error");
            }
            drop(permit);
        });
    }
}
