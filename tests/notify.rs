//! Notifications against a local HTTP listener and a local SMTP sink on
//! 127.0.0.1, and `patronload run` end to end (convert → publish →
//! deliver to a real sshd → notify).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use patronload::notify::{self, Message, NotifyConfig, SmtpConfig, When};

use crate::sshd::{Sshd, USER};
use crate::util::*;

/// An HTTP server on loopback that answers `status` to each request and
/// hands over each request's body.
fn http_listener(status: u16) -> (String, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook/secret", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0usize;
            let mut line = String::new();
            let mut first = true;
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                if first {
                    assert!(line.starts_with("POST /hook/secret "), "{line}");
                    first = false;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
            if tx.send(String::from_utf8(body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// A minimal SMTP server on loopback that accepts every message and
/// hands over the envelope and the data.
fn smtp_sink() -> (u16, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut w) = conn else { return };
            let mut r = BufReader::new(w.try_clone().unwrap());
            let mut got = String::new();
            w.write_all(b"220 sink ESMTP\r\n").unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let cmd = line.to_ascii_uppercase();
                if cmd.starts_with("EHLO") || cmd.starts_with("HELO") {
                    w.write_all(b"250-sink\r\n250 8BITMIME\r\n").unwrap();
                } else if cmd.starts_with("DATA") {
                    w.write_all(b"354 go ahead\r\n").unwrap();
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        if line == ".\r\n" {
                            break;
                        }
                        got.push_str(&line);
                    }
                    w.write_all(b"250 queued\r\n").unwrap();
                } else if cmd.starts_with("QUIT") {
                    w.write_all(b"221 bye\r\n").unwrap();
                    break;
                } else {
                    got.push_str(&line);
                    w.write_all(b"250 OK\r\n").unwrap();
                }
            }
            if tx.send(got).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

fn msg() -> Message {
    Message {
        event: When::Failure,
        subject: "patronload run → prod: delivery failed".into(),
        body: "records read 10, users written 9, rejected 1".into(),
    }
}

#[test]
fn webhook_posts_json_with_text() {
    let (url, rx) = http_listener(200);
    notify::send_webhook(&url, &msg()).unwrap();
    let body = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.starts_with("patronload run → prod: delivery failed\nrecords read 10"));
    // A refusing endpoint is an error, and the URL (its secret) is not
    // echoed by us.
    let (url, _rx) = http_listener(500);
    let err = notify::send_webhook(&url, &msg()).unwrap_err();
    assert!(err.contains("500"), "{err}");
}

#[test]
fn email_through_smtp() {
    let (port, rx) = smtp_sink();
    let cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        from: "patronload@example.edu".into(),
        to: vec!["ops@example.edu".into(), "lib@example.edu".into()],
        starttls: false,
        user: None,
        password_env: None,
    };
    notify::send_email(&cfg, &msg()).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(got.contains("MAIL FROM:<patronload@example.edu>"), "{got}");
    assert!(got.contains("RCPT TO:<ops@example.edu>") && got.contains("RCPT TO:<lib@example.edu>"));
    assert!(got.contains("records read 10, users written 9"), "{got}");
    assert!(got.contains("Subject: "), "{got}");
    // STARTTLS required but not offered: refused, nothing sent in clear.
    let (port, _rx) = smtp_sink();
    let tls = SmtpConfig {
        port,
        starttls: true,
        ..cfg
    };
    assert!(notify::send_email(&tls, &msg()).is_err());
}

#[test]
fn on_failure_only_skips_success() {
    let c: NotifyConfig = toml::from_str("webhook_url = \"http://127.0.0.1:9/x\"").unwrap();
    assert!(!c.wants(When::Always));
    assert!(c.wants(When::Failure));
}

/// A job-less `run` of the bundled example into a real sshd, notified on
/// a local webhook; then a failing delivery (wrong pin) exits 5 and
/// notifies the failure.
#[test]
fn run_converts_delivers_and_notifies() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let (url, rx) = http_listener(200);
    let cfg = tmp.path().join("delivery.toml");
    let write_cfg = |pin: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[delivery.dev]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
                 key_file = \"{}\"\nhost_key = \"{pin}\"\nremote_dir = \"{}\"\nretries = 0\n\n\
                 [notify]\nwebhook_url = \"{url}\"\non = \"always\"\n",
                s.port,
                s.client_key.display(),
                s.remote.display()
            ),
        )
        .unwrap();
    };
    write_cfg(&s.fingerprint());
    let out = tmp.path().join("out");
    let run = || {
        patronload()
            .current_dir(root())
            .args(["run", "--profile", "examples/students.toml", "--out"])
            .arg(&out)
            .args(["--as-of", "2026-11-24", "--target", "dev", "--config"])
            .arg(&cfg)
            // The example's reject rate is over the default 5 %.
            .args(["--max-reject-rate", "100", "examples/students.csv"])
            .output()
            .unwrap()
    };
    let ok = run();
    assert_status(&ok, 0);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(stderr.contains("delivered 1 zip"), "{stderr}");
    let zips: Vec<String> = s
        .files()
        .into_keys()
        .filter(|k| k.starts_with("example_users_2026"))
        .collect();
    assert_eq!(zips.len(), 1, "{:?}", s.files().keys());
    assert_eq!(
        s.files()[&zips[0]],
        std::fs::read(out.join("example_users_001.zip")).unwrap()
    );
    let text = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        text.contains("delivered 1 zip(s)") && text.contains("users written"),
        "{text}"
    );
    // Counts and reasons only: no primary id, email or name of the
    // extract.
    for patron in ["S0000001", "@example.edu", "Ada"] {
        assert!(!text.contains(patron), "{patron} in {text}");
    }

    write_cfg("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let failed = run();
    assert_status(&failed, 5);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains(&s.fingerprint()), "{stderr}");
    let text = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        text.contains("delivery failed") && text.contains("NOT delivered"),
        "{text}"
    );

    // Over the reject threshold: published, held back, exit 3.
    write_cfg(&s.fingerprint());
    let held = patronload()
        .current_dir(root())
        .args(["run", "--profile", "examples/students.toml", "--out"])
        .arg(&out)
        .args(["--as-of", "2026-11-25", "--target", "dev", "--config"])
        .arg(&cfg)
        .args(["--max-reject-rate", "0", "examples/students.csv"])
        .output()
        .unwrap();
    assert_status(&held, 3);
    let text = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(text.contains("NOT delivered"), "{text}");
    assert!(!s.files().keys().any(|k| k.contains("20261125")));
}

/// `run --job` with `[delivery.NAME]` in the job file itself (no
/// `--config`): the job loader accepts the tables, delivery reads them.
#[test]
fn run_job_reads_delivery_from_the_job_file() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let ex = root().join("examples/job");
    let job = tmp.path().join("job.toml");
    let text = std::fs::read_to_string(ex.join("job.toml"))
        .unwrap()
        .replace(
            "\"../students.toml\"",
            &format!("\"{}/../students.toml\"", ex.display()),
        )
        .replace(
            "\"employees.toml\"",
            &format!("\"{}/employees.toml\"", ex.display()),
        )
        .replace(
            "[\"students.csv\"]",
            &format!("[\"{}/students.csv\"]", ex.display()),
        )
        .replace(
            "[\"employees.csv\"]",
            &format!("[\"{}/employees.csv\"]", ex.display()),
        );
    std::fs::write(
        &job,
        format!(
            "{text}\n[delivery.prod]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
             key_file = \"{}\"\nhost_key = \"{}\"\nremote_dir = \"{}\"\n",
            s.port,
            s.client_key.display(),
            s.fingerprint(),
            s.remote.display()
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    // convert --job still takes the file (the delivery tables are not
    // its business).
    let conv = patronload()
        .args(["convert", "--job"])
        .arg(&job)
        .arg("--out")
        .arg(tmp.path().join("plain"))
        .args(["--as-of", "2026-11-24", "--max-reject-rate", "100"])
        .output()
        .unwrap();
    assert_status(&conv, 0);
    // The nightly form: the job file first, no --job.
    let run = patronload()
        .arg("run")
        .arg(&job)
        .arg("--out")
        .arg(&out)
        .args([
            "--as-of",
            "2026-11-24",
            "--max-reject-rate",
            "100",
            "--target",
            "prod",
        ])
        .output()
        .unwrap();
    assert_status(&run, 0);
    let names: Vec<String> = s.files().into_keys().collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("example_users_20261124_"), "{names:?}");
    // An unknown target: usage error before anything is converted.
    let bad = patronload()
        .args(["run", "--job"])
        .arg(&job)
        .arg("--out")
        .arg(tmp.path().join("never"))
        .args(["--target", "staging"])
        .output()
        .unwrap();
    assert_status(&bad, 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("targets: prod"));
    assert!(!tmp.path().join("never").exists());
}

/// `run --state`: the state moves only with a delivered package. A
/// delivery refused (wrong pin, exit 5) commits nothing, so the next run
/// still finds every user new; once delivered, a delta of the same extract
/// has nothing to send.
#[test]
fn run_commits_the_state_only_after_a_delivery() {
    if !crate::sshd::available() {
        return;
    }
    let s = Sshd::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("delivery.toml");
    let state = tmp.path().join("state.db");
    let write_cfg = |pin: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[delivery.dev]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{USER}\"\n\
                 key_file = \"{}\"\nhost_key = \"{pin}\"\nremote_dir = \"{}\"\nretries = 0\n",
                s.port,
                s.client_key.display(),
                s.remote.display()
            ),
        )
        .unwrap();
    };
    let run = |out: &Path, cmd: &[&str]| {
        patronload()
            .current_dir(root())
            .args(cmd)
            .args(["--profile", "examples/students.toml", "--out"])
            .arg(out)
            .args(["--as-of", "2026-11-24", "--state"])
            .arg(&state)
            .args(["--max-reject-rate", "100", "examples/students.csv"])
            .output()
            .unwrap()
    };
    let changes = |out: &Path| summary(out)["changes"].clone();

    write_cfg("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let out1 = tmp.path().join("out1");
    let cfg_s = cfg.to_str().unwrap();
    let failed = run(&out1, &["run", "--target", "dev", "--config", cfg_s]);
    assert_status(&failed, 5);
    let users = summary(&out1)["users_written"].as_u64().unwrap();
    assert!(users > 0);
    assert_eq!(changes(&out1)["new"].as_u64(), Some(users));

    write_cfg(&s.fingerprint());
    let out2 = tmp.path().join("out2");
    let ok = run(&out2, &["run", "--target", "dev", "--config", cfg_s]);
    assert_status(&ok, 0);
    // The refused run was never committed: everyone is still new.
    assert_eq!(changes(&out2)["new"].as_u64(), Some(users));
    assert_eq!(changes(&out2)["unchanged"].as_u64(), Some(0));

    let out3 = tmp.path().join("out3");
    let delta = run(&out3, &["convert", "--package", "delta"]);
    assert_status(&delta, 0);
    assert_eq!(changes(&out3)["unchanged"].as_u64(), Some(users));
    assert_eq!(changes(&out3)["new"].as_u64(), Some(0));
    assert!(!out3.join("example_users_001.zip").exists());
}
