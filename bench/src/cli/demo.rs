//! `tapline-bench demo`.

use anyhow::Result;
use clap::Args;
use tapline_bench::demo;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Seconds of traffic.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Frames per second from each of the three generators.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    /// Frame length without FCS.
    #[arg(long, default_value_t = 60)]
    frame_len: usize,
}

impl DemoArgs {
    pub(crate) fn run(self) -> Result<()> {
        demo::run(&demo::DemoConfig {
            seconds: self.seconds,
            rate_pps: self.rate,
            frame_len: self.frame_len,
        })
    }
}
