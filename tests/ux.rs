//! What people see (issue 17): the progress bar on a terminal,
//! report.html rendered by a real browser, and `init` round trips.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use patronload::gen::{generate, GenOptions};

use crate::util::*;

/// Whether `tool` is on PATH.
fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The first of `tools` on PATH. Missing: fails under CI (`.ci/run`
/// installs it), else says so where the test output shows it.
fn need_tool(tools: &[&str], package: &str) -> Option<String> {
    if let Some(t) = tools.iter().find(|t| have(t)) {
        return Some(t.to_string());
    }
    assert!(
        !under_ci(),
        "{} is missing; CI must install it (apt-get install {package})",
        tools.join(" or ")
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (no {}): {}",
        tools[0],
        std::thread::current().name().unwrap_or("a test")
    );
    None
}

/// A generated extract of `rows` rows (with the generator's defects).
fn extract(dir: &Path, rows: u64) -> PathBuf {
    let input = dir.join("extract.csv");
    generate(
        &GenOptions {
            rows,
            seed: 17,
            dup_rate: 0.03,
            bad_rate: 0.03,
        },
        BufWriter::new(File::create(&input).unwrap()),
        BufWriter::new(File::create(dir.join("truth.csv")).unwrap()),
    )
    .unwrap();
    input
}

// --- progress -------------------------------------------------------------

#[test]
fn progress_bar_is_drawn_on_a_terminal_only() {
    let Some(script) = need_tool(&["script"], "bsdutils") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let input = extract(t.path(), 30_000);
    let profile = root().join("examples/students.toml");
    let run = |out: &str, extra: &str| {
        format!(
            "{} convert --profile {} --out {} --as-of 2026-11-24 --max-reject-rate 50 --threads 1 \
             --reference {extra} {}",
            env!("CARGO_BIN_EXE_patronload"),
            profile.display(),
            t.path().join(out).display(),
            input.display()
        )
    };
    // `script` gives the command a terminal and copies what it draws.
    let tty = Command::new(&script)
        .args(["-qec", &run("tty", ""), "/dev/null"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(tty.status.success(), "{tty:?}");
    let drawn = String::from_utf8_lossy(&tty.stdout);
    // The stage, bytes of the input, records, rejects, an ETA.
    assert!(
        drawn.contains("reading ["),
        "no bar while reading:\n{drawn}"
    );
    assert!(drawn.contains("MiB"), "no bytes:\n{drawn}");
    assert!(drawn.contains(" rec"), "no record count:\n{drawn}");
    assert!(drawn.contains(" rej"), "no reject count:\n{drawn}");
    assert!(drawn.contains("ETA"), "no ETA:\n{drawn}");
    // NO_COLOR: no colour escapes (cursor movement is not colour).
    assert!(
        !drawn.contains("\x1b[36m"),
        "colour despite NO_COLOR:\n{drawn}"
    );
    // The summary still follows.
    assert!(drawn.contains("30000 records read"), "{drawn}");

    // -q on a terminal: no bar.
    let quiet = Command::new(&script)
        .args(["-qec", &run("quiet", "-q"), "/dev/null"])
        .output()
        .unwrap();
    let q = String::from_utf8_lossy(&quiet.stdout);
    assert!(!q.contains("ETA"), "bar despite -q:\n{q}");

    // Not a terminal: no bar, same package bytes.
    let piped = convert(
        &profile,
        &t.path().join("piped"),
        &[&input],
        &["--max-reject-rate", "50", "--threads", "1", "--reference"],
    );
    assert_status(&piped, 0);
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(!err.contains("ETA") && !err.contains("reading ["), "{err}");
    let zips = |d: &str| {
        dir_files(&t.path().join(d))
            .into_iter()
            .filter(|(n, _)| n.ends_with(".zip") || n == "rejects.csv")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        zips("tty"),
        zips("piped"),
        "a watched run wrote other bytes"
    );
}

// --- report.html ------------------------------------------------------------

/// Values of `columns` in `csv_path` (non-empty, trimmed).
fn column_values(csv_path: &Path, columns: &[&str]) -> Vec<String> {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(csv_path)
        .unwrap();
    let h = rdr.headers().unwrap().clone();
    let idx: Vec<usize> = columns
        .iter()
        .map(|c| h.iter().position(|x| x == *c).unwrap())
        .collect();
    let mut out = Vec::new();
    for r in rdr.records() {
        let Ok(r) = r else { continue };
        for &i in &idx {
            if let Some(v) = r.get(i).map(str::trim).filter(|v| !v.is_empty()) {
                out.push(v.to_string());
            }
        }
    }
    out
}

#[test]
fn report_html_holds_no_name_email_phone_address_or_birth_date() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let input = root().join("examples/students.csv");
    let o = convert(&root().join("examples/students.toml"), &out, &[&input], &[]);
    assert_status(&o, 0);
    let html = fs::read_to_string(out.join("report.html")).unwrap();
    let lower = html.to_lowercase();
    let words: std::collections::HashSet<&str> = html
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .collect();
    let mut checked = 0;
    for v in column_values(
        &input,
        &["LAST_NAME", "FIRST_NAME", "MIDDLE_NAME", "PREF_FIRST_NAME"],
    ) {
        // Initials ("J.") are too short to mean anything.
        if v.chars().count() < 3 {
            continue;
        }
        checked += 1;
        if v.contains(' ') {
            assert!(!html.contains(&v), "name {v:?} in report.html");
        } else {
            assert!(!words.contains(v.as_str()), "name {v:?} in report.html");
        }
    }
    for v in column_values(
        &input,
        &["EMAIL", "ALT_EMAIL", "PHONE", "ADDR1", "CITY", "BIRTH_DATE"],
    ) {
        if v.chars().count() < 5 {
            continue;
        }
        checked += 1;
        assert!(!lower.contains(&v.to_lowercase()), "{v:?} in report.html");
    }
    assert!(checked > 500, "only {checked} values checked");
    // What it must hold instead: ids, reasons, field names, codes.
    for s in [
        "S0000021",
        "duplicate_id",
        "invalid_date",
        "expiry_date",
        "not a date in any of the formats",
        "[tables.patron_types.map]",
        "XX = \"TODO\"",
        "UNDERGRAD",
        "400 read = 387 written + 13 rejected ✓",
        "example_users_001.zip",
    ] {
        // As a browser shows it: askama escapes quotes.
        let shown = html.replace("&#34;", "\"");
        assert!(shown.contains(s), "{s:?} missing from report.html");
    }
    // rejects.csv says which formats a date failed, the value only when
    // the field is not personal.
    let r = rejects(&out);
    let date = r.iter().find(|r| r["reason"] == "invalid_date").unwrap();
    assert!(
        date["message"].contains("%Y-%m-%d: does not fit")
            && date["message"].contains("%m/%d/%Y: a month or day is out of range"),
        "{date:?}"
    );
}

#[test]
fn report_html_renders_in_headless_chromium() {
    let Some(chromium) = need_tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "chromium",
    ) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = convert(
        &root().join("examples/students.toml"),
        &out,
        &[&root().join("examples/students.csv")],
        &[],
    );
    assert_status(&o, 0);
    let page = format!("file://{}", out.join("report.html").display());
    let browser = |extra: &[String]| {
        // Root needs --no-sandbox; a private profile directory; and a
        // time limit, as a browser can hang on a broken machine.
        let o = Command::new("timeout")
            .arg("120")
            .arg(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                t.path().join("chromium").display()
            ))
            .args(extra)
            .arg(&page)
            .output()
            .unwrap();
        assert!(o.status.success(), "chromium failed: {o:?}");
        o
    };
    let dom = String::from_utf8(browser(&["--dump-dom".into()]).stdout).unwrap();
    for id in [
        "counts",
        "conservation",
        "rejects",
        "examples",
        "unknown-codes",
        "groups",
        "dropped",
        "zips",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id} in the DOM");
    }
    assert!(dom.contains("<svg"), "no chart");
    // Nothing is fetched and nothing runs.
    assert!(!dom.contains("<script") && !dom.contains("src=\"http"));
    let png = t.path().join("report.png");
    browser(&[
        format!("--screenshot={}", png.display()),
        "--window-size=1100,2400".into(),
    ]);
    let bytes = fs::read(&png).unwrap();
    assert!(bytes.len() > 10_000, "screenshot of {} bytes", bytes.len());
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn report_html_of_a_job_and_a_repack() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("job");
    let o = patronload()
        .args(["convert", "--job"])
        .arg(root().join("examples/job/job.toml"))
        .arg("--out")
        .arg(&out)
        .args(["--as-of", "2026-11-24", "--max-reject-rate", "100"])
        .output()
        .unwrap();
    assert_status(&o, 0);
    let html = fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("People in several feeds"), "{html}");
    assert!(html.contains("superseded"));
    let re = t.path().join("repack");
    let zip = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "zip"))
        .unwrap();
    let o = patronload()
        .arg("repack")
        .arg("--out")
        .arg(&re)
        .args(["--as-of", "2026-11-24"])
        .arg(&zip)
        .output()
        .unwrap();
    assert_status(&o, 0);
    assert!(fs::read_to_string(re.join("report.html"))
        .unwrap()
        .contains("id=\"zips\""));
}

// --- init -----------------------------------------------------------------

/// `init` on `extract`, then `convert` with the written profile: the
/// profile must load and convert the extract it came from. Returns the
/// summary and init's stderr.
fn round_trip(extract: &Path, preset: Option<&str>) -> (serde_json::Value, String) {
    let t = tempfile::tempdir().unwrap();
    let profile = t.path().join("profile.toml");
    let mut cmd = patronload();
    cmd.arg("init").arg(extract).arg("--out").arg(&profile);
    if let Some(p) = preset {
        cmd.args(["--preset", p]);
    }
    let o = cmd.output().unwrap();
    assert_status(&o, 0);
    let notes = String::from_utf8_lossy(&o.stderr).into_owned();
    let out = t.path().join("out");
    let c = convert(&profile, &out, &[extract], &["--max-reject-rate", "100"]);
    assert_status(&c, 0);
    assert_xsd_valid(&out);
    let s = summary(&out);
    let read = s["records_read"].as_u64().unwrap();
    assert!(read > 0);
    assert_eq!(
        read,
        s["users_written"].as_u64().unwrap() + s["rejected"].as_u64().unwrap()
    );
    (s, notes)
}

#[test]
fn init_round_trips_the_bundled_examples() {
    let (s, notes) = round_trip(&root().join("examples/students.csv"), None);
    // Only the example's deliberate defects are rejected.
    assert_eq!(s["users_written"], 388, "{s:#}");
    for r in [
        "duplicate_id",
        "field_count",
        "invalid_date",
        "missing_field",
    ] {
        assert!(s["rejected_by_reason"][r].as_u64().unwrap() > 0, "{r}");
    }
    assert!(s["rejected_by_reason"].get("unknown_code").is_none());
    // The group table lists every code, so each user keeps its code.
    assert!(s["users_by_group"]["UG"].as_u64().unwrap() > 100, "{s:#}");
    assert!(notes.contains("not mapped"), "{notes}");
    for f in ["examples/job/students.csv", "examples/job/employees.csv"] {
        let (s, _) = round_trip(&root().join(f), None);
        assert!(s["users_written"].as_u64().unwrap() >= 5, "{f}: {s:#}");
    }
}

#[test]
fn init_round_trips_every_peer_sample() {
    let Some(reference) = reference() else {
        return;
    };
    let peer = reference.join("peer-samples");
    for (sample, users) in [
        ("alma-user-integration-csv-to-xml/data/sample.csv", 3),
        (
            "lib_jobs/spec/fixtures/alma_users_future_exp_no_netid_test.csv",
            1,
        ),
        ("millennium_patron_import/data/test.csv", 6),
        ("migration-tools/patron_loader/sample.csv", 2),
        (
            "alma-user-integration-legacy-converter/data/sample/sample.txt",
            4,
        ),
        (
            "alma-user-integration-legacy-converter/data/sample/sample.sif",
            1,
        ),
        (
            "alma-user-integration-legacy-converter/data/test_sif/student",
            1,
        ),
    ] {
        let (s, notes) = round_trip(&peer.join(sample), None);
        assert_eq!(s["users_written"], users, "{sample}: {s:#}\n{notes}");
        assert_eq!(s["rejected"], 0, "{sample}: {s:#}");
    }
}

#[test]
fn init_never_prints_a_personal_value() {
    let t = tempfile::tempdir().unwrap();
    let input = root().join("examples/students.csv");
    let o = patronload().arg("init").arg(&input).output().unwrap();
    assert_status(&o, 0);
    let profile = String::from_utf8(o.stdout).unwrap();
    let all = format!("{profile}{}", String::from_utf8_lossy(&o.stderr)).to_lowercase();
    for v in column_values(
        &input,
        &[
            "LAST_NAME",
            "FIRST_NAME",
            "EMAIL",
            "PHONE",
            "ADDR1",
            "CITY",
            "BIRTH_DATE",
        ],
    ) {
        if v.chars().count() >= 5 {
            assert!(!all.contains(&v.to_lowercase()), "{v:?} printed by init");
        }
    }
    // Group codes are codes: listed with their counts.
    assert!(profile.contains("[tables.user_groups.map]"), "{profile}");
    assert!(profile.contains("UG = \"UG\"  # "), "{profile}");
    // An existing profile is not overwritten without --force.
    let p = t.path().join("p.toml");
    fs::write(&p, "keep").unwrap();
    let o = patronload()
        .arg("init")
        .arg(&input)
        .arg("--out")
        .arg(&p)
        .output()
        .unwrap();
    assert_status(&o, 2);
    assert_eq!(fs::read_to_string(&p).unwrap(), "keep");
}

#[test]
fn init_reads_windows_1252_and_utf16_extracts_with_a_preset() {
    let t = tempfile::tempdir().unwrap();
    let text =
        "SPRIDEN_ID|SPRIDEN_LAST_NAME|SPRIDEN_FIRST_NAME|STVLEVL_CODE|GOREMAL_EMAIL_ADDRESS\n\
                B001|Zoë|Ana|UG|a1@example.edu\nB002|Núñez|Bo|GR|b2@example.edu\nB003|Ode|Cy|UG|\n";
    let cp1252: Vec<u8> = encoding_rs::WINDOWS_1252.encode(text).0.into_owned();
    let p1 = t.path().join("banner.txt");
    fs::write(&p1, &cp1252).unwrap();
    let mut utf16 = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        utf16.extend(u.to_le_bytes());
    }
    let p2 = t.path().join("banner16.txt");
    fs::write(&p2, &utf16).unwrap();
    for (p, enc) in [(&p1, "windows-1252"), (&p2, "utf-16le")] {
        let o = patronload()
            .arg("init")
            .arg(p)
            .args(["--preset", "banner"])
            .output()
            .unwrap();
        assert_status(&o, 0);
        let profile = String::from_utf8(o.stdout).unwrap();
        assert!(
            profile.contains(&format!("encoding = \"{enc}\"")),
            "{profile}"
        );
        assert!(profile.contains("delimiter = \"|\""), "{profile}");
        assert!(profile.contains("primary_id = { column = \"SPRIDEN_ID\" }"));
        assert!(profile.contains("last_name = { column = \"SPRIDEN_LAST_NAME\" }"));
        assert!(profile.contains("column = \"STVLEVL_CODE\", table = \"user_groups\""));
        let (s, _) = round_trip(p, Some("banner"));
        assert_eq!(s["users_written"], 3, "{s:#}");
        assert_eq!(s["users_by_group"]["UG"], 2);
    }
}
