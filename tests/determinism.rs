//! Proof of sameness: the parallel engine, for any thread count and shard
//! size, with inputs mapped or read, writes exactly the bytes of the
//! single-threaded reference.

use std::collections::BTreeMap;
use std::path::Path;

use patronload::profile::Profile;
use patronload::read::input::MmapChoice;
use patronload::run::convert::{convert, ConvertOptions, Engine, RunOptions};
use patronload::write::package::Limits;
use proptest::prelude::*;

use crate::util::*;

const PROFILE: &str = r#"
[input]
[rules]
mandatory = ["primary_id", "last_name"]
[fields]
primary_id = { column = "ID" }
last_name = { column = "LAST" }
first_name = { column = "NOTE", truncate = true }
user_group = { column = "GROUP", table = "g" }
expiry_date = { column = "EXP", default = "+1y" }
[[identifiers]]
id_type = "BARCODE"
value = { column = "BC" }
[tables.g]
map = { A = "ALPHA", B = "BETA" }
unknown = "reject"
"#;

/// One generated row: ids drawn from small pools so duplicates are
/// frequent, free text with quotes, commas and newlines, and some rows
/// broken on purpose.
fn row() -> impl Strategy<Value = String> {
    let id = prop_oneof![
        Just(String::new()),
        (0u8..40).prop_map(|n| format!("I{n}")),
        (0u8..40).prop_map(|n| format!("i{n}"))
    ];
    let bc = prop_oneof![
        Just(String::new()),
        (0u8..40).prop_map(|n| format!("B{n}")),
        (0u8..10).prop_map(|n| format!("I{n}"))
    ];
    let text = prop_oneof![
        Just("plain".to_string()),
        Just(String::new()),
        Just("\"quoted, with comma\"".to_string()),
        Just("\"multi\nline\"".to_string()),
        Just("\"doubled \"\"quotes\"\"\"".to_string()),
        Just("\"crlf\r\ninside\"".to_string()),
    ];
    let group = prop_oneof![Just("A"), Just("B"), Just("Z"), Just("")];
    let exp = prop_oneof![Just(""), Just("2030-01-01"), Just("bad-date")];
    (id, text.clone(), bc, group, exp, text, 0u8..20).prop_map(
        |(id, last, bc, g, exp, note, kind)| {
            match kind {
                // A ragged row and a blank line now and then.
                0 => format!("{id},{last}"),
                1 => String::new(),
                _ => format!("{id},{last},{note},{g},{exp},{bc}"),
            }
        },
    )
}

fn extract() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (prop::collection::vec(row(), 1..60), any::<bool>()).prop_map(|(rows, crlf)| {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut s = format!("ID,LAST,NOTE,GROUP,EXP,BC{eol}");
        for r in rows {
            s.push_str(&r);
            s.push_str(eol);
        }
        (s.into_bytes(), crlf)
    })
}

fn run_with(
    profile: &str,
    input: &Path,
    out: &Path,
    engine: Engine,
    mmap: MmapChoice,
) -> BTreeMap<String, Vec<u8>> {
    let opts = ConvertOptions {
        profile_path: "inline.toml".into(),
        profile: Profile::parse(profile).unwrap(),
        inputs: vec![input.to_path_buf(), input.to_path_buf()],
        run: RunOptions {
            out_dir: out.to_path_buf(),
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            limits: Limits {
                users_per_file: 3,
                files_per_zip: 2,
                ..Limits::default()
            },
            reject_threshold_percent: 5.0,
            prefix: None,
            engine,
            mmap,
            output: Default::default(),
            state: None,
            alma: None,
            progress: Default::default(),
        },
    };
    match convert(&opts) {
        Ok(_) => dir_files(out),
        // The error must not depend on the engine either.
        Err(e) => BTreeMap::from([("error".to_string(), e.to_string().into_bytes())]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn parallel_equals_reference(
        (data, _crlf) in extract(),
        multiline in any::<bool>(),
        threads in 1usize..5,
        shard in 1usize..400,
    ) {
        let t = tempfile::tempdir().unwrap();
        let input = t.path().join("in.csv");
        std::fs::write(&input, &data).unwrap();
        // With a `multiline` column the shard plan follows quotes; without
        // one it splits on line breaks alone.
        let profile = if multiline { PROFILE.replacen("[input]", MULTILINE, 1) } else { PROFILE.to_string() };
        let run = |input: &Path, out: &Path, engine, mmap| run_with(&profile, input, out, engine, mmap);
        let reference = run(&input, &t.path().join("ref"), Engine::Reference, MmapChoice::Never);
        let parallel = run(
            &input,
            &t.path().join("par"),
            Engine::Parallel { threads, shard_bytes: shard },
            MmapChoice::Auto,
        );
        prop_assert_eq!(reference.keys().collect::<Vec<_>>(), parallel.keys().collect::<Vec<_>>());
        for (k, v) in &reference {
            prop_assert!(v == &parallel[k], "{} differs (threads {}, shard {})", k, threads, shard);
        }
    }
}

/// `[input]` with NOTE as a `multiline` column.
const MULTILINE: &str = "[input]\nmultiline = [\"NOTE\"]";

/// The reference and the parallel engine on `data` with `profile`.
fn same_bytes(
    profile: &str,
    data: &[u8],
    threads: usize,
    shard: usize,
) -> Result<(), TestCaseError> {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.txt");
    std::fs::write(&input, data).unwrap();
    let reference = run_with(
        profile,
        &input,
        &t.path().join("ref"),
        Engine::Reference,
        MmapChoice::Never,
    );
    let parallel = run_with(
        profile,
        &input,
        &t.path().join("par"),
        Engine::Parallel {
            threads,
            shard_bytes: shard,
        },
        MmapChoice::Auto,
    );
    prop_assert_eq!(
        reference.keys().collect::<Vec<_>>(),
        parallel.keys().collect::<Vec<_>>()
    );
    for (k, v) in &reference {
        prop_assert!(
            v == &parallel[k],
            "{} differs (threads {}, shard {})",
            k,
            threads,
            shard
        );
    }
    Ok(())
}

/// An extract in windows-1252, or UTF-8 with invalid bytes, NULs and
/// unbalanced quotes: the decoded path and the row bounding.
fn legacy_extract() -> impl Strategy<Value = Vec<u8>> {
    let cell = prop_oneof![
        Just(b"plain".to_vec()),
        Just(b"Jos\xE9".to_vec()),
        Just(b"\x80uro".to_vec()),
        Just(b"\"open".to_vec()),
        Just(b"\"ok\nline\"".to_vec()),
        Just(b"n\x00ul".to_vec()),
        Just(b"ctl\x01".to_vec()),
        Just(Vec::new()),
    ];
    let id = (0u8..30).prop_map(|n| format!("I{n}").into_bytes());
    let row = (id, cell.clone(), cell, 0u8..12).prop_map(|(id, a, b, k)| match k {
        0 => Vec::new(),
        1 => b"ID,LAST,NOTE,GROUP,EXP,BC".to_vec(),
        2 => [id, b",".to_vec(), a].concat(),
        _ => [id, b",".to_vec(), a, b",".to_vec(), b, b",A,,".to_vec()].concat(),
    });
    prop::collection::vec(row, 1..50).prop_map(|rows| {
        let mut s = b"ID,LAST,NOTE,GROUP,EXP,BC\r\n".to_vec();
        for r in rows {
            s.extend(r);
            s.extend(b"\r\n");
        }
        s
    })
}

/// Fixed-width lines: multi-byte characters, short, blank and overlong
/// lines.
fn fixed_extract() -> impl Strategy<Value = Vec<u8>> {
    let line = prop::collection::vec(
        prop_oneof![
            Just("a"),
            Just("é"),
            Just(" "),
            Just("1"),
            Just("€"),
            Just("\u{1}")
        ],
        0..40,
    )
    .prop_map(|cs| cs.concat());
    (prop::collection::vec(line, 1..40), any::<bool>()).prop_map(|(lines, crlf)| {
        let eol = if crlf { "\r\n" } else { "\n" };
        lines
            .iter()
            .map(|l| format!("I{l}{eol}"))
            .collect::<String>()
            .into_bytes()
    })
}

const FIXED_PROFILE: &str = r#"
[input]
format = "fixed_width"
units = "UNITS"
fields = [{ name = "ID", start = 1, length = 3 }, { name = "LAST", start = 4, length = 5 }]
[[input.segments]]
prefix = "S"
start = 9
length = 6
count = 4
fields = [{ name = "L1", start = 1, length = 3 }, { name = "C", start = 4, length = 3 }]
[rules]
mandatory = ["primary_id", "last_name"]
[fields]
primary_id = { column = "ID" }
last_name = { column = "LAST" }
expiry_date = { default = "+1y" }
[[addresses]]
types = ["home"]
line1 = { column = "S1_L1" }
city = { column = "S1_C" }
[[addresses]]
types = ["work"]
line1 = { column = "S4_L1" }
city = { column = "S4_C" }
"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn decoded_and_broken_input_is_engine_independent(
        data in legacy_extract(),
        utf8 in any::<bool>(),
        multiline in any::<bool>(),
        threads in 1usize..5,
        shard in 1usize..300,
    ) {
        let input = if utf8 {
            "[input]\nmax_record_lines = 3\ninvalid_bytes = \"replace\"\nforbidden_chars = \"replace\""
        } else {
            "[input]\nencoding = \"windows-1252\"\nmax_record_lines = 4\nragged_rows = \"pad\""
        };
        let mut profile = PROFILE.replacen("[input]", input, 1);
        if multiline {
            profile = profile.replacen("[input]", MULTILINE, 1);
        }
        same_bytes(&profile, &data, threads, shard)?;
    }

    #[test]
    fn fixed_width_is_engine_independent(
        data in fixed_extract(),
        bytes in any::<bool>(),
        ragged in any::<bool>(),
        threads in 1usize..5,
        shard in 1usize..200,
    ) {
        let mut profile = FIXED_PROFILE.replace("UNITS", if bytes { "bytes" } else { "chars" });
        if ragged {
            profile = profile.replacen("[input]", "[input]\nragged = true", 1);
        }
        same_bytes(&profile, &data, threads, shard)?;
    }
}

#[test]
fn a_quote_inside_an_unquoted_field_falls_back_to_an_exact_parse() {
    // `ab"c` is data to the parser but flips a naive quote parity, so the
    // plan then takes the newline inside a later quoted field for a record
    // boundary; the engine must notice and still agree.
    let mut s = String::from("ID,LAST,NOTE,GROUP,EXP,BC\n");
    for i in 0..200 {
        let note = match i % 7 {
            0 => "ab\"c",
            3 => "\"two\nlines\"",
            _ => "n",
        };
        s.push_str(&format!("I{i},L,{note},A,,B{i}\n"));
    }
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    std::fs::write(&input, s).unwrap();
    // The two-line notes are legitimate: NOTE is a `multiline` column, so
    // the plan follows quote parity (and `ab"c` misleads it).
    let profile = PROFILE.replacen("[input]", MULTILINE, 1);
    let run = |input: &Path, out: &Path, engine, mmap| run_with(&profile, input, out, engine, mmap);
    let reference = run(
        &input,
        &t.path().join("ref"),
        Engine::Reference,
        MmapChoice::Never,
    );
    for shard in [1, 10, 64, 333] {
        let out = t.path().join(format!("p{shard}"));
        let par = run(
            &input,
            &out,
            Engine::Parallel {
                threads: 3,
                shard_bytes: shard,
            },
            MmapChoice::Auto,
        );
        assert_eq!(reference, par, "shard {shard}");
    }
    // And it converted the 200 records (200 read, none lost).
    let s: serde_json::Value = serde_json::from_slice(&reference["summary.json"]).unwrap();
    assert_eq!(s["records_read"], 400);
}

#[test]
fn the_example_is_identical_across_engines_threads_and_shards() {
    let t = tempfile::tempdir().unwrap();
    let base = ["--as-of", "2026-11-24"];
    let mut outs = Vec::new();
    for extra in [
        vec!["--reference", "--no-mmap"],
        vec!["--threads", "1"],
        vec!["--threads", "2", "--shard-bytes", "100"],
        vec!["--threads", "4", "--shard-bytes", "4096", "--no-mmap"],
    ] {
        let out = t.path().join(format!("o{}", outs.len()));
        let o = patronload()
            .current_dir(root())
            .args(["convert", "--profile", "examples/students.toml", "--out"])
            .arg(&out)
            .args(base)
            .args(&extra)
            .arg("examples/students.csv")
            .output()
            .unwrap();
        assert_status(&o, 0);
        outs.push(dir_files(&out));
    }
    for o in &outs[1..] {
        assert_eq!(&outs[0], o);
    }
}

/// Documents larger than the compressor's 64 KiB feed, assembled from
/// many shard buffers by the parallel engine and written whole by the
/// reference engine, give the same bytes.
#[test]
fn large_documents_are_identical_across_engines() {
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    let opts = patronload::gen::GenOptions {
        rows: 3000,
        seed: 11,
        dup_rate: 0.03,
        bad_rate: 0.03,
    };
    patronload::gen::generate(
        &opts,
        std::fs::File::create(&input).unwrap(),
        std::io::sink(),
    )
    .unwrap();
    let mut outs = Vec::new();
    for extra in [
        &["--reference"][..],
        &["--threads", "2"],
        &["--threads", "3", "--no-mmap"],
    ] {
        let out = t.path().join(format!("o{}", outs.len()));
        let o = crate::util::convert(
            &root().join("examples/students.toml"),
            &out,
            &[&input],
            &[
                &["--users-per-file", "400", "--max-reject-rate", "100"][..],
                extra,
            ]
            .concat(),
        );
        assert_status(&o, 0);
        outs.push(dir_files(&out));
    }
    let entries = xml_entries(&t.path().join("o0"));
    let large = entries.iter().filter(|(_, x)| x.len() > 3 * 65536).count();
    assert!(large >= 5, "{large} documents over 192 KiB");
    assert!(outs[0] == outs[1] && outs[0] == outs[2]);
}

#[test]
fn a_shard_boundary_inside_a_broken_quoted_span_changes_nothing() {
    // Unclosed quotes in LAST (never multiline) and in NOTE (multiline or
    // not), legitimate two-line notes and a quote left open at the end of
    // the file: every shard size from 1 byte to the whole file puts a
    // boundary inside each broken span somewhere.
    let mut s = String::from("ID,LAST,NOTE,GROUP,EXP,BC\n");
    for i in 0..24 {
        let row = match i % 6 {
            0 => format!("I{i},\"open,n,A,,B{i}"),
            1 => format!("I{i},L,\"note\nmore\",A,,B{i}"),
            2 => format!("I{i},L,\"never closed,A,,B{i}"),
            3 => format!("I{i},L,a\"b,A,,B{i}"),
            _ => format!("I{i},L,n,A,,B{i}"),
        };
        s.push_str(&row);
        s.push('\n');
    }
    s.push_str("I99,L,\"open at the end,A,,B99");
    let t = tempfile::tempdir().unwrap();
    let input = t.path().join("in.csv");
    std::fs::write(&input, &s).unwrap();
    for input_toml in ["[input]", MULTILINE] {
        let profile = PROFILE.replacen("[input]", input_toml, 1);
        let reference = run_with(
            &profile,
            &input,
            &t.path().join("ref"),
            Engine::Reference,
            MmapChoice::Never,
        );
        let summary: serde_json::Value =
            serde_json::from_slice(&reference["summary.json"]).unwrap();
        // Two inputs of the same file, every line accounted for.
        let lines = &summary["lines_read"];
        assert_eq!(lines["total"], 2 * physical_lines(s.as_bytes()), "{lines}");
        assert!(
            summary["rejected_by_reason"]["unbalanced_quote"]
                .as_u64()
                .unwrap()
                >= 10
        );
        for shard in (1..=s.len()).filter(|n| *n <= 80 || n % 16 == 0) {
            let par = run_with(
                &profile,
                &input,
                &t.path().join(format!("p{shard}")),
                Engine::Parallel {
                    threads: 3,
                    shard_bytes: shard,
                },
                if shard % 2 == 0 {
                    MmapChoice::Auto
                } else {
                    MmapChoice::Never
                },
            );
            assert!(reference == par, "{input_toml}: shard {shard} differs");
            let _ = std::fs::remove_dir_all(t.path().join(format!("p{shard}")));
        }
    }
}
