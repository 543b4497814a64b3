//! tapline's control sidecar, `tapline-control`: it reads the dataplane's
//! stats segment in `state_dir` (a shared emptyDir), forwards chain
//! requests to the dataplane's command socket there, and serves
//!
//! - gRPC on `control.grpc_listen` (plaintext, or TLS and mTLS with
//!   `control.tls_*`, see [`tls`]): `tapline.v1.Observer` (role `view`),
//!   `tapline.v1.Admin` (`edit` for chain changes, `admin` for taps; see
//!   [`auth`]), `grpc.health.v1.Health` and server reflection (v1 and
//!   v1alpha), the last two without credentials. Changes and taps are
//!   written to the audit trail on stdout ([`audit`]);
//! - gRPC on `control.health_listen`: only `grpc.health.v1.Health`, for
//!   kubelet probes;
//! - HTTP `/metrics` on `control.metrics_listen` (Prometheus text format).
//!
//! It holds no capabilities and no state of its own: the dataplane owns
//! the chain ([`dataplane`]), and the sidecar never writes to the
//! dataplane's files. It keeps running whatever the dataplane does: it
//! follows it through starts, stops, crashes and restarts (see [`state`]).
//! `docs/control.md` describes the endpoints for operators.
//!
//! No `unsafe` here: the shared-memory reading is the dataplane crate's
//! safe `SegmentReader`.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod dataplane;
pub mod details;
pub mod fallback;
pub mod health;
pub mod info;
pub mod metrics;
pub mod observer;
pub mod state;
pub mod stats;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tapline_config::{Config, ConfigError};
use tapline_dataplane::xdp::custody::Keeper;
use tapline_proto::v1::admin_server::AdminServer;
use tapline_proto::v1::observer_server::ObserverServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::HealthServer;
use tracing::{info, warn};

use crate::audit::{AuditLog, AuditedAdmin};
use crate::auth::{AuthLayer, Authorizer, Credentials};
use crate::health::{Configured, HealthDriver};
use crate::tls::TlsState;

pub use crate::metrics::render as render_metrics;

/// Exit codes of `tapline-control` (sysexits.h), as for the dataplane.
pub mod exit {
    /// Bad configuration, or a configured token file unreadable or empty.
    pub const CONFIG: u8 = 64;
    /// A listener could not be bound, or a server failed.
    pub const OSERR: u8 = 71;
}

/// How often token files and TLS files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// How long a stopping server waits for open calls to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// HTTP/2 pings on idle connections, so a watch whose client vanished
/// without closing its connection is noticed and ends.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the sidecar could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({field}): {source}; free the port or change {field}")]
    Bind {
        field: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the {what} server failed: {source}")]
    Serve {
        what: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ServeError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Config(_) => exit::CONFIG,
            ServeError::Bind { .. } | ServeError::Serve { .. } => exit::OSERR,
        }
    }
}

/// The sidecar with its listeners bound, ready to [`run`](Bound::run).
/// Binding first lets a caller learn the ports (a configuration may ask
/// for port 0) before serving.
#[derive(Debug)]
pub struct Bound {
    cfg: Arc<Config>,
    creds: Arc<Credentials>,
    tls: Option<Arc<TlsState>>,
    audit: AuditLog,
    grpc: TcpIncoming,
    health: TcpIncoming,
    metrics: TcpListener,
    addrs: [SocketAddr; 3],
}

fn bind_grpc(
    field: &'static str,
    addr: SocketAddr,
) -> Result<(TcpIncoming, SocketAddr), ServeError> {
    let bind_err = |source| ServeError::Bind {
        field,
        addr,
        source,
    };
    let incoming = TcpIncoming::bind(addr)
        .map_err(bind_err)?
        .with_nodelay(Some(true));
    let local = incoming.local_addr().map_err(bind_err)?;
    Ok((incoming, local))
}

impl Bound {
    /// Reads the token and TLS files and binds the three listeners. Call
    /// inside a tokio runtime.
    pub async fn bind(cfg: Config) -> Result<Bound, ServeError> {
        let creds = Arc::new(Credentials::load(&cfg)?);
        let tls = cfg
            .control
            .tls
            .as_ref()
            .map(TlsState::load)
            .transpose()?
            .map(Arc::new);
        let c = &cfg.control;
        let (grpc, grpc_addr) = bind_grpc("control.grpc_listen", c.grpc_listen)?;
        let (health, health_addr) = bind_grpc("control.health_listen", c.health_listen)?;
        let metrics_err = |source| ServeError::Bind {
            field: "control.metrics_listen",
            addr: c.metrics_listen,
            source,
        };
        let metrics = TcpListener::bind(c.metrics_listen)
            .await
            .map_err(metrics_err)?;
        let metrics_addr = metrics.local_addr().map_err(metrics_err)?;
        Ok(Bound {
            cfg: Arc::new(cfg),
            creds,
            tls,
            audit: AuditLog::stdout(),
            grpc,
            health,
            metrics,
            addrs: [grpc_addr, health_addr, metrics_addr],
        })
    }

    /// Sends the audit trail to `log` instead of stdout.
    pub fn with_audit(mut self, log: AuditLog) -> Bound {
        self.audit = log;
        self
    }

    /// The address of the gRPC listener (`control.grpc_listen`).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The address of the health-only listener (`control.health_listen`).
    pub fn health_addr(&self) -> SocketAddr {
        self.addrs[1]
    }

    /// The address of the metrics listener (`control.metrics_listen`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.addrs[2]
    }

    /// Serves until `shutdown` completes, then stops: listeners close,
    /// watches end with UNAVAILABLE, open calls get [`SHUTDOWN_GRACE`] to
    /// finish. Returns an error (for the caller to report) if a server fails
    /// before that.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Bound {
            cfg,
            creds,
            tls,
            audit,
            grpc,
            health,
            metrics,
            addrs,
        } = self;
        let (stop_tx, stop_rx) = watch::channel(false);
        // The link keeper: holds the inline ports' BPF links so the kernel
        // fallback outlives the dataplane (but not this pod).
        let keeper = start_keeper(&cfg);

        let configured = Configured {
            passive: cfg.passive().is_some(),
            inline: cfg.inline().is_some(),
        };
        let health_driver = HealthDriver::new(configured)
            .await
            .with_keeper(keeper.clone());
        let reporter = health_driver.reporter();
        let grpc_health = health_driver.service();
        let probe_health = health_driver.service();
        let stale = Duration::from_millis(cfg.control.dataplane_stale_ms.into());
        let (monitor, poller) =
            state::spawn_poller(cfg.state_dir.clone(), stale, health_driver, stop_rx.clone());

        let (reflection_v1, reflection_v1alpha) = reflection()?;
        let observer = ObserverServer::new(
            observer::ObserverService::new(monitor.clone(), cfg.clone(), stop_rx.clone())
                .with_keeper(keeper.clone()),
        );
        let dataplane = dataplane::DataplaneClient::new(&cfg.state_dir);
        let command_socket = dataplane.socket_path().display().to_string();
        // Served even when nothing grants edit or admin, refusing every
        // call: a client is told what to configure instead of getting
        // UNIMPLEMENTED.
        let admin = AdminServer::new(AuditedAdmin::new(
            admin::AdminService::new(dataplane).with_shutdown(stop_rx.clone()),
            audit.clone(),
        ));
        let anonymous = cfg.control.anonymous_role;
        let authz = authorizer(&cfg, creds.clone(), audit.clone());
        let reloader = spawn_reloader(creds.clone(), tls.clone(), stop_rx.clone());
        let grpc_tls = tls.is_some();
        let grpc = tls::incoming(grpc, tls, stop_rx.clone());

        let stopped = |mut rx: watch::Receiver<bool>| async move { state::stopping(&mut rx).await };
        let server = || {
            tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        };
        let mut servers = Servers {
            grpc: tokio::spawn(
                server()
                    .layer(AuthLayer::new(authz))
                    .add_service(HealthServer::new(grpc_health))
                    .add_service(reflection_v1)
                    .add_service(reflection_v1alpha)
                    .add_service(observer)
                    .add_service(admin)
                    .serve_with_incoming_shutdown(grpc, stopped(stop_rx.clone())),
            ),
            health: tokio::spawn(
                server()
                    .add_service(HealthServer::new(probe_health))
                    .serve_with_incoming_shutdown(health, stopped(stop_rx.clone())),
            ),
            metrics: tokio::spawn(metrics::serve(
                metrics,
                monitor,
                keeper.clone(),
                stop_rx.clone(),
            )),
        };
        info!(
            grpc = %addrs[0],
            health = %addrs[1],
            metrics = %addrs[2],
            state_dir = %cfg.state_dir.display(),
            command_socket,
            grpc_tls,
            client_certs = cfg.control.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()),
            token_identities = creds.count(),
            anonymous_role = anonymous.map(|r| r.as_str()),
            "tapline-control serving"
        );

        let early = servers.first_failure(shutdown).await;
        info!("stopping");
        stop_tx.send_replace(true);
        // Ends health Watch streams, which would hold the graceful shutdown.
        health::clear(reporter).await;
        servers.drain(poller, reloader).await;
        if let Some(k) = keeper {
            k.stop();
        }
        match early {
            Some(e) => Err(e),
            None => {
                info!("stopped");
                Ok(())
            }
        }
    }
}

/// The reflection services, both versions: grpcurl 1.8, Python's
/// grpcio-reflection and older tools speak only v1alpha; grpcurl 1.9 and
/// buf try v1 first.
#[allow(clippy::type_complexity)]
fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tapline_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("tapline.v1.Observer")
            .with_service_name("tapline.v1.Admin")
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection")
    };
    let reflection_err = |e| ServeError::Serve {
        what: "reflection",
        source: Box::new(e),
    };
    let v1 = builder().build_v1().map_err(reflection_err)?;
    let v1alpha = builder().build_v1alpha().map_err(reflection_err)?;
    Ok((v1, v1alpha))
}

/// The authorizer of the API port: the token files, the anonymous role
/// and the certificate subjects of `cfg`.
fn authorizer(cfg: &Config, creds: Arc<Credentials>, audit: AuditLog) -> Arc<Authorizer> {
    let cert_roles = cfg
        .control
        .tls
        .as_ref()
        .map(|t| t.client_roles.clone())
        .unwrap_or_default();
    Arc::new(Authorizer::new(
        creds,
        cfg.control.anonymous_role,
        cert_roles,
        audit,
    ))
}

/// Re-reads the token and TLS files every [`RELOAD_INTERVAL`] until `stop`.
fn spawn_reloader(
    creds: Arc<Credentials>,
    tls: Option<Arc<TlsState>>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = state::stopping(&mut stop) => return,
            }
            // File reads: off the runtime's threads.
            let (c, t) = (creds.clone(), tls.clone());
            let _ = tokio::task::spawn_blocking(move || {
                c.reload();
                if let Some(t) = t {
                    t.reload();
                }
            })
            .await;
        }
    })
}

/// The three servers of a running sidecar.
struct Servers {
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    health: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics: JoinHandle<()>,
}

impl Servers {
    /// Waits for `shutdown`; a server that ends before it is a failure.
    async fn first_failure(&mut self, shutdown: impl Future<Output = ()>) -> Option<ServeError> {
        tokio::select! {
            () = shutdown => None,
            r = &mut self.grpc => Some(server_failure("gRPC", r)),
            r = &mut self.health => Some(server_failure("health", r)),
            r = &mut self.metrics => Some(ServeError::Serve {
                what: "metrics",
                source: match r {
                    Ok(()) => "stopped unexpectedly".into(),
                    Err(e) => Box::new(e),
                },
            }),
        }
    }

    /// After the stop signal: waits [`SHUTDOWN_GRACE`] for the servers,
    /// the poller and the reloader to end, then aborts the servers.
    async fn drain(mut self, poller: JoinHandle<()>, reloader: JoinHandle<()>) {
        // A task the select of `first_failure` saw finish must not be
        // awaited again (tokio panics on a JoinHandle polled after
        // completion).
        let drain = async {
            if !self.grpc.is_finished() {
                let _ = (&mut self.grpc).await;
            }
            if !self.health.is_finished() {
                let _ = (&mut self.health).await;
            }
            if !self.metrics.is_finished() {
                let _ = (&mut self.metrics).await;
            }
            let _ = poller.await;
            let _ = reloader.await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            warn!(
                grace_s = SHUTDOWN_GRACE.as_secs(),
                "calls still open after the grace period; closing them"
            );
            self.grpc.abort();
            self.health.abort();
            self.metrics.abort();
        }
    }
}

/// The error of a gRPC server task that ended before the shutdown.
fn server_failure(
    what: &'static str,
    r: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> ServeError {
    let source: Box<dyn std::error::Error + Send + Sync> = match r {
        Ok(Ok(())) => "stopped unexpectedly".into(),
        Ok(Err(e)) => Box::new(e),
        Err(e) => Box::new(e),
    };
    ServeError::Serve { what, source }
}

/// Starts the link keeper when an inline pair is configured. A keeper
/// that cannot start is logged, not fatal: the dataplane then keeps its
/// links itself and they go down with it.
fn start_keeper(cfg: &Config) -> Option<Arc<Keeper>> {
    cfg.inline()?;
    match Keeper::spawn(&cfg.state_dir, cfg.command_uids.clone()) {
        Ok(k) => Some(Arc::new(k)),
        Err(e) => {
            warn!(state_dir = %cfg.state_dir.display(), error = %e, "cannot start the link keeper: the inline link goes down whenever the dataplane does; make dataplane.state_dir writable");
            None
        }
    }
}

/// Binds and serves until `shutdown` completes (see [`Bound`]).
pub async fn serve(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    Bound::bind(cfg).await?.run(shutdown).await
}
