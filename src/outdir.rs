//! The output directory of a run: one run at a time, one atomic publish,
//! private files, no leftovers.
//!
//! A run that publishes into `<out>` (convert, `convert --job`, repack):
//!
//! 1. takes an advisory lock on `.<name>.patronload.lock` beside `<out>`
//!    (`flock`, released by the OS when the process dies), recording its
//!    pid and start time; a second run stops at once naming the holder, or
//!    waits with `--wait`;
//! 2. removes what a killed run left beside `<out>` (`.<name>.patronload-*`
//!    directories): holding the lock proves no live run owns them;
//! 3. writes everything into a fresh hidden staging directory beside
//!    `<out>`, `.<name>.patronload-stage-*`, created with the mode, group
//!    and ACLs of the current `<out>`; other files of `<out>` are
//!    hard-linked into it, so they survive the swap;
//! 4. publishes by exchanging the staging directory with `<out>` in one
//!    `renameat2(RENAME_EXCHANGE)` (or one rename when `<out>` is new),
//!    then removes the previous package, now under the staging name.
//!
//! The exchange is the only step that changes what `<out>` holds, so
//! after any crash `<out>` holds exactly the previous run's package or
//! exactly the new one. Files are created `0600` (`0640` with
//! `group_readable`), further restricted by the umask, never widened.
//!
//! Test hooks, inert unless set: `PATRONLOAD_CRASH_AFTER_STEP=N` aborts the
//! process after publish step N (see [`STEPS`]);
//! `PATRONLOAD_PAUSE_AFTER_STEP=N` sleeps `PATRONLOAD_PAUSE_MS`
//! (default 60 000) after step N, for signal and lock tests.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// How a run publishes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// Wait for another run that holds the output directory instead of
    /// stopping at once.
    pub wait: bool,
    /// Create published files `0640` (group may read) instead of `0600`;
    /// the umask still applies.
    pub group_readable: bool,
}

/// The publish steps the crash hook counts, in order. The exchange is the
/// commit point: a crash at or before it leaves the previous package, a
/// crash after it the new one.
pub const STEPS: &[&str] = &[
    "summary written to the staging directory",
    "each staged file renamed to its final name (one step per file)",
    "staging directory synced",
    "staging directory exchanged with the output directory (commit)",
    "parent directory synced",
    "previous package removed",
];

/// One run's hold on an output directory.
#[derive(Debug)]
struct RunInfo {
    /// The directory as the caller named it (the lookup key).
    given: PathBuf,
    /// The resolved output directory.
    target: PathBuf,
    /// Its parent, where the lock and staging directory live.
    parent: PathBuf,
    /// The staging directory.
    stage: PathBuf,
    /// The lock file.
    lock_path: PathBuf,
    /// Directories this run created (the parent chain), deepest last.
    created: Vec<PathBuf>,
    /// Mode of files created in the staging directory.
    file_mode: u32,
    /// Names hard-linked from the previous `<out>` (not package files).
    carried: Vec<String>,
    /// Bytes free beside `<out>` when the run started.
    free_at_start: Option<u64>,
}

static RUNS: Mutex<Vec<Arc<RunInfo>>> = Mutex::new(Vec::new());
/// Held from the exchange until the previous package is removed, so a
/// signal's cleanup never runs in the middle of it, and never lets a
/// publish start after the cleanup began.
static COMMIT: Mutex<()> = Mutex::new(());

fn runs() -> MutexGuard<'static, Vec<Arc<RunInfo>>> {
    RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_for(dir: &Path) -> Option<Arc<RunInfo>> {
    runs().iter().find(|r| r.given == dir).cloned()
}

/// Known report names a package may hold besides its zips.
pub const REPORT_FILES: &[&str] = &[
    "rejects.csv",
    "summary.json",
    "duplicates.csv",
    "warnings.csv",
    "index.csv",
    "report.html",
];

/// Prefix of every temporary file a run creates (and older versions
/// left in the output directory itself).
const TEMP_PREFIX: &str = ".patronload-";

/// `<prefix>` of a `<prefix>_NNN.zip` name.
fn zip_prefix(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".zip")?;
    let (prefix, num) = stem.rsplit_once('_')?;
    (num.len() == 3 && num.bytes().all(|b| b.is_ascii_digit()) && !prefix.is_empty())
        .then_some(prefix)
}

/// Whether `name` is something a run writes (and may remove).
fn is_package_file(name: &str) -> bool {
    REPORT_FILES.contains(&name) || zip_prefix(name).is_some() || name.starts_with(TEMP_PREFIX)
}

/// Where a run's temporary files go: the staging directory of the run
/// publishing into `dir`, or `dir` itself outside a run (library callers
/// packaging without publishing).
pub(crate) fn temp_dir_for(dir: &Path) -> Result<(PathBuf, u32)> {
    if ABORTING.load(Ordering::SeqCst) {
        // A signal's cleanup is removing the staging directory: creating
        // files now would leave them behind.
        return Err(Error::io(
            dir,
            io::Error::new(io::ErrorKind::Interrupted, "the run is being interrupted"),
        ));
    }
    Ok(match run_for(dir) {
        Some(r) => (r.stage.clone(), r.file_mode),
        None => (dir.to_path_buf(), 0o600),
    })
}

/// Set once a signal's cleanup has begun.
static ABORTING: AtomicBool = AtomicBool::new(false);

/// Runs `f` holding `dir`: lock, stale cleanup, one-package check,
/// staging. On failure, removes the staging directory and any directory
/// the run created; the output directory stays as it was.
pub(crate) fn hold<T>(
    dir: &Path,
    prefix: &str,
    opts: OutputOptions,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut created = Vec::new();
    let (target, parent) = resolve(dir, &mut created)?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::Usage(format!(
                "--out {}: the directory name must be UTF-8",
                dir.display()
            ))
        })?
        .to_string();
    let lock_path = parent.join(format!(".{name}.patronload.lock"));
    let lock = match Lock::acquire(&lock_path, &target, opts.wait) {
        Ok(l) => l,
        Err(e) => {
            remove_created(&created);
            return Err(e);
        }
    };
    let result = (|| {
        clean_stale(&parent, &name, &target)?;
        let carried = check_contents(&target, prefix)?;
        let stage = make_stage(&parent, &name, &target, opts)?;
        let info = Arc::new(RunInfo {
            given: dir.to_path_buf(),
            target: target.clone(),
            parent: parent.clone(),
            stage,
            lock_path: lock_path.clone(),
            created: created.clone(),
            file_mode: if opts.group_readable { 0o640 } else { 0o600 },
            carried,
            free_at_start: free_bytes(&parent),
        });
        runs().push(info.clone());
        let result = link_carried(&info).and_then(|()| f());
        let result = result.map_err(|e| {
            // A failed run never reached the exchange: the staging
            // directory holds only this run's files. Removed before the
            // run leaves the registry, so a signal now still finds it.
            let e = explain_no_space(e, &target, info.free_at_start);
            remove_tree(&info.stage, &target);
            e
        });
        runs().retain(|r| !Arc::ptr_eq(r, &info));
        result
    })();
    lock.release();
    if result.is_err() {
        remove_created(&created);
    }
    result
}

/// Resolves `dir` to an absolute path whose last component is a real
/// directory name, creating missing parents (recorded in `created`).
fn resolve(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(PathBuf, PathBuf)> {
    let target = match fs::symlink_metadata(dir) {
        Ok(_) => {
            let real = fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
            let meta = fs::metadata(&real).map_err(|e| Error::io(dir, e))?;
            if !meta.is_dir() {
                return Err(Error::Usage(format!(
                    "--out {} is a file, not a directory; give the directory the package \
                     should be written to",
                    dir.display()
                )));
            }
            real
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = dir.file_name().ok_or_else(|| {
                Error::Usage(format!("--out {}: not a directory name", dir.display()))
            })?;
            let parent = match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            create_parents(&parent, created)?;
            let parent = fs::canonicalize(&parent).map_err(|e| Error::io(&parent, e))?;
            parent.join(name)
        }
        Err(e) => return Err(Error::io(dir, e)),
    };
    let parent = target
        .parent()
        .ok_or_else(|| {
            Error::Usage(format!(
                "--out {}: the root directory cannot be replaced; give a directory of its own",
                dir.display()
            ))
        })?
        .to_path_buf();
    if is_mount_point(&target, &parent) {
        return Err(Error::Usage(format!(
            "--out {}: the output directory is a mount point; patronload replaces the \
             directory in one step when it publishes, which cannot cross filesystems; give a \
             directory inside the mount",
            dir.display()
        )));
    }
    if let Ok(cwd) = std::env::current_dir() {
        if cwd.starts_with(&target) {
            return Err(Error::Usage(format!(
                "--out {}: the output directory is replaced as a whole when the package is \
                 published, so it must not be (or hold) the current directory; run from \
                 another directory",
                dir.display()
            )));
        }
    }
    Ok((target, parent))
}

#[cfg(unix)]
fn is_mount_point(target: &Path, parent: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(target), fs::metadata(parent)) {
        (Ok(t), Ok(p)) => t.dev() != p.dev(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_mount_point(_target: &Path, _parent: &Path) -> bool {
    false
}

/// `create_dir_all`, remembering which directories it made.
fn create_parents(dir: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(up) => p = up,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                remove_created(created);
                return Err(Error::io(&d, e));
            }
        }
    }
    Ok(())
}

/// Removes directories a failed run created, if they are empty.
fn remove_created(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

/// The advisory lock on an output directory.
struct Lock {
    file: File,
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path` (created if missing), waiting if `wait`.
    /// A lock file removed by its previous holder while this run waited
    /// is stale: open the current one and try again.
    fn acquire(path: &Path, target: &Path, wait: bool) -> Result<Lock> {
        loop {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            if wait {
                file.lock().map_err(|e| Error::io(path, e))?;
            } else {
                match file.try_lock() {
                    Ok(()) => {}
                    Err(fs::TryLockError::WouldBlock) => {
                        let holder = fs::read_to_string(path).unwrap_or_default();
                        return Err(Error::Busy {
                            dir: target.to_path_buf(),
                            holder: describe_holder(&holder),
                        });
                    }
                    Err(fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
                }
            }
            if same_file(&file, path) {
                let mut file = file;
                let stamp = format!(
                    "pid {}\nstarted {}\n",
                    std::process::id(),
                    chrono::Local::now().format("%Y-%m-%d %H:%M:%S %z")
                );
                file.set_len(0).map_err(|e| Error::io(path, e))?;
                file.write_all(stamp.as_bytes())
                    .map_err(|e| Error::io(path, e))?;
                return Ok(Lock {
                    file,
                    path: path.to_path_buf(),
                });
            }
        }
    }

    /// Removes the lock file, then lets go of the lock. Removing it while
    /// held is safe: a waiter notices the file it locked is gone.
    fn release(self) {
        let _ = fs::remove_file(&self.path);
        drop(self.file);
    }
}

/// "pid N, started T" from a lock file's contents.
fn describe_holder(text: &str) -> String {
    let mut pid = None;
    let mut started = None;
    for line in text.lines() {
        if let Some(p) = line.strip_prefix("pid ") {
            pid = Some(p.trim());
        } else if let Some(s) = line.strip_prefix("started ") {
            started = Some(s.trim());
        }
    }
    match (pid, started) {
        (Some(p), Some(s)) => format!("pid {p}, started {s}"),
        (Some(p), None) => format!("pid {p}"),
        _ => "a run that is just starting".to_string(),
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// Whether `entry` names a directory a run of `<name>` made beside it.
fn is_run_dir(entry: &str, name: &str) -> bool {
    let Some(rest) = entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(name))
        .and_then(|e| e.strip_prefix(".patronload-"))
    else {
        return false;
    };
    ["stage-", "old-"].iter().any(|kind| {
        rest.strip_prefix(kind).is_some_and(|tail| {
            !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    })
}

/// Removes what killed runs left: staging directories beside `<out>` and
/// temporaries of older versions inside it. The caller holds the lock, so
/// none of them belongs to a live run. A previous package left under an
/// `old-` name by a crash between the two renames of the fallback publish
/// is put back when `<out>` is missing.
fn clean_stale(parent: &Path, name: &str, target: &Path) -> Result<()> {
    let rd = fs::read_dir(parent).map_err(|e| Error::io(parent, e))?;
    let mut dirs: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| is_run_dir(n, name))
        .collect();
    dirs.sort();
    for d in dirs {
        let path = parent.join(&d);
        if d.contains(".patronload-old-") && fs::symlink_metadata(target).is_err() {
            fs::rename(&path, target).map_err(|e| Error::io(target, e))?;
            continue;
        }
        remove_tree(&path, target);
    }
    Ok(())
}

/// Removes a directory this tool made (a staging directory, or the
/// previous package after the exchange), keeping anything in it that is
/// not a package file, a temporary or a copy of a file `twin` holds too
/// (what [`link_carried`] made); the directory then stays. Never follows
/// symlinks or descends into directories.
fn remove_tree(dir: &Path, twin: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(n) = name.to_str() else { continue };
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            continue;
        }
        if is_package_file(n) || is_carried_copy(&e.path(), &twin.join(n)) {
            let _ = fs::remove_file(e.path());
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Whether `a` and `b` are one file (hard links), or symlinks to the same
/// place: removing `a` then loses nothing.
fn is_carried_copy(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (fs::symlink_metadata(a), fs::symlink_metadata(b)) else {
        return false;
    };
    if ma.file_type().is_symlink() && mb.file_type().is_symlink() {
        return fs::read_link(a).ok().is_some() && fs::read_link(a).ok() == fs::read_link(b).ok();
    }
    same_inode(&ma, &mb)
}

#[cfg(unix)]
fn same_inode(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.is_file() && a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_inode(_a: &fs::Metadata, _b: &fs::Metadata) -> bool {
    false
}

/// Checks the current `<out>`: one package per directory (a package of
/// another prefix is refused), no subdirectories. Returns the other
/// files, which are carried into the new directory.
fn check_contents(target: &Path, prefix: &str) -> Result<Vec<String>> {
    let rd = match fs::read_dir(target) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(target, e)),
    };
    let mut others = std::collections::BTreeSet::new();
    let mut carried = Vec::new();
    let mut subdirs = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(target, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let ft = e.file_type().map_err(|err| Error::io(e.path(), err))?;
        match zip_prefix(&name) {
            Some(p) if ft.is_file() => {
                if p != prefix {
                    others.insert(p.to_string());
                }
            }
            // The previous package and older versions' temporaries:
            // replaced, not carried.
            _ if ft.is_file() && is_package_file(&name) => {}
            _ if ft.is_file() || ft.is_symlink() => carried.push(name),
            _ => subdirs.push(name),
        }
    }
    if !others.is_empty() {
        let others: Vec<String> = others.into_iter().collect();
        return Err(Error::Usage(format!(
            "{} holds the package `{}`, and this run writes `{prefix}`: one directory holds one \
             package (its rejects.csv and summary.json would be overwritten); give this run a \
             separate --out directory",
            target.display(),
            others.join("`, `")
        )));
    }
    if !subdirs.is_empty() {
        subdirs.sort();
        return Err(Error::Usage(format!(
            "{} holds the director{} {}: the output directory is replaced as a whole when the \
             package is published, and a directory cannot be carried over; move {} elsewhere or \
             give this run a directory of its own",
            target.display(),
            if subdirs.len() == 1 { "y" } else { "ies" },
            subdirs.join(", "),
            if subdirs.len() == 1 { "it" } else { "them" },
        )));
    }
    carried.sort();
    Ok(carried)
}

/// Creates the staging directory: the mode, group and ACLs of the current
/// `<out>`, or `0700` (`0750` when group-readable) less the umask for a
/// new one.
fn make_stage(parent: &Path, name: &str, target: &Path, opts: OutputOptions) -> Result<PathBuf> {
    let mut n = 0u32;
    loop {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let stage = parent.join(format!(
            ".{name}.patronload-stage-{}-{nanos:x}{n}",
            std::process::id()
        ));
        let mut b = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(if opts.group_readable { 0o750 } else { 0o700 });
        }
        #[cfg(not(unix))]
        let _ = opts;
        match b.create(&stage) {
            Ok(()) => {
                if let Err(e) = copy_dir_attributes(target, &stage) {
                    let _ = fs::remove_dir(&stage);
                    return Err(e);
                }
                return Ok(stage);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => n += 1,
            Err(e) => return Err(no_parent_access(parent, e)),
        }
    }
}

fn no_parent_access(parent: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::PermissionDenied {
        Error::io(
            parent,
            io::Error::new(
                e.kind(),
                format!(
                    "{e}; patronload publishes by replacing the output directory in one step, \
                     so it needs write access to the directory that holds it"
                ),
            ),
        )
    } else {
        Error::io(parent, e)
    }
}

/// Gives `stage` the group, mode and POSIX ACLs of `target`, if it
/// exists, so replacing it changes nothing an upload account relies on.
#[cfg(unix)]
fn copy_dir_attributes(target: &Path, stage: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = fs::metadata(target) else {
        return Ok(());
    };
    let have = fs::metadata(stage).map_err(|e| Error::io(stage, e))?;
    if have.gid() != meta.gid() {
        std::os::unix::fs::chown(stage, None, Some(meta.gid())).map_err(|e| {
            Error::io(
                target,
                io::Error::new(
                    e.kind(),
                    format!(
                        "{e}; cannot give the new output directory the group ({}) of the \
                         current one",
                        meta.gid()
                    ),
                ),
            )
        })?;
    }
    fs::set_permissions(stage, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(|e| Error::io(stage, e))?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    for attr in ["system.posix_acl_access", "system.posix_acl_default"] {
        let mut buf = vec![0u8; 4096];
        match rustix::fs::getxattr(target, attr, &mut buf[..]) {
            Ok(len) => {
                rustix::fs::setxattr(stage, attr, &buf[..len], rustix::fs::XattrFlags::empty())
                    .map_err(|e| Error::io(stage, e.into()))?;
            }
            // No ACL, or a filesystem without them.
            Err(_) => continue,
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn copy_dir_attributes(_target: &Path, _stage: &Path) -> Result<()> {
    Ok(())
}

/// Hard-links the files of `<out>` that are not package files into the
/// staging directory, so they stay in `<out>` after the exchange.
fn link_carried(info: &RunInfo) -> Result<()> {
    for name in &info.carried {
        let from = info.target.join(name);
        let to = info.stage.join(name);
        let is_link = fs::symlink_metadata(&from).is_ok_and(|m| m.file_type().is_symlink());
        let r = if is_link {
            copy_symlink(&from, &to)
        } else {
            fs::hard_link(&from, &to)
        };
        r.map_err(|e| {
            Error::io(
                &from,
                io::Error::new(
                    e.kind(),
                    format!(
                        "{e}; files in the output directory that are not part of the package \
                         are carried over as hard links"
                    ),
                ),
            )
        })?;
    }
    Ok(())
}

#[cfg(unix)]
fn copy_symlink(from: &Path, to: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(fs::read_link(from)?, to)
}

#[cfg(not(unix))]
fn copy_symlink(from: &Path, to: &Path) -> io::Result<()> {
    fs::copy(from, to).map(|_| ())
}

/// Counts a publish step and runs the test hooks.
fn step(n: usize) {
    if let Some(pause) = env_step("PATRONLOAD_PAUSE_AFTER_STEP") {
        if pause == n {
            let ms = std::env::var("PATRONLOAD_PAUSE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(60_000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
    if env_step("PATRONLOAD_CRASH_AFTER_STEP") == Some(n) {
        std::process::abort();
    }
}

fn env_step(var: &str) -> Option<usize> {
    std::env::var(var).ok()?.parse().ok()
}

/// A staged file: its temporary path and final name.
pub(crate) struct Staged {
    /// The temporary file in the staging directory.
    pub(crate) file: tempfile::NamedTempFile,
    /// Its published name.
    pub(crate) name: String,
}

/// Publishes `files` (zips first, reports, summary last) as the content of
/// the output directory `dir` in one step. Returns the published paths and
/// the zips of the previous package that the new one no longer has.
pub(crate) fn publish(
    dir: &Path,
    prefix: &str,
    files: Vec<Staged>,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let info = run_for(dir).ok_or_else(|| {
        Error::Invariant(format!(
            "publishing into {} without holding it",
            dir.display()
        ))
    })?;
    let mut n = 1;
    step(n);
    let mut names = Vec::new();
    for f in files {
        let dest = info.stage.join(&f.name);
        f.file
            .persist(&dest)
            .map_err(|e| Error::io(info.target.join(&f.name), e.error))?;
        n += 1;
        step(n);
        names.push(f.name);
    }
    sync_dir(&info.stage)?;
    n += 1;
    step(n);
    let previous: Vec<String> = match fs::read_dir(&info.target) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut removed_stale: Vec<PathBuf> = previous
        .iter()
        .filter(|p| zip_prefix(p) == Some(prefix) && !names.contains(p))
        .map(|p| info.target.join(p))
        .collect();
    removed_stale.sort();
    {
        let _commit = COMMIT.lock().unwrap_or_else(|e| e.into_inner());
        let old = exchange(&info)?;
        n += 1;
        step(n);
        // Committed: from here on nothing may fail the run.
        let _ = sync_dir(&info.parent);
        n += 1;
        step(n);
        if let Some(old) = old {
            remove_tree(&old, &info.target);
        }
        n += 1;
        step(n);
    }
    let published = names.iter().map(|n| info.target.join(n)).collect();
    Ok((published, removed_stale))
}

/// Puts the staging directory in place of `<out>`; returns where the
/// previous content now is (to be removed), if there was any.
fn exchange(info: &RunInfo) -> Result<Option<PathBuf>> {
    let exists = fs::symlink_metadata(&info.target).is_ok();
    if !exists {
        return rename_noreplace(&info.stage, &info.target).map(|()| None);
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, &info.stage, CWD, &info.target, RenameFlags::EXCHANGE) {
            Ok(()) => return Ok(Some(info.stage.clone())),
            // Filesystems without the exchange (NFS, some FUSE): fall
            // back to two renames below.
            Err(e)
                if e == rustix::io::Errno::INVAL
                    || e == rustix::io::Errno::NOSYS
                    || e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(Error::io(&info.target, e.into())),
        }
    }
    // Two renames: in between `<out>` does not exist; a crash there
    // leaves the previous package under the `old-` name, which the next
    // run puts back.
    let stage_name = info
        .stage
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let old = info
        .parent
        .join(stage_name.replacen(".patronload-stage-", ".patronload-old-", 1));
    fs::rename(&info.target, &old).map_err(|e| Error::io(&info.target, e))?;
    if let Err(e) = fs::rename(&info.stage, &info.target) {
        // Put the previous package back.
        let _ = fs::rename(&old, &info.target);
        return Err(Error::io(&info.target, e));
    }
    Ok(Some(old))
}

fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::EXIST => {
                return Err(Error::io(
                    to,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "created by something else during the run; nothing was published",
                    ),
                ))
            }
            Err(e)
                if e == rustix::io::Errno::INVAL
                    || e == rustix::io::Errno::NOSYS
                    || e == rustix::io::Errno::OPNOTSUPP => {}
            Err(e) => return Err(Error::io(to, e.into())),
        }
    }
    fs::rename(from, to).map_err(|e| Error::io(to, e))
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes every live run's staging directory and lock file, and the
/// directories the runs created, for a process about to exit on a signal.
/// Waits for a publish in its commit step to finish, and keeps any later
/// publish from starting.
pub fn abort_cleanup() {
    ABORTING.store(true, Ordering::SeqCst);
    let commit = COMMIT.lock().unwrap_or_else(|e| e.into_inner());
    // Held until the process exits: no publish may start now.
    std::mem::forget(commit);
    let runs = runs().clone();
    for r in runs {
        // The main thread may still be creating files in it.
        for _ in 0..5 {
            remove_tree(&r.stage, &r.target);
            if fs::symlink_metadata(&r.stage).is_err() {
                break;
            }
        }
        let _ = fs::remove_file(&r.lock_path);
        remove_created(&r.created);
    }
}

/// Turns "no space left" into a message that says where, and how much
/// room the run had.
fn explain_no_space(e: Error, target: &Path, free_at_start: Option<u64>) -> Error {
    let (file, source) = match &e {
        Error::Io { path, source } => (path, source),
        Error::Zip {
            path,
            source: zip::result::ZipError::Io(source),
        } => (path, source),
        _ => return e,
    };
    if source.kind() != io::ErrorKind::StorageFull {
        return e;
    }
    Error::NoSpace {
        dir: target.to_path_buf(),
        file: file.clone(),
        free_at_start,
    }
}

#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    Some(s.f_bavail.saturating_mul(s.f_frsize))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// A hidden temporary file for output bound for `dir`: in the staging
/// directory of the run publishing into `dir`, created private (`0600`, or
/// `0640` for a group-readable run; the umask may take more away).
pub(crate) fn hidden_temp(dir: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    let (stage, mode) = temp_dir_for(dir)?;
    let mut b = tempfile::Builder::new();
    b.prefix(".patronload-").suffix(suffix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    b.tempfile_in(&stage).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zip_names_and_run_dirs() {
        assert_eq!(zip_prefix("students_001.zip"), Some("students"));
        assert_eq!(zip_prefix("hr_users_012.zip"), Some("hr_users"));
        assert_eq!(zip_prefix("students_01.zip"), None);
        assert_eq!(zip_prefix("_001.zip"), None);
        assert!(is_run_dir(".out.patronload-stage-12-ab0", "out"));
        assert!(is_run_dir(".out.patronload-old-12-ab0", "out"));
        assert!(!is_run_dir(".out.patronload-stage-", "out"));
        assert!(!is_run_dir(".out2.patronload-stage-1", "out"));
        // Another directory whose name extends this one's.
        assert!(!is_run_dir(
            ".out.patronload-stage.patronload-stage-1",
            "out"
        ));
    }

    #[test]
    fn holder_is_described_from_the_lock_file() {
        assert_eq!(
            describe_holder("pid 42\nstarted 2026-12-04 02:00:00 +0000\n"),
            "pid 42, started 2026-12-04 02:00:00 +0000"
        );
        assert_eq!(describe_holder(""), "a run that is just starting");
    }
}
