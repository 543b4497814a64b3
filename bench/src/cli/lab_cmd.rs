//! `tapline-bench lab up | down`.

use anyhow::Result;
use clap::Subcommand;
use tapline_bench::lab;

#[derive(Debug, Subcommand)]
pub(crate) enum LabOp {
    /// Build SCENARIO (inline, passive, full, chain) under PREFIX (idempotent).
    Up {
        /// inline, passive, full or chain (inline plus --hops tools).
        scenario: lab::Scenario,
        /// Inline tools of the chain scenario, 1 to 8 (default 1): tool K is
        /// namespace PREFIX-toolK, reached from the dut through hKa and hKb.
        #[arg(long)]
        hops: Option<u8>,
        /// How each chain tool bridges its sides a <-> b: bridge (a Linux
        /// bridge made into a wire, the default) or mirred (tc redirects).
        #[arg(long)]
        tool: Option<lab::ToolKind>,
        #[arg(long, default_value = "tlab")]
        prefix: String,
    },
    /// Remove every namespace under PREFIX.
    Down {
        #[arg(long, default_value = "tlab")]
        prefix: String,
    },
}

impl LabOp {
    pub(crate) fn is_down(&self) -> bool {
        matches!(self, LabOp::Down { .. })
    }

    pub(crate) fn run(self) -> Result<()> {
        match self {
            LabOp::Up {
                scenario,
                hops,
                tool,
                prefix,
            } => up(scenario, hops, tool, &prefix),
            LabOp::Down { prefix } => down(&prefix),
        }
    }
}

fn up(
    scenario: lab::Scenario,
    hops: Option<u8>,
    tool: Option<lab::ToolKind>,
    prefix: &str,
) -> Result<()> {
    let scenario = scenario.with_chain_options(hops, tool)?;
    lab::teardown(prefix)?;
    let l = lab::Lab::build(prefix, scenario)?;
    let tools = match scenario {
        lab::Scenario::Chain { tool, .. } => format!(" (tools: {})", tool.name()),
        _ => String::new(),
    };
    println!(
        "lab {prefix} up: namespaces {}{tools}",
        l.namespace_names().join(", ")
    );
    for nic in l.nics() {
        println!("  NIC {nic}");
    }
    l.persist();
    Ok(())
}

fn down(prefix: &str) -> Result<()> {
    let t = lab::teardown(prefix)?;
    println!("lab {prefix} down: {} namespaces removed", t.namespaces);
    if !t.nics.is_empty() {
        println!("  NICs returned: {}", t.nics.join(", "));
    }
    Ok(())
}
