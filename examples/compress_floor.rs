//! The compression floor of a run: how long compressing the XML that
//! `convert` wrote takes *alone*, with the same deflate backend, level and
//! entry options, on the same number of threads. `scripts/bench` divides
//! `convert`'s wall time by this figure.
//!
//! ```text
//! compress_floor DIR --threads N --level L [--runs R]
//! ```
//!
//! Reads every XML entry of every `*.zip` in `DIR` into memory first (that
//! part is not timed), then compresses all entries on a pool of `N` threads
//! with `patronload::write::package::compress_entry`, the function `convert` uses,
//! and prints the best of `R` runs as one `key=value` line on stdout.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use patronload::write::package::{compress_entry, zip_time};
use rayon::prelude::*;

const USAGE: &str = "usage: compress_floor DIR --threads N --level L [--runs R]";

/// Parsed command line.
struct Args {
    dir: PathBuf,
    threads: usize,
    level: u32,
    runs: u32,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut dir = None;
    let (mut threads, mut level, mut runs) = (None, None, 1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--threads" => threads = Some(num(&value("--threads")?)?),
            "--level" => level = Some(num(&value("--level")?)? as u32),
            "--runs" => runs = num(&value("--runs")?)?.max(1) as u32,
            _ if a.starts_with("--") => return Err(format!("unknown flag {a}")),
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    Ok(Args {
        dir: dir.ok_or("DIR is missing")?,
        threads: threads.ok_or("--threads is missing")?,
        level: level.ok_or("--level is missing")?,
        runs,
    })
}

fn num(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("`{s}` is not a number"))
}

/// Every XML entry of every zip in `dir`, in name order, with a user count
/// (only used for bookkeeping inside `compress_entry`, so 0 is fine).
fn entries(dir: &PathBuf) -> Result<Vec<Vec<u8>>, String> {
    let mut zips: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "zip"))
        .collect();
    zips.sort();
    let mut out = Vec::new();
    for z in &zips {
        let f = File::open(z).map_err(|e| format!("{}: {e}", z.display()))?;
        let mut ar = zip::ZipArchive::new(f).map_err(|e| format!("{}: {e}", z.display()))?;
        for i in 0..ar.len() {
            let mut e = ar
                .by_index(i)
                .map_err(|e| format!("{}: {e}", z.display()))?;
            let mut xml = Vec::with_capacity(e.size() as usize);
            e.read_to_end(&mut xml)
                .map_err(|e| format!("{}: {e}", z.display()))?;
            out.push(xml);
        }
    }
    if out.is_empty() {
        return Err(format!("no zip entries in {}", dir.display()));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compress_floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let xml = match entries(&args.dir) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("compress_floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .expect("thread pool");
    let mtime = zip_time(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date"));
    let mut best = f64::INFINITY;
    let mut compressed = 0u64;
    for _ in 0..args.runs {
        let t = Instant::now();
        let sizes: Result<Vec<u64>, String> = pool.install(|| {
            xml.par_iter()
                .map(|x| {
                    compress_entry(x, 0, args.level, mtime)
                        .map(|e| e.zip_len() as u64)
                        .map_err(|e| e.to_string())
                })
                .collect()
        });
        let secs = t.elapsed().as_secs_f64();
        match sizes {
            Ok(s) => compressed = s.iter().sum(),
            Err(e) => {
                eprintln!("compress_floor: {e}");
                return ExitCode::FAILURE;
            }
        }
        best = best.min(secs);
    }
    let xml_bytes: usize = xml.iter().map(Vec::len).sum();
    println!(
        "floor_s={best:.3} entries={} xml_bytes={xml_bytes} compressed_bytes={compressed} threads={} level={}",
        xml.len(),
        args.threads,
        args.level
    );
    ExitCode::SUCCESS
}
