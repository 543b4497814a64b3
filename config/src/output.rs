//! `[[output_group]]`: passive-1's traffic fanned out over the instances of
//! a sensor, and what output groups and recorders share (names, filters,
//! snap lengths).

use tapline_packet::filter::Filter;

use crate::deployment::{check_allowed, check_ifname, Deployment};
use crate::error::{err, ConfigError};
use crate::raw::RawOutputGroup;

/// Longest output group or recorder name, in bytes (stored in the stats
/// segment; the dataplane checks its layout's size against this at
/// compile time).
pub const OUTPUT_NAME_BYTES: usize = 32;
/// Most members in one output group.
pub const MAX_GROUP_MEMBERS: usize = 64;
/// Most output groups.
pub const MAX_OUTPUT_GROUPS: usize = 16;
/// Largest snap length (pcap's usual maximum).
pub const MAX_SNAPLEN: u32 = 262_144;
/// Smallest non-zero snap length: an Ethernet header and an IP header.
const MIN_SNAPLEN: u32 = 64;

/// A passive output group: the instances of one sensor. Every captured
/// frame its filter accepts goes to exactly one member, chosen by the
/// symmetric flow hash.
#[derive(Debug, Clone)]
pub struct OutputGroup {
    pub name: String,
    /// Interfaces, in order; a flow's member is `hash % members.len()`.
    pub members: Vec<String>,
    /// `None`: every frame.
    pub filter: Option<Filter>,
    /// Bytes transmitted of each frame; 0: whole frames.
    pub snaplen: u32,
    /// Members fit despite a default route or a routable address
    /// (`allowed_interfaces`; see the dataplane's `xdp::netdev::unfit_reason`).
    pub allowed: Vec<String>,
}

/// Output and recorder names: they appear in metrics labels and file names.
pub(crate) fn check_output_name(
    field: &str,
    name: &str,
    seen: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= OUTPUT_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        return Err(err(
            field,
            format!(
                "{name:?} is not a valid name: 1 to {OUTPUT_NAME_BYTES} letters, digits, '-' or '_', starting with a letter or digit",
            ),
        ));
    }
    if seen.iter().any(|n| n == name) {
        return Err(err(
            field,
            format!("{name:?} is used twice: names must be unique"),
        ));
    }
    seen.push(name.to_string());
    Ok(())
}

/// A filter expression; empty: none (every frame).
pub(crate) fn check_filter(field: &str, expr: &str) -> Result<Option<Filter>, ConfigError> {
    if expr.trim().is_empty() {
        return Ok(None);
    }
    match Filter::compile(expr) {
        Ok(f) => Ok(Some(f)),
        Err(e) => Err(err(field, format!("{e} in {expr:?}"))),
    }
}

/// A snap length: 0 (whole frames) or [`MIN_SNAPLEN`]..=[`MAX_SNAPLEN`].
pub(crate) fn check_snaplen(field: &str, v: u32) -> Result<u32, ConfigError> {
    if v != 0 && !(MIN_SNAPLEN..=MAX_SNAPLEN).contains(&v) {
        return Err(err(
            field,
            format!("{v} must be 0 (whole frames) or from {MIN_SNAPLEN} to {MAX_SNAPLEN}"),
        ));
    }
    Ok(v)
}

/// The members of group `i`: valid names, not a port of the deployment or
/// a hop (`reserved`), and in no other group (`used`).
fn check_members(
    i: usize,
    g: &RawOutputGroup,
    reserved: &[(&str, &str)],
    used: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    if g.members.is_empty() || g.members.len() > MAX_GROUP_MEMBERS {
        return Err(err(
            &format!("output_group[{i}].members"),
            format!(
                "{} members: a group has 1 to {MAX_GROUP_MEMBERS} interfaces",
                g.members.len()
            ),
        ));
    }
    for (j, m) in g.members.iter().enumerate() {
        let field = format!("output_group[{i}].members[{j}]");
        check_ifname(&field, m)?;
        if let Some((_, role)) = reserved.iter().find(|(n, _)| n == m) {
            return Err(err(
                &field,
                format!("{m:?} is already {role}: a member needs its own interface"),
            ));
        }
        if let Some((_, other)) = used.iter().find(|(n, _)| n == m) {
            return Err(err(
                &field,
                format!("{m:?} is already a member of group {other:?}: an interface belongs to one group"),
            ));
        }
        used.push((m.clone(), g.name.clone()));
    }
    Ok(())
}

/// `[[output_group]]` tables into [`OutputGroup`]s, in order. `reserved`:
/// interfaces with another role (ports of the deployment, hop sides).
pub(crate) fn validate_groups(
    raw: &[RawOutputGroup],
    deployment: &Deployment,
    reserved: &[(&str, &str)],
) -> Result<Vec<OutputGroup>, ConfigError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    if deployment.passive().is_none() {
        return Err(err(
            "output_group",
            "output groups fan out passive-1's traffic: set [interfaces] passive-1, or remove the groups",
        ));
    }
    if raw.len() > MAX_OUTPUT_GROUPS {
        return Err(err(
            "output_group",
            format!("{} groups: at most {MAX_OUTPUT_GROUPS}", raw.len()),
        ));
    }
    let mut names = Vec::new();
    let mut used: Vec<(String, String)> = Vec::new();
    let mut out = Vec::new();
    for (i, g) in raw.iter().enumerate() {
        let at = |k: &str| format!("output_group[{i}].{k}");
        check_output_name(&at("name"), &g.name, &mut names)?;
        check_members(i, g, reserved, &mut used)?;
        out.push(OutputGroup {
            filter: check_filter(&at("filter"), &g.filter)?,
            snaplen: check_snaplen(&at("snaplen"), g.snaplen)?,
            allowed: check_allowed(&at("allowed_interfaces"), g.allowed_interfaces.clone())?,
            name: g.name.clone(),
            members: g.members.clone(),
        });
    }
    Ok(out)
}
