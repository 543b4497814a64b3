//! The applied chain as the workers see it: an immutable [`Layout`] per
//! chain generation, and per hop a few atomics ([`HopShared`]) for what
//! changes between generations (health, manual bypass, heartbeat returns).
//!
//! Workers compute their forwarding routes from the layout and the hops'
//! atomics between two batches, and again whenever [`ChainShared::version`]
//! moves, so every frame of a batch sees one consistent chain.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use super::heartbeat::{Dir, Health, WINDOW};
use tapline_config::chain::FailureAction;

/// Identifies a port (an AF_XDP socket's interface side) across tasks: the
/// same id on every queue.
pub type PortId = u32;

/// Port ids of inline-1 and inline-2; tool ports get ids from 2 up.
pub const INLINE_1: PortId = 0;
pub const INLINE_2: PortId = 1;

/// Chain-wide state shared by the control thread and every chain task.
#[derive(Debug, Default)]
pub struct ChainShared {
    /// Bumped whenever a hop's health or manual bypass changes; tasks
    /// recompute their routes when they see it move.
    pub version: AtomicU64,
}

impl ChainShared {
    pub(crate) fn bump(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// What one hop's workers share. Written rarely (heartbeats, transitions).
#[derive(Debug)]
pub struct HopShared {
    /// Stats slot of the hop (also in its heartbeats).
    pub slot: usize,
    /// Unique per hop instance, so heartbeats of a removed hop that reused
    /// the slot are not mistaken for the new one's.
    pub nonce: u32,
    pub name: String,
    /// `FailureAction as u8`; an update may change it in place.
    on_failure: AtomicU8,
    health: AtomicU8,
    manual: AtomicBool,
    /// Per direction: bit `seq % 64` is set when heartbeat `seq` came back.
    returned: [AtomicU64; 2],
    /// Per direction and `seq % 64`: the round-trip time of the heartbeat
    /// that came back (valid when its bit is set).
    rtt_ns: [[AtomicU64; WINDOW as usize]; 2],
    /// Per direction: the next sequence number the judge will send.
    next_seq: [AtomicU64; 2],
}

impl HopShared {
    pub fn new(slot: usize, nonce: u32, name: String, on_failure: FailureAction) -> HopShared {
        HopShared {
            slot,
            nonce,
            name,
            on_failure: AtomicU8::new(on_failure as u8),
            health: AtomicU8::new(Health::Unknown as u8),
            manual: AtomicBool::new(false),
            returned: Default::default(),
            rtt_ns: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            next_seq: Default::default(),
        }
    }

    #[inline]
    pub fn on_failure(&self) -> FailureAction {
        // Only `set_on_failure` and `new` store here, always an action's
        // index: the default never shows.
        FailureAction::from_index(usize::from(self.on_failure.load(Ordering::Acquire)))
            .unwrap_or_default()
    }

    pub(crate) fn set_on_failure(&self, a: FailureAction) {
        self.on_failure.store(a as u8, Ordering::Release);
    }

    #[inline]
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Acquire))
    }

    pub(crate) fn set_health(&self, h: Health) {
        self.health.store(h as u8, Ordering::Release);
    }

    #[inline]
    pub fn manual_bypass(&self) -> bool {
        self.manual.load(Ordering::Acquire)
    }

    pub(crate) fn set_manual_bypass(&self, on: bool) {
        self.manual.store(on, Ordering::Release);
    }

    /// The judge is about to send heartbeat `seq` of `dir`: forget whatever
    /// its bit said (heartbeat `seq - 64`).
    pub(crate) fn arm(&self, dir: Dir, seq: u64) {
        self.next_seq[dir.index()].store(seq + 1, Ordering::Release);
        self.returned[dir.index()].fetch_and(!(1 << (seq % WINDOW)), Ordering::AcqRel);
    }

    /// A heartbeat came back (called by whichever task received it). Ignores
    /// sequence numbers outside the judge's window (replays, very late
    /// frames).
    pub(crate) fn record_return(&self, dir: Dir, seq: u64, rtt_ns: u64) -> bool {
        let next = self.next_seq[dir.index()].load(Ordering::Acquire);
        if seq >= next || seq + WINDOW - 1 < next {
            return false;
        }
        let i = (seq % WINDOW) as usize;
        self.rtt_ns[dir.index()][i].store(rtt_ns, Ordering::Relaxed);
        // Release: the rtt above is visible to whoever sees the bit.
        self.returned[dir.index()].fetch_or(1 << i, Ordering::Release);
        true
    }

    /// Whether heartbeat `seq` of `dir` came back, with its round-trip time.
    pub fn returned(&self, dir: Dir, seq: u64) -> Option<u64> {
        let i = (seq % WINDOW) as usize;
        let bits = self.returned[dir.index()].load(Ordering::Acquire);
        (bits & (1 << i) != 0).then(|| self.rtt_ns[dir.index()][i].load(Ordering::Relaxed))
    }
}

/// Where a hop's traffic goes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Through,
    Bypass,
    Drop,
}

impl Traffic {
    /// The variant's name, as logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Traffic::Through => "Through",
            Traffic::Bypass => "Bypass",
            Traffic::Drop => "Drop",
        }
    }
}

/// One hop of a layout.
#[derive(Debug, Clone)]
pub struct LayoutHop {
    pub shared: Arc<HopShared>,
    /// Ports of sides A and B; `None` while the tool's interfaces are not
    /// bound (the hop is then down).
    pub ports: Option<[PortId; 2]>,
    /// Being removed: no traffic goes in, what comes back out still flows.
    pub removing: bool,
}

impl LayoutHop {
    /// Where the hop's traffic goes, from its state right now.
    #[inline]
    pub fn traffic(&self) -> Traffic {
        if self.removing || self.shared.manual_bypass() {
            return Traffic::Bypass;
        }
        if self.ports.is_some() && self.shared.health() == Health::Up {
            return Traffic::Through;
        }
        match self.shared.on_failure() {
            FailureAction::Bypass => Traffic::Bypass,
            FailureAction::Drop => Traffic::Drop,
        }
    }
}

/// The chain at one generation, immutable; shared by all tasks.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub generation: u64,
    pub hops: Vec<LayoutHop>,
}

/// Where the frames received on one port go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Route {
    /// Egress port; `None`: dropped (see `drop_hop`).
    pub to: Option<PortId>,
    /// The hop whose tool the frames enter (they count as sent to it).
    pub into_hop: Option<usize>,
    /// The hop whose tool they come out of.
    pub from_hop: Option<usize>,
    /// The fail-closed hop that drops them.
    pub drop_hop: Option<usize>,
    /// Hops they go around (bit i: hop i of the layout).
    pub bypassed: u64,
}

impl Layout {
    /// The port of side `a` (`false`) or `b` (`true`) of hop `i`.
    fn port(&self, i: usize, b: bool) -> Option<PortId> {
        self.hops[i].ports.map(|p| p[usize::from(b)])
    }

    /// The route through hops `order` (entering each tool on side `b` when
    /// travelling towards inline-1, else side `a`), ending at `end`.
    fn walk(
        &self,
        order: impl Iterator<Item = usize>,
        side_b: bool,
        end: PortId,
        traffic: &[Traffic],
    ) -> Route {
        let mut r = Route::default();
        for i in order {
            match traffic[i] {
                Traffic::Through => {
                    r.to = self.port(i, side_b);
                    r.into_hop = Some(i);
                    return r;
                }
                Traffic::Bypass => r.bypassed |= 1 << i,
                Traffic::Drop => {
                    r.drop_hop = Some(i);
                    return r;
                }
            }
        }
        r.to = Some(end);
        r
    }

    /// Route towards inline-2 from hop `from` on.
    fn east(&self, from: usize, traffic: &[Traffic]) -> Route {
        self.walk(from..traffic.len(), false, INLINE_2, traffic)
    }

    /// Route towards inline-1 from the hops before `before`, nearest first.
    fn west(&self, before: usize, traffic: &[Traffic]) -> Route {
        self.walk((0..before).rev(), true, INLINE_1, traffic)
    }

    /// The route of every port of the layout, as `(port, route)`: inline-1
    /// and inline-2 first, then sides A and B of each bound hop.
    pub fn routes(&self) -> Vec<(PortId, Route)> {
        let traffic: Vec<Traffic> = self.hops.iter().map(LayoutHop::traffic).collect();
        let n = self.hops.len();
        let mut out = Vec::with_capacity(2 + 2 * n);
        out.push((INLINE_1, self.east(0, &traffic)));
        out.push((INLINE_2, self.west(n, &traffic)));
        for (i, h) in self.hops.iter().enumerate() {
            let Some([a, b]) = h.ports else { continue };
            // Out of the tool on side A: travelling towards inline-1.
            let mut ra = self.west(i, &traffic);
            ra.from_hop = Some(i);
            // Out on side B: towards inline-2.
            let mut rb = self.east(i + 1, &traffic);
            rb.from_hop = Some(i);
            out.push((a, ra));
            out.push((b, rb));
        }
        out
    }

    /// Index of the hop with `slot` and `nonce`.
    pub(crate) fn hop_by_id(&self, slot: usize, nonce: u32) -> Option<usize> {
        self.hops
            .iter()
            .position(|h| h.shared.slot == slot && h.shared.nonce == nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(
        slot: usize,
        ports: Option<[PortId; 2]>,
        health: Health,
        fa: FailureAction,
    ) -> LayoutHop {
        let s = HopShared::new(slot, slot as u32 + 100, format!("h{slot}"), fa);
        s.set_health(health);
        LayoutHop {
            shared: Arc::new(s),
            ports,
            removing: false,
        }
    }

    #[test]
    fn every_failure_action_round_trips_through_the_hop() {
        // Each action, set on a hop created with every other one, reads
        // back as itself (a new action must not read back as another).
        for &initial in FailureAction::ALL {
            let s = HopShared::new(0, 1, "h".into(), initial);
            assert_eq!(s.on_failure(), initial);
            for &a in FailureAction::ALL {
                s.set_on_failure(a);
                assert_eq!(
                    s.on_failure(),
                    a,
                    "set {a:?} on a hop made with {initial:?}"
                );
            }
        }
    }

    fn route_of(l: &Layout, p: PortId) -> Route {
        l.routes().into_iter().find(|(id, _)| *id == p).unwrap().1
    }

    #[test]
    fn empty_chain_bridges() {
        let l = Layout::default();
        assert_eq!(route_of(&l, INLINE_1).to, Some(INLINE_2));
        assert_eq!(route_of(&l, INLINE_2).to, Some(INLINE_1));
    }

    #[test]
    fn two_up_hops_in_order_both_ways() {
        let l = Layout {
            generation: 1,
            hops: vec![
                hop(0, Some([2, 3]), Health::Up, FailureAction::Bypass),
                hop(1, Some([4, 5]), Health::Up, FailureAction::Bypass),
            ],
        };
        // East: i1 -> 2 (h0.a), 3 (h0.b) -> 4 (h1.a), 5 (h1.b) -> i2.
        assert_eq!(route_of(&l, INLINE_1).to, Some(2));
        assert_eq!(route_of(&l, INLINE_1).into_hop, Some(0));
        assert_eq!(route_of(&l, 3).to, Some(4));
        assert_eq!(route_of(&l, 3).from_hop, Some(0));
        assert_eq!(route_of(&l, 5).to, Some(INLINE_2));
        // West: i2 -> 5 (h1.b), 4 (h1.a) -> 3 (h0.b), 2 (h0.a) -> i1.
        assert_eq!(route_of(&l, INLINE_2).to, Some(5));
        assert_eq!(route_of(&l, 4).to, Some(3));
        assert_eq!(route_of(&l, 2).to, Some(INLINE_1));
    }

    #[test]
    fn down_hops_apply_their_failure_action_and_manual_bypass_wins() {
        let l = Layout {
            generation: 1,
            hops: vec![
                hop(0, Some([2, 3]), Health::Down, FailureAction::Bypass),
                hop(1, Some([4, 5]), Health::Up, FailureAction::Bypass),
                hop(2, Some([6, 7]), Health::Down, FailureAction::Drop),
            ],
        };
        let r = route_of(&l, INLINE_1);
        assert_eq!((r.to, r.bypassed), (Some(4), 0b1));
        let r = route_of(&l, 5);
        assert_eq!((r.to, r.drop_hop), (None, Some(2)));
        let r = route_of(&l, INLINE_2);
        assert_eq!((r.to, r.drop_hop), (None, Some(2)));
        // What comes out of the failed fail-closed tool still flows.
        assert_eq!(route_of(&l, 6).to, Some(5));
        l.hops[2].shared.set_manual_bypass(true);
        let r = route_of(&l, 5);
        assert_eq!((r.to, r.bypassed), (Some(INLINE_2), 0b100));
        // Unbound ports: the hop is down whatever its health says.
        let l = Layout {
            generation: 2,
            hops: vec![hop(0, None, Health::Up, FailureAction::Drop)],
        };
        assert_eq!(route_of(&l, INLINE_1).drop_hop, Some(0));
        assert_eq!(l.routes().len(), 2);
    }

    #[test]
    fn returns_outside_the_window_are_ignored() {
        let h = HopShared::new(0, 1, "h".into(), FailureAction::Bypass);
        h.arm(Dir::AtoB, 0);
        assert!(h.record_return(Dir::AtoB, 0, 5));
        assert_eq!(h.returned(Dir::AtoB, 0), Some(5));
        assert!(!h.record_return(Dir::AtoB, 1, 5), "not sent yet");
        for s in 1..=WINDOW {
            h.arm(Dir::AtoB, s);
        }
        assert_eq!(h.returned(Dir::AtoB, WINDOW), None, "bit re-armed");
        assert!(!h.record_return(Dir::AtoB, 0, 5), "too old");
    }
}
