//! `convert --job`: several feeds, one user per person, decisions in
//! duplicates.csv.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::process::Output;

use patronload::gen::{generate, generate_employees, EmployeeOptions, GenOptions};

use crate::util::*;

/// Runs `convert --job` from the repository root (so report paths are
/// relative and stable).
fn run_job(job: &Path, out: &Path, extra: &[&str]) -> Output {
    patronload()
        .current_dir(root())
        .arg("convert")
        .arg("--job")
        .arg(job)
        .arg("--out")
        .arg(out)
        .args(["--as-of", "2026-11-24"])
        .args(extra)
        .output()
        .expect("run patronload")
}

fn primary_ids(dir: &Path) -> Vec<String> {
    let mut ids = Vec::new();
    for (_, xml) in xml_entries(dir) {
        for part in xml.split("<primary_id>").skip(1) {
            ids.push(part.split('<').next().unwrap().to_string());
        }
    }
    ids
}

/// Records read = written + rejected + superseded, from summary.json.
fn assert_books(dir: &Path) -> serde_json::Value {
    let s = summary(dir);
    let job = &s["job"];
    let (read, written, rejected, superseded) = (
        s["records_read"].as_u64().unwrap(),
        s["users_written"].as_u64().unwrap(),
        s["rejected"].as_u64().unwrap(),
        job["superseded"].as_u64().unwrap(),
    );
    assert_eq!(read, written + rejected + superseded, "{s:#}");
    let dup_rows = csv::Reader::from_path(dir.join("duplicates.csv"))
        .unwrap()
        .records()
        .count() as u64;
    assert_eq!(dup_rows, superseded);
    // Line by line too: a superseded record's lines are `superseded`.
    let l = &s["lines_read"];
    let n = |k: &str| l[k].as_u64().unwrap();
    assert_eq!(
        n("total"),
        n("header") + n("blank") + n("written") + n("rejected") + n("superseded"),
        "{l}"
    );
    assert!(n("superseded") >= superseded, "{l}");
    assert_eq!(superseded == 0, n("superseded") == 0, "{l}");
    let per_input: u64 = s["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["lines_read"]["superseded"].as_u64().unwrap())
        .sum();
    assert_eq!(per_input, n("superseded"));
    s
}

#[test]
fn example_job_one_user_per_person_with_explained_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = run_job(
        Path::new("examples/job/job.toml"),
        &out,
        &["--max-reject-rate", "20"],
    );
    assert_status(&o, 0);
    assert_xsd_valid(&out);
    // Checked by eye once against examples/job/README.md, then pinned.
    for name in ["duplicates.csv", "rejects.csv"] {
        assert_eq!(
            fs::read_to_string(out.join(name)).unwrap(),
            fs::read_to_string(root().join("tests/data/job").join(name)).unwrap(),
            "{name}"
        );
    }
    let ids = primary_ids(&out);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "one user per person: {ids:?}");
    assert_eq!(ids.len(), 8);
    let s = assert_books(&out);
    assert_eq!(s["job"]["people_matched"], 4);
    assert_eq!(s["job"]["merged_values"], 8);
    assert_eq!(s["job"]["decided_by"]["user_group_rank"], 3);
    // The staff record represents S0000101 and took the student's barcode.
    let xml: String = xml_entries(&out).into_iter().map(|(_, x)| x).collect();
    let user = xml
        .split("<user>")
        .find(|u| u.contains("<primary_id>S0000101<"))
        .unwrap();
    assert!(user.contains("<user_group>STAFF<"), "{user}");
    assert!(user.contains("<value>21234000000101<"), "{user}");
    assert!(user.contains("<value>29990000000101<"), "{user}");
}

#[test]
fn job_output_does_not_depend_on_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let job = Path::new("examples/job/job.toml");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    // Two users per XML file, two files per zip: four documents in two
    // zips, compressed a batch of three at a time with three threads.
    let split = ["--users-per-file", "2", "--files-per-zip", "2"];
    assert_status(
        &run_job(job, &a, &[&["--reference"][..], &split].concat()),
        3,
    );
    assert_status(
        &run_job(job, &b, &[&["--threads", "3"][..], &split].concat()),
        3,
    );
    assert_eq!(xml_entries(&a).len(), 4);
    let (fa, fb) = (dir_files(&a), dir_files(&b));
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(bytes == &fb[name], "{name} differs between thread counts");
    }
}

#[test]
fn job_file_errors_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("job.toml");
    fs::write(&job, "[people]\nmatch_on = \"primary_id\"\n").unwrap();
    let o = run_job(&job, &tmp.path().join("out"), &[]);
    assert_status(&o, 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no [[source]]"));
    assert!(!tmp.path().join("out").exists());
    // --job and --profile together are refused by the flag parser.
    let o = patronload()
        .args([
            "convert",
            "--job",
            "j.toml",
            "--profile",
            "p.toml",
            "--out",
            "o",
        ])
        .output()
        .unwrap();
    assert_status(&o, 2);
}

/// One record of the oracle: what the declared policy needs.
#[derive(Debug, Clone)]
struct Rec {
    source: usize,
    line: u64,
    number: u64,
    id: String,
    barcode: String,
    group: &'static str,
}

fn rank(group: &str) -> usize {
    ["FACULTY", "STAFF", "GRAD", "UNDERGRAD"]
        .iter()
        .position(|g| *g == group)
        .unwrap()
}

fn read_feed(
    path: &Path,
    source: usize,
    first_number: u64,
    groups: &[(&str, &'static str)],
) -> Vec<Rec> {
    let mut rdr = csv::Reader::from_path(path).unwrap();
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id_col, bc_col) = (col(headers.get(0).unwrap()), col("BARCODE"));
    let group_col = if source == 0 {
        col("PATRON_TYPE")
    } else {
        col("EMP_CLASS")
    };
    let mut out = Vec::new();
    let mut rec = csv::StringRecord::new();
    let mut number = first_number;
    loop {
        let line = rdr.position().line();
        if !rdr.read_record(&mut rec).unwrap() {
            break;
        }
        let code = &rec[group_col];
        let group = groups.iter().find(|(c, _)| *c == code).unwrap().1;
        out.push(Rec {
            source,
            line,
            number,
            id: rec[id_col].trim().to_uppercase(),
            barcode: rec[bc_col].trim().to_string(),
            group,
        });
        number += 1;
    }
    out
}

/// 100k students and 30k employees, 10 % of employees also students:
/// every decision in duplicates.csv, every rejected collision and the
/// counts follow from the declared policy, recomputed here independently.
#[test]
fn generated_students_and_employees_follow_the_declared_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let students = GenOptions {
        rows: 100_000,
        seed: 23,
        dup_rate: 0.0,
        bad_rate: 0.0,
    };
    generate(
        &students,
        fs::File::create(dir.join("students.csv")).unwrap(),
        std::io::sink(),
    )
    .unwrap();
    let employees = EmployeeOptions {
        rows: 30_000,
        seed: 29,
        students: students.rows,
        overlap: 0.10,
        collide: 0.002,
    };
    generate_employees(
        &employees,
        fs::File::create(dir.join("employees.csv")).unwrap(),
    )
    .unwrap();
    let job = dir.join("job.toml");
    fs::write(
        &job,
        format!(
            "[people]\ngroup_rank = [\"FACULTY\", \"STAFF\", \"GRAD\", \"UNDERGRAD\"]\n\n\
             [[source]]\nname = \"students\"\nprofile = {:?}\ninputs = [\"students.csv\"]\n\n\
             [[source]]\nname = \"employees\"\nprofile = {:?}\ninputs = [\"employees.csv\"]\n",
            root().join("examples/students.toml"),
            root().join("examples/job/employees.toml"),
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let o = run_job(&job, &out, &["--max-reject-rate", "100"]);
    assert_status(&o, 0);

    // The oracle.
    let mut recs = read_feed(
        &dir.join("students.csv"),
        0,
        1,
        &[
            ("UG", "UNDERGRAD"),
            ("GR", "GRAD"),
            ("FAC", "FACULTY"),
            ("STF", "STAFF"),
        ],
    );
    let next = recs.len() as u64 + 1;
    recs.extend(read_feed(
        &dir.join("employees.csv"),
        1,
        next,
        &[("FAC", "FACULTY"), ("STF", "STAFF"), ("GRA", "GRAD")],
    ));
    let mut people: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in recs.iter().enumerate() {
        people.entry(r.id.as_str()).or_default().push(i);
    }
    let mut decisions: Vec<(u64, Vec<String>)> = Vec::new();
    let mut superseded = HashSet::new();
    for members in people.values_mut() {
        if members.len() < 2 {
            continue;
        }
        members.sort_by_key(|&i| (rank(recs[i].group), recs[i].source, recs[i].number));
        let w = &recs[members[0]];
        for &l in &members[1..] {
            let lo = &recs[l];
            superseded.insert(l);
            let rule = if rank(w.group) != rank(lo.group) {
                "user_group_rank"
            } else if w.source != lo.source {
                "source_order"
            } else {
                "input_order"
            };
            let name = |s: usize| ["students", "employees"][s].to_string();
            decisions.push((
                w.number,
                vec![
                    w.id.clone(),
                    name(w.source),
                    w.line.to_string(),
                    w.group.to_string(),
                    name(lo.source),
                    lo.line.to_string(),
                    lo.group.to_string(),
                    rule.to_string(),
                ],
            ));
        }
    }
    // Stable sort: losers of one person keep their precedence order.
    decisions.sort_by_key(|d| d.0);
    let expected: Vec<Vec<String>> = decisions.into_iter().map(|d| d.1).collect();
    let got: Vec<Vec<String>> = csv::Reader::from_path(out.join("duplicates.csv"))
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            [0, 1, 3, 4, 6, 8, 10, 11]
                .iter()
                .map(|&i| r[i].to_string())
                .collect()
        })
        .collect();
    assert!(
        expected.len() > 2_500,
        "overlap too small: {}",
        expected.len()
    );
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }

    // Collisions between different people: first wins in output order.
    let mut taken: HashSet<String> = HashSet::new();
    let mut expected_rejects: Vec<(String, u64)> = Vec::new();
    let mut written = 0;
    for (i, r) in recs.iter().enumerate() {
        if superseded.contains(&i) {
            continue;
        }
        let mut ids = vec![r.id.to_lowercase()];
        if !r.barcode.is_empty() && !r.barcode.eq_ignore_ascii_case(&r.id) {
            ids.push(r.barcode.to_lowercase());
        }
        if ids.iter().any(|v| taken.contains(v)) {
            let file = ["students.csv", "employees.csv"][r.source];
            expected_rejects.push((file.to_string(), r.line));
        } else {
            taken.extend(ids);
            written += 1;
        }
    }
    assert!(!expected_rejects.is_empty(), "no collisions generated");
    let got: Vec<(String, u64)> = rejects(&out)
        .into_iter()
        .map(|r| {
            assert_eq!(r["reason"], "duplicate_id", "{r:?}");
            assert!(r["message"].contains("(source "), "{r:?}");
            let file = Path::new(&r["source_file"])
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (file, r["line"].parse().unwrap())
        })
        .collect();
    assert_eq!(got, expected_rejects);

    let s = assert_books(&out);
    assert_eq!(s["users_written"].as_u64().unwrap(), written);
    assert_eq!(
        s["job"]["superseded"].as_u64().unwrap(),
        superseded.len() as u64
    );
    let by_source: BTreeMap<String, u64> = s["job"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap().to_string(),
                x["records"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_source["students"], 100_000);
    assert_eq!(by_source["employees"], 30_000);
    let ids = primary_ids(&out);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    assert_xsd_valid(&out);
}

/// A job whose HR feed is Windows-1252 decodes it like `convert` does:
/// the package equals the one from the same feed in UTF-8, and `check`
/// finds nothing Alma would refuse in it.
#[test]
fn job_sources_decode_their_own_encoding() {
    let tmp = tempfile::tempdir().unwrap();
    let ex = root().join("examples/job");
    let csv = fs::read_to_string(ex.join("employees.csv")).unwrap();
    assert!(csv.contains("Marguerite"), "example changed");
    // One accented name, so the encodings differ in bytes.
    let csv = csv.replace("Marguerite", "Margérite");
    let profile = fs::read_to_string(ex.join("employees.toml")).unwrap();
    let job = fs::read_to_string(ex.join("job.toml"))
        .unwrap()
        .replace(
            "\"../students.toml\"",
            &format!("{:?}", root().join("examples/students.toml")),
        )
        .replace(
            "\"students.csv\"",
            &format!("{:?}", ex.join("students.csv")),
        );
    let mut outs = Vec::new();
    for (name, encoding) in [("utf8", "utf-8"), ("cp1252", "windows-1252")] {
        let dir = tmp.path().join(name);
        fs::create_dir(&dir).unwrap();
        let bytes = encoding_rs::Encoding::for_label(encoding.as_bytes())
            .unwrap()
            .encode(&csv)
            .0
            .into_owned();
        assert_eq!(bytes.len() < csv.len(), encoding == "windows-1252");
        fs::write(dir.join("employees.csv"), bytes).unwrap();
        fs::write(
            dir.join("employees.toml"),
            profile.replace(
                "format = \"delimited\"",
                &format!("format = \"delimited\"\nencoding = \"{encoding}\""),
            ),
        )
        .unwrap();
        fs::write(dir.join("job.toml"), &job).unwrap();
        let out = dir.join("out");
        let o = run_job(&dir.join("job.toml"), &out, &["--max-reject-rate", "20"]);
        assert_status(&o, 0);
        assert_books(&out);
        outs.push(out);
    }
    let entries = xml_entries(&outs[0]);
    assert!(entries.iter().any(|(_, x)| x.contains("Margérite")));
    assert_eq!(entries, xml_entries(&outs[1]));
    let o = patronload()
        .arg("check")
        .args(
            dir_files(&outs[1])
                .keys()
                .filter(|n| n.ends_with(".zip"))
                .map(|n| outs[1].join(n)),
        )
        .output()
        .unwrap();
    assert_status(&o, 0);
}

/// Merging on generated feeds, with a source split over two files: a
/// superseded record may come before its winner (read again in the second
/// pass) or after it (kept from the first), and whichever it is, every
/// value `duplicates.csv` lists as merged is in the winner's user, every
/// value it lists as not merged is not, and the winner carries one email
/// per address merged.
#[test]
fn merged_values_reach_the_winner_whichever_record_comes_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let students = GenOptions {
        rows: 12_000,
        seed: 31,
        dup_rate: 0.0,
        bad_rate: 0.0,
    };
    generate(
        &students,
        fs::File::create(dir.join("students.csv")).unwrap(),
        std::io::sink(),
    )
    .unwrap();
    let mut hr = Vec::new();
    let employees = EmployeeOptions {
        rows: 12_000,
        seed: 37,
        students: students.rows,
        overlap: 0.3,
        collide: 0.01,
    };
    generate_employees(&employees, &mut hr).unwrap();
    // Two files of one layout, each with the header.
    let hr = String::from_utf8(hr).unwrap();
    let (header, body) = hr.split_once('\n').unwrap();
    let lines: Vec<&str> = body.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    for (name, part) in [("hr1.csv", a), ("hr2.csv", b)] {
        fs::write(dir.join(name), format!("{header}\n{}\n", part.join("\n"))).unwrap();
    }
    let job = dir.join("job.toml");
    fs::write(
        &job,
        format!(
            "[people]\ngroup_rank = [\"FACULTY\", \"STAFF\", \"GRAD\", \"UNDERGRAD\"]\nmerge = true\n\n\
             [[source]]\nname = \"students\"\nprofile = {:?}\ninputs = [\"students.csv\"]\n\n\
             [[source]]\nname = \"employees\"\nprofile = {:?}\ninputs = [\"hr1.csv\", \"hr2.csv\"]\n",
            root().join("examples/students.toml"),
            root().join("examples/job/employees.toml"),
        ),
    )
    .unwrap();
    let out = dir.join("out");
    assert_status(&run_job(&job, &out, &["--max-reject-rate", "100"]), 0);
    assert_books(&out);

    let mut users: HashMap<String, String> = HashMap::new();
    for (_, xml) in xml_entries(&out) {
        for user in xml.split("<user>").skip(1) {
            let id = user.split("<primary_id>").nth(1).unwrap();
            let id = id.split('<').next().unwrap().to_string();
            users.insert(id, user.to_string());
        }
    }
    let (mut before, mut after, mut left) = (0, 0, 0);
    let mut emails_merged: HashMap<String, usize> = HashMap::new();
    for r in csv::Reader::from_path(out.join("duplicates.csv"))
        .unwrap()
        .records()
    {
        let r = r.unwrap();
        if &r[5] != "written" {
            continue;
        }
        let user = &users[&r[0]];
        let merged: Vec<&str> = r[12].split(';').filter(|v| !v.is_empty()).collect();
        for v in &merged {
            match v.strip_prefix("BARCODE:") {
                Some(code) => assert!(user.contains(&format!("<value>{code}</value>")), "{r:?}"),
                None if v.starts_with("email from line ") => {
                    *emails_merged.entry(r[0].to_string()).or_default() += 1
                }
                None => assert!(v.starts_with("phone from line "), "{r:?}"),
            }
        }
        for v in r[13].split(';').filter(|v| !v.is_empty()) {
            let code = v
                .strip_prefix("BARCODE:")
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            assert!(!user.contains(&format!("<value>{code}</value>")), "{r:?}");
            left += 1;
        }
        if merged.iter().any(|v| v.starts_with("BARCODE:")) {
            // Students come first in the job: a superseded student record
            // was read before an employee winner.
            match (&r[1], &r[6]) {
                ("employees", "students") => before += 1,
                ("students", "employees") => after += 1,
                _ => {}
            }
        }
    }
    assert!(
        before > 100 && after > 100,
        "{before} before, {after} after"
    );
    assert!(left > 0, "no merged value was taken by someone else");
    for (id, n) in &emails_merged {
        // Merged emails join as non-preferred: the user keeps one
        // preferred email, its own.
        let user = &users[id];
        assert!(
            user.matches("<email preferred=\"true\"").count() <= 1,
            "{id}"
        );
        assert!(
            user.matches("<email preferred=\"false\"").count() >= *n,
            "{id}"
        );
    }
    assert!(!emails_merged.is_empty());
}
