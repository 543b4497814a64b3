//! What a lab builds: the [`Scenario`]s, the interface names ([`ifs`]) and
//! the namespace names under a lab's prefix.

use anyhow::{bail, Result};

use crate::tools::{ToolKind, DEFAULT_HOPS, MAX_HOPS};

/// What a scenario builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// gen -> i1 [dut] i2 -> sink.
    Inline,
    /// tap -> p1 [dut].
    Passive,
    /// Both of the above, sharing the dut namespace.
    Full,
    /// Inline, plus `hops` tools (1..=[`MAX_HOPS`]): tool `k` lives in
    /// namespace `{prefix}-tool{k}`, reached from the dut through `h{k}a`
    /// (its side `a`) and `h{k}b` (its side `b`).
    Chain { hops: u8, tool: ToolKind },
}

impl Scenario {
    /// A chain of `hops` tools of kind `tool`; `hops` must be in
    /// 1..=[`MAX_HOPS`].
    pub fn chain(hops: u8, tool: ToolKind) -> Result<Scenario> {
        if !(1..=MAX_HOPS).contains(&hops) {
            bail!("hops = {hops}: a chain lab has 1 to {MAX_HOPS} tools");
        }
        Ok(Scenario::Chain { hops, tool })
    }

    /// Applies the CLI's `--hops` and `--tool`, which only `chain` takes.
    pub fn with_chain_options(self, hops: Option<u8>, tool: Option<ToolKind>) -> Result<Scenario> {
        match self {
            Scenario::Chain {
                hops: default_hops,
                tool: default_tool,
            } => Scenario::chain(hops.unwrap_or(default_hops), tool.unwrap_or(default_tool)),
            _ if hops.is_some() || tool.is_some() => {
                bail!("--hops and --tool only apply to the chain scenario")
            }
            other => Ok(other),
        }
    }

    /// Whether it builds gen, i1, i2 and sink.
    pub fn has_inline(self) -> bool {
        matches!(
            self,
            Scenario::Inline | Scenario::Full | Scenario::Chain { .. }
        )
    }

    /// Whether it builds tap and p1.
    pub fn has_passive(self) -> bool {
        matches!(self, Scenario::Passive | Scenario::Full)
    }

    /// For messages: `inline`, `passive`, `full`, `chain of 2 mirred tools`.
    pub(crate) fn label(self) -> String {
        match self {
            Scenario::Inline => "inline".into(),
            Scenario::Passive => "passive".into(),
            Scenario::Full => "full".into(),
            Scenario::Chain { hops, tool } => format!("chain of {hops} {} tools", tool.name()),
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = anyhow::Error;
    /// `chain` means [`DEFAULT_HOPS`] bridge tools until
    /// [`Scenario::with_chain_options`] says otherwise.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "inline" => Ok(Scenario::Inline),
            "passive" => Ok(Scenario::Passive),
            "full" => Ok(Scenario::Full),
            "chain" => Ok(Scenario::Chain {
                hops: DEFAULT_HOPS,
                tool: ToolKind::Bridge,
            }),
            other => bail!("unknown scenario {other:?}: use inline, passive, full or chain"),
        }
    }
}

/// Interface names inside the lab (fixed: each lives in its own namespace).
pub mod ifs {
    pub const GEN: &str = "g0";
    pub const INLINE_1: &str = "i1";
    pub const INLINE_2: &str = "i2";
    pub const SINK: &str = "s0";
    pub const TAP: &str = "t0";
    pub const PASSIVE_1: &str = "p1";
    /// A sensor's end of its veth (in its own namespace).
    pub const SENSOR: &str = "e0";
    /// A tool's side facing inline-1 (in each tool namespace).
    pub const TOOL_A: &str = "a";
    /// A tool's side facing inline-2.
    pub const TOOL_B: &str = "b";
    /// The bridge of a [`super::ToolKind::Bridge`] tool.
    pub const TOOL_BRIDGE: &str = "br0";

    /// The dut's interface to side `a` of tool `k` (1-based): `h{k}a`.
    pub fn hop_a(k: u8) -> String {
        format!("h{k}a")
    }

    /// The dut's interface to side `b` of tool `k` (1-based): `h{k}b`.
    pub fn hop_b(k: u8) -> String {
        format!("h{k}b")
    }
}

/// Namespaces of a lab, after `{prefix}-`.
pub(crate) const NS_DUT: &str = "dut";
pub(crate) const NS_GEN: &str = "gen";
pub(crate) const NS_SINK: &str = "sink";
pub(crate) const NS_TAP: &str = "tap";
/// Tool `k`'s namespace suffix (`tool{k}`).
pub(crate) fn tool_ns(k: u8) -> String {
    format!("tool{k}")
}
/// Prefix of a sensor's namespace suffix (`sen-{member}`).
pub(crate) const SENSOR_NS_PREFIX: &str = "sen-";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ToolKind;

    #[test]
    fn chain_scenario_parses_and_validates_hops_and_tool() -> Result<()> {
        let chain: Scenario = "chain".parse()?;
        assert_eq!(
            chain.with_chain_options(None, None)?,
            Scenario::Chain {
                hops: DEFAULT_HOPS,
                tool: ToolKind::Bridge
            }
        );
        assert_eq!(
            chain.with_chain_options(Some(MAX_HOPS), Some("mirred".parse()?))?,
            Scenario::Chain {
                hops: MAX_HOPS,
                tool: ToolKind::Mirred
            }
        );
        for hops in [0, MAX_HOPS + 1] {
            let e = chain.with_chain_options(Some(hops), None).unwrap_err();
            assert!(e.to_string().contains("1 to 8"), "{e}");
        }
        let e = Scenario::Inline
            .with_chain_options(Some(2), None)
            .unwrap_err();
        assert!(e.to_string().contains("only apply to the chain"), "{e}");
        assert_eq!(
            Scenario::Full.with_chain_options(None, None)?,
            Scenario::Full
        );
        assert!("hub".parse::<ToolKind>().is_err());
        assert!(Scenario::Chain {
            hops: 2,
            tool: ToolKind::Mirred
        }
        .has_inline());
        assert!(!Scenario::Chain {
            hops: 2,
            tool: ToolKind::Mirred
        }
        .has_passive());
        Ok(())
    }
}
