//! The kernel fallback of the inline ports: an XDP program that hands a
//! frame to its queue's AF_XDP socket only while that queue's worker holds
//! a valid *lease*, and otherwise applies the *fallback action* itself:
//! forward the frame straight to the other inline port, or drop it.
//!
//! ```text
//! lease = leases[rx_queue_index]                 (BPF_F_MMAPABLE array)
//! if lease.deadline_ns >= bpf_ktime_get_ns():    (CLOCK_MONOTONIC)
//!     r = bpf_redirect_map(&xsks, rx_queue_index, XDP_PASS)
//!     if r != XDP_PASS: return r                 (the socket takes it)
//! elif lease.deadline_ns > 1 and cmpxchg(deadline, 1):
//!     counters[port].lease_expiries++            (counted once per expiry)
//! if actions[0] == FORWARD:
//!     counters[port].forwarded++; return bpf_redirect(peer_ifindex, 0)
//! counters[port].dropped++; return XDP_DROP
//! ```
//!
//! The worker renews its lease with a plain store into the memory-mapped
//! lease array (no syscall on the hot path): the deadline is CLOCK_MONOTONIC
//! (a vDSO read) plus `stall_ms`. A dead, stopped or starved worker stops
//! renewing and the kernel takes over within `stall_ms`; a worker that polls
//! again renews and takes the traffic back. A queue without a socket (the
//! process died and its sockets left the XSKMAP) falls through to the
//! fallback at once.
//!
//! The lease array, the action array and the per-CPU counters outlive any
//! one program: a restarted dataplane loads a new program over the same
//! maps and swaps it into the surviving BPF link (`BPF_LINK_UPDATE`), so
//! leases, the action and the counters carry over (see [`super::custody`]).
//!
//! Built by hand like [`super::bpf::redirect_program`]: no clang, no libbpf.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::bpf::{self, BpfInsn};
use super::XdpError;
use crate::sys;

/// What the kernel does with an inline port's frames while no worker holds
/// the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackAction {
    /// Forward to the other inline port (fail-open, every hop skipped).
    Forward,
    /// Drop (a fail-closed hop is in the chain and not bypassed).
    Drop,
}

impl FallbackAction {
    const FORWARD: u32 = tapline_segment::fallback::ACTION_FORWARD;
    const DROP: u32 = tapline_segment::fallback::ACTION_DROP;

    fn to_raw(self) -> u32 {
        match self {
            FallbackAction::Forward => Self::FORWARD,
            FallbackAction::Drop => Self::DROP,
        }
    }

    fn from_raw(v: u32) -> FallbackAction {
        if v == Self::FORWARD {
            FallbackAction::Forward
        } else {
            FallbackAction::Drop
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackAction::Forward => "forward",
            FallbackAction::Drop => "drop",
        }
    }
}

impl std::fmt::Display for FallbackAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

use tapline_segment::fallback::{
    PortFallbackCounters, COUNTERS_PER_PORT, C_DROPPED, C_EXPIRIES, C_FORWARDED, LEASE_VALUE_BYTES,
    PORTS,
};

/// The deadline the kernel writes when it finds a lease expired (and the
/// dataplane when it hands over on exit): "was leased, now expired".
/// 0 means "never leased".
pub(crate) const LEASE_EXPIRED: u64 = 1;

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_F_MMAPABLE: u32 = 1 << 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_LINK_UPDATE: libc::c_int = 29;

/// The three maps the fallback program reads; they survive a restart.
#[derive(Debug)]
pub struct FallbackMaps {
    pub leases: OwnedFd,
    pub actions: OwnedFd,
    pub counters: OwnedFd,
    /// Entries of the lease array (the inline queue count).
    pub queues: u32,
    mapping: Arc<sys::Mmap>,
}

#[repr(C)]
#[derive(Default)]
struct MapInfo {
    map_type: u32,
    id: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    fd: u32,
    info_len: u32,
    info: u64,
}

fn map_info(fd: BorrowedFd<'_>) -> io::Result<MapInfo> {
    let mut info = MapInfo::default();
    let mut attr = InfoAttr {
        fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<MapInfo>() as u32,
        info: &mut info as *mut MapInfo as u64,
    };
    // SAFETY: `info` outlives the call and `info_len` is its size; the
    // kernel writes at most that many bytes.
    unsafe { sys::bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(info)
}

impl FallbackMaps {
    /// Creates fresh maps for `queues` inline queues, with `action` in force
    /// and every lease "never leased" (so the fallback applies until a
    /// worker renews).
    pub fn create(queues: u32, action: FallbackAction) -> Result<FallbackMaps, XdpError> {
        let err = |op, source| XdpError::from_os(op, "inline", source, Some("CAP_BPF"));
        let leases = bpf::create_map(
            BPF_MAP_TYPE_ARRAY,
            4,
            LEASE_VALUE_BYTES,
            queues.max(1),
            BPF_F_MMAPABLE,
            "tapline_lease",
        )
        .map_err(|e| err("BPF_MAP_CREATE(lease)", e))?;
        let actions = bpf::create_map(BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0, "tapline_fbact")
            .map_err(|e| err("BPF_MAP_CREATE(action)", e))?;
        let counters = bpf::create_map(
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            8,
            PORTS * COUNTERS_PER_PORT,
            0,
            "tapline_fbcnt",
        )
        .map_err(|e| err("BPF_MAP_CREATE(counters)", e))?;
        let maps = Self::adopt(leases, actions, counters)
            .map_err(|e| XdpError::from_os("mmap(lease)", "inline", e, None))?;
        maps.set_action(action)
            .map_err(|e| XdpError::from_os("BPF_MAP_UPDATE_ELEM(action)", "inline", e, None))?;
        Ok(maps)
    }

    /// Takes over maps handed back by the keeper: checks their shapes and
    /// maps the lease array.
    pub(crate) fn adopt(leases: OwnedFd, actions: OwnedFd, counters: OwnedFd) -> io::Result<Self> {
        let li = map_info(leases.as_fd())?;
        let ai = map_info(actions.as_fd())?;
        let ci = map_info(counters.as_fd())?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if li.map_type != BPF_MAP_TYPE_ARRAY
            || li.value_size != LEASE_VALUE_BYTES
            || li.map_flags & BPF_F_MMAPABLE == 0
        {
            return Err(bad(
                "the lease map is not a memory-mappable array of leases",
            ));
        }
        if ai.map_type != BPF_MAP_TYPE_ARRAY || ai.value_size != 4 {
            return Err(bad("the action map has the wrong shape"));
        }
        if ci.map_type != BPF_MAP_TYPE_PERCPU_ARRAY
            || ci.max_entries != PORTS * COUNTERS_PER_PORT
            || ci.value_size != 8
        {
            return Err(bad("the counter map has the wrong shape"));
        }
        let len = (li.max_entries * LEASE_VALUE_BYTES) as usize;
        let mapping = Arc::new(sys::Mmap::shared_file(leases.as_fd(), len, true)?);
        Ok(FallbackMaps {
            leases,
            actions,
            counters,
            queues: li.max_entries,
            mapping,
        })
    }

    /// Sets the fallback action (one map update; in force for the next
    /// frame on every CPU).
    pub fn set_action(&self, action: FallbackAction) -> io::Result<()> {
        bpf::update_elem(self.actions.as_fd(), &0u32, &action.to_raw())
    }

    /// The action in force.
    pub fn action(&self) -> io::Result<FallbackAction> {
        let mut v = 0u32;
        bpf::lookup_elem(self.actions.as_fd(), &0u32, std::slice::from_mut(&mut v))?;
        Ok(FallbackAction::from_raw(v))
    }

    /// The lease of `queue`, for its worker.
    /// The lease of `queue`, for its worker; once `handover` is set the
    /// worker stops renewing and expires it instead.
    pub fn lease(&self, queue: u32, stall_ns: u64, handover: Arc<AtomicBool>) -> Option<Lease> {
        (queue < self.queues).then(|| Lease {
            mapping: self.mapping.clone(),
            offset: (queue * LEASE_VALUE_BYTES) as usize,
            stall_ns,
            last: 0,
            handover,
        })
    }

    fn word(&self, queue: u32, index: usize) -> &AtomicU64 {
        assert!(queue < self.queues && index < 2);
        let off = (queue * LEASE_VALUE_BYTES) as usize + index * 8;
        // SAFETY: `off + 8 <= len` (checked above, the mapping holds
        // `queues` values of 16 bytes), the mapping is page aligned so
        // `off` is 8-byte aligned, and it lives as long as `self`.
        unsafe { &*self.mapping.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// Marks every lease expired: the kernel carries every queue from the
    /// next frame on (a stopping dataplane hands over, a starting one makes
    /// sure no stale lease sends frames to a socket not yet filled).
    pub(crate) fn expire_all(&self) {
        for q in 0..self.queues {
            self.word(q, 0).store(LEASE_EXPIRED, Ordering::Release);
        }
    }

    /// Deadlines of every queue (CLOCK_MONOTONIC ns; 0 never leased, 1
    /// expired).
    pub fn deadlines(&self) -> Vec<u64> {
        (0..self.queues)
            .map(|q| self.word(q, 0).load(Ordering::Acquire))
            .collect()
    }

    /// Takeovers counted by the workers (sum over queues).
    pub fn takeovers(&self) -> u64 {
        (0..self.queues)
            .map(|q| self.word(q, 1).load(Ordering::Relaxed))
            .sum()
    }

    /// The kernel's counters of `port` (0 inline-1, 1 inline-2), summed
    /// over CPUs.
    pub(crate) fn port_counters(&self, port: u32) -> io::Result<PortFallbackCounters> {
        let cpus = tapline_segment::fallback::possible_cpus()?;
        let mut v = vec![0u64; cpus];
        let mut read = |k: i32| -> io::Result<u64> {
            let key = port * COUNTERS_PER_PORT + k as u32;
            bpf::lookup_elem(self.counters.as_fd(), &key, &mut v)?;
            Ok(v.iter().sum())
        };
        Ok(PortFallbackCounters {
            forwarded: read(C_FORWARDED)?,
            dropped: read(C_DROPPED)?,
            lease_expiries: read(C_EXPIRIES)?,
        })
    }
}

/// A worker's lease on one queue: renewed with a plain store into the
/// memory-mapped lease array.
#[derive(Debug)]
pub struct Lease {
    mapping: Arc<sys::Mmap>,
    offset: usize,
    stall_ns: u64,
    /// The deadline this worker last wrote.
    last: u64,
    /// Set when the dataplane stops: hand the queue to the kernel.
    handover: Arc<AtomicBool>,
}

impl Lease {
    fn words(&self) -> (&AtomicU64, &AtomicU64) {
        // SAFETY: `offset + 16` is within the mapping (checked when the
        // lease was made), 8-byte aligned (page-aligned mapping, 16-byte
        // values), and the `Arc` keeps the mapping alive.
        unsafe {
            let p = self.mapping.as_ptr().add(self.offset);
            (&*p.cast::<AtomicU64>(), &*p.add(8).cast::<AtomicU64>())
        }
    }

    /// Renews the lease until `now_ns + stall_ns` (`now_ns`: CLOCK_MONOTONIC,
    /// the clock of the kernel's `bpf_ktime_get_ns`). Stores only when the
    /// deadline moved by [`RENEW_GRANULARITY_NS`] or more, so the kernel's
    /// cache line is written at most a thousand times a second, not once
    /// per poll. When the worker takes the queue back from the kernel,
    /// returns how long ago the lease had expired (ns; 0 when the kernel or
    /// a stopping dataplane had marked it expired).
    ///
    /// Not the coarse clock: on a tickless (NOHZ) idle system it can lag
    /// by far more than a tick, and a deadline computed from a stale value
    /// expires early (measured: 61 lapses in 12 s of an idle worker).
    #[inline]
    pub fn renew(&mut self, now_ns: u64) -> Option<u64> {
        let deadline = now_ns + self.stall_ns;
        if deadline < self.last + RENEW_GRANULARITY_NS {
            return None;
        }
        if self.handover.load(Ordering::Relaxed) {
            self.expire();
            return None;
        }
        let (d, takeovers) = self.words();
        // Relaxed: the kernel side reads the word with a plain load (or a
        // cmpxchg); no other memory is published through it.
        let old = d.load(Ordering::Relaxed);
        d.store(deadline, Ordering::Relaxed);
        // `old` 1: the kernel marked it expired; another past deadline: a
        // previous process's lease (it died or stopped).
        let taken = old != 0 && old < now_ns;
        if taken {
            takeovers.store(takeovers.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        self.last = deadline;
        taken.then(|| {
            if old == LEASE_EXPIRED {
                0
            } else {
                now_ns - old
            }
        })
    }

    /// Hands the queue to the kernel now (a stopping worker).
    pub(crate) fn expire(&mut self) {
        self.words().0.store(LEASE_EXPIRED, Ordering::Release);
        self.last = LEASE_EXPIRED;
    }

    /// Longest the worker may sleep in poll(2) without losing the lease:
    /// a quarter of it, so a late wake-up still renews in time.
    pub(crate) fn max_wait_ms(&self) -> u32 {
        ((self.stall_ns / 4_000_000) as u32).max(1)
    }
}

/// A worker rewrites its deadline when it moved by this much.
pub(crate) const RENEW_GRANULARITY_NS: u64 = 1_000_000;

// ---------------------------------------------------------------------------
// The program.

const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_ATOMIC: u8 = 0xc0;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_ADD: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_JA: u8 = 0x00;
const BPF_JEQ: u8 = 0x10;
const BPF_JGT: u8 = 0x20;
const BPF_JNE: u8 = 0x50;
const BPF_JLT: u8 = 0xa0;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
/// `BPF_CMPXCHG` (`0xf0 | BPF_FETCH`).
const BPF_CMPXCHG: i32 = 0xf1;
const BPF_PSEUDO_MAP_FD: u8 = 1;

const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_KTIME_GET_NS: i32 = 5;
const FN_REDIRECT: i32 = 23;
const FN_REDIRECT_MAP: i32 = 51;

const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

/// A jump target of [`Asm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Fallback,
    Expired,
    Drop,
    Exit,
}

/// A tiny assembler: instructions plus forward jumps to labels.
#[derive(Debug, Default)]
struct Asm {
    insns: Vec<BpfInsn>,
    labels: Vec<(Label, usize)>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(BpfInsn::new(code, dst, src, off, imm));
    }
    fn mov_reg(&mut self, dst: u8, src: u8) {
        self.op(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
    }
    fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.op(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
    }
    fn add_imm(&mut self, dst: u8, imm: i32) {
        self.op(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm);
    }
    fn ld_map(&mut self, dst: u8, fd: BorrowedFd<'_>) {
        self.op(
            BPF_LD | BPF_DW | BPF_IMM,
            dst,
            BPF_PSEUDO_MAP_FD,
            0,
            fd.as_raw_fd(),
        );
        self.op(0, 0, 0, 0, 0);
    }
    fn call(&mut self, f: i32) {
        self.op(BPF_JMP | BPF_CALL, 0, 0, 0, f);
    }
    fn exit(&mut self) {
        self.op(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    }
    fn jmp(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.op(BPF_JMP | code, dst, src, 0, imm);
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.insns.len()));
    }
    /// `counters[key]++` on this CPU (clobbers r0-r5).
    fn count(&mut self, counters: BorrowedFd<'_>, key: i32) {
        self.op(BPF_ST | BPF_MEM | BPF_W, R10, 0, -8, key);
        self.mov_reg(R2, R10);
        self.add_imm(R2, -8);
        self.ld_map(R1, counters);
        self.call(FN_MAP_LOOKUP_ELEM);
        // if r0 == 0 skip the three instructions below
        self.op(BPF_JMP | BPF_JEQ | BPF_K, R0, 0, 2, 0);
        self.mov_imm(R1, 1);
        self.op(BPF_STX | BPF_DW | BPF_ATOMIC, R0, R1, 0, BPF_ADD as i32);
    }
    fn finish(mut self) -> Vec<BpfInsn> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self
                .labels
                .iter()
                .find(|(x, _)| *x == l)
                .map(|(_, i)| *i)
                .expect("every label is placed");
            self.insns[at].off = (target as i64 - at as i64 - 1) as i16;
        }
        self.insns
    }
}

/// The fallback program of inline port `port` (0 or 1) whose partner is
/// `peer_ifindex`, over its XSKMAP `xsks` and the shared `maps`.
pub fn program(
    port: u32,
    peer_ifindex: u32,
    xsks: BorrowedFd<'_>,
    maps: &FallbackMaps,
) -> Vec<BpfInsn> {
    let base = (port * COUNTERS_PER_PORT) as i32;
    let counters = maps.counters.as_fd();
    let mut a = Asm::default();
    a.mov_reg(R6, R1);
    a.op(BPF_LDX | BPF_MEM | BPF_W, R7, R6, XDP_MD_RX_QUEUE_INDEX, 0);
    a.op(BPF_STX | BPF_MEM | BPF_W, R10, R7, -4, 0);
    a.mov_reg(R2, R10);
    a.add_imm(R2, -4);
    a.ld_map(R1, maps.leases.as_fd());
    a.call(FN_MAP_LOOKUP_ELEM);
    a.jmp(BPF_JEQ | BPF_K, R0, 0, 0, Label::Fallback);
    a.mov_reg(R8, R0);
    a.op(BPF_LDX | BPF_MEM | BPF_DW, R9, R8, 0, 0);
    a.call(FN_KTIME_GET_NS);
    a.jmp(BPF_JGT | BPF_X, R0, R9, 0, Label::Expired);
    // The lease holds: to the socket, if the queue has one.
    a.ld_map(R1, xsks);
    a.mov_reg(R2, R7);
    a.mov_imm(R3, XDP_PASS);
    a.call(FN_REDIRECT_MAP);
    a.jmp(BPF_JNE | BPF_K, R0, 0, XDP_PASS, Label::Exit);
    a.jmp(BPF_JA, 0, 0, 0, Label::Fallback);
    // Expired: the first frame to notice marks it and counts the expiry.
    a.label(Label::Expired);
    a.jmp(
        BPF_JLT | BPF_K,
        R9,
        0,
        LEASE_EXPIRED as i32 + 1,
        Label::Fallback,
    );
    a.mov_reg(R0, R9);
    a.mov_imm(R1, LEASE_EXPIRED as i32);
    a.op(BPF_STX | BPF_DW | BPF_ATOMIC, R8, R1, 0, BPF_CMPXCHG);
    a.jmp(BPF_JNE | BPF_X, R0, R9, 0, Label::Fallback);
    a.count(counters, base + C_EXPIRIES);
    // The fallback action.
    a.label(Label::Fallback);
    a.op(BPF_ST | BPF_MEM | BPF_W, R10, 0, -8, 0);
    a.mov_reg(R2, R10);
    a.add_imm(R2, -8);
    a.ld_map(R1, maps.actions.as_fd());
    a.call(FN_MAP_LOOKUP_ELEM);
    a.jmp(BPF_JEQ | BPF_K, R0, 0, 0, Label::Drop);
    a.op(BPF_LDX | BPF_MEM | BPF_W, R1, R0, 0, 0);
    a.jmp(
        BPF_JNE | BPF_K,
        R1,
        0,
        FallbackAction::FORWARD as i32,
        Label::Drop,
    );
    a.count(counters, base + C_FORWARDED);
    a.mov_imm(R1, peer_ifindex as i32);
    a.mov_imm(R2, 0);
    a.call(FN_REDIRECT);
    a.exit();
    a.label(Label::Drop);
    a.count(counters, base + C_DROPPED);
    a.mov_imm(R0, XDP_DROP);
    a.label(Label::Exit);
    a.exit();
    a.finish()
}

#[repr(C)]
#[derive(Default)]
struct LinkUpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

/// Swaps the program of an XDP link atomically (`BPF_LINK_UPDATE`): frames
/// run the old program up to one instant and the new one from the next.
/// ENOLINK: the link's interface is gone.
pub(crate) fn link_update(link: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = LinkUpdateAttr {
        link_fd: link.as_raw_fd() as u32,
        new_prog_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    // SAFETY: the BPF_LINK_UPDATE prefix of `union bpf_attr`; no pointers.
    unsafe { sys::bpf(BPF_LINK_UPDATE, &mut attr) }.map(drop)
}

#[repr(C)]
#[derive(Default)]
struct LinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    /// `xdp.ifindex` of the union (8-byte aligned in the kernel struct).
    ifindex: u32,
    _rest: [u32; 7],
}

/// The interface an XDP link is attached to (0 when the interface is gone
/// and the link defunct).
pub(crate) fn link_ifindex(link: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = LinkInfo::default();
    let mut attr = InfoAttr {
        fd: link.as_raw_fd() as u32,
        info_len: std::mem::size_of::<LinkInfo>() as u32,
        info: &mut info as *mut LinkInfo as u64,
    };
    // SAFETY: `info` outlives the call and `info_len` is its size.
    unsafe { sys::bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    Ok(info.ifindex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let mut a = Asm::default();
        a.jmp(BPF_JEQ | BPF_K, R0, 0, 0, Label::Exit);
        a.mov_imm(R0, 1);
        a.mov_imm(R0, 2);
        a.label(Label::Exit);
        a.exit();
        let p = a.finish();
        assert_eq!(p[0].off, 2);
        assert_eq!(p[0].code, 0x15);
    }

    #[test]
    fn lease_layout_fits_the_value() {
        assert_eq!(std::mem::size_of::<LinkUpdateAttr>(), 16);
        assert_eq!(std::mem::size_of::<MapInfo>(), 24);
        assert_eq!(LEASE_VALUE_BYTES, 16);
    }
}
