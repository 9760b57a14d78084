//! How far a run has got, for whoever watches it: shared counters the run
//! updates as it goes and the binary polls to draw a progress bar.
//!
//! The library never prints; it only stores. The counters are plain
//! relaxed atomics written by the one thread that takes decisions in input
//! order (the `Emitter`), so updating them costs a store, and reading them
//! from another thread never changes what the run does or writes: output
//! bytes do not depend on whether anybody watches.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

/// What a run is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Checking the profile, opening the output directory.
    Starting,
    /// A job's first pass: reading every feed for the person keys.
    Scanning,
    /// Reading, mapping and writing records.
    Reading,
    /// Every record read; the last XML documents are being compressed.
    Compressing,
    /// Checking the books and publishing the package.
    Publishing,
    /// The run returned.
    Done,
}

impl Stage {
    /// A short lower-case word for the stage (`reading`, ...).
    pub fn label(self) -> &'static str {
        match self {
            Stage::Starting => "starting",
            Stage::Scanning => "scanning",
            Stage::Reading => "reading",
            Stage::Compressing => "compressing",
            Stage::Publishing => "publishing",
            Stage::Done => "done",
        }
    }

    fn from_u8(v: u8) -> Stage {
        match v {
            1 => Stage::Scanning,
            2 => Stage::Reading,
            3 => Stage::Compressing,
            4 => Stage::Publishing,
            5 => Stage::Done,
            _ => Stage::Starting,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Stage::Starting => 0,
            Stage::Scanning => 1,
            Stage::Reading => 2,
            Stage::Compressing => 3,
            Stage::Publishing => 4,
            Stage::Done => 5,
        }
    }
}

/// The shared counters of one run (see the module doc). Carried in an
/// `Arc` by [`super::options::RunOptions::progress`]; a run nobody
/// watches updates them all the same.
#[derive(Debug, Default)]
pub struct Progress {
    stage: AtomicU8,
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    records: AtomicU64,
    rejects: AtomicU64,
}

/// One reading of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// The stage.
    pub stage: Stage,
    /// Bytes of input the run will read in this pass (all inputs).
    pub bytes_total: u64,
    /// Bytes of input read so far in this pass.
    pub bytes_done: u64,
    /// Records (or users, for `repack`) taken so far.
    pub records: u64,
    /// Records rejected so far.
    pub rejects: u64,
}

impl Progress {
    /// Reads the counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            stage: Stage::from_u8(self.stage.load(Relaxed)),
            bytes_total: self.bytes_total.load(Relaxed),
            bytes_done: self.bytes_done.load(Relaxed),
            records: self.records.load(Relaxed),
            rejects: self.rejects.load(Relaxed),
        }
    }

    /// Enters `stage`.
    pub fn set_stage(&self, stage: Stage) {
        self.stage.store(stage.as_u8(), Relaxed);
    }

    /// Starts a pass over `total` bytes of input in `stage` (a job reads
    /// its inputs twice): bytes read start again from zero.
    pub fn begin_pass(&self, stage: Stage, total: u64) {
        self.bytes_total.store(total, Relaxed);
        self.bytes_done.store(0, Relaxed);
        self.set_stage(stage);
    }

    /// Bytes of input read so far in this pass.
    pub fn set_bytes(&self, done: u64) {
        self.bytes_done.store(done, Relaxed);
    }

    /// Records taken so far.
    pub fn set_records(&self, n: u64) {
        self.records.store(n, Relaxed);
    }

    /// Records rejected so far.
    pub fn set_rejects(&self, n: u64) {
        self.rejects.store(n, Relaxed);
    }
}

/// Input bytes read, counted on the files' sizes: the inputs of a pass
/// and where each starts, so a position in one input's (decoded) text
/// becomes bytes of the whole pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct InputBytes {
    /// Size of each input; 0 when its size cannot be read (it then
    /// fails when opened).
    sizes: Vec<u64>,
}

impl InputBytes {
    /// The sizes of `inputs`.
    pub(crate) fn of(inputs: &[std::path::PathBuf]) -> InputBytes {
        InputBytes {
            sizes: inputs
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .collect(),
        }
    }

    /// All inputs together.
    pub(crate) fn total(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// Bytes read when input `idx` is read up to `pos` of its `len`
    /// bytes of text (the decoded text may be longer than the file).
    pub(crate) fn at(&self, idx: usize, pos: usize, len: usize) -> u64 {
        let before: u64 = self.sizes.iter().take(idx).sum();
        let size = self.sizes.get(idx).copied().unwrap_or(0);
        let within = if len == 0 {
            size
        } else {
            (size as u128 * pos.min(len) as u128 / len as u128) as u64
        };
        before + within
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_restarts_the_bytes_and_keeps_the_records() {
        let p = Progress::default();
        assert_eq!(p.snapshot().stage, Stage::Starting);
        p.begin_pass(Stage::Scanning, 100);
        p.set_bytes(100);
        p.set_records(7);
        p.begin_pass(Stage::Reading, 100);
        let s = p.snapshot();
        assert_eq!(
            (s.stage, s.bytes_done, s.bytes_total, s.records),
            (Stage::Reading, 0, 100, 7)
        );
        for st in [Stage::Compressing, Stage::Publishing, Stage::Done] {
            p.set_stage(st);
            assert_eq!(p.snapshot().stage, st);
        }
    }

    #[test]
    fn positions_in_decoded_text_scale_to_file_bytes() {
        let b = InputBytes {
            sizes: vec![100, 50],
        };
        assert_eq!(b.total(), 150);
        assert_eq!(b.at(0, 50, 100), 50);
        // The second file decoded to twice its size: half its text is
        // half its bytes.
        assert_eq!(b.at(1, 50, 100), 125);
        assert_eq!(b.at(1, 100, 100), 150);
        assert_eq!(b.at(1, 0, 0), 150);
    }
}
