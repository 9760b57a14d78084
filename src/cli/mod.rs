//! The binary's side of each command: flags ([`args`], clap derive) →
//! library options, and what the user sees. The library returns reports;
//! only these modules print.

pub(crate) mod alma;
pub(crate) mod args;
pub(crate) mod check;
pub(crate) mod convert;
pub(crate) mod deliver;
pub(crate) mod export;
pub(crate) mod history;
pub(crate) mod init;
pub(crate) mod progress;
pub(crate) mod run;
pub(crate) mod state;
pub(crate) mod triage;

use patronload::outdir::OutputOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use patronload::report::{Summary, ZipInfo};

use args::PublishArgs;

/// Library options from the publishing flags.
pub(crate) fn output_options(p: &PublishArgs) -> OutputOptions {
    OutputOptions {
        wait: p.wait,
        group_readable: p.group_readable,
    }
}

/// `n` and the noun, singular for one.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The first lines of a run's summary on stderr: `who`, the counts read
/// and written as each command words them, the reject rate, and the
/// rejects by reason. Counts only, never patron data.
pub(crate) fn print_counts(who: &str, read: String, written: String, s: &Summary) {
    eprintln!(
        "{who}: {read} read, {written} written, {} rejected ({:.2}%, threshold {}%)",
        s.rejected, s.reject_rate_percent, s.reject_threshold_percent
    );
    for (reason, n) in &s.rejected_by_reason {
        eprintln!("  rejected {reason}: {n}");
    }
}

/// One line per zip written.
pub(crate) fn print_zips(zips: &[ZipInfo]) {
    for z in zips {
        eprintln!(
            "  wrote {} ({}, {}, {})",
            z.name,
            plural(z.users, "user", "users"),
            plural(z.bytes, "byte", "bytes"),
            plural(z.entries.len() as u64, "XML file", "XML files")
        );
    }
}

/// One line per stale zip of an earlier, larger run removed.
pub(crate) fn print_removed(removed_stale: &[PathBuf]) {
    for p in removed_stale {
        eprintln!(
            "  removed stale {} from an earlier, larger run",
            p.display()
        );
    }
}

/// A run that failed before its publish step: prints the error and, unless
/// it is a usage error, that `out` is as it was. Exit 2 for a usage error,
/// else 1.
pub(crate) fn not_published(e: &patronload::Error, out: &Path) -> ExitCode {
    eprintln!("patronload: {e}");
    if e.is_usage() {
        return ExitCode::from(2);
    }
    eprintln!("patronload: nothing was published in {}", out.display());
    ExitCode::from(1)
}
