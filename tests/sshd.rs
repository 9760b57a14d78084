//! A real OpenSSH server on 127.0.0.1 for the delivery tests: generated
//! host and client keys, `internal-sftp`, a throwaway account with a
//! password (under `UsePAM no` a locked account refuses even key login),
//! stopped with its sessions by pid when dropped.
//!
//! Needs root (to start sshd and create the account). Under CI (`CI` set)
//! a missing sshd or a non-root run fails the test; elsewhere the test
//! says why and passes without running.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test account's name.
pub const USER: &str = "plsftptest";

/// The server binary.
const SSHD: &str = "/usr/sbin/sshd";

/// Whether the tests can run here; `false` means skip (never under CI).
pub fn available() -> bool {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let missing = if !Path::new(SSHD).exists() {
        Some("sshd is not installed (apt-get install openssh-server)")
    } else if !rustix_is_root() {
        Some("the SFTP tests start sshd and create a test account: run them as root")
    } else {
        None
    };
    match missing {
        Some(why) if ci => panic!("{why}"),
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
        None => true,
    }
}

fn rustix_is_root() -> bool {
    // The uid of /proc/self is the process's.
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The account's password, set once per test process.
pub fn password() -> &'static str {
    static PW: OnceLock<String> = OnceLock::new();
    PW.get_or_init(|| {
        let pw = format!(
            "pl-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let exists = Command::new("id")
            .arg(USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if !exists {
            run(Command::new("useradd").args(["-M", "-d", "/nonexistent", "-s", "/bin/sh", USER]));
        }
        let mut child = Command::new("chpasswd")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{USER}:{pw}").unwrap();
        assert!(child.wait().unwrap().success());
        fs::create_dir_all("/run/sshd").unwrap();
        pw
    })
}

/// uid and gid of the test account.
fn ids() -> (u32, u32) {
    let text = fs::read_to_string("/etc/passwd").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{USER}:")))
        .unwrap();
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// A running sshd and its files.
pub struct Sshd {
    /// Temporary directory holding keys, config and the remote directory.
    pub dir: PathBuf,
    /// The port it listens on.
    pub port: u16,
    /// The client's private key.
    pub client_key: PathBuf,
    /// The remote directory Alma would poll (owned by the test account).
    pub remote: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "pltest", "-f"])
        .arg(path));
}

impl Sshd {
    /// Starts a server on a free port.
    pub fn start() -> Sshd {
        password();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        // The account reads authorized_keys and writes the remote dir.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        keygen(&dir.join("host_key"));
        keygen(&dir.join("client_key"));
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        fs::set_permissions(
            dir.join("authorized_keys"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let remote = dir.join("alma");
        fs::create_dir(&remote).unwrap();
        let (uid, gid) = ids();
        std::os::unix::fs::chown(&remote, Some(uid), Some(gid)).unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = Sshd {
            client_key: dir.join("client_key"),
            remote,
            dir,
            port,
            child: None,
            _tmp: tmp,
        };
        s.restart();
        s
    }

    /// Starts (again) on the same port with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        let config = self.dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
                 PidFile {dir}/sshd.pid\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin no\nAllowUsers {USER}\nSubsystem sftp internal-sftp\n\
                 MaxStartups 100\nLogLevel ERROR\n",
                port = self.port,
                dir = self.dir.display()
            ),
        )
        .unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited at start ({st}); config {}", config.display());
            }
            assert!(Instant::now() < deadline, "sshd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server and every session process it started, at once.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let mut pids = vec![child.id()];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        for pid in pids {
            // SIGKILL: no goodbye to the client, as a crash or a cut cable.
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = child.wait();
    }

    fn stop(&mut self) {
        self.kill();
    }

    /// `SHA256:...` of the host key, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(self.dir.join("host_key.pub"))
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }

    /// A `known_hosts` line for this server, from `ssh-keyscan`.
    pub fn keyscan(&self) -> String {
        let out = Command::new("ssh-keyscan")
            .args(["-t", "ed25519", "-p", &self.port.to_string(), "127.0.0.1"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    /// The remote directory's files and contents.
    pub fn files(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        fs::read_dir(&self.remote)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }
}

/// Direct children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(p);
        }
    }
    out
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
