//! The progress bar on stderr, hidden for `--json` and when stderr is not a terminal, so
//! machine-read output and logs stay clean.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How far a run is: by count, or by time for `--duration` runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Goal {
    Count(u64),
    Time(Duration),
}

/// A bar that follows `done` (a shared counter of completed units) until dropped.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    pub(crate) fn start(
        label: &str,
        unit: &'static str,
        goal: Goal,
        done: Arc<AtomicU64>,
        hidden: bool,
    ) -> Self {
        let bar = if hidden || !std::io::stderr().is_terminal() {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr())
        };
        if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_owned());
        let ticking = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(100));
            loop {
                interval.tick().await;
                let count = done.load(Ordering::Relaxed);
                let elapsed = started.elapsed();
                let fraction = match goal {
                    Goal::Count(total) if total > 0 => count as f64 / total as f64,
                    Goal::Count(_) => 1.0,
                    Goal::Time(total) => elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9),
                };
                ticking.set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
                let rate = count as f64 / elapsed.as_secs_f64().max(1e-9);
                ticking.set_message(format!("{count} {unit}s, {rate:.0}/s"));
            }
        });
        Self { bar, ticker }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
