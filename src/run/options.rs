//! The options every command that writes a package shares (`convert`
//! with a profile or a job, `repack`, and the coming ones): one type, so a flag
//! means the same thing everywhere and the binary builds it once.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDate;

use crate::outdir::OutputOptions;
use crate::read::input::MmapChoice;
use crate::run::progress::Progress;
use crate::write::package::Limits;

/// Which engine runs the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// One thread, one shard per file: the reference the parallel engine
    /// is tested against.
    Reference,
    /// Shards mapped on `threads` threads, entries compressed in parallel.
    Parallel {
        /// Worker threads.
        threads: usize,
        /// Target shard size in bytes of input.
        shard_bytes: usize,
    },
}

impl Engine {
    /// The parallel engine on every core with the default shard size.
    pub fn parallel_default() -> Engine {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Engine::Parallel {
            threads,
            shard_bytes: DEFAULT_SHARD_BYTES,
        }
    }
}

/// Default shard size: about 1,500 records of a typical extract, whose XML
/// (≈ 3 MB) keeps the shards in flight small. Measured on 1M patrons, 2
/// threads: 256 KiB gave 7.4 s and 389 MB peak RSS, 1 MiB 8.2 s and 448 MB.
pub const DEFAULT_SHARD_BYTES: usize = 256 << 10;

/// What one run writes where, and how: shared by a single feed
/// ([`super::convert::ConvertOptions`]), a job
/// ([`crate::job::JobOptions`]) and a repack
/// ([`crate::check::repack::RepackOptions`]).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// The date every relative date rule counts from; also the zip
    /// entries' timestamp.
    pub as_of: NaiveDate,
    /// Output limits.
    pub limits: Limits,
    /// Reject rate in percent above which the run reports failure (exit
    /// status 3) although output was written. By default 5, the rate at
    /// which Alma itself alerts.
    pub reject_threshold_percent: f64,
    /// Overrides the output prefix of the profile (or job).
    pub prefix: Option<String>,
    /// Which engine runs the stages. A job maps on the parallel engine's
    /// thread count (shard size does not apply); the output is the same
    /// either way.
    pub engine: Engine,
    /// Whether inputs may be memory-mapped.
    pub mmap: MmapChoice,
    /// Locking and file modes of the output directory.
    pub output: OutputOptions,
    /// Change detection against a state file (`--state`); `None` runs
    /// without memory of past runs.
    pub state: Option<crate::state::StateOptions>,
    /// Alma's own users (`convert --alma-users`, `[alma] users` in a
    /// job): every user is checked against them before it is accepted.
    /// Built by the caller from Alma's export (the `alma` module).
    pub alma: Option<std::sync::Arc<crate::alma_ids::AlmaIndex>>,
    /// Counters the run updates as it goes, for a progress display
    /// (`Default::default()` when nobody watches). Never changes the output.
    pub progress: Arc<Progress>,
}
