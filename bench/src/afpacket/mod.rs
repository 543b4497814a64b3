//! tapline-bench's AF_PACKET peers: the kernel-socket baseline of the
//! inline and passive benchmarks, run as their own process inside a lab
//! namespace (`tapline-bench peer af-packet-fwd | af-packet-read`).
//!
//! Each peer uses plain AF_PACKET sockets bound to one interface
//! (`ETH_P_ALL`, promiscuous through a `PACKET_MR_PROMISC` membership the
//! kernel drops when the socket closes, `PACKET_IGNORE_OUTGOING` so a
//! forwarder never sees its own transmissions, large socket buffers), with
//! batched system calls: `recvmmsg` with `MSG_WAITFORONE` blocks until one
//! frame is there and then takes whatever else is queued, up to the batch;
//! `sendmmsg` hands a whole batch to the other interface. The kernel's
//! receive drops (socket buffer full) come from `PACKET_STATISTICS`.
//!
//! The forwarder is a wire: the kernel moves an 802.1Q tag into socket
//! metadata before a packet socket sees the frame, so it is read back from
//! `PACKET_AUXDATA` and put into the frame again before it is sent. The
//! reader counts frames and bytes as delivered by the socket (a tag moved to
//! metadata is not counted) and reads the headers of each frame, as a
//! consumer would.
//!
//! Both speak one JSON object per line on stdout: `{"event":"ready"}` once
//! their sockets are bound, the reader a `progress` event with its frame
//! count whenever it grew, and after SIGTERM or SIGINT a `done` event with
//! their counters, then they exit 0. Errors go to stderr with a non-zero
//! exit status.
//!
//! No `unsafe` here: sockets are opened and bound by the dataplane's
//! [`RawSocket`]; batched I/O, socket options and the signal descriptor come
//! from `nix`. `PACKET_STATISTICS` and `PACKET_ADD_MEMBERSHIP`, which `nix`
//! does not name, are declared with its `sockopt_impl!`: the expansion is
//! nix's own `getsockopt`/`setsockopt` over the `libc` structs, which are
//! plain integers (any bytes the kernel writes are a valid value).
//!
//! The sockets, batches and loops are here; [`process`] is the peer
//! process around them (signals, JSON events, threads).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders,
};
use nix::sys::time::{TimeVal, TimeValLike};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};
use serde::{Deserialize, Serialize};
use tapline_dataplane::xdp::RawSocket;

mod process;
#[cfg(test)]
mod tests;

pub use process::{run_forwarder, run_reader};

/// Frames per `recvmmsg`/`sendmmsg` unless told otherwise.
pub const DEFAULT_BATCH: usize = 64;
/// Most frames per call: the kernel caps `vlen` at `UIO_MAXIOV`.
pub const MAX_BATCH: usize = 1024;
/// Receive buffer of each socket (forced past `rmem_max`: the peers run as
/// root), so a short stall of the process does not become kernel drops.
const RECV_BUFFER_BYTES: usize = 32 << 20;
/// Send buffer of each socket.
const SEND_BUFFER_BYTES: usize = 8 << 20;
/// How long a blocking receive or send waits before the thread looks at
/// the stop flag again.
const IO_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest a worker keeps taking queued frames after the stop signal.
const DRAIN_TIME: Duration = Duration::from_millis(500);
/// How often the main thread checks for a signal or a thread that ended.
const SIGNAL_POLL_MS: u16 = 100;
/// Attempts at a batch remainder the kernel refused for want of buffer
/// space (ENOBUFS, EAGAIN after [`IO_TIMEOUT`]) before it counts as dropped.
const SEND_RETRIES: u32 = 8;
/// Pause between such attempts.
const SEND_RETRY_PAUSE: Duration = Duration::from_micros(50);
/// Receive batches between two reads of `PACKET_STATISTICS`, whose
/// counters are 32 bits wide and reset on each read: reading often keeps
/// them far from wrapping.
const STATS_EVERY_BATCHES: u32 = 4096;
/// Ethernet header: destination and source MAC, ethertype.
const ETH_HEADER_BYTES: usize = 14;
/// Both MAC addresses, which an 802.1Q tag follows.
const MAC_ADDRS_BYTES: usize = 12;
/// An 802.1Q tag (TPID and TCI).
const VLAN_TAG_BYTES: usize = 4;
/// The default TPID when the kernel did not record one.
const ETHERTYPE_VLAN: u16 = 0x8100;
/// Bytes of each frame the reader reads: the Ethernet and IPv4 headers, as
/// much as a classifier looks at.
const TOUCH_BYTES: usize = ETH_HEADER_BYTES + 20;
/// Receive buffers are a multiple of this (a cache line).
const SLOT_ALIGN_BYTES: usize = 64;

sockopt_impl!(
    /// `PACKET_STATISTICS`: frames received and dropped by the kernel since
    /// the last read (the read resets both).
    PacketStatistics,
    GetOnly,
    libc::SOL_PACKET,
    libc::PACKET_STATISTICS,
    libc::tpacket_stats
);

sockopt_impl!(
    /// `PACKET_ADD_MEMBERSHIP`: here `PACKET_MR_PROMISC`, reference-counted
    /// by the kernel and undone when the socket closes.
    PacketAddMembership,
    SetOnly,
    libc::SOL_PACKET,
    libc::PACKET_ADD_MEMBERSHIP,
    libc::packet_mreq
);

/// An AF_PACKET socket on one interface: every protocol, promiscuous, its
/// own transmissions ignored, large buffers, blocking with [`IO_TIMEOUT`].
#[derive(Debug)]
pub struct PacketSocket {
    raw: RawSocket,
    ifname: String,
    /// Largest frame a receive may return, plus room for a restored tag.
    slot_bytes: usize,
}

impl PacketSocket {
    /// Opens and binds a socket on `ifname` (in the caller's namespace).
    pub fn open(ifname: &str) -> Result<PacketSocket> {
        let raw = RawSocket::open(ifname)
            .with_context(|| format!("opening an AF_PACKET socket on {ifname}"))?;
        let ifindex = nix::net::if_::if_nametoindex(ifname)
            .with_context(|| format!("looking up the index of {ifname}"))?;
        let membership = libc::packet_mreq {
            mr_ifindex: ifindex as libc::c_int,
            mr_type: libc::PACKET_MR_PROMISC as u16,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        socket::setsockopt(&raw.fd(), PacketAddMembership, &membership)
            .with_context(|| format!("{ifname}: PACKET_ADD_MEMBERSHIP(PACKET_MR_PROMISC)"))?;
        raw.set_recv_buffer(RECV_BUFFER_BYTES)
            .with_context(|| format!("{ifname}: setting SO_RCVBUF"))?;
        raw.set_send_buffer(SEND_BUFFER_BYTES)
            .with_context(|| format!("{ifname}: setting SO_SNDBUF"))?;
        let timeout = TimeVal::milliseconds(IO_TIMEOUT.as_millis() as i64);
        socket::setsockopt(&raw.fd(), sockopt::ReceiveTimeout, &timeout)
            .with_context(|| format!("{ifname}: setting SO_RCVTIMEO"))?;
        socket::setsockopt(&raw.fd(), sockopt::SendTimeout, &timeout)
            .with_context(|| format!("{ifname}: setting SO_SNDTIMEO"))?;
        let mtu = interface_mtu(ifname)?;
        Ok(PacketSocket {
            raw,
            ifname: ifname.to_string(),
            slot_bytes: slot_bytes(mtu),
        })
    }

    /// Frames the kernel dropped on receive since the last call (the
    /// kernel resets its counter on each read).
    pub fn take_kernel_drops(&self) -> Result<u64> {
        let s = socket::getsockopt(&self.raw.fd(), PacketStatistics)
            .with_context(|| format!("{}: PACKET_STATISTICS", self.ifname))?;
        Ok(u64::from(s.tp_drops))
    }
}

/// The MTU of `ifname` in the calling thread's network namespace, from
/// `ip -j link show` (netlink, which the child inherits from the thread that
/// starts it). `/sys/class/net` would follow the mount namespace instead,
/// which is another namespace's sysfs unless the process was started by
/// `ip netns exec`, and the `SIOCGIFMTU` ioctl would need `unsafe`.
fn interface_mtu(ifname: &str) -> Result<usize> {
    let out = crate::lab::ip(&["-j", "link", "show", "dev", ifname])
        .with_context(|| format!("reading the MTU of {ifname}"))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("parsing `ip -j link show dev {ifname}`"))?;
    parse_mtu(&v).with_context(|| format!("`ip -j link show dev {ifname}` gives no MTU: {v}"))
}

/// The `mtu` of the one link in `ip -j link show dev` output.
fn parse_mtu(links: &serde_json::Value) -> Option<usize> {
    links[0]["mtu"].as_u64()?.try_into().ok()
}

/// Receive buffer per frame for an interface MTU: the Ethernet header, up
/// to two tags beyond the MTU (an in-band inner tag and the one restored
/// from metadata) and the tag room in front, rounded up to a cache line.
fn slot_bytes(mtu: usize) -> usize {
    (VLAN_TAG_BYTES + mtu + ETH_HEADER_BYTES + 2 * VLAN_TAG_BYTES)
        .next_multiple_of(SLOT_ALIGN_BYTES)
}

/// The 802.1Q tag (TPID, TCI) a `struct tpacket_auxdata` reports, if the
/// kernel took one off the frame. The struct is `u32 tp_status, tp_len,
/// tp_snaplen; u16 tp_mac, tp_net, tp_vlan_tci, tp_vlan_tpid`, native
/// endian.
fn vlan_tag(auxdata: &[u8]) -> Option<(u16, u16)> {
    let u16_at = |off: usize| -> Option<u16> {
        Some(u16::from_ne_bytes(
            auxdata.get(off..off + 2)?.try_into().ok()?,
        ))
    };
    let status = u32::from_ne_bytes(auxdata.get(0..4)?.try_into().ok()?);
    if status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tci = u16_at(16)?;
    let tpid = if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
        u16_at(18)?
    } else {
        ETHERTYPE_VLAN
    };
    Some((tpid, tci))
}

/// Where a received frame is inside its slot, after the tag (if any) was
/// put back. The frame was received at offset [`VLAN_TAG_BYTES`] and is
/// `len` bytes long; with a tag, the MAC addresses move 4 bytes forward and
/// the tag goes after them. Returns `(start, len)` of the frame in `slot`.
fn restore_tag(slot: &mut [u8], len: usize, tag: Option<(u16, u16)>) -> (usize, usize) {
    match tag {
        Some((tpid, tci)) if len >= MAC_ADDRS_BYTES => {
            slot.copy_within(VLAN_TAG_BYTES..VLAN_TAG_BYTES + MAC_ADDRS_BYTES, 0);
            slot[MAC_ADDRS_BYTES..MAC_ADDRS_BYTES + 2].copy_from_slice(&tpid.to_be_bytes());
            slot[MAC_ADDRS_BYTES + 2..MAC_ADDRS_BYTES + 4].copy_from_slice(&tci.to_be_bytes());
            (0, len + VLAN_TAG_BYTES)
        }
        _ => (VLAN_TAG_BYTES, len),
    }
}

/// One received frame of a batch.
#[derive(Debug, Clone, Copy)]
struct Received {
    /// Bytes the socket delivered.
    len: usize,
    /// The frame was longer than the slot (`MSG_TRUNC`).
    truncated: bool,
    /// The tag the kernel moved to metadata.
    tag: Option<(u16, u16)>,
}

/// Receive state of one socket: `batch` slots, the `mmsghdr`s and the
/// per-batch frame list, allocated once.
#[derive(Debug)]
struct RxBatch {
    headers: MultiHeaders<()>,
    buf: Vec<u8>,
    slot_bytes: usize,
    frames: Vec<Received>,
    /// Ask for `PACKET_AUXDATA` (to restore tags).
    with_auxdata: bool,
}

impl RxBatch {
    fn new(sock: &PacketSocket, batch: usize, with_auxdata: bool) -> RxBatch {
        let cmsg = with_auxdata.then(|| nix::cmsg_space!(libc::tpacket_auxdata));
        RxBatch {
            headers: MultiHeaders::preallocate(batch, cmsg),
            buf: vec![0; batch * sock.slot_bytes],
            slot_bytes: sock.slot_bytes,
            frames: Vec::with_capacity(batch),
            with_auxdata,
        }
    }

    /// Waits up to [`IO_TIMEOUT`] for a frame (unless `wait` is false), then
    /// takes what is queued, up to the batch. Returns how many frames
    /// arrived (0 on timeout or when nothing is queued).
    fn recv(&mut self, sock: &PacketSocket, wait: bool) -> Result<usize> {
        let RxBatch {
            headers,
            buf,
            slot_bytes,
            frames,
            with_auxdata,
        } = self;
        frames.clear();
        // nix ties the iovecs' borrow to the call, so they are rebuilt per
        // batch; everything they point into is allocated once.
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = buf
            .chunks_mut(*slot_bytes)
            .map(|slot| [IoSliceMut::new(&mut slot[VLAN_TAG_BYTES..])])
            .collect();
        let results = match socket::recvmmsg(
            sock.raw.fd().as_raw_fd(),
            headers,
            iovs.iter_mut(),
            if wait {
                MsgFlags::MSG_WAITFORONE
            } else {
                MsgFlags::MSG_DONTWAIT
            },
            None,
        ) {
            Ok(r) => r,
            // Timeout (SO_RCVTIMEO), a signal, or the link went down (the
            // socket reports ENETDOWN once and keeps working when it is up).
            Err(Errno::EAGAIN | Errno::EINTR | Errno::ENETDOWN) => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("{}: recvmmsg", sock.ifname)),
        };
        for m in results {
            let tag = if *with_auxdata {
                m.cmsgs().ok().and_then(|mut cmsgs| {
                    cmsgs.find_map(|c| match c {
                        ControlMessageOwned::Unknown(u)
                            if u.cmsg_header.cmsg_level == libc::SOL_PACKET
                                && u.cmsg_header.cmsg_type == libc::PACKET_AUXDATA =>
                        {
                            vlan_tag(&u.data_bytes)
                        }
                        _ => None,
                    })
                })
            } else {
                None
            };
            frames.push(Received {
                len: m.bytes,
                truncated: m.flags.contains(MsgFlags::MSG_TRUNC),
                tag,
            });
        }
        Ok(frames.len())
    }

    /// The bytes of frame `i` of the last batch, as the socket delivered
    /// them (no tag restored).
    fn delivered(&self, i: usize) -> &[u8] {
        let start = i * self.slot_bytes + VLAN_TAG_BYTES;
        &self.buf[start..start + self.frames[i].len]
    }
}

/// Send state of one socket: the `mmsghdr`s and the (empty) addresses of a
/// bound socket, allocated once.
#[derive(Debug)]
struct TxBatch {
    headers: MultiHeaders<()>,
    addrs: Vec<Option<()>>,
}

/// What became of a batch handed to [`TxBatch::send`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct SendOutcome {
    sent: u64,
    dropped: u64,
}

impl TxBatch {
    fn new(batch: usize) -> TxBatch {
        TxBatch {
            headers: MultiHeaders::preallocate(batch, None),
            addrs: vec![None; batch],
        }
    }

    /// Sends `frames`, retrying a remainder the kernel refused for want of
    /// buffer space up to [`SEND_RETRIES`] times; a frame refused for any
    /// other reason (EMSGSIZE, ENETDOWN, ...) is dropped alone.
    fn send(&mut self, sock: &PacketSocket, frames: &[[IoSlice<'_>; 1]]) -> SendOutcome {
        let mut out = SendOutcome::default();
        let mut pos = 0;
        let mut retries = 0;
        while pos < frames.len() {
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            match socket::sendmmsg(
                sock.raw.fd().as_raw_fd(),
                &mut self.headers,
                &frames[pos..],
                &self.addrs,
                no_cmsgs,
                MsgFlags::empty(),
            ) {
                // sendmmsg reports an error only when the first message
                // fails; a later failure shows as a short count.
                Ok(r) => {
                    // Never 0 for a non-empty batch; clamped so a surprise
                    // cannot stall or overrun the loop.
                    let n = r.count().clamp(1, frames.len() - pos);
                    out.sent += n as u64;
                    pos += n;
                    retries = 0;
                }
                Err(Errno::ENOBUFS | Errno::EAGAIN | Errno::EINTR) if retries < SEND_RETRIES => {
                    retries += 1;
                    std::thread::sleep(SEND_RETRY_PAUSE);
                }
                Err(Errno::ENOBUFS | Errno::EAGAIN | Errno::EINTR) => {
                    out.dropped += (frames.len() - pos) as u64;
                    break;
                }
                Err(_) => {
                    out.dropped += 1;
                    pos += 1;
                    retries = 0;
                }
            }
        }
        out
    }
}

/// Counters of one forwarding direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardCounts {
    /// Frames handed to the other interface.
    pub forwarded: u64,
    /// Frames received but not sent: truncated, or refused by the other
    /// interface after the retries.
    pub dropped: u64,
    /// Frames the kernel dropped before the socket saw them.
    pub kernel_drops: u64,
}

impl std::ops::Add for ForwardCounts {
    type Output = ForwardCounts;
    fn add(self, o: ForwardCounts) -> ForwardCounts {
        ForwardCounts {
            forwarded: self.forwarded + o.forwarded,
            dropped: self.dropped + o.dropped,
            kernel_drops: self.kernel_drops + o.kernel_drops,
        }
    }
}

/// The life of a worker: it waits for frames until `stop` is set, then
/// takes what is still queued without waiting (for at most
/// [`DRAIN_TIME`]), so frames that arrived before the signal are counted.
#[derive(Debug)]
struct Run<'a> {
    stop: &'a AtomicBool,
    drain_until: Option<Instant>,
    /// Receive batches since `PACKET_STATISTICS` was last read.
    batches: u32,
}

impl<'a> Run<'a> {
    fn new(stop: &'a AtomicBool) -> Run<'a> {
        Run {
            stop,
            drain_until: None,
            batches: 0,
        }
    }

    /// Whether the next receive may wait for a frame.
    fn wait(&mut self) -> bool {
        // Relaxed: the flag carries no data; the threads are joined
        // afterwards.
        if self.drain_until.is_none() && self.stop.load(Ordering::Relaxed) {
            self.drain_until = Some(Instant::now() + DRAIN_TIME);
        }
        self.drain_until.is_none()
    }

    /// Whether to read `PACKET_STATISTICS` after a receive of `n` frames:
    /// when idle, and every [`STATS_EVERY_BATCHES`] batches.
    fn stats_due(&mut self, n: usize) -> bool {
        self.batches += 1;
        let due = n == 0 || self.batches >= STATS_EVERY_BATCHES;
        if due {
            self.batches = 0;
        }
        due
    }

    /// Whether the worker is done after a receive of `n` frames.
    fn done(&self, n: usize) -> bool {
        self.drain_until
            .is_some_and(|t| n == 0 || Instant::now() >= t)
    }
}

/// Forwards everything `rx` receives out of `tx` until `stop` is set.
pub fn forward_one_way(
    rx: &PacketSocket,
    tx: &PacketSocket,
    batch: usize,
    stop: &AtomicBool,
) -> Result<ForwardCounts> {
    let mut rxb = RxBatch::new(rx, batch, true);
    let mut txb = TxBatch::new(batch);
    let mut counts = ForwardCounts::default();
    // (offset in the receive buffer, length) of each frame to send.
    let mut placed: Vec<(usize, usize)> = Vec::with_capacity(batch);
    let mut run = Run::new(stop);
    loop {
        let n = rxb.recv(rx, run.wait())?;
        if run.stats_due(n) {
            counts.kernel_drops += rx.take_kernel_drops()?;
        }
        // Put the tags back, then send the slots that hold whole frames.
        let slot_bytes = rxb.slot_bytes;
        placed.clear();
        for (i, (slot, f)) in rxb.buf.chunks_mut(slot_bytes).zip(&rxb.frames).enumerate() {
            if f.truncated {
                counts.dropped += 1;
                continue;
            }
            let (start, len) = restore_tag(slot, f.len, f.tag);
            placed.push((i * slot_bytes + start, len));
        }
        let slices: Vec<[IoSlice<'_>; 1]> = placed
            .iter()
            .map(|&(start, len)| [IoSlice::new(&rxb.buf[start..start + len])])
            .collect();
        let o = txb.send(tx, &slices);
        counts.forwarded += o.sent;
        counts.dropped += o.dropped;
        if run.done(n) {
            break;
        }
    }
    counts.kernel_drops += rx.take_kernel_drops()?;
    Ok(counts)
}

/// Counters of the reader.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCounts {
    /// Frames received.
    pub received: u64,
    /// Their bytes, as the socket delivered them.
    pub bytes: u64,
    /// Frames the kernel dropped before the socket saw them.
    pub kernel_drops: u64,
}

/// Receives and counts frames on `sock` until `stop` is set, reading the
/// first [`TOUCH_BYTES`] of each. `received` follows the frame count as it
/// grows.
pub fn read(
    sock: &PacketSocket,
    batch: usize,
    stop: &AtomicBool,
    received: &AtomicU64,
) -> Result<ReadCounts> {
    let mut rxb = RxBatch::new(sock, batch, false);
    let mut counts = ReadCounts::default();
    let mut digest = 0u64;
    let mut run = Run::new(stop);
    loop {
        let n = rxb.recv(sock, run.wait())?;
        if run.stats_due(n) {
            counts.kernel_drops += sock.take_kernel_drops()?;
        }
        for i in 0..n {
            let frame = rxb.delivered(i);
            counts.received += 1;
            counts.bytes += frame.len() as u64;
            digest = frame[..frame.len().min(TOUCH_BYTES)]
                .iter()
                .fold(digest, |d, &b| d.rotate_left(5) ^ u64::from(b));
        }
        if n > 0 {
            // Relaxed: a progress report, read by the main thread alone.
            received.store(counts.received, Ordering::Relaxed);
        }
        if run.done(n) {
            break;
        }
    }
    std::hint::black_box(digest);
    counts.kernel_drops += sock.take_kernel_drops()?;
    Ok(counts)
}

/// Checks a `--batch` value.
fn check_batch(batch: usize) -> Result<()> {
    ensure!(
        (1..=MAX_BATCH).contains(&batch),
        "--batch {batch}: use 1 to {MAX_BATCH}"
    );
    Ok(())
}
