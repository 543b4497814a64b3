//! A child process whose stdout and stderr are collected line by line (one
//! thread per stream), as the benchmarks run the dataplane
//! ([`crate::runner`]) and their peers ([`crate::peers`]): started with
//! stdin closed, killed on drop if it still runs.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How often a wait looks at the child.
const POLL: Duration = Duration::from_millis(20);

/// A running (or finished) child and the lines it printed so far.
#[derive(Debug)]
pub(crate) struct CapturedChild {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl CapturedChild {
    /// Spawns `cmd` with stdin closed and stdout and stderr collected.
    pub(crate) fn spawn(cmd: &mut Command) -> std::io::Result<CapturedChild> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout is piped")),
            Box::new(child.stderr.take().expect("stderr is piped")),
        ];
        let readers = streams
            .into_iter()
            .map(|stream| {
                let lines = lines.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        lines.lock().expect("child lines").push(line);
                    }
                })
            })
            .collect();
        Ok(CapturedChild {
            child,
            lines,
            readers,
        })
    }

    /// Lines so far (stdout and stderr, in arrival order per stream).
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("child lines").clone()
    }

    /// Whether the lines so far satisfy `f`, without copying them.
    pub(crate) fn lines_satisfy(&self, f: impl FnOnce(&[String]) -> bool) -> bool {
        f(&self.lines.lock().expect("child lines"))
    }

    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the child (a program run by `ip netns exec` is the
    /// child itself: the wrapper execs it).
    pub(crate) fn signal(&self, signal: Signal) -> nix::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal)
    }

    pub(crate) fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits up to `timeout` for the child to exit; kills it then. Returns
    /// its status and whether it had to be killed.
    pub(crate) fn wait_or_kill(
        &mut self,
        timeout: Duration,
    ) -> std::io::Result<(ExitStatus, bool)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok((status, false));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Ok((self.child.wait()?, true));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Once the child exited: waits for the readers to take its last lines
    /// and returns every line.
    pub(crate) fn finish(&mut self) -> Vec<String> {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.lines()
    }

    /// Kills the child if it still runs, and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for CapturedChild {
    fn drop(&mut self) {
        self.kill();
    }
}
