//! `patronload triage`: Alma's rejected-users report → one line per user
//! with cause, action and source; a summary by cause on stderr (counts
//! and column names only, never a message's text).

use std::process::ExitCode;

use patronload::alma::triage::{triage, TriageOptions};

use super::args::TriageArgs;

pub(crate) fn run_triage(args: TriageArgs) -> ExitCode {
    let opts = TriageOptions {
        report: args.report.clone(),
        run_dir: args.run.clone(),
        out: args.out.clone(),
    };
    match triage(&opts) {
        Ok(o) => {
            eprintln!(
                "patronload triage: {} rows (header on row {}; user id from column `{}`, message \
                 from column `{}`)",
                o.rows, o.columns.header_row, o.columns.user_id, o.columns.message
            );
            for (cause, n) in &o.by_cause {
                eprintln!("  {cause}: {n}");
            }
            if o.unrecognised_groups > 0 {
                eprintln!(
                    "  unrecognised messages: {} distinct, kept verbatim and grouped at the end",
                    o.unrecognised_groups
                );
            }
            eprintln!(
                "  found in the run of {} in {}: {} of {}",
                o.run_as_of,
                args.run.display(),
                o.found_in_run,
                o.rows
            );
            eprintln!("  wrote {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("patronload: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
