//! Entry points shared by the fuzz targets (`fuzz/`) and the stable test
//! that replays their corpus (`tests/fuzz_replay.rs`).
//!
//! Each function takes arbitrary bytes, derives a configuration from the
//! first ones and feeds the rest to a stage of the pipeline. They return
//! nothing and panic only when an invariant is broken: a panic inside the
//! library, a lost record, output that is not well-formed XML, or the
//! parallel engine disagreeing with the reference. Keeping them in the
//! library means a crash found by the fuzzer replays on the stable
//! toolchain with exactly the same code.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use crate::profile::Profile;
use crate::read::decode::{decode, Encoding};
use crate::read::input::MmapChoice;
use crate::read::source::{parse_all, Dialect, Parsed};
use crate::run::convert::{convert, ConvertOptions, Engine, RunOptions};
use crate::write::package::Limits;

/// Delimited dialects the fuzzer picks from: delimiters, quoting, header,
/// small bounds so the bounding paths are reached.
const DELIMITED: &[&str] = &[
    "",
    "delimiter = \"|\"\nquote = \"none\"",
    "delimiter = \"tab\"\nmax_record_lines = 2",
    "delimiter = \";\"\nquote = \"'\"\nheader = false\ncolumns = [\"a\", \"b\", \"c\"]\nmultiline = [\"c\"]",
    "max_record_lines = 3\nmax_record_bytes = 64\nmax_field_bytes = 8",
    "aliases = { id = [\"ID\", \"pid\"] }\nragged_rows = \"pad\"",
];

/// Fixed-width layouts the fuzzer picks from.
const FIXED: &[&str] = &[
    "format = \"fixed_width\"\nragged = true\nfields = [{ name = \"A\", start = 1, length = 3 }, \
     { name = \"B\", start = 4, length = 2 }]\n\
     [[segments]]\nprefix = \"S\"\nstart = 6\nlength = 4\ncount = 3\n\
     fields = [{ name = \"X\", start = 1, length = 1 }, { name = \"Y\", start = 2, length = 3 }]",
    "format = \"fixed_width\"\nunits = \"bytes\"\nheader = true\n\
     fields = [{ name = \"A\", start = 2, length = 5 }, { name = \"B\", start = 1, length = 9 }]",
];

/// Encodings the decode target picks from.
const ENCODINGS: &[&str] = &[
    "utf-8",
    "auto",
    "windows-1252",
    "utf-16le",
    "utf-16be",
    "shift_jis",
    "iso-8859-2",
];

/// Checks what every parse must satisfy: records start on increasing
/// lines, and (delimited layouts) no record has more fields than the
/// text has bytes.
fn check_parsed(p: &Parsed, max_fields: Option<usize>) {
    let mut last = 0;
    for (line, fields, _) in &p.records {
        assert!(
            *line > last,
            "record lines must increase: {line} after {last}"
        );
        last = *line;
        if let Some(m) = max_fields {
            assert!(fields.len() <= m, "more fields than bytes");
        }
    }
}

/// The delimited parser: `data[0]` picks a dialect, the rest is the file.
pub fn delimited(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let d = Dialect::from_toml(DELIMITED[sel as usize % DELIMITED.len()])
        .expect("fuzz dialects are valid");
    if let Ok(p) = parse_all(body, &d) {
        check_parsed(&p, Some(body.len() + 1));
    }
}

/// The fixed-width parser: `data[0]` picks a layout, the rest is the file.
pub fn fixed_width(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let d = Dialect::from_toml(FIXED[sel as usize % FIXED.len()]).expect("fuzz layouts are valid");
    if let Ok(p) = parse_all(body, &d) {
        check_parsed(&p, None);
        for (_, fields, _) in &p.records {
            assert_eq!(
                fields.len(),
                p.columns.len(),
                "fixed-width records are never ragged"
            );
        }
    }
}

/// Decoding then parsing: `data[0]` picks an encoding, `data[1]` a
/// dialect. The decoded text must be UTF-8 with U+FFFD at every recorded
/// invalid offset.
pub fn decode_parse(data: &[u8]) {
    let [e, d, body @ ..] = data else {
        return;
    };
    let label = ENCODINGS[*e as usize % ENCODINGS.len()];
    let enc = Encoding::from_label(label).expect("fuzz labels are valid");
    if let Ok(t) = decode(body, enc) {
        assert!(
            std::str::from_utf8(&t.bytes).is_ok(),
            "decoded text is UTF-8"
        );
        for &o in &t.invalid {
            assert_eq!(&t.bytes[o..o + 3], "\u{FFFD}".as_bytes());
        }
    }
    let spec = format!(
        "encoding = \"{label}\"\ninvalid_bytes = \"{}\"\n{}",
        if d & 1 == 0 { "reject" } else { "replace" },
        DELIMITED[(*d as usize >> 1) % DELIMITED.len()]
    );
    let dialect = Dialect::from_toml(&spec).expect("fuzz dialects are valid");
    if let Ok(p) = parse_all(body, &dialect) {
        check_parsed(&p, Some(body.len() * 3 + 3));
    }
}

/// Profiles the end-to-end target picks from.
const PROFILES: &[&str] = &[
    r#"[input]
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
"#,
    r#"[input]
delimiter = "|"
quote = "none"
header = false
columns = ["ID", "LAST", "NOTE", "GROUP", "EXP", "BC"]
encoding = "windows-1252"
invalid_bytes = "replace"
forbidden_chars = "replace"
ragged_rows = "pad"
[rules]
mandatory = ["primary_id", "last_name"]
[fields]
primary_id = { column = "ID" }
last_name = { column = "LAST", case = "title" }
first_name = { column = "NOTE", truncate = true }
user_group = { column = "GROUP", table = "g" }
expiry_date = { column = "EXP", default = "+1y", formats = ["%Y.%m.%d", "%Y-%m-%d"] }
[tables.g]
map = { A = "ALPHA" }
unknown = "pass"
"#,
    r#"[input]
format = "fixed_width"
ragged = true
fields = [
  { name = "ID", start = 1, length = 4 },
  { name = "LAST", start = 5, length = 6 },
  { name = "EXP", start = 11, length = 10 },
]
[[input.segments]]
prefix = "A"
start = 21
length = 8
count = 2
fields = [{ name = "L1", start = 1, length = 4 }, { name = "CITY", start = 5, length = 4 }]
[rules]
mandatory = ["primary_id", "last_name"]
date_formats = ["%Y.%m.%d"]
[fields]
primary_id = { column = "ID" }
last_name = { column = "LAST" }
expiry_date = { column = "EXP", default = "+2y" }
[[addresses]]
types = ["home"]
line1 = { column = "A1_L1" }
city = { column = "A1_CITY" }
[[addresses]]
types = ["work"]
line1 = { column = "A2_L1" }
city = { column = "A2_CITY" }
"#,
    r#"[input]
encoding = "auto"
max_record_lines = 3
max_field_bytes = 300
[rules]
mandatory = ["primary_id"]
[fields]
primary_id = { column = "ID" }
last_name = { column = "LAST" }
expiry_date = { column = "EXP", default = "+1y" }
"#,
];

/// One run's output files (name → bytes), or its error text.
fn run_once(
    profile: &Profile,
    input: &Path,
    out: &Path,
    engine: Engine,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let opts = ConvertOptions {
        profile_path: "fuzz.toml".into(),
        profile: profile.clone(),
        inputs: vec![input.to_path_buf()],
        run: RunOptions {
            out_dir: out.to_path_buf(),
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 24).expect("a valid date"),
            limits: Limits {
                users_per_file: 3,
                files_per_zip: 2,
                ..Limits::default()
            },
            reject_threshold_percent: 5.0,
            prefix: None,
            engine,
            mmap: MmapChoice::Never,
            output: Default::default(),
            state: None,
            alma: None,
            progress: Default::default(),
        },
    };
    convert(&opts).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(out).expect("the output directory exists") {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path()).expect("an output file");
        files.push((name.clone(), comparable(&name, bytes)));
    }
    files.sort();
    Ok(files)
}

/// The whole pipeline: `data[0]` picks a profile, `data[1]` the parallel
/// engine's threads and shard size, the rest is the extract. The parallel
/// engine must write exactly the reference's bytes (or fail the same
/// way); every XML entry must be well-formed, hold only characters XML
/// allows, and its users must match the summary (each primary id once,
/// records read = written + rejected = users + rows of rejects.csv).
/// Returns the users written (0 when the run refused the input).
pub fn end_to_end(data: &[u8]) -> u64 {
    let [p, e, body @ ..] = data else {
        return 0;
    };
    let profile =
        Profile::parse(PROFILES[*p as usize % PROFILES.len()]).expect("fuzz profiles are valid");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let input = tmp.path().join("in.txt");
    std::fs::write(&input, body).expect("write the input");
    let reference = run_once(&profile, &input, &tmp.path().join("ref"), Engine::Reference);
    let parallel = run_once(
        &profile,
        &input,
        &tmp.path().join("par"),
        Engine::Parallel {
            threads: 1 + (*e as usize & 3),
            shard_bytes: 1 + (*e as usize >> 2) * 4,
        },
    );
    assert_eq!(
        reference, parallel,
        "parallel engine differs from the reference"
    );
    let Ok(files) = reference else { return 0 };
    let mut users = 0u64;
    let mut ids = HashSet::new();
    let mut summary = serde_json::Value::Null;
    let mut reject_rows = 0u64;
    for (name, bytes) in &files {
        if name.ends_with(".zip") {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
            for i in 0..zip.len() {
                let mut xml = String::new();
                zip.by_index(i)
                    .expect("a zip entry")
                    .read_to_string(&mut xml)
                    .expect("UTF-8 XML");
                users += check_xml(&xml, &mut ids);
            }
        } else if name == "summary.json" {
            summary = serde_json::from_slice(bytes).expect("summary.json is JSON");
        } else if name == "rejects.csv" {
            let mut r = csv::Reader::from_reader(&bytes[..]);
            for row in r.byte_records() {
                row.expect("a rejects row");
                reject_rows += 1;
            }
        }
    }
    let n = |k: &str| summary[k].as_u64().expect("a count in summary.json");
    assert_eq!(n("users_written"), users, "users in the XML");
    assert_eq!(n("rejected"), reject_rows, "rows of rejects.csv");
    assert_eq!(n("records_read"), users + reject_rows, "records read");
    users
}

/// Parses one XML document; returns its users after checking each
/// primary id is new and every text is allowed in XML.
fn check_xml(xml: &str, ids: &mut HashSet<String>) -> u64 {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(xml);
    let mut users = 0;
    let mut primary: Option<String> = None;
    loop {
        match r.read_event().expect("well-formed XML") {
            Event::Start(s) => {
                if s.name().as_ref() == "user" {
                    users += 1;
                }
                if s.name().as_ref() == "primary_id" {
                    primary = Some(String::new());
                }
            }
            Event::Text(t) => {
                let text = t.xml10_content();
                assert!(
                    text.chars().all(crate::map::rules::xml_allowed),
                    "a character XML forbids was written"
                );
                if let Some(p) = primary.as_mut() {
                    p.push_str(&text);
                }
            }
            Event::GeneralRef(g) => {
                let c = match g.resolve_char_ref().expect("a valid character reference") {
                    Some(c) => c,
                    None => match g.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => panic!("unknown entity {other:?}"),
                    },
                };
                assert!(
                    crate::map::rules::xml_allowed(c),
                    "a forbidden character reference"
                );
                if let Some(p) = primary.as_mut() {
                    p.push(c);
                }
            }
            Event::End(e) if e.name().as_ref() == "primary_id" => {
                let id = primary.take().unwrap_or_default();
                assert!(
                    ids.insert(id.trim().to_lowercase()),
                    "primary id {id:?} written twice"
                );
            }
            Event::Eof => break,
            _ => {}
        }
    }
    users
}

/// A published file's bytes without what differs between two runs of the
/// same inputs: `summary.json`'s `run` (start time, stage durations) and
/// `report.html`'s timings and trend (labelled by start time) sections. Every other byte of a package must be
/// identical for any engine, thread count, shard size or input mode, and
/// the tests compare packages through this.
pub fn comparable(name: &str, bytes: Vec<u8>) -> Vec<u8> {
    match name {
        "summary.json" => {
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                return bytes;
            };
            if let Some(o) = v.as_object_mut() {
                o.remove("run");
            }
            serde_json::to_vec_pretty(&v).expect("JSON serializes")
        }
        "report.html" => {
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            for id in ["timings", "trend"] {
                let start = format!("<section id=\"{id}\">");
                if let Some(i) = text.find(&start) {
                    if let Some(j) = text[i..].find("</section>") {
                        text.replace_range(i..i + j + "</section>".len(), "");
                    }
                }
            }
            text.into_bytes()
        }
        _ => bytes,
    }
}
