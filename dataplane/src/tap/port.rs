//! The data path's side of taps: each port's [`TapPort`], refreshed once
//! per poll, offering its frames to the running taps.

use super::*;

/// One running tap as one port sees it.
#[derive(Debug)]
struct PortTap {
    tap: Arc<Tap>,
    /// Matching packets still to skip before the next sampled one.
    skip: u32,
}

/// The taps of one port (an interface and queue polled by a worker task).
/// See the module documentation.
#[derive(Debug)]
pub struct TapPort {
    registry: Arc<TapRegistry>,
    ifname: String,
    queue: u32,
    /// The registry generation `taps` reflects (`u64::MAX`: never read).
    seen: u64,
    taps: Vec<PortTap>,
    rx_active: bool,
    tx_active: bool,
}

impl TapPort {
    pub fn new(registry: Arc<TapRegistry>, ifname: &str, queue: u32) -> TapPort {
        TapPort {
            registry,
            ifname: ifname.to_string(),
            queue,
            seen: u64::MAX,
            taps: Vec::new(),
            rx_active: false,
            tx_active: false,
        }
    }

    /// A port no tap ever reaches (tests, microbenchmarks).
    pub fn disabled() -> TapPort {
        TapPort::new(TapRegistry::disabled(), "", 0)
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Call once per batch. One Relaxed load when nothing changed; when the
    /// registry changed, re-reads the taps of this interface (unless the
    /// registry is being written right now: then at the next batch).
    /// Returns true when the taps of this port may have changed.
    #[inline]
    pub(crate) fn refresh(&mut self) -> bool {
        // Relaxed: the generation only says "look"; the list is read under
        // the lock, whose acquire orders it after the writer's changes.
        if self.registry.generation.load(Ordering::Relaxed) == self.seen {
            return false;
        }
        self.reload()
    }

    #[cold]
    fn reload(&mut self) -> bool {
        let Ok(running) = self.registry.running.try_read() else {
            return false;
        };
        // Bumps happen under the write lock: this is the list's generation.
        self.seen = self.registry.generation.load(Ordering::Relaxed);
        let mut taps = Vec::with_capacity(running.taps.len());
        for t in running.taps.iter().filter(|t| t.ifname == self.ifname) {
            let skip = self
                .taps
                .iter()
                .find(|p| Arc::ptr_eq(&p.tap, t))
                .map_or(0, |p| p.skip);
            taps.push(PortTap {
                tap: t.clone(),
                skip,
            });
        }
        drop(running);
        self.rx_active = taps.iter().any(|p| p.tap.rx);
        self.tx_active = taps.iter().any(|p| p.tap.tx);
        self.taps = taps;
        true
    }

    /// A tap wants what this port receives.
    #[inline]
    pub(crate) fn rx_active(&self) -> bool {
        self.rx_active
    }

    /// A tap wants what this port transmits.
    #[inline]
    pub(crate) fn tx_active(&self) -> bool {
        self.tx_active
    }

    /// Shows a received frame to the RX taps of this port.
    #[inline]
    pub(crate) fn offer_rx(&mut self, frame: &[u8], ts_unix_ns: u64) {
        if self.rx_active {
            self.offer(Direction::Rx, frame, None, ts_unix_ns);
        }
    }

    /// [`TapPort::offer_rx`] for a frame the caller has parsed already
    /// (`p.frame`): filters run on `p` instead of parsing the frame again.
    #[inline]
    pub(crate) fn offer_rx_packet(&mut self, p: &Packet<'_>, ts_unix_ns: u64) {
        if self.rx_active {
            self.offer(Direction::Rx, p.frame, Some(p), ts_unix_ns);
        }
    }

    /// Shows a frame queued for transmission to the TX taps of this port.
    #[inline]
    pub(crate) fn offer_tx(&mut self, frame: &[u8], ts_unix_ns: u64) {
        if self.tx_active {
            self.offer(Direction::Tx, frame, None, ts_unix_ns);
        }
    }

    // Out of line: only a port with a running tap gets here, and inlined
    // into the capture and chain loops its body costs every frame of every
    // port register pressure (about 3 instructions per frame measured).
    #[inline(never)]
    fn offer(
        &mut self,
        dir: Direction,
        frame: &[u8],
        parsed: Option<&Packet<'_>>,
        ts_unix_ns: u64,
    ) {
        for p in self.taps.iter_mut() {
            let t = &*p.tap;
            let wants = match dir {
                Direction::Rx => t.rx,
                Direction::Tx => t.tx,
            };
            if !wants || t.closed.load(Ordering::Relaxed) {
                continue;
            }
            if let Some(f) = &t.filter {
                let hit = match parsed {
                    Some(p) => f.matches_packet(p),
                    None => f.matches(frame),
                };
                if !hit {
                    continue;
                }
            }
            if p.skip > 0 {
                p.skip -= 1;
                continue;
            }
            p.skip = t.sample_one_in - 1;
            t.admit(dir, self.queue, frame, ts_unix_ns);
        }
    }
}
