//! Writes a synthetic SIS extract and its ground truth (see
//! `patronload::gen`), for tests and benchmarks.
//!
//! ```text
//! gen_extract --rows N --seed S [--dup-rate F] [--bad-rate F] --out PATH [--truth PATH]
//! ```
//!
//! `--out -` writes the extract to stdout. A one-line summary goes to stderr.

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use patronload::gen::{generate, GenOptions};

const USAGE: &str = "\
usage: gen_extract --rows N --seed S [--dup-rate F] [--bad-rate F] --out PATH [--truth PATH]

Writes a synthetic SIS extract (CSV) with known defects, and optionally the
ground truth (one row per record: line,record,primary_id,outcome,reason,kind).

  --rows N        number of records (header excluded)
  --seed S        random seed (u64); same seed and options, same bytes
  --dup-rate F    fraction of duplicate-identifier records, 0..=1 (default 0.03)
  --bad-rate F    fraction of otherwise defective records, 0..=1 (default 0.03)
  --out PATH      extract file, or - for stdout
  --truth PATH    ground-truth CSV file (not written when absent)";

/// Parsed command line.
struct Args {
    opts: GenOptions,
    out: String,
    truth: Option<String>,
}

/// Parses the command line; `Err` carries the message to print before the
/// usage text.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut opts = GenOptions::default();
    let (mut rows, mut seed, mut out, mut truth) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => rows = Some(number(&flag, &value()?)?),
            "--seed" => seed = Some(number(&flag, &value()?)?),
            "--dup-rate" => opts.dup_rate = rate(&flag, &value()?)?,
            "--bad-rate" => opts.bad_rate = rate(&flag, &value()?)?,
            "--out" => out = Some(value()?),
            "--truth" => truth = Some(value()?),
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    opts.rows = rows.ok_or("--rows is required")?;
    opts.seed = seed.ok_or("--seed is required")?;
    if opts.dup_rate + opts.bad_rate > 1.0 {
        return Err("--dup-rate and --bad-rate add up to more than 1".into());
    }
    Ok(Args {
        opts,
        out: out.ok_or("--out is required")?,
        truth,
    })
}

fn number(flag: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{flag}: `{v}` is not a non-negative integer"))
}

fn rate(flag: &str, v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{flag}: `{v}` is not a number within 0..=1")),
    }
}

fn create(path: &str) -> io::Result<File> {
    File::create(path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

fn run(args: &Args) -> io::Result<()> {
    let start = Instant::now();
    let truth: Box<dyn Write> = match &args.truth {
        Some(p) => Box::new(create(p)?),
        None => Box::new(io::sink()),
    };
    let stats = if args.out == "-" {
        generate(&args.opts, io::stdout().lock(), truth)?
    } else {
        generate(&args.opts, create(&args.out)?, truth)?
    };
    eprintln!(
        "gen_extract: {} rows (seed {}): expected {} written, {} rejected; {:.2}s",
        stats.rows,
        args.opts.seed,
        stats.expected_written,
        stats.expected_rejected,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse(argv.into_iter()) {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("gen_extract: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen_extract: {e}");
            ExitCode::FAILURE
        }
    }
}
