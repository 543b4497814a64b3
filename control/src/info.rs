//! `Observer.GetInfo`: versions, interfaces and roles, XDP modes, queues,
//! workers and uptimes.
//!
//! Interface details (index, MAC, driver, MTU, link state) come from
//! `/sys/class/net/IF`, which shows the network namespace of the pod (all
//! containers of a pod share it). Modes, queues and workers come from the
//! dataplane's stats segment; the requested mode and CPU pinning from the
//! shared configuration file.

use std::path::Path;
use std::time::Duration;

use tapline_config::Config;
use tapline_config::XdpMode;
use tapline_dataplane::xdp::shm::Snapshot;
use tapline_proto::v1;

use crate::state::{DataplaneStatus, Observation};
use crate::stats::{api_mode, least_capable, ports, queue_workers, timestamp_opt};

/// What sysfs says about an interface; defaults where it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub ifindex: u32,
    pub mac_address: String,
    pub driver: String,
    pub mtu_bytes: u32,
    pub link_up: bool,
}

/// `IFF_UP` in `/sys/class/net/IF/flags`.
const IFF_UP: u32 = 0x1;

/// Reads `root/IF` (normally `/sys/class/net/IF`). An interface that is not
/// there (another network namespace, a name from a foreign segment) gives
/// the defaults.
pub fn probe_netdev(root: &Path, ifname: &str) -> NetDev {
    if ifname.is_empty() || ifname == "." || ifname == ".." || ifname.contains('/') {
        return NetDev::default();
    }
    let dir = root.join(ifname);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let flags = read("flags")
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    // IFF_RUNNING as the kernel computes it (dev_get_flags): up, and the
    // operational state up or unknown (virtual devices without carrier
    // detection report "unknown").
    let oper = read("operstate").unwrap_or_default();
    NetDev {
        ifindex: read("ifindex").and_then(|s| s.parse().ok()).unwrap_or(0),
        mac_address: read("address").unwrap_or_default().to_ascii_lowercase(),
        // Only devices on a bus have `device/driver` (a NIC, an SR-IOV VF);
        // virtual ones such as veth do not, and stay empty.
        driver: std::fs::read_link(dir.join("device/driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default(),
        mtu_bytes: read("mtu").and_then(|s| s.parse().ok()).unwrap_or(0),
        link_up: flags & IFF_UP != 0 && (oper == "up" || oper == "unknown"),
    }
}

/// `xdp.mode` as written in the configuration.
pub fn requested_mode(mode: XdpMode) -> &'static str {
    mode.as_str()
}

/// The pod's host name: `HOSTNAME`, else the kernel's.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

/// Builds the answer. `probe` looks an interface up (sysfs in production).
pub fn build_info(
    cfg: &Config,
    obs: &Observation,
    now_unix_ns: u64,
    control_uptime: Duration,
    probe: impl Fn(&str) -> NetDev,
) -> v1::GetInfoResponse {
    let status = &obs.status;
    // Modes, queues and workers describe a process that holds its ports:
    // not one that has stopped, and nothing when there is no segment.
    let attached: Option<&Snapshot> = match status {
        DataplaneStatus::Starting
        | DataplaneStatus::Running
        | DataplaneStatus::Unresponsive { .. } => obs.snapshot.as_ref(),
        DataplaneStatus::Stopped | DataplaneStatus::Absent { .. } => None,
    };
    let seen = obs.snapshot.as_ref();

    // Configured roles first, in [interfaces] order; then any port the
    // dataplane has that the configuration does not name (a dataplane
    // started from another file).
    let mut roles: Vec<(String, String)> = Vec::new();
    if let Some(p) = cfg.passive() {
        roles.push(("passive-1".into(), p.clone()));
    }
    if let Some(pair) = cfg.inline() {
        roles.push(("inline-1".into(), pair.side1.clone()));
        roles.push(("inline-2".into(), pair.side2.clone()));
    }
    let seg_ports = attached.map(ports).unwrap_or_default();
    for p in &seg_ports {
        if !roles.iter().any(|(r, i)| r == p.role && i == p.ifname) {
            roles.push((p.role.to_string(), p.ifname.to_string()));
        }
    }
    let workers_of = attached.map(queue_workers).unwrap_or_default();

    let interfaces = roles
        .iter()
        .map(|(role, ifname)| {
            let dev = probe(ifname);
            let seg_port = seg_ports
                .iter()
                .find(|p| p.role == role && p.ifname == ifname);
            let (xdp_mode, queues) = match seg_port {
                Some(p) => {
                    let snap = attached.expect("ports come from the attached snapshot");
                    let queues: Vec<v1::QueueInfo> = p
                        .slots
                        .iter()
                        .map(|&i| v1::QueueInfo {
                            queue_id: snap.queues[i].info.queue,
                            xdp_mode: api_mode(&snap.queues[i].info.mode),
                            worker_id: workers_of[i].unwrap_or(0),
                        })
                        .collect();
                    let mode = least_capable(queues.iter().map(|q| q.xdp_mode.as_str()));
                    (mode, queues)
                }
                None => (String::new(), Vec::new()),
            };
            v1::InterfaceInfo {
                role: role.clone(),
                ifname: ifname.clone(),
                hop: seg_port.map(|p| p.hop.to_string()).unwrap_or_default(),
                ifindex: dev.ifindex,
                mac_address: dev.mac_address,
                driver: dev.driver,
                mtu_bytes: dev.mtu_bytes,
                link_up: dev.link_up,
                xdp_mode,
                requested_xdp_mode: requested_mode(cfg.xdp_mode).to_string(),
                // The dataplane logs why it fell back but does not publish
                // it in the segment.
                xdp_mode_reason: String::new(),
                queues,
            }
        })
        .collect();

    let workers = attached
        .map(|snap| {
            (0..snap.workers.len())
                .map(|w| v1::WorkerInfo {
                    worker_id: w as u32,
                    cpu: cfg.workers.cpus.get(w).map(|&c| c as u32),
                    queues: snap
                        .queues
                        .iter()
                        .zip(&workers_of)
                        .filter(|(_, owner)| **owner == Some(w as u32))
                        .map(|(q, _)| v1::QueueRef {
                            role: q.info.role.clone(),
                            ifname: q.info.ifname.clone(),
                            queue_id: q.info.queue,
                        })
                        .collect(),
                })
                .collect()
        })
        .unwrap_or_default();

    let started = seen.map_or(0, |s| s.started_unix_ns);
    // Uptime of a process that runs; 0 once it stopped or stopped beating.
    let uptime_ms = match status {
        DataplaneStatus::Starting | DataplaneStatus::Running if started != 0 => {
            now_unix_ns.saturating_sub(started) / 1_000_000
        }
        _ => 0,
    };

    v1::GetInfoResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        dataplane_version: seen
            .map(|s| s.dataplane_version.clone())
            .unwrap_or_default(),
        hostname: hostname(),
        dataplane_state: status.to_proto().into(),
        dataplane_started_at: timestamp_opt(started),
        dataplane_uptime_ms: uptime_ms,
        stats_epoch: seen.map_or(0, |s| s.epoch),
        control_uptime_ms: control_uptime.as_millis() as u64,
        interfaces,
        workers,
        kernel_fallback: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::tests::{chain_snapshot, snapshot};

    fn cfg() -> Config {
        Config::parse(
            "[interfaces]\npassive-1 = \"p1\"\ninline-1 = \"i1\"\ninline-2 = \"i2\"\n[dataplane]\ncpus = [0]\n",
        )
        .unwrap()
    }

    fn fake_probe(ifname: &str) -> NetDev {
        NetDev {
            ifindex: ifname.len() as u32,
            mac_address: "02:00:00:00:00:01".into(),
            driver: String::new(),
            mtu_bytes: 1500,
            link_up: true,
        }
    }

    #[test]
    fn info_of_a_running_dataplane() {
        let snap = snapshot(42, 10);
        let started = snap.started_unix_ns;
        let obs = Observation {
            status: DataplaneStatus::Running,
            reader: None,
            snapshot: Some(snap),
        };
        let now = started + 2_500_000_000;
        let info = build_info(&cfg(), &obs, now, Duration::from_millis(7), fake_probe);
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.dataplane_state(), v1::DataplaneState::Running);
        assert_eq!(info.dataplane_uptime_ms, 2500);
        assert_eq!(info.control_uptime_ms, 7);
        assert_eq!(info.stats_epoch, 42);
        assert!(info.dataplane_started_at.is_some());
        let names: Vec<(&str, &str)> = info
            .interfaces
            .iter()
            .map(|i| (i.role.as_str(), i.ifname.as_str()))
            .collect();
        assert_eq!(
            names,
            [("passive-1", "p1"), ("inline-1", "i1"), ("inline-2", "i2")]
        );
        let i1 = &info.interfaces[1];
        assert_eq!(i1.xdp_mode, "native-zerocopy");
        assert_eq!(i1.requested_xdp_mode, "auto");
        assert_eq!(i1.mtu_bytes, 1500);
        assert_eq!(
            i1.queues
                .iter()
                .map(|q| (q.queue_id, q.worker_id))
                .collect::<Vec<_>>(),
            [(0, 0), (1, 1)]
        );
        assert_eq!(info.workers.len(), 2);
        assert_eq!(info.workers[0].cpu, Some(0));
        assert_eq!(info.workers[1].cpu, None);
        let w0: Vec<(&str, u32)> = info.workers[0]
            .queues
            .iter()
            .map(|q| (q.role.as_str(), q.queue_id))
            .collect();
        assert_eq!(w0, [("inline-1", 0), ("inline-2", 0), ("passive-1", 0)]);
    }

    #[test]
    fn tool_ports_are_listed_with_their_hop() {
        let obs = Observation {
            status: DataplaneStatus::Running,
            reader: None,
            snapshot: Some(chain_snapshot(1, 10)),
        };
        let info = build_info(&cfg(), &obs, 0, Duration::ZERO, fake_probe);
        let names: Vec<(&str, &str, &str)> = info
            .interfaces
            .iter()
            .map(|i| (i.role.as_str(), i.ifname.as_str(), i.hop.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("passive-1", "p1", ""),
                ("inline-1", "i1", ""),
                ("inline-2", "i2", ""),
                ("tool-a", "t1a", "ids"),
                ("tool-b", "t1b", "ids"),
                ("tool-a", "t2a", "waf"),
                ("tool-b", "t2b", "waf"),
            ]
        );
        assert_eq!(info.interfaces[3].queues.len(), 1);
        assert_eq!(info.interfaces[3].xdp_mode, "native-zerocopy");
    }

    #[test]
    fn info_without_a_running_dataplane() {
        let absent = Observation {
            status: DataplaneStatus::Absent {
                reason: "none".into(),
            },
            reader: None,
            snapshot: None,
        };
        let info = build_info(&cfg(), &absent, 1, Duration::ZERO, fake_probe);
        assert_eq!(info.dataplane_state(), v1::DataplaneState::Unspecified);
        assert!(info.dataplane_started_at.is_none());
        assert_eq!((info.stats_epoch, info.dataplane_uptime_ms), (0, 0));
        // The configured interfaces are still listed, without modes.
        assert_eq!(info.interfaces.len(), 3);
        assert!(info
            .interfaces
            .iter()
            .all(|i| i.xdp_mode.is_empty() && i.queues.is_empty()));
        assert!(info.workers.is_empty());

        let stopped = Observation {
            status: DataplaneStatus::Stopped,
            reader: None,
            snapshot: Some(snapshot(3, 1)),
        };
        let info = build_info(&cfg(), &stopped, u64::MAX, Duration::ZERO, fake_probe);
        assert_eq!(info.dataplane_state(), v1::DataplaneState::Stopped);
        assert_eq!(info.stats_epoch, 3);
        assert!(info.dataplane_started_at.is_some());
        assert_eq!(info.dataplane_uptime_ms, 0);
        assert!(info.interfaces.iter().all(|i| i.queues.is_empty()));
    }

    #[test]
    fn sysfs_probe_reads_what_is_there() {
        let root = std::env::temp_dir().join(format!("tapline-sysfs-{}", std::process::id()));
        let dir = root.join("eth9");
        std::fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            ("ifindex", "17\n"),
            ("address", "02:AB:cd:00:00:01\n"),
            ("mtu", "9000\n"),
            ("flags", "0x1003\n"),
            ("operstate", "up\n"),
        ] {
            std::fs::write(dir.join(f), v).unwrap();
        }
        let d = probe_netdev(&root, "eth9");
        assert_eq!(
            d,
            NetDev {
                ifindex: 17,
                mac_address: "02:ab:cd:00:00:01".into(),
                driver: String::new(),
                mtu_bytes: 9000,
                link_up: true,
            }
        );
        std::fs::write(dir.join("operstate"), "down\n").unwrap();
        assert!(!probe_netdev(&root, "eth9").link_up);
        assert_eq!(probe_netdev(&root, "missing0"), NetDev::default());
        assert_eq!(probe_netdev(&root, "../eth9"), NetDev::default());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
