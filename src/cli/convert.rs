//! `patronload convert`: one feed (`--profile`) or a job of several
//! (`--job`), and the human summary it prints.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use patronload::job::{convert_job, Job, JobOptions};
use patronload::profile::Profile;
use patronload::read::input::MmapChoice;
use patronload::run::convert::{convert, ConvertOptions, Outcome};
use patronload::run::options::{Engine, RunOptions};
use patronload::write::package::Limits;

use super::args::ConvertArgs;
use super::progress::Bar;
use super::{output_options, plural, print_counts, print_removed, print_zips};

pub(crate) fn run_convert(args: ConvertArgs) -> ExitCode {
    let started = Instant::now();
    // `convert` delivers nothing itself: the state is committed as soon
    // as the package is published (`run` commits after the delivery).
    let result = convert_outcome(&args).and_then(|mut outcome| {
        commit_state(&mut outcome, &args)?;
        Ok(outcome)
    });
    match result {
        Ok(outcome) => {
            // A UTF-8 extract that is really "ANSI" loses every accented
            // patron, however few: as loud as a high reject rate.
            let exceeded = needs_review(&outcome);
            if !args.output.quiet || exceeded {
                report(&outcome, &args, started);
            }
            if exceeded {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(patronload::Error::Guard {
            message,
            guards_json,
        }) => super::state::guard_tripped(&message, &guards_json, &args.output.out),
        Err(e) => super::not_published(&e, &args.output.out),
    }
}

/// Records in the state file what the published package sent, if the
/// run has a state; says so when it cannot (the next run sends those
/// users again).
pub(crate) fn commit_state(outcome: &mut Outcome, args: &ConvertArgs) -> patronload::Result<()> {
    if let Some(pending) = outcome.state.take() {
        pending.commit().inspect_err(|_| {
            eprintln!(
                "patronload: the package was published in {}, but the state file could \
                 not record it; the next run sends these users again",
                args.output.out.display()
            );
        })?;
    }
    Ok(())
}

/// Whether a published package must be read before Alma loads it (exit
/// 3): reject rate over the threshold, or an encoding suspect.
pub(crate) fn needs_review(outcome: &Outcome) -> bool {
    outcome.summary.reject_threshold_exceeded || !outcome.summary.encoding_suspect.is_empty()
}

/// The library call behind `convert` (and `run`): flags → options →
/// `convert` or `convert_job`.
pub(crate) fn convert_outcome(args: &ConvertArgs) -> patronload::Result<Outcome> {
    let as_of = args
        .as_of
        .unwrap_or_else(|| chrono::Local::now().date_naive());
    let run = RunOptions {
        out_dir: args.output.out.clone(),
        as_of,
        limits: Limits {
            users_per_file: args.output.users_per_file,
            files_per_zip: args.files_per_zip,
            max_zip_bytes: args.max_zip_bytes.as_u64(),
            max_total_bytes: args.max_total_bytes.as_u64(),
            compression_level: args.output.compression_level,
        },
        reject_threshold_percent: args.max_reject_rate,
        prefix: args.prefix.clone(),
        engine: engine(args),
        mmap: if args.no_mmap {
            MmapChoice::Never
        } else {
            MmapChoice::Auto
        },
        output: output_options(&args.output.publish),
        state: None,
        alma: None,
        progress: Arc::default(),
    };
    let bar = Bar::start(&run.progress, args.output.quiet);
    let result = match (&args.job, &args.profile) {
        (Some(job), _) => Job::load(job).and_then(|job| {
            let mut run = run;
            run.state = super::state::options(&args.state, job.state.clone());
            run.alma =
                super::alma::precheck_index(&args.alma_users, &job.alma_users, args.output.quiet)?;
            convert_job(&JobOptions { job, run })
        }),
        (None, Some(profile)) => Profile::load(profile).and_then(|p| {
            let mut run = run;
            run.state = super::state::options(&args.state, None);
            run.alma = super::alma::precheck_index(&args.alma_users, &[], args.output.quiet)?;
            convert(&ConvertOptions {
                profile_path: profile.clone(),
                profile: p,
                inputs: args.inputs.clone(),
                run,
            })
        }),
        // clap requires one of the two.
        (None, None) => Err(patronload::Error::Usage(
            "give --profile with inputs, or --job".into(),
        )),
    };
    bar.finish();
    result
}

fn engine(args: &ConvertArgs) -> Engine {
    if args.reference {
        return Engine::Reference;
    }
    let Engine::Parallel {
        threads,
        shard_bytes,
    } = Engine::parallel_default()
    else {
        return Engine::Reference;
    };
    Engine::Parallel {
        threads: args.threads.unwrap_or(threads),
        shard_bytes: args.shard_bytes.unwrap_or(shard_bytes),
    }
}

/// The human summary on stderr: counts and files only, never patron data.
pub(crate) fn report(o: &Outcome, args: &ConvertArgs, started: Instant) {
    let s = &o.summary;
    print_counts(
        "patronload",
        plural(s.records_read, "record", "records"),
        plural(s.users_written, "user", "users"),
        s,
    );
    for (field, n) in &s.map.dropped_fields {
        eprintln!(
            "  left out unreadable {field}: {n} (patrons kept; see {})",
            patronload::run::convert::WARNINGS_FILE
        );
    }
    for (field, codes) in &s.map.unknown_codes {
        let total: u64 = codes.values().sum();
        eprintln!(
            "  unknown codes in {field}: {total} ({} distinct)",
            codes.len()
        );
    }
    print_zips(&s.zips);
    if let Some(j) = &s.job {
        eprintln!(
            "  people in more than one record: {} ({} records superseded, {} values merged; see {})",
            j.people_matched,
            j.superseded,
            j.merged_values,
            patronload::job::DUPLICATES_FILE
        );
    }
    if let Some(st) = &s.state {
        super::state::print_changes(st);
    }
    print_removed(&o.removed_stale);
    eprintln!(
        "  reports: {}, {}, {} and {} in {}",
        patronload::html::REPORT_FILE,
        patronload::run::convert::REJECTS_FILE,
        patronload::run::convert::WARNINGS_FILE,
        patronload::run::convert::SUMMARY_FILE,
        args.output.out.display()
    );
    for e in &s.encoding_suspect {
        eprintln!(
            "patronload: {} is declared {} but is not: {} record(s) hold bytes that are not \
             valid UTF-8, and they read as {}. Set `encoding = \"{}\"` in [input], or export \
             the extract as UTF-8 (not ANSI)",
            e.path, e.declared, e.invalid_records, e.looks_like, e.looks_like
        );
    }
    if s.reject_threshold_exceeded {
        eprintln!(
            "patronload: reject rate above the threshold: check rejects.csv before Alma loads this"
        );
    }
    eprintln!("  elapsed {:.2}s", started.elapsed().as_secs_f64());
}
