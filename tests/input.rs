//! Real-world extract shapes, end to end, against golden files: a
//! Windows-1252 CRLF extract, UTF-16LE with a byte-order mark, every
//! broken-row kind, and SIF fixed-width records with address segments.
//!
//! Each case converts `tests/data/input/<input>` with its profile, checks
//! the exit status, validates every XML against the XSD (skipped without
//! ../shared), compares the users' XML and `rejects.csv` (less the path
//! column) with `<case>.expected.xml` and `<case>.rejects.csv`, and checks
//! that the parallel engine with tiny shards writes the same bytes. Set
//! `PATRONLOAD_UPDATE_GOLDEN=1` to rewrite the golden files after a
//! deliberate change, and review the diff.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::util::*;

fn data(name: &str) -> PathBuf {
    root().join("tests/data/input").join(name)
}

/// `rejects.csv` without the `source_file` column, as CSV text.
fn rejects_text(out: &Path) -> String {
    let mut r = csv::Reader::from_path(out.join("rejects.csv")).unwrap();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(r.headers().unwrap().iter().skip(1)).unwrap();
    for row in r.records() {
        let row = row.unwrap();
        w.write_record(row.iter().skip(1)).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = data(name);
    if std::env::var_os("PATRONLOAD_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (PATRONLOAD_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output:\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

/// Converts `input` with `profile`; checks status, XSD, golden files and
/// engine sameness; returns the summary.
fn case(case: &str, profile: &Path, input: &str, status: i32) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = convert(profile, &out, &[data(input).as_path()], &["--reference"]);
    assert_status(&o, status);
    assert_xsd_valid(&out);
    let xml: String = xml_entries(&out).into_iter().map(|(_, t)| t).collect();
    golden(&format!("{case}.expected.xml"), &xml);
    golden(&format!("{case}.rejects.csv"), &rejects_text(&out));
    let par = tmp.path().join("par");
    let o = convert(
        profile,
        &par,
        &[data(input).as_path()],
        &["--threads", "3", "--shard-bytes", "7"],
    );
    assert_status(&o, status);
    assert_eq!(dir_files(&out), dir_files(&par), "parallel engine differs");
    let s = summary(&out);
    assert_eq!(
        s["records_read"].as_u64().unwrap(),
        s["users_written"].as_u64().unwrap() + s["rejected"].as_u64().unwrap()
    );
    // Every physical line has one outcome, counted independently here.
    let mut text = std::fs::read(data(input)).unwrap();
    if let Some(utf16) = text.strip_prefix(b"\xFF\xFE") {
        let units: Vec<u16> = utf16
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        text = String::from_utf16_lossy(&units).into_bytes();
    }
    let l = &s["lines_read"];
    let n = |k: &str| l[k].as_u64().unwrap();
    assert_eq!(n("total"), physical_lines(&text), "{l}");
    assert_eq!(
        n("total"),
        n("header") + n("blank") + n("written") + n("rejected") + n("superseded")
    );
    s
}

#[test]
fn windows_1252_crlf() {
    let s = case("win1252", &data("win1252.toml"), "win1252_crlf.csv", 3);
    assert_eq!(s["records_read"], 5);
    assert_eq!(s["rejected_by_reason"], json!({ "unknown_code": 1 }));
    // The control character in "€uro\x01" is removed and counted.
    assert_eq!(s["forbidden_chars_removed"], 1);
}

#[test]
fn utf16le_with_bom_read_by_auto() {
    let s = case("utf16", &data("utf16.toml"), "utf16le_bom.csv", 3);
    assert_eq!(s["records_read"], 4);
    // The lone surrogate rejects its record, with its line and column.
    assert_eq!(s["rejected_by_reason"], json!({ "invalid_encoding": 1 }));
}

#[test]
fn every_broken_row_kind_has_its_reason() {
    let s = case("broken", &data("broken.toml"), "broken_rows.csv", 3);
    assert_eq!(
        s["rejected_by_reason"],
        json!({
            "field_count": 2, "header_row": 1, "nul_byte": 1, "invalid_encoding": 1,
            "unbalanced_quote": 1, "field_too_long": 1, "record_too_long": 1
        })
    );
    assert_eq!(s["blank_lines"], 3);
    assert_eq!(s["forbidden_chars_removed"], 1);
}

#[test]
fn sif_fixed_width_with_address_segments() {
    let profile = root().join("examples/peer/sif.toml");
    let s = case("sif", &profile, "sif_sample.sif", 3);
    assert_eq!(s["records_read"], 5);
    assert_eq!(s["users_written"], 2);
    // Segment 2 (the e-mail) is not mapped as an address, so nothing is
    // dropped; the record with text past the layout is rejected.
    assert_eq!(s["dropped_segments"], json!({}));
    assert_eq!(
        s["rejected_by_reason"],
        json!({ "field_count": 1, "invalid_date": 1, "missing_field": 1 })
    );
}

#[test]
fn side_files_join_barcodes_by_key_and_one_expiry_date_for_all() {
    let s = case("sif_side", &data("sif_side.toml"), "sif_sample.sif", 3);
    assert_eq!(s["users_written"], 4);
    assert_eq!(s["rejected_by_reason"], json!({ "field_count": 1 }));
}

#[test]
fn legacy_bytes_under_utf8_are_refused_by_auto_with_a_suggestion() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("p.toml");
    let text = std::fs::read_to_string(data("win1252.toml"))
        .unwrap()
        .replace("encoding = \"windows-1252\"", "encoding = \"auto\"");
    std::fs::write(&profile, text).unwrap();
    let out = tmp.path().join("out");
    let o = convert(&profile, &out, &[data("win1252_crlf.csv").as_path()], &[]);
    assert_status(&o, 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(err.contains("line 2, column 8"), "{err}");
    assert!(err.contains("windows-1252"), "{err}");
    assert!(!out.exists());
}

#[test]
fn invalid_bytes_replaced_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("p.toml");
    let text = std::fs::read_to_string(data("broken.toml"))
        .unwrap()
        .replace("[input]", "[input]\ninvalid_bytes = \"replace\"");
    std::fs::write(&profile, text).unwrap();
    let out = tmp.path().join("out");
    let o = convert(&profile, &out, &[data("broken_rows.csv").as_path()], &[]);
    assert_status(&o, 3);
    let s = summary(&out);
    assert_eq!(s["invalid_bytes_replaced"], 1);
    assert_eq!(s["invalid_bytes_first"][0]["line"], 8);
    assert_eq!(s["invalid_bytes_first"][0]["column"], 9);
    assert!(s["invalid_bytes_first"][0]["path"]
        .as_str()
        .unwrap()
        .ends_with("broken_rows.csv"));
    let xml: String = xml_entries(&out).into_iter().map(|(_, t)| t).collect();
    assert!(
        xml.contains("<last_name>Eps\u{FFFD}ilon</last_name>"),
        "{xml}"
    );
}
