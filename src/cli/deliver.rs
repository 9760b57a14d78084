//! `patronload deliver`: upload a published package to a
//! `[delivery.NAME]` target, and what it prints.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use patronload::deliver::config::Config;
use patronload::deliver::{deliver, DeliverOptions, Delivery, Error};

use super::args::DeliverArgs;
use super::plural;

/// Exit status of a failed delivery.
pub(crate) const DELIVERY_FAILED: u8 = 5;

/// Wait before the first retry of a transient failure (doubled after).
const BACKOFF: Duration = Duration::from_secs(5);

pub(crate) fn run_deliver(args: DeliverArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("patronload: {e}");
            return ExitCode::from(2);
        }
    };
    match deliver_to(&config, &args.target, &args.dir, args.dry_run, args.quiet) {
        Ok(_) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

/// Delivers `dir` to `target` of `config` and prints what happened;
/// `Err` carries the exit status (2 for configuration, 5 otherwise) after
/// printing why.
pub(crate) fn deliver_to(
    config: &Config,
    target: &str,
    dir: &Path,
    dry_run: bool,
    quiet: bool,
) -> Result<Delivery, u8> {
    let t = match config.target(target) {
        Ok(t) => t.clone(),
        Err(m) => {
            eprintln!("patronload: {m}");
            return Err(2);
        }
    };
    let opts = DeliverOptions {
        dir: dir.to_path_buf(),
        target: t,
        dry_run,
        backoff: BACKOFF,
    };
    match deliver(&opts) {
        Ok(d) => {
            if !quiet || dry_run {
                print_delivery(&d, target, &opts);
            }
            Ok(d)
        }
        Err(e) => {
            eprintln!("patronload: delivery to {target} failed: {e}");
            if matches!(e, Error::Config { .. }) {
                return Err(2);
            }
            Err(DELIVERY_FAILED)
        }
    }
}

fn print_delivery(d: &Delivery, target: &str, opts: &DeliverOptions) {
    let p = &d.plan;
    let verb = if d.dry_run {
        "would upload"
    } else {
        "delivered"
    };
    let bytes: u64 = p.uploads.iter().map(|u| u.size).sum();
    eprintln!(
        "patronload: {verb} {} ({}) to {target}:{} as run {}{}",
        plural(p.uploads.len() as u64, "zip", "zips"),
        plural(bytes, "byte", "bytes"),
        d.remote_dir,
        d.run_id,
        if d.attempts > 1 {
            format!(" after {} attempts", d.attempts)
        } else {
            String::new()
        }
    );
    if !d.dry_run && d.upload_seconds > 0.0 {
        eprintln!(
            "  upload {:.2}s, {:.1} MB/s",
            d.upload_seconds,
            d.bytes_uploaded as f64 / 1e6 / d.upload_seconds
        );
    }
    let would = |done: &str, dry: &str| if d.dry_run { dry } else { done }.to_string();
    for u in &p.uploads {
        eprintln!(
            "  {} {} as {}",
            would("uploaded", "would upload"),
            u.local,
            u.final_name
        );
    }
    for n in &p.already_there {
        eprintln!("  already on the server (or picked up): {n}");
    }
    for n in &p.remove_temps {
        eprintln!(
            "  {} {n} of an interrupted delivery",
            would("removed", "would remove")
        );
    }
    for n in &p.remove_stale {
        eprintln!(
            "  {} {n}: an earlier package Alma has not picked up (today's is full)",
            would("removed", "would remove")
        );
    }
    for n in &p.keep_stale {
        eprintln!(
            "  kept {n}: an earlier package Alma has not picked up yet; today's is a delta, \
             so its changes are not in today's"
        );
    }
    for n in &p.remove_handled {
        eprintln!(
            "  {} {n}: picked up more than {} days ago",
            would("removed", "would remove"),
            opts.target.keep_handled_days
        );
    }
    if !p.foreign.is_empty() {
        eprintln!(
            "  left alone: {} not written by this feed",
            plural(p.foreign.len() as u64, "file", "files")
        );
    }
    eprintln!(
        "  directory after delivery: {} of {} bytes, {} of {} zips",
        p.bytes_after,
        opts.target.max_dir_bytes().unwrap_or(0),
        p.zips_after,
        opts.target.max_zips
    );
}
