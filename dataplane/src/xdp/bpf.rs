//! The XSKMAP redirect program, built from raw BPF instructions, and its
//! attachment through a BPF link.
//!
//! No libbpf, no clang: the program is six instructions, identical to what
//! clang emits for `return bpf_redirect_map(&xsks, ctx->rx_queue_index,
//! XDP_PASS);`. Frames for a queue without a socket in the map take the
//! `XDP_PASS` default and reach the kernel stack, as if tapline were absent.
//!
//! Attaching with `BPF_LINK_CREATE` ties the program to the link fd: when the
//! process exits, even by SIGKILL, the kernel detaches it. Netlink
//! attachments would outlive the process.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use super::{AttachMode, XdpError};
use crate::sys;

const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_DELETE_ELEM: libc::c_int = 3;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_LINK_CREATE: libc::c_int = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`: `BPF_XDP`.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_PASS: i32 = 2;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Offset of `rx_queue_index` in `struct xdp_md`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u8,
    /// dst in the low nibble, src in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

impl BpfInsn {
    pub(crate) const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        BpfInsn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
}

// Opcode pieces from linux/bpf.h and linux/bpf_common.h.
const BPF_LDX: u8 = 0x01;
const BPF_LD: u8 = 0x00;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_MEM: u8 = 0x60;
const BPF_IMM: u8 = 0x00;
const BPF_MOV: u8 = 0xb0;
const BPF_K: u8 = 0x00;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// The redirect program for an XSKMAP whose fd is `map_fd`.
pub(crate) fn redirect_program(map_fd: i32) -> [BpfInsn; 6] {
    [
        // r2 = ctx->rx_queue_index
        BpfInsn::new(BPF_LDX | BPF_MEM | BPF_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // r1 = &xsks (ld_imm64 with a map fd the verifier turns into a pointer)
        BpfInsn::new(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        BpfInsn::new(0, 0, 0, 0, 0),
        // r3 = XDP_PASS: the action when the map has no socket for the queue
        BpfInsn::new(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        // r0 = bpf_redirect_map(r1, r2, r3)
        BpfInsn::new(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        BpfInsn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

fn name16(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (d, b) in out[..15].iter_mut().zip(s.bytes()) {
        *d = b;
    }
    out
}

/// `BPF_MAP_CREATE` of a map with 4-byte keys.
pub(crate) fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    name: &str,
) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        map_name: name16(name),
        ..Default::default()
    };
    // SAFETY: `attr` is the BPF_MAP_CREATE prefix of `union bpf_attr` and
    // holds no pointers.
    let fd = unsafe { sys::bpf(BPF_MAP_CREATE, &mut attr) }?;
    Ok(sys::own_fd(fd))
}

/// `BPF_MAP_UPDATE_ELEM` with a 4-byte key. `V` must be the map's value
/// type (its size is the map's value size).
pub(crate) fn update_elem<V: sys::Pod>(
    map: BorrowedFd<'_>,
    key: &u32,
    value: &V,
) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const u32 as u64,
        value: value as *const V as u64,
        ..Default::default()
    };
    // SAFETY: `key` and `value` outlive the call; the kernel reads the map's
    // key and value sizes from them, which the caller matches.
    unsafe { sys::bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
}

/// `BPF_MAP_LOOKUP_ELEM` with a 4-byte key into `out`, which must hold the
/// map's whole value (for a per-CPU map: one value per possible CPU).
pub(crate) fn lookup_elem<V: sys::Pod>(
    map: BorrowedFd<'_>,
    key: &u32,
    out: &mut [V],
) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key as *const u32 as u64,
        value: out.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `key` and `out` outlive the call; `out` is writable and, as
    // the caller guarantees, at least as large as what the kernel writes;
    // `Pod` makes any bytes a valid `V`.
    unsafe { sys::bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) }.map(drop)
}

/// An `XSKMAP`: rx queue index -> AF_XDP socket.
#[derive(Debug)]
pub struct XskMap {
    pub(crate) fd: OwnedFd,
}

impl XskMap {
    pub fn create(max_entries: u32, ifname: &str) -> Result<XskMap, XdpError> {
        let mut attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries,
            map_name: name16("tapline_xsks"),
            ..Default::default()
        };
        // SAFETY: `attr` is the BPF_MAP_CREATE prefix of `union bpf_attr` and
        // holds no pointers.
        let fd = unsafe { sys::bpf(BPF_MAP_CREATE, &mut attr) }.map_err(|source| {
            XdpError::from_os(
                "BPF_MAP_CREATE(XSKMAP)",
                ifname,
                source,
                Some("CAP_BPF and CAP_NET_ADMIN"),
            )
        })?;
        Ok(XskMap {
            fd: sys::own_fd(fd),
        })
    }

    /// Points `queue` at the socket `xsk`.
    pub fn set(&self, queue: u32, xsk: BorrowedFd<'_>) -> io::Result<()> {
        let key = queue;
        let value = xsk.as_raw_fd() as u32;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..Default::default()
        };
        // SAFETY: `key` and `value` outlive the call and are the 4-byte
        // key/value sizes the map was created with.
        unsafe { sys::bpf(BPF_MAP_UPDATE_ELEM, &mut attr) }.map(drop)
    }

    /// Removes the socket for `queue`; its frames go to the stack again.
    pub fn clear(&self, queue: u32) -> io::Result<()> {
        let key = queue;
        let mut attr = MapElemAttr {
            map_fd: self.fd.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            ..Default::default()
        };
        // SAFETY: `key` outlives the call and is the map's 4-byte key.
        unsafe { sys::bpf(BPF_MAP_DELETE_ELEM, &mut attr) }.map(drop)
    }
}

/// A loaded redirect program attached to an interface through a link.
/// Dropping it (or the process dying) detaches the program.
#[derive(Debug)]
pub struct XdpAttachment {
    // Field order matters for drop: the link goes first, then the program,
    // then the map.
    pub(crate) link: OwnedFd,
    _prog: OwnedFd,
    pub map: XskMap,
    pub mode: AttachMode,
}

impl XdpAttachment {
    /// The BPF link (to hand a duplicate to the link keeper).
    pub fn link(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }

    /// An attachment over an existing link (already running `prog`).
    pub(crate) fn from_link(link: OwnedFd, prog: OwnedFd, map: XskMap, mode: AttachMode) -> Self {
        XdpAttachment {
            link,
            _prog: prog,
            map,
            mode,
        }
    }
}

/// Loads the redirect program for `map`.
pub(crate) fn load_program(map: &XskMap, ifname: &str) -> Result<OwnedFd, XdpError> {
    load_insns(
        &redirect_program(map.fd.as_raw_fd()),
        "tapline_redir",
        ifname,
    )
}

/// Loads an XDP program from raw instructions, with the verifier's log in
/// the error when it is rejected.
pub(crate) fn load_insns(insns: &[BpfInsn], name: &str, ifname: &str) -> Result<OwnedFd, XdpError> {
    let license = c"Dual MIT/GPL";
    const LOG_BYTES: usize = 4096;
    let mut log = vec![0u8; LOG_BYTES];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: LOG_BYTES as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name16(name),
        expected_attach_type: BPF_XDP,
        ..Default::default()
    };
    // SAFETY: `insns`, `license` and `log` outlive the call; `log_size` is the
    // writable length of `log`.
    match unsafe { sys::bpf(BPF_PROG_LOAD, &mut attr) } {
        Ok(fd) => Ok(sys::own_fd(fd)),
        Err(source) if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
            Err(XdpError::from_os(
                "BPF_PROG_LOAD(XDP)",
                ifname,
                source,
                Some("CAP_BPF and CAP_NET_ADMIN"),
            ))
        }
        Err(source) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(XdpError::ProgLoad {
                verifier_log: String::from_utf8_lossy(&log[..end]).trim().to_string(),
                source,
            })
        }
    }
}

/// Loads the program for `map` and attaches it to `ifindex` in `mode`.
pub fn attach(
    map: XskMap,
    ifindex: u32,
    ifname: &str,
    mode: AttachMode,
) -> Result<XdpAttachment, (XskMap, XdpError)> {
    let prog = match load_program(&map, ifname) {
        Ok(p) => p,
        Err(e) => return Err((map, e)),
    };
    attach_prog(prog, map, ifindex, ifname, mode)
}

/// Attaches the loaded `prog` (which uses `map`) to `ifindex` in `mode`
/// with a new BPF link.
pub(crate) fn attach_prog(
    prog: OwnedFd,
    map: XskMap,
    ifindex: u32,
    ifname: &str,
    mode: AttachMode,
) -> Result<XdpAttachment, (XskMap, XdpError)> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type: BPF_XDP,
        flags: match mode {
            AttachMode::Native => XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => XDP_FLAGS_SKB_MODE,
        },
    };
    // SAFETY: the BPF_LINK_CREATE prefix of `union bpf_attr`; no pointers.
    match unsafe { sys::bpf(BPF_LINK_CREATE, &mut attr) } {
        Ok(fd) => Ok(XdpAttachment {
            link: sys::own_fd(fd),
            _prog: prog,
            map,
            mode,
        }),
        Err(source) => {
            let err = match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => XdpError::from_os(
                    "BPF_LINK_CREATE(XDP)",
                    ifname,
                    source,
                    Some("CAP_NET_ADMIN and CAP_BPF"),
                ),
                Some(libc::EBUSY | libc::EEXIST) => XdpError::AlreadyAttached {
                    ifname: ifname.to_string(),
                    source,
                },
                _ => XdpError::Attach {
                    ifname: ifname.to_string(),
                    mode,
                    source,
                },
            };
            Err((map, err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding matches what clang emits for the equivalent C
    /// (`llvm-objdump -d` of `bpf_redirect_map(&xsks, ctx->rx_queue_index,
    /// XDP_PASS)`), byte for byte, with map fd 7 filled in.
    #[test]
    fn redirect_program_encoding() {
        let prog = redirect_program(7);
        let bytes: Vec<[u8; 8]> = prog
            .iter()
            .map(|i| {
                let mut b = [0u8; 8];
                b[0] = i.code;
                b[1] = i.regs;
                b[2..4].copy_from_slice(&i.off.to_le_bytes());
                b[4..8].copy_from_slice(&i.imm.to_le_bytes());
                b
            })
            .collect();
        assert_eq!(
            bytes,
            vec![
                [0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00], // r2 = *(u32 *)(r1 + 16)
                [0x18, 0x11, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00], // r1 = map fd 7
                [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
                [0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00], // r3 = 2
                [0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00], // call 51
                [0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // exit
            ]
        );
    }

    #[test]
    fn attr_layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(std::mem::size_of::<LinkCreateAttr>(), 16);
        // Up to and including expected_attach_type: 72 bytes in linux/bpf.h.
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::size_of::<BpfInsn>(), 8);
    }
}
