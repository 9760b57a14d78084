//! `patronload init`: a first profile from an extract. The profile goes
//! to `--out` (or stdout); what could not be decided goes to stderr,
//! without any value of the extract.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use patronload::init::{propose, Preset};

/// Flags of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The extract (CSV, TSV, pipe-delimited or fixed width, any of the
    /// usual encodings).
    #[arg(value_name = "EXTRACT")]
    pub extract: PathBuf,
    /// The system it comes from; its column names are tried first.
    #[arg(long, value_parser = ["peoplesoft", "banner", "colleague", "workday"])]
    pub preset: Option<String>,
    /// Write the profile here instead of stdout (an existing file is not
    /// overwritten without --force).
    #[arg(long, value_name = "PROFILE.toml")]
    pub out: Option<PathBuf>,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Runs `init`.
pub(crate) fn run_init(args: InitArgs) -> ExitCode {
    let preset = args.preset.as_deref().and_then(Preset::parse);
    let p = match propose(&args.extract, preset) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("patronload: {e}");
            return ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    match &args.out {
        Some(path) => {
            if path.exists() && !args.force {
                eprintln!(
                    "patronload: {} exists; give --force to overwrite it",
                    path.display()
                );
                return ExitCode::from(2);
            }
            if let Err(e) = std::fs::write(path, &p.profile) {
                eprintln!("patronload: cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
            eprintln!(
                "patronload init: wrote {} from {} records of {}",
                path.display(),
                p.records,
                args.extract.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            if out.write_all(p.profile.as_bytes()).is_err() {
                return ExitCode::from(1);
            }
        }
    }
    if p.notes.is_empty() {
        eprintln!("patronload init: every column was decided; read the profile before use");
    } else {
        eprintln!("patronload init: not decided, or guessed (TODO in the profile):");
        for n in &p.notes {
            eprintln!("  - {n}");
        }
    }
    ExitCode::SUCCESS
}
