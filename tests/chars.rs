//! Issue 11's character, date, encoding and header cases, end to end
//! through the binary, against the regression files in `tests/data/chars/`
//! with their exact expected outcomes.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::util::*;

fn data(name: &str) -> PathBuf {
    root().join("tests/data/chars").join(name)
}

/// `profile` with `from` replaced by `to`, written into `dir`.
fn variant(dir: &Path, profile: &str, from: &str, to: &str) -> PathBuf {
    let text = fs::read_to_string(data(profile)).unwrap();
    assert!(text.contains(from), "{from} not in {profile}");
    let p = dir.join(profile);
    fs::write(&p, text.replacen(from, to, 1)).unwrap();
    p
}

fn all_xml(out: &Path) -> String {
    xml_entries(out).into_iter().map(|(_, t)| t).collect()
}

/// The rows of a report csv without the source_file and last_line
/// columns: every record of these fixtures is one line, which is checked.
fn rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().clone();
    assert_eq!((&header[1], &header[2]), ("line", "last_line"), "{path:?}");
    r.records()
        .map(|row| {
            let row = row.unwrap();
            assert_eq!(row[1], row[2], "a one-line record: {row:?}");
            row.iter()
                .enumerate()
                .filter(|&(i, _)| i != 0 && i != 2)
                .map(|(_, f)| f.to_string())
                .collect()
        })
        .collect()
}

/// Every character in the XML is one the tool may write: no C0 control
/// but tab and line ends, no DEL, no C1 control.
fn assert_no_controls(xml: &str) {
    let bad: Vec<char> = xml
        .chars()
        .filter(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    assert!(bad.is_empty(), "controls in the XML: {bad:?}");
}

#[test]
fn c1_controls_and_del_never_reach_the_xml() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = convert(&data("chars.toml"), &out, &[&data("c1_1252.csv")], &[]);
    assert_status(&o, 0);
    assert_xsd_valid(&out);
    let xml = all_xml(&out);
    assert_no_controls(&xml);
    assert!(xml.contains("<first_name>Björn</first_name>"), "{xml}");
    assert!(xml.contains("<first_name>Ann</first_name>"), "{xml}");
    assert!(xml.contains("<first_name>Zoë</first_name>"), "{xml}");
    assert!(xml.contains("<last_name>ONeil</last_name>"), "{xml}");
    let s = summary(&out);
    assert_eq!(s["users_written"], 4);
    // 0x8D, DEL, 0x81 and 0x9D: removed and counted.
    assert_eq!(s["forbidden_chars_removed"], 4);
    assert_eq!(s["invalid_bytes_replaced"], 0);

    // forbidden_chars = "replace" marks where each was.
    let p = variant(
        t.path(),
        "chars.toml",
        "[input]",
        "[input]\nforbidden_chars = \"replace\"",
    );
    let out = t.path().join("replaced");
    assert_status(&convert(&p, &out, &[&data("c1_1252.csv")], &[]), 0);
    assert_xsd_valid(&out);
    let xml = all_xml(&out);
    assert_no_controls(&xml);
    assert!(
        xml.contains("<first_name>Bj\u{FFFD}örn</first_name>"),
        "{xml}"
    );
    assert_eq!(summary(&out)["forbidden_chars_replaced"], 4);
}

#[test]
fn strict_windows_1252_counts_undefined_bytes_as_invalid() {
    let t = tempfile::tempdir().unwrap();
    let strict = "encoding = \"windows-1252-strict\"";
    let replace = variant(
        t.path(),
        "chars.toml",
        "encoding = \"windows-1252\"",
        &format!("{strict}\ninvalid_bytes = \"replace\""),
    );
    let out = t.path().join("replace");
    let o = convert(&replace, &out, &[&data("c1_1252.csv")], &[]);
    assert_status(&o, 0);
    assert_xsd_valid(&out);
    let xml = all_xml(&out);
    assert_no_controls(&xml);
    assert!(
        xml.contains("<first_name>Bj\u{FFFD}örn</first_name>"),
        "{xml}"
    );
    assert!(
        xml.contains("<last_name>O\u{FFFD}Neil\u{FFFD}</last_name>"),
        "{xml}"
    );
    let s = summary(&out);
    assert_eq!(s["invalid_bytes_replaced"], 3);
    // Only DEL is left for the forbidden-character policy.
    assert_eq!(s["forbidden_chars_removed"], 1);
    let first: Vec<(u64, u64)> = s["invalid_bytes_first"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["column"].as_u64().unwrap()))
        .collect();
    assert_eq!(first, [(2, 6), (4, 9)]);
    // A declared windows-1252 file is what it says: no suspicion.
    assert!(s.get("encoding_suspect").is_none());

    // With the default invalid_bytes = "reject" the two records go.
    let p = variant(
        t.path(),
        "chars.toml",
        "encoding = \"windows-1252\"",
        strict,
    );
    let out = t.path().join("reject");
    let o = convert(
        &p,
        &out,
        &[&data("c1_1252.csv")],
        &["--max-reject-rate", "50"],
    );
    assert_status(&o, 0);
    let s = summary(&out);
    assert_eq!(s["users_written"], 2);
    assert_eq!(s["rejected_by_reason"], json!({ "invalid_encoding": 2 }));
    let r = rows(&out.join("rejects.csv"));
    assert_eq!(r.len(), 2);
    assert_eq!((r[0][0].as_str(), r[0][2].as_str()), ("2", "C1"));
    assert!(r[0][5].contains("line 2, column 6"), "{:?}", r[0]);
    assert!(r[0][5].contains("windows-1252 (strict)"), "{:?}", r[0]);
    assert_eq!((r[1][0].as_str(), r[1][2].as_str()), ("4", "C3"));
}

#[test]
fn dates_try_every_format_place_two_digit_years_and_drop_optional_ones() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = convert(
        &data("dates.toml"),
        &out,
        &[&data("dates.csv")],
        &["--max-reject-rate", "50"],
    );
    assert_status(&o, 0);
    assert_xsd_valid(&out);
    let xml = all_xml(&out);
    let user = |id: &str| -> String {
        let at = xml.find(&format!("<primary_id>{id}</primary_id>")).unwrap();
        let end = xml[at..].find("</user>").unwrap();
        xml[at..at + end].to_string()
    };
    // 9/19/95 is year 95 under %m/%d/%Y: the next format gives 1995.
    assert!(user("D1").contains("<birth_date>1995-09-19Z</birth_date>"));
    // An expiry's two-digit year lies in the decades around --as-of.
    assert!(user("D1").contains("<expiry_date>2027-06-30Z</expiry_date>"));
    assert!(user("D1").contains("<purge_date>2028-06-30Z</purge_date>"));
    // Birth dates are never in the future.
    assert!(user("D2").contains("<birth_date>1954-02-15Z</birth_date>"));
    assert!(user("D5").contains("<birth_date>1926-12-25Z</birth_date>"));
    // Unreadable birth dates are left out; the patrons are written.
    assert!(!user("D3").contains("birth_date"), "{}", user("D3"));
    assert!(!user("D6").contains("birth_date"), "{}", user("D6"));
    assert!(user("D3").contains("<expiry_date>2027-06-30Z</expiry_date>"));

    let s = summary(&out);
    assert_eq!(s["records_read"], 6);
    assert_eq!(s["users_written"], 5);
    assert_eq!(s["rejected_by_reason"], json!({ "invalid_date": 1 }));
    assert_eq!(s["dropped_fields"], json!({ "birth_date": 2 }));
    assert_eq!(s["warnings"], 2);

    // The expiry date drives the patron's access: still a reject, and
    // its message quotes the value and what each format made of it.
    let r = rows(&out.join("rejects.csv"));
    assert_eq!(r.len(), 1);
    assert_eq!(&r[0][..5], ["5", "4", "D4", "invalid_date", "expiry_date"]);
    assert_eq!(
        r[0][5],
        "expiry_date `31/12/2027` is not a date in any of the formats (%m/%d/%Y: a month or \
         day is out of range; %m/%d/%y: a month or day is out of range)"
    );

    // warnings.csv: one row per dropped field, never the birth date itself.
    let w = rows(&out.join("warnings.csv"));
    assert_eq!(w.len(), 2);
    assert_eq!(&w[0][..5], ["4", "3", "D3", "invalid_date", "birth_date"]);
    assert_eq!(&w[1][..5], ["7", "6", "D6", "invalid_date", "birth_date"]);
    for row in &w {
        let m = &row[5];
        assert!(m.contains("%m/%d/%Y:") && m.contains("%m/%d/%y:"), "{m}");
        assert!(m.contains("left out"), "{m}");
        assert!(
            !m.contains("1990") && !m.contains("1980") && !m.contains("13/45"),
            "{m}"
        );
    }
    let header = fs::read_to_string(out.join("warnings.csv")).unwrap();
    assert!(header.starts_with("source_file,line,last_line,record,primary_id,code,field,message\n"));

    // The parallel engine with tiny shards writes the same reports.
    let par = t.path().join("par");
    let o = convert(
        &data("dates.toml"),
        &par,
        &[&data("dates.csv")],
        &[
            "--max-reject-rate",
            "50",
            "--threads",
            "3",
            "--shard-bytes",
            "7",
        ],
    );
    assert_status(&o, 0);
    assert_eq!(dir_files(&out), dir_files(&par));
}

#[test]
fn a_mandatory_or_rule_driving_birth_date_still_rejects() {
    let t = tempfile::tempdir().unwrap();
    let mandatory = variant(
        t.path(),
        "dates.toml",
        "[rules]",
        "[rules]\nmandatory = [\"primary_id\", \"last_name\", \"user_group\", \"expiry_date\", \"birth_date\"]",
    );
    let keyed = t.path().join("keyed.toml");
    fs::write(
        &keyed,
        fs::read_to_string(data("dates.toml"))
            .unwrap()
            .replace("expiry_date+1y", "birth_date+100y"),
    )
    .unwrap();
    for p in [mandatory, keyed] {
        let out = t.path().join(p.file_stem().unwrap());
        let o = convert(
            &p,
            &out,
            &[&data("dates.csv")],
            &["--max-reject-rate", "60"],
        );
        assert_status(&o, 0);
        let s = summary(&out);
        assert_eq!(
            s["rejected_by_reason"],
            json!({ "invalid_date": 3 }),
            "{p:?}"
        );
        assert_eq!(s["dropped_fields"], json!({}));
        let r = rows(&out.join("rejects.csv"));
        let at: Vec<(&str, &str)> = r.iter().map(|r| (r[0].as_str(), r[4].as_str())).collect();
        assert_eq!(
            at,
            [
                ("4", "birth_date"),
                ("5", "expiry_date"),
                ("7", "birth_date")
            ]
        );
        assert!(!r[0][5].contains("13/45"), "{}", r[0][5]);
        assert!(rows(&out.join("warnings.csv")).is_empty());
    }
}

#[test]
fn two_digit_year_is_a_per_field_setting() {
    let t = tempfile::tempdir().unwrap();
    // Expiry dates read with a window reaching 10 years ahead: 6/30/27
    // is still 2027; birth dates told to use a 0-year window behave like
    // "past" by year only (12/25/26 becomes 2026-12-25).
    let p = variant(
        t.path(),
        "dates.toml",
        "birth_date = { column = \"BIRTH\" }",
        "birth_date = { column = \"BIRTH\", two_digit_year = 0 }",
    );
    let out = t.path().join("out");
    assert_status(
        &convert(
            &p,
            &out,
            &[&data("dates.csv")],
            &["--max-reject-rate", "50"],
        ),
        0,
    );
    let xml = all_xml(&out);
    assert!(
        xml.contains("<birth_date>2026-12-25Z</birth_date>"),
        "{xml}"
    );
    assert!(
        xml.contains("<birth_date>1954-02-15Z</birth_date>"),
        "{xml}"
    );
    // A bad setting is a profile error naming the field.
    let bad = variant(
        t.path(),
        "dates.toml",
        "birth_date = { column = \"BIRTH\" }",
        "birth_date = { column = \"BIRTH\", two_digit_year = \"future\" }",
    );
    let o = convert(&bad, &t.path().join("bad"), &[&data("dates.csv")], &[]);
    assert_status(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("birth_date") && err.contains("two_digit_year"),
        "{err}"
    );
}

#[test]
fn a_utf8_extract_that_is_really_ansi_exits_3_whatever_the_reject_rate() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = convert(&data("ansi.toml"), &out, &[&data("ansi.csv")], &[]);
    // 1 of 40 rejected: 2.5 %, under the 5 % threshold, yet exit 3.
    assert_status(&o, 3);
    let s = summary(&out);
    assert_eq!(s["reject_threshold_exceeded"], false);
    assert_eq!(s["rejected_by_reason"], json!({ "invalid_encoding": 1 }));
    let suspect = &s["encoding_suspect"];
    assert_eq!(suspect.as_array().unwrap().len(), 1);
    assert!(suspect[0]["path"].as_str().unwrap().ends_with("ansi.csv"));
    assert_eq!(suspect[0]["declared"], "utf-8");
    assert_eq!(suspect[0]["looks_like"], "windows-1252");
    assert_eq!(suspect[0]["invalid_records"], 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is declared utf-8 but is not"), "{err}");
    assert!(err.contains("encoding = \"windows-1252\""), "{err}");
    // Even --quiet says so.
    let o = convert(
        &data("ansi.toml"),
        &t.path().join("quiet"),
        &[&data("ansi.csv")],
        &["--quiet"],
    );
    assert_status(&o, 3);
    assert!(String::from_utf8_lossy(&o.stderr).contains("windows-1252"));

    // Keeping the records with U+FFFD does not hide it either.
    let p = variant(
        t.path(),
        "ansi.toml",
        "[input]",
        "[input]\ninvalid_bytes = \"replace\"",
    );
    let out = t.path().join("replace");
    assert_status(&convert(&p, &out, &[&data("ansi.csv")], &[]), 3);
    let s = summary(&out);
    assert_eq!(s["rejected"], 0);
    assert_eq!(s["encoding_suspect"][0]["invalid_records"], 1);

    // Declared right, the same file is clean: exit 0, no suspicion.
    let p = variant(
        t.path(),
        "ansi.toml",
        "[input]",
        "[input]\nencoding = \"windows-1252\"",
    );
    let out = t.path().join("right");
    assert_status(&convert(&p, &out, &[&data("ansi.csv")], &[]), 0);
    assert!(summary(&out).get("encoding_suspect").is_none());
    assert!(all_xml(&out).contains("<first_name>Renée</first_name>"));
}

/// Whether every character of `s` is printable (line ends aside).
fn printable(s: &str) -> bool {
    s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t')
}

#[test]
fn a_binary_file_is_an_input_error_with_a_short_printable_message() {
    let t = tempfile::tempdir().unwrap();
    let mut inputs = vec![data("binary.bin")];
    if Path::new("/bin/ls").exists() {
        inputs.push(PathBuf::from("/bin/ls"));
    }
    for input in inputs {
        let out = t.path().join("out");
        let o = convert(&data("dates.toml"), &out, &[&input], &[]);
        assert_status(&o, 1);
        let err = String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8");
        assert!(printable(&err), "{err:?}");
        assert!(err.len() < 600, "{} bytes: {err}", err.len());
        assert!(
            err.contains("not the header row of a text extract"),
            "{err}"
        );
        assert!(!err.contains("profile error"), "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn a_10_mb_header_line_gives_a_short_message() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("long.csv");
    let mut text = "A".repeat(10 << 20);
    text.push_str("\nD1,Alpha,,06/30/2027\n");
    fs::write(&input, text).unwrap();
    let o = convert(&data("dates.toml"), &t.path().join("out"), &[&input], &[]);
    assert_status(&o, 1);
    let err = String::from_utf8_lossy(&o.stderr);
    let first = err.lines().next().unwrap();
    assert!(first.len() < 300, "{} bytes: {first}", first.len());
    assert!(first.contains("max_record_bytes"), "{first}");

    // A wide header under the size limit without the profile's column:
    // a profile error, but the column list it quotes is cut short.
    let cols: Vec<String> = (0..4000).map(|i| format!("COLUMN_{i}")).collect();
    fs::write(&input, format!("{}\nx\n", cols.join(","))).unwrap();
    let o = convert(&data("dates.toml"), &t.path().join("out"), &[&input], &[]);
    assert_status(&o, 2);
    let err = String::from_utf8_lossy(&o.stderr);
    let first = err.lines().next().unwrap();
    assert!(first.len() < 500, "{} bytes: {first}", first.len());
    assert!(first.contains("more characters"), "{first}");
}

#[test]
fn check_flags_c1_controls_and_del_and_repack_removes_them() {
    let t = tempfile::tempdir().unwrap();
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user>\n    \
               <primary_id>P1</primary_id>\n    <first_name>Bj\u{8D}örn</first_name>\n    \
               <last_name>Lee\u{7F}</last_name>\n    <user_group>UNDERGRAD</user_group>\n  \
               </user>\n</users>\n";
    let file = t.path().join("c1.xml");
    fs::write(&file, xml).unwrap();
    let o = patronload()
        .args(["check", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_status(&o, 3);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["findings_by_code"], json!({ "forbidden_char": 2 }));
    let out = t.path().join("out");
    let o = patronload()
        .args(["repack", "--as-of", "2026-11-24", "--out"])
        .arg(&out)
        .arg(&file)
        .output()
        .unwrap();
    assert_status(&o, 0);
    assert_eq!(summary(&out)["forbidden_chars_removed"], 2);
    let repacked = all_xml(&out);
    assert_no_controls(&repacked);
    assert!(
        repacked.contains("<first_name>Björn</first_name>"),
        "{repacked}"
    );
    assert_xsd_valid(&out);
}

#[test]
fn a_job_lists_dropped_fields_in_warnings_csv() {
    let t = tempfile::tempdir().unwrap();
    // The job's student extract, with one unreadable birth date.
    let mut r = csv::Reader::from_path(root().join("examples/job/students.csv")).unwrap();
    let header = r.headers().unwrap().clone();
    let at = header.iter().position(|h| h == "BIRTH_DATE").unwrap();
    let mut w = csv::Writer::from_path(t.path().join("students.csv")).unwrap();
    w.write_record(&header).unwrap();
    for (i, row) in r.records().enumerate() {
        let mut row: Vec<String> = row.unwrap().iter().map(str::to_string).collect();
        if i == 1 {
            row[at] = "13/45/1990".into();
        }
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let job = |students: &Path| {
        format!(
            "[output]\nprefix = \"example_users\"\n[people]\nmatch_on = \"primary_id\"\n\
             [[source]]\nname = \"students\"\nprofile = {:?}\ninputs = [{:?}]\n",
            root().join("examples/students.toml"),
            students
        )
    };
    let run = |name: &str, students: &Path| {
        let job_file = t.path().join(format!("{name}.toml"));
        fs::write(&job_file, job(students)).unwrap();
        let out = t.path().join(name);
        let o = patronload()
            .arg("convert")
            .arg("--job")
            .arg(&job_file)
            .arg("--out")
            .arg(&out)
            .args(["--as-of", "2026-11-24"])
            .output()
            .unwrap();
        (o.status.code(), out)
    };
    let (clean_status, clean) = run("clean", &root().join("examples/job/students.csv"));
    let (status, out) = run("damaged", &t.path().join("students.csv"));
    assert_eq!(status, clean_status);
    let (a, b) = (summary(&clean), summary(&out));
    assert_eq!(a["users_written"], b["users_written"]);
    assert_eq!(a["dropped_fields"], json!({}));
    assert_eq!(b["dropped_fields"], json!({ "birth_date": 1 }));
    let warned = rows(&out.join("warnings.csv"));
    assert_eq!(warned.len(), 1);
    assert_eq!(
        &warned[0][..5],
        ["3", "2", "S0000102", "invalid_date", "birth_date"]
    );
    assert!(rows(&clean.join("warnings.csv")).is_empty());
}
