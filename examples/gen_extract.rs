//! Writes a synthetic SIS extract and its ground truth (see
//! `patronload::gen`), for tests and benchmarks.
//!
//! ```text
//! gen_extract [--rich] --rows N --seed S [--dup-rate F] [--bad-rate F] --out PATH [--truth PATH]
//! gen_extract --employees --rows N --seed S --students M [--overlap F] [--collide F] --out PATH
//! ```
//!
//! `--out -` writes the extract to stdout. A one-line summary goes to stderr.

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Instant;

use patronload::gen::{
    generate, generate_employees, generate_rich, EmployeeOptions, GenOptions, GenStats,
};

const USAGE: &str = "\
usage: gen_extract [--rich] --rows N --seed S [--dup-rate F] [--bad-rate F] --out PATH [--truth PATH]
       gen_extract --employees --rows N --seed S --students M [--overlap F] [--collide F] --out PATH

Writes a synthetic SIS extract (CSV) with known defects, and optionally the
ground truth (one row per record: line,record,primary_id,outcome,reason,kind).

  --rows N        number of records (header excluded)
  --seed S        random seed (u64); same seed and options, same bytes
  --dup-rate F    fraction of duplicate-identifier records, 0..=1 (default 0.03)
  --bad-rate F    fraction of otherwise defective records, 0..=1 (default 0.03)
  --out PATH      extract file, or - for stdout
  --truth PATH    ground-truth CSV file (not written when absent)
  --rich          add WORK_PHONE, UNIV_ID, LIBRARY_ID and NOTE columns and write
                  dates in seven formats (examples/rich.toml reads it)

With --employees, writes an HR extract instead (examples/job/employees.toml)
that overlaps the student extract of M rows, for multi-feed jobs:

  --students M    rows of the student extract it overlaps (required)
  --overlap F     fraction of employees who are also students (default 0.1)
  --collide F     fraction of the others holding a student's barcode (default 0.002)";

/// Parsed command line.
struct Args {
    opts: GenOptions,
    /// Set with `--rich`: the rich layout (`patronload::gen::generate_rich`).
    rich: bool,
    /// Set with `--employees`: write an HR extract instead.
    employees: Option<EmployeeOptions>,
    out: String,
    truth: Option<String>,
}

/// Parses the command line; `Err` carries the message to print before the
/// usage text.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut opts = GenOptions::default();
    let (mut rows, mut seed, mut out, mut truth) = (None, None, None, None);
    let (mut employees, mut students, mut overlap, mut collide) = (false, None, 0.1, 0.002);
    let mut rich = false;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--rows" => rows = Some(number(&flag, &value()?)?),
            "--seed" => seed = Some(number(&flag, &value()?)?),
            "--dup-rate" => opts.dup_rate = rate(&flag, &value()?)?,
            "--bad-rate" => opts.bad_rate = rate(&flag, &value()?)?,
            "--out" => out = Some(value()?),
            "--truth" => truth = Some(value()?),
            "--employees" => employees = true,
            "--rich" => rich = true,
            "--students" => students = Some(number(&flag, &value()?)?),
            "--overlap" => overlap = rate(&flag, &value()?)?,
            "--collide" => collide = rate(&flag, &value()?)?,
            _ => return Err(format!("unknown argument `{flag}`")),
        }
    }
    opts.rows = rows.ok_or("--rows is required")?;
    opts.seed = seed.ok_or("--seed is required")?;
    if opts.dup_rate + opts.bad_rate > 1.0 {
        return Err("--dup-rate and --bad-rate add up to more than 1".into());
    }
    if rich && employees {
        return Err("--rich and --employees do not go together".into());
    }
    let employees = if employees {
        Some(EmployeeOptions {
            rows: opts.rows,
            seed: opts.seed,
            students: students.ok_or("--employees needs --students")?,
            overlap,
            collide,
        })
    } else {
        None
    };
    Ok(Args {
        opts,
        rich,
        employees,
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
    if let Some(e) = &args.employees {
        let rows = if args.out == "-" {
            generate_employees(e, io::stdout().lock())?
        } else {
            generate_employees(e, create(&args.out)?)?
        };
        eprintln!(
            "gen_extract: {rows} employee rows (seed {}), overlapping {} students; {:.2}s",
            e.seed,
            e.students,
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let truth: Box<dyn Write> = match &args.truth {
        Some(p) => Box::new(create(p)?),
        None => Box::new(io::sink()),
    };
    type Gen = fn(&GenOptions, Box<dyn Write>, Box<dyn Write>) -> io::Result<GenStats>;
    let write: Gen = if args.rich { generate_rich } else { generate };
    let stats = if args.out == "-" {
        write(&args.opts, Box::new(io::stdout().lock()), truth)?
    } else {
        write(&args.opts, Box::new(create(&args.out)?), truth)?
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
