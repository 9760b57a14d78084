//! Flags, exit statuses and atomic publication.

use std::fs;

use crate::util::*;

const HEADER: &str = "EMPLID,BARCODE,LAST_NAME,FIRST_NAME,MIDDLE_NAME,PREF_FIRST_NAME,PATRON_TYPE,\
CAMPUS,EMAIL,ALT_EMAIL,PHONE,ADDR1,ADDR2,CITY,STATE,POSTAL,COUNTRY,BIRTH_DATE,EXPIRY_DATE,DEPT\n";

/// `n` clean rows for examples/students.toml.
fn rows(n: usize) -> String {
    let mut s = String::from(HEADER);
    for i in 0..n {
        s.push_str(&format!(
            "S{i:07},2123400{i:07},Last{i},First,,,UG,M,u{i}@example.edu,,,1 Road,,Town,IL,62701,US,,,HIST\n"
        ));
    }
    s
}

fn profile() -> std::path::PathBuf {
    root().join("examples/students.toml")
}

#[test]
fn success_writes_zip_reports_and_exits_0() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    fs::write(&input, rows(5)).unwrap();
    let out = t.path().join("out");
    let o = convert(&profile(), &out, &[&input], &[]);
    assert_status(&o, 0);
    let files: Vec<String> = dir_files(&out).into_keys().collect();
    assert_eq!(
        files,
        [
            "example_users_001.zip",
            "index.csv",
            "rejects.csv",
            "report.html",
            "summary.json",
            "warnings.csv"
        ]
    );
    assert_eq!(user_count(&out), 5);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("5 records read, 5 users written, 0 rejected"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // No personal data on stderr.
    assert!(
        !err.contains("Last1") && !err.contains("example.edu"),
        "{err}"
    );
    assert_xsd_valid(&out);
}

#[test]
fn reject_rate_over_threshold_exits_3_with_output_written() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    let mut data = rows(10);
    data.push_str("S9999999,,,NoLast,,,UG,M,,,,,,,,,,,,\n");
    fs::write(&input, data).unwrap();
    let out = t.path().join("out");
    // 1 of 11 rejected = 9.1 % > 5 %.
    assert_status(&convert(&profile(), &out, &[&input], &[]), 3);
    assert_eq!(user_count(&out), 10);
    let s = summary(&out);
    assert_eq!(s["reject_threshold_exceeded"], true);
    // The same run with a higher threshold succeeds.
    let out2 = t.path().join("out2");
    assert_status(
        &convert(&profile(), &out2, &[&input], &["--max-reject-rate", "10"]),
        0,
    );
}

#[test]
fn profile_errors_exit_2_and_write_nothing() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    fs::write(&input, rows(2)).unwrap();
    let cases = [
        (
            "[input]\n[fields]\nprimary_idd = { column = \"EMPLID\" }\n",
            "primary_idd",
        ),
        (
            "[input]\n[fields]\nprimary_id = { column = \"NOPE\" }\n",
            "NOPE",
        ),
        ("[input]\ndelimiter = \"||\"\n", "delimiter"),
        (
            "[input]\n[fields]\nprimary_id = { column = \"EMPLID\", table = \"t\" }\n",
            "table `t`",
        ),
        ("not toml at all [", "TOML"),
    ];
    for (text, needle) in cases {
        let p = t.path().join("bad.toml");
        fs::write(&p, text).unwrap();
        let out = t.path().join("out");
        let o = convert(&p, &out, &[&input], &[]);
        assert_status(&o, 2);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("error") && err.contains(needle),
            "{needle}: {err}"
        );
        assert!(!out.exists(), "{needle}: output directory created");
    }
    // A missing profile is a usage error too.
    let o = convert(
        &t.path().join("missing.toml"),
        &t.path().join("o"),
        &[&input],
        &[],
    );
    assert_status(&o, 2);
    // And so are bad flags.
    let o = patronload()
        .args(["convert", "--profile", "x"])
        .output()
        .unwrap();
    assert_status(&o, 2);
}

#[test]
fn failure_leaves_the_directory_as_it_was() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    fs::write(&input, rows(3000)).unwrap();
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("keep.txt"), "yesterday").unwrap();
    let before = dir_files(&out);
    // Small parts with a run total that cannot hold them all.
    let o = convert(
        &profile(),
        &out,
        &[&input],
        &[
            "--users-per-file",
            "100",
            "--max-zip-bytes",
            "20KB",
            "--max-total-bytes",
            "30KB",
        ],
    );
    assert_status(&o, 1);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing was published"));
    assert_eq!(
        dir_files(&out),
        before,
        "no temp file or partial zip left behind"
    );
    // A missing input is a run failure (1), also leaving nothing.
    let o = convert(&profile(), &out, &[&t.path().join("nope.csv")], &[]);
    assert_status(&o, 1);
    assert_eq!(dir_files(&out), before);
}

#[test]
fn limits_split_into_parts_and_stale_parts_are_removed() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    fs::write(&input, rows(25)).unwrap();
    let out = t.path().join("out");
    let o = convert(
        &profile(),
        &out,
        &[&input],
        &["--users-per-file", "4", "--files-per-zip", "3"],
    );
    assert_status(&o, 0);
    let s = summary(&out);
    let zips = s["zips"].as_array().unwrap();
    // 25 users, 4 per file = 7 files; 3 files per zip = 3 zips.
    assert_eq!(zips.len(), 3);
    assert_eq!(
        zips[0]["entries"],
        serde_json::json!([
            "example_users_001_01.xml",
            "example_users_001_02.xml",
            "example_users_001_03.xml"
        ])
    );
    assert_eq!(zips[2]["users"], 1);
    assert_eq!(user_count(&out), 25);
    for z in zips {
        let bytes = fs::read(out.join(z["name"].as_str().unwrap())).unwrap();
        assert_eq!(z["bytes"].as_u64().unwrap(), bytes.len() as u64);
        let sha = sha256_hex(&bytes);
        assert_eq!(z["sha256"].as_str().unwrap(), sha);
    }
    // Tonight's run is smaller: yesterday's third zip must not stay for
    // Alma to load again.
    let o = convert(&profile(), &out, &[&input], &["--users-per-file", "20000"]);
    assert_status(&o, 0);
    let names: Vec<String> = dir_files(&out).into_keys().collect();
    assert_eq!(
        names,
        [
            "example_users_001.zip",
            "index.csv",
            "rejects.csv",
            "report.html",
            "summary.json",
            "warnings.csv"
        ]
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("removed stale"));
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn help_documents_exit_statuses() {
    let o = patronload().args(["convert", "--help"]).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Exit status",
        "0  success",
        "3  output written",
        "2  usage",
        "1  any other",
    ] {
        assert!(s.contains(needle), "{needle} missing from --help");
    }
}

#[test]
fn reruns_are_byte_identical() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    fs::write(&input, rows(50)).unwrap();
    let a = t.path().join("a");
    let b = t.path().join("b");
    assert_status(
        &convert(&profile(), &a, &[&input], &["--users-per-file", "7"]),
        0,
    );
    assert_status(
        &convert(&profile(), &b, &[&input], &["--users-per-file", "7"]),
        0,
    );
    assert_eq!(dir_files(&a), dir_files(&b));
}
