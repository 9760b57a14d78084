//! `[delivery.NAME]` targets and `[notify]`, read from a job file or any
//! TOML file given with `--config`. Other tables of the file are ignored
//! here (the job loader reads them), so one file can hold both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Error;
use crate::notify::NotifyConfig;

/// Alma loads at most this many zips per run of its import job.
pub const ALMA_ZIPS_PER_RUN: u32 = 20;

/// The delivery-related tables of a TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// `[delivery.NAME]` tables by name.
    #[serde(default)]
    pub delivery: BTreeMap<String, Target>,
    /// `[notify]`, if present.
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
}

/// One `[delivery.NAME]` table: an SFTP directory Alma polls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Server name or address.
    pub host: String,
    /// SSH port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Private key file (OpenSSH format, unencrypted), relative to the
    /// config file.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name of the environment variable holding the password; a password
    /// itself is never read from a file.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Pinned host key fingerprint, `SHA256:<base64>` as `ssh-keygen -lf`
    /// prints it.
    #[serde(default)]
    pub host_key: Option<String>,
    /// An OpenSSH `known_hosts` file, relative to the config file.
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// The directory Alma polls.
    pub remote_dir: String,
    /// Budget of the remote directory: files already there plus the
    /// package (`1GB`, `500MB`, ...).
    #[serde(default = "default_max_dir_bytes")]
    pub max_dir_bytes: String,
    /// Zips the directory may hold after delivery (Alma's per-run limit).
    #[serde(default = "default_max_zips")]
    pub max_zips: u32,
    /// `.handled` files (picked up by Alma) older than this are removed.
    #[serde(default = "default_keep_handled_days")]
    pub keep_handled_days: u32,
    /// Attempts after the first on a transient network failure.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_port() -> u16 {
    22
}
fn default_max_dir_bytes() -> String {
    "1GB".into()
}
fn default_max_zips() -> u32 {
    ALMA_ZIPS_PER_RUN
}
fn default_keep_handled_days() -> u32 {
    30
}
fn default_retries() -> u32 {
    3
}

/// How the client logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// A private key file.
    Key(PathBuf),
    /// The password in this environment variable.
    PasswordEnv(String),
}

impl Target {
    /// The login method; exactly one of `key_file` and `password_env`.
    pub fn auth(&self) -> Result<Auth, String> {
        match (&self.key_file, &self.password_env) {
            (Some(k), None) => Ok(Auth::Key(k.clone())),
            (None, Some(v)) if !v.trim().is_empty() => Ok(Auth::PasswordEnv(v.clone())),
            (None, Some(_)) => Err("password_env is empty".into()),
            (Some(_), Some(_)) => Err("give key_file or password_env, not both".into()),
            (None, None) => Err("give key_file or password_env".into()),
        }
    }

    /// `max_dir_bytes` in bytes.
    pub fn max_dir_bytes(&self) -> Result<u64, String> {
        self.max_dir_bytes
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| format!("max_dir_bytes `{}`: {e}", self.max_dir_bytes))
    }

    /// Checks what can be checked without connecting.
    fn check(&self) -> Result<(), String> {
        self.auth()?;
        self.max_dir_bytes()?;
        if self.host.trim().is_empty() || self.user.trim().is_empty() {
            return Err("host and user must not be empty".into());
        }
        match (&self.host_key, &self.known_hosts) {
            (None, None) => {
                return Err(
                    "give host_key (SHA256:... from ssh-keygen -lf) and/or known_hosts: \
                            an unverified server is never used"
                        .into(),
                )
            }
            (Some(k), _) if !k.starts_with("SHA256:") || k.len() <= "SHA256:".len() => {
                return Err(format!(
                    "host_key `{k}` is not a SHA256:<base64> fingerprint (ssh-keygen -lf prints it)"
                ))
            }
            _ => {}
        }
        if self.remote_dir.trim().is_empty() {
            return Err("remote_dir must not be empty (use `.` for the login directory)".into());
        }
        if self.max_zips == 0 {
            return Err("max_zips must be at least 1".into());
        }
        Ok(())
    }
}

impl Config {
    /// Reads the delivery tables of `path`; relative `key_file` and
    /// `known_hosts` are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut config = Config::parse(&text).map_err(|message| Error::Config {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for t in config.delivery.values_mut() {
            for p in [&mut t.key_file, &mut t.known_hosts].into_iter().flatten() {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(config)
    }

    /// Parses and checks the delivery tables of a TOML text.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, t) in &config.delivery {
            t.check().map_err(|m| format!("[delivery.{name}]: {m}"))?;
        }
        if let Some(n) = &config.notify {
            n.check().map_err(|m| format!("[notify]: {m}"))?;
        }
        Ok(config)
    }

    /// The target called `name`.
    pub fn target(&self, name: &str) -> Result<&Target, String> {
        self.delivery.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.delivery.keys().map(String::as_str).collect();
            if known.is_empty() {
                format!("no [delivery.{name}] table (the file has no [delivery.*] tables)")
            } else {
                format!("no [delivery.{name}] table (targets: {})", known.join(", "))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[output]
prefix = "x"
[delivery.dev]
host = "sftp.example.edu"
user = "alma"
key_file = "id_ed25519"
host_key = "SHA256:abc"
remote_dir = "incoming"
"#;

    #[test]
    fn defaults_and_other_tables_ignored() {
        let c = Config::parse(OK).unwrap();
        let t = c.target("dev").unwrap();
        assert_eq!(t.port, 22);
        assert_eq!(t.max_dir_bytes().unwrap(), 1_000_000_000);
        assert_eq!(t.max_zips, 20);
        assert_eq!(t.auth().unwrap(), Auth::Key("id_ed25519".into()));
        assert!(c.target("prod").unwrap_err().contains("targets: dev"));
    }

    #[test]
    fn refuses_unverified_server_and_two_logins() {
        let no_pin = OK.replace("host_key = \"SHA256:abc\"\n", "");
        assert!(Config::parse(&no_pin).unwrap_err().contains("known_hosts"));
        let bad_pin = OK.replace("SHA256:abc", "MD5:ab:cd");
        assert!(Config::parse(&bad_pin).unwrap_err().contains("fingerprint"));
        let both = OK.replace("remote_dir", "password_env = \"P\"\nremote_dir");
        assert!(Config::parse(&both).unwrap_err().contains("not both"));
        let typo = OK.replace("remote_dir", "remote_dirr");
        assert!(Config::parse(&typo).is_err());
    }
}
