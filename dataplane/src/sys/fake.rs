//! The fake kernel of the unit tests: a thread-local handler that sees every
//! [`Syscall`] before the kernel does and may answer it (`Some`) or let it
//! through (`None`). Tests run on their own threads, so one test's fake
//! never sees another's calls.
//!
//! ```ignore
//! let _fake = fake::install(|call| match call {
//!     Syscall::Bind { .. } => Some(Err(fake::errno(libc::EBUSY))),
//!     _ => None,
//! });
//! ```

use std::cell::RefCell;
use std::io;
use std::os::fd::IntoRawFd;

use super::Syscall;

type Handler = Box<dyn FnMut(&Syscall) -> Option<io::Result<i64>>>;

thread_local! {
    static FAKE: RefCell<Option<Handler>> = const { RefCell::new(None) };
}

/// Removes the thread's fake when dropped.
#[derive(Debug)]
pub(crate) struct FakeGuard(());

impl Drop for FakeGuard {
    fn drop(&mut self) {
        FAKE.with(|f| f.borrow_mut().take());
    }
}

/// Installs `handler` as this thread's fake kernel until the guard drops.
pub fn install<F>(handler: F) -> FakeGuard
where
    F: FnMut(&Syscall) -> Option<io::Result<i64>> + 'static,
{
    FAKE.with(|f| *f.borrow_mut() = Some(Box::new(handler)));
    FakeGuard(())
}

/// The fake's answer to `call`, if a fake is installed and answers it.
pub(super) fn intercept(call: &Syscall) -> Option<io::Result<i64>> {
    FAKE.with(|f| {
        // A handler that makes a real call itself (e.g. `anonymous_map`)
        // must not re-enter: take it out while it runs.
        let mut handler = f.borrow_mut().take()?;
        let answer = handler(call);
        let mut slot = f.borrow_mut();
        if slot.is_none() {
            *slot = Some(handler);
        }
        answer
    })
}

/// An errno as the kernel would return it.
pub fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// A real, harmless fd (`/dev/null`) to stand for a socket or BPF object:
/// the code under test owns and closes it as it would the kernel's.
pub(crate) fn dummy_fd() -> io::Result<i64> {
    Ok(i64::from(std::fs::File::open("/dev/null")?.into_raw_fd()))
}

/// Real anonymous memory of `len` bytes standing for a socket's ring
/// mapping (`Mmap` unmaps it on drop as it would the kernel's).
pub(crate) fn anonymous_map(len: usize) -> io::Result<i64> {
    // SAFETY: a fresh anonymous mapping at an address the kernel picks
    // touches no existing memory.
    unsafe {
        super::real(Syscall::Mmap {
            addr: std::ptr::null_mut(),
            len,
            prot: libc::PROT_READ | libc::PROT_WRITE,
            flags: libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            fd: -1,
            offset: 0,
        })
    }
}

/// Writes `value` into the out-parameter of a `GetSockOpt` call, as the
/// kernel would, and returns its answer.
pub(crate) fn answer_getsockopt<T: super::Pod>(call: &Syscall, value: T) -> io::Result<i64> {
    let Syscall::GetSockOpt {
        value: out, len, ..
    } = *call
    else {
        panic!("answer_getsockopt on {call:?}");
    };
    // SAFETY: the wrapper that built the call passed a writable `T`-sized
    // buffer (asserted below through `len`) and a writable length.
    unsafe {
        assert!(*len as usize >= std::mem::size_of::<T>());
        out.cast::<T>().write_unaligned(value);
        *len = std::mem::size_of::<T>() as libc::socklen_t;
    }
    Ok(0)
}

/// The `bpf(2)` attribute of a `Bpf` call, read as the `u32` words the
/// kernel's `union bpf_attr` prefixes are made of.
pub(crate) fn bpf_words(call: &Syscall) -> (libc::c_int, Vec<u32>) {
    let Syscall::Bpf { cmd, attr, size } = *call else {
        panic!("bpf_words on {call:?}");
    };
    let n = size as usize / 4;
    // SAFETY: the wrapper passed `size` readable bytes at `attr`; every
    // attribute struct is 4-byte aligned.
    let words = unsafe { std::slice::from_raw_parts(attr.cast::<u32>(), n) }.to_vec();
    (cmd, words)
}

/// The interface name of an `Ioctl` call.
pub(crate) fn ioctl_ifname(call: &Syscall) -> String {
    let Syscall::Ioctl { ifr, .. } = *call else {
        panic!("ioctl_ifname on {call:?}");
    };
    // SAFETY: the wrapper passed a valid ifreq.
    let name = unsafe { (*ifr).ifr_name };
    let bytes: Vec<u8> = name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The ethtool command buffer of a `SIOCETHTOOL` call, as 32-bit words:
/// `len` words at the data pointer (the caller knows the command's size).
///
/// # Safety
///
/// `call` must be a `SIOCETHTOOL` ioctl whose buffer holds at least `len`
/// words, and the returned slice must not outlive the call's handling.
pub unsafe fn ethtool_words<'a>(call: &Syscall, len: usize) -> &'a mut [u32] {
    let Syscall::Ioctl { ifr, request, .. } = *call else {
        panic!("ethtool_words on {call:?}");
    };
    assert_eq!(request, libc::SIOCETHTOOL);
    // SAFETY: as the caller guarantees.
    unsafe { std::slice::from_raw_parts_mut((*ifr).ifr_ifru.ifru_data.cast::<u32>(), len) }
}

/// The first word of a `SIOCETHTOOL` buffer: the ethtool command.
pub(crate) fn ethtool_cmd(call: &Syscall) -> u32 {
    // SAFETY: every ethtool buffer starts with its 32-bit command.
    unsafe { ethtool_words(call, 1)[0] }
}

/// Answers an `ETHTOOL_GDRVINFO` ioctl with `driver` as the driver name
/// (at most 31 bytes), as the kernel would.
pub(crate) fn answer_drvinfo(call: &Syscall, driver: &str) -> io::Result<i64> {
    assert_eq!(ethtool_cmd(call), 0x03, "not ETHTOOL_GDRVINFO");
    assert!(driver.len() < 32);
    // SAFETY: ethtool_drvinfo is far longer than these 9 words: cmd, then
    // the 32-byte driver name.
    let w = unsafe { ethtool_words(call, 9) };
    let mut name = [0u8; 32];
    name[..driver.len()].copy_from_slice(driver.as_bytes());
    for (i, c) in name.chunks(4).enumerate() {
        w[1 + i] = u32::from_ne_bytes(c.try_into().expect("4 bytes"));
    }
    Ok(0)
}

/// Answers `BPF_OBJ_GET_INFO_BY_FD` on a map with the first words of a
/// `bpf_map_info` (type, id, key size, value size, max entries, flags), as
/// `BPF_MAP_CREATE` gave them (`create`: that call's attribute words).
pub(crate) fn answer_map_info(call: &Syscall, create: &[u32]) -> io::Result<i64> {
    let (cmd, words) = bpf_words(call);
    assert_eq!(cmd, 15, "not BPF_OBJ_GET_INFO_BY_FD");
    let info_len = words[1] as usize;
    let ptr = (u64::from(words[2]) | (u64::from(words[3]) << 32)) as *mut u32;
    let info = [create[0], 1, create[1], create[2], create[3], create[4]];
    assert!(info_len >= info.len() * 4);
    // SAFETY: the caller's `info` buffer of `info_len` bytes, writable for
    // the call (checked above to hold these six words).
    unsafe { std::ptr::copy_nonoverlapping(info.as_ptr(), ptr, info.len()) };
    Ok(0)
}
