//! Delivery of a published package to the SFTP directory Alma polls.
//!
//! [`deliver`] reads the package of an output directory (its zips and
//! `summary.json`), connects to a [`config::Target`] (host key pinned or
//! in `known_hosts`, never trusted on first use), lists the remote
//! directory, and decides with [`plan::plan`] what to upload, remove and
//! keep, refusing before any write when the directory's byte budget or
//! Alma's per-run zip count would be exceeded. Each zip is uploaded under
//! a temporary name Alma ignores, checked (bytes written, SHA-256 of what
//! was read against `summary.json`, size on the server), and only when all
//! of them are there renamed to final names unique to the package, so a
//! failed or interrupted delivery leaves no file under a final name and
//! the next attempt delivers exactly once. Transient network failures are
//! retried with backoff from a fresh connection; host-key, login and
//! permission failures are not.
//!
//! The server is reached through the small [`sftp::Remote`] trait, so the
//! SSH library can be swapped and faults injected in tests.

pub mod config;
pub mod plan;
pub mod sftp;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use config::Target;
use plan::{LocalZip, Plan, PlanInput, Refusal};
use sftp::{Remote, RemoteError, SftpRemote};

/// Why a delivery failed. Nothing under a final name was written unless
/// the report says so.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The delivery configuration is unusable.
    #[error("{}: {message}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The local package is missing, incomplete or changed.
    #[error("package: {0}")]
    Package(String),
    /// The server's host key is not the expected one; never retried.
    #[error(
        "host key of {server} refused: the server presented {seen}, expected {expected}; \
         nothing was sent. If the server's key really changed, check the new one with the \
         server's administrator and update host_key / known_hosts"
    )]
    HostKey {
        /// `host:port`.
        server: String,
        /// Fingerprint the server presented.
        seen: String,
        /// What the configuration expects.
        expected: String,
    },
    /// The login failed; never retried.
    #[error("login: {0}")]
    Auth(String),
    /// The remote directory cannot take the package; nothing was written.
    #[error("refused before uploading anything: {0}")]
    Refused(#[from] Refusal),
    /// A remote operation failed (after retries, if transient).
    #[error("{0}")]
    Remote(RemoteError),
}

impl Error {
    /// Whether a fresh attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Remote(e) if e.transient)
    }
}

/// `summary.json`'s fields a delivery reads.
#[derive(Debug, Deserialize)]
struct SummaryFile {
    as_of: String,
    zips: Vec<SummaryZip>,
    /// `full` or `delta`; absent means full.
    #[serde(default)]
    package: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SummaryZip {
    name: String,
    bytes: u64,
    sha256: String,
}

/// A published package as a delivery sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// The output directory.
    pub dir: PathBuf,
    /// Zip name prefix.
    pub prefix: String,
    /// The run's as-of date, `YYYY-MM-DD`.
    pub as_of: String,
    /// The zips, in order, with sizes and SHA-256s from `summary.json`.
    pub zips: Vec<LocalZip>,
    /// A delta package (only changes since the last full one).
    pub delta: bool,
}

impl Package {
    /// Reads `summary.json` of `dir` and checks its zips are there with
    /// the sizes it records.
    pub fn read(dir: &Path) -> Result<Package, Error> {
        let path = dir.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Package(format!("{}: {e}", path.display())))?;
        let s: SummaryFile = serde_json::from_str(&text)
            .map_err(|e| Error::Package(format!("{}: {e}", path.display())))?;
        let delta = match s.package.as_deref() {
            None | Some("full") => false,
            Some("delta") => true,
            Some(other) => {
                return Err(Error::Package(format!(
                    "{}: unknown package kind `{other}`",
                    path.display()
                )))
            }
        };
        let Some(first) = s.zips.first() else {
            return Err(Error::Package(format!(
                "{} lists no zips: nothing to deliver",
                path.display()
            )));
        };
        let prefix = first
            .name
            .strip_suffix(".zip")
            .and_then(|n| n.rsplit_once('_'))
            .map(|(p, _)| p.to_string())
            .ok_or_else(|| Error::Package(format!("unexpected zip name {}", first.name)))?;
        let mut zips = Vec::new();
        for z in &s.zips {
            if plan::local_number(&prefix, &z.name).is_none() {
                return Err(Error::Package(format!(
                    "zip {} does not follow {prefix}_NNN.zip",
                    z.name
                )));
            }
            let p = dir.join(&z.name);
            let len = std::fs::metadata(&p)
                .map_err(|e| Error::Package(format!("{}: {e}", p.display())))?
                .len();
            if len != z.bytes {
                return Err(Error::Package(format!(
                    "{} has {len} bytes, summary.json says {}: the package changed; deliver \
                     only what a finished run published",
                    p.display(),
                    z.bytes
                )));
            }
            zips.push(LocalZip {
                name: z.name.clone(),
                size: z.bytes,
                sha256: z.sha256.to_ascii_lowercase(),
            });
        }
        Ok(Package {
            dir: dir.to_path_buf(),
            prefix,
            as_of: s.as_of,
            zips,
            delta,
        })
    }

    /// The package's run id (see [`plan::run_id`]).
    pub fn run_id(&self) -> String {
        plan::run_id(&self.as_of, &self.zips)
    }
}

/// What [`deliver`] needs.
#[derive(Debug, Clone)]
pub struct DeliverOptions {
    /// The output directory holding the published package.
    pub dir: PathBuf,
    /// Where it goes.
    pub target: Target,
    /// Connect, list, plan and report, but write nothing.
    pub dry_run: bool,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

/// What a delivery did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The package's run id.
    pub run_id: String,
    /// Whether the package is a delta.
    pub delta: bool,
    /// The remote directory.
    pub remote_dir: String,
    /// The plan of the attempt that succeeded.
    pub plan: Plan,
    /// Final names renamed into place by this delivery.
    pub delivered: Vec<String>,
    /// Bytes uploaded by the successful attempt.
    pub bytes_uploaded: u64,
    /// Attempts made (1 without retries).
    pub attempts: u32,
    /// Seconds spent uploading in the successful attempt.
    pub upload_seconds: f64,
    /// Nothing was written.
    pub dry_run: bool,
}

/// Delivers the package of `opts.dir` over SFTP.
pub fn deliver(opts: &DeliverOptions) -> Result<Delivery, Error> {
    let target = opts.target.clone();
    deliver_with(opts, &mut || {
        SftpRemote::connect(&target).map(|r| Box::new(r) as Box<dyn Remote>)
    })
}

/// [`deliver`] through any [`Remote`]: `connect` is called once per
/// attempt.
pub fn deliver_with(
    opts: &DeliverOptions,
    connect: &mut dyn FnMut() -> Result<Box<dyn Remote>, Error>,
) -> Result<Delivery, Error> {
    let package = Package::read(&opts.dir)?;
    let max_dir_bytes = opts.target.max_dir_bytes().map_err(|m| Error::Config {
        path: opts.dir.clone(),
        message: m,
    })?;
    let run_id = package.run_id();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = connect().and_then(|mut remote| {
            attempt_once(
                opts,
                &package,
                &run_id,
                max_dir_bytes,
                remote.as_mut(),
                attempt,
            )
        });
        match result {
            Err(e) if e.is_transient() && attempt <= opts.target.retries => {
                let wait = opts.backoff.saturating_mul(1 << (attempt - 1).min(6));
                std::thread::sleep(wait);
            }
            other => return other,
        }
    }
}

fn join(dir: &str, name: &str) -> String {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Reads through, hashing what it reads.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn attempt_once(
    opts: &DeliverOptions,
    package: &Package,
    run_id: &str,
    max_dir_bytes: u64,
    remote: &mut dyn Remote,
    attempt: u32,
) -> Result<Delivery, Error> {
    let dir = opts.target.remote_dir.as_str();
    let listing = remote.list(dir).map_err(Error::Remote)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let plan = plan::plan(
        &PlanInput {
            prefix: &package.prefix,
            run_id,
            zips: &package.zips,
            delta: package.delta,
            now,
            keep_handled_days: opts.target.keep_handled_days,
            max_dir_bytes,
            max_zips: opts.target.max_zips,
        },
        &listing,
    )?;
    let mut report = Delivery {
        run_id: run_id.to_string(),
        delta: package.delta,
        remote_dir: dir.to_string(),
        plan: plan.clone(),
        delivered: Vec::new(),
        bytes_uploaded: 0,
        attempts: attempt,
        upload_seconds: 0.0,
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        return Ok(report);
    }
    // Leftovers of interrupted attempts, and (full package) yesterday's
    // package Alma has not taken: it must not load it after today's.
    for name in plan
        .remove_temps
        .iter()
        .chain(&plan.remove_stale)
        .chain(&plan.remove_handled)
    {
        remote.remove(&join(dir, name)).map_err(Error::Remote)?;
    }
    let started = Instant::now();
    for u in &plan.uploads {
        let local = package.dir.join(&u.local);
        let file = std::fs::File::open(&local)
            .map_err(|e| Error::Package(format!("{}: {e}", local.display())))?;
        let mut reader = Hashing {
            inner: file,
            hash: Sha256::new(),
        };
        let temp = join(dir, &u.temp);
        let written = remote.upload(&mut reader, &temp).map_err(Error::Remote)?;
        let sha: String = reader
            .hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if written != u.size || sha != u.sha256 {
            // Best effort: the next attempt removes it anyway.
            let _ = remote.remove(&temp);
            return Err(Error::Package(format!(
                "{} changed while it was uploaded ({written} bytes, SHA-256 {sha}; \
                 summary.json: {} bytes, {}); nothing was renamed into place",
                local.display(),
                u.size,
                u.sha256
            )));
        }
        let on_server = remote.size(&temp).map_err(Error::Remote)?;
        if on_server != u.size {
            return Err(Error::Remote(RemoteError::transient(format!(
                "{temp} has {on_server} bytes on the server after uploading {}",
                u.size
            ))));
        }
        report.bytes_uploaded += written;
    }
    report.upload_seconds = started.elapsed().as_secs_f64();
    for u in &plan.uploads {
        remote
            .rename(&join(dir, &u.temp), &join(dir, &u.final_name))
            .map_err(Error::Remote)?;
        report.delivered.push(u.final_name.clone());
    }
    Ok(report)
}
