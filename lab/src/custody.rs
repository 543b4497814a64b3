//! Custody of the NICs a lab takes: checks before taking one, the record in
//! [`NIC_STATE_DIR`], and returning every NIC (lab drop, [`teardown`],
//! [`return_all_nics`]) with what the lab changed on it restored.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::ethtool;
use crate::netns::{ip, link_state, namespaces, Netns};
use crate::nics::{NicInfo, Role, NICS_USED, NIC_STATE_DIR};

/// What [`teardown`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Teardown {
    /// Namespaces deleted.
    pub namespaces: usize,
    /// NICs moved back, as `ORIGINAL (ROLE)`.
    pub nics: Vec<String>,
}

/// Removes the lab under `prefix`: moves every NIC its record in
/// [`NIC_STATE_DIR`] lists back under its original name, then deletes
/// every namespace whose name starts with `prefix-` (a chain's tool
/// namespaces included). Idempotent. When a NIC cannot be moved back, the
/// namespaces and the record stay, and the error says why.
pub fn teardown(prefix: &str) -> Result<Teardown> {
    let nics = match read_state(prefix)? {
        Some(held) => {
            let returned = return_nics(&held).with_context(|| {
                format!(
                    "lab {prefix}: namespaces and {} kept",
                    state_path(prefix).display()
                )
            })?;
            remove_state(prefix)?;
            returned
        }
        None => Vec::new(),
    };
    let names = namespaces(prefix)?;
    for name in &names {
        ip(&["netns", "del", name])?;
    }
    Ok(Teardown {
        namespaces: names.len(),
        nics,
    })
}

/// A NIC in this process's namespace, checked for use in a lab.
#[derive(Debug)]
pub(crate) struct NicCheck {
    pub(crate) info: NicInfo,
    /// Administratively up before the lab took it.
    pub(crate) was_up: bool,
    /// In promiscuous mode (set by a user, not by a packet socket) before
    /// the lab took it.
    pub(crate) promisc: bool,
}

/// Checks that `nic` is here and free for `role`: not held by a lab, not a
/// port of a bridge or bond, not the loopback, without upper devices
/// (VLAN, macvlan, ipvlan: one may carry the management address), and
/// without global addresses (a test NIC is unconfigured; one with
/// addresses is likely the management interface, and moving it would cut
/// the machine off).
pub(crate) fn inspect_nic(role: &Role, nic: &str) -> Result<NicCheck> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", nic])
        .stdin(Stdio::null())
        .output()
        .context("running ip")?;
    if !out.status.success() {
        let held = held_by_lab(nic)?
            .map(|(prefix, r)| {
                format!(
                    ": lab {prefix} holds it as {r} (`tapline-bench lab down --prefix {prefix}` returns it)"
                )
            })
            .unwrap_or_default();
        bail!(
            "--iface {role}={nic}: there is no interface {nic} in this network namespace{held} ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    let link = &v[0];
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .map(|f| f.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    ensure!(
        !flags.contains(&"LOOPBACK"),
        "--iface {role}={nic}: {nic} is a loopback interface"
    );
    if let Some(master) = link["master"].as_str() {
        bail!("--iface {role}={nic}: {nic} is in use, as a port of {master}");
    }
    let sys = Path::new("/sys/class/net").join(nic);
    let mut uppers: Vec<String> = std::fs::read_dir(&sys)
        .with_context(|| format!("reading {}", sys.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("upper_"))
                .map(str::to_string)
        })
        .collect();
    uppers.sort();
    ensure!(
        uppers.is_empty(),
        "--iface {role}={nic}: {nic} is in use, under upper devices {} (VLAN, macvlan, ipvlan, ...; one may carry the management address): a test NIC has none",
        uppers.join(", ")
    );
    let out = ip(&["-j", "addr", "show", "dev", nic])?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    if let Some(addr) = v[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["scope"] == "global")
    {
        bail!(
            "--iface {role}={nic}: {nic} carries address {}/{}; a test NIC must be unconfigured (is it a management interface?)",
            addr["local"].as_str().unwrap_or("?"),
            addr["prefixlen"]
        );
    }
    let driver = std::fs::read_link(sys.join("device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .or_else(|| link["linkinfo"]["info_kind"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());
    let queues = |kind: &str| {
        std::fs::read_dir(sys.join("queues"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(kind))
                    .count()
            })
            .unwrap_or(0)
    };
    Ok(NicCheck {
        info: NicInfo {
            role: role.to_string(),
            nic: nic.to_string(),
            driver,
            rx_queues: queues("rx-"),
            tx_queues: queues("tx-"),
        },
        was_up: flags.contains(&"UP"),
        promisc: flags.contains(&"PROMISC"),
    })
}

/// A NIC a lab holds, as recorded in its state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HeldNic {
    pub(crate) role: Role,
    /// Its original name, here.
    pub(crate) nic: String,
    /// The namespace it is in, as `role.ifname`.
    pub(crate) netns: String,
    /// Whether to set it up again once back.
    pub(crate) was_up: bool,
    /// Its promiscuous mode before the lab took it (None in records of
    /// older versions: left as it is).
    #[serde(default)]
    pub(crate) promisc: Option<bool>,
    /// Its VLAN offload flags before the lab took it (None when they could
    /// not be read: left as they are).
    #[serde(default)]
    pub(crate) vlan_offload: Option<VlanOffload>,
}

/// VLAN tag offload of a NIC (`ethtool -k`'s `rx-vlan-offload` and
/// `tx-vlan-offload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct VlanOffload {
    /// `rx-vlan-offload`: received tags are stripped into metadata.
    pub(crate) rx: bool,
    /// `tx-vlan-offload`: tags in metadata are inserted by the NIC.
    pub(crate) tx: bool,
}

impl VlanOffload {
    /// Reads the flags of `nic` in this thread's namespace.
    pub(crate) fn read(nic: &str) -> Result<VlanOffload> {
        let (rx, tx) = ethtool::vlan_offload(nic)
            .with_context(|| format!("reading the offload flags of {nic}"))?;
        Ok(VlanOffload { rx, tx })
    }

    /// Sets these flags on `nic` in this thread's namespace, if they differ.
    pub(crate) fn restore(self, nic: &str) -> Result<()> {
        ethtool::set_vlan_offload(nic, self.rx, self.tx)
            .with_context(|| format!("setting the VLAN offload of {nic}"))
    }
}

/// The record of a lab's NICs.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NicState {
    pub(crate) prefix: String,
    pub(crate) nics: Vec<HeldNic>,
}

/// `NIC_STATE_DIR/PREFIX.json`.
pub(crate) fn state_path(prefix: &str) -> PathBuf {
    Path::new(NIC_STATE_DIR).join(format!("{prefix}.json"))
}

/// The NICs the lab under `prefix` recorded, if it recorded any.
pub(crate) fn read_state(prefix: &str) -> Result<Option<Vec<HeldNic>>> {
    let path = state_path(prefix);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let state: NicState = serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?;
            Ok(Some(state.nics))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Replaces the record of `prefix` (through a rename, so a reader never
/// sees half a file).
pub(crate) fn write_state(prefix: &str, nics: &[HeldNic]) -> Result<()> {
    std::fs::create_dir_all(NIC_STATE_DIR).with_context(|| format!("creating {NIC_STATE_DIR}"))?;
    let path = state_path(prefix);
    let tmp = path.with_extension("json.tmp");
    let state = NicState {
        prefix: prefix.to_string(),
        nics: nics.to_vec(),
    };
    std::fs::write(&tmp, serde_json::to_vec_pretty(&state)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn remove_state(prefix: &str) -> Result<()> {
    let path = state_path(prefix);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The lab (prefix) and role under which a record lists `nic`.
pub(crate) fn held_by_lab(nic: &str) -> Result<Option<(String, Role)>> {
    let dir = match std::fs::read_dir(NIC_STATE_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {NIC_STATE_DIR}")),
    };
    for entry in dir.filter_map(|e| e.ok()) {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(state) = std::fs::read(&path)
            .map_err(anyhow::Error::from)
            .and_then(|b| Ok(serde_json::from_slice::<NicState>(&b)?))
        else {
            continue;
        };
        if let Some(h) = state.nics.iter().find(|h| h.nic == nic) {
            return Ok(Some((state.prefix.clone(), h.role.clone())));
        }
    }
    Ok(None)
}

/// Whether interface `ifname` exists in namespace `netns` (None: this
/// process's).
pub(crate) fn link_exists(netns: Option<&str>, ifname: &str) -> Result<bool> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-j", "link", "show"]);
    let out = ip(&args)?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing ip -j output")?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .any(|l| l["ifname"] == ifname))
}

/// Moves `h` back to this process's namespace under its original name,
/// with its XDP programs detached, its promiscuous mode and VLAN offload
/// flags as they were, and up if it was. Returns `ORIGINAL (ROLE)`, or None
/// when the NIC is nowhere to be found (a veth whose namespace was deleted
/// is gone). Only a failed move is an error: the NIC is still in the lab.
pub(crate) fn return_nic(h: &HeldNic) -> Result<Option<String>> {
    let in_lab = Path::new("/var/run/netns").join(&h.netns).exists()
        && link_exists(Some(&h.netns), &h.role.ifname)?;
    if in_lab {
        // The kernel moves a NIC under its current name and renames it
        // afterwards: with the original name taken here, the move would
        // succeed and the rename fail, leaving the NIC here under the
        // lab's name.
        ensure!(
            !link_exists(None, &h.nic)?,
            "cannot move {} in {} back as {}: an interface of that name exists here (rename or delete it)",
            h.role.ifname,
            h.netns,
            h.nic
        );
        detach_xdp(h);
        // `netns PID`: the namespace of this process, which is where the
        // NIC came from (ip itself runs in the lab namespace with -n).
        let pid = std::process::id().to_string();
        ip(&[
            "-n",
            &h.netns,
            "link",
            "set",
            "dev",
            &h.role.ifname,
            "netns",
            &pid,
            "name",
            &h.nic,
        ])
        .with_context(|| format!("moving {} in {} back as {}", h.role.ifname, h.netns, h.nic))?;
    } else if !link_exists(None, &h.nic)? {
        eprintln!(
            "warning: NIC {} ({}) is neither in {} nor here: a physical NIC whose namespace was deleted comes back as {} \
             (rename it with `ip link set dev {} name {}`); a veth is gone",
            h.nic, h.role, h.netns, h.role.ifname, h.role.ifname, h.nic
        );
        return Ok(None);
    }
    if let Some(promisc) = h.promisc {
        let state = if promisc { "on" } else { "off" };
        if let Err(e) = ip(&["link", "set", "dev", &h.nic, "promisc", state]) {
            eprintln!(
                "warning: NIC {}: restoring promiscuous mode {state}: {e:#}",
                h.nic
            );
        }
    }
    if let Some(offload) = h.vlan_offload {
        if let Err(e) = offload.restore(&h.nic) {
            eprintln!(
                "warning: NIC {}: restoring VLAN offload to {offload:?}: {e:#}",
                h.nic
            );
        }
    }
    if h.was_up {
        ip(&["link", "set", "dev", &h.nic, "up"])?;
    }
    Ok(Some(format!("{} ({})", h.nic, h.role)))
}

/// Detaches the XDP programs of `h` in its lab namespace, native and
/// generic (a DUT killed before it cleaned up leaves its program behind),
/// and warns when one stays: a program held by a BPF link lives as long as
/// the process (or pin) holding the link.
pub(crate) fn detach_xdp(h: &HeldNic) {
    for mode in ["xdpdrv", "xdpgeneric"] {
        // Fails where the mode is not supported, with nothing to detach.
        let _ = Command::new("ip")
            .args([
                "-n",
                &h.netns,
                "link",
                "set",
                "dev",
                &h.role.ifname,
                mode,
                "off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    if link_state(&Netns::existing(&h.netns), &h.role.ifname).is_ok_and(|s| s.xdp_attached) {
        eprintln!(
            "warning: NIC {} ({}): an XDP program stays attached until the process holding its BPF link exits",
            h.nic, h.role
        );
    }
}

/// Returns every NIC of `held` (the last taken first), and fails with the
/// reasons when some could not be moved.
pub(crate) fn return_nics(held: &[HeldNic]) -> Result<Vec<String>> {
    let mut returned = Vec::new();
    let mut failed = Vec::new();
    for h in held.iter().rev() {
        match return_nic(h) {
            Ok(Some(nic)) => returned.push(nic),
            Ok(None) => {}
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    returned.reverse();
    if !failed.is_empty() {
        bail!("NICs not returned: {}", failed.join("; "));
    }
    Ok(returned)
}

/// The labs of this process that hold NICs their drop returns.
#[derive(Debug)]
pub(crate) struct Holders {
    /// Their prefixes, in the order they took their first NIC.
    pub(crate) prefixes: Vec<String>,
    /// Set by [`return_all_nics`]: the process is exiting, no lab takes a
    /// NIC any more.
    pub(crate) closed: bool,
}

/// Its lock also makes taking or returning a lab's NICs one step for
/// [`return_all_nics`], which may run on a signal thread at any time.
pub(crate) static HOLDERS: Mutex<Holders> = Mutex::new(Holders {
    prefixes: Vec::new(),
    closed: false,
});

pub(crate) fn holders() -> MutexGuard<'static, Holders> {
    HOLDERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Returns the NICs of every lab of this process that holds some and was
/// not persisted, with [`teardown`] (which also deletes the lab's
/// namespaces), for a process about to exit without running the labs'
/// drops (on a signal). Labs of this process take no NIC afterwards, and
/// their drops leave the namespaces alone. Returns each lab's prefix and
/// outcome.
pub fn return_all_nics() -> Vec<(String, Result<Teardown>)> {
    let mut holders = holders();
    holders.closed = true;
    std::mem::take(&mut holders.prefixes)
        .into_iter()
        .map(|prefix| {
            let result = teardown(&prefix);
            (prefix, result)
        })
        .collect()
}

/// The NICs a lab took. [`HeldNics::release`] returns them, unless
/// persisted, and then removes the lab's record.
#[derive(Debug)]
pub(crate) struct HeldNics {
    pub(crate) prefix: String,
    pub(crate) held: Vec<HeldNic>,
    pub(crate) info: Vec<NicInfo>,
    /// Whether release returns the NICs (false once persisted or released).
    pub(crate) owned: bool,
}

impl HeldNics {
    pub(crate) fn new(prefix: &str) -> HeldNics {
        HeldNics {
            prefix: prefix.to_string(),
            held: Vec::new(),
            info: Vec::new(),
            owned: true,
        }
    }

    /// Moves `nic` into namespace `netns` as `role` and sets it up. The
    /// record, with what returning the NIC restores, is written first: a
    /// crash in between leaves a record whose NIC [`return_nic`] finds
    /// still here, which is harmless.
    pub(crate) fn take(&mut self, role: &Role, nic: &str, netns: &str) -> Result<()> {
        let check = inspect_nic(role, nic)?;
        let vlan_offload = match VlanOffload::read(nic) {
            Ok(offload) => Some(offload),
            Err(e) => {
                eprintln!(
                    "warning: lab {}: NIC {nic}: cannot read its VLAN offload flags, so they are not restored on return: {e:#}",
                    self.prefix
                );
                None
            }
        };
        let mut holders = holders();
        ensure!(
            !holders.closed,
            "lab {}: not taking NIC {nic}: this process is returning its NICs and exiting",
            self.prefix
        );
        self.held.push(HeldNic {
            role: role.clone(),
            nic: nic.to_string(),
            netns: netns.to_string(),
            was_up: check.was_up,
            promisc: Some(check.promisc),
            vlan_offload,
        });
        write_state(&self.prefix, &self.held)?;
        if !holders.prefixes.contains(&self.prefix) {
            holders.prefixes.push(self.prefix.clone());
        }
        ip(&[
            "link",
            "set",
            "dev",
            nic,
            "netns",
            netns,
            "name",
            &role.ifname,
        ])
        .with_context(|| format!("moving NIC {nic} into {netns} as {}", role.ifname))?;
        ip(&["-n", netns, "link", "set", "dev", &role.ifname, "up"])?;
        drop(holders);
        let mut used = NICS_USED.lock().unwrap_or_else(|e| e.into_inner());
        if !used.contains(&check.info) {
            used.push(check.info.clone());
        }
        self.info.push(check.info);
        Ok(())
    }

    /// Leaves the NICs, and the record, to [`teardown`].
    pub(crate) fn persist(&mut self) {
        self.owned = false;
        holders().prefixes.retain(|p| *p != self.prefix);
    }

    /// Returns the NICs and removes the record, once. Fails when a NIC
    /// could not be moved back (the record stays, listing every NIC), or
    /// when [`return_all_nics`] took the lab over.
    pub(crate) fn release(&mut self) -> Result<()> {
        if !self.owned || self.held.is_empty() {
            return Ok(());
        }
        self.owned = false;
        let mut holders = holders();
        let Some(i) = holders.prefixes.iter().position(|p| *p == self.prefix) else {
            bail!("the NICs were left to the exit handler");
        };
        return_nics(&self.held)?;
        remove_state(&self.prefix)?;
        holders.prefixes.remove(i);
        Ok(())
    }
}
