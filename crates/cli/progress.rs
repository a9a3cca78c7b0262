//! Progress on stderr: an indicatif bar on a terminal, a plain line every
//! few seconds otherwise (logs, CI, Slurm), nothing with `--quiet`; and the
//! summary at the end.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use smolvlm::Timings;

/// How often a plain progress line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Bar steps per image: the bar moves within an image as its tiles encode
/// (a full-grid photo is 13 encodes, about 23 s on 2 cores at real scale).
const STEPS: u64 = 1000;

/// What a run has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Captioned in this run.
    pub captioned: u64,
    /// Failed in this run.
    pub failed: u64,
    /// Skipped: captioned by an earlier run.
    pub skipped: u64,
    /// Skipped: failed in an earlier run (and not retried).
    pub failed_before: u64,
}

impl Counts {
    /// Images finished, one way or another.
    #[must_use]
    pub fn finished(&self) -> u64 {
        self.captioned + self.failed + self.skipped + self.failed_before
    }
}

/// The progress display.
#[derive(Debug)]
pub struct Progress {
    display: Display,
    total: u64,
    counts: Counts,
    started: Instant,
    last_line: Instant,
    /// Sum of per-stage times of this run's captions.
    stage_sums: Timings,
    /// How far each caption thread's image is encoded.
    in_flight: Vec<f32>,
}

#[derive(Debug)]
enum Display {
    Bar(ProgressBar),
    Lines,
    Quiet,
}

impl Progress {
    /// A display for `total` images: a bar if stderr is a terminal.
    #[must_use]
    pub fn new(total: u64, quiet: bool) -> Self {
        let display = if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            let style = ProgressStyle::with_template(
                "{elapsed_precise} [{wide_bar}] {images}/{all} images {rate} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.2}/s", state.per_sec() / STEPS as f64);
                },
            )
            .with_key(
                "images",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", state.pos() / STEPS);
                },
            )
            .with_key(
                "all",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}", state.len().unwrap_or(0) / STEPS);
                },
            );
            let bar = ProgressBar::with_draw_target(
                Some(total.saturating_mul(STEPS)),
                ProgressDrawTarget::stderr(),
            )
            .with_style(style);
            Display::Bar(bar)
        } else {
            Display::Lines
        };
        let now = Instant::now();
        Self {
            display,
            total,
            counts: Counts::default(),
            started: now,
            last_line: now,
            stage_sums: Timings::default(),
            in_flight: Vec::new(),
        }
    }

    /// Caption thread `slot`'s image is `fraction` encoded.
    pub fn moved(&mut self, slot: usize, fraction: f32) {
        if self.in_flight.len() <= slot {
            self.in_flight.resize(slot + 1, 0.0);
        }
        self.in_flight[slot] = fraction.clamp(0.0, 1.0);
        self.redraw();
    }

    /// Puts the bar where the finished images and the ones in flight are.
    fn redraw(&self) {
        if let Display::Bar(bar) = &self.display {
            let c = &self.counts;
            let done = (c.captioned + c.failed).saturating_mul(STEPS);
            let moving: f32 = self.in_flight.iter().sum();
            let position = done + (moving * STEPS as f32) as u64;
            // Never past the end, and never backwards.
            let end = bar.length().unwrap_or(0);
            bar.set_position(position.min(end).max(bar.position()));
        }
    }

    /// The counts so far.
    #[must_use]
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Images neither finished nor skipped.
    #[must_use]
    pub fn left(&self) -> u64 {
        self.total.saturating_sub(self.counts.finished())
    }

    /// An image was captioned in this run.
    pub fn captioned(&mut self, timings: &Timings) {
        self.counts.captioned += 1;
        let s = &mut self.stage_sums;
        s.decode += timings.decode;
        s.resize += timings.resize;
        s.tokenize += timings.tokenize;
        s.encode += timings.encode;
        s.prefill += timings.prefill;
        s.generate += timings.generate;
        s.total += timings.total;
        self.advance();
    }

    /// An image failed in this run.
    pub fn failed(&mut self) {
        self.counts.failed += 1;
        self.advance();
    }

    /// An image was recorded by an earlier run: it leaves the work to do.
    pub fn skipped(&mut self, failed_before: bool) {
        if failed_before {
            self.counts.failed_before += 1;
        } else {
            self.counts.skipped += 1;
        }
        if let Display::Bar(bar) = &self.display {
            bar.set_length(bar.length().unwrap_or(STEPS).saturating_sub(STEPS));
            bar.set_message(self.message());
        }
    }

    fn advance(&mut self) {
        self.redraw();
        if let Display::Bar(bar) = &self.display {
            bar.set_message(self.message());
        }
    }

    fn message(&self) -> String {
        let c = &self.counts;
        let mut parts = Vec::new();
        if c.failed + c.failed_before > 0 {
            parts.push(format!("{} failed", c.failed + c.failed_before));
        }
        if c.skipped > 0 {
            parts.push(format!("{} skipped", c.skipped));
        }
        parts.join(", ")
    }

    /// Called often: prints a plain progress line every [`LINE_EVERY`].
    pub fn tick(&mut self) {
        if matches!(self.display, Display::Lines) && self.last_line.elapsed() >= LINE_EVERY {
            self.last_line = Instant::now();
            let c = self.counts;
            let done = c.captioned + c.failed;
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            let left = self.total.saturating_sub(c.finished());
            let eta = if rate > 0.0 {
                format!("{:.0} s", left as f64 / rate)
            } else {
                "unknown".to_owned()
            };
            let extra = self.message();
            eprintln!(
                "smolvlm: {}/{} images, {rate:.2} images/s, ETA {eta}{}{extra}",
                c.finished(),
                self.total,
                if extra.is_empty() { "" } else { ", " }
            );
        }
    }

    /// Clears the bar and prints the summary (unless quiet).
    pub fn finish(&mut self, interrupted: bool, records: Option<&str>) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
        if matches!(self.display, Display::Quiet) {
            return;
        }
        for line in self.summary(interrupted, records) {
            eprintln!("{line}");
        }
    }

    fn summary(&self, interrupted: bool, records: Option<&str>) -> Vec<String> {
        let c = self.counts;
        let secs = self.started.elapsed().as_secs_f64();
        let done = c.captioned + c.failed;
        let failed = if c.failed_before > 0 {
            format!(
                "{} failed ({} in an earlier run)",
                c.failed + c.failed_before,
                c.failed_before
            )
        } else {
            format!("{} failed", c.failed)
        };
        let mut lines = vec![format!(
            "smolvlm: {}: {} captioned, {failed}, {} skipped (recorded earlier) of {} image{} in {secs:.1} s ({:.2} images/s)",
            if interrupted { "interrupted" } else { "done" },
            c.captioned,
            c.skipped,
            self.total,
            if self.total == 1 { "" } else { "s" },
            done as f64 / secs.max(1e-9),
        )];
        if c.captioned > 0 {
            let s = &self.stage_sums;
            let mean = |d: Duration| d.as_secs_f64() * 1e3 / c.captioned as f64;
            lines.push(format!(
                "smolvlm: mean per caption: decode {:.1} ms, resize {:.1} ms, tokenize {:.1} ms, encode {:.1} ms, prefill {:.1} ms, generate {:.1} ms, total {:.1} ms",
                mean(s.decode), mean(s.resize), mean(s.tokenize), mean(s.encode), mean(s.prefill), mean(s.generate), mean(s.total),
            ));
        }
        if let Some(records) = records {
            lines.push(format!("smolvlm: records in {records}"));
        }
        let left = self.left();
        if interrupted && left > 0 {
            lines.push(format!(
                "smolvlm: {left} image{} not done: run the same command again to resume",
                if left == 1 { "" } else { "s" }
            ));
        }
        lines
    }
}
