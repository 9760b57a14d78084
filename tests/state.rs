//! Issue 14: nights of generated extracts against a state file, each
//! checked against an oracle written here that recomputes the expected
//! classification from the extracts alone (it shares no code with
//! `src/state`): new, changed, unchanged, departed, returned; delta
//! packages; departed patrons expired; guards; crash between publish and
//! commit; `history`; a job with `[state]`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Output;

use patronload::gen::{generate, GenOptions};

use crate::util::*;

/// An extract as rows: primary id (upper-cased, as the profile maps it)
/// → the whole CSV record.
#[derive(Clone)]
struct Extract {
    header: csv::StringRecord,
    rows: Vec<csv::StringRecord>,
}

impl Extract {
    fn read(path: &Path) -> Extract {
        let mut r = csv::Reader::from_path(path).unwrap();
        let header = r.headers().unwrap().clone();
        let rows = r.records().map(|x| x.unwrap()).collect();
        Extract { header, rows }
    }

    fn write(&self, path: &Path) {
        let mut w = csv::Writer::from_path(path).unwrap();
        w.write_record(&self.header).unwrap();
        for r in &self.rows {
            w.write_record(r).unwrap();
        }
        w.flush().unwrap();
    }

    fn col(&self, name: &str) -> usize {
        self.header.iter().position(|h| h == name).unwrap()
    }

    fn id(&self, r: &csv::StringRecord) -> String {
        r[self.col("EMPLID")].trim().to_uppercase()
    }

    /// id → record text, for the rows in `written`.
    fn by_id(&self, written: &BTreeSet<String>) -> BTreeMap<String, String> {
        self.rows
            .iter()
            .map(|r| (self.id(r), r.iter().collect::<Vec<_>>().join("\u{1f}")))
            .filter(|(id, _)| written.contains(id))
            .collect()
    }
}

/// The oracle's view of one night: expected kind per primary id.
fn expected(
    prev: &BTreeMap<String, String>,
    departed_before: &BTreeSet<String>,
    now: &BTreeMap<String, String>,
) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    for (id, row) in now {
        let kind = if departed_before.contains(id) {
            "returned"
        } else {
            match prev.get(id) {
                None => "new",
                Some(p) if p == row => "unchanged",
                Some(_) => "changed",
            }
        };
        out.insert(id.clone(), kind);
    }
    for id in prev.keys() {
        if !now.contains_key(id) && !departed_before.contains(id) {
            out.insert(id.clone(), "departed");
        }
    }
    out
}

/// The example profile with a fixed expiry date instead of one counted
/// from `--as-of`: a date rule relative to the run date changes those
/// users every night, which a nightly delta must not be made of.
fn profile(dir: &Path) -> PathBuf {
    let p = dir.join("students.toml");
    if !p.exists() {
        let text = fs::read_to_string(root().join("examples/students.toml")).unwrap();
        let fixed = text.replace(
            r#"by_group = { FACULTY = "+3y", STAFF = "+2y" }, default = "+1y""#,
            r#"default = "2027-08-31""#,
        );
        assert_ne!(fixed, text);
        fs::write(&p, fixed).unwrap();
    }
    p
}

struct Night {
    out: PathBuf,
    output: Output,
}

fn night(dir: &Path, name: &str, input: &Path, as_of: &str, extra: &[&str]) -> Night {
    let out = dir.join(name);
    let mut cmd = patronload();
    cmd.arg("convert")
        .arg("--profile")
        .arg(profile(dir))
        .arg("--out")
        .arg(&out)
        .args(["--as-of", as_of])
        .arg("--state")
        .arg(dir.join("state.db"))
        .args(["--users-per-file", "300"])
        .args(extra)
        .arg(input);
    let output = cmd.output().unwrap();
    Night { out, output }
}

/// The users in a package: primary id → its `<user>` element.
fn users(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (_, text) in xml_entries(dir) {
        for u in text.split("<user>").skip(1) {
            let u = u.split("</user>").next().unwrap();
            let id = u
                .split("<primary_id>")
                .nth(1)
                .unwrap()
                .split("</primary_id>")
                .next()
                .unwrap();
            assert!(
                m.insert(id.to_string(), u.to_string()).is_none(),
                "{id} twice"
            );
        }
    }
    m
}

/// `changes.csv`: primary id → (kind, fields).
fn changes(dir: &Path) -> BTreeMap<String, (String, String)> {
    let mut r = csv::Reader::from_path(dir.join("changes.csv")).unwrap();
    assert_eq!(r.headers().unwrap(), vec!["primary_id", "kind", "fields"]);
    r.records()
        .map(|x| {
            let x = x.unwrap();
            (x[0].to_string(), (x[1].to_string(), x[2].to_string()))
        })
        .collect()
}

fn count(kinds: &BTreeMap<String, &str>, kind: &str) -> u64 {
    kinds.values().filter(|k| **k == kind).count() as u64
}

fn assert_changes(s: &serde_json::Value, kinds: &BTreeMap<String, &str>) {
    for k in ["new", "changed", "unchanged", "departed", "returned"] {
        assert_eq!(
            s["changes"][k].as_u64().unwrap(),
            count(kinds, k),
            "changes.{k}: {}",
            s["changes"]
        );
    }
}

/// Written ids per the generator's ground truth.
fn written_ids(truth: &Path) -> BTreeSet<String> {
    let mut r = csv::Reader::from_path(truth).unwrap();
    r.deserialize::<BTreeMap<String, String>>()
        .map(|x| x.unwrap())
        .filter(|x| x["outcome"] == "written")
        .map(|x| x["primary_id"].to_uppercase())
        .collect()
}

#[test]
fn nights_of_a_feed_against_an_oracle() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let base = dir.join("n1.csv");
    let truth = dir.join("truth.csv");
    generate(
        &GenOptions {
            rows: 2000,
            seed: 14,
            dup_rate: 0.0,
            bad_rate: 0.0,
        },
        BufWriter::new(File::create(&base).unwrap()),
        BufWriter::new(File::create(&truth).unwrap()),
    )
    .unwrap();
    let ok = written_ids(&truth);
    let x1 = Extract::read(&base);
    let rows1 = x1.by_id(&ok);
    assert!(rows1.len() > 1900, "{}", rows1.len());

    // Night 1: full, everyone new.
    let n1 = night(dir, "out1", &base, "2026-12-01", &[]);
    assert_status(&n1.output, 0);
    let s1 = summary(&n1.out);
    let k1 = expected(&BTreeMap::new(), &BTreeSet::new(), &rows1);
    assert_changes(&s1, &k1);
    assert_eq!(users(&n1.out).len(), rows1.len());
    let mode = fs::metadata(dir.join("state.db")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    // Night 2: the same extract, delta: nothing to send, no zip.
    let n2 = night(
        dir,
        "out2",
        &base,
        "2026-12-02",
        &["--package", "delta", "--departed", "expire"],
    );
    assert_status(&n2.output, 0);
    let s2 = summary(&n2.out);
    assert_changes(&s2, &expected(&rows1, &BTreeSet::new(), &rows1));
    assert!(s2["zips"].as_array().unwrap().is_empty());
    assert!(changes(&n2.out).is_empty());
    assert!(String::from_utf8_lossy(&n2.output.stderr).contains("nothing to send"));
    // report.html shows the changes and the trend of the committed runs
    // (night 1) and this one: two points.
    let html = std::fs::read_to_string(n2.out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"changes\">"));
    let trend = &html[html
        .find("<section id=\"trend\">")
        .expect("a trend section")..];
    let trend = &trend[..trend.find("</section>").unwrap()];
    assert!(trend.contains("the last 2 runs"), "{trend}");

    // Night 3: 1 % of last names changed, 2 % gone, 20 new.
    let mut x3 = x1.clone();
    let last = x3.col("LAST_NAME");
    let (emplid, barcode) = (x3.col("EMPLID"), x3.col("BARCODE"));
    let mut rows = Vec::new();
    for (i, r) in x3.rows.iter().enumerate() {
        if i % 50 == 7 {
            continue;
        }
        let mut r = r.clone();
        if i % 100 == 3 {
            let v: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(j, f)| if j == last { format!("{f}x") } else { f.into() })
                .collect();
            r = csv::StringRecord::from(v);
        }
        rows.push(r);
    }
    for i in 0..20 {
        let mut v: Vec<String> = x1.rows[i].iter().map(str::to_string).collect();
        v[emplid] = format!("N{i:07}");
        v[barcode] = format!("9{i:013}");
        rows.push(csv::StringRecord::from(v));
    }
    x3.rows = rows;
    let in3 = dir.join("n3.csv");
    x3.write(&in3);
    let mut ok3 = ok.clone();
    ok3.extend((0..20).map(|i| format!("N{i:07}")));
    let rows3 = x3.by_id(&ok3);
    let k3 = expected(&rows1, &BTreeSet::new(), &rows3);
    assert!(count(&k3, "changed") >= 15 && count(&k3, "departed") >= 35);
    let delta = ["--package", "delta", "--departed", "expire"];
    let state_after_2 = fs::read(dir.join("state.db")).unwrap();
    let n3 = night(dir, "out3", &in3, "2026-12-03", &delta);
    assert_status(&n3.output, 0);
    let s3 = summary(&n3.out);
    assert_changes(&s3, &k3);
    // The delta holds exactly the new, changed and departed users.
    let sent3 = users(&n3.out);
    let want: BTreeSet<&String> = k3
        .iter()
        .filter(|(_, k)| **k != "unchanged")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(sent3.keys().collect::<BTreeSet<_>>(), want);
    let c3 = changes(&n3.out);
    for (id, kind) in &k3 {
        match *kind {
            "unchanged" => assert!(!c3.contains_key(id)),
            "changed" => assert_eq!(c3[id], ("changed".into(), "last_name".into()), "{id}"),
            "departed" => {
                assert_eq!(c3[id], ("departed".into(), "expired".into()), "{id}");
                let u = &sent3[id];
                assert!(u.contains("<expiry_date>2026-12-03</expiry_date>"), "{u}");
                assert!(u.contains("<purge_date>2027-12-03</purge_date>"), "{u}");
                assert!(
                    u.contains("<note_text>Not in the SIS feed since 2026-12-03</note_text>"),
                    "{u}"
                );
                // Everything else as last sent (swap all keeps the data).
                let before = &users(&n1.out)[id];
                assert!(u.contains(before.split("<expiry_date>").next().unwrap()));
            }
            k => assert_eq!(c3[id].0, k, "{id}"),
        }
    }
    assert_eq!(s3["changes_by_field"]["last_name"], count(&k3, "changed"));
    assert_xsd_valid(&n3.out);
    // Any engine, any thread count: the same package.
    let alt = dir.join("alt");
    fs::create_dir(&alt).unwrap();
    fs::write(alt.join("state.db"), &state_after_2).unwrap();
    for extra in [
        &["--reference"][..],
        &["--threads", "3", "--shard-bytes", "4096"],
    ] {
        let mut args = delta.to_vec();
        args.extend(extra);
        let n = night(&alt, "out", &in3, "2026-12-03", &args);
        assert_status(&n.output, 0);
        let zips = |d: &Path| {
            dir_files(d)
                .into_iter()
                .filter(|(k, _)| k.ends_with(".zip") || k == "changes.csv")
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(zips(&n.out), zips(&n3.out));
        fs::write(alt.join("state.db"), &state_after_2).unwrap();
        let _ = fs::remove_file(alt.join("state.db-wal"));
    }

    // Night 4: half the extract: the guards trip, nothing moves.
    let mut x4 = x3.clone();
    x4.rows.truncate(x4.rows.len() / 2);
    let in4 = dir.join("n4.csv");
    x4.write(&in4);
    let state_before = fs::read(dir.join("state.db")).unwrap();
    let out3_before = dir_files(&n3.out);
    let n4 = night(dir, "out3", &in4, "2026-12-04", &delta);
    assert_status(&n4.output, 4);
    let err = String::from_utf8_lossy(&n4.output.stderr);
    assert!(err.contains("population_drop"), "{err}");
    assert!(err.contains("departed"), "{err}");
    assert_eq!(fs::read(dir.join("state.db")).unwrap(), state_before);
    assert_eq!(dir_files(&n3.out), out3_before);

    // Night 5: the same, let through.
    let mut args = delta.to_vec();
    args.push("--accept-changes");
    let n5 = night(dir, "out5", &in4, "2026-12-05", &args);
    assert_status(&n5.output, 0);
    let s5 = summary(&n5.out);
    assert_eq!(s5["state"]["accepted_changes"], true);
    let rows4 = x4.by_id(&ok3);
    let gone3: BTreeSet<String> = k3
        .iter()
        .filter(|(_, k)| **k == "departed")
        .map(|(id, _)| id.clone())
        .collect();
    let k5 = expected(&rows3, &gone3, &rows4);
    assert_changes(&s5, &k5);
    assert!(s5["guards"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "population_drop" && g["tripped"] == true));

    // Night 6: the whole night-3 extract again: the departed come back.
    let gone5: BTreeSet<String> = k5
        .iter()
        .filter(|(_, k)| **k == "departed")
        .map(|(id, _)| id.clone())
        .collect();
    let mut departed = gone3.clone();
    departed.extend(gone5.iter().cloned());
    let n6 = night(dir, "out6", &in3, "2026-12-06", &["--package", "delta"]);
    assert_status(&n6.output, 0);
    let s6 = summary(&n6.out);
    let k6 = expected(&rows4, &departed, &rows3);
    assert_changes(&s6, &k6);
    assert_eq!(count(&k6, "returned"), gone5.len() as u64);
    let sent6 = users(&n6.out);
    assert_eq!(sent6.len() as u64, count(&k6, "returned"));
    for id in &gone5 {
        assert!(
            !sent6[id].contains("Not in the SIS feed"),
            "a returned patron is sent as the feed has them"
        );
    }

    // history: new on night 1, changed on 3, departed (expired) on 5,
    // returned on 6.
    let who = k3
        .iter()
        .find(|(id, k)| **k == "changed" && gone5.contains(*id))
        .map(|(id, _)| id.clone())
        .expect("a patron changed on night 3 and gone on night 5");
    let h = patronload()
        .args(["history", "--state"])
        .arg(dir.join("state.db"))
        .arg(who.to_lowercase())
        .output()
        .unwrap();
    assert_status(&h, 0);
    let text = String::from_utf8(h.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            format!("primary_id {who}").as_str(),
            "run 1 2026-12-01 new",
            "run 2 2026-12-02 seen",
            "run 3 2026-12-03 changed last_name",
            "run 4 2026-12-05 departed expired",
            "run 5 2026-12-06 returned",
        ]
    );
    let h = patronload()
        .args(["history", "--xml", "--state"])
        .arg(dir.join("state.db"))
        .arg(&who)
        .output()
        .unwrap();
    assert_status(&h, 0);
    let xml = String::from_utf8(h.stdout).unwrap();
    assert_eq!(xml.trim_end(), format!("  <user>{}</user>", sent6[&who]));

    // Crash between publish and commit: published, not committed; the
    // next run sends the same users again and says so.
    let mut x7 = x3.clone();
    for r in x7.rows.iter_mut().take(10) {
        let v: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(j, f)| if j == last { format!("{f}y") } else { f.into() })
            .collect();
        *r = csv::StringRecord::from(v);
    }
    let in7 = dir.join("n7.csv");
    x7.write(&in7);
    let out7 = dir.join("out7");
    let crashed = patronload()
        .env("PATRONLOAD_CRASH_BEFORE_COMMIT", "1")
        .arg("convert")
        .arg("--profile")
        .arg(profile(dir))
        .arg("--out")
        .arg(&out7)
        .args(["--as-of", "2026-12-07", "--package", "delta", "--state"])
        .arg(dir.join("state.db"))
        .arg(&in7)
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    assert_eq!(users(&out7).len(), 10, "published before the crash");
    let n8 = night(dir, "out8", &in7, "2026-12-08", &["--package", "delta"]);
    assert_status(&n8.output, 0);
    let s8 = summary(&n8.out);
    assert_eq!(s8["state"]["abandoned_runs"], serde_json::json!([6]));
    assert_eq!(s8["changes"]["changed"], 10);
    assert_eq!(
        users(&n8.out).keys().collect::<Vec<_>>(),
        users(&out7).keys().collect::<Vec<_>>()
    );
    assert!(String::from_utf8_lossy(&n8.output.stderr).contains("never committed"));
    // Committed now: the night after has nothing to send.
    let n9 = night(dir, "out9", &in7, "2026-12-09", &["--package", "delta"]);
    assert_status(&n9.output, 0);
    let s9 = summary(&n9.out);
    assert_eq!(s9["changes"]["changed"], 0);
    assert_eq!(s9["state"]["abandoned_runs"], serde_json::json!([]));
}

#[test]
fn a_job_remembers_through_its_state_table() {
    let t = tempfile::tempdir().unwrap();
    let src = root().join("examples/job");
    let jd = t.path().join("job");
    fs::create_dir(&jd).unwrap();
    for f in ["employees.csv", "employees.toml", "students.csv"] {
        fs::copy(src.join(f), jd.join(f)).unwrap();
    }
    fs::copy(
        root().join("examples/students.toml"),
        t.path().join("students.toml"),
    )
    .unwrap();
    let mut job = fs::read_to_string(src.join("job.toml")).unwrap();
    job.push_str("\n[state]\npath = \"../state.db\"\npackage = \"delta\"\n");
    let job_path = jd.join("job.toml");
    fs::write(&job_path, job).unwrap();
    let run = |out: &str| {
        patronload()
            .args([
                "convert",
                "--as-of",
                "2026-12-01",
                "--max-reject-rate",
                "50",
                "--job",
            ])
            .arg(&job_path)
            .arg("--out")
            .arg(t.path().join(out))
            .output()
            .unwrap()
    };
    let o = run("a");
    assert_status(&o, 0);
    let s = summary(&t.path().join("a"));
    let written = s["users_written"].as_u64().unwrap();
    assert_eq!(s["changes"]["new"].as_u64().unwrap(), written);
    assert_eq!(user_count(&t.path().join("a")) as u64, written);
    assert!(t.path().join("state.db").exists());
    let o = run("b");
    assert_status(&o, 0);
    let s = summary(&t.path().join("b"));
    assert_eq!(s["changes"]["unchanged"].as_u64().unwrap(), written);
    assert_eq!(user_count(&t.path().join("b")), 0);
}

#[test]
fn a_rejected_record_does_not_expire_its_patron() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let base = dir.join("n1.csv");
    generate(
        &GenOptions {
            rows: 200,
            seed: 41,
            dup_rate: 0.0,
            bad_rate: 0.0,
        },
        BufWriter::new(File::create(&base).unwrap()),
        std::io::sink(),
    )
    .unwrap();
    let n1 = night(dir, "out1", &base, "2026-12-01", &[]);
    assert_status(&n1.output, 0);
    // One patron's record now has an unreadable expiry date: rejected.
    let mut x = Extract::read(&base);
    let exp = x.col("EXPIRY_DATE");
    let who = x.id(&x.rows[5]);
    let v: Vec<String> = x.rows[5]
        .iter()
        .enumerate()
        .map(|(j, f)| {
            if j == exp {
                "31/31/2027".into()
            } else {
                f.into()
            }
        })
        .collect();
    x.rows[5] = csv::StringRecord::from(v);
    let in2 = dir.join("n2.csv");
    x.write(&in2);
    let n2 = night(
        dir,
        "out2",
        &in2,
        "2026-12-02",
        &[
            "--package",
            "delta",
            "--departed",
            "expire",
            "--max-reject-rate",
            "50",
        ],
    );
    assert_status(&n2.output, 0);
    let s = summary(&n2.out);
    assert_eq!(s["rejected"], 1);
    assert_eq!(rejects(&n2.out)[0]["primary_id"].to_uppercase(), who);
    assert_eq!(s["changes"]["departed"], 0);
    assert!(users(&n2.out).is_empty());
}
