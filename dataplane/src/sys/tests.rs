//! The ethtool and interface-flag paths against the fake kernel: what is
//! read from the kernel's buffers, what is written back, and which calls
//! are skipped when nothing changes.

use std::cell::RefCell;
use std::rc::Rc;

use super::fake;
use super::*;

const ETHTOOL_GFLAGS: u32 = 0x25;
const ETHTOOL_SFLAGS: u32 = 0x26;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETHTOOL_GFEATURES: u32 = 0x3a;
const ETHTOOL_SFEATURES: u32 = 0x3b;
const FEATURES: usize = 40;

/// A NIC with 40 features `f0`..`f39`, two of them renamed, and the
/// active bits in `active` (bit i = feature i).
fn feature_names() -> Vec<String> {
    (0..FEATURES)
        .map(|i| match i {
            2 => "tx-vlan-stag-hw-insert".to_string(),
            35 => "rx-vlan-hw-parse".to_string(),
            i => format!("f{i}"),
        })
        .collect()
}

/// Installs a fake NIC answering the ethtool feature commands; returns the
/// words of every `ETHTOOL_SFEATURES` it received.
fn fake_nic(active: u64) -> (fake::FakeGuard, Rc<RefCell<Vec<Vec<u32>>>>) {
    let sets = Rc::new(RefCell::new(Vec::new()));
    let log = sets.clone();
    let guard = fake::install(move |call| {
        Some(match *call {
            Syscall::Socket { .. } => fake::dummy_fd(),
            Syscall::Ioctl { .. } => {
                assert_eq!(fake::ioctl_ifname(call), "nic0");
                let blocks = FEATURES.div_ceil(32);
                match fake::ethtool_cmd(call) {
                    ETHTOOL_GSSET_INFO => {
                        // SAFETY: ethtool_sset_info with one data word: 6 words.
                        let w = unsafe { fake::ethtool_words(call, 6) };
                        assert_eq!(w[2], 1 << 4, "asks for ETH_SS_FEATURES");
                        w[4] = FEATURES as u32;
                        Ok(0)
                    }
                    ETHTOOL_GSTRINGS => {
                        // SAFETY: 3 words, then 40 strings of 32 bytes.
                        let w = unsafe { fake::ethtool_words(call, 3 + FEATURES * 8) };
                        assert_eq!((w[1], w[2]), (4, FEATURES as u32));
                        let mut bytes = vec![0u8; FEATURES * 32];
                        for (i, n) in feature_names().iter().enumerate() {
                            bytes[i * 32..i * 32 + n.len()].copy_from_slice(n.as_bytes());
                        }
                        for (i, c) in bytes.chunks(4).enumerate() {
                            w[3 + i] = u32::from_ne_bytes(c.try_into().unwrap());
                        }
                        Ok(0)
                    }
                    ETHTOOL_GFEATURES => {
                        // SAFETY: 2 words, then blocks of 4.
                        let w = unsafe { fake::ethtool_words(call, 2 + blocks * 4) };
                        assert_eq!(w[1] as usize, blocks);
                        for b in 0..blocks {
                            w[2 + b * 4 + 2] = (active >> (32 * b)) as u32;
                        }
                        Ok(0)
                    }
                    ETHTOOL_SFEATURES => {
                        // SAFETY: 2 words, then blocks of 2.
                        let w = unsafe { fake::ethtool_words(call, 2 + blocks * 2) };
                        log.borrow_mut().push(w.to_vec());
                        Ok(0)
                    }
                    other => panic!("unexpected ethtool command {other:#x}"),
                }
            }
            other => panic!("unexpected syscall {other:?}"),
        })
    });
    (guard, sets)
}

#[test]
fn ethtool_feature_finds_the_bit_by_name_and_reads_its_active_state() {
    let (_fake, _) = fake_nic(1 << 35);
    assert_eq!(
        ethtool_feature("nic0", "rx-vlan-hw-parse").unwrap(),
        Some(true)
    );
    assert_eq!(
        ethtool_feature("nic0", "tx-vlan-stag-hw-insert").unwrap(),
        Some(false)
    );
    assert_eq!(ethtool_feature("nic0", "no-such-feature").unwrap(), None);
}

#[test]
fn ethtool_set_feature_writes_the_valid_and_requested_bits_of_its_block() {
    let (_fake, sets) = fake_nic(0);
    ethtool_set_feature("nic0", "rx-vlan-hw-parse", true).unwrap();
    ethtool_set_feature("nic0", "tx-vlan-stag-hw-insert", false).unwrap();
    // A feature the NIC does not have is left alone: no SFEATURES.
    ethtool_set_feature("nic0", "no-such-feature", true).unwrap();
    assert_eq!(
        *sets.borrow(),
        vec![
            // cmd, 2 blocks, block 0 (valid, requested), block 1.
            vec![ETHTOOL_SFEATURES, 2, 0, 0, 1 << 3, 1 << 3],
            vec![ETHTOOL_SFEATURES, 2, 1 << 2, 0, 0, 0],
        ]
    );
}

/// Installs a NIC whose legacy flags start at `flags`; returns the values
/// of every `ETHTOOL_SFLAGS`.
fn fake_flags(flags: u32) -> (fake::FakeGuard, Rc<RefCell<Vec<u32>>>) {
    let sets = Rc::new(RefCell::new(Vec::new()));
    let log = sets.clone();
    let mut current = flags;
    let guard = fake::install(move |call| {
        Some(match *call {
            Syscall::Socket { .. } => fake::dummy_fd(),
            Syscall::Ioctl { .. } => {
                // SAFETY: ethtool_value is 2 words.
                let w = unsafe { fake::ethtool_words(call, 2) };
                match w[0] {
                    ETHTOOL_GFLAGS => w[1] = current,
                    ETHTOOL_SFLAGS => {
                        current = w[1];
                        log.borrow_mut().push(w[1]);
                    }
                    other => panic!("unexpected ethtool command {other:#x}"),
                }
                Ok(0)
            }
            other => panic!("unexpected syscall {other:?}"),
        })
    });
    (guard, sets)
}

#[test]
fn ethtool_set_flags_writes_only_a_change_and_keeps_other_flags() {
    let tags = ETH_FLAG_TXVLAN | ETH_FLAG_RXVLAN;
    let (_fake, sets) = fake_flags(tags | 1);
    assert_eq!(ethtool_flags("nic0").unwrap(), tags | 1);
    // Already set: no write.
    ethtool_set_flags("nic0", tags, tags).unwrap();
    assert!(sets.borrow().is_empty());
    // Cleared, the unrelated bit kept.
    ethtool_clear_flags("nic0", tags).unwrap();
    assert_eq!(*sets.borrow(), vec![1]);
    // Cleared already: no second write.
    ethtool_clear_flags("nic0", tags).unwrap();
    assert_eq!(sets.borrow().len(), 1);
}

#[test]
fn set_if_up_writes_the_flags_only_when_iff_up_changes() {
    let writes = Rc::new(RefCell::new(Vec::new()));
    let log = writes.clone();
    let mut flags = (libc::IFF_UP | libc::IFF_BROADCAST) as libc::c_short;
    let _fake = fake::install(move |call| {
        Some(match *call {
            Syscall::Socket { .. } => fake::dummy_fd(),
            Syscall::Ioctl { request, ifr, .. } => {
                assert_eq!(fake::ioctl_ifname(call), "veth-x");
                // SAFETY: the ifreq of `if_ioctl`, valid during the call.
                unsafe {
                    if request == libc::SIOCGIFFLAGS {
                        (*ifr).ifr_ifru.ifru_flags = flags;
                    } else {
                        assert_eq!(request, libc::SIOCSIFFLAGS);
                        flags = (*ifr).ifr_ifru.ifru_flags;
                        log.borrow_mut().push(flags);
                    }
                }
                Ok(0)
            }
            other => panic!("unexpected syscall {other:?}"),
        })
    });
    set_if_up("veth-x", true).unwrap();
    assert!(writes.borrow().is_empty(), "already up: nothing written");
    set_if_up("veth-x", false).unwrap();
    assert_eq!(*writes.borrow(), vec![libc::IFF_BROADCAST as libc::c_short]);
    assert_eq!(if_flags("veth-x").unwrap(), libc::IFF_BROADCAST as u32);
    // A name that does not fit an ifreq fails before any call.
    let long = "x".repeat(libc::IFNAMSIZ);
    assert_eq!(
        if_flags(&long).unwrap_err().raw_os_error(),
        Some(libc::ENAMETOOLONG)
    );
}

#[test]
fn errors_of_the_fake_reach_the_caller_as_os_errors() {
    let _fake = fake::install(|call| match call {
        Syscall::IfNameToIndex { .. } => Some(Err(fake::errno(libc::ENODEV))),
        _ => None,
    });
    assert_eq!(
        if_nametoindex("gone0").unwrap_err().raw_os_error(),
        Some(libc::ENODEV)
    );
}
