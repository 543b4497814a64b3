//! `taplinectl completion SHELL` and `taplinectl man`: generated from the
//! clap definition (clap_complete, clap_mangen), so they always list the
//! verbs and options of this build.

use clap::CommandFactory;

use crate::exit;
use crate::failure::Failure;
use crate::output::emit;
use crate::Cli;

/// The completion script clap_complete derives for `shell`, on stdout.
pub fn completion(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "taplinectl", &mut script);
    emit(&String::from_utf8_lossy(&script))
}

/// The man page on stdout: clap_mangen's page of the command (options,
/// verbs, exit codes, environment), then one section per verb with its
/// long help (options, and the shape of its `--json` output).
pub fn man() -> Result<(), Failure> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .map_err(|e| Failure::new(exit::SERVER, format!("rendering the man page: {e}")))?;
    let mut text = String::from_utf8_lossy(&page).into_owned();
    for (name, sub) in verbs(&cmd, "taplinectl") {
        let mut sub = sub.clone().bin_name(&name);
        let help = sub.render_long_help().to_string();
        text.push_str(&format!(".SH \"{}\"\n.nf\n", name.to_uppercase()));
        text.push_str(&roff_text(&help));
        text.push_str(".fi\n");
    }
    emit(&text)
}

/// The leaf verbs under `cmd` (`chain get`, not `chain`), with their full
/// names; `help` left out.
fn verbs(cmd: &clap::Command, prefix: &str) -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{prefix} {}", sub.get_name());
        if sub.has_subcommands() {
            out.extend(verbs(sub, &name));
        } else {
            out.push((name, sub.clone()));
        }
    }
    out
}

/// Plain text made safe for roff inside `.nf`: backslashes escaped, and a
/// line starting with a control character (`.` or `'`) protected.
fn roff_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_verb_gets_a_section() {
        let mut cmd = Cli::command();
        cmd.build();
        let names: Vec<String> = verbs(&cmd, "taplinectl")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for want in [
            "taplinectl status",
            "taplinectl stats",
            "taplinectl chain get",
            "taplinectl chain set",
            "taplinectl chain bypass",
            "taplinectl health",
            "taplinectl tap",
        ] {
            assert!(names.iter().any(|n| n == want), "{want}: {names:?}");
        }
        assert!(!names.iter().any(|n| n.ends_with(" help")), "{names:?}");
    }

    #[test]
    fn roff_text_is_inert() {
        assert_eq!(roff_text(".SH x\n'y\na\\b"), "\\&.SH x\n\\&'y\na\\eb\n");
    }
}
