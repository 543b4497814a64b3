//! The tower layer in front of every service of the API port: it runs
//! [`Authorizer::check`] and puts the caller's [`Identity`](super::Identity)
//! into the request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Authorizer;
use crate::tls::PeerInfo;

/// The tower layer that authorizes every call of the API port (see the
/// module documentation).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    authz: Arc<Authorizer>,
}

impl AuthLayer {
    pub fn new(authz: Arc<Authorizer>) -> AuthLayer {
        AuthLayer { authz }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            authz: self.authz.clone(),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    authz: Arc<Authorizer>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let peer = req.extensions().get::<PeerInfo>().cloned();
        if let Some(p) = &peer {
            // So that `Request::remote_addr` works in the services.
            req.extensions_mut().insert(p.tcp.clone());
        }
        let checked = self.authz.check(
            req.uri().path(),
            req.headers().get("authorization").map(|v| v.as_bytes()),
            peer.as_ref(),
        );
        match checked {
            Ok(id) => {
                if let Some(id) = id {
                    req.extensions_mut().insert(id);
                }
                // The clone that was made ready is the one to call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(req).await })
            }
            Err(status) => {
                let resp = status.into_http::<tonic::body::Body>();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}
