//! Issue 11's reader regressions: one small extract per case in
//! `tests/data/reader/`, each with its expected outcome per physical line
//! (`<case>.expected`: `N -> header | blank | written <id> | rejected
//! <reason> [<primary_id>]`), checked by eye once, then pinned.
//!
//! The actual outcome of every line is derived from the run's output
//! alone: header lines from `summary.json`, rejected lines from
//! `rejects.csv` (`line` to `last_line`), blank lines from the text, and
//! the rest are written lines, whose users' primary ids must follow in
//! the XML in line order. The line counts must match `lines_read`, and
//! the parallel engine with tiny shards must write the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::*;

fn data(name: &str) -> PathBuf {
    root().join("tests/data/reader").join(name)
}

/// `(line, outcome)` from an `.expected` file.
fn expected(case: &str) -> BTreeMap<u64, String> {
    let text = std::fs::read_to_string(data(&format!("{case}.expected"))).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, outcome) = l.split_once(" -> ").unwrap_or_else(|| panic!("{l}"));
            (n.trim().parse().unwrap(), outcome.trim().to_string())
        })
        .collect()
}

/// The physical lines of `text` (without their breaks), split like the
/// tool counts them: LF, CRLF and a lone CR.
fn lines_of(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'\n' || text[i] == b'\r' {
            out.push(&text[start..i]);
            if text[i] == b'\r' && text.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            start = i + 1;
        }
        i += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
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

/// Runs `case` and compares every line's outcome with its `.expected`.
fn check(case: &str, input: &str, profile: &str, fixed: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = convert(
        &data(profile),
        &out,
        &[data(input).as_path()],
        &["--reference"],
    );
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{case}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_xsd_valid(&out);
    for shard in ["1", "5", "16", "61"] {
        let par = tmp.path().join(format!("par{shard}"));
        let p = convert(
            &data(profile),
            &par,
            &[data(input).as_path()],
            &["--threads", "3", "--shard-bytes", shard],
        );
        assert_eq!(p.status.code(), o.status.code(), "{case}");
        assert!(dir_files(&out) == dir_files(&par), "{case}: shard {shard}");
    }

    let text = std::fs::read(data(input)).unwrap();
    let lines = lines_of(&text);
    let s = summary(&out);
    let counts = &s["lines_read"];
    let n = |k: &str| counts[k].as_u64().unwrap();
    assert_eq!(n("total"), lines.len() as u64, "{case}: {counts}");
    assert_eq!(n("total"), physical_lines(&text), "{case}");

    let mut actual: BTreeMap<u64, String> = BTreeMap::new();
    for l in 1..=n("header") {
        actual.insert(l, "header".into());
    }
    for r in rejects(&out) {
        let (a, b): (u64, u64) = (r["line"].parse().unwrap(), r["last_line"].parse().unwrap());
        assert!(a <= b, "{case}: {r:?}");
        let mut outcome = format!("rejected {}", r["reason"]);
        if !r["primary_id"].is_empty() {
            outcome = format!("{outcome} {}", r["primary_id"]);
        }
        for l in a..=b {
            assert!(
                actual.insert(l, outcome.clone()).is_none(),
                "{case}: line {l} has two outcomes"
            );
        }
    }
    let blank = |l: &[u8]| l.is_empty() || (fixed && l.iter().all(|&b| b == b' '));
    let rejected = actual
        .values()
        .filter(|o| o.starts_with("rejected"))
        .count();
    assert_eq!(rejected as u64, n("rejected"), "{case}");
    let mut blanks = 0;
    let mut written = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let no = i as u64 + 1;
        if actual.contains_key(&no) {
            continue;
        }
        if blank(l) {
            blanks += 1;
            actual.insert(no, "blank".into());
        } else {
            written.push(no);
        }
    }
    assert_eq!(blanks, n("blank"), "{case}");
    assert_eq!(written.len() as u64, n("written"), "{case}");

    // Written lines take the XML's ids in order: the expected ids of the
    // written lines, a multi-line record's repeated id once, must be the
    // users written, and each record's first line holds its id.
    let want = expected(case);
    let mut want_ids: Vec<&str> = Vec::new();
    for &no in &written {
        let id = want
            .get(&no)
            .and_then(|w| w.strip_prefix("written "))
            .unwrap_or_else(|| {
                panic!(
                    "{case}: line {no} was written, expected {:?}",
                    want.get(&no)
                )
            });
        if want_ids.last() != Some(&id) {
            let line = String::from_utf8_lossy(lines[no as usize - 1]);
            assert!(line.contains(id), "{case}: line {no} does not hold {id}");
            want_ids.push(id);
        }
        actual.insert(no, format!("written {id}"));
    }
    assert_eq!(primary_ids(&out), want_ids, "{case}: users written");
    assert_eq!(actual, want, "{case}: outcome per line");
}

#[test]
fn an_unclosed_quote_in_street2_swallows_no_patron() {
    check(
        "unclosed_street2",
        "unclosed_street2.csv",
        "reader.toml",
        false,
    );
    // A `multiline` NOTE does not change what a broken STREET2 does.
    check(
        "unclosed_street2",
        "unclosed_street2.csv",
        "multiline.toml",
        false,
    );
}

#[test]
fn swallowed_text_matching_the_field_count_merges_no_patrons() {
    check("merged_two", "merged_two.csv", "reader.toml", false);
    check("merged_two", "merged_two.csv", "multiline.toml", false);
}

#[test]
fn a_later_duplicate_does_not_take_a_swallowed_patrons_place() {
    check(
        "later_duplicate",
        "later_duplicate.csv",
        "reader.toml",
        false,
    );
}

#[test]
fn the_tail_of_a_broken_primary_id_is_never_a_user() {
    check("split_id", "split_id.csv", "reader.toml", false);
    check("split_id", "split_id.csv", "multiline.toml", false);
}

#[test]
fn stray_address_text_never_becomes_a_primary_id() {
    check("stray_id", "stray_id.csv", "reader.toml", false);
}

#[test]
fn an_unclosed_quote_on_the_last_line_is_rejected() {
    check("last_line_open", "last_line_open.csv", "reader.toml", false);
    check(
        "last_line_open",
        "last_line_open.csv",
        "multiline.toml",
        false,
    );
}

#[test]
fn a_declared_multiline_note_spans_lines() {
    check(
        "multiline_note",
        "multiline_note.csv",
        "multiline.toml",
        false,
    );
}

#[test]
fn a_multiline_note_that_never_closes_takes_in_no_patron() {
    check(
        "multiline_open",
        "multiline_open.csv",
        "multiline.toml",
        false,
    );
}

#[test]
fn fixed_width_lines_must_have_the_layouts_length() {
    check("fixed_length", "fixed_length.txt", "fixed.toml", true);
}

#[test]
fn two_broken_multiline_notes_do_not_pair_up() {
    check(
        "two_open_notes",
        "two_open_notes.csv",
        "multiline.toml",
        false,
    );
}
