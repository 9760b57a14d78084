//! The progress bar on stderr: a thread that polls the library's
//! [`Progress`] counters and draws them with `indicatif`, only when stderr
//! is a terminal and `-q` was not given. It never touches the run: the
//! output is the same with or without it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use patronload::run::progress::{Progress, Stage};

/// How often the counters are read.
const POLL: Duration = Duration::from_millis(100);

/// A running progress bar; [`Bar::finish`] clears it.
pub(crate) struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bar {
    /// Starts drawing `progress` when stderr is a terminal and `quiet` is
    /// off.
    pub(crate) fn start(progress: &Arc<Progress>, quiet: bool) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let (progress, stop) = (Arc::clone(progress), Arc::clone(&stop));
            std::thread::spawn(move || draw(&progress, &stop))
        });
        Bar { stop, thread }
    }

    /// Stops and clears the bar (before the summary is printed).
    pub(crate) fn finish(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Whether colour is allowed: <https://no-color.org> (set and not empty
/// means none).
fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn style(colour: bool) -> ProgressStyle {
    // Fits an 80-column terminal: the numbers are in the message, short.
    let bar = if colour {
        "{bar:10.cyan/blue}"
    } else {
        "{bar:10}"
    };
    ProgressStyle::with_template(&format!("{{prefix}} [{bar}] {{msg}} ETA {{eta}}"))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// `1234567` → `1.2M`, `15234` → `15.2k`.
fn short(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn draw(progress: &Progress, stop: &AtomicBool) {
    // Configured before it may draw, so the first picture is complete.
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    bar.set_style(style(colour()));
    let mut shown = false;
    let mut pass_since: Option<(Stage, Instant)> = None;
    let mut reading_since: Option<(Instant, u64)> = None;
    loop {
        let s = progress.snapshot();
        bar.set_length(s.bytes_total.max(s.bytes_done).max(1));
        bar.set_position(s.bytes_done);
        bar.set_prefix(s.stage.label());
        // Rates over the current pass (a job reads its inputs twice), and
        // records over the reading stage only.
        if matches!(s.stage, Stage::Scanning | Stage::Reading)
            && pass_since.is_none_or(|(st, _)| st != s.stage)
        {
            pass_since = Some((s.stage, Instant::now()));
        }
        if s.stage == Stage::Reading && reading_since.is_none() {
            reading_since = Some((Instant::now(), s.records));
        }
        let per_sec = |since: Instant, n: u64| {
            let secs = since.elapsed().as_secs_f64();
            (secs > 0.2).then(|| n as f64 / secs)
        };
        let bytes_rate = pass_since
            .and_then(|(_, t)| per_sec(t, s.bytes_done))
            .map_or(String::new(), |r| format!(" {:.1}MiB/s", mib(r as u64)));
        let rec_rate = reading_since
            .and_then(|(t, r0)| per_sec(t, s.records - r0))
            .map_or(String::new(), |r| format!(" {}/s", short(r)));
        bar.set_message(format!(
            "{:.1}/{:.1}MiB{bytes_rate} {} rec{rec_rate} {} rej",
            mib(s.bytes_done),
            mib(s.bytes_total),
            short(s.records as f64),
            short(s.rejects as f64),
        ));
        if !shown {
            // The first picture at once, whatever the rate limit.
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.tick();
            shown = true;
        }
        if stop.load(Ordering::Relaxed) || s.stage == Stage::Done {
            break;
        }
        std::thread::sleep(POLL);
    }
    bar.finish_and_clear();
}
