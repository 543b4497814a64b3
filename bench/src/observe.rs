//! What an operator runs against the dataplane while it forwards: the
//! `tapline-control` sidecar, a `taplinectl stats --watch` stream and a
//! Prometheus-style scraper. Used to measure the cost of observation.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::runner::{workspace_binary, STATE_DIR_PLACEHOLDER};

/// How often the watch asks for stats, and how often /metrics is scraped.
#[derive(Debug, Clone, Copy)]
pub struct ObserveRates {
    pub watch_interval: Duration,
    pub scrape_interval: Duration,
    /// Serve the API over mTLS (a CA, server and client certificates made
    /// for the run) and watch over it.
    pub mtls: bool,
}

impl Default for ObserveRates {
    /// The issue's setting: WatchStats at 100 ms, a scrape every second.
    fn default() -> Self {
        ObserveRates {
            watch_interval: Duration::from_millis(100),
            scrape_interval: Duration::from_secs(1),
            mtls: false,
        }
    }
}

/// The running observers.
#[derive(Debug)]
pub struct Observers {
    control: Child,
    watch: Child,
    stop: Arc<AtomicBool>,
    scraper: Option<JoinHandle<u64>>,
    config_path: std::path::PathBuf,
}

const READY_TIMEOUT: Duration = Duration::from_secs(10);

fn scrape(addr: SocketAddr) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: tapline\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Writes a CA, a server certificate for `localhost` and a client
/// certificate (CN `bench-watch`, mapped to role view) under `dir`; returns
/// the sidecar's `[control]` keys and taplinectl's options.
fn mtls_files(dir: &Path) -> Result<(String, Vec<String>)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "tapline-bench CA");
    let ca_key = KeyPair::generate()?;
    let ca = p.self_signed(&ca_key)?;
    let issue = |cn: &str, server: bool| -> Result<(String, String)> {
        let mut p = CertificateParams::new(if server {
            vec!["localhost".to_string()]
        } else {
            vec![]
        })?;
        p.distinguished_name.push(DnType::CommonName, cn);
        if server {
            p.subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        } else {
            p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &ca, &ca_key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (sc, sk) = issue("tapline-control", true)?;
    let (cc, ck) = issue("bench-watch", false)?;
    let write = |name: &str, content: &str| -> Result<String> {
        let p = dir.join(name);
        std::fs::write(&p, content)?;
        Ok(p.to_string_lossy().into_owned())
    };
    let (ca_file, scert, skey) = (
        write("bench-ca.crt", &ca.pem())?,
        write("bench-server.crt", &sc)?,
        write("bench-server.key", &sk)?,
    );
    let (ccert, ckey) = (
        write("bench-client.crt", &cc)?,
        write("bench-client.key", &ck)?,
    );
    let keys = format!(
        "tls_cert_file = \"{scert}\"\ntls_key_file = \"{skey}\"\ntls_client_ca_file = \"{ca_file}\"\n[control.client_roles]\n\"bench-watch\" = \"view\"\n"
    );
    let args = vec![
        "--ca".into(),
        ca_file,
        "--cert".into(),
        ccert,
        "--key".into(),
        ckey,
        "--tls-server-name".into(),
        "localhost".into(),
    ];
    Ok((keys, args))
}

impl Observers {
    /// Starts the sidecar (root namespace: it only reads the stats segment
    /// in `state_dir`) on loopback ports derived from `port_base`, then the
    /// watch and the scraper. `dataplane_config` is the dataplane's config
    /// text, with the state-dir placeholder.
    pub fn start(
        dataplane_config: &str,
        state_dir: &Path,
        port_base: u16,
        rates: ObserveRates,
    ) -> Result<Observers> {
        let grpc: SocketAddr = ([127, 0, 0, 1], port_base).into();
        let health: SocketAddr = ([127, 0, 0, 1], port_base + 1).into();
        let metrics: SocketAddr = ([127, 0, 0, 1], port_base + 2).into();
        let (tls_keys, tls_args) = if rates.mtls {
            mtls_files(state_dir)?
        } else {
            (String::new(), Vec::new())
        };
        let config = format!(
            "{}\n[control]\ngrpc_listen = \"{grpc}\"\nhealth_listen = \"{health}\"\nmetrics_listen = \"{metrics}\"\n{tls_keys}",
            dataplane_config.replace(STATE_DIR_PLACEHOLDER, &state_dir.to_string_lossy())
        );
        let config_path = state_dir.join("control.toml");
        std::fs::write(&config_path, config)?;
        let control = Command::new(workspace_binary("tapline-control")?)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tapline-control")?;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !scrape(metrics).is_ok_and(|b| b.contains("tapline_dataplane_up 1")) {
            if Instant::now() > deadline {
                bail!("tapline-control did not report a live dataplane on {metrics} within {READY_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let scheme = if rates.mtls { "https" } else { "http" };
        let watch = Command::new(workspace_binary("taplinectl")?)
            .args(&tls_args)
            .args([
                "--endpoint",
                &format!("{scheme}://{grpc}"),
                "--json",
                "stats",
                "--watch",
            ])
            .arg("--interval-ms")
            .arg(rates.watch_interval.as_millis().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting taplinectl stats --watch")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let scraper = std::thread::spawn(move || {
            let mut ok = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                if scrape(metrics).is_ok_and(|b| b.contains("tapline_port_rx_packets_total")) {
                    ok += 1;
                }
                std::thread::sleep(rates.scrape_interval);
            }
            ok
        });
        Ok(Observers {
            control,
            watch,
            stop,
            scraper: Some(scraper),
            config_path,
        })
    }

    /// Stops everything; returns the number of successful scrapes.
    pub fn stop(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let scrapes = self
            .scraper
            .take()
            .map(|h| h.join().unwrap_or(0))
            .unwrap_or(0);
        let watch_alive = self.watch.try_wait()?.is_none();
        self.shutdown();
        if !watch_alive {
            bail!("taplinectl stats --watch had exited during the measurement");
        }
        Ok(scrapes)
    }

    fn shutdown(&mut self) {
        for c in [&mut self.watch, &mut self.control] {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

impl Drop for Observers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.shutdown();
    }
}
