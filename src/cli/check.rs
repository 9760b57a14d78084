//! `patronload check` and `patronload repack`: flags → library options,
//! and what the user sees. The library returns reports; only this module
//! and `main` print.

use std::process::ExitCode;
use std::sync::Arc;

use patronload::check::repack::{repack, RepackOptions};
use patronload::check::{check, CheckOptions, CheckReport, CodeTables, ZipLimits};
use patronload::read::input::MmapChoice;
use patronload::run::options::{Engine, RunOptions};
use patronload::write::package::Limits;

use super::args::{CheckArgs, PackageLimitArgs, RepackArgs};
use super::progress::Bar;
use super::{plural, print_counts, print_removed, print_zips};

fn options(
    l: &PackageLimitArgs,
    users_per_file: u64,
    level: u32,
) -> patronload::Result<CheckOptions> {
    let codes = match &l.codes {
        Some(dir) => {
            if !dir.is_dir() {
                return Err(patronload::Error::Usage(format!(
                    "--codes {}: no such folder; give the folder of the Alma code table \
                     exports",
                    dir.display()
                )));
            }
            let tables = CodeTables::load(dir)?;
            if tables.elements().next().is_none() {
                eprintln!(
                    "patronload: warning: --codes {} holds no code tables (*.csv); codes are \
                     not checked",
                    dir.display()
                );
            }
            Some(tables)
        }
        None => None,
    };
    let limits = Limits {
        users_per_file,
        files_per_zip: l.files_per_zip,
        max_zip_bytes: l.max_zip_bytes.as_u64(),
        max_total_bytes: l.max_total_bytes.as_u64(),
        compression_level: level,
    };
    limits.check()?;
    Ok(CheckOptions {
        limits,
        zip: ZipLimits {
            max_entry_bytes: l.max_entry_bytes.as_u64(),
            max_ratio: l.max_ratio,
            ..ZipLimits::default()
        },
        codes,
        ..CheckOptions::default()
    })
}

fn fail(e: &patronload::Error) -> ExitCode {
    eprintln!("patronload: {e}");
    if e.is_usage() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

/// Runs `check`.
pub fn run_check(args: CheckArgs) -> ExitCode {
    let progress = Arc::default();
    let bar = Bar::start(&progress, false);
    let result = options(&args.limits, Limits::default().users_per_file, 6).and_then(|mut o| {
        o.max_findings = args.max_findings;
        o.progress = Arc::clone(&progress);
        check(&args.inputs, &o)
    });
    bar.finish();
    let report = match result {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("patronload: report does not serialize: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print_findings(&report);
    }
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

/// The human list: one line per finding, then the totals.
fn print_findings(r: &CheckReport) {
    for f in &r.findings {
        let mut at = f.file.clone();
        if let Some(e) = &f.entry {
            at.push_str("!/");
            at.push_str(e);
        }
        if f.line > 0 {
            at.push_str(&format!(":{}", f.line));
        }
        let who = match &f.primary_id {
            Some(p) if !p.is_empty() => format!(" [user {p}]"),
            Some(_) => " [user without primary_id]".to_string(),
            None => String::new(),
        };
        println!("{at}: {}{who}: {}", f.code, f.message);
    }
    if r.findings_truncated {
        println!(
            "... {} more findings not listed (raise --max-findings, or use --json)",
            r.findings_total - r.findings.len() as u64
        );
    }
    println!(
        "patronload check: {} in {}; {} in {} and the files",
        plural(r.users, "user", "users"),
        plural(r.files.len() as u64, "file", "files"),
        plural(r.findings_total, "finding", "findings"),
        plural(r.users_with_findings, "user", "users"),
    );
    for (code, n) in &r.findings_by_code {
        println!("  {code}: {n}");
    }
    if r.is_clean() {
        println!("patronload check: OK, Alma would take this as it is");
    }
}

/// Runs `repack`.
pub fn run_repack(args: RepackArgs) -> ExitCode {
    let progress = Arc::default();
    let bar = Bar::start(&progress, args.output.quiet);
    let result = options(
        &args.limits,
        args.output.users_per_file,
        args.output.compression_level,
    )
    .and_then(|mut o| {
        o.progress = Arc::clone(&progress);
        let opts = RepackOptions {
            inputs: args.inputs.clone(),
            run: RunOptions {
                out_dir: args.output.out.clone(),
                as_of: args
                    .as_of
                    .unwrap_or_else(|| chrono::Local::now().date_naive()),
                // The checks and the output share one set of limits.
                limits: o.limits,
                reject_threshold_percent: args.max_reject_rate,
                prefix: Some(args.prefix.clone()),
                engine: Engine::Reference,
                mmap: MmapChoice::Never,
                output: super::output_options(&args.output.publish),
                state: None,
                alma: None,
                progress: Arc::clone(&progress),
            },
            check: o,
        };
        repack(&opts)
    });
    bar.finish();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return super::not_published(&e, &args.output.out),
    };
    let s = &outcome.summary;
    if !args.output.quiet || s.reject_threshold_exceeded {
        print_counts(
            "patronload repack",
            plural(s.records_read, "user", "users"),
            s.users_written.to_string(),
            s,
        );
        for (kind, n) in &s.map.dropped_segments {
            eprintln!("  dropped {kind}: {n}");
        }
        if s.map.forbidden_chars_removed > 0 {
            eprintln!(
                "  forbidden characters removed: {}",
                s.map.forbidden_chars_removed
            );
        }
        print_zips(&s.zips);
        print_removed(&outcome.removed_stale);
    }
    if s.reject_threshold_exceeded {
        eprintln!("patronload: reject rate above the threshold: check rejects.csv");
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
