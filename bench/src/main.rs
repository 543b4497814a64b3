//! `tapline-bench`: lab topologies, traffic, benchmarks and the demo. The
//! command line and one function per subcommand are in [`cli`].

use anyhow::{bail, Context, Result};
use clap::Parser;
use tapline_bench::lab;

mod cli;

use cli::peer::PeerArgs;
use cli::Args;

/// Handles SIGINT and SIGTERM on a thread of their own: the NICs that labs
/// of this process hold are returned (their drops will not run), and the
/// process exits with 128 + the signal's number. The handlers only write to
/// a pipe (signal-hook); no signal is blocked, so the children (the
/// dataplane, the peers) start with the usual signal mask.
fn exit_on_signal() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT and SIGTERM handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Some(signo) = signals.forever().next() else {
                return;
            };
            let signal = nix::sys::signal::Signal::try_from(signo)
                .map_or_else(|_| format!("signal {signo}"), |s| s.to_string());
            let labs = lab::return_all_nics();
            if labs.is_empty() {
                eprintln!("tapline-bench: {signal}: exiting");
            }
            for (prefix, result) in labs {
                match result {
                    Ok(t) => eprintln!(
                        "tapline-bench: {signal}: lab {prefix} removed, NICs returned: {}",
                        t.nics.join(", ")
                    ),
                    Err(e) => eprintln!(
                        "tapline-bench: {signal}: lab {prefix}: {e:#}; `tapline-bench lab down --prefix {prefix}` tries again"
                    ),
                }
            }
            std::process::exit(128 + signo);
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn main() -> Result<()> {
    if PeerArgs::selected() {
        return PeerArgs::run();
    }
    exit_on_signal()?;
    let args = Args::parse();
    // clap does not merge a global option given both before and after the
    // subcommand: one side's values replace the other's. Refuse that
    // rather than build a lab on some of the NICs.
    let iface_given = std::env::args_os()
        .filter(|a| a == "--iface" || a.to_string_lossy().starts_with("--iface="))
        .count();
    if iface_given != args.iface.len() {
        bail!("--iface: give all of them on the same side of the subcommand (before or after it)");
    }
    if !args.iface.is_empty() {
        if args.cmd.is_lab_down() {
            bail!("--iface builds labs on NICs; lab down returns the NICs its lab recorded");
        }
        lab::set_external(lab::Nics::new(args.iface)?);
    }
    args.cmd.run()
}
