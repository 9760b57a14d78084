//! `patronload run`: the nightly job. Lock → convert → publish (the
//! library's `convert` / `convert_job`, exactly as `convert` calls them)
//! → deliver → notify.

use std::process::ExitCode;
use std::time::Instant;

use patronload::deliver::config::Config;
use patronload::notify::{self, Message, NotifyConfig, When};
use patronload::report::Summary;

use super::args::RunArgs;
use super::convert::{commit_state, convert_outcome, needs_review, report};
use super::deliver::deliver_to;

/// `patronload run JOB.toml --target NAME`: the nightly job names its
/// job file first, without `--job`. `run` takes every flag of `convert`,
/// whose positional arguments are a profile's extracts, so a lone `.toml`
/// positional of `run` given without `--profile` or `--job` is read as
/// `--job` (any other command line is left as it is).
pub(crate) fn job_as_flag(mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if argv.get(1).is_none_or(|a| a != "run") {
        return argv;
    }
    let given = |flag: &str| {
        argv.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
    };
    if given("--profile") || given("--job") {
        return argv;
    }
    // Flags of `run` and `convert` that take a value: their value is not
    // a positional.
    let takes_value = |a: &str| {
        !a.contains('=')
            && a.starts_with("--")
            && !matches!(
                a,
                "--dry-run"
                    | "--quiet"
                    | "--reference"
                    | "--no-mmap"
                    | "--accept-changes"
                    | "--wait"
                    | "--group-readable"
                    | "--help"
            )
    };
    let mut positional = Vec::new();
    let mut i = 2;
    while i < argv.len() {
        let a = argv[i].to_string_lossy();
        if a.starts_with('-') {
            i += if takes_value(&a) { 2 } else { 1 };
            continue;
        }
        positional.push(i);
        i += 1;
    }
    if let [only] = positional[..] {
        if argv[only].to_string_lossy().ends_with(".toml") {
            argv.insert(only, "--job".into());
        }
    }
    argv
}

pub(crate) fn run_run(args: RunArgs) -> ExitCode {
    let started = Instant::now();
    let quiet = args.convert.output.quiet;
    // The delivery configuration is checked before converting, so a
    // mistake there costs nothing and publishes nothing.
    let Some(config_path) = args.config.as_ref().or(args.convert.job.as_ref()) else {
        eprintln!(
            "patronload: give --config FILE holding [delivery.{}]",
            args.target
        );
        return ExitCode::from(2);
    };
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("patronload: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(m) = config.target(&args.target) {
        eprintln!("patronload: {}: {m}", config_path.display());
        return ExitCode::from(2);
    }
    let notify = config.notify.clone();
    let target = args.target.as_str();

    let mut outcome = match convert_outcome(&args.convert) {
        Ok(o) => o,
        Err(patronload::Error::Guard {
            message,
            guards_json,
        }) => {
            let code =
                super::state::guard_tripped(&message, &guards_json, &args.convert.output.out);
            let body = format!(
                "a state guard tripped: nothing published or delivered, the state file \
                 unchanged\n{message}"
            );
            send(&notify, When::Guard, target, "guard tripped", body);
            return code;
        }
        Err(e) => {
            let code = super::not_published(&e, &args.convert.output.out);
            let body = format!("conversion failed, nothing published or delivered: {e}");
            send(&notify, When::Failure, target, "conversion failed", body);
            return code;
        }
    };
    let review = needs_review(&outcome);
    if !quiet || review {
        report(&outcome, &args.convert, started);
    }
    // Held for review: the state is not committed (the run row stays
    // `published`), so the next run compares against the last delivered
    // state and sends these users again.
    if review {
        eprintln!(
            "patronload: not delivered to {target}: read rejects.csv, then `patronload deliver`"
        );
        let body = format!(
            "published but NOT delivered: read rejects.csv before Alma loads it\n{}",
            counts(&outcome.summary)
        );
        send(&notify, When::Rejects, target, "held for review", body);
        return ExitCode::from(3);
    }

    match deliver_to(
        &config,
        target,
        &args.convert.output.out,
        args.dry_run,
        quiet,
    ) {
        Ok(d) => {
            if !d.dry_run {
                if let Err(e) = commit_state(&mut outcome, &args.convert) {
                    eprintln!("patronload: {e}");
                    let body = format!(
                        "delivered, but the state file could not record it (the next run \
                         sends these users again): {e}\n{}",
                        counts(&outcome.summary)
                    );
                    send(&notify, When::Failure, target, "state not recorded", body);
                    return ExitCode::from(1);
                }
            }
            let body = format!(
                "{} {} zip(s) as run {}{}\n{}",
                if d.dry_run {
                    "dry run: would deliver"
                } else {
                    "delivered"
                },
                d.plan.uploads.len(),
                d.run_id,
                if d.plan.keep_stale.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} earlier zip(s) not yet picked up by Alma kept",
                        d.plan.keep_stale.len()
                    )
                },
                counts(&outcome.summary)
            );
            send(&notify, When::Always, target, "delivered", body);
            ExitCode::SUCCESS
        }
        Err(code) => {
            let body = format!(
                "published in {} but NOT delivered (see the log); run `patronload deliver` \
                 when the cause is fixed\n{}",
                args.convert.output.out.display(),
                counts(&outcome.summary)
            );
            send(&notify, When::Failure, target, "delivery failed", body);
            ExitCode::from(code)
        }
    }
}

/// Counts and reasons for a notification; never patron data.
fn counts(s: &Summary) -> String {
    let mut out = format!(
        "records read {}, users written {}, rejected {} ({:.2}%, threshold {}%), zips {}",
        s.records_read,
        s.users_written,
        s.rejected,
        s.reject_rate_percent,
        s.reject_threshold_percent,
        s.zips.len()
    );
    for (reason, n) in &s.rejected_by_reason {
        out.push_str(&format!("\nrejected {reason}: {n}"));
    }
    for e in &s.encoding_suspect {
        out.push_str(&format!(
            "\n{} is declared {} but reads as {}",
            e.path, e.declared, e.looks_like
        ));
    }
    out
}

/// Sends a notification if `[notify]` asks for `event`; a failure to
/// notify is printed, never changes the exit status.
fn send(config: &Option<NotifyConfig>, event: When, target: &str, what: &str, body: String) {
    let Some(c) = config else { return };
    if !c.wants(event) {
        return;
    }
    let msg = Message {
        event,
        subject: format!("patronload run → {target}: {what}"),
        body,
    };
    for e in notify::send(c, &msg) {
        eprintln!("patronload: notification not sent: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::job_as_flag;

    fn argv(s: &str) -> Vec<std::ffi::OsString> {
        s.split(' ').map(Into::into).collect()
    }

    #[test]
    fn a_lone_toml_of_run_is_the_job() {
        assert_eq!(
            job_as_flag(argv("p run nightly.toml --target prod --out o -q")),
            argv("p run --job nightly.toml --target prod --out o -q")
        );
        assert_eq!(
            job_as_flag(argv("p run --out o --wait nightly.toml --target prod")),
            argv("p run --out o --wait --job nightly.toml --target prod")
        );
    }

    #[test]
    fn other_command_lines_are_left_alone() {
        for line in [
            "p run --profile p.toml --target prod x.csv",
            "p run --job j.toml --target prod",
            "p run --target prod --config c.toml a.csv",
            "p run --target prod a.toml b.toml",
            "p convert nightly.toml",
        ] {
            assert_eq!(job_as_flag(argv(line)), argv(line), "{line}");
        }
    }
}
