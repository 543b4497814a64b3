//! Capability preflight: say which capability is missing before touching
//! any interface, instead of failing halfway with a bare EPERM.

use std::fmt;

/// A Linux capability the dataplane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cap {
    NetAdmin,
    NetRaw,
    IpcLock,
    SysAdmin,
    Bpf,
}

impl Cap {
    fn bit(self) -> u32 {
        match self {
            Cap::NetAdmin => 12,
            Cap::NetRaw => 13,
            Cap::IpcLock => 14,
            Cap::SysAdmin => 21,
            Cap::Bpf => 39,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cap::NetAdmin => "CAP_NET_ADMIN",
            Cap::NetRaw => "CAP_NET_RAW",
            Cap::IpcLock => "CAP_IPC_LOCK",
            Cap::SysAdmin => "CAP_SYS_ADMIN",
            Cap::Bpf => "CAP_BPF",
        }
    }

    fn purpose(self) -> &'static str {
        match self {
            Cap::NetAdmin => "attach XDP programs and create the XSKMAP",
            Cap::NetRaw => "open AF_XDP and AF_PACKET sockets",
            Cap::IpcLock => "lock UMEM memory beyond RLIMIT_MEMLOCK",
            Cap::SysAdmin => "(substitutes for CAP_BPF)",
            Cap::Bpf => "load the XDP program and create BPF maps",
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The effective capability set of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapSet(u64);

impl CapSet {
    /// Reads `CapEff` from `/proc/self/status`.
    pub fn current() -> std::io::Result<CapSet> {
        let status = std::fs::read_to_string("/proc/self/status")?;
        Self::from_status(&status)
            .ok_or_else(|| std::io::Error::other("no CapEff line in /proc/self/status"))
    }

    pub(crate) fn from_status(status: &str) -> Option<CapSet> {
        let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
        u64::from_str_radix(line["CapEff:".len()..].trim(), 16)
            .ok()
            .map(CapSet)
    }

    pub fn has(self, c: Cap) -> bool {
        self.0 & (1u64 << c.bit()) != 0
    }

    /// Capabilities the dataplane cannot run without, missing from this set.
    /// CAP_SYS_ADMIN stands in for CAP_BPF, as the kernel allows.
    pub(crate) fn missing_required(self) -> Vec<Cap> {
        let mut m = Vec::new();
        for c in [Cap::NetRaw, Cap::NetAdmin] {
            if !self.has(c) {
                m.push(c);
            }
        }
        if !self.has(Cap::Bpf) && !self.has(Cap::SysAdmin) {
            m.push(Cap::Bpf);
        }
        m
    }
}

/// One line naming every missing capability and what each is for.
pub(crate) fn describe_missing(missing: &[Cap]) -> String {
    let list: Vec<String> = missing
        .iter()
        .map(|c| format!("{} (to {})", c.name(), c.purpose()))
        .collect();
    format!(
        "missing capabilities: {}; grant them as file capabilities (setcap cap_net_raw,cap_net_admin,cap_bpf,cap_ipc_lock=ep) or ambient capabilities",
        list.join(", ")
    )
}

pub(crate) fn ipc_lock_purpose() -> &'static str {
    Cap::IpcLock.purpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff_and_names_missing_caps() {
        // net_raw + net_admin + ipc_lock + bpf
        let all = (1u64 << 12) | (1 << 13) | (1 << 14) | (1 << 39);
        let s = CapSet::from_status(&format!("Name:\tx\nCapEff:\t{all:016x}\n")).unwrap();
        assert!(s.missing_required().is_empty());
        let no_bpf = CapSet(all & !(1 << 39));
        assert_eq!(no_bpf.missing_required(), vec![Cap::Bpf]);
        let sys_admin_instead = CapSet((all & !(1 << 39)) | (1 << 21));
        assert!(sys_admin_instead.missing_required().is_empty());
        let none = CapSet(0);
        assert_eq!(
            none.missing_required(),
            vec![Cap::NetRaw, Cap::NetAdmin, Cap::Bpf]
        );
        assert!(describe_missing(&[Cap::Bpf]).contains("CAP_BPF (to load the XDP program"));
    }
}
