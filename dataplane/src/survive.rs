//! The inline link outlives the dataplane: attaching the kernel fallback
//! ([`crate::xdp::fallback`]) to inline-1 and inline-2, taking the links
//! over from the link keeper at start ([`tapline_segment::custody`]), handing
//! them back, and handing the traffic to the kernel on exit.
//!
//! # Start
//!
//! 1. Ask the keeper (the sidecar) for the links it holds. If it holds
//!    links for these interfaces, the kernel fallback is carrying the wire
//!    right now: reuse its maps (leases, action, counters) and swap a new
//!    program into each link with `BPF_LINK_UPDATE`. The swap is atomic,
//!    every lease is marked expired first, and a queue's frames go to its
//!    socket only once its worker (with a filled fill ring) renews the
//!    lease, so nothing is lost at the switch.
//! 2. Otherwise create the maps and attach with new links, in the mode
//!    [`inline_attach_mode`] picks per interface.
//! 3. Hand duplicates of the link and map fds to the keeper, and again
//!    whenever the keeper comes back after a restart of the sidecar.
//!
//! # Exit
//!
//! `fallback.on_exit = "keep"` (default): the workers stop renewing, every
//! lease is expired, the rings drain for a few milliseconds, then the
//! process exits; the keeper's fds keep the programs attached and the
//! kernel forwards (or drops) until a dataplane comes back. `"detach"`:
//! the keeper is asked to drop its fds, and the programs go with the
//! process, as before this feature.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::chain::spec;
use crate::stats::Role;
use crate::xdp::bpf::{self, XdpAttachment, XskMap};
use crate::xdp::fallback::{self, FallbackAction, FallbackMaps, Lease};
use crate::xdp::{inline_attach_mode, netdev, AttachMode, Interface, XdpError};
use tapline_config::chain::{ChainSpec, FailureAction};
use tapline_config::{Config, FallbackConfig, InlinePair, OnExit};
use tapline_segment::custody::{self, Header, KeeperClient, PortRecord};
use tapline_segment::fallback::PortFallbackCounters;
use tapline_segment::FallbackSnapshot;

/// How often a dataplane without a keeper tries to reach one.
const KEEPER_RETRY: Duration = Duration::from_secs(1);
/// How long a stopping dataplane lets its rings drain after handing the
/// leases to the kernel (longer than the lease-renewal granularity, plus
/// scheduling slack).
const HANDOVER_DRAIN: Duration = Duration::from_millis(15);

/// The fallback action a chain calls for: drop while a fail-closed hop is
/// in it and not bypassed, else forward.
pub(crate) fn action_for<'a>(
    hops: impl IntoIterator<Item = (FailureAction, bool)> + 'a,
) -> FallbackAction {
    if hops
        .into_iter()
        .any(|(a, bypassed)| a == FailureAction::Drop && !bypassed)
    {
        FallbackAction::Drop
    } else {
        FallbackAction::Forward
    }
}

/// The action of a chain spec (no hop bypassed manually).
pub(crate) fn spec_action(s: &ChainSpec) -> FallbackAction {
    action_for(
        s.hops
            .iter()
            .map(|h| (h.on_failure.unwrap_or(s.default_on_failure), false)),
    )
}

/// The chain the dataplane is about to apply: the persisted one, else the
/// configuration's (what `ChainControl::start` picks).
fn starting_action(cfg: &Config) -> FallbackAction {
    match spec::load(&cfg.state_dir) {
        Ok(Some(p)) => spec_action(&p.spec),
        _ => spec_action(&cfg.chain),
    }
}

/// The fallback of the inline pair while the dataplane runs.
#[derive(Debug)]
pub struct InlineFallback {
    pub maps: Arc<FallbackMaps>,
    header: Header,
    /// Duplicates of the two links, for the keeper.
    links: Vec<OwnedFd>,
    keeper: Option<KeeperClient>,
    state_dir: PathBuf,
    next_attempt: Instant,
    warned: bool,
    /// Whether this dataplane took the links over from the kernel fallback.
    pub took_over: bool,
    handover: Arc<AtomicBool>,
    settings: FallbackConfig,
}

impl InlineFallback {
    /// Attaches (or takes over) the fallback on both inline ports; returns
    /// the two interfaces (inline-1, inline-2).
    pub fn open(
        cfg: &Config,
        pair: &InlinePair,
    ) -> Result<(InlineFallback, [Interface; 2]), XdpError> {
        let settings = cfg.fallback.clone();
        let names = [pair.side1.as_str(), pair.side2.as_str()];
        let mut ifindex = [0u32; 2];
        for (i, n) in names.iter().enumerate() {
            ifindex[i] = netdev::ifindex(n).map_err(|_| XdpError::NoSuchInterface {
                ifname: n.to_string(),
            })?;
        }
        let queues = netdev::rx_queue_count(names[0]).unwrap_or(1);

        // 1. What the keeper holds.
        let keeper = KeeperClient::connect(&cfg.state_dir).ok();
        let lent = match keeper.as_ref().map(KeeperClient::lend) {
            Some(Ok(b)) => b,
            Some(Err(e)) => {
                warn!(error = %e, "the link keeper did not lend its links; attaching afresh");
                None
            }
            None => None,
        };
        let (mut held_links, maps) = adopt_lent(lent, names, ifindex, queues);
        let took_over = held_links.iter().any(Option::is_some);
        let action = starting_action(cfg);
        let maps = match maps {
            Some(m) => {
                // No stale lease may send a frame to a socket that is not
                // bound or filled yet.
                m.expire_all();
                m.set_action(action).map_err(|e| {
                    XdpError::from_os("BPF_MAP_UPDATE_ELEM(action)", "inline", e, None)
                })?;
                m
            }
            None => FallbackMaps::create(queues, action)?,
        };

        // 2. A program per port, into the kept link or a new one.
        let mut ifaces = Vec::new();
        let mut ports = Vec::new();
        for i in 0..2 {
            let name = names[i];
            let xsks = XskMap::create(queues, name)?;
            let insns = fallback::program(i as u32, ifindex[1 - i], xsks.fd.as_fd(), &maps);
            let prog = bpf::load_insns(&insns, "tapline_inline", name)?;
            let attachment = attach_port(
                cfg,
                i,
                names,
                ifindex,
                prog,
                xsks,
                &maps,
                held_links[i].take(),
            )?;
            ports.push(PortRecord {
                role: [Role::Inline1, Role::Inline2][i].as_str().to_string(),
                ifname: name.to_string(),
                ifindex: ifindex[i],
                attach: attachment.mode.to_string(),
            });
            ifaces.push(Interface::from_attachment(
                name,
                ifindex[i],
                queues,
                attachment,
                cfg.promiscuous,
            )?);
        }
        let links = ifaces
            .iter()
            .map(|i| i.attachment.link().try_clone_to_owned())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| XdpError::from_os("dup(link)", "inline", e, None))?;
        let mut fb = InlineFallback {
            maps: Arc::new(maps),
            header: Header {
                version: 0,
                queues,
                ports,
                pid: std::process::id(),
            },
            links,
            keeper,
            state_dir: cfg.state_dir.clone(),
            next_attempt: Instant::now(),
            warned: false,
            took_over,
            handover: Arc::new(AtomicBool::new(false)),
            settings,
        };
        info!(
            action = %action,
            stall_ms = fb.settings.stall_ms,
            on_exit = fb.settings.on_exit.as_str(),
            took_over,
            "inline kernel fallback ready"
        );
        // 3. Hand the fds to the keeper.
        fb.deposit();
        let [a, b]: [Interface; 2] = ifaces.try_into().expect("two inline ports");
        Ok((fb, [a, b]))
    }

    /// The lease of `queue` for its worker.
    pub fn lease(&self, queue: u32) -> Option<Lease> {
        self.maps.lease(
            queue,
            u64::from(self.settings.stall_ms) * 1_000_000,
            self.handover.clone(),
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![
            self.maps.leases.as_fd(),
            self.maps.actions.as_fd(),
            self.maps.counters.as_fd(),
        ];
        v.extend(self.links.iter().map(|l| l.as_fd()));
        v
    }

    /// Hands the fds to the keeper (connecting first if needed).
    fn deposit(&mut self) {
        if self.settings.on_exit == OnExit::Detach {
            return;
        }
        if self.keeper.is_none() {
            self.keeper = KeeperClient::connect(&self.state_dir).ok();
        }
        let res = match &self.keeper {
            Some(k) => k.hold(self.header.clone(), &self.fds()),
            None => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        match res {
            Ok(()) => {
                info!("the link keeper holds the inline links: the kernel fallback survives this process");
                self.warned = false;
            }
            Err(e) => {
                self.keeper = None;
                self.next_attempt = Instant::now() + KEEPER_RETRY;
                if !self.warned {
                    warn!(error = %e, socket = %self.state_dir.join(tapline_segment::custody::SOCKET_NAME).display(),
                        "no link keeper (tapline-control) holds the inline links: until one does, they go down with this process; retrying every second");
                    self.warned = true;
                }
            }
        }
    }

    /// Keeps the keeper holding the links (call a few times a second): a
    /// restarted sidecar gets them again.
    pub(crate) fn maintain(&mut self) {
        if self.settings.on_exit == OnExit::Detach {
            return;
        }
        if let Some(k) = &self.keeper {
            if k.is_alive() {
                return;
            }
            warn!("the link keeper went away; handing the links to the next one");
            self.keeper = None;
            self.next_attempt = Instant::now();
        }
        if Instant::now() >= self.next_attempt {
            self.deposit();
        }
    }

    /// The kernel's counters and the takeovers, as the stats segment
    /// publishes them.
    pub fn snapshot(&self) -> FallbackSnapshot {
        let c = self.counters();
        FallbackSnapshot {
            forwarded: c.map(|c| c.forwarded),
            dropped: c.map(|c| c.dropped),
            lease_expiries: c.map(|c| c.lease_expiries),
            takeovers: self.maps.takeovers(),
        }
    }

    /// Sets the fallback action (chain changes).
    pub fn set_action(&self, a: FallbackAction) {
        if let Err(e) = self.maps.set_action(a) {
            warn!(error = %e, action = %a, "cannot update the fallback action");
        }
    }

    /// The kernel's counters per port.
    pub fn counters(&self) -> [PortFallbackCounters; 2] {
        [0, 1].map(|p| self.maps.port_counters(p).unwrap_or_default())
    }

    /// Hands every queue to the kernel while the workers still run, then
    /// lets their rings drain: a stopping dataplane loses nothing (keep
    /// mode only).
    pub(crate) fn hand_over(&self) {
        if self.settings.on_exit == OnExit::Detach {
            return;
        }
        self.handover.store(true, Ordering::Relaxed);
        self.maps.expire_all();
        std::thread::sleep(HANDOVER_DRAIN);
        // A worker may have renewed between the flag and the first pass.
        self.maps.expire_all();
        std::thread::sleep(HANDOVER_DRAIN);
        info!("the kernel fallback carries the inline link");
    }

    /// At exit: in detach mode, asks the keeper to let go, so the programs
    /// go with this process.
    pub fn finish(self) {
        if self.settings.on_exit == OnExit::Detach {
            if let Ok(k) = KeeperClient::connect(&self.state_dir) {
                if let Err(e) = k.release() {
                    warn!(error = %e, "the link keeper did not release the links");
                }
            }
        }
    }
}

/// How often link-state propagation looks at the inline ports.
const LINK_STATE_POLL: Duration = Duration::from_millis(50);
/// How long a port set up again may take to get carrier before its lack of
/// carrier counts as a failure again.
const LINK_SETTLE: Duration = Duration::from_secs(2);

/// Link-state propagation across the inline pair (`fallback.link_state`):
/// when one inline port loses carrier, the other is set administratively
/// down, so the routers on both sides see the failure and reroute instead
/// of sending into a black hole; when the carrier returns, the port is set
/// up again. Only a port this thread set down is set up again.
#[derive(Debug)]
pub struct LinkState {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// Ports set down, then up again (each counts one).
    pub propagations: Arc<std::sync::atomic::AtomicU64>,
}

impl LinkState {
    /// Starts the thread for the pair `[inline-1, inline-2]`.
    pub fn spawn(names: [String; 2]) -> std::io::Result<LinkState> {
        let stop = Arc::new(AtomicBool::new(false));
        let propagations = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let handle = {
            let stop = stop.clone();
            let count = propagations.clone();
            std::thread::Builder::new()
                .name("tapline-linkstate".into())
                .spawn(move || {
                    // forced[i]: we set port i down because its partner lost
                    // carrier.
                    let mut forced = [false; 2];
                    // A port set up again takes a moment to get carrier:
                    // until it has, or the grace ends, it is not a failure.
                    let mut settling: [Option<Instant>; 2] = [None; 2];
                    while !stop.load(Ordering::Relaxed) {
                        for i in 0..2 {
                            let (me, other) = (&names[i], &names[1 - i]);
                            if forced[i] {
                                // Partner back: bring this one up.
                                if netdev::carrier(other).unwrap_or(false) {
                                    match netdev::set_admin_up(me, true) {
                                        Ok(()) => {
                                            forced[i] = false;
                                            settling[i] = Some(Instant::now() + LINK_SETTLE);
                                            count.fetch_add(1, Ordering::Relaxed);
                                            info!(ifname = %me, partner = %other, "link-state propagation: partner has carrier again; set up");
                                        }
                                        Err(e) => warn!(ifname = %me, error = %e, "link-state propagation: cannot set the port up"),
                                    }
                                }
                                continue;
                            }
                            // A port we forced down has no carrier either:
                            // never propagate from it.
                            if forced[1 - i] {
                                continue;
                            }
                            let other_down = !netdev::carrier(other).unwrap_or(true);
                            if let Some(until) = settling[1 - i] {
                                if !other_down || Instant::now() >= until {
                                    settling[1 - i] = None;
                                }
                                if !other_down || Instant::now() < until {
                                    continue;
                                }
                            }
                            if other_down && netdev::admin_up(me).unwrap_or(false) {
                                match netdev::set_admin_up(me, false) {
                                    Ok(()) => {
                                        forced[i] = true;
                                        count.fetch_add(1, Ordering::Relaxed);
                                        warn!(ifname = %me, partner = %other, "link-state propagation: partner lost carrier; set down");
                                    }
                                    Err(e) => warn!(ifname = %me, error = %e, "link-state propagation: cannot set the port down"),
                                }
                            }
                        }
                        std::thread::sleep(LINK_STATE_POLL);
                    }
                    // Never leave a port down on exit.
                    for (i, f) in forced.iter().enumerate() {
                        if *f {
                            let _ = netdev::set_admin_up(&names[i], true);
                        }
                    }
                })?
        };
        Ok(LinkState {
            stop,
            handle: Some(handle),
            propagations,
        })
    }

    /// Stops the thread (setting up any port it set down).
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.propagations.load(Ordering::Relaxed)
    }
}

/// What the keeper lent that still fits: the kept links of the ports
/// whose interface is still the same (by index), and the kept fallback
/// maps if the queue count did not change.
fn adopt_lent(
    lent: Option<custody::Bundle>,
    names: [&str; 2],
    ifindex: [u32; 2],
    queues: u32,
) -> ([Option<(OwnedFd, AttachMode)>; 2], Option<FallbackMaps>) {
    let mut held_links: [Option<(OwnedFd, AttachMode)>; 2] = [None, None];
    let mut maps = None;
    if let Some(b) = lent {
        let mut fds = b.fds.into_iter();
        let (l, a, c) = (fds.next(), fds.next(), fds.next());
        let links: Vec<OwnedFd> = fds.collect();
        for (p, link) in b.header.ports.iter().zip(links) {
            let Some(i) = names.iter().position(|n| *n == p.ifname) else {
                continue;
            };
            let live = fallback::link_ifindex(link.as_fd()).unwrap_or(0);
            if p.ifindex == ifindex[i] && live == ifindex[i] {
                let mode = if p.attach == "native" {
                    AttachMode::Native
                } else {
                    AttachMode::Generic
                };
                held_links[i] = Some((link, mode));
            } else {
                warn!(ifname = %p.ifname, "the kept link belongs to an interface that is gone; attaching afresh");
            }
        }
        if let (Some(l), Some(a), Some(c)) = (l, a, c) {
            match FallbackMaps::adopt(l, a, c) {
                Ok(m) if m.queues == queues => maps = Some(m),
                Ok(m) => warn!(
                    kept = m.queues,
                    now = queues,
                    "the inline queue count changed; new fallback maps"
                ),
                Err(e) => warn!(error = %e, "the kept fallback maps are unusable; new ones"),
            }
        }
    }
    (held_links, maps)
}

/// Attaches port `i`'s fallback program `prog`: into the kept link if
/// there is one (`BPF_LINK_UPDATE`), else with a new link in the mode the
/// peer's driver allows, falling back from native to generic under
/// `xdp.mode = auto`.
#[allow(clippy::too_many_arguments)]
fn attach_port(
    cfg: &Config,
    i: usize,
    names: [&str; 2],
    ifindex: [u32; 2],
    prog: OwnedFd,
    xsks: XskMap,
    maps: &FallbackMaps,
    held: Option<(OwnedFd, AttachMode)>,
) -> Result<XdpAttachment, XdpError> {
    let (name, peer) = (names[i], names[1 - i]);
    let attachment = match held {
        Some((link, mode)) => {
            fallback::link_update(link.as_fd(), prog.as_fd()).map_err(|source| {
                XdpError::Attach {
                    ifname: name.to_string(),
                    mode,
                    source,
                }
            })?;
            info!(ifname = name, attach = %mode, "took the inline port over from the kernel fallback (BPF_LINK_UPDATE)");
            XdpAttachment::from_link(link, prog, xsks, mode)
        }
        None => {
            let (mode, why) = inline_attach_mode(cfg.xdp_mode, peer);
            match bpf::attach_prog(prog, xsks, ifindex[i], name, mode) {
                Ok(a) => {
                    info!(ifname = name, attach = %mode, reason = %why, "inline fallback program attached");
                    a
                }
                Err((_, e @ (XdpError::Permission { .. } | XdpError::AlreadyAttached { .. }))) => {
                    return Err(e)
                }
                Err((xsks, e))
                    if mode == AttachMode::Native
                        && cfg.xdp_mode == tapline_config::xdp::XdpMode::Auto =>
                {
                    warn!(ifname = name, error = %e, "native XDP unavailable, falling back to generic mode");
                    let insns = fallback::program(i as u32, ifindex[1 - i], xsks.fd.as_fd(), maps);
                    let prog = bpf::load_insns(&insns, "tapline_inline", name)?;
                    bpf::attach_prog(prog, xsks, ifindex[i], name, AttachMode::Generic)
                        .map_err(|(_, e)| e)?
                }
                Err((_, e)) => return Err(e),
            }
        }
    };
    Ok(attachment)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::sys::{fake, Syscall};

    const BPF_MAP_CREATE: i32 = 0;
    const BPF_MAP_UPDATE_ELEM: i32 = 2;
    const BPF_PROG_LOAD: i32 = 5;
    const BPF_OBJ_GET_INFO_BY_FD: i32 = 15;
    const BPF_LINK_CREATE: i32 = 28;
    const BPF_LINK_UPDATE: i32 = 29;
    const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

    /// A fake kernel whose peer driver is `i40e` (so an inline port asks
    /// for native mode) and whose native attach fails with EOPNOTSUPP;
    /// returns the bpf commands it saw (LINK_CREATE with its flags).
    /// The bpf commands the fake saw, with the flags of a LINK_CREATE.
    type Seen = Rc<RefCell<Vec<(i32, u32)>>>;

    fn fake_kernel() -> (fake::FakeGuard, Seen) {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let log = seen.clone();
        // Map fd -> the words of its BPF_MAP_CREATE.
        let mut maps: std::collections::HashMap<u32, Vec<u32>> = Default::default();
        let guard = fake::install(move |call| {
            Some(match *call {
                Syscall::Socket { .. } => fake::dummy_fd(),
                Syscall::Mmap { fd, len, .. } if fd >= 0 => fake::anonymous_map(len),
                Syscall::Mmap { .. } | Syscall::Munmap { .. } => return None,
                Syscall::Ioctl { .. } => fake::answer_drvinfo(call, "i40e"),
                Syscall::Bpf { .. } => {
                    let (cmd, words) = fake::bpf_words(call);
                    let flags = if cmd == BPF_LINK_CREATE { words[3] } else { 0 };
                    if cmd != BPF_OBJ_GET_INFO_BY_FD {
                        log.borrow_mut().push((cmd, flags));
                    }
                    match cmd {
                        BPF_MAP_CREATE => {
                            let fd = fake::dummy_fd().expect("/dev/null");
                            maps.insert(fd as u32, words[..5].to_vec());
                            Ok(fd)
                        }
                        BPF_OBJ_GET_INFO_BY_FD => fake::answer_map_info(call, &maps[&words[0]]),
                        BPF_PROG_LOAD => fake::dummy_fd(),
                        BPF_MAP_UPDATE_ELEM | BPF_LINK_UPDATE => Ok(0),
                        BPF_LINK_CREATE if flags == XDP_FLAGS_DRV_MODE => {
                            Err(fake::errno(libc::EOPNOTSUPP))
                        }
                        BPF_LINK_CREATE => fake::dummy_fd(),
                        other => panic!("unexpected bpf command {other}"),
                    }
                }
                other => panic!("unexpected syscall {other:?}"),
            })
        });
        (guard, seen)
    }

    fn port_program(maps: &FallbackMaps) -> (XskMap, OwnedFd) {
        let xsks = XskMap::create(1, "in1").unwrap();
        let insns = fallback::program(0, 8, xsks.fd.as_fd(), maps);
        let prog = bpf::load_insns(&insns, "tapline_inline", "in1").unwrap();
        (xsks, prog)
    }

    /// An inline port whose peer's driver takes native redirects is
    /// attached natively; when the driver refuses (EOPNOTSUPP) under
    /// `xdp.mode = auto`, the program is loaded again and attached in
    /// generic mode.
    #[test]
    fn inline_port_falls_back_from_native_to_generic() {
        let (_fake, seen) = fake_kernel();
        let cfg = Config::parse("[interfaces]\ninline-1 = \"in1\"\ninline-2 = \"in2\"\n").unwrap();
        let maps = FallbackMaps::create(1, FallbackAction::Forward).unwrap();
        let (xsks, prog) = port_program(&maps);
        seen.borrow_mut().clear();
        let a = attach_port(&cfg, 0, ["in1", "in2"], [7, 8], prog, xsks, &maps, None).unwrap();
        assert_eq!(a.mode, AttachMode::Generic);
        assert_eq!(
            *seen.borrow(),
            vec![
                (BPF_LINK_CREATE, XDP_FLAGS_DRV_MODE),
                (BPF_PROG_LOAD, 0),
                (BPF_LINK_CREATE, XDP_FLAGS_SKB_MODE),
            ]
        );
    }

    /// A forced native mode fails instead; a link kept by the keeper is
    /// taken over with `BPF_LINK_UPDATE` in its mode, with no new link.
    #[test]
    fn forced_native_fails_and_a_kept_link_is_updated_in_place() {
        let (_fake, seen) = fake_kernel();
        let cfg = Config::parse(
            "[interfaces]\ninline-1 = \"in1\"\ninline-2 = \"in2\"\n[xdp]\nmode = \"native-copy\"\n",
        )
        .unwrap();
        let maps = FallbackMaps::create(1, FallbackAction::Forward).unwrap();
        let (xsks, prog) = port_program(&maps);
        let err =
            attach_port(&cfg, 0, ["in1", "in2"], [7, 8], prog, xsks, &maps, None).unwrap_err();
        assert!(
            matches!(
                err,
                XdpError::Attach {
                    mode: AttachMode::Native,
                    ..
                }
            ),
            "{err}"
        );
        let (xsks, prog) = port_program(&maps);
        seen.borrow_mut().clear();
        let link = crate::sys::own_fd(fake::dummy_fd().unwrap() as i32);
        let a = attach_port(
            &cfg,
            0,
            ["in1", "in2"],
            [7, 8],
            prog,
            xsks,
            &maps,
            Some((link, AttachMode::Native)),
        )
        .unwrap();
        assert_eq!(a.mode, AttachMode::Native);
        assert_eq!(*seen.borrow(), vec![(BPF_LINK_UPDATE, 0)]);
    }
}
