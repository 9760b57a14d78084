//! CPU time per stage of the parallel engines, for `summary.json`'s
//! `run.cpu_s` (issue 18): how much of a run is compression and how busy
//! the one ordered consumer is, the figures `scripts/bench` prints.
//!
//! Each stage adds the CPU time of the thread it ran on, read before and
//! after (`CLOCK_THREAD_CPUTIME_ID` where the platform has it, so a
//! thread waiting on a channel costs nothing; elsewhere its wall time,
//! waits included). The figures are only written out: nothing reads them
//! back to decide anything, so a run's other bytes are the same measured
//! or not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::report::CpuSeconds;

/// The stages measured, in nanoseconds, added to from any thread.
#[derive(Debug, Default)]
pub(crate) struct StageCpu {
    /// Shard or chunk mapping tasks: parse, map, serialize.
    map: AtomicU64,
    /// The ordered consumer (the thread that runs the engine): opening and
    /// decoding inputs, then numbers, claims, rejects and cutting documents.
    consume: AtomicU64,
    /// Compression tasks, one XML document each.
    compress: AtomicU64,
    /// The placer thread: compressed entries into zip parts, in order.
    place: AtomicU64,
}

/// A stage of [`StageCpu`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    /// See [`StageCpu`]'s fields.
    Map,
    /// See [`StageCpu`]'s fields.
    Consume,
    /// See [`StageCpu`]'s fields.
    Compress,
    /// See [`StageCpu`]'s fields.
    Place,
}

impl StageCpu {
    fn slot(&self, stage: Stage) -> &AtomicU64 {
        match stage {
            Stage::Map => &self.map,
            Stage::Consume => &self.consume,
            Stage::Compress => &self.compress,
            Stage::Place => &self.place,
        }
    }

    /// Runs `f` on this thread and adds the thread's CPU time over it to
    /// `stage`.
    pub(crate) fn time<T>(&self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let start = self.mark();
        let out = f();
        self.add_since(stage, start);
        out
    }

    /// This thread's CPU clock now, for [`StageCpu::add_since`].
    pub(crate) fn mark(&self) -> Duration {
        thread_cpu()
    }

    /// Adds this thread's CPU time since `start` (its [`StageCpu::mark`])
    /// to `stage`.
    pub(crate) fn add_since(&self, stage: Stage, start: Duration) {
        let spent = thread_cpu().saturating_sub(start);
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.slot(stage).fetch_add(nanos, Ordering::Relaxed);
    }

    /// The figures so far, in seconds to the millisecond.
    pub(crate) fn seconds(&self) -> CpuSeconds {
        let s = |stage| {
            let nanos = self.slot(stage).load(Ordering::Relaxed);
            (nanos as f64 / 1e6).round() / 1000.0
        };
        CpuSeconds {
            map: s(Stage::Map),
            consume: s(Stage::Consume),
            compress: s(Stage::Compress),
            place: s(Stage::Place),
        }
    }
}

/// The calling thread's CPU time (user and system) since it started.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
))]
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Without a thread CPU clock: wall time since the first call, so a stage
/// counts its waits too (busy wall time, an upper bound).
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
)))]
fn thread_cpu() -> Duration {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_and_round_to_the_millisecond() {
        let cpu = StageCpu::default();
        let x = cpu.time(Stage::Map, || (0..200_000u64).map(|i| i * i).sum::<u64>());
        assert!(x > 0);
        cpu.time(Stage::Place, || ());
        cpu.slot(Stage::Compress)
            .fetch_add(1_234_567_890, Ordering::Relaxed);
        let s = cpu.seconds();
        assert_eq!(s.compress, 1.235);
        assert_eq!(s.consume, 0.0);
        assert!(s.map >= 0.0 && s.place >= 0.0);
    }
}
