//! The progress bar: indicatif on stderr, drawn only when stderr is a terminal.

use blockvault_vault::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug)]
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar on stderr; hidden when `quiet` or when stderr is not a terminal.
    pub fn new(quiet: bool) -> Bar {
        let target = if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        let style = ProgressStyle::with_template(
            "{msg:>8} [{bar:32.cyan/blue}] {binary_bytes:>10}/{binary_total_bytes:<10} \
             {binary_bytes_per_sec:>12}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        Bar(bar)
    }

    /// Removes the bar before the summary line is printed.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn begin(&self, phase: &str, total_bytes: u64) {
        self.0.set_message(phase.to_owned());
        self.0.set_length(total_bytes);
        self.0.set_position(0);
        self.0.reset_eta();
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}
