//! The remote directory: a small [`Remote`] trait (what a delivery needs
//! of a server) and its SFTP implementation on `russh` + `russh-sftp`
//! (pure Rust, `ring` crypto), driven by a current-thread tokio runtime
//! so the library API stays blocking. Another SSH library only needs
//! another `Remote`.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use tokio::io::AsyncWriteExt;

use super::config::{Auth, Target};
use super::plan::RemoteEntry;
use super::Error;

/// A failed remote operation, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    /// A network failure (retried), not a refusal by the server.
    pub transient: bool,
    /// What happened, with the path concerned.
    pub message: String,
}

impl RemoteError {
    /// A refusal by the server (permission denied, no such directory).
    pub fn permanent(message: impl Into<String>) -> Self {
        RemoteError {
            transient: false,
            message: message.into(),
        }
    }

    /// A network failure.
    pub fn transient(message: impl Into<String>) -> Self {
        RemoteError {
            transient: true,
            message: message.into(),
        }
    }
}

/// What a delivery needs of the server. Paths are relative to the login
/// directory or absolute, `/`-separated.
pub trait Remote {
    /// The plain files of a directory with sizes and modification times.
    fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError>;
    /// The size of a file.
    fn size(&mut self, path: &str) -> Result<u64, RemoteError>;
    /// Creates or truncates `path` and writes all of `data` into it,
    /// synced; returns the bytes written.
    fn upload(&mut self, data: &mut dyn Read, path: &str) -> Result<u64, RemoteError>;
    /// Renames `from` to `to`, which must not exist.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError>;
    /// Removes a file.
    fn remove(&mut self, path: &str) -> Result<(), RemoteError>;
}

/// `SHA256:<base64, no padding>`, as `ssh-keygen -lf` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The fingerprint a server presented and, if refused, what was expected.
type Seen = Arc<Mutex<Option<(String, Option<String>)>>>;

/// Checks the server's key during the handshake and remembers what it saw.
struct Checker {
    host: String,
    port: u16,
    pin: Option<String>,
    known_hosts: Option<std::path::PathBuf>,
    /// The key seen and, if refused, what was expected.
    seen: Seen,
}

impl Checker {
    /// `None` when the key is accepted, else what was expected.
    fn verdict(&self, key: &PublicKey) -> Option<String> {
        let seen = fingerprint(key);
        if let Some(pin) = &self.pin {
            if pin.trim() != seen {
                return Some(format!("{} (host_key)", pin.trim()));
            }
        }
        if let Some(path) = &self.known_hosts {
            let known =
                match russh::keys::known_hosts::known_host_keys_path(&self.host, self.port, path) {
                    Ok(k) => k,
                    Err(e) => return Some(format!("a readable {} ({e})", path.display())),
                };
            if known.iter().any(|(_, k)| k == key) {
                return None;
            }
            if known.is_empty() {
                return Some(format!(
                    "no key for {} in {} (unknown host)",
                    host_port(&self.host, self.port),
                    path.display()
                ));
            }
            let list: Vec<String> = known
                .iter()
                .map(|(line, k)| format!("{} (line {line})", fingerprint(k)))
                .collect();
            return Some(format!("{} in {}", list.join(", "), path.display()));
        }
        None
    }
}

fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server else {
            *self.seen.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(("a host certificate".into(), Some("a plain host key".into())));
            return Ok(false);
        };
        let verdict = self.verdict(key);
        let ok = verdict.is_none();
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some((fingerprint(key), verdict));
        Ok(ok)
    }
}

/// An SFTP session on a verified, logged-in connection.
pub struct SftpRemote {
    rt: tokio::runtime::Runtime,
    sftp: SftpSession,
    // Kept so the connection lives as long as the session.
    _handle: client::Handle<Checker>,
}

fn transient(what: &str, e: impl std::fmt::Display) -> RemoteError {
    RemoteError::transient(format!("{what}: {e}"))
}

/// Maps an SFTP error: a status from the server is a refusal, anything
/// else (connection lost, timeout) is transient.
fn sftp_err(what: &str, e: russh_sftp::client::error::Error) -> RemoteError {
    use russh_sftp::client::error::Error as E;
    match &e {
        E::Status(s) => {
            let why = match s.status_code {
                StatusCode::PermissionDenied => "permission denied".to_string(),
                StatusCode::NoSuchFile => "no such file or directory".to_string(),
                _ => format!("{}: {}", s.status_code, s.error_message),
            };
            RemoteError::permanent(format!("{what}: {why}"))
        }
        _ => transient(what, e),
    }
}

/// Maps an I/O error of a remote file: the server's refusal comes back as
/// `Other` with its message; a lost connection as anything else.
fn io_err(what: &str, e: std::io::Error) -> RemoteError {
    let msg = e.to_string();
    let refused = e.kind() == std::io::ErrorKind::PermissionDenied
        || msg.contains("denied")
        || msg.contains("No space")
        || msg.contains("quota");
    if refused {
        RemoteError::permanent(format!("{what}: {msg}"))
    } else {
        transient(what, msg)
    }
}

impl SftpRemote {
    /// Connects, verifies the host key, logs in and opens SFTP. Host-key
    /// and login failures are [`Error::HostKey`] / [`Error::Auth`] (never
    /// retried); a network failure is a transient [`Error::Remote`].
    pub fn connect(target: &Target) -> Result<SftpRemote, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Remote(transient("tokio runtime", e)))?;
        let auth = target.auth().map_err(Error::Auth)?;
        let password = match &auth {
            Auth::PasswordEnv(var) => Some(std::env::var(var).map_err(|_| {
                Error::Auth(format!(
                    "environment variable {var} (password_env) is not set"
                ))
            })?),
            Auth::Key(_) => None,
        };
        let key = match &auth {
            Auth::Key(path) => Some(
                russh::keys::load_secret_key(path, None)
                    .map_err(|e| Error::Auth(format!("key_file {}: {e}", path.display())))?,
            ),
            Auth::PasswordEnv(_) => None,
        };
        let seen: Seen = Arc::new(Mutex::new(None));
        let checker = Checker {
            host: target.host.clone(),
            port: target.port,
            pin: target.host_key.clone(),
            known_hosts: target.known_hosts.clone(),
            seen: seen.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(120)),
            nodelay: true,
            ..Default::default()
        });
        let addr = (target.host.clone(), target.port);
        let where_ = format!("{}:{}", target.host, target.port);
        rt.block_on(async move {
            let connected = tokio::time::timeout(
                Duration::from_secs(30),
                client::connect(config, addr, checker),
            )
            .await;
            let mut handle = match connected {
                Err(_) => {
                    return Err(Error::Remote(RemoteError::transient(format!(
                        "connect to {where_}: timed out"
                    ))))
                }
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
                    return Err(match seen {
                        Some((seen, Some(expected))) => Error::HostKey {
                            server: where_,
                            seen,
                            expected,
                        },
                        _ => Error::Remote(transient(&format!("connect to {where_}"), e)),
                    });
                }
            };
            let result = match (key, password) {
                (Some(key), _) => {
                    let hash = handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(|e| Error::Remote(transient("login", e)))?
                        .flatten();
                    handle
                        .authenticate_publickey(
                            target.user.clone(),
                            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
                        )
                        .await
                }
                (None, Some(pw)) => handle.authenticate_password(target.user.clone(), pw).await,
                (None, None) => unreachable!("auth() gives a key or a password"),
            }
            .map_err(|e| Error::Remote(transient("login", e)))?;
            if !result.success() {
                return Err(Error::Auth(format!(
                    "{where_} refused the login of user {}",
                    target.user
                )));
            }
            let channel = handle
                .channel_open_session()
                .await
                .map_err(|e| Error::Remote(transient("open session", e)))?;
            channel
                .request_subsystem(true, "sftp")
                .await
                .map_err(|e| Error::Remote(transient("start sftp", e)))?;
            let sftp = SftpSession::new(channel.into_stream())
                .await
                .map_err(|e| Error::Remote(sftp_err("start sftp", e)))?;
            Ok((handle, sftp))
        })
        .map(|(handle, sftp)| SftpRemote {
            rt,
            sftp,
            _handle: handle,
        })
    }
}

impl Remote for SftpRemote {
    fn list(&mut self, dir: &str) -> Result<Vec<RemoteEntry>, RemoteError> {
        let sftp = &self.sftp;
        self.rt.block_on(async {
            let rd = sftp
                .read_dir(dir)
                .await
                .map_err(|e| sftp_err(&format!("list {dir}"), e))?;
            Ok(rd
                // Everything but directories: a server that sends no
                // file type must not hide files from the budget.
                .filter(|e| {
                    !e.file_type().is_dir() && e.file_name() != "." && e.file_name() != ".."
                })
                .map(|e| {
                    let m = e.metadata();
                    RemoteEntry {
                        name: e.file_name(),
                        size: m.size.unwrap_or(0),
                        mtime: m.mtime.map_or(0, u64::from),
                    }
                })
                .collect())
        })
    }

    fn size(&mut self, path: &str) -> Result<u64, RemoteError> {
        let sftp = &self.sftp;
        self.rt.block_on(async {
            let m = sftp
                .metadata(path)
                .await
                .map_err(|e| sftp_err(&format!("stat {path}"), e))?;
            Ok(m.size.unwrap_or(0))
        })
    }

    fn upload(&mut self, data: &mut dyn Read, path: &str) -> Result<u64, RemoteError> {
        let sftp = &self.sftp;
        self.rt.block_on(async {
            let what = format!("upload {path}");
            let mut f = sftp
                .open_with_flags(
                    path,
                    OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE,
                )
                .await
                .map_err(|e| sftp_err(&what, e))?;
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = data
                    .read(&mut buf)
                    .map_err(|e| RemoteError::permanent(format!("read local file: {e}")))?;
                if n == 0 {
                    break;
                }
                f.write_all(&buf[..n]).await.map_err(|e| io_err(&what, e))?;
                total += n as u64;
            }
            // flush waits for every write's acknowledgement and fsyncs
            // where the server offers it; shutdown closes the handle.
            f.flush().await.map_err(|e| io_err(&what, e))?;
            f.shutdown().await.map_err(|e| io_err(&what, e))?;
            Ok(total)
        })
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), RemoteError> {
        let sftp = &self.sftp;
        self.rt.block_on(async {
            sftp.rename(from, to)
                .await
                .map_err(|e| sftp_err(&format!("rename {from} to {to}"), e))
        })
    }

    fn remove(&mut self, path: &str) -> Result<(), RemoteError> {
        let sftp = &self.sftp;
        self.rt.block_on(async {
            sftp.remove_file(path)
                .await
                .map_err(|e| sftp_err(&format!("remove {path}"), e))
        })
    }
}
