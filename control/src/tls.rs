//! The API port's connections: plaintext TCP, or TLS with rustls (server
//! certificate and key from PEM files) and optionally client certificates
//! verified against a CA bundle (mTLS).
//!
//! The files are read at start (an unreadable or invalid file is a
//! configuration error) and re-read by [`TlsState::reload`] whenever their
//! content changes (cert-manager renewing a Secret, a symlink swap): new
//! handshakes use the new certificate, key and CA bundle; connections
//! already open keep theirs. A change that does not load (a key that does
//! not match the certificate, a half-written file) keeps the previous
//! configuration and is logged.
//!
//! Handshakes run in their own tasks with a deadline
//! ([`HANDSHAKE_TIMEOUT`]), so a client that connects and sends nothing
//! holds up nobody. A failed handshake (no client certificate, an unknown
//! CA) is logged at info with the peer's address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tapline_config::{ConfigError, TlsSettings};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};
use tracing::{debug, error, info};

use crate::auth::CertSubject;

/// How long a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection tells about its peer; put into every request's
/// extensions by tonic.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub tcp: TcpConnectInfo,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The subject of the verified client certificate (mTLS).
    pub cert: Option<Arc<CertSubject>>,
}

/// A connection of the API port.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>, Option<Arc<CertSubject>>),
}

impl Connected for Conn {
    type ConnectInfo = PeerInfo;
    fn connect_info(&self) -> PeerInfo {
        match self {
            Conn::Plain(s) => PeerInfo {
                tcp: s.connect_info(),
                tls: false,
                cert: None,
            },
            Conn::Tls(s, cert) => PeerInfo {
                tcp: s.get_ref().0.connect_info(),
                tls: true,
                cert: cert.clone(),
            },
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s, _) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s, _) => s.is_write_vectored(),
        }
    }
}

/// The subject CN and SAN URIs of a DER certificate.
pub fn cert_subject(der: &[u8]) -> Option<CertSubject> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    let mut uris = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(u) = n {
                uris.push((*u).to_string());
            }
        }
    }
    Some(CertSubject { cn, uris })
}

/// The files' contents last loaded, to notice a change.
type Fingerprint = Vec<Option<Vec<u8>>>;

/// The TLS configuration in force, reloadable.
#[derive(Debug)]
pub struct TlsState {
    settings: TlsSettings,
    current: RwLock<Arc<rustls::ServerConfig>>,
    loaded: Mutex<Fingerprint>,
}

fn read(field: &str, p: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(p).map_err(|e| ConfigError {
        field: field.into(),
        message: format!("cannot read {}: {e}", p.display()),
    })
}

fn bad(field: &str, p: &std::path::Path, what: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: format!("{}: {what}", p.display()),
    }
}

impl TlsState {
    fn fingerprint(s: &TlsSettings) -> Result<Fingerprint, ConfigError> {
        Ok(vec![
            Some(read("control.tls_cert_file", &s.cert_file)?),
            Some(read("control.tls_key_file", &s.key_file)?),
            s.client_ca_file
                .as_ref()
                .map(|p| read("control.tls_client_ca_file", p))
                .transpose()?,
        ])
    }

    fn build(
        s: &TlsSettings,
        files: &Fingerprint,
    ) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
        // ring, not aws-lc-rs: no cmake or C toolchain in the build. Its
        // deprecation is about post-quantum key exchange, which this
        // pod-local API does not need yet.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(files[0].as_deref().unwrap_or_default())
                .collect::<Result<_, _>>()
                .map_err(|e| bad("control.tls_cert_file", &s.cert_file, e))?;
        if certs.is_empty() {
            return Err(bad(
                "control.tls_cert_file",
                &s.cert_file,
                "holds no PEM CERTIFICATE",
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(files[1].as_deref().unwrap_or_default())
            .map_err(|e| bad("control.tls_key_file", &s.key_file, e))?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("control.tls_cert_file", &s.cert_file, e))?;
        let builder = match (&s.client_ca_file, files[2].as_deref()) {
            (Some(ca_path), Some(ca)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca) {
                    let c = c.map_err(|e| bad("control.tls_client_ca_file", ca_path, e))?;
                    roots
                        .add(c)
                        .map_err(|e| bad("control.tls_client_ca_file", ca_path, e))?;
                }
                if roots.is_empty() {
                    return Err(bad(
                        "control.tls_client_ca_file",
                        ca_path,
                        "holds no PEM CERTIFICATE",
                    ));
                }
                let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                let v = if s.client_auth_required {
                    v
                } else {
                    v.allow_unauthenticated()
                };
                let v = v
                    .build()
                    .map_err(|e| bad("control.tls_client_ca_file", ca_path, e))?;
                builder.with_client_cert_verifier(v)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_single_cert(certs, key).map_err(|e| {
            bad(
                "control.tls_key_file",
                &s.key_file,
                format!("does not fit control.tls_cert_file: {e}"),
            )
        })?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Loads the files; any problem is a configuration error naming the key.
    pub fn load(settings: &TlsSettings) -> Result<TlsState, ConfigError> {
        let files = Self::fingerprint(settings)?;
        let cfg = Self::build(settings, &files)?;
        Ok(TlsState {
            settings: settings.clone(),
            current: RwLock::new(cfg),
            loaded: Mutex::new(files),
        })
    }

    /// Re-reads the files; when their content changed and loads, new
    /// handshakes use it. Returns whether the configuration changed.
    pub fn reload(&self) -> bool {
        let files = match Self::fingerprint(&self.settings) {
            Ok(f) => f,
            Err(e) => {
                error!(reason = %e, "TLS files not reloaded, the previous ones stay in force");
                return false;
            }
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if *loaded == files {
            return false;
        }
        match Self::build(&self.settings, &files) {
            Ok(cfg) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = cfg;
                *loaded = files;
                info!(
                    cert = %self.settings.cert_file.display(),
                    "TLS certificate, key and CA bundle reloaded"
                );
                true
            }
            Err(e) => {
                // Remembered, so a broken file is reported once per change.
                *loaded = files;
                error!(reason = %e, "TLS files not reloaded, the previous ones stay in force");
                false
            }
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// The connections of `tcp`, through TLS when `tls` is set. Ends when
/// `stop` turns true.
pub fn incoming(
    mut tcp: TcpIncoming,
    tls: Option<Arc<TlsState>>,
    mut stop: watch::Receiver<bool>,
) -> ReceiverStream<Result<Conn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                n = tcp.next() => n,
                () = crate::state::stopping(&mut stop) => return,
            };
            let stream = match next {
                Some(Ok(s)) => s,
                Some(Err(e)) => {
                    debug!(error = %e, "accept failed");
                    continue;
                }
                None => return,
            };
            let Some(tls) = &tls else {
                if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                    return;
                }
                continue;
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                let peer: Option<SocketAddr> = stream.peer_addr().ok();
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let cert = s
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| cert_subject(c))
                            .map(Arc::new);
                        let _ = tx.send(Ok(Conn::Tls(Box::new(s), cert))).await;
                    }
                    Ok(Err(e)) => info!(
                        peer = %peer.map_or_else(|| "unknown".into(), |a| a.to_string()),
                        reason = %e,
                        "TLS handshake failed"
                    ),
                    Err(_) => info!(
                        peer = %peer.map_or_else(|| "unknown".into(), |a| a.to_string()),
                        timeout_s = HANDSHAKE_TIMEOUT.as_secs(),
                        "TLS handshake timed out"
                    ),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
