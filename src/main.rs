//! The `patronload` binary: parse flags, run, map the result to an exit
//! status. Everything else lives in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_from(cli::run::job_as_flag(std::env::args_os().collect()));
    on_signal_clean_up();
    match cli.command {
        Command::Convert(args) => cli::convert::run_convert(args),
        Command::Check(args) => cli::check::run_check(args),
        Command::Repack(args) => cli::check::run_repack(args),
        Command::History(args) => cli::history::run_history(args),
        Command::Deliver(args) => cli::deliver::run_deliver(args),
        Command::Run(args) => cli::run::run_run(args),
        Command::Triage(args) => cli::triage::run_triage(args),
        Command::Export(args) => cli::export::run_export(args),
        Command::Init(args) => cli::init::run_init(args),
    }
}

/// SIGINT and SIGTERM remove the run's temporaries and exit 130 / 143;
/// the output directory holds the previous package or, if the signal came
/// after the commit, the new one.
#[cfg(unix)]
fn on_signal_clean_up() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            patronload::outdir::abort_cleanup();
            eprintln!("patronload: interrupted; temporary files removed");
            std::process::exit(128 + sig);
        }
    });
}

#[cfg(not(unix))]
fn on_signal_clean_up() {}
