//! Progress of long benchmark runs on stderr: a bar (or, when the number of
//! steps is not known in advance, a spinner) with the elapsed time and an
//! ETA, and each step's log line printed above it.
//!
//! The bar is drawn only when stderr is a terminal (indicatif hides it
//! otherwise), so CI logs and redirected runs get the log lines alone, one
//! per step, as plain text.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often the bar redraws by itself, so the elapsed time and the spinner
/// move during a step that takes seconds.
const TICK: Duration = Duration::from_millis(250);

const BAR_TEMPLATE: &str =
    "{spinner} {prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ETA {eta}";
const SPINNER_TEMPLATE: &str = "{spinner} {prefix} [{elapsed_precise}] {pos} {msg}";

/// Progress of one benchmark run. Dropping it clears the bar, so an error
/// message that follows is not mixed with it.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Progress over counted steps (samples, failures); the total comes with
    /// the first [`step`](Self::step), until then a spinner turns.
    pub fn steps(label: &str) -> Progress {
        Progress::start(label, "")
    }

    /// Progress over steps whose total is not known (the trials of a
    /// search): a spinner with the count so far followed by `unit`.
    pub fn spinner(label: &str, unit: &str) -> Progress {
        Progress::start(label, unit)
    }

    fn start(label: &str, unit: &str) -> Progress {
        let bar = ProgressBar::no_length();
        bar.set_style(style(SPINNER_TEMPLATE));
        bar.set_prefix(label.to_string());
        bar.set_message(unit.to_string());
        bar.enable_steady_tick(TICK);
        Progress { bar }
    }

    /// Step `done` of `total` has finished; `line` (one or more lines) is
    /// printed above the bar.
    pub fn step(&self, done: usize, total: usize, line: &str) {
        self.set_done(done, total);
        self.println(line);
    }

    /// `done` of `total` steps have finished.
    pub fn set_done(&self, done: usize, total: usize) {
        // No length yet: still the spinner of `steps`; from now on a bar.
        if self.bar.length().is_none() {
            self.bar.set_style(style(BAR_TEMPLATE));
        }
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
    }

    /// One more step of unknown total has finished; `line` is printed above
    /// the spinner.
    pub fn tick(&self, line: &str) {
        self.bar.inc(1);
        self.println(line);
    }

    /// Prints `line` to stderr above the bar without advancing it; a plain
    /// line when stderr is not a terminal.
    pub fn println(&self, line: &str) {
        // `ProgressBar::println` prints nothing when the bar is hidden;
        // `suspend` clears the bar (if drawn), prints, and redraws it.
        self.suspend(|| eprintln!("{line}"));
    }

    /// Runs `f`, which prints to stderr itself, with the bar cleared, and
    /// draws the bar again afterwards.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }
}

impl Progress {
    /// Clears the bar (before the results go to stdout on the same terminal).
    pub fn finish(self) {
        // Drop clears it.
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    // The templates are constants of this module; the test below parses
    // each, so this cannot fail at run time.
    ProgressStyle::with_template(template)
        .expect("progress template is valid")
        .progress_chars("=> ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        for t in [BAR_TEMPLATE, SPINNER_TEMPLATE] {
            ProgressStyle::with_template(t).unwrap();
        }
    }

    #[test]
    fn steps_set_length_and_position() {
        let p = Progress::steps("bridge");
        p.step(1, 4, "first sample");
        p.step(2, 4, "second sample");
        assert_eq!(p.bar.length(), Some(4));
        assert_eq!(p.bar.position(), 2);
        let s = Progress::spinner("ndr", "trials");
        s.tick("trial 1");
        s.tick("trial 2");
        assert_eq!(s.bar.position(), 2);
        assert_eq!(s.bar.length(), None);
    }
}
