//! `patronload check` and `repack`: golden samples, one crafted fixture
//! per reason code (tests/data/check/README.md), untrusted zips, and
//! repacked output that validates and checks clean.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{self, assert_status, patronload};

fn data(name: &str) -> PathBuf {
    util::root().join("tests/data/check").join(name)
}

fn check(inputs: &[&Path], extra: &[&str]) -> (Output, serde_json::Value) {
    let out = patronload()
        .arg("check")
        .arg("--json")
        .args(extra)
        .args(inputs)
        .output()
        .expect("run patronload");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out, json)
}

/// (code, line, primary id) of every finding, in report order.
fn findings(json: &serde_json::Value) -> Vec<(String, u64, Option<String>)> {
    json["findings"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
                f["primary_id"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn repack(out: &Path, inputs: &[&Path], extra: &[&str]) -> Output {
    patronload()
        .arg("repack")
        .arg("--out")
        .arg(out)
        .args(["--as-of", "2026-11-24"])
        .args(extra)
        .args(inputs)
        .output()
        .expect("run patronload")
}

fn zip_of(path: &Path, entries: &[(&str, &[u8])]) {
    let f = fs::File::create(path).unwrap();
    let mut w = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap();
}

#[test]
fn mit_sample_has_exactly_its_real_defects() {
    let Some(reference) = util::reference() else {
        return;
    };
    let mit = reference.join("samples/mit-alma-patronload-student_patrons.xml");
    let (out, json) = check(&[&mit], &[]);
    assert_status(&out, 3);
    let a = Some("STUDENT_KRB_NAME@MIT.EDU".to_string());
    let b = Some("2STUDENT_KRB_NAME@MIT.EDU".to_string());
    // The same lines xmllint names (after renaming the root), plus the
    // root itself.
    assert_eq!(
        findings(&json),
        [
            ("root_element".into(), 2, None),
            ("empty_date".into(), 24, a.clone()),
            ("empty_boolean".into(), 67, a),
            ("empty_date".into(), 119, b.clone()),
            ("empty_boolean".into(), 145, b),
        ]
    );
    assert_eq!(json["users"], 2);
}

#[test]
fn synthetic_valid_sample_passes() {
    let Some(reference) = util::reference() else {
        return;
    };
    let ok = reference.join("samples/synthetic-valid-users.xml");
    let (out, json) = check(&[&ok], &[]);
    assert_status(&out, 0);
    assert_eq!(findings(&json), []);
    assert_eq!(json["users"], 2);
    // The human form says so too.
    let out = patronload().arg("check").arg(&ok).output().unwrap();
    assert_status(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn each_reason_code_fixture_is_reported_on_its_line() {
    // (fixture, code, line, primary id)
    let cases: &[(&str, &str, u64, Option<&str>)] = &[
        ("not_well_formed.xml", "not_well_formed", 6, None),
        ("no_declaration.xml", "no_declaration", 1, None),
        ("bom.xml", "bom", 1, None),
        (
            "content_before_prolog.xml",
            "content_before_prolog",
            1,
            None,
        ),
        ("not_utf8.xml", "not_utf8", 1, None),
        ("invalid_encoding.xml", "invalid_encoding", 6, Some("P1")),
        ("forbidden_char.xml", "forbidden_char", 6, Some("P1")),
        ("namespace.xml", "namespace", 2, None),
        ("root_element.xml", "root_element", 2, None),
        ("unknown_element.xml", "unknown_element", 6, Some("P1")),
        ("v1_element.xml", "v1_element", 6, Some("P1")),
        ("repeated_element.xml", "repeated_element", 6, Some("P1")),
        ("element_order.xml", "element_order", 10, Some("P1")),
        ("unknown_attribute.xml", "unknown_attribute", 6, Some("P1")),
        ("unexpected_text.xml", "unexpected_text", 6, Some("P1")),
        ("missing_field.xml", "missing_field", 8, Some("P1")),
        ("missing_primary_id.xml", "missing_field", 3, Some("")),
        ("empty_date.xml", "empty_date", 6, Some("P1")),
        ("invalid_date.xml", "invalid_date", 6, Some("P1")),
        ("empty_boolean.xml", "empty_boolean", 6, Some("P1")),
        ("invalid_boolean.xml", "invalid_boolean", 8, Some("P1")),
        ("empty_number.xml", "empty_number", 6, Some("P1")),
        ("invalid_number.xml", "invalid_number", 6, Some("P1")),
        ("too_long.xml", "too_long", 6, Some("P1")),
        ("empty_identifier.xml", "empty_identifier", 8, Some("P1")),
        (
            "empty_statistic_category.xml",
            "empty_statistic_category",
            7,
            Some("P1"),
        ),
        (
            "multiple_preferred.xml",
            "multiple_preferred",
            9,
            Some("P1"),
        ),
        (
            "id_repeated_in_user.xml",
            "id_repeated_in_user",
            7,
            Some("P1"),
        ),
        ("duplicate_id.xml", "duplicate_id", 14, Some("P2")),
        ("unknown_code.xml", "unknown_code", 6, Some("P1")),
    ];
    let codes = data("codes");
    let mut failures = Vec::new();
    for (file, code, line, pid) in cases {
        let (out, json) = check(&[&data(file)], &["--codes", codes.to_str().unwrap()]);
        let got = findings(&json);
        let want = vec![(code.to_string(), *line, pid.map(str::to_string))];
        if out.status.code() != Some(3) || got != want {
            failures.push(format!(
                "{file}: want {want:?}, got {got:?} ({:?})",
                out.status
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn utf16_with_bom_is_reported_and_read() {
    let (out, json) = check(&[&data("utf16.xml")], &[]);
    assert_status(&out, 3);
    let codes: Vec<String> = findings(&json).into_iter().map(|f| f.0).collect();
    assert_eq!(codes, ["bom", "not_utf8"]);
    assert_eq!(json["users"], 1);
}

#[test]
fn zip_entries_are_read_in_stored_order_and_first_wins() {
    let dir = tempfile::tempdir().unwrap();
    let user = |pid: &str, barcode: &str| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user>\n    \
             <primary_id>{pid}</primary_id>\n    <user_identifiers><user_identifier>\
             <id_type>BARCODE</id_type><value>{barcode}</value></user_identifier>\
             </user_identifiers>\n  </user>\n</users>\n"
        )
    };
    let zip = dir.path().join("feed.zip");
    // Stored order z, then a: the user in z wins although a sorts first.
    zip_of(
        &zip,
        &[
            ("z.xml", user("Z1", "SAME").as_bytes()),
            ("a.xml", user("A1", "same").as_bytes()),
        ],
    );
    let (out, json) = check(&[&zip], &[]);
    assert_status(&out, 3);
    let f = &json["findings"][0];
    assert_eq!(f["code"], "duplicate_id");
    assert_eq!(f["entry"], "a.xml");
    assert_eq!(f["primary_id"], "A1");
    assert_eq!(f["line"], 5);
    assert!(f["message"].as_str().unwrap().contains("feed.zip!/z.xml"));
    assert_eq!(
        json["files"][0]["entries"],
        serde_json::json!(["z.xml", "a.xml"])
    );
}

#[test]
fn zip_slip_symlink_and_bomb_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ok = fs::read(data("empty_date.xml")).unwrap();
    let slip = dir.path().join("slip.zip");
    zip_of(&slip, &[("users.xml", &ok), ("../evil.xml", &ok)]);
    let (out, json) = check(&[&slip], &[]);
    assert_status(&out, 3);
    assert_eq!(json["findings"][0]["code"], "unsafe_zip");
    assert!(json["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("../evil.xml"));
    // Refused whole: not even the good entry is read.
    assert_eq!(json["users"], 0);

    let link = dir.path().join("link.zip");
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
    let (out, json) = check(&[&link], &[]);
    assert_status(&out, 3);
    assert_eq!(json["findings"][0]["code"], "unsafe_zip");

    // 64 MiB of zeros deflates to about 64 KiB: a 1000:1 bomb.
    let bomb = dir.path().join("bomb.zip");
    zip_of(&bomb, &[("users.xml", &vec![0u8; 64 << 20])]);
    assert!(fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let (out, json) = check(&[&bomb], &[]);
    assert_status(&out, 3);
    assert_eq!(json["findings"][0]["code"], "zip_bomb");

    // And repack refuses to build anything from them.
    for z in [&slip, &bomb] {
        let out_dir = dir.path().join("out");
        let out = repack(&out_dir, &[z], &[]);
        assert_status(&out, 1);
        assert!(!out_dir.exists(), "nothing published");
    }
}

#[test]
fn packaging_limits_of_zip_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut big = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n");
    for i in 0..200 {
        big.push_str(&format!(
            "  <user>\n    <primary_id>U{i:05}</primary_id>\n    <last_name>N{}</last_name>\n  </user>\n",
            i * 7919 % 1000
        ));
    }
    big.push_str("</users>\n");
    let z1 = dir.path().join("one.zip");
    zip_of(
        &z1,
        &[
            ("a.xml", big.as_bytes()),
            (
                "b.xml",
                b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users/>\n",
            ),
            ("notes.txt", b"hello"),
        ],
    );
    let (out, json) = check(
        &[&z1],
        &[
            "--files-per-zip",
            "1",
            "--max-zip-bytes",
            "1KiB",
            "--max-total-bytes",
            "1KiB",
        ],
    );
    assert_status(&out, 3);
    let mut codes: Vec<String> = findings(&json).into_iter().map(|f| f.0).collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            "directory_budget",
            "files_per_zip",
            "not_xml_entry",
            "zip_too_large"
        ]
    );
}

#[test]
fn unparseable_input_is_not_repacked() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = repack(&out_dir, &[&data("not_well_formed.xml")], &[]);
    assert_status(&out, 1);
    assert!(!out_dir.exists());
}

#[test]
fn repack_repairs_rejects_and_the_result_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let input = data("repack_mixed.xml");
    let out = repack(&out_dir, &[&input], &["--max-reject-rate", "100"]);
    assert_status(&out, 0);
    util::assert_xsd_valid(&out_dir);
    let s = util::summary(&out_dir);
    assert_eq!(s["records_read"], 6);
    assert_eq!(s["users_written"], 3);
    assert_eq!(
        s["rejected_by_reason"],
        serde_json::json!({"duplicate_id": 1, "missing_field": 1, "v1_element": 1})
    );
    assert_eq!(s["forbidden_chars_removed"], 1);
    assert_eq!(s["dropped_segments"]["empty_status_date"], 1);
    assert_eq!(s["dropped_segments"]["identifier_empty"], 1);
    assert_eq!(s["repaired"]["not_utf8"], 1);
    assert_eq!(s["repaired"]["root_element"], 1);
    let rejects = util::rejects(&out_dir);
    let rows: Vec<(String, String, String)> = rejects
        .iter()
        .map(|r| {
            (
                r["line"].clone(),
                r["primary_id"].clone(),
                r["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("31".into(), "R4".into(), "duplicate_id".into()),
            ("33".into(), "".into(), "missing_field".into()),
            ("39".into(), "R6".into(), "v1_element".into()),
        ]
    );
    let xml = &util::xml_entries(&out_dir)[0].1;
    assert!(xml.contains("<first_name>René</first_name>"), "{xml}");

    // The repacked package passes check.
    let zip = out_dir.join("alma_users_001.zip");
    let (out, json) = check(&[&zip], &[]);
    assert_status(&out, 0);
    assert_eq!(json["users"], 3);

    // Deterministic: a second run gives the same bytes.
    let again = dir.path().join("again");
    let out = repack(&again, &[&input], &["--max-reject-rate", "100"]);
    assert_status(&out, 0);
    assert_eq!(util::dir_files(&out_dir), util::dir_files(&again));

    // Above the reject threshold the run still publishes but exits 3.
    let strict = dir.path().join("strict");
    let out = repack(&strict, &[&input], &[]);
    assert_status(&out, 3);
    assert!(strict.join("summary.json").exists());
}

#[test]
fn repacked_mit_sample_validates_and_checks_clean() {
    let Some(reference) = util::reference() else {
        return;
    };
    let mit = reference.join("samples/mit-alma-patronload-student_patrons.xml");
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let out = repack(&out_dir, &[&mit], &["--users-per-file", "1"]);
    assert_status(&out, 0);
    util::assert_xsd_valid(&out_dir);
    let s = util::summary(&out_dir);
    assert_eq!(s["users_written"], 2);
    assert_eq!(s["dropped_segments"]["empty_status_date"], 2);
    assert_eq!(s["dropped_segments"]["empty_is_researcher"], 2);
    assert_eq!(s["zips"][0]["entries"].as_array().unwrap().len(), 2);
    let zips: Vec<PathBuf> = s["zips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| out_dir.join(z["name"].as_str().unwrap()))
        .collect();
    let refs: Vec<&Path> = zips.iter().map(PathBuf::as_path).collect();
    let (out, json) = check(&refs, &[]);
    assert_status(&out, 0);
    assert_eq!(json["users"], 2);
}

#[test]
fn oversized_user_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.xml");
    let note = "x".repeat(3000);
    fs::write(
        &p,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user>\n    \
             <primary_id>P1</primary_id>\n    <job_description>{note}</job_description>\n  \
             </user>\n</users>\n"
        ),
    )
    .unwrap();
    let opts = patronload::check::CheckOptions {
        max_user_bytes: 1000,
        ..Default::default()
    };
    let r = patronload::check::check(&[p], &opts).unwrap();
    assert_eq!(r.count(patronload::check::Code::UserTooLarge), 1);
    assert_eq!(r.users, 1);
}

#[test]
fn entry_inflating_past_its_declared_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let liar = dir.path().join("liar.zip");
    // 2 MiB of user-free XML whitespace, then the headers are edited to
    // declare 100 bytes: small enough to pass every check on declared
    // sizes, so only the read itself can catch it.
    let mut body = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>".to_vec();
    body.resize(2 << 20, b' ');
    body.extend_from_slice(b"</users>\n");
    zip_of(&liar, &[("users.xml", &body)]);
    let mut bytes = fs::read(&liar).unwrap();
    let declared = 100u32.to_le_bytes();
    assert_eq!(&bytes[..4], b"PK\x03\x04");
    bytes[22..26].copy_from_slice(&declared);
    let cd = bytes
        .windows(4)
        .rposition(|w| w == b"PK\x01\x02")
        .expect("central directory");
    bytes[cd + 24..cd + 28].copy_from_slice(&declared);
    fs::write(&liar, &bytes).unwrap();
    let (out, json) = check(&[&liar], &[]);
    assert_status(&out, 3);
    // The zip reader (or, failing that, our guard) stops the entry at
    // its declared size: never inflated to the end.
    assert_eq!(
        json["findings"][0]["code"], "zip_bomb",
        "{}",
        json["findings"]
    );
    assert_eq!(json["users"], 0);
    let dir_out = dir.path().join("out");
    assert_status(&repack(&dir_out, &[&liar], &[]), 1);
}

#[test]
fn usage_and_io_errors_have_their_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = check(&[&dir.path().join("missing.xml")], &[]);
    assert_status(&out, 1);
    let codes = dir.path().join("codes");
    fs::create_dir(&codes).unwrap();
    fs::write(codes.join("user_grups.csv"), "Code\nUG\n").unwrap();
    let (out, _) = check(
        &[&data("empty_date.xml")],
        &["--codes", codes.to_str().unwrap()],
    );
    assert_status(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("user_grups.csv"));
}

#[test]
fn repack_rejects_unknown_codes_and_text_between_users_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let codes = data("codes");
    let out = repack(
        &out_dir,
        &[&data("empty_date.xml"), &data("unknown_code.xml")],
        &[
            "--codes",
            codes.to_str().unwrap(),
            "--max-reject-rate",
            "100",
        ],
    );
    assert_status(&out, 0);
    // The first file's P1 is written (its empty date dropped); the second
    // file's P1 is rejected for its unknown code, and claims nothing.
    let rows = util::rejects(&out_dir);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["reason"], "unknown_code");
    assert!(rows[0]["source_file"].ends_with("unknown_code.xml"));
    util::assert_xsd_valid(&out_dir);

    let p = dir.path().join("stray.xml");
    fs::write(
        &p,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  oops\n  <user><primary_id>P1</primary_id></user>\n</users>\n",
    )
    .unwrap();
    let (out, json) = check(&[&p], &[]);
    assert_status(&out, 3);
    assert_eq!(findings(&json), [("unexpected_text".into(), 3, None)]);
}

#[test]
fn nested_zips_are_reported_and_not_repacked() {
    let dir = tempfile::tempdir().unwrap();
    let ok = fs::read(data("empty_date.xml")).unwrap();
    let inner = dir.path().join("inner.zip");
    zip_of(&inner, &[("more.xml", &ok)]);
    let inner = fs::read(&inner).unwrap();
    let outer = dir.path().join("outer.zip");
    // One by its name, one only by its bytes, one posing as XML.
    zip_of(
        &outer,
        &[
            ("users.xml", &ok),
            ("more_users.zip", &inner),
            ("more_users.dat", &inner),
            ("zipped.xml", &inner),
        ],
    );
    let (out, json) = check(&[&outer], &[]);
    assert_status(&out, 3);
    let entries: Vec<(String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "nested_zip")
        .map(|f| {
            (
                f["entry"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["more_users.zip", "more_users.dat", "zipped.xml"]);
    assert!(entries[0].1.contains("cannot be read"), "{}", entries[0].1);
    assert_eq!(json["users"], 1);
    assert_eq!(
        json["files"][0]["entries"],
        serde_json::json!(["users.xml"])
    );

    // repack refuses: publishing the outer users alone would drop the
    // inner ones silently.
    let out_dir = dir.path().join("out");
    let out = repack(&out_dir, &[&outer], &["--max-reject-rate", "100"]);
    assert_status(&out, 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nested_zip"), "{err}");
    assert!(!out_dir.exists(), "nothing published");
}

/// Runs `cmd` to its end; its exit status, stdout and peak resident set
/// in KiB, measured by GNU time (`.ci/run` installs it), or where it is
/// missing by Python's `resource` module.
///
/// Not the kernel's figure for our own child (`wait4`): a child spawned
/// from this test process starts from the test process's address space, and
/// its peak counts that space as it was before `exec`, so the figure grows
/// with whatever the other tests in this process hold at that moment. GNU
/// time and Python are small and start the command themselves.
#[cfg(target_os = "linux")]
fn run_peak(cmd: &mut std::process::Command) -> (i32, String, u64) {
    const PY: &str = "import resource, subprocess, sys\n\
                      p = subprocess.run(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n\
                      open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n\
                      sys.stdout.buffer.write(p.stdout)\n\
                      sys.exit(p.returncode)\n";
    let report = tempfile::NamedTempFile::new().unwrap();
    let time = std::path::Path::new("/usr/bin/time");
    let mut outer = if time.exists() {
        let mut c = std::process::Command::new(time);
        c.args(["-f", "%M", "-o"]).arg(report.path());
        c
    } else {
        let mut c = std::process::Command::new("python3");
        c.args(["-c", PY]).arg(report.path());
        c
    };
    let out = outer
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stderr(std::process::Stdio::null())
        .output()
        .expect("these memory tests need GNU time (apt-get install time) or python3");
    let text = std::fs::read_to_string(report.path()).unwrap();
    // GNU time writes "Command exited with non-zero status N" first when
    // the command fails; the figure is the last line.
    let peak = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {text:?}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        peak,
    )
}

/// Writes `len` bytes of letters to `w` in 1 MiB blocks: mostly `a`, a
/// pseudo-random letter every 1..1200 bytes, so it deflates about 150:1,
/// under the 250:1 bomb limit (as a real attack would keep it).
fn write_letters(w: &mut impl Write, len: usize) {
    let mut block = vec![b'a'; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    while i < block.len() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        block[i] = b'b' + (x % 25) as u8;
        i += 1 + (x >> 32) as usize % 1200;
    }
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len());
        w.write_all(&block[..n]).unwrap();
        left -= n;
    }
}

/// Each input is generated as a stream (never held); each is several
/// times the bound, so a reader buffering the node could not pass.
const HUGE: usize = 96 << 20;
/// The peak a check of them may take.
const MAX_RSS_KIB: u64 = 100 * 1024;

#[cfg(target_os = "linux")]
#[test]
fn huge_attribute_in_a_zip_is_reported_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("attr.zip");
    {
        let mut w = zip::ZipWriter::new(fs::File::create(&zip).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1));
        w.start_file("users.xml", opts).unwrap();
        w.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user x=\"")
            .unwrap();
        write_letters(&mut w, HUGE);
        w.write_all(
            b"\">\n    <primary_id>P1</primary_id>\n  </user>\n  <user>\n    \
              <primary_id>P2</primary_id>\n  </user>\n</users>\n",
        )
        .unwrap();
        w.finish().unwrap();
    }
    let packed = fs::metadata(&zip).unwrap().len();
    assert!(
        packed < HUGE as u64 / 50,
        "{packed} bytes: compressible like the attack"
    );
    let (code, stdout, peak) = run_peak(patronload().args(["check", "--json"]).arg(&zip));
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, 3, "{stdout}");
    // Under the bomb limit, so only the value is reported, and the user
    // after it is read as usual.
    assert_eq!(
        findings(&json),
        [("value_too_large".into(), 3, Some(String::new()))]
    );
    assert_eq!(json["users"], 2);
    assert!(peak <= MAX_RSS_KIB, "peak RSS {peak} KiB");
}

#[cfg(target_os = "linux")]
#[test]
fn huge_attribute_and_element_name_in_xml_are_reported_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let attr = dir.path().join("attr.xml");
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&attr).unwrap());
        f.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user>\n    <primary_id>P1</primary_id>\n    <user_group x=\"").unwrap();
        write_letters(&mut f, HUGE);
        f.write_all(b"\">UG</user_group>\n  </user>\n</users>\n")
            .unwrap();
        f.flush().unwrap();
    }
    let name = dir.path().join("name.xml");
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&name).unwrap());
        f.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user>\n    <primary_id>P1</primary_id>\n    <n").unwrap();
        write_letters(&mut f, HUGE);
        f.write_all(
            b"/>\n  </user>\n  <user>\n    <primary_id>P2</primary_id>\n  </user>\n</users>\n",
        )
        .unwrap();
        f.flush().unwrap();
    }
    for (path, users) in [(&attr, 1), (&name, 2)] {
        let (code, stdout, peak) = run_peak(patronload().args(["check", "--json"]).arg(path));
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(code, 3, "{stdout}");
        assert_eq!(
            findings(&json),
            [("value_too_large".into(), 5, Some("P1".into()))],
            "{}",
            path.display()
        );
        assert_eq!(json["users"], users);
        assert!(
            peak <= MAX_RSS_KIB,
            "{}: peak RSS {peak} KiB",
            path.display()
        );
    }
}

#[test]
fn repack_rejects_a_user_with_a_value_over_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.xml");
    let note = "x".repeat(2 << 20);
    fs::write(
        &p,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user>\n    \
             <primary_id>P1</primary_id>\n    <job_description>{note}</job_description>\n  \
             </user>\n  <user>\n    <primary_id>P2</primary_id>\n  </user>\n</users>\n"
        ),
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = repack(&out_dir, &[&p], &["--max-reject-rate", "100"]);
    assert_status(&out, 0);
    let rows = util::rejects(&out_dir);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0]["primary_id"].as_str(),
            rows[0]["reason"].as_str(),
            rows[0]["line"].as_str()
        ),
        ("P1", "value_too_large", "5")
    );
    assert_eq!(util::summary(&out_dir)["users_written"], 1);
}

#[test]
fn findings_quoting_huge_names_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("names.xml");
    let name = "é".repeat(50_000);
    fs::write(
        &p,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <{name}/>\n  <user>\n    \
             <primary_id>P1</primary_id>\n    <{name}/>\n  </user>\n</users>\n"
        ),
    )
    .unwrap();
    let (out, json) = check(&[&p], &[]);
    assert_status(&out, 3);
    let f = json["findings"].as_array().unwrap();
    assert_eq!(f.len(), 2);
    for f in f {
        assert_eq!(f["code"], "unknown_element");
        let m = f["message"].as_str().unwrap();
        assert!(m.len() <= 1024 + 3 && m.ends_with('…'), "{} bytes", m.len());
        assert!(m.contains("ééé"));
    }
}

#[test]
fn nesting_past_the_limit_stops_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deep.xml");
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n  <user>\n    \
         <primary_id>P1</primary_id>\n  </user>\n  <user>\n",
    );
    for _ in 0..5000 {
        xml.push_str("<a>\n");
    }
    fs::write(&p, xml).unwrap();
    let (out, json) = check(&[&p], &[]);
    assert_status(&out, 3);
    // The root and the user are two levels: the 999th <a> is one too many.
    assert_eq!(findings(&json), [("not_well_formed".into(), 1005, None)]);
    assert!(json["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("nested deeper than 1000"));
    assert_eq!(json["users"], 1);
    let out_dir = dir.path().join("out");
    assert_status(&repack(&out_dir, &[&p], &[]), 1);
    assert!(!out_dir.exists());
}
