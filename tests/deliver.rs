//! Delivery over SFTP against a real sshd on loopback (`sshd.rs`):
//! host-key checks, logins, the directory budget, permissions, a server
//! killed mid-upload, stale packages, `.handled` files, foreign files,
//! `--dry-run`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patronload::deliver::config::{Config, Target};
use patronload::deliver::plan::RemoteEntry;
use patronload::deliver::sftp::{Remote, RemoteError, SftpRemote};
use patronload::deliver::{deliver, deliver_with, DeliverOptions, Error, Package};
use sha2::{Digest, Sha256};

use crate::sshd::{Sshd, USER};
use crate::util::*;

/// Writes a package as `convert` publishes it: `PREFIX_NNN.zip` files of
/// the given sizes (content from `seed`) and a `summary.json` listing
/// them.
fn package(dir: &Path, prefix: &str, seed: u64, sizes: &[usize], delta: bool) {
    fs::create_dir_all(dir).unwrap();
    let mut zips = Vec::new();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("{prefix}_{:03}.zip", i + 1);
        let mut bytes = Vec::with_capacity(size);
        while bytes.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(size);
        let sha: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        fs::write(dir.join(&name), &bytes).unwrap();
        zips.push(serde_json::json!({
            "name": name, "bytes": size, "entries": [], "users": 1, "sha256": sha
        }));
    }
    let mut summary = serde_json::json!({ "as_of": "2026-12-04", "zips": zips });
    if delta {
        summary["package"] = "delta".into();
    }
    fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
}

fn target(s: &Sshd) -> Target {
    Target {
        host: "127.0.0.1".into(),
        port: s.port,
        user: USER.into(),
        key_file: Some(s.client_key.clone()),
        password_env: None,
        host_key: Some(s.fingerprint()),
        known_hosts: None,
        remote_dir: s.remote.display().to_string(),
        max_dir_bytes: "1GB".into(),
        max_zips: 20,
        keep_handled_days: 30,
        retries: 0,
    }
}

fn opts(dir: &Path, t: Target) -> DeliverOptions {
    DeliverOptions {
        dir: dir.to_path_buf(),
        target: t,
        dry_run: false,
        backoff: Duration::from_millis(50),
    }
}

/// The remote files with their content's SHA-256, and the package's
/// final names with theirs: delivered means equal.
fn assert_delivered_once(s: &Sshd, pkg: &Path) {
    let p = Package::read(pkg).unwrap();
    let run = p.run_id();
    let remote = s.files();
    for z in &p.zips {
        let n = &z.name[z.name.len() - 7..z.name.len() - 4];
        let fin = format!("{}_{run}_{n}.zip", p.prefix);
        let got = remote
            .get(&fin)
            .unwrap_or_else(|| panic!("{fin} missing: {:?}", remote.keys()));
        assert_eq!(got, &fs::read(pkg.join(&z.name)).unwrap(), "{fin}");
    }
    // Exactly once: this package's names on the server are its final
    // names, one per zip, and no temporary.
    let ours: Vec<&String> = remote.keys().filter(|k| k.contains(&run)).collect();
    assert_eq!(
        ours.len(),
        p.zips.len(),
        "exactly once, no temporaries: {ours:?}"
    );
    assert!(ours
        .iter()
        .all(|k| k.ends_with(".zip") && !k.starts_with('.')));
}

#[test]
fn key_auth_delivers_under_final_names() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 1, &[5000, 300_000], false);
    let d = deliver(&opts(&pkg, target(&s))).unwrap();
    assert_eq!(d.delivered.len(), 2);
    assert_eq!(d.bytes_uploaded, 305_000);
    assert_delivered_once(&s, &pkg);
    for name in s.files().keys() {
        assert!(name.ends_with(".zip") && !name.starts_with('.'), "{name}");
    }
    // The same package again: already there, nothing uploaded.
    let again = deliver(&opts(&pkg, target(&s))).unwrap();
    assert!(again.delivered.is_empty());
    assert_eq!(again.plan.already_there.len(), 2);
    assert_delivered_once(&s, &pkg);
}

#[test]
fn known_hosts_from_keyscan_accepted_unknown_host_refused() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 2, &[1000], false);
    let kh = tmp.path().join("known_hosts");
    fs::write(&kh, s.keyscan()).unwrap();
    let mut t = target(&s);
    t.host_key = None;
    t.known_hosts = Some(kh.clone());
    deliver(&opts(&pkg, t.clone())).unwrap();
    assert_delivered_once(&s, &pkg);

    // Another server's entry only: this one is unknown.
    let other = Sshd::start();
    let before = other.files();
    let mut t2 = target(&other);
    t2.host_key = None;
    t2.known_hosts = Some(kh);
    match deliver(&opts(&pkg, t2)) {
        Err(Error::HostKey { seen, expected, .. }) => {
            assert_eq!(seen, other.fingerprint());
            assert!(expected.contains("unknown host"), "{expected}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(other.files(), before);
}

#[test]
fn wrong_pin_refused_nothing_uploaded_not_retried() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 3, &[1000], false);
    let mut t = target(&s);
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string();
    t.host_key = Some(wrong.clone());
    t.retries = 3;
    let mut connects = 0;
    let err = deliver_with(&opts(&pkg, t.clone()), &mut || {
        connects += 1;
        SftpRemote::connect(&t).map(|r| Box::new(r) as Box<dyn Remote>)
    })
    .unwrap_err();
    assert_eq!(connects, 1, "a host-key failure is never retried");
    let msg = err.to_string();
    assert!(
        msg.contains(&s.fingerprint()) && msg.contains(&wrong),
        "{msg}"
    );
    assert!(s.files().is_empty());
}

#[test]
fn password_from_environment() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 4, &[2000], false);
    let cfg = tmp.path().join("delivery.toml");
    fs::write(
        &cfg,
        format!(
            "[delivery.dev]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
             password_env = \"PL_TEST_SFTP_PASSWORD\"\nhost_key = \"{}\"\nremote_dir = \"{}\"\n",
            s.port,
            s.fingerprint(),
            s.remote.display()
        ),
    )
    .unwrap();
    let run = |pw: &str| {
        patronload()
            .args(["deliver", "--config"])
            .arg(&cfg)
            .args(["--target", "dev"])
            .arg(&pkg)
            .env("PL_TEST_SFTP_PASSWORD", pw)
            .output()
            .unwrap()
    };
    let bad = run("not-the-password");
    assert_status(&bad, 5);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("refused the login"));
    assert!(s.files().is_empty());
    let ok = run(crate::sshd::password());
    assert_status(&ok, 0);
    assert_delivered_once(&s, &pkg);
}

#[test]
fn budget_refused_before_anything_is_written() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 5, &[6000, 6000], false);
    fs::write(s.remote.join("other_feed.zip"), vec![7u8; 9000]).unwrap();
    // A stale package of ours that a full delivery would remove: the
    // refusal comes first, so it stays.
    fs::write(s.remote.join("pl_20261201_0badf00d_001.zip"), b"old").unwrap();
    let before = s.files();
    let mut t = target(&s);
    t.max_dir_bytes = "20KB".into();
    let err = deliver(&opts(&pkg, t)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("21000") && msg.contains("9000") && msg.contains("12000"),
        "{msg}"
    );
    assert_eq!(s.files(), before);

    let mut t = target(&s);
    t.max_zips = 2;
    let msg = deliver(&opts(&pkg, t)).unwrap_err().to_string();
    assert!(
        msg.contains("3 zips") && msg.contains("over the 2"),
        "{msg}"
    );
    assert_eq!(s.files(), before);
}

#[test]
fn permission_denied_is_reported_not_retried() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 6, &[1000], false);
    // A directory the account may read but not write.
    let ro = s.dir.join("readonly");
    fs::create_dir(&ro).unwrap();
    let mut t = target(&s);
    t.remote_dir = ro.display().to_string();
    t.retries = 2;
    let mut connects = 0;
    let err = deliver_with(&opts(&pkg, t.clone()), &mut || {
        connects += 1;
        SftpRemote::connect(&t).map(|r| Box::new(r) as Box<dyn Remote>)
    })
    .unwrap_err();
    assert_eq!(connects, 1);
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert_eq!(fs::read_dir(&ro).unwrap().count(), 0);
}

#[test]
fn server_killed_mid_upload_then_next_run_delivers_exactly_once() {
    if !crate::sshd::available() {
        return;
    }
    let mut s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 7, &[1_000_000, 64_000_000], false);
    let o = opts(&pkg, target(&s));
    let remote = s.remote.clone();
    let worker = std::thread::spawn(move || deliver(&o));
    // Wait until the big zip is partly on the server, then cut.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let partial = fs::read_dir(&remote).unwrap().flatten().any(|e| {
            let n = e.file_name().into_string().unwrap();
            n.ends_with("_002.zip.part") && e.metadata().unwrap().len() > 1_000_000
        });
        if partial {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upload never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill();
    let err = worker.join().unwrap().unwrap_err();
    assert!(err.is_transient(), "{err}");
    let names: Vec<String> = s.files().into_keys().collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with('.') && n.ends_with(".part")),
        "no final name after a failed delivery: {names:?}"
    );
    s.restart();
    let d = deliver(&opts(&pkg, target(&s))).unwrap();
    assert!(!d.plan.remove_temps.is_empty());
    assert_delivered_once(&s, &pkg);
}

/// A [`Remote`] that fails its `n`-th upload or rename with a transient
/// error, as a dropped connection would.
struct Flaky {
    inner: Box<dyn Remote>,
    fail_upload: Option<usize>,
    fail_rename: Option<usize>,
    uploads: usize,
    renames: usize,
}

impl Remote for Flaky {
    fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        self.inner.list(dir)
    }
    fn size(&mut self, path: &str) -> Result<u64, RemoteError> {
        self.inner.size(path)
    }
    fn upload(&mut self, data: &mut dyn std::io::Read, path: &str) -> Result<u64, RemoteError> {
        self.uploads += 1;
        if self.fail_upload == Some(self.uploads) {
            // Half the file arrives, then the line drops.
            let mut half = Vec::new();
            data.read_to_end(&mut half).unwrap();
            half.truncate(half.len() / 2);
            self.inner.upload(&mut half.as_slice(), path)?;
            return Err(RemoteError::transient("connection reset (injected)"));
        }
        self.inner.upload(data, path)
    }
    fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        self.renames += 1;
        if self.fail_rename == Some(self.renames) {
            return Err(RemoteError::transient("connection reset (injected)"));
        }
        self.inner.rename(from, to)
    }
    fn remove(&mut self, path: &str) -> Result<(), RemoteError> {
        self.inner.remove(path)
    }
}

#[test]
fn injected_faults_are_retried_and_deliver_exactly_once() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    for (case, fail_upload, fail_rename) in [(0, Some(2), None), (1, None, Some(2))] {
        let pkg = tmp.path().join(format!("out{case}"));
        package(
            &pkg,
            &format!("f{case}"),
            10 + case,
            &[3000, 4000, 5000],
            false,
        );
        let mut t = target(&s);
        t.retries = 2;
        let mut connects = 0;
        let d = deliver_with(&opts(&pkg, t.clone()), &mut || {
            connects += 1;
            let inner = Box::new(SftpRemote::connect(&t)?);
            // Only the first connection is flaky.
            let first = connects == 1;
            Ok(Box::new(Flaky {
                inner,
                fail_upload: fail_upload.filter(|_| first),
                fail_rename: fail_rename.filter(|_| first),
                uploads: 0,
                renames: 0,
            }) as Box<dyn Remote>)
        })
        .unwrap();
        assert_eq!((connects, d.attempts), (2, 2));
        assert_delivered_once(&s, &pkg);
    }
    // Retries run out: the error comes back, still no final name for the
    // zip that failed.
    let pkg = tmp.path().join("out2");
    package(&pkg, "f2", 20, &[3000], false);
    let mut t = target(&s);
    t.retries = 1;
    let mut connects = 0;
    let err = deliver_with(&opts(&pkg, t.clone()), &mut || {
        connects += 1;
        Ok(Box::new(Flaky {
            inner: Box::new(SftpRemote::connect(&t)?),
            fail_upload: Some(1),
            fail_rename: None,
            uploads: 0,
            renames: 0,
        }) as Box<dyn Remote>)
    })
    .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(connects, 2);
    assert!(!s.files().keys().any(|k| k.starts_with("f2_")));
}

#[test]
fn stale_packages_full_removes_delta_keeps_foreign_untouched() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let foreign: BTreeMap<&str, &[u8]> = [
        ("pl_001.zip", &b"a zip someone copied by hand"[..]),
        ("other_20261203_0123abcd_001.zip", b"another feed"),
        ("notes.txt", b"not ours"),
        (".pl_001.zip.part", b"someone else's temp"),
    ]
    .into();
    for (n, c) in &foreign {
        fs::write(s.remote.join(n), c).unwrap();
    }
    let yesterday = tmp.path().join("y");
    package(&yesterday, "pl", 30, &[1000, 1000], false);
    deliver(&opts(&yesterday, target(&s))).unwrap();
    let y_run = Package::read(&yesterday).unwrap().run_id();

    // Today's delta: yesterday's full package is kept and reported.
    let delta = tmp.path().join("d");
    package(&delta, "pl", 31, &[500], true);
    let d = deliver(&opts(&delta, target(&s))).unwrap();
    assert_eq!(
        d.plan.keep_stale,
        [format!("pl_{y_run}_001.zip"), format!("pl_{y_run}_002.zip")]
    );
    assert!(d.plan.remove_stale.is_empty());
    assert!(s.files().contains_key(&format!("pl_{y_run}_001.zip")));
    assert_delivered_once(&s, &delta);

    // Today's full package: every earlier one of ours not picked up goes.
    let full = tmp.path().join("f");
    package(&full, "pl", 32, &[700], false);
    let d = deliver(&opts(&full, target(&s))).unwrap();
    assert_eq!(d.plan.remove_stale.len(), 3);
    let names: Vec<String> = s.files().into_keys().collect();
    assert!(!names.iter().any(|n| n.contains(&y_run)), "{names:?}");
    assert_delivered_once(&s, &full);
    let files = s.files();
    for (n, c) in &foreign {
        assert_eq!(files.get(*n).map(Vec::as_slice), Some(*c), "{n}");
    }
    assert_eq!(files.len(), foreign.len() + 1);
}

#[test]
fn old_handled_files_removed_recent_kept() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let age = |name: &str, days: u64| {
        let p = s.remote.join(name);
        fs::write(&p, b"picked up").unwrap();
        let t = std::time::SystemTime::now() - Duration::from_secs(days * 86_400);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    age("pl_20261001_00000001_001.zip.handled", 40);
    age("pl_20261120_00000002_001.zip.handled", 10);
    age("other_20261001_00000001_001.zip.handled", 40);
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 40, &[100], false);
    let d = deliver(&opts(&pkg, target(&s))).unwrap();
    assert_eq!(
        d.plan.remove_handled,
        ["pl_20261001_00000001_001.zip.handled"]
    );
    let files = s.files();
    assert!(!files.contains_key("pl_20261001_00000001_001.zip.handled"));
    assert!(files.contains_key("pl_20261120_00000002_001.zip.handled"));
    assert!(files.contains_key("other_20261001_00000001_001.zip.handled"));
}

#[test]
fn dry_run_writes_nothing() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    fs::write(s.remote.join("pl_20261201_0badf00d_001.zip"), b"stale").unwrap();
    fs::write(s.remote.join(".pl_20261201_0badf00d_002.zip.part"), b"temp").unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 50, &[100, 200], false);
    let before = s.files();
    let mut o = opts(&pkg, target(&s));
    o.dry_run = true;
    let d = deliver(&o).unwrap();
    assert!(d.dry_run);
    assert_eq!(d.plan.uploads.len(), 2);
    assert_eq!(d.plan.remove_stale, ["pl_20261201_0badf00d_001.zip"]);
    assert_eq!(d.plan.remove_temps, [".pl_20261201_0badf00d_002.zip.part"]);
    assert!(d.delivered.is_empty());
    assert_eq!(s.files(), before);
}

#[test]
fn config_file_resolves_paths_and_names_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("job.toml");
    fs::write(
        &p,
        "[[source]]\nname = \"s\"\nprofile = \"p.toml\"\ninputs = [\"x.csv\"]\n\n\
         [delivery.dev]\nhost = \"h\"\nuser = \"u\"\nkey_file = \"keys/id\"\n\
         known_hosts = \"/etc/ssh/ssh_known_hosts\"\nremote_dir = \"in\"\n",
    )
    .unwrap();
    let c = Config::load(&p).unwrap();
    let t = c.target("dev").unwrap();
    assert_eq!(
        t.key_file.as_deref(),
        Some(tmp.path().join("keys/id").as_path())
    );
    assert_eq!(
        t.known_hosts.as_deref(),
        Some(PathBuf::from("/etc/ssh/ssh_known_hosts").as_path())
    );
}

#[test]
fn unknown_client_key_refused_not_retried() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("out");
    package(&pkg, "pl", 60, &[1000], false);
    let stranger = tmp.path().join("stranger");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&stranger)
        .status()
        .unwrap();
    assert!(st.success());
    let mut t = target(&s);
    t.key_file = Some(stranger);
    t.retries = 3;
    let mut connects = 0;
    let err = deliver_with(&opts(&pkg, t.clone()), &mut || {
        connects += 1;
        SftpRemote::connect(&t).map(|r| Box::new(r) as Box<dyn Remote>)
    })
    .unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err}");
    assert_eq!(connects, 1);
    assert!(s.files().is_empty());
}
