//! The bundled example: examples/students.csv with examples/students.toml,
//! checked against the generator's ground truth committed beside it.

use std::path::Path;

use crate::util::*;

/// Compares rejects.csv with a truth file, row by row, and returns the
/// primary ids the truth says are written, in order.
pub fn check_against_truth(out: &Path, truth: &Path, source: &str) -> Vec<String> {
    let mut rdr = csv::Reader::from_path(truth).unwrap();
    let mut expected_rejects = Vec::new();
    let mut written = Vec::new();
    for r in rdr.records() {
        let r = r.unwrap();
        let (line, record, id, outcome, reason) = (&r[0], &r[1], &r[2], &r[3], &r[4]);
        match outcome {
            // A record with the wrong field count reports no primary id:
            // its columns cannot be trusted.
            "rejected" => expected_rejects.push(vec![
                source.to_string(),
                line.to_string(),
                record.to_string(),
                if reason == "field_count" { "" } else { id }.to_string(),
                reason.to_string(),
            ]),
            "written" => written.push(id.to_uppercase()),
            other => panic!("truth outcome {other}"),
        }
    }
    let got: Vec<Vec<String>> = rejects(out)
        .into_iter()
        .map(|r| {
            ["source_file", "line", "record", "primary_id", "reason"]
                .iter()
                .map(|k| r[*k].clone())
                .collect()
        })
        .collect();
    assert_eq!(got.len(), expected_rejects.len(), "number of rejects");
    for (g, e) in got.iter().zip(&expected_rejects) {
        assert_eq!(g, e);
    }
    let s = summary(out);
    assert_eq!(s["users_written"].as_u64().unwrap(), written.len() as u64);
    // The users in the zips are exactly the written records, in input order.
    let ids: Vec<String> = xml_entries(out)
        .iter()
        .flat_map(|(_, t)| {
            t.match_indices("<primary_id>")
                .map(|(i, _)| {
                    let rest = &t[i + "<primary_id>".len()..];
                    rest[..rest.find('<').unwrap()].to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(ids, written);
    written
}

#[test]
fn example_converts_as_the_truth_file_says() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    // Relative paths as in the README, so source_file reads the same.
    let o = patronload()
        .current_dir(root())
        .args(["convert", "--profile", "examples/students.toml", "--out"])
        .arg(&out)
        .args(["--as-of", "2026-11-24", "examples/students.csv"])
        .output()
        .unwrap();
    assert_status(&o, 0);
    check_against_truth(
        &out,
        &root().join("examples/students.truth.csv"),
        "examples/students.csv",
    );
    assert_xsd_valid(&out);
    let s = summary(&out);
    // Every reason the example was built to show.
    for r in [
        "duplicate_id",
        "field_count",
        "invalid_date",
        "missing_field",
        "unknown_code",
    ] {
        assert!(s["rejected_by_reason"][r].as_u64().unwrap() > 0, "{r}");
    }
    assert!(s["unknown_codes"]["campus_code"].as_object().unwrap().len() > 1);
    assert_eq!(s["dropped_segments"]["identifier_repeated_in_user"], 1);
    // The message of a duplicate names the type and the earlier line.
    let dup = rejects(&out)
        .into_iter()
        .find(|r| r["reason"] == "duplicate_id")
        .unwrap();
    assert!(
        dup["message"].contains("identifier of type"),
        "{}",
        dup["message"]
    );
    assert!(
        dup["message"].contains("record at line "),
        "{}",
        dup["message"]
    );
    // No personal data in the reports: no name or email of the extract.
    let report = std::fs::read_to_string(out.join("rejects.csv")).unwrap()
        + &std::fs::read_to_string(out.join("summary.json")).unwrap();
    assert!(!report.contains('@'));
    for name in ["Fairholt", "Eastwick", "Jessup"] {
        assert!(!report.contains(name));
    }
}

/// `summary.json` carries what monitoring needs (issue 17): the tool's
/// version, the profile's and each input's SHA-256 and size, and under
/// `run` the start time, the stages' durations and the exit status the run
/// ends with (3 here: the reject rate is held to 1 %).
#[test]
fn summary_has_the_monitoring_fields() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let o = patronload()
        .current_dir(root())
        .args(["convert", "--profile", "examples/students.toml", "--out"])
        .arg(&out)
        .args(["--as-of", "2026-11-24", "--max-reject-rate", "1"])
        .arg("examples/students.csv")
        .output()
        .unwrap();
    assert_status(&o, 3);
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["tool_version"], env!("CARGO_PKG_VERSION"));
    let input = std::fs::read(root().join("examples/students.csv")).unwrap();
    assert_eq!(s["inputs"][0]["size"].as_u64(), Some(input.len() as u64));
    let sha = |b: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(b)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    assert_eq!(
        s["inputs"][0]["sha256"].as_str(),
        Some(sha(&input).as_str())
    );
    let profile = std::fs::read(root().join("examples/students.toml")).unwrap();
    assert_eq!(s["profile_sha256"].as_str(), Some(sha(&profile).as_str()));
    let run = &s["run"];
    assert_eq!(run["exit_status"], 3);
    let started = run["started_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "{started}"
    );
    let stages: Vec<&str> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            assert!(st["seconds"].as_f64().unwrap() >= 0.0);
            st["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(stages, ["convert", "reports"]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"timings\">"));
}
