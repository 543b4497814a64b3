//! The control sidecar as the tests run it: free ports for its three
//! listeners, the `tapline-control` process with its log lines, and
//! bounded `taplinectl` runs.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tapline_bench::runner::workspace_binary;

/// How long the sidecar may take to listen.
pub const SIDECAR_START_TIMEOUT: Duration = Duration::from_secs(15);

/// The three listeners of one sidecar, on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub grpc: u16,
    pub health: u16,
    pub metrics: u16,
}

static NEXT_PORTS: AtomicU32 = AtomicU32::new(0);
/// Ports are taken from this range.
const PORT_LOW: u32 = 20_000;
const PORT_SPAN: u32 = 40_000;

impl Ports {
    /// Three consecutive ports derived from the pid and a per-process
    /// counter (so parallel tests and parallel test binaries differ), that
    /// nothing listens on right now.
    pub fn unique() -> Result<Ports> {
        let pid = std::process::id();
        for _ in 0..200 {
            let n = NEXT_PORTS.fetch_add(1, Ordering::Relaxed);
            let base = PORT_LOW + (pid.wrapping_mul(7919).wrapping_add(n * 3)) % (PORT_SPAN - 3);
            let ports = [base, base + 1, base + 2].map(|p| p as u16);
            let free = ports
                .iter()
                .all(|&p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
            if free {
                return Ok(Ports {
                    grpc: ports[0],
                    health: ports[1],
                    metrics: ports[2],
                });
            }
        }
        bail!(
            "no three free consecutive ports found in {PORT_LOW}..{}",
            PORT_LOW + PORT_SPAN
        )
    }

    pub fn grpc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.health)
    }
}

/// A running `tapline-control`, killed on drop.
#[derive(Debug)]
pub struct Sidecar {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Sidecar {
    /// Starts the sidecar with `config` and waits until every port of
    /// `listening` accepts connections.
    pub fn start(config: &Path, listening: &[u16]) -> Result<Sidecar> {
        let bin = workspace_binary("tapline-control")?;
        let mut child = Command::new(&bin)
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("log lines").push(line);
                }
            });
        }
        let mut sidecar = Sidecar { child, lines };
        let deadline = Instant::now() + SIDECAR_START_TIMEOUT;
        loop {
            let up = listening.iter().all(|&p| {
                TcpStream::connect_timeout(
                    &SocketAddr::from((Ipv4Addr::LOCALHOST, p)),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if up {
                return Ok(sidecar);
            }
            if let Some(status) = sidecar.child.try_wait()? {
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "tapline-control exited ({status}) before listening:\n{}",
                    sidecar.logs()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "tapline-control not listening on {listening:?} after {SIDECAR_START_TIMEOUT:?}:\n{}",
                    sidecar.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its log lines so far.
    pub fn logs(&self) -> String {
        self.lines.lock().expect("log lines").join("\n")
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `taplinectl --endpoint URL ARGS`, started with piped output.
pub fn spawn_ctl(url: &str, token_file: Option<&Path>, args: &[&str]) -> Result<Child> {
    let bin = workspace_binary("taplinectl")?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--endpoint").arg(url);
    if let Some(t) = token_file {
        cmd.arg("--token-file").arg(t);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

/// Waits for a `taplinectl` run, killing it after `timeout`.
pub fn wait_ctl(child: Child, args: &[&str], timeout: Duration) -> Result<Output> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => Ok(out?),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            bail!("taplinectl {args:?} did not finish within {timeout:?}")
        }
    }
}
