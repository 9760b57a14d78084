//! Shared helpers for the integration tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/reference`, when present beside the checkout. When it is
/// absent the test says so where `cargo test` shows it (see [`skipped`]),
/// and under CI (`CI` set) it fails: CI always has ../shared beside the
/// checkout, so a missing one is a broken setup, not a skip.
pub fn reference() -> Option<PathBuf> {
    let p = root().join("../shared/reference");
    if p.join("rest_users.xsd").exists() {
        return Some(p);
    }
    assert!(
        !under_ci(),
        "../shared/reference is missing beside the checkout ({}); CI must have it",
        p.display()
    );
    skipped("../shared/reference is absent");
    None
}

/// Whether the tests run under CI (`.ci/run` exports `CI=1`): a tool or
/// folder a test needs must then be there, and its absence fails.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Prints `SKIPPED (no ../shared): <test>: <why>` straight to stderr:
/// `eprintln!` inside a passing test is captured and never shown, which
/// made these tests pass silently in 0.00 s.
pub fn skipped(why: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let _ = writeln!(std::io::stderr(), "SKIPPED (no ../shared): {test}: {why}");
}

/// A `patronload` command.
pub fn patronload() -> Command {
    Command::new(env!("CARGO_BIN_EXE_patronload"))
}

/// Runs `patronload convert` with the fixed as-of date used by all tests.
pub fn convert(profile: &Path, out: &Path, inputs: &[&Path], extra: &[&str]) -> Output {
    let mut cmd = patronload();
    cmd.arg("convert")
        .arg("--profile")
        .arg(profile)
        .arg("--out")
        .arg(out);
    cmd.args(["--as-of", "2026-11-24"]).args(extra);
    for i in inputs {
        cmd.arg(i);
    }
    cmd.output().expect("run patronload")
}

/// Exit code of an output, with stderr shown on mismatch.
pub fn assert_status(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file of a directory, name → bytes (without the wall-clock parts
/// of `summary.json` and `report.html`: see `harness::comparable`).
pub fn dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = patronload::harness::comparable(&name, fs::read(e.path()).unwrap());
            m.insert(name, bytes);
        }
    }
    m
}

/// The XML entries of every zip in `dir`, in zip-name then stored order.
pub fn xml_entries(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, bytes) in dir_files(dir) {
        if !name.ends_with(".zip") {
            continue;
        }
        let mut ar = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        for i in 0..ar.len() {
            let mut f = ar.by_index(i).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            out.push((f.name().unwrap().to_string(), s));
        }
    }
    out
}

/// Validates every XML entry of every zip in `dir` against Ex Libris'
/// rest_users.xsd with xmllint. Skips, saying so, when ../shared is
/// absent; fails when xmllint itself is missing.
pub fn assert_xsd_valid(dir: &Path) {
    let Some(reference) = reference() else {
        return;
    };
    let entries = xml_entries(dir);
    assert!(!entries.is_empty(), "no XML entries in {}", dir.display());
    let tmp = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (name, text) in &entries {
        assert!(
            text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>"),
            "{name}"
        );
        let p = tmp.path().join(name);
        fs::write(&p, text).unwrap();
        paths.push(p);
    }
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(reference.join("rest_users.xsd"))
        .args(&paths)
        .output()
        .expect("xmllint is needed for the XSD tests: apt-get install libxml2-utils");
    assert!(
        out.status.success(),
        "xmllint failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// rejects.csv as rows of its columns (header excluded).
pub fn rejects(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let mut rdr = csv::Reader::from_path(dir.join("rejects.csv")).unwrap();
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "source_file",
            "line",
            "last_line",
            "record",
            "primary_id",
            "reason",
            "field",
            "message"
        ]
    );
    rdr.records()
        .map(|r| {
            headers
                .iter()
                .zip(r.unwrap().iter())
                .map(|(h, v)| (h.into(), v.into()))
                .collect()
        })
        .collect()
}

/// summary.json, parsed, with its conservation rules checked.
pub fn summary(dir: &Path) -> serde_json::Value {
    let s: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let n = |k: &str| s[k].as_u64().unwrap();
    // A job also supersedes records of people seen more than once.
    let superseded = s["job"]["superseded"].as_u64().unwrap_or(0);
    assert_eq!(
        n("records_read"),
        n("users_written") + n("rejected") + superseded,
        "conservation"
    );
    let by_reason: u64 = s["rejected_by_reason"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_reason, n("rejected"));
    let zipped: u64 = s["zips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["users"].as_u64().unwrap())
        .sum();
    // With a state file (`--state`), the package holds the users sent: a
    // delta leaves the unchanged out and adds expired departed users.
    let sent = s["state"]["users_sent"]
        .as_u64()
        .unwrap_or_else(|| n("users_written"));
    assert_eq!(zipped, sent);
    let by_group: u64 = s["users_by_group"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(by_group, n("users_written"));
    assert_eq!(rejects(dir).len() as u64, n("rejected"));
    // `convert`: every physical line has exactly one outcome, and the
    // rejected lines are those `rejects.csv` spans.
    if let Some(l) = s.get("lines_read") {
        let m = |k: &str| l[k].as_u64().unwrap();
        assert_eq!(
            m("total"),
            m("header") + m("blank") + m("written") + m("rejected") + m("superseded"),
            "lines_read {l}"
        );
        assert_eq!(m("blank"), n("blank_lines"));
        assert!(m("written") >= n("users_written"));
        let spanned: u64 = rejects(dir)
            .iter()
            .map(|r| {
                let a: u64 = r["line"].parse().unwrap();
                let b: u64 = r["last_line"].parse().unwrap();
                assert!(a <= b, "{r:?}");
                b - a + 1
            })
            .sum();
        assert_eq!(spanned, m("rejected"), "lines_read {l}");
    }
    s
}

/// Number of `<user>` elements across all entries.
pub fn user_count(dir: &Path) -> usize {
    xml_entries(dir)
        .iter()
        .map(|(_, t)| t.matches("<user>").count())
        .sum()
}

/// Physical lines of `text` counted byte by byte: LF, CRLF and a lone CR
/// each end a line, and a last line without a break counts too. Kept
/// apart from the tool's own counting on purpose. A byte-order mark or a
/// UTF-16 encoding is the caller's to undo.
pub fn physical_lines(text: &[u8]) -> u64 {
    let mut n = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' || (b == b'\r' && text.get(i + 1) != Some(&b'\n')) {
            n += 1;
        }
    }
    if text.last().is_some_and(|&b| b != b'\n' && b != b'\r') {
        n += 1;
    }
    n
}
