//! The AF_PACKET peer as a process: stop signals on a signalfd, one JSON
//! event per line on stdout, one thread per direction.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::{check_batch, forward_one_way, read, ForwardCounts, PacketSocket, SIGNAL_POLL_MS};

/// SIGTERM and SIGINT, blocked in every thread and read from a signalfd.
/// Created before any thread is spawned, so the threads inherit the mask
/// and the signals reach only the descriptor.
#[derive(Debug)]
struct StopSignals {
    fd: SignalFd,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.add(Signal::SIGINT);
        mask.thread_block().context("blocking SIGTERM and SIGINT")?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("creating a signalfd")?;
        Ok(StopSignals { fd })
    }

    /// Returns once a signal arrived or `ended()` says a worker ended;
    /// `tick()` runs before each look.
    fn wait(
        &self,
        mut tick: impl FnMut() -> Result<()>,
        mut ended: impl FnMut() -> bool,
    ) -> Result<()> {
        use nix::poll::{poll, PollFd, PollFlags};
        loop {
            tick()?;
            if self
                .fd
                .read_signal()
                .context("reading the signalfd")?
                .is_some()
                || ended()
            {
                return Ok(());
            }
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, SIGNAL_POLL_MS) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e).context("polling the signalfd"),
            }
        }
    }
}

/// Prints one JSON event line on stdout and flushes it (the parent reads
/// it through a pipe).
fn emit(event: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{event}").context("writing to stdout")?;
    out.flush().context("flushing stdout")
}

/// A worker thread's body: runs until the flag it is given is set.
type Worker<'a, T> = Box<dyn FnOnce(&AtomicBool) -> Result<T> + Send + 'a>;

/// Runs workers until a signal arrives or one of them ends, then stops
/// them all and returns their results in order. `tick` runs every
/// [`SIGNAL_POLL_MS`] meanwhile, on the calling thread.
fn serve<T: Send>(
    signals: &StopSignals,
    workers: Vec<Worker<'_, T>>,
    tick: impl FnMut() -> Result<()>,
) -> Result<Vec<T>> {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|w| {
                let stop = &stop;
                s.spawn(move || w(stop))
            })
            .collect();
        let waited = signals.wait(tick, || handles.iter().any(|h| h.is_finished()));
        stop.store(true, Ordering::Relaxed);
        let results: Vec<Result<T>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker thread panicked")))
            })
            .collect();
        waited?;
        results.into_iter().collect()
    })
}

/// `tapline-bench peer af-packet-fwd`: forwards `a <-> b`, one thread per
/// direction, until SIGTERM/SIGINT; prints `{"event":"ready"}` once both
/// sockets are bound and
/// `{"event":"done","forwarded":N,"dropped":D,"kernel_drops":K}` at the end.
pub fn run_forwarder(a: &str, b: &str, batch: usize) -> Result<()> {
    check_batch(batch)?;
    if a == b {
        bail!("--a and --b are both {a}: a forwarder needs two interfaces");
    }
    let signals = StopSignals::install()?;
    let sa = PacketSocket::open(a)?;
    let sb = PacketSocket::open(b)?;
    emit(&serde_json::json!({"event": "ready"}))?;
    let (sa, sb) = (&sa, &sb);
    let counts = serve(
        &signals,
        vec![
            Box::new(move |stop: &AtomicBool| forward_one_way(sa, sb, batch, stop)),
            Box::new(move |stop: &AtomicBool| forward_one_way(sb, sa, batch, stop)),
        ],
        || Ok(()),
    )?;
    let total = counts
        .into_iter()
        .fold(ForwardCounts::default(), |t, c| t + c);
    emit(&serde_json::json!({
        "event": "done",
        "forwarded": total.forwarded,
        "dropped": total.dropped,
        "kernel_drops": total.kernel_drops,
    }))
}

/// `tapline-bench peer af-packet-read`: counts what arrives on `iface`
/// until SIGTERM/SIGINT; prints `{"event":"ready"}` once the socket is
/// bound, `{"event":"progress","received":N}` whenever the count grew
/// (looked at every [`SIGNAL_POLL_MS`]), and
/// `{"event":"done","received":N,"bytes":B,"kernel_drops":K}` at the end.
pub fn run_reader(iface: &str, batch: usize) -> Result<()> {
    check_batch(batch)?;
    let signals = StopSignals::install()?;
    let sock = PacketSocket::open(iface)?;
    emit(&serde_json::json!({"event": "ready"}))?;
    let sock = &sock;
    let received = AtomicU64::new(0);
    let received = &received;
    let mut reported = 0;
    let counts = serve(
        &signals,
        vec![Box::new(move |stop: &AtomicBool| {
            read(sock, batch, stop, received)
        })],
        || {
            let now = received.load(Ordering::Relaxed);
            if now != reported {
                reported = now;
                emit(&serde_json::json!({"event": "progress", "received": now}))?;
            }
            Ok(())
        },
    )?;
    let c = counts.into_iter().next().unwrap_or_default();
    emit(&serde_json::json!({
        "event": "done",
        "received": c.received,
        "bytes": c.bytes,
        "kernel_drops": c.kernel_drops,
    }))
}
