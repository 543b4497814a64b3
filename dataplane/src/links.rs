//! The link monitor: a thread that watches the links of the output
//! members (one flag per member for the capture tasks) and of the
//! configured ports (carrier, published in the stats segment for health,
//! and MTU), logging each change once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tracing::{info, warn};

use crate::preflight::{configured, max_mtu};
use crate::stats::Role;
use crate::xdp::{self, Interface};
use tapline_config::Config;
use tapline_segment::StatsSegment;

/// How often the link monitor looks at the members' links.
const LINK_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A configured port the link monitor watches: carrier (published in the
/// segment's `links_down`, logged once per change) and MTU (logged once
/// when it rises above what a UMEM frame holds).
#[derive(Debug)]
struct PortWatch {
    role: Role,
    ifname: String,
    bit: u64,
    up: bool,
    /// Consecutive polls that saw the opposite of `up`.
    flipped: u32,
    mtu_too_big: bool,
}

/// Polls a new link state must persist before it counts: the operational
/// state flickers for a moment when XDP is attached (veth), and a blip
/// shorter than this is not worth a log line or a health change.
const LINK_DEBOUNCE_POLLS: u32 = 3;

/// Watches links: the output members' (admin state and carrier; one flag
/// per member for the capture tasks: a member whose link is down gets no
/// frames, its share is dropped and counted, until it is up again) and the
/// configured ports' (carrier, for health, and MTU).
#[derive(Debug)]
pub(crate) struct LinkMonitor {
    names: Vec<String>,
    pub(crate) flags: Vec<Arc<AtomicBool>>,
    ports: Vec<PortWatch>,
    segment: Arc<StatsSegment>,
    max_mtu: u32,
}

/// The running monitor thread.
#[derive(Debug)]
pub(crate) struct LinkThread(std::thread::JoinHandle<()>);

impl LinkThread {
    pub(crate) fn join(self) {
        let _ = self.0.join();
    }
}

impl PortWatch {
    /// Looks at the link; logs changes. Returns whether it is up.
    fn poll(&mut self, max_mtu: u32) -> bool {
        // Gone (deleted): as good as down.
        let up = xdp::netdev::has_carrier(&self.ifname).unwrap_or_default();
        if up == self.up {
            self.flipped = 0;
        } else {
            self.flipped += 1;
        }
        if self.flipped >= LINK_DEBOUNCE_POLLS {
            self.flipped = 0;
            self.up = up;
            if up {
                info!(role = %self.role, ifname = %self.ifname, "carrier restored: the port forwards again");
            } else {
                warn!(role = %self.role, ifname = %self.ifname, "carrier lost (link down): nothing crosses this port until it comes back; health reports it NOT_SERVING");
            }
        }
        if let Ok(mtu) = xdp::netdev::mtu(&self.ifname) {
            let too_big = mtu > max_mtu;
            if too_big != self.mtu_too_big {
                self.mtu_too_big = too_big;
                if too_big {
                    warn!(role = %self.role, ifname = %self.ifname, mtu, max_mtu, "MTU above what a UMEM frame holds: longer frames are dropped by the kernel (counted in the port's kernel_rx_dropped, or in the interface's own rx drops when the driver drops them before XDP); lower the MTU or raise xdp.frame_size");
                } else {
                    info!(role = %self.role, ifname = %self.ifname, mtu, max_mtu, "MTU fits the UMEM frames again");
                }
            }
        }
        self.up
    }
}

impl LinkMonitor {
    pub(crate) fn new(
        members: &[(usize, Interface)],
        cfg: &Config,
        segment: Arc<StatsSegment>,
    ) -> LinkMonitor {
        let names: Vec<String> = members.iter().map(|(_, m)| m.name.clone()).collect();
        let flags = names
            .iter()
            .map(|n| Arc::new(AtomicBool::new(xdp::netdev::link_up(n).unwrap_or(true))))
            .collect();
        let bit = |role: Role| match role {
            Role::Inline1 => tapline_segment::LINK_DOWN_INLINE_1,
            Role::Inline2 => tapline_segment::LINK_DOWN_INLINE_2,
            _ => tapline_segment::LINK_DOWN_PASSIVE_1,
        };
        let ports = configured(cfg)
            .into_iter()
            .map(|(role, ifname)| PortWatch {
                role,
                ifname: ifname.to_string(),
                bit: bit(role),
                // Until seen otherwise for a few polls: a port down at
                // start is logged once it has stayed down.
                up: true,
                flipped: 0,
                mtu_too_big: false,
            })
            .collect();
        LinkMonitor {
            names,
            flags,
            ports,
            segment,
            max_mtu: max_mtu(cfg.geometry.frame_size),
        }
    }

    /// Polls the configured ports once and publishes their state.
    fn poll_ports(&mut self) {
        let mut down = 0;
        for p in &mut self.ports {
            if !p.poll(self.max_mtu) {
                down |= p.bit;
            }
        }
        self.segment.set_links_down(down);
    }

    /// Starts the thread (none without members or ports).
    pub(crate) fn spawn(mut self, stop: Arc<AtomicBool>) -> std::io::Result<Option<LinkThread>> {
        if self.names.is_empty() && self.ports.is_empty() {
            return Ok(None);
        }
        for (n, f) in self.names.iter().zip(&self.flags) {
            if !f.load(Ordering::Relaxed) {
                warn!(ifname = %n, "output member link is down: its share of the traffic is dropped until it comes up");
            }
        }
        self.poll_ports();
        let h = std::thread::Builder::new()
            .name("tapline-links".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(LINK_POLL);
                    self.poll_ports();
                    for (n, f) in self.names.iter().zip(&self.flags) {
                        // Gone (deleted): as good as down.
                        let up = xdp::netdev::link_up(n).unwrap_or_default();
                        if f.swap(up, Ordering::Relaxed) != up {
                            if up {
                                info!(ifname = %n, "output member link is up");
                            } else {
                                warn!(ifname = %n, "output member link is down: its share of the traffic is dropped until it comes up");
                            }
                        }
                    }
                }
            })?;
        Ok(Some(LinkThread(h)))
    }
}
