//! The AF_XDP set-up logic against the fake kernel of [`crate::sys::fake`]:
//! bind retries, bind-mode and attach-mode fallback, program attach, the
//! XSKMAP registration and the attach-mode choice of inline ports. No root
//! and no interface needed: every syscall is answered by the fake.

use std::cell::RefCell;
use std::rc::Rc;

use super::*;
use crate::sys::{fake, Syscall};
use tapline_config::xdp::RingSizes;

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_LOAD: i32 = 5;
const BPF_LINK_CREATE: i32 = 28;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_GDRVINFO: u32 = 0x03;
const FAKE_IFINDEX: u32 = 7;

/// What the fake kernel was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// `bind(AF_XDP)` with its `sxdp_flags`.
    BindXdp {
        flags: u16,
        queue: u32,
    },
    /// `BPF_LINK_CREATE` with its XDP flags.
    LinkCreate {
        flags: u32,
    },
    MapUpdate,
    ProgLoad,
}

/// How the fake kernel answers.
#[derive(Default)]
struct Script {
    /// Errnos of the next binds, in order; then binds succeed.
    bind_errors: Vec<i32>,
    /// Binds asking for zero-copy fail with this errno (a veth).
    zerocopy_errno: Option<i32>,
    /// `BPF_LINK_CREATE` in native mode fails with this errno.
    native_attach_errno: Option<i32>,
    /// The driver `ETHTOOL_GDRVINFO` reports.
    driver: &'static str,
}

/// Installs a fake kernel that plays `script`; returns what it saw.
fn fake_kernel(mut script: Script) -> (fake::FakeGuard, Rc<RefCell<Vec<Seen>>>) {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let log = seen.clone();
    script.bind_errors.reverse();
    let guard = fake::install(move |call| {
        Some(match *call {
            Syscall::Socket { .. } => fake::dummy_fd(),
            Syscall::IfNameToIndex { .. } => Ok(i64::from(FAKE_IFINDEX)),
            Syscall::SetSockOpt { .. } => Ok(0),
            Syscall::GetSockOpt { name, .. } if name == libc::XDP_MMAP_OFFSETS => {
                let ring = libc::xdp_ring_offset {
                    producer: 0,
                    consumer: 64,
                    flags: 128,
                    desc: 192,
                };
                fake::answer_getsockopt(
                    call,
                    libc::xdp_mmap_offsets {
                        rx: ring,
                        tx: ring,
                        fr: ring,
                        cr: ring,
                    },
                )
            }
            Syscall::GetSockOpt { name, .. } if name == libc::XDP_OPTIONS => {
                fake::answer_getsockopt(call, libc::xdp_options { flags: 0 })
            }
            // The socket's rings: plain memory. Anonymous maps (the UMEM)
            // are real.
            Syscall::Mmap { fd, len, .. } if fd >= 0 => fake::anonymous_map(len),
            Syscall::Mmap { .. } | Syscall::Munmap { .. } => return None,
            Syscall::Bind { addr, .. } => {
                // SAFETY: `bind_xdp` passes a valid sockaddr_xdp.
                let a = unsafe { *addr.cast::<libc::sockaddr_xdp>() };
                log.borrow_mut().push(Seen::BindXdp {
                    flags: a.sxdp_flags,
                    queue: a.sxdp_queue_id,
                });
                if a.sxdp_flags & libc::XDP_ZEROCOPY != 0 {
                    if let Some(e) = script.zerocopy_errno {
                        return Some(Err(fake::errno(e)));
                    }
                }
                match script.bind_errors.pop() {
                    Some(e) => Err(fake::errno(e)),
                    None => Ok(0),
                }
            }
            Syscall::Bpf { .. } => {
                let (cmd, words) = fake::bpf_words(call);
                match cmd {
                    BPF_MAP_CREATE => fake::dummy_fd(),
                    BPF_PROG_LOAD => {
                        log.borrow_mut().push(Seen::ProgLoad);
                        fake::dummy_fd()
                    }
                    BPF_MAP_UPDATE_ELEM => {
                        log.borrow_mut().push(Seen::MapUpdate);
                        Ok(0)
                    }
                    BPF_LINK_CREATE => {
                        // prog_fd, target_ifindex, attach_type, flags
                        assert_eq!(words[1], FAKE_IFINDEX);
                        let flags = words[3];
                        log.borrow_mut().push(Seen::LinkCreate { flags });
                        match script.native_attach_errno {
                            Some(e) if flags == XDP_FLAGS_DRV_MODE => Err(fake::errno(e)),
                            _ => fake::dummy_fd(),
                        }
                    }
                    other => panic!("unexpected bpf command {other}"),
                }
            }
            Syscall::Ioctl { request, .. } if request == libc::SIOCETHTOOL => {
                match fake::ethtool_cmd(call) {
                    ETHTOOL_GCHANNELS => {
                        // SAFETY: ethtool_channels is 9 words.
                        let w = unsafe { fake::ethtool_words(call, 9) };
                        w[8] = 1; // combined_count
                        Ok(0)
                    }
                    ETHTOOL_GDRVINFO => fake::answer_drvinfo(call, script.driver),
                    other => Err(fake::errno(if other == 0 {
                        libc::EINVAL
                    } else {
                        libc::EOPNOTSUPP
                    })),
                }
            }
            other => panic!("unexpected syscall {other:?}"),
        })
    });
    (guard, seen)
}

const SIZES: RingSizes = RingSizes {
    rx: 64,
    tx: 64,
    fill: 64,
    completion: 64,
};

fn params(mode: BindMode) -> XskParams {
    XskParams {
        ifindex: FAKE_IFINDEX,
        queue: 3,
        rx: true,
        tx: true,
        sizes: SIZES,
        mode,
    }
}

fn binds(seen: &RefCell<Vec<Seen>>) -> Vec<Seen> {
    seen.borrow()
        .iter()
        .filter(|s| matches!(s, Seen::BindXdp { .. }))
        .cloned()
        .collect()
}

/// A queue still held by the previous socket (EBUSY) is retried with a
/// growing delay until the kernel lets it go.
#[test]
fn bind_retries_a_busy_queue() {
    let (_fake, seen) = fake_kernel(Script {
        bind_errors: vec![libc::EBUSY, libc::EBUSY],
        ..Default::default()
    });
    let umem = Arc::new(Umem::new(2048, 64).unwrap());
    let s = XskSocket::bind(&umem, &params(BindMode::Copy), None, "fake0").unwrap();
    assert!(!s.is_zerocopy());
    let flags = libc::XDP_USE_NEED_WAKEUP | libc::XDP_COPY;
    assert_eq!(binds(&seen), vec![Seen::BindXdp { flags, queue: 3 }; 3]);
}

/// A queue that stays busy fails after the bounded retries (1 + 10 binds),
/// with the error naming the interface, queue, mode and errno.
#[test]
fn bind_gives_up_on_a_queue_that_stays_busy() {
    let (_fake, seen) = fake_kernel(Script {
        bind_errors: vec![libc::EBUSY; 20],
        ..Default::default()
    });
    let umem = Arc::new(Umem::new(2048, 64).unwrap());
    let err = XskSocket::bind(&umem, &params(BindMode::Copy), None, "fake0").unwrap_err();
    match &err {
        XdpError::Bind {
            ifname,
            queue,
            mode,
            source,
        } => {
            assert_eq!(
                (ifname.as_str(), *queue, *mode),
                ("fake0", 3, BindMode::Copy)
            );
            assert_eq!(source.raw_os_error(), Some(libc::EBUSY));
        }
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert_eq!(binds(&seen).len(), 11);
}

/// Errors other than EBUSY are not retried.
#[test]
fn bind_does_not_retry_other_errors() {
    let (_fake, seen) = fake_kernel(Script {
        bind_errors: vec![libc::EINVAL],
        ..Default::default()
    });
    let umem = Arc::new(Umem::new(2048, 64).unwrap());
    let err = XskSocket::bind(&umem, &params(BindMode::Copy), None, "fake0").unwrap_err();
    assert!(
        matches!(err, XdpError::Bind { ref source, .. } if source.raw_os_error() == Some(libc::EINVAL))
    );
    assert_eq!(binds(&seen).len(), 1);
}

/// A socket sharing a UMEM passes only `XDP_SHARED_UMEM` (with the owner's
/// fd), never COPY/ZEROCOPY/NEED_WAKEUP (the kernel answers EINVAL).
#[test]
fn shared_umem_bind_passes_only_the_shared_flag() {
    let (_fake, seen) = fake_kernel(Script::default());
    let umem = Arc::new(Umem::new(2048, 64).unwrap());
    let first = XskSocket::bind(&umem, &params(BindMode::ZeroCopy), None, "fake0").unwrap();
    XskSocket::bind(&umem, &params(BindMode::ZeroCopy), first.fd(), "fake1").unwrap();
    let flags = binds(&seen)
        .iter()
        .map(|s| match s {
            Seen::BindXdp { flags, .. } => *flags,
            _ => unreachable!(),
        })
        .collect::<Vec<_>>();
    assert_eq!(
        flags,
        vec![
            libc::XDP_USE_NEED_WAKEUP | libc::XDP_ZEROCOPY,
            libc::XDP_SHARED_UMEM
        ]
    );
}

/// `xdp.mode = auto` on a driver without native XDP: native attach fails,
/// generic is tried and kept.
#[test]
fn auto_attach_falls_back_from_native_to_generic() {
    let (_fake, seen) = fake_kernel(Script {
        native_attach_errno: Some(libc::EOPNOTSUPP),
        ..Default::default()
    });
    let iface = Interface::open("fake0", XdpMode::Auto, false).unwrap();
    assert_eq!(iface.attachment.mode, AttachMode::Generic);
    assert_eq!((iface.ifindex, iface.queues), (FAKE_IFINDEX, 1));
    assert_eq!(
        *seen.borrow(),
        vec![
            Seen::ProgLoad,
            Seen::LinkCreate {
                flags: XDP_FLAGS_DRV_MODE
            },
            Seen::ProgLoad,
            Seen::LinkCreate {
                flags: XDP_FLAGS_SKB_MODE
            },
        ]
    );
}

/// A refused native attach (EPERM: a missing capability) or another
/// program on the interface (EBUSY) is not papered over by a generic
/// attach: the error is the operator's to fix.
#[test]
fn auto_attach_does_not_fall_back_on_permission_or_busy() {
    for (errno, permission) in [(libc::EPERM, true), (libc::EBUSY, false)] {
        let (_fake, seen) = fake_kernel(Script {
            native_attach_errno: Some(errno),
            ..Default::default()
        });
        let err = Interface::open("fake0", XdpMode::Auto, false).unwrap_err();
        assert_eq!(err.is_permission(), permission, "{err}");
        if !permission {
            assert!(matches!(err, XdpError::AlreadyAttached { .. }), "{err}");
        }
        let attaches = seen
            .borrow()
            .iter()
            .filter(|s| matches!(s, Seen::LinkCreate { .. }))
            .count();
        assert_eq!(attaches, 1, "errno {errno}");
    }
}

/// A forced native mode fails instead of falling back.
#[test]
fn forced_native_attach_does_not_fall_back() {
    let (_fake, _seen) = fake_kernel(Script {
        native_attach_errno: Some(libc::EOPNOTSUPP),
        ..Default::default()
    });
    let err = Interface::open("fake0", XdpMode::NativeCopy, false).unwrap_err();
    match err {
        XdpError::Attach { mode, source, .. } => {
            assert_eq!(mode, AttachMode::Native);
            assert_eq!(source.raw_os_error(), Some(libc::EOPNOTSUPP));
        }
        other => panic!("expected an attach error, got {other:?}"),
    }
}

/// Native attach, zero-copy refused (EOPNOTSUPP, as on veth): the group
/// binds in copy mode, reports native-copy and registers the RX socket in
/// the XSKMAP.
#[test]
fn queue_group_falls_back_from_zero_copy_to_copy() {
    let (_fake, seen) = fake_kernel(Script {
        zerocopy_errno: Some(libc::EOPNOTSUPP),
        ..Default::default()
    });
    let iface = Interface::open("fake0", XdpMode::Auto, false).unwrap();
    assert_eq!(iface.attachment.mode, AttachMode::Native);
    let members = [Member {
        iface: &iface,
        queue: 0,
        rx: true,
        tx: true,
    }];
    let geo = Geometry {
        frame_size: 2048,
        frame_count: 64,
        rings: SIZES,
    };
    let group = QueueGroup::open(&members, &geo, XdpMode::Auto).unwrap();
    assert_eq!(
        group.mode,
        PortMode {
            attach: AttachMode::Native,
            bind: BindMode::Copy
        }
    );
    assert_eq!(group.mode.to_string(), "native-copy");
    let after_attach: Vec<Seen> = seen.borrow()[2..].to_vec();
    assert_eq!(
        after_attach,
        vec![
            Seen::BindXdp {
                flags: libc::XDP_USE_NEED_WAKEUP | libc::XDP_ZEROCOPY,
                queue: 0
            },
            Seen::BindXdp {
                flags: libc::XDP_USE_NEED_WAKEUP | libc::XDP_COPY,
                queue: 0
            },
            Seen::MapUpdate,
        ]
    );
}

/// With a generic attach only copy mode is tried.
#[test]
fn queue_group_on_generic_attach_binds_copy_only() {
    let (_fake, seen) = fake_kernel(Script::default());
    let iface = Interface::open("fake0", XdpMode::Generic, false).unwrap();
    let members = [Member {
        iface: &iface,
        queue: 0,
        rx: false,
        tx: true,
    }];
    let geo = Geometry {
        frame_size: 2048,
        frame_count: 64,
        rings: SIZES,
    };
    let group = QueueGroup::open(&members, &geo, XdpMode::Auto).unwrap();
    assert_eq!(group.mode.to_string(), "generic-copy");
    // A TX-only member is not put in the XSKMAP.
    assert_eq!(
        seen.borrow()[2..].to_vec(),
        vec![Seen::BindXdp {
            flags: libc::XDP_USE_NEED_WAKEUP | libc::XDP_COPY,
            queue: 0
        }]
    );
}

/// The inline ports' attach mode follows the peer's driver (ethtool).
#[test]
fn inline_attach_mode_follows_the_peer_driver() {
    for (driver, want) in [
        ("i40e", AttachMode::Native),
        ("mlx5_core", AttachMode::Native),
        ("veth", AttachMode::Generic),
        ("", AttachMode::Generic),
    ] {
        let (_fake, _seen) = fake_kernel(Script {
            driver,
            ..Default::default()
        });
        let (mode, why) = inline_attach_mode(XdpMode::Auto, "peer0");
        assert_eq!(mode, want, "{driver}: {why}");
        let shown = if driver.is_empty() { "unknown" } else { driver };
        assert!(why.contains(&format!("peer0 ({shown})")), "{why}");
    }
    // A forced mode does not ask the driver.
    assert_eq!(
        inline_attach_mode(XdpMode::Generic, "peer0").0,
        AttachMode::Generic
    );
    assert_eq!(
        inline_attach_mode(XdpMode::NativeCopy, "peer0").0,
        AttachMode::Native
    );
}

/// An interface that does not exist (`if_nametoindex` answers ENODEV) is
/// reported by name, before anything is created.
#[test]
fn missing_interface_is_reported_by_name() {
    let _fake = fake::install(|call| match call {
        Syscall::IfNameToIndex { .. } => Some(Err(fake::errno(libc::ENODEV))),
        other => panic!("unexpected syscall {other:?}"),
    });
    let err = Interface::open("gone0", XdpMode::Auto, false).unwrap_err();
    assert!(
        matches!(&err, XdpError::NoSuchInterface { ifname } if ifname == "gone0"),
        "{err}"
    );
}
