//! The pre-check's side of `convert`: Alma's user exports read into the
//! index the run checks every user against.

use std::path::PathBuf;
use std::sync::Arc;

use patronload::alma::{load_index, ReadOptions};
use patronload::alma_ids::AlmaIndex;

/// The index of `from_flags` and `from_job` together (none when both are
/// empty), with a line on stderr saying what was read (counts only).
pub(crate) fn precheck_index(
    from_flags: &[PathBuf],
    from_job: &[PathBuf],
    quiet: bool,
) -> patronload::Result<Option<Arc<AlmaIndex>>> {
    let paths: Vec<PathBuf> = from_job.iter().chain(from_flags).cloned().collect();
    if paths.is_empty() {
        return Ok(None);
    }
    let (ix, stats) = load_index(&paths, &ReadOptions::default())?;
    if !quiet {
        eprintln!(
            "patronload: pre-check against {} Alma users ({} v2, {} v1, {} CSV; {} identifiers \
             in {} KiB, {} bytes each)",
            stats.users(),
            stats.v2_users,
            stats.v1_users,
            stats.csv_users,
            ix.identifiers(),
            ix.heap_bytes() / 1024,
            ix.heap_bytes() / ix.identifiers().max(1)
        );
        for e in &stats.skipped_entries {
            eprintln!("  skipped {e}: not an XML file");
        }
    }
    Ok(Some(Arc::new(ix)))
}
