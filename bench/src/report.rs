//! Result records: machine description, medians, Markdown tables.

use serde::Serialize;

/// Where a result was measured; included in every result file.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cpus: usize,
    pub kernel: String,
    pub memory_gib: u64,
    /// The real NICs the run's labs used (`--iface`); empty when every
    /// link was a veth pair.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<crate::lab::NicInfo>,
}

impl Machine {
    pub fn describe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: u64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Machine {
            cpu_model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            memory_gib: memory_kib.div_ceil(1024 * 1024),
            nics: crate::lab::nics_used(),
        }
    }

    /// One sentence for Markdown: "Machine: CPU (N CPUs, M GiB), kernel K,
    /// links: ...".
    pub fn sentence(&self) -> String {
        format!(
            "Machine: {} ({} CPUs, {} GiB), kernel {}, {}.",
            self.cpu_model,
            self.cpus,
            self.memory_gib,
            self.kernel,
            self.links()
        )
    }

    /// What the lab's links were, for Markdown headers: "veth pairs", or
    /// each NIC with its driver and queues.
    pub fn links(&self) -> String {
        if self.nics.is_empty() {
            return "links: veth pairs".to_string();
        }
        let nics: Vec<String> = self.nics.iter().map(|n| n.to_string()).collect();
        format!("NICs: {}", nics.join(", "))
    }
}

/// Aggregate CPU time counters from `/proc/stat` (USER_HZ ticks).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub total: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Reads the `cpu` line of `/proc/stat`.
    pub fn now() -> CpuTimes {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        CpuTimes {
            // user nice system idle iowait irq softirq steal (guest time is
            // already included in user).
            total: fields.iter().take(8).sum(),
            steal: fields.get(7).copied().unwrap_or(0),
        }
    }

    /// Share of CPU time the hypervisor took from this VM since `earlier`.
    pub fn steal_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.steal.saturating_sub(earlier.steal) as f64 / total as f64
    }
}

/// Median of a non-empty sample (mean of the middle two for even sizes).
pub fn median(xs: &[f64]) -> f64 {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Writes `DIR/STEM.json` (the full result) and `DIR/STEM.md` (its table),
/// creating `dir`, and says where on stderr.
pub fn write_results(
    dir: &std::path::Path,
    stem: &str,
    result: &impl Serialize,
    md: &str,
) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join(format!("{stem}.json"));
    std::fs::write(&json, serde_json::to_string_pretty(result)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let table = dir.join(format!("{stem}.md"));
    std::fs::write(&table, md).with_context(|| format!("writing {}", table.display()))?;
    eprintln!("results written to {}", dir.display());
    Ok(())
}

/// Writes `DIR/NAME.svg` (a plot from [`crate::plot`]), creating `dir`, and
/// returns the file's path.
pub fn write_svg(
    dir: &std::path::Path,
    name: &str,
    svg: &str,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{name}.svg"));
    std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A Markdown table from a header and rows.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n", header.join(" | "));
    s += &format!("|{}\n", header.iter().map(|_| "---|").collect::<String>());
    for r in rows {
        s += &format!("| {} |\n", r.join(" | "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn svg_is_written_under_its_name() {
        let dir = std::env::temp_dir().join(format!("tapline-report-{}", std::process::id()));
        let path = write_svg(&dir, "bridge-throughput", "<svg></svg>").unwrap();
        assert_eq!(path, dir.join("bridge-throughput.svg"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "<svg></svg>");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn table_has_header_separator_and_rows() {
        let t = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
