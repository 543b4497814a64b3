//! Lab topologies: network namespaces joined by veth pairs.
//!
//! Every namespace is owned by a [`Netns`] guard that deletes it on drop,
//! also when a test panics; deleting a namespace destroys the veths in it
//! (and so their peers). Names carry a per-process prefix so labs of
//! parallel tests and of several processes never collide.
//!
//! ```text
//! inline:   [gen] g0 ==veth== i1 [dut] i2 ==veth== s0 [sink]
//! passive:  [tap] t0 ==veth== p1 [dut]
//! chain:    inline, plus one namespace per inline tool k = 1..=N, joined
//!           to the dut by two veths, h{k}a ==veth== a, h{k}b ==veth== b:
//!
//!           [gen] g0 ==veth== i1 [dut] i2 ==veth== s0 [sink]
//!                            h1a h1b ... hNa hNb
//!                             ||  ||      ||  ||
//!                             a   b       a   b
//!                            [tool1] ... [toolN]    each: a <-> b through
//!                                                   br0 or tc mirred
//! ```
//!
//! A hop is a tool reached through two interfaces: side `a` faces
//! inline-1, side `b` faces inline-2, and the tool bridges `a <-> b` (as
//! Suricata or Snort do in inline af-packet mode). The lab emulates a tool
//! with a [`ToolKind`]: a Linux bridge made into a wire, or two `tc mirred`
//! redirects. [`Lab::tool_link`] and [`Lab::tool_drop_udp_port`] make a
//! tool fail or drop one flow, for the chain's failure tests.
//!
//! # Real NICs instead of veth pairs
//!
//! [`Nics`] (`tapline-bench --iface ROLE=IFNAME`, set process-wide with
//! [`set_external`]) cables links of the lab with test NICs: a link whose
//! two ends are both given gets no veth pair; each NIC is moved from this
//! process's network namespace into its lab namespace under the lab's
//! name (`ip link set dev ens1f0 netns PREFIX-gen name g0`) and set up, so
//! everything a benchmark does on the interfaces (XDP, AF_XDP, tc) works
//! unchanged. A role is the lab's interface name (`g0`, `i1`, `i2`, `s0`,
//! `t0`, `p1`, `hKa`, `hKb`), qualified by its namespace where the name
//! alone is ambiguous: `toolK:a`, `toolK:b`, and for a sensor `M` the pair
//! `dut:M`, `sen-M:e0`. The cabling must be explicit: a link with one end
//! given is refused, as are unknown roles, NICs that are missing, held by
//! another lab, bridge or bond ports, or carry global addresses (a
//! management interface); a NIC without carrier after it came up gets a
//! warning.
//!
//! Before moving a NIC the lab records it in
//! `/run/tapline-bench/PREFIX.json` ([`NIC_STATE_DIR`]). Dropping the lab,
//! and [`teardown`] (`tapline-bench lab down`, also from a later process),
//! move every recorded NIC back under its original name, and up again if it
//! was, before the namespaces are deleted: deleting a namespace would
//! return a physical NIC under the lab's name and destroy a veth. The
//! record also keeps what the lab and the benchmarks may change on a NIC,
//! and a returned NIC gets it back: its XDP programs are detached (one a
//! killed DUT left behind), its promiscuous mode and VLAN offload flags are
//! restored. When a NIC cannot be moved back, the namespaces and the record
//! stay, so `tapline-bench lab down --prefix PREFIX` can try again.
//!
//! A process whose drops will not run (killed by a signal) returns the NICs
//! of its labs with [`return_all_nics`]; `tapline-bench` does so on SIGINT
//! and SIGTERM.

#![forbid(unsafe_code)]

mod custody;
mod ethtool;
mod netns;
mod nics;
mod scenario;
mod tools;
mod topology;

pub use custody::{return_all_nics, teardown, Teardown};
pub use ethtool::STAG_OFFLOADS;
pub use netns::{
    ip, link_state, namespaces, privileged, run, rx_packets, unique_prefix, veth, LinkState, Netns,
    SKIP_PRIVILEGED_VAR,
};
pub use nics::{
    external, nics_used, set_external, NicAssignment, NicInfo, Nics, Role, NIC_STATE_DIR,
};
pub use scenario::{ifs, Scenario};
pub use tools::{mirred_redirect, tc, ToolKind, UdpPort, DEFAULT_HOPS, MAX_HOPS};
pub use topology::Lab;
