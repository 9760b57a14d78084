//! `patronload history --state FILE ID`: what the state file knows of
//! one patron. Field names only, never values, unless `--xml` asks for
//! the record last sent.

use std::process::ExitCode;

use super::args::HistoryArgs;

pub(crate) fn run_history(args: HistoryArgs) -> ExitCode {
    match patronload::state::history(&args.state, &args.id) {
        Ok(Some(h)) => {
            if args.xml {
                print!("{}", h.last_xml);
                return ExitCode::SUCCESS;
            }
            println!("primary_id {}", h.primary_id);
            for e in &h.events {
                if e.fields.is_empty() {
                    println!("run {} {} {}", e.run, e.as_of, e.kind);
                } else {
                    println!("run {} {} {} {}", e.run, e.as_of, e.kind, e.fields);
                }
            }
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("patronload: {} is not in {}", args.id, args.state.display());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("patronload: {e}");
            ExitCode::from(if e.is_usage() { 2 } else { 1 })
        }
    }
}
