//! `patronload export`: users with fines or blocks from Alma's export →
//! the SIS's hold file, and a summary on stderr (counts only).

use std::process::ExitCode;

use patronload::alma::export::{export, ExportOptions, ExportProfile, EXPORT_REJECTS_FILE};
use patronload::alma::ReadOptions;

use super::args::ExportArgs;
use super::output_options;

pub(crate) fn run_export(args: ExportArgs) -> ExitCode {
    let result = ExportProfile::load(&args.profile).and_then(|profile| {
        export(&ExportOptions {
            profile,
            out_dir: args.out.clone(),
            inputs: args.inputs.clone(),
            read: ReadOptions::default(),
            output: output_options(&args.publish),
        })
    });
    match result {
        Ok(s) => {
            if !args.quiet || s.users_rejected > 0 {
                eprintln!(
                    "patronload export: {} users read, {} selected, {} written to {} ({} bytes)",
                    s.users_read, s.users_selected, s.users_written, s.file, s.bytes
                );
                if s.users_rejected > 0 {
                    eprintln!(
                        "  {} selected users left out: see {EXPORT_REJECTS_FILE}",
                        s.users_rejected
                    );
                }
                if s.unreadable_balance > 0 {
                    eprintln!("  balances not read as numbers: {}", s.unreadable_balance);
                }
            }
            if s.users_rejected > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => super::not_published(&e, &args.out),
    }
}
