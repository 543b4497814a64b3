//! The connection to tapline-control: endpoint, TLS and bearer token of
//! the one identity every verb uses, the mapping of gRPC statuses to exit
//! codes, and following a server stream.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tapline_proto::v1 as pb;
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::exit;
use crate::failure::{one_line, root_cause, Failure};
use crate::output::serving_status_name;
use crate::Cli;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Health service names of the contract, in display order.
pub const HEALTH_SERVICES: [&str; 3] = ["", "passive-1", "inline"];

/// Where the CLI talks to, and with which token.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub token: Option<MetadataValue<Ascii>>,
    pub timeout: Duration,
}

impl Target {
    /// Turns a failed call of `what` (e.g. "Observer.GetInfo") into a
    /// [`Failure`] with the exit code of its class.
    pub fn failure(&self, what: &str, s: &Status) -> Failure {
        let msg = one_line(s.message());
        let detail = if msg.is_empty() {
            String::new()
        } else {
            format!(" (server: {msg})")
        };
        match s.code() {
            Code::PermissionDenied => Failure::new(
                exit::UNAUTHENTICATED,
                format!("permission denied: your identity's role does not allow {what}{detail}"),
            ),
            Code::Unauthenticated => {
                let text = if self.token.is_some() {
                    "the token was rejected: check --token-file"
                } else {
                    "tapline-control requires credentials: pass --token-file (or a client certificate)"
                };
                Failure::new(exit::UNAUTHENTICATED, format!("{text}{detail}"))
            }
            // Only a transport failure carries a cause; an UNAVAILABLE sent
            // by the server (for example: no live dataplane) is its answer.
            Code::Unavailable if std::error::Error::source(s).is_some() => {
                let cause = std::error::Error::source(s)
                    .map(root_cause)
                    .unwrap_or_default();
                Failure::new(
                    exit::UNREACHABLE,
                    format!("cannot reach tapline-control at {}: {cause}", self.url),
                )
            }
            Code::DeadlineExceeded => Failure::new(
                exit::UNREACHABLE,
                format!(
                    "tapline-control at {} did not answer {what} within {} ms",
                    self.url,
                    self.timeout.as_millis()
                ),
            ),
            Code::Unimplemented => Failure::new(
                exit::SERVER,
                format!(
                    "tapline-control at {} does not serve {what} in this build{detail}{}",
                    self.url,
                    if what.starts_with("tapline.v1.") {
                        " (the health-only port serves nothing else: is --endpoint the gRPC port?)"
                    } else {
                        ""
                    }
                ),
            ),
            // A stream cut by the server going away surfaces as UNKNOWN
            // with an h2/io cause.
            Code::Unknown if std::error::Error::source(s).is_some() => Failure::new(
                exit::UNREACHABLE,
                format!(
                    "lost the connection to tapline-control at {}: {}",
                    self.url,
                    std::error::Error::source(s)
                        .map(root_cause)
                        .unwrap_or_default()
                ),
            ),
            code => Failure::new(
                exit::SERVER,
                format!(
                    "{what} failed: {code:?}{}",
                    if msg.is_empty() {
                        String::new()
                    } else {
                        format!(": {msg}")
                    }
                ),
            ),
        }
    }

    /// A unary request carrying the call deadline.
    pub fn unary<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }
}

/// Adds `authorization: Bearer TOKEN` to calls of the tapline.v1 services.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

pub type Observer = pb::observer_client::ObserverClient<InterceptedService<Channel, Bearer>>;
pub type Admin = pb::admin_client::AdminClient<InterceptedService<Channel, Bearer>>;

/// Normalises the endpoint: a bare HOST:PORT is taken as http.
pub fn endpoint_url(raw: &str) -> Result<String, Failure> {
    let url = if raw.contains("://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(Failure::usage(format!(
            "--endpoint {raw}: use http://HOST:PORT or https://HOST:PORT"
        )));
    }
    Ok(url)
}

/// Reads a PEM file named by option `opt`.
pub fn read_pem(opt: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read {opt} {}: {}",
            path.display(),
            root_cause(&e)
        ))
    })
}

/// The TLS settings of an https:// endpoint; `None` for http://.
pub fn client_tls(cli: &Cli, url: &str) -> Result<Option<ClientTlsConfig>, Failure> {
    let tls_opts = cli.ca.is_some() || cli.cert.is_some() || cli.tls_server_name.is_some();
    if url.starts_with("http://") {
        if tls_opts {
            return Err(Failure::usage(format!(
                "--ca, --cert and --tls-server-name need an https:// endpoint, not {url}"
            )));
        }
        return Ok(None);
    }
    let Some(ca) = &cli.ca else {
        return Err(Failure::usage(
            "an https:// endpoint needs --ca (the CA bundle that signed tapline-control's certificate)",
        ));
    };
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem("--ca", ca)?));
    if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
        tls = tls.identity(Identity::from_pem(
            read_pem("--cert", cert)?,
            read_pem("--key", key)?,
        ));
    }
    if let Some(name) = &cli.tls_server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(Some(tls))
}

/// Reads and trims the token file.
pub fn read_token(path: &Path) -> Result<MetadataValue<Ascii>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read --token-file {}: {}",
            path.display(),
            root_cause(&e)
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure::usage(format!(
            "--token-file {} is empty",
            path.display()
        )));
    }
    format!("Bearer {token}").parse().map_err(|_| {
        Failure::usage(format!(
            "--token-file {}: the token must be printable ASCII without line breaks",
            path.display()
        ))
    })
}

/// A connected client session.
#[derive(Debug)]
pub struct Session {
    pub target: Target,
    pub channel: Channel,
}

impl Session {
    pub async fn connect(cli: &Cli) -> Result<Session, Failure> {
        let url = endpoint_url(&cli.endpoint)?;
        let token = cli.token_file.as_deref().map(read_token).transpose()?;
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| Failure::usage(format!("--endpoint {url}: {}", root_cause(&e))))?
            .connect_timeout(CONNECT_TIMEOUT);
        if let Some(tls) = client_tls(cli, &url)? {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| Failure::usage(format!("TLS options: {}", root_cause(&e))))?;
        }
        let channel = endpoint.connect().await.map_err(|e| {
            Failure::new(
                exit::UNREACHABLE,
                format!("cannot reach tapline-control at {url}: {}", root_cause(&e)),
            )
        })?;
        Ok(Session {
            target: Target {
                url,
                token,
                timeout: Duration::from_millis(cli.timeout_ms.max(1)),
            },
            channel,
        })
    }

    pub fn observer(&self) -> Observer {
        pb::observer_client::ObserverClient::with_interceptor(
            self.channel.clone(),
            Bearer(self.target.token.clone()),
        )
    }

    pub fn admin(&self) -> Admin {
        pb::admin_client::AdminClient::with_interceptor(
            self.channel.clone(),
            Bearer(self.target.token.clone()),
        )
    }

    /// Checks every health service name; a name the server does not know
    /// is `SERVICE_UNKNOWN`, not a failure.
    pub async fn health(&self) -> Result<BTreeMap<String, String>, Failure> {
        let mut client = HealthClient::new(self.channel.clone());
        let mut out = BTreeMap::new();
        for service in HEALTH_SERVICES {
            let req = self.target.unary(HealthCheckRequest {
                service: service.to_string(),
            });
            let status = match client.check(req).await {
                Ok(r) => serving_status_name(r.into_inner().status),
                Err(s) if s.code() == Code::NotFound => "SERVICE_UNKNOWN".to_string(),
                Err(s) => return Err(self.target.failure("grpc.health.v1.Health/Check", &s)),
            };
            out.insert(service.to_string(), status);
        }
        Ok(out)
    }
}

/// Follows a server stream: hands each message to `show` (with how many
/// have been seen, from 1) until `count` messages or Ctrl-C (both a normal
/// end), or until the server ends the stream (an error: watches do not end
/// by themselves).
pub async fn follow<T>(
    s: &Session,
    stream: &mut tonic::Streaming<T>,
    count: Option<u64>,
    what: &str,
    name: &str,
    mut show: impl FnMut(T, u64) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut seen = 0u64;
    loop {
        if count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
        let msg = tokio::select! {
            m = stream.message() => m.map_err(|e| s.target.failure(what, &e))?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(msg) = msg else {
            return Err(Failure::new(
                exit::SERVER,
                format!("tapline-control at {} ended the {name} watch", s.target.url),
            ));
        };
        seen += 1;
        show(msg, seen)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        assert_eq!(
            endpoint_url("10.0.0.1:50051").unwrap(),
            "http://10.0.0.1:50051"
        );
        assert_eq!(endpoint_url("http://h:1").unwrap(), "http://h:1");
        assert_eq!(endpoint_url("https://h:1").unwrap(), "https://h:1");
        let e = endpoint_url("ftp://h:1").unwrap_err();
        assert_eq!(e.code, exit::USAGE);
    }

    #[test]
    fn token_file_is_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("taplinectl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tok");
        std::fs::write(&p, "  s3cret \n").unwrap();
        assert_eq!(read_token(&p).unwrap().to_str().unwrap(), "Bearer s3cret");
        std::fs::write(&p, " \n").unwrap();
        assert!(read_token(&p).unwrap_err().message.contains("is empty"));
        std::fs::write(&p, "a\nb").unwrap();
        assert!(read_token(&p).is_err());
        let missing = read_token(&dir.join("nope")).unwrap_err();
        assert_eq!(missing.code, exit::USAGE);
        assert!(missing.message.contains("cannot read --token-file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn target(token: bool) -> Target {
        Target {
            url: "http://127.0.0.1:1".into(),
            token: token.then(|| "Bearer x".parse().unwrap()),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn statuses_map_to_exit_codes_and_one_line() {
        let t = target(true);
        let f = t.failure("X", &Status::unauthenticated("bad\ntoken"));
        assert_eq!(f.code, exit::UNAUTHENTICATED);
        assert!(f
            .message
            .starts_with("the token was rejected: check --token-file"));
        assert!(!f.message.contains('\n'));
        let f = target(false).failure("X", &Status::unauthenticated(""));
        assert_eq!(f.code, exit::UNAUTHENTICATED);
        assert!(f.message.contains("pass --token-file"), "{}", f.message);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let mut transport = Status::unavailable("tcp connect error");
        transport.set_source(std::sync::Arc::new(refused));
        let f = t.failure("X", &transport);
        assert_eq!(f.code, exit::UNREACHABLE);
        assert_eq!(
            f.message,
            "cannot reach tapline-control at http://127.0.0.1:1: connection refused"
        );
        // The server's own UNAVAILABLE is an answer, not a lost connection.
        let f = t.failure("X", &Status::unavailable("the dataplane is not running"));
        assert_eq!(f.code, exit::SERVER);
        assert!(
            f.message.contains("the dataplane is not running"),
            "{}",
            f.message
        );
        let f = t.failure("Admin/SetChain", &Status::unimplemented("nope"));
        assert_eq!(f.code, exit::SERVER);
        assert!(f.message.contains("does not serve Admin/SetChain"));
        assert!(f.message.contains("nope"));
        let f = t.failure("X", &Status::internal("boom"));
        assert_eq!(f.code, exit::SERVER);
        assert!(f.message.contains("boom"));
    }
}
