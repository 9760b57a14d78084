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
    /// off; `what` names the command (`convert`, `repack`).
    pub(crate) fn start(progress: &Arc<Progress>, quiet: bool, what: &'static str) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let (progress, stop) = (Arc::clone(progress), Arc::clone(&stop));
            std::thread::spawn(move || draw(&progress, &stop, what))
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
    let bar = if colour {
        "{bar:20.cyan/blue}"
    } else {
        "{bar:20}"
    };
    ProgressStyle::with_template(&format!(
        "{{prefix}} [{bar}] {{bytes}}/{{total_bytes}} {{binary_bytes_per_sec}} ETA {{eta}} {{wide_msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn draw(progress: &Progress, stop: &AtomicBool, what: &'static str) {
    // Configured before it may draw, so the first picture is complete.
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
    bar.set_style(style(colour()));
    let mut shown = false;
    let mut reading_since: Option<(Instant, u64)> = None;
    loop {
        let s = progress.snapshot();
        bar.set_length(s.bytes_total.max(s.bytes_done));
        bar.set_position(s.bytes_done);
        bar.set_prefix(format!("{what}: {}", s.stage.label()));
        // Records per second over the reading stage only: a job's first
        // pass counts no records.
        if s.stage == Stage::Reading && reading_since.is_none() {
            reading_since = Some((Instant::now(), s.records));
        }
        let rate = match reading_since {
            Some((t, r0)) => {
                let secs = t.elapsed().as_secs_f64();
                if secs > 0.2 {
                    format!(" ({:.0}/s)", (s.records - r0) as f64 / secs)
                } else {
                    String::new()
                }
            }
            None => String::new(),
        };
        bar.set_message(format!(
            "{} records{rate}, {} rejected",
            s.records, s.rejects
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
