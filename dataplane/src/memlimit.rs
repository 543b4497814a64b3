//! How much memory this process may use: the memory cgroup's limit (cgroup
//! v2 `memory.max`, v1 `memory.limit_in_bytes`, the smallest along the path
//! to the hierarchy's root) less what the cgroup already uses, and the
//! machine's RAM. The dataplane checks its UMEMs and recorder queues
//! against it before it attaches anything, so a request that cannot fit is
//! refused with a message instead of ending in the OOM killer after XDP was
//! attached.

use std::path::{Path, PathBuf};

/// Limits at or above this are "no limit" (cgroup v1 reports
/// `PAGE_COUNTER_MAX * PAGE_SIZE`, about 2^63).
const UNLIMITED: u64 = 1 << 60;

/// A memory limit and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// Bytes still available under the limit.
    pub available_bytes: u64,
    /// The limit itself.
    pub limit_bytes: u64,
    /// The file that set it (for the message).
    pub source: PathBuf,
}

/// One mount of a cgroup hierarchy: (root inside the hierarchy, mount
/// point), from `/proc/self/mountinfo`.
fn cgroup_mounts(mountinfo: &str, v2: bool) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for l in mountinfo.lines() {
        // id parent major:minor root mount-point options [optional] - fstype source super-options
        let Some((left, right)) = l.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if f.len() < 5 || r.is_empty() {
            continue;
        }
        let ok = if v2 {
            r[0] == "cgroup2"
        } else {
            r[0] == "cgroup"
                && r.get(2)
                    .is_some_and(|o| o.split(',').any(|x| x == "memory"))
        };
        if ok {
            out.push((f[3].to_string(), PathBuf::from(f[4])));
        }
    }
    out
}

fn read_u64(p: &Path) -> Option<u64> {
    let t = std::fs::read_to_string(p).ok()?;
    let t = t.trim();
    if t == "max" {
        return Some(u64::MAX);
    }
    t.parse().ok()
}

/// The smallest limit from `leaf` up to `mount` (files `limit_file`), with
/// the leaf's usage (`usage_file`) subtracted.
fn walk(mount: &Path, leaf: &Path, limit_file: &str, usage_file: &str) -> Option<Limit> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut dir = leaf.to_path_buf();
    loop {
        let f = dir.join(limit_file);
        if let Some(v) = read_u64(&f) {
            if v < UNLIMITED && best.as_ref().is_none_or(|(b, _)| v < *b) {
                best = Some((v, f));
            }
        }
        if dir == mount || !dir.pop() || !dir.starts_with(mount) {
            break;
        }
    }
    let (limit, source) = best?;
    let used = read_u64(&leaf.join(usage_file)).unwrap_or(0);
    Some(Limit {
        available_bytes: limit.saturating_sub(used),
        limit_bytes: limit,
        source,
    })
}

/// The memory cgroup limit of this process, `None` without one (or
/// without a readable cgroup filesystem).
pub(crate) fn cgroup_limit() -> Option<Limit> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found: Vec<Limit> = Vec::new();
    for l in cgroups.lines() {
        // hierarchy-id:controllers:path
        let mut parts = l.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let v2 = id == "0" && ctrl.is_empty();
        if !v2 && !ctrl.split(',').any(|c| c == "memory") {
            continue;
        }
        let (limit_file, usage_file) = if v2 {
            ("memory.max", "memory.current")
        } else {
            ("memory.limit_in_bytes", "memory.usage_in_bytes")
        };
        for (root, mount) in cgroup_mounts(&mountinfo, v2) {
            // The cgroup's path relative to this mount's root (a container
            // with its own cgroup namespace sees "/" for both).
            let Some(rel) = Path::new(path).strip_prefix(&root).ok() else {
                continue;
            };
            let leaf = mount.join(rel);
            if let Some(l) = walk(&mount, &leaf, limit_file, usage_file) {
                found.push(l);
            }
        }
    }
    found.into_iter().min_by_key(|l| l.available_bytes)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub(crate) fn mem_total() -> Option<u64> {
    let t = std::fs::read_to_string("/proc/meminfo").ok()?;
    let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The tightest of the cgroup limit and the machine's RAM.
pub fn available() -> Option<Limit> {
    let ram = mem_total().map(|b| Limit {
        available_bytes: b,
        limit_bytes: b,
        source: PathBuf::from("/proc/meminfo (MemTotal)"),
    });
    [cgroup_limit(), ram]
        .into_iter()
        .flatten()
        .min_by_key(|l| l.available_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_of_both_versions_are_found() {
        let mi = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu
32 25 0:28 /kubepods /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup_mounts(mi, false),
            vec![("/".to_string(), PathBuf::from("/sys/fs/cgroup/memory"))]
        );
        assert_eq!(
            cgroup_mounts(mi, true),
            vec![(
                "/kubepods".to_string(),
                PathBuf::from("/sys/fs/cgroup/unified")
            )]
        );
    }

    #[test]
    fn the_smallest_limit_on_the_path_counts_less_usage() {
        let d = std::env::temp_dir().join(format!("tapline-memlimit-{}", std::process::id()));
        let leaf = d.join("a/b");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        std::fs::write(d.join("a/memory.max"), "1000\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "5000\n").unwrap();
        std::fs::write(leaf.join("memory.current"), "300\n").unwrap();
        let l = walk(&d, &leaf, "memory.max", "memory.current").unwrap();
        assert_eq!(l.limit_bytes, 1000);
        assert_eq!(l.available_bytes, 700);
        assert_eq!(l.source, d.join("a/memory.max"));
        std::fs::write(d.join("a/memory.max"), "max\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "max\n").unwrap();
        assert_eq!(walk(&d, &leaf, "memory.max", "memory.current"), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
