//! Issue 16: Alma's own exports. The pre-check against Alma's users
//! (`convert --alma-users`, `[alma] users`), the triage of Alma's
//! rejected-users report, and the fines/blocks export to the SIS.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use patronload::gen::{generate, GenOptions};

use crate::util::*;

fn zip_of(path: &Path, entries: &[(&str, &[u8])]) {
    let mut w = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
}

/// One Alma user of a crafted export.
#[derive(Clone)]
struct AUser {
    primary: String,
    internal: bool,
    ids: Vec<(String, String)>,
    group: String,
    fees: Option<String>,
    /// (type, description, status, created)
    blocks: Vec<(String, String, String, String)>,
}

fn au(primary: &str, internal: bool, ids: &[(&str, &str)]) -> AUser {
    AUser {
        primary: primary.into(),
        internal,
        ids: ids
            .iter()
            .map(|(t, v)| (t.to_string(), v.to_string()))
            .collect(),
        group: "UNDERGRAD".into(),
        fees: None,
        blocks: Vec::new(),
    }
}

/// Alma's "Export Users" in v2 (the user API object, with the names and
/// emails Alma writes, which must never come out anywhere).
fn v2(users: &[AUser]) -> String {
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<users total_record_count=\"{}\">\n",
        users.len()
    );
    for u in users {
        s += "  <user>\n";
        s += &format!("    <record_type desc=\"Public\">PUBLIC</record_type>\n    <primary_id>{}</primary_id>\n", u.primary);
        s += "    <first_name>Secretname</first_name>\n    <last_name>Hiddensurname</last_name>\n";
        s += &format!(
            "    <user_group desc=\"Undergraduate\">{}</user_group>\n",
            u.group
        );
        let at = if u.internal { "INTERNAL" } else { "EXTERNAL" };
        s += &format!("    <account_type desc=\"x\">{at}</account_type>\n    <status desc=\"Active\">ACTIVE</status>\n");
        s += "    <expiry_date>2027-06-30Z</expiry_date>\n";
        s += "    <contact_info><emails><email preferred=\"true\"><email_address>secret.person@example.edu</email_address></email></emails></contact_info>\n";
        if let Some(f) = &u.fees {
            s += &format!("    <fees link=\"https://x\">{f}</fees>\n");
        }
        s += "    <user_identifiers>\n";
        for (t, v) in &u.ids {
            s += &format!("      <user_identifier segment_type=\"External\"><id_type desc=\"{t}\">{t}</id_type><value>{v}</value><status>ACTIVE</status></user_identifier>\n");
        }
        s += "    </user_identifiers>\n";
        if !u.blocks.is_empty() {
            s += "    <user_blocks>\n";
            for (t, d, st, c) in &u.blocks {
                s += &format!("      <user_block segment_type=\"Internal\"><block_type desc=\"General\">{t}</block_type><block_description desc=\"x\">{d}</block_description><block_status>{st}</block_status><created_date>{c}</created_date></user_block>\n");
            }
            s += "    </user_blocks>\n";
        }
        s += "  </user>\n";
    }
    s + "</users>\n"
}

/// The same users in the deprecated v1 shape.
fn v1(users: &[AUser]) -> String {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<userRecords xmlns=\"http://com/exlibris/urm/user_record/xmlbeans\">\n",
    );
    for u in users {
        let at = if u.internal { "INTERNAL" } else { "EXTERNAL" };
        s += &format!(
            "  <userRecord>\n    <userDetails><userName>{}</userName><firstName>Secretname</firstName><userGroup>{}</userGroup><accountType>{at}</accountType><status>ACTIVE</status><expiryDate>2027-06-30</expiryDate></userDetails>\n",
            u.primary, u.group
        );
        if let Some(f) = &u.fees {
            s += &format!("    <activeBalance>{f}</activeBalance>\n");
        }
        s += "    <userIdentifiers>";
        for (t, v) in &u.ids {
            s += &format!("<userIdentifier><type>{t}</type><value>{v}</value></userIdentifier>");
        }
        s += "</userIdentifiers>\n";
        if !u.blocks.is_empty() {
            s += "    <userBlockList>";
            for (t, d, st, c) in &u.blocks {
                s += &format!("<userBlock><type>{t}</type><description>{d}</description><status>{st}</status><creationDate>{c}</creationDate></userBlock>");
            }
            s += "</userBlockList>\n";
        }
        s += "  </userRecord>\n";
    }
    s + "</userRecords>\n"
}

/// An Analytics-style CSV: one row per user and identifier, its own
/// column names.
fn analytics_csv(users: &[AUser]) -> String {
    let mut s = String::from(
        "\u{feff}Primary Identifier\tAccount Type\tIdentifier Type\tIdentifier Value\n",
    );
    for u in users {
        let at = if u.internal { "Internal" } else { "External" };
        if u.ids.is_empty() {
            s += &format!("{}\t{at}\t\t\n", u.primary);
        }
        for (t, v) in &u.ids {
            s += &format!("{}\t{at}\t{t}\t{v}\n", u.primary);
        }
    }
    s
}

fn students() -> PathBuf {
    root().join("examples/students.toml")
}

fn no_personal_data(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    for secret in [
        "Secretname",
        "Hiddensurname",
        "secret.person",
        "@example.edu",
    ] {
        assert!(!err.contains(secret), "stderr names a patron: {err}");
    }
    assert!(o.stdout.is_empty());
}

/// The Alma users used against `examples/students.csv`: S0000001 is the
/// same external user; X1 holds S0000002's barcode (other case is the
/// same value to Alma); S0000003 is internal; BC9 is a user whose primary
/// id is S0000004's barcode; S0000005 is external with another barcode
/// (an update, not a collision).
fn alma_for_example() -> Vec<AUser> {
    vec![
        au("S0000001", false, &[("BARCODE", "21234000000001")]),
        au("X1", false, &[("BARCODE", " 21234000000002 ")]),
        au("s0000003", true, &[]),
        au("21234000000004", false, &[]),
        au("S0000005", false, &[("BARCODE", "OLD5")]),
    ]
}

fn alma_rejects(dir: &Path) -> BTreeMap<String, (String, String)> {
    rejects(dir)
        .into_iter()
        .filter(|r| r["reason"].ends_with("_in_alma"))
        .map(|r| {
            (
                r["primary_id"].clone(),
                (r["reason"].clone(), r["message"].clone()),
            )
        })
        .collect()
}

#[test]
fn precheck_reads_v2_v1_zip_and_csv_exports_alike() {
    let t = tempfile::tempdir().unwrap();
    let users = alma_for_example();
    let v2p = t.path().join("users.xml");
    fs::write(&v2p, v2(&users)).unwrap();
    let zp = t.path().join("export.zip");
    zip_of(
        &zp,
        &[
            ("users_1.xml", v2(&users[..2]).as_bytes()),
            ("users_2.xml", v2(&users[2..]).as_bytes()),
            ("README.txt", b"not xml"),
        ],
    );
    let v1p = t.path().join("v1.xml");
    fs::write(&v1p, v1(&users)).unwrap();
    let csvp = t.path().join("analytics.tsv");
    fs::write(&csvp, analytics_csv(&users)).unwrap();

    let input = root().join("examples/students.csv");
    let mut seen = Vec::new();
    for alma in [&v2p, &zp, &v1p, &csvp] {
        let out = t.path().join(format!("out-{}", seen.len()));
        let o = convert(
            &students(),
            &out,
            &[&input],
            &["--alma-users", alma.to_str().unwrap()],
        );
        assert_status(&o, 0);
        no_personal_data(&o);
        let r = alma_rejects(&out);
        let got: Vec<(&str, &str)> = r.iter().map(|(k, v)| (k.as_str(), v.0.as_str())).collect();
        assert_eq!(
            got,
            [
                ("S0000002", "taken_in_alma"),
                ("S0000003", "internal_in_alma"),
                ("S0000004", "taken_in_alma")
            ],
            "{}",
            alma.display()
        );
        let m = &r["S0000002"].1;
        assert!(m.contains("type BARCODE") && m.contains("user X1"), "{m}");
        assert!(r["S0000003"].1.contains("make the account External"));
        assert!(r["S0000004"].1.contains("as its primary_id"));
        let s = summary(&out);
        assert_eq!(s["rejected_by_reason"]["taken_in_alma"], 2);
        assert_eq!(s["rejected_by_reason"]["internal_in_alma"], 1);
        seen.push(dir_files(&out));
    }
    // Every shape of export gives the same package.
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn hostile_zips_are_refused_by_convert_export_and_triage() {
    let t = tempfile::tempdir().unwrap();
    let ok = v2(&alma_for_example());
    let slip = t.path().join("slip.zip");
    zip_of(
        &slip,
        &[("users.xml", ok.as_bytes()), ("../evil.xml", ok.as_bytes())],
    );
    let link = t.path().join("link.zip");
    {
        let mut w = zip::ZipWriter::new(fs::File::create(&link).unwrap());
        w.add_symlink(
            "users.xml",
            "/etc/passwd",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        w.finish().unwrap();
    }
    let bomb = t.path().join("bomb.zip");
    zip_of(&bomb, &[("users.xml", &vec![0u8; 64 << 20])]);
    let input = root().join("examples/students.csv");
    let profile = root().join("examples/alma/sis_holds.toml");
    // A run to triage against.
    let run = t.path().join("run");
    assert_status(&convert(&students(), &run, &[&input], &[]), 0);
    for (z, code) in [
        (&slip, "unsafe_zip"),
        (&link, "unsafe_zip"),
        (&bomb, "zip_bomb"),
    ] {
        let out = t.path().join("out");
        let o = convert(
            &students(),
            &out,
            &[&input],
            &["--alma-users", z.to_str().unwrap()],
        );
        assert_status(&o, 1);
        assert!(String::from_utf8_lossy(&o.stderr).contains(code));
        assert!(!out.exists(), "nothing published");

        let o = patronload()
            .args(["export", "--profile"])
            .arg(&profile)
            .arg("--out")
            .arg(&out)
            .arg(z)
            .output()
            .unwrap();
        assert_status(&o, 1);
        assert!(String::from_utf8_lossy(&o.stderr).contains(code));
        assert!(!out.exists(), "nothing published");

        let report = t.path().join("report.xlsx");
        fs::copy(z, &report).unwrap();
        let tri = t.path().join("triage.csv");
        let o = patronload()
            .arg("triage")
            .arg(&report)
            .arg("--run")
            .arg(&run)
            .arg("--out")
            .arg(&tri)
            .output()
            .unwrap();
        assert_status(&o, 1);
        assert!(String::from_utf8_lossy(&o.stderr).contains(code));
        assert!(!tri.exists());
    }
}

/// The generator's records, as `examples/students.toml` maps them:
/// (line, primary id, barcode).
fn feed_ids(path: &Path) -> Vec<(u64, String, String)> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (e, b) = (col("EMPLID"), col("BARCODE"));
    let mut out = Vec::new();
    let mut rec = csv::StringRecord::new();
    while rdr.read_record(&mut rec).unwrap() {
        let line = rec.position().unwrap().line();
        out.push((
            line,
            rec[e].trim().to_uppercase(),
            rec[b].trim().to_string(),
        ));
    }
    out
}

#[test]
fn precheck_of_a_generated_100k_feed_rejects_exactly_the_overlap() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("extract.csv");
    let stats = generate(
        &GenOptions {
            rows: 100_000,
            seed: 16,
            dup_rate: 0.0,
            bad_rate: 0.0,
        },
        BufWriter::new(fs::File::create(&input).unwrap()),
        std::io::sink(),
    )
    .unwrap();
    assert_eq!(
        stats.expected_rejected, 0,
        "a clean feed: every reject is Alma's"
    );
    let feed = feed_ids(&input);
    assert_eq!(feed.len(), 100_000);

    // Alma's side, and independently what each record must get.
    let mut alma = Vec::new();
    let mut expected: BTreeMap<u64, &str> = BTreeMap::new();
    for (i, (line, p, b)) in feed.iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        match i % 40 {
            // The same external user, barcode in another case.
            0 => alma.push(au(
                &p.to_lowercase(),
                false,
                &[("BARCODE", &b.to_lowercase())],
            )),
            // An internal account with the match id.
            1 => {
                alma.push(au(p, true, &[]));
                expected.insert(*line, "internal_in_alma");
            }
            // Another Alma user holds the barcode.
            2 => {
                alma.push(au(&format!("ALMA{i}"), false, &[("UNIV_ID", b)]));
                expected.insert(*line, "taken_in_alma");
            }
            // An Alma user whose primary id is this record's barcode:
            // another user, unless the record's barcode is its own
            // primary id (the generator makes some), when that Alma user
            // is the record's own.
            3 => {
                alma.push(au(b, false, &[]));
                if !b.eq_ignore_ascii_case(p) {
                    expected.insert(*line, "taken_in_alma");
                }
            }
            // Alma users unrelated to the feed.
            4 => alma.push(au(
                &format!("ZZ{i}"),
                i % 80 == 4,
                &[("BARCODE", &format!("Q{i}"))],
            )),
            _ => {}
        }
    }
    let export = t.path().join("alma.zip");
    let half = alma.len() / 2;
    zip_of(
        &export,
        &[
            ("alma_users_1.xml", v2(&alma[..half]).as_bytes()),
            ("alma_users_2.xml", v2(&alma[half..]).as_bytes()),
        ],
    );

    let mut packages = Vec::new();
    for engine in [&["--threads", "2"][..], &["--reference"][..]] {
        let out = t.path().join(format!("out{}", packages.len()));
        let mut extra = vec![
            "--alma-users",
            export.to_str().unwrap(),
            "--max-reject-rate",
            "50",
        ];
        extra.extend_from_slice(engine);
        let o = convert(&students(), &out, &[&input], &extra);
        assert_status(&o, 0);
        no_personal_data(&o);
        let got: BTreeMap<u64, String> = rejects(&out)
            .into_iter()
            .map(|r| (r["line"].parse().unwrap(), r["reason"].clone()))
            .collect();
        let want: BTreeMap<u64, String> =
            expected.iter().map(|(l, r)| (*l, r.to_string())).collect();
        let diff: Vec<_> = want
            .iter()
            .filter(|(l, r)| got.get(l) != Some(r))
            .map(|(l, r)| (*l, r.clone(), got.get(l).cloned()))
            .chain(
                got.iter()
                    .filter(|(l, _)| !want.contains_key(l))
                    .map(|(l, r)| (*l, String::new(), Some(r.clone()))),
            )
            .take(10)
            .collect();
        assert!(diff.is_empty(), "(line, expected, got): {diff:?}");
        assert_eq!(got.len(), want.len());
        let s = summary(&out);
        assert_eq!(
            s["users_written"].as_u64().unwrap(),
            100_000 - expected.len() as u64
        );
        // index.csv: one row per user written, with its line and record.
        let mut rdr = csv::Reader::from_path(out.join("index.csv")).unwrap();
        let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len() as u64, s["users_written"].as_u64().unwrap());
        let by_line: BTreeMap<u64, &str> = feed.iter().map(|(l, p, _)| (*l, p.as_str())).collect();
        let mut lines = BTreeSet::new();
        for r in &rows {
            let line: u64 = r[2].parse().unwrap();
            assert_eq!(by_line[&line], &r[0]);
            assert!(!expected.contains_key(&line));
            lines.insert(line);
        }
        assert_eq!(lines.len(), rows.len());
        packages.push(dir_files(&out));
    }
    assert_eq!(packages[0], packages[1], "engines agree byte for byte");
}

#[test]
fn job_checks_against_alma_users_of_its_job_file() {
    let t = tempfile::tempdir().unwrap();
    let alma = t.path().join("alma.xml");
    // S0000101 (a student of the job) is an internal account in Alma.
    fs::write(&alma, v2(&[au("S0000101", true, &[])])).unwrap();
    let job_src = fs::read_to_string(root().join("examples/job/job.toml")).unwrap();
    let dir = root().join("examples/job");
    let job = job_src
        .replace(
            "\"../students.toml\"",
            &format!("{:?}", root().join("examples/students.toml")),
        )
        .replace(
            "\"students.csv\"",
            &format!("{:?}", dir.join("students.csv")),
        )
        .replace(
            "\"employees.toml\"",
            &format!("{:?}", dir.join("employees.toml")),
        )
        .replace(
            "\"employees.csv\"",
            &format!("{:?}", dir.join("employees.csv")),
        )
        + "\n[alma]\nusers = [\"alma.xml\"]\n";
    let job_path = t.path().join("job.toml");
    fs::write(&job_path, job).unwrap();
    let out = t.path().join("out");
    let o = patronload()
        .args(["convert", "--as-of", "2026-11-24", "--job"])
        .arg(&job_path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(3),
        "{o:?}"
    );
    let r = alma_rejects(&out);
    assert_eq!(
        r.iter()
            .map(|(k, v)| (k.as_str(), v.0.as_str()))
            .collect::<Vec<_>>(),
        [("S0000101", "internal_in_alma")]
    );
    // The job's index.csv lists every user written, in input order.
    let index = read_csv(&out.join("index.csv"));
    let s = summary(&out);
    assert_eq!(index.len() as u64 - 1, s["users_written"].as_u64().unwrap());
    assert!(!index.iter().any(|r| r[0] == "S0000101"));
    let records: Vec<u64> = index[1..].iter().map(|r| r[3].parse().unwrap()).collect();
    assert!(records.windows(2).all(|w| w[0] < w[1]));
}

/// Runs `triage`.
fn triage(report: &Path, run: &Path, out: &Path) -> Output {
    patronload()
        .arg("triage")
        .arg(report)
        .arg("--run")
        .arg(run)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap();
    rdr.records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

const REPORT: &[(&str, &str)] = &[
    (
        "S0000005",
        "Identifier of type INST_ID and value 900005 is already taken AcrossInstitution",
    ),
    ("S0000006", "User is not external"),
    ("S0000007", "Mandatory field is missing: user_group"),
    ("S0000008", "Failed to update user: something unexpected"),
    ("S0000009", "Invalid byte 1 of 1-byte UTF-8 sequence."),
    ("NOT_IN_RUN", "Failed to update user: something unexpected"),
    (
        "S0000010",
        "Identifier of type BARCODE and value 21234000000010 is already taken AcrossInstitution",
    ),
];

fn check_triage(out: &Path, o: &Output, id_col: &str, msg_col: &str) {
    assert_status(o, 0);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("`{id_col}`")) && err.contains(&format!("`{msg_col}`")),
        "{err}"
    );
    assert!(
        err.contains("identifier_taken: 2") && err.contains("unrecognised: 2"),
        "{err}"
    );
    // Counts only on stderr: no message text.
    assert!(!err.contains("something unexpected"), "{err}");
    let rows = read_csv(out);
    assert_eq!(
        rows[0],
        [
            "user_id",
            "cause",
            "identifier_type",
            "identifier_value",
            "field",
            "action",
            "source_file",
            "line",
            "record",
            "report_row",
            "message"
        ]
    );
    let got: Vec<[&str; 6]> = rows[1..]
        .iter()
        .map(|r| [&r[0][..], &r[1], &r[2], &r[3], &r[4], &r[7]])
        .collect();
    assert_eq!(
        got,
        [
            ["S0000005", "identifier_taken", "INST_ID", "900005", "", "6"],
            ["S0000006", "internal_account", "", "", "", "7"],
            [
                "S0000007",
                "mandatory_field_missing",
                "",
                "",
                "user_group",
                "8"
            ],
            ["S0000009", "invalid_characters", "", "", "", "10"],
            [
                "S0000010",
                "identifier_taken",
                "BARCODE",
                "21234000000010",
                "",
                "11"
            ],
            // Unrecognised: last, grouped, verbatim.
            ["S0000008", "unrecognised", "", "", "", "9"],
            ["NOT_IN_RUN", "unrecognised", "", "", "", ""],
        ]
    );
    assert!(rows[1][6].ends_with("examples/students.csv"));
    assert_eq!(rows[6][10], "Failed to update user: something unexpected");
    assert!(rows[2][5].contains("External"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn triage_of_an_excel_report() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    assert_status(
        &convert(
            &students(),
            &run,
            &[&root().join("examples/students.csv")],
            &[],
        ),
        0,
    );
    let report = t.path().join("Rejected Users.xlsx");
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.write_string(0, 0, "Rejected Users - By Files").unwrap();
    for (c, h) in [
        "File Name",
        "Primary Identifier",
        "First Name",
        "Error Message",
    ]
    .iter()
    .enumerate()
    {
        ws.write_string(1, c as u16, *h).unwrap();
    }
    for (i, (id, msg)) in REPORT.iter().enumerate() {
        let r = i as u32 + 2;
        ws.write_string(r, 0, "example_users_001.xml").unwrap();
        ws.write_string(r, 1, *id).unwrap();
        ws.write_string(r, 2, "Secretname").unwrap();
        ws.write_string(r, 3, *msg).unwrap();
    }
    wb.save(&report).unwrap();
    let out = t.path().join("triage.csv");
    let o = triage(&report, &run, &out);
    check_triage(&out, &o, "Primary Identifier", "Error Message");
    no_personal_data(&o);
    // Triaging again replaces the file whole.
    let o = triage(&report, &run, &out);
    check_triage(&out, &o, "Primary Identifier", "Error Message");
}

#[test]
fn triage_of_a_csv_report_with_other_column_names() {
    let t = tempfile::tempdir().unwrap();
    let run = t.path().join("run");
    assert_status(
        &convert(
            &students(),
            &run,
            &[&root().join("examples/students.csv")],
            &[],
        ),
        0,
    );
    let report = t.path().join("rejected.csv");
    let mut s = String::from("Job report export\n\nUser ID;Reason\n");
    for (id, msg) in REPORT {
        s += &format!("{id};\"{msg}\"\n");
    }
    fs::write(&report, s).unwrap();
    let out = t.path().join("triage.csv");
    let o = triage(&report, &run, &out);
    check_triage(&out, &o, "User ID", "Reason");
    // A directory that is not a run is refused, and nothing is written.
    let out2 = t.path().join("triage2.csv");
    let o = triage(&report, t.path(), &out2);
    assert_status(&o, 1);
    assert!(!out2.exists());
}

/// Users with balances and blocks, for the export.
fn blocked_users() -> Vec<AUser> {
    let blk = |t: &str, d: &str, s: &str, c: &str| (t.into(), d.into(), s.into(), c.into());
    let mut a = au("P1001", false, &[("UNIV_ID", "900001"), ("BARCODE", "B1")]);
    a.fees = Some("42.5".into());
    a.blocks = vec![
        blk("GENERAL", "OVERDUE", "ACTIVE", "2026-10-02T09:15:00.000Z"),
        blk("GENERAL", "FINES", "ACTIVE", "2026-09-01T00:00:00Z"),
    ];
    let mut b = au("P1002", false, &[("UNIV_ID", "900002")]);
    b.fees = Some("3.00".into());
    let mut c = au("P1003", false, &[("UNIV_ID", "900003")]);
    c.fees = Some("0".into());
    c.blocks = vec![blk("GENERAL", "LOST_ITEM", "ACTIVE", "2026-11-20Z")];
    // Inactive block, low balance: not selected.
    let mut d = au("P1004", false, &[("UNIV_ID", "900004")]);
    d.blocks = vec![blk("GENERAL", "OVERDUE", "INACTIVE", "2026-01-01Z")];
    // Internal: not the SIS's.
    let mut e = au("STAFF1", true, &[]);
    e.fees = Some("100".into());
    // Group too wide for the fixed-width file; "Ł" is not in Windows-1252.
    let mut f = au("P1006", false, &[("UNIV_ID", "900006")]);
    f.group = "CONTINUING_EDUCATION_X".into();
    f.fees = Some("30".into());
    let mut g = au("P1007Ł", false, &[("UNIV_ID", "900007")]);
    g.fees = Some("26".into());
    vec![a, b, c, d, e, f, g]
}

const FIXED_PROFILE: &str = r#"
[output]
file = "HOLDS.DAT"
format = "fixed"
encoding = "windows-1252"
line_ending = "crlf"
date_format = "%Y%m%d"

[filter]
min_balance = 25
block_descriptions = ["OVERDUE", "LOST_ITEM"]
account_type = "EXTERNAL"

[[column]]
name = "EMPLID"
value = "identifier:UNIV_ID"
width = 9

[[column]]
name = "ALMA_ID"
value = "primary_id"
width = 8

[[column]]
name = "GROUP"
value = "user_group"
width = 10

[[column]]
name = "BALANCE"
value = "balance"
width = 9
align = "right"
pad = "0"

[[column]]
name = "SINCE"
value = "block_since"
width = 8

[[column]]
name = "N"
value = "block_count"
width = 2
align = "right"
"#;

/// Compares `got` with the pinned golden file `name` (checked by eye
/// once); `PATRONLOAD_BLESS=1` rewrites it instead.
fn golden(name: &str, got: &[u8]) {
    let path = root().join("tests/data/alma").join(name);
    if std::env::var_os("PATRONLOAD_BLESS").is_some() {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, got).unwrap();
    }
    assert_eq!(
        got,
        fs::read(&path).unwrap(),
        "{name} differs from its golden file"
    );
}

fn export(profile: &Path, out: &Path, inputs: &[&Path]) -> Output {
    let mut cmd = patronload();
    cmd.args(["export", "--profile"])
        .arg(profile)
        .arg("--out")
        .arg(out);
    for i in inputs {
        cmd.arg(i);
    }
    cmd.output().unwrap()
}

#[test]
fn export_to_csv_and_fixed_width_byte_for_byte() {
    let t = tempfile::tempdir().unwrap();
    let users = blocked_users();
    // The first users as a v2 zip, the rest as v1: one export.
    let zp = t.path().join("alma_blocks.zip");
    zip_of(&zp, &[("users.xml", v2(&users[..4]).as_bytes())]);
    let v1p = t.path().join("v1.xml");
    fs::write(&v1p, v1(&users[4..])).unwrap();

    // The example profile: pipe-delimited, Windows-1252, CRLF.
    let out = t.path().join("holds");
    let o = export(
        &root().join("examples/alma/sis_holds.toml"),
        &out,
        &[&zp, &v1p],
    );
    // P1007Ł cannot be written in Windows-1252: listed, exit 3.
    assert_status(&o, 3);
    no_personal_data(&o);
    let files = dir_files(&out);
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["export_rejects.csv", "export_summary.json", "sis_holds.txt"]
    );
    golden("sis_holds.txt", &files["sis_holds.txt"]);
    let rej = String::from_utf8(files["export_rejects.csv"].clone()).unwrap();
    assert!(
        rej.contains("P1007Ł") && rej.contains("not in windows-1252"),
        "{rej}"
    );
    assert_eq!(rej.lines().count(), 2);
    let s: serde_json::Value = serde_json::from_slice(&files["export_summary.json"]).unwrap();
    assert_eq!(s["users_read"], 7);
    assert_eq!(s["users_by_format"]["v1"], 3);
    assert_eq!(s["users_selected"], 4);
    assert_eq!(s["users_written"], 3);

    // Fixed width: the wide group is listed too, nothing is cut.
    let fixed = t.path().join("fixed.toml");
    fs::write(&fixed, FIXED_PROFILE).unwrap();
    let out2 = t.path().join("fixed");
    let o = export(&fixed, &out2, &[&zp, &v1p]);
    assert_status(&o, 3);
    let files = dir_files(&out2);
    golden("HOLDS.DAT", &files["HOLDS.DAT"]);
    let rej = String::from_utf8(files["export_rejects.csv"].clone()).unwrap();
    assert!(
        rej.contains("P1006,GROUP") && rej.contains("wider than its 10"),
        "{rej}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["HOLDS.DAT", "export_rejects.csv", "export_summary.json"] {
            let m = fs::metadata(out2.join(f)).unwrap().permissions().mode();
            assert_eq!(m & 0o777, 0o600, "{f}");
        }
    }
    // A second export replaces the first whole (same bytes).
    let o = export(&fixed, &out2, &[&zp, &v1p]);
    assert_status(&o, 3);
    assert_eq!(dir_files(&out2), files);
}
