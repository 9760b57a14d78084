//! The output directory: one run at a time, one atomic publish (a crash at
//! every step), signals, file modes, one package per directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const HEADER: &str = "EMPLID,BARCODE,LAST_NAME,FIRST_NAME,MIDDLE_NAME,PREF_FIRST_NAME,PATRON_TYPE,\
CAMPUS,EMAIL,ALT_EMAIL,PHONE,ADDR1,ADDR2,CITY,STATE,POSTAL,COUNTRY,BIRTH_DATE,EXPIRY_DATE,DEPT\n";

/// `n` clean rows for examples/students.toml, then `bad` rows without a
/// last name (rejected).
fn rows(n: usize, bad: usize) -> String {
    let mut s = String::from(HEADER);
    for i in 0..n {
        s.push_str(&format!(
            "S{i:07},2123400{i:07},Last{i},First,,,UG,M,u{i}@example.edu,,,1 Road,,Town,IL,62701,US,,,HIST\n"
        ));
    }
    for i in 0..bad {
        s.push_str(&format!("X{i:07},,,NoLast,,,UG,M,,,,,,,,,,,,\n"));
    }
    s
}

/// A `convert` command into `out` with its own as-of date.
fn cmd(out: &Path, input: &Path, as_of: &str, extra: &[&str]) -> Command {
    let mut c = patronload();
    c.arg("convert")
        .arg("--profile")
        .arg(root().join("examples/students.toml"))
        .arg("--out")
        .arg(out)
        .args(["--as-of", as_of, "--max-reject-rate", "50"])
        .args(extra)
        .arg(input);
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run patronload")
}

/// Checks that `out` holds exactly one whole package: the zips the summary
/// names, with their sizes and hashes, and no other zip; rejects.csv
/// matching the summary (see [`summary`]). Returns the summary's as-of
/// date, which tells the runs apart.
fn whole_package(out: &Path) -> String {
    let s = summary(out);
    let mut named: Vec<String> = Vec::new();
    for z in s["zips"].as_array().unwrap() {
        let name = z["name"].as_str().unwrap().to_string();
        let bytes = fs::read(out.join(&name)).unwrap_or_else(|_| panic!("{name} missing"));
        assert_eq!(z["bytes"].as_u64().unwrap(), bytes.len() as u64, "{name}");
        assert_eq!(z["sha256"].as_str().unwrap(), sha256_hex(&bytes), "{name}");
        named.push(name);
    }
    let mut present: Vec<String> = dir_files(out)
        .into_keys()
        .filter(|n| n.ends_with(".zip"))
        .collect();
    present.sort();
    named.sort();
    assert_eq!(present, named, "zips present = zips in summary.json");
    let names: Vec<String> = dir_files(out).into_keys().collect();
    assert!(
        names.iter().all(|n| !n.starts_with('.')),
        "no hidden files: {names:?}"
    );
    s["as_of"].as_str().unwrap().to_string()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Names in `dir` that a run leaves beside or in the output directory.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("patronload"))
        .collect();
    v.sort();
    v
}

/// Waits until `path` exists (the paused run got that far).
fn wait_for(path: impl Fn() -> bool) {
    let start = Instant::now();
    while !path() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run did not get there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a run's staging directory beside `out` holds its summary:
/// publish step 1, where the test hook pauses, with every temporary
/// written.
fn staging_exists(parent: &Path) -> bool {
    leftovers(parent)
        .iter()
        .filter(|n| n.contains("-stage-"))
        .any(|n| {
            fs::read_dir(parent.join(n)).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with(".json.tmp"))
            })
        })
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

struct Setup {
    _t: tempfile::TempDir,
    dir: PathBuf,
    out: PathBuf,
    a: PathBuf,
    b: PathBuf,
}

/// Input A: 20 users; input B: 12 users and one reject.
fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_path_buf();
    let a = dir.join("a.csv");
    let b = dir.join("b.csv");
    fs::write(&a, rows(20, 0)).unwrap();
    fs::write(&b, rows(12, 1)).unwrap();
    Setup {
        out: dir.join("out"),
        dir,
        a,
        b,
        _t: t,
    }
}

/// Package A: four zips of five users.
fn publish_a(s: &Setup) {
    let o = run(&mut cmd(
        &s.out,
        &s.a,
        "2026-01-01",
        &["--users-per-file", "5", "--files-per-zip", "1"],
    ));
    assert_status(&o, 0);
    assert_eq!(whole_package(&s.out), "2026-01-01");
}

#[test]
fn a_crash_at_every_publish_step_leaves_one_whole_package() {
    let s = setup();
    let mut saw_old = false;
    let mut saw_new = false;
    let mut n = 1;
    loop {
        assert!(n < 30, "publishing never finished");
        // Also removes what the previous iteration's crash left.
        publish_a(&s);
        assert_eq!(leftovers(&s.dir), Vec::<String>::new());
        let o =
            run(cmd(&s.out, &s.b, "2026-02-02", &[])
                .env("PATRONLOAD_CRASH_AFTER_STEP", n.to_string()));
        let got = whole_package(&s.out);
        if o.status.success() {
            assert_eq!(got, "2026-02-02");
            assert_eq!(leftovers(&s.dir), Vec::<String>::new());
            break;
        }
        assert_eq!(o.status.code(), None, "aborted by the hook at step {n}");
        match got.as_str() {
            "2026-01-01" => {
                assert!(!saw_new, "step {n}: the old package came back");
                saw_old = true;
            }
            "2026-02-02" => {
                saw_new = true;
                // The new package has one zip: the old parts are gone.
                assert!(!s.out.join("example_users_002.zip").exists());
            }
            other => panic!("step {n}: unexpected package {other}"),
        }
        n += 1;
    }
    assert!(
        saw_old && saw_new,
        "crashes before and after the commit point"
    );
}

#[test]
fn a_second_run_is_refused_and_wait_serialises() {
    let s = setup();
    publish_a(&s);
    let mut first = cmd(&s.out, &s.b, "2026-02-02", &["-q"])
        .env("PATRONLOAD_PAUSE_AFTER_STEP", "1")
        .env("PATRONLOAD_PAUSE_MS", "5000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = s.dir.join(".out.patronload.lock");
    let pid = first.id().to_string();
    wait_for(|| fs::read_to_string(&lock).is_ok_and(|t| t.contains(&pid)));
    let before = dir_files(&s.out);
    let o = run(&mut cmd(&s.out, &s.a, "2026-03-03", &[]));
    assert_status(&o, 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {pid}, started ")) && err.contains("--wait"),
        "{err}"
    );
    assert_eq!(dir_files(&s.out), before, "the refused run touched nothing");
    let mut third = cmd(&s.out, &s.a, "2026-03-03", &["-q", "--wait"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        third.try_wait().unwrap().is_none(),
        "--wait waits for the run holding the directory"
    );
    assert!(first.wait().unwrap().success());
    assert!(third.wait().unwrap().success());
    // The waiting run published last.
    assert_eq!(whole_package(&s.out), "2026-03-03");
    assert_eq!(leftovers(&s.dir), Vec::<String>::new());
}

#[test]
fn sigterm_and_sigint_remove_temporaries() {
    let s = setup();
    publish_a(&s);
    let before = dir_files(&s.out);
    for (sig, code) in [("-TERM", 143), ("-INT", 130)] {
        let mut child = cmd(&s.out, &s.b, "2026-02-02", &["-q"])
            .env("PATRONLOAD_PAUSE_AFTER_STEP", "1")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(|| staging_exists(&s.dir));
        signal(&child, sig);
        assert_eq!(child.wait().unwrap().code(), Some(code), "{sig}");
        assert_eq!(leftovers(&s.dir), Vec::<String>::new(), "{sig}");
        assert_eq!(dir_files(&s.out), before, "{sig}");
    }
    // A directory the interrupted run created goes too.
    let fresh = s.dir.join("new/out");
    let mut child = cmd(&fresh, &s.b, "2026-02-02", &["-q"])
        .env("PATRONLOAD_PAUSE_AFTER_STEP", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| s.dir.join("new").exists() && staging_exists(&s.dir.join("new")));
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(!s.dir.join("new").exists());
}

#[test]
fn kill_9_leaves_temporaries_the_next_run_removes() {
    let s = setup();
    publish_a(&s);
    let mut child = cmd(&s.out, &s.b, "2026-02-02", &["-q"])
        .env("PATRONLOAD_PAUSE_AFTER_STEP", "1")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| staging_exists(&s.dir));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!leftovers(&s.dir).is_empty(), "kill -9 cannot clean up");
    assert_eq!(whole_package(&s.out), "2026-01-01");
    assert_status(&run(&mut cmd(&s.out, &s.b, "2026-02-02", &[])), 0);
    assert_eq!(leftovers(&s.dir), Vec::<String>::new());
    assert_eq!(whole_package(&s.out), "2026-02-02");
}

/// Runs a convert under `umask`; returns the published files' modes.
#[cfg(unix)]
fn modes_under(umask: &str, extra: &[&str]) -> Vec<u32> {
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_patronload"));
    let inner = cmd(&s.out, &s.a, "2026-01-01", extra);
    c.args(inner.get_args());
    assert_status(&run(&mut c), 0);
    let mut modes: Vec<u32> = fs::read_dir(&s.out)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().permissions().mode() & 0o777)
        .collect();
    modes.dedup();
    modes
}

#[test]
#[cfg(unix)]
fn files_are_private_and_never_wider_than_the_umask() {
    assert_eq!(modes_under("022", &[]), [0o600]);
    assert_eq!(modes_under("077", &[]), [0o600]);
    assert_eq!(modes_under("277", &[]), [0o400]);
    assert_eq!(modes_under("022", &["--group-readable"]), [0o640]);
    assert_eq!(modes_under("077", &["--group-readable"]), [0o600]);
}

#[test]
#[cfg(unix)]
fn the_directory_keeps_its_mode_and_other_files() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    fs::create_dir(&s.out).unwrap();
    fs::set_permissions(&s.out, fs::Permissions::from_mode(0o2750)).unwrap();
    fs::write(s.out.join("README.txt"), "ours").unwrap();
    // What an older version's killed run left inside the directory.
    fs::write(s.out.join(".patronload-Ab12Cd.zip.tmp"), "partial").unwrap();
    publish_a(&s);
    assert!(!s.out.join(".patronload-Ab12Cd.zip.tmp").exists());
    assert_status(&run(&mut cmd(&s.out, &s.b, "2026-02-02", &[])), 0);
    let mode = fs::metadata(&s.out).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o2750);
    assert_eq!(
        fs::read_to_string(s.out.join("README.txt")).unwrap(),
        "ours"
    );
    assert_eq!(leftovers(&s.dir), Vec::<String>::new());
    // A subdirectory cannot be carried over: refused, nothing changed.
    let before = dir_files(&s.out);
    fs::create_dir(s.out.join("archive")).unwrap();
    let o = run(&mut cmd(&s.out, &s.a, "2026-03-03", &[]));
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("archive"));
    fs::remove_dir(s.out.join("archive")).unwrap();
    assert_eq!(dir_files(&s.out), before);
}

#[test]
fn a_second_package_is_refused_and_nothing_overwritten() {
    let s = setup();
    publish_a(&s);
    let before = dir_files(&s.out);
    let o = run(&mut cmd(
        &s.out,
        &s.b,
        "2026-02-02",
        &["--prefix", "hr_users"],
    ));
    assert_status(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("`example_users`") && err.contains("`hr_users`") && err.contains("separate"),
        "{err}"
    );
    assert_eq!(dir_files(&s.out), before);
    assert_eq!(leftovers(&s.dir), Vec::<String>::new());
}

#[test]
fn bad_thresholds_and_an_output_file_are_usage_errors() {
    let s = setup();
    for rate in ["nan", "-1", "100.5", "inf", "x"] {
        let o = run(&mut cmd(
            &s.out,
            &s.a,
            "2026-01-01",
            &[&format!("--max-reject-rate={rate}")],
        ));
        assert_status(&o, 2);
        assert!(!s.out.exists());
    }
    let o = run(&mut cmd(&s.a, &s.a, "2026-01-01", &[]));
    assert_status(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is a file, not a directory"), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn messages_use_singulars() {
    let s = setup();
    fs::write(&s.a, rows(1, 0)).unwrap();
    let o = run(&mut cmd(&s.out, &s.a, "2026-01-01", &[]));
    assert_status(&o, 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 record read, 1 user written")
            && err.contains("(1 user, ")
            && err.contains(", 1 XML file)"),
        "{err}"
    );
}

#[test]
fn check_codes_folder_missing_is_usage_and_empty_warns() {
    let s = setup();
    let sample = root().join("tests/data/check");
    let xml = fs::read_dir(&sample)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "xml"))
        .expect("an XML sample");
    let o = run(patronload()
        .arg("check")
        .arg("--codes")
        .arg(s.dir.join("nope"))
        .arg(&xml));
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such folder"));
    let empty = s.dir.join("codes");
    fs::create_dir(&empty).unwrap();
    let o = run(patronload()
        .arg("check")
        .arg("--codes")
        .arg(&empty)
        .arg(&xml));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning") && err.contains("no code tables"),
        "{err}"
    );
}

/// A full disk: a tmpfs too small for the package, when this test may
/// mount one (root on Linux); skipped otherwise.
#[test]
#[cfg(target_os = "linux")]
fn a_full_disk_names_the_file_and_the_room_and_publishes_nothing() {
    let s = setup();
    let mnt = s.dir.join("small");
    fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    // The mount point itself cannot be swapped.
    let o = run(&mut cmd(&mnt, &s.a, "2026-01-01", &[]));
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("mount point"));
    let out = mnt.join("out");
    let small = s.dir.join("small.csv");
    fs::write(&small, rows(3, 0)).unwrap();
    assert_status(&run(&mut cmd(&out, &small, "2026-01-01", &[])), 0);
    let before = dir_files(&out);
    // Random-looking names do not compress: far more than 64 KiB.
    let mut big = String::from(HEADER);
    for i in 0..4000u64 {
        let noise = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        big.push_str(&format!(
            "S{i:07},2123400{i:07},L{noise:x},F{:x},,,UG,M,u{i}@example.edu,,,1 Road,,Town,IL,62701,US,,,HIST\n",
            noise.rotate_left(17)
        ));
    }
    let bigf = s.dir.join("big.csv");
    fs::write(&bigf, big).unwrap();
    let o = run(&mut cmd(
        &out,
        &bigf,
        "2026-02-02",
        &["--users-per-file", "500"],
    ));
    assert_status(&o, 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no space left")
            && err.contains("example_users_001.zip")
            && err.contains("free when the run started"),
        "{err}"
    );
    assert!(!err.contains("ZipWriter"), "{err}");
    assert_eq!(dir_files(&out), before);
    assert_eq!(leftovers(&mnt), Vec::<String>::new());
}

#[test]
#[cfg(unix)]
fn repack_publishes_the_same_way() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    let o = run(patronload()
        .arg("repack")
        .arg("--out")
        .arg(&s.out)
        .args(["--as-of", "2026-01-01", "--max-reject-rate", "100"])
        .arg(root().join("tests/data/check/repack_mixed.xml")));
    assert_status(&o, 0);
    whole_package(&s.out);
    for e in fs::read_dir(&s.out).unwrap() {
        let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "private");
    }
    // A convert of another prefix into the repacked directory is refused.
    let before = dir_files(&s.out);
    let o = run(&mut cmd(&s.out, &s.a, "2026-01-01", &[]));
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("`alma_users`"));
    assert_eq!(dir_files(&s.out), before);
    assert_eq!(leftovers(&s.dir), Vec::<String>::new());
}

/// A directory's POSIX ACLs survive the swap, so an upload account granted
/// read access keeps it; skipped where `setfacl` is missing or the
/// filesystem has no ACLs.
#[test]
#[cfg(target_os = "linux")]
fn acls_of_the_directory_are_kept() {
    let s = setup();
    fs::create_dir(&s.out).unwrap();
    let set = |args: &[&str]| {
        Command::new("setfacl")
            .args(args)
            .arg(&s.out)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|st| st.success())
    };
    if !set(&["-m", "u:nobody:rx"]) || !set(&["-d", "-m", "u:nobody:r"]) {
        eprintln!("skipped: no setfacl or no ACLs here");
        return;
    }
    let acl = |p: &Path| {
        String::from_utf8(
            Command::new("getfacl")
                .args(["-p", "-c"])
                .arg(p)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let before = acl(&s.out);
    assert_status(
        &run(&mut cmd(&s.out, &s.a, "2026-01-01", &["--group-readable"])),
        0,
    );
    assert_eq!(acl(&s.out), before);
    let file = acl(&s.out.join("summary.json"));
    assert!(
        file.contains("user:nobody:r--") && file.contains("mask::r--"),
        "{file}"
    );
}

#[test]
fn a_failed_run_removes_the_directories_it_created() {
    let s = setup();
    let out = s.dir.join("new/nested/out");
    let o = run(&mut cmd(
        &out,
        &s.dir.join("missing.csv"),
        "2026-01-01",
        &[],
    ));
    assert_status(&o, 1);
    assert!(!s.dir.join("new").exists());
    assert_eq!(leftovers(&s.dir), Vec::<String>::new());
}
