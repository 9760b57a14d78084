//! Profiles for the public peer samples in ../shared/reference.
//!
//! Each test runs one profile of examples/peer/ on its sample under
//! ../shared/reference/peer-samples/ and checks what examples/peer/README.md
//! says about it: exit status, counts, rejects and a few values in the XML.
//! Skipped, saying so (`SKIPPED (no ../shared)` in the test output), when
//! ../shared is absent; failed under CI.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::util::*;

/// The outcome of one peer-sample run: the output directory (kept alive by
/// the temporary directory), its summary and all its XML, concatenated.
struct Run {
    _tmp: TempDir,
    out: PathBuf,
    summary: Value,
    xml: String,
}

impl Run {
    /// The `<user>` element whose primary id is `id`.
    fn user(&self, id: &str) -> &str {
        let at = self
            .xml
            .find(&format!("<primary_id>{id}</primary_id>"))
            .unwrap_or_else(|| panic!("no user {id} in the output"));
        let start = self.xml[..at].rfind("<user>").unwrap();
        let end = at + self.xml[at..].find("</user>").unwrap() + "</user>".len();
        &self.xml[start..end]
    }

    /// The primary ids of the written users, in output order.
    fn ids(&self) -> Vec<&str> {
        self.xml
            .split("<primary_id>")
            .skip(1)
            .map(|s| &s[..s.find('<').unwrap()])
            .collect()
    }

    /// rejects.csv as (line, record, primary_id, reason, field) rows.
    fn rejects(&self) -> Vec<[String; 5]> {
        rejects(&self.out)
            .into_iter()
            .map(|r| ["line", "record", "primary_id", "reason", "field"].map(|k| r[k].clone()))
            .collect()
    }

    /// records_read, users_written, rejected.
    fn counts(&self) -> [u64; 3] {
        ["records_read", "users_written", "rejected"].map(|k| self.summary[k].as_u64().unwrap())
    }
}

/// Runs examples/peer/`profile`.toml on `sample` (relative to
/// ../shared/reference/peer-samples) with `--as-of 2026-11-24`, checks the
/// exit status and that every XML validates against rest_users.xsd.
/// `None` (with a message) when ../shared is absent.
fn run_peer(profile: &str, sample: &str, status: i32) -> Option<Run> {
    // Absent: reference() says SKIPPED (or fails under CI).
    let reference = reference()?;
    let input = reference.join("peer-samples").join(sample);
    assert!(input.exists(), "missing peer sample {}", input.display());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let profile_path = root().join(format!("examples/peer/{profile}.toml"));
    let o = convert(&profile_path, &out, &[input.as_path()], &[]);
    assert_status(&o, status);
    assert_xsd_valid(&out);
    let summary = summary(&out);
    let xml = xml_entries(&out)
        .into_iter()
        .map(|(_, t)| t)
        .collect::<String>();
    assert_eq!(
        user_count(&out) as u64,
        summary["users_written"].as_u64().unwrap()
    );
    Some(Run {
        _tmp: tmp,
        out,
        summary,
        xml,
    })
}

fn row(line: &str, record: &str, id: &str, reason: &str, field: &str) -> [String; 5] {
    [line, record, id, reason, field].map(String::from)
}

fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

#[test]
fn peer_csv_to_xml_rejects_the_shared_secondary_id() {
    let Some(r) = run_peer(
        "csv-to-xml",
        "alma-user-integration-csv-to-xml/data/sample.csv",
        3,
    ) else {
        return;
    };
    assert_eq!(r.counts(), [3, 1, 2]);
    assert_eq!(
        r.summary["rejected_by_reason"],
        json!({ "duplicate_id": 2 })
    );
    assert_eq!(r.summary["duplicate_identifiers"], json!(2));
    assert_eq!(r.summary["reject_threshold_exceeded"], json!(true));
    assert_eq!(
        r.rejects(),
        [
            row("2", "2", "819876543", "duplicate_id", "OTHER_ID_1"),
            row("3", "3", "811223344", "duplicate_id", "OTHER_ID_1"),
        ]
    );
    for m in rejects(&r.out) {
        assert_contains(&m["message"], "already taken by the record at line 1");
    }
    assert_eq!(r.ids(), ["812345678"]);
    let u = r.user("812345678");
    for s in [
        "<user_group>STUDENT</user_group>",
        "<expiry_date>2027-11-24Z</expiry_date>",
        "<purge_date>2028-11-24Z</purge_date>",
        // "United States" through the countries table.
        "<country>USA</country>",
        // The quoted field with a comma stays one field.
        "<line2>Dorm A, Floor 99</line2>",
        "<id_type>OTHER_ID_1</id_type>\n        <value>12345812345678</value>",
    ] {
        assert_contains(u, s);
    }
}

#[test]
fn peer_lib_jobs_reads_bom_and_crlf() {
    let Some(r) = run_peer(
        "lib_jobs",
        "lib_jobs/spec/fixtures/alma_users_future_exp_no_netid_test.csv",
        0,
    ) else {
        return;
    };
    assert_eq!(r.counts(), [1, 1, 0]);
    assert_eq!(r.summary["rejected_by_reason"], json!({}));
    assert_eq!(r.summary["dropped_segments"], json!({}));
    assert_eq!(r.summary["users_by_group"], json!({ "SENR": 1 }));
    assert!(r.rejects().is_empty());
    // primary_id is the first column, right after the byte-order mark, and
    // the last column (purge_date) is before the CR: both read cleanly.
    let u = r.user("/1/243166d");
    for s in [
        "<user_group>SENR</user_group>",
        "<expiry_date>2014-01-31Z</expiry_date>",
        "<purge_date>2014-01-31Z</purge_date>",
        "<id_type>BARCODE</id_type>\n        <value>999111000</value>",
        "<id_type>NET_ID</id_type>\n        <value>lehs</value>",
    ] {
        assert_contains(u, s);
    }
    assert!(!u.contains("<user_title>"), "{u}");
    assert!(!r.xml.contains('\r') && !r.xml.contains('\u{feff}'));
}

#[test]
fn peer_millennium_defaults_blank_level_to_special() {
    let Some(r) = run_peer("millennium", "millennium_patron_import/data/test.csv", 0) else {
        return;
    };
    assert_eq!(r.counts(), [6, 6, 0]);
    assert_eq!(r.summary["rejected_by_reason"], json!({}));
    assert_eq!(r.summary["unknown_codes"], json!({}));
    assert_eq!(
        r.summary["users_by_group"],
        json!({ "GRAD": 3, "SPECIAL": 1, "UNDERGRAD": 2 })
    );
    assert!(r.rejects().is_empty());
    // Blank Academic Level: the field's default is the Alma group itself,
    // and the SPECIAL by_group expiry rule applies to it.
    let special = r.user("9994571");
    assert_contains(special, "<user_group>SPECIAL</user_group>");
    assert_contains(special, "<expiry_date>2027-02-24Z</expiry_date>");
    assert_contains(special, "<purge_date>2028-02-24Z</purge_date>");
    let grad = r.user("9994567");
    assert_contains(grad, "<user_group>GRAD</user_group>");
    assert_contains(grad, "<expiry_date>2027-05-24Z</expiry_date>");
    assert_contains(grad, "<statistic_category>MARC3.MARC</statistic_category>");
    // No email: no contact_info at all. No program: no statistic.
    assert!(!r.user("9994570").contains("<contact_info>"));
    assert!(!r.user("9994572").contains("<user_statistics>"));
    assert_contains(
        r.user("9994572"),
        "<email_address>blergnotarealemaildontuse@yahoo.com</email_address>",
    );
}

#[test]
fn peer_migration_tools_loads_both_renamed_emails() {
    let Some(r) = run_peer(
        "migration-tools",
        "migration-tools/patron_loader/sample.csv",
        0,
    ) else {
        return;
    };
    assert_eq!(r.counts(), [2, 2, 0]);
    assert_eq!(r.summary["rejected_by_reason"], json!({}));
    assert_eq!(
        r.summary["dropped_segments"],
        json!({ "identifier_repeated_in_user": 2 })
    );
    assert_eq!(
        r.summary["users_by_group"],
        json!({ "PATRON": 1, "STUDENT": 1 })
    );
    assert!(r.rejects().is_empty());
    assert_eq!(r.ids(), ["77", "99"]);
    let u = r.user("77");
    // Both `email` columns, renamed by [input] columns: the first preferred.
    assert_contains(
        u,
        "<email preferred=\"true\" segment_type=\"External\">\n          \
         <email_address>really@fake.email</email_address>",
    );
    assert_contains(
        u,
        "<email preferred=\"false\" segment_type=\"External\">\n          \
         <email_address>me@whoville.seuss</email_address>",
    );
    assert_eq!(u.matches("<email preferred=").count(), 2);
    assert_eq!(u.matches("preferred=\"true\"").count(), 3, "{u}"); // address, email, phone
    assert_contains(u, "<birth_date>1900-07-18Z</birth_date>");
    assert_contains(u, "<campus_code>SOUTH</campus_code>");
    assert!(!u.contains("<user_identifiers>"), "{u}");
    let u = r.user("99");
    assert_contains(u, "<email_address>more@fake.email</email_address>");
    assert_contains(u, "<email_address>grinch@whoville.seuss</email_address>");
    assert_contains(u, "<birth_date>1901-07-18Z</birth_date>");
}

#[test]
fn peer_uga_pipe_maps_fs_codes() {
    let Some(r) = run_peer(
        "uga-pipe",
        "alma-user-integration-legacy-converter/data/sample/sample.txt",
        0,
    ) else {
        return;
    };
    assert_eq!(r.counts(), [4, 4, 0]);
    assert_eq!(r.summary["rejected_by_reason"], json!({}));
    // The empty local address slot is absent, not an incomplete address.
    assert_eq!(r.summary["dropped_segments"], json!({}));
    assert_eq!(
        r.summary["users_by_group"],
        json!({ "FAC": 1, "STAFF": 1, "UNDER PRIV": 2 })
    );
    assert!(r.rejects().is_empty());
    assert_eq!(
        r.ids(),
        ["810000001", "810000002", "810000003", "810000004"]
    );
    for (id, group, expiry, barcode) in [
        ("810000001", "UNDER PRIV", "2027-05-23Z", "000000000000000"),
        ("810000002", "UNDER PRIV", "2027-05-23Z", "111111111111111"),
        ("810000003", "STAFF", "2027-11-24Z", "222222222222222"),
        ("810000004", "FAC", "2027-11-24Z", "333333333333333"),
    ] {
        let u = r.user(id);
        assert_contains(u, &format!("<user_group>{group}</user_group>"));
        assert_contains(u, &format!("<expiry_date>{expiry}</expiry_date>"));
        assert_contains(u, &format!("<value>{barcode}</value>"));
        // The permanent address is the only one, and preferred.
        assert_eq!(u.matches("<address ").count(), 1, "{u}");
        assert_contains(u, "<address preferred=\"true\"");
        assert_contains(u, "<address_type>home</address_type>");
        assert!(!u.contains("<phones>"), "{u}");
    }
    assert_contains(
        r.user("810000001"),
        "<last_name>User, Alma Test</last_name>",
    );
}

/// Every profile in examples/peer/ has a test above.
#[test]
fn peer_every_profile_is_tested() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("examples/peer"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p: &PathBuf| p.extension().is_some_and(|x| x == "toml"))
        .map(|p: PathBuf| file_stem(&p))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "csv-to-xml",
            "lib_jobs",
            "migration-tools",
            "millennium",
            "sif",
            "uga-pipe"
        ]
    );
}

fn file_stem(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn peer_sif_one_record_with_an_email_segment() {
    let Some(r) = run_peer(
        "sif",
        "alma-user-integration-legacy-converter/data/sample/sample.sif",
        0,
    ) else {
        return;
    };
    assert_eq!(r.counts(), [1, 1, 0]);
    let u = r.user("930123456");
    for s in [
        "<first_name>Alma</first_name>",
        "<middle_name>Test</middle_name>",
        "<last_name>User</last_name>",
        "<user_group>UNDERGRAD</user_group>",
        "<expiry_date>2016-01-01Z</expiry_date>",
        "<line1>1000 Elm Road Apt 10</line1>",
        "<city>Augusta</city>",
        "<postal_code>30123</postal_code>",
        "<start_date>2015-01-01Z</start_date>",
        "<email_address>alma12@ega.edu</email_address>",
    ] {
        assert_contains(u, s);
    }
}

#[test]
fn peer_sif_three_segments_the_last_cut_short() {
    let Some(r) = run_peer(
        "sif",
        "alma-user-integration-legacy-converter/data/test_sif/student",
        0,
    ) else {
        return;
    };
    assert_eq!(r.counts(), [1, 1, 0]);
    let u = r.user("930123456");
    for s in [
        "<line1>1000 Elm Road</line1>",
        "<line2>Apt 10</line2>",
        "<country>USA</country>",
        "<phone_number>(111)222-3333</phone_number>",
        "<email_address>alma12@ega.edu</email_address>",
        // The third segment ends in its phone field, without the padding.
        "<line1>1234 Street Rd</line1>",
        "<city>Sandersville</city>",
        "<start_date>2013-04-07Z</start_date>",
        "<address_type>school</address_type>",
    ] {
        assert_contains(u, s);
    }
}
