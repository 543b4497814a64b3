//! The kernel fallback's maps as the link keeper sees them: the layout of
//! the lease array, the action map and the per-CPU counter map (the
//! dataplane creates the maps and the program that counts into them; this
//! is the part both sides must agree on), and a read-only view of maps
//! held for a dataplane.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::counter::Counter;
use crate::sys::{self, Mmap};

/// Kernel-side counters of one inline port (summed over CPUs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortFallbackCounters {
    /// Frames the fallback forwarded to the other inline port.
    pub forwarded: u64,
    /// Frames the fallback dropped (fail-closed).
    pub dropped: u64,
    /// Leases found expired by a frame (a stalled, stopped or dead worker).
    pub lease_expiries: u64,
}

/// Counter index within a port's block of the per-CPU counter map.
pub const C_FORWARDED: i32 = 0;
pub const C_DROPPED: i32 = 1;
pub const C_EXPIRIES: i32 = 2;
/// Entries of the counter map per port (one spare).
pub const COUNTERS_PER_PORT: u32 = 4;
/// Inline-1 and inline-2.
pub const PORTS: u32 = 2;
/// One lease in the memory-mapped array: `{ deadline_ns, takeovers }`.
pub const LEASE_VALUE_BYTES: u32 = 16;
/// The action map's value for "forward to the other inline port".
pub const ACTION_FORWARD: u32 = 0;
/// The action map's value for "drop".
pub const ACTION_DROP: u32 = 1;

/// The name of an action map value (`forward`, `drop`): any value other
/// than [`ACTION_FORWARD`] drops, as in the program.
pub fn action_name(raw: u32) -> &'static str {
    if raw == ACTION_FORWARD {
        "forward"
    } else {
        "drop"
    }
}

/// The three fallback maps as held by the keeper, without any check of
/// their shapes (that needs `bpf(2)`, which the sidecar's seccomp profile
/// may refuse): the lease array is mapped by its size from the bundle's
/// header.
#[derive(Debug)]
pub struct HeldMaps {
    pub leases: OwnedFd,
    pub actions: OwnedFd,
    pub counters: OwnedFd,
    /// Entries of the lease array (the inline queue count).
    pub queues: u32,
    mapping: Mmap,
}

impl HeldMaps {
    /// Holds maps handed over by a peer; maps the lease array of `queues`
    /// entries.
    pub fn adopt(
        leases: OwnedFd,
        actions: OwnedFd,
        counters: OwnedFd,
        queues: u32,
    ) -> io::Result<HeldMaps> {
        let queues = queues.max(1);
        let len = (queues * LEASE_VALUE_BYTES) as usize;
        let mapping = Mmap::shared_file(leases.as_fd(), len, true)?;
        Ok(HeldMaps {
            leases,
            actions,
            counters,
            queues,
            mapping,
        })
    }

    /// Word `index` (0 deadline, 1 takeovers) of `queue`'s lease.
    fn word(&self, queue: u32, index: usize) -> &AtomicU64 {
        assert!(queue < self.queues && index < 2);
        let off = (queue * LEASE_VALUE_BYTES) as usize + index * 8;
        let c: &Counter = self.mapping.block(off);
        c.atomic()
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

    /// The action in force (`forward` or `drop`).
    pub fn action(&self) -> io::Result<&'static str> {
        let mut v = 0u32;
        sys::map_lookup(self.actions.as_fd(), 0, std::slice::from_mut(&mut v))?;
        Ok(action_name(v))
    }

    /// The kernel's counters of `port` (0 inline-1, 1 inline-2), summed
    /// over CPUs.
    pub fn port_counters(&self, port: u32) -> io::Result<PortFallbackCounters> {
        let cpus = possible_cpus()?;
        let mut v = vec![0u64; cpus];
        let mut read = |k: i32| -> io::Result<u64> {
            let key = port * COUNTERS_PER_PORT + k as u32;
            sys::map_lookup(self.counters.as_fd(), key, &mut v)?;
            Ok(v.iter().sum())
        };
        Ok(PortFallbackCounters {
            forwarded: read(C_FORWARDED)?,
            dropped: read(C_DROPPED)?,
            lease_expiries: read(C_EXPIRIES)?,
        })
    }
}

/// Number of possible CPUs (the per-CPU map's value count), from
/// `/sys/devices/system/cpu/possible` (`0-3`, `0,2-5`).
pub fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(s.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("cpu list {s:?}")))
}

fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut max = 0usize;
    for part in s.split(',') {
        let last = match part.split_once('-') {
            Some((_, b)) => b.parse::<usize>().ok()?,
            None => part.parse::<usize>().ok()?,
        };
        max = max.max(last + 1);
    }
    (max > 0).then_some(max)
}

/// CLOCK_MONOTONIC in nanoseconds (the clock of the lease deadlines and of
/// `bpf_ktime_get_ns`).
pub fn monotonic_now_ns() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0,2-5"), Some(6));
        assert_eq!(parse_cpu_list(""), None);
    }

    #[test]
    fn actions_are_named_as_the_program_reads_them() {
        assert_eq!(action_name(ACTION_FORWARD), "forward");
        assert_eq!(action_name(ACTION_DROP), "drop");
        assert_eq!(action_name(7), "drop");
    }
}
