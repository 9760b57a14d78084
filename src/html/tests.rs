use std::collections::BTreeMap;

use super::*;
use crate::report::{LineCounts, MapStats, Summary};

fn summary() -> Summary {
    let mut map = MapStats::default();
    map.unknown_code("user_group", "ZZ");
    map.unknown_code("user_group", "ZZ");
    map.unknown_code("user_group", "a b");
    map.drop_segment("address_incomplete");
    Summary {
        as_of: "2026-11-24".into(),
        inputs: Vec::new(),
        records_read: 10,
        lines_read: Some(LineCounts {
            total: 11,
            header: 1,
            blank: 0,
            written: 7,
            rejected: 3,
            superseded: 0,
        }),
        users_written: 7,
        rejected: 3,
        rejected_by_reason: BTreeMap::from([
            ("invalid_date".into(), 1),
            ("unknown_code".into(), 2),
        ]),
        reject_rate_percent: 30.0,
        reject_threshold_percent: 5.0,
        reject_threshold_exceeded: true,
        duplicate_identifiers: 0,
        map,
        invalid_bytes_first: Vec::new(),
        encoding_suspect: Vec::new(),
        warnings: 0,
        users_by_group: BTreeMap::from([("UNDERGRAD".into(), 5), ("<i>x</i>".into(), 2)]),
        zips: Vec::new(),
        job: None,
        repaired: BTreeMap::new(),
        tool_version: "0.0.0-test".into(),
        profile_sha256: None,
        job_sha256: None,
        state: None,
        run: None,
    }
}

/// The text as a browser shows it (askama escapes quotes and brackets).
fn unescape(html: &str) -> String {
    html.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

fn input<'a>(s: &'a Summary, d: &'a RejectDigest) -> ReportInput<'a> {
    ReportInput {
        prefix: "p",
        summary: s,
        rejects: d,
        tables: BTreeMap::from([("user_group".into(), "groups".into())]),
        timings: None,
        changes: None,
        trend: None,
    }
}

#[test]
fn sections_counts_and_paste_lines() {
    let s = summary();
    let mut d = RejectDigest::default();
    for i in 0..8 {
        d.note(
            "x.csv",
            i + 2,
            i + 1,
            "S1",
            "unknown_code",
            "user_group",
            "code `ZZ` is not in the table",
        );
    }
    d.note(
        "x.csv",
        20,
        19,
        "S9",
        "invalid_date",
        "birth_date",
        "birth_date (not shown: personal data)",
    );
    assert_eq!(d.examples["unknown_code"].len(), EXAMPLES_PER_REASON);
    assert_eq!(d.by_reason_field["unknown_code"]["user_group"], 8);
    let html = render(&input(&s, &d));
    assert!(html.contains("10 read = 7 written + 3 rejected ✓"));
    assert!(
        html.contains("11 lines = 1 header + 0 blank + 7 written + 3 rejected + 0 superseded ✓")
    );
    assert!(unescape(&html).contains(
        "[tables.groups.map]\nZZ = \"TODO\"  # 2 records\n\"a b\" = \"TODO\"  # 1 record\n"
    ));
    assert!(html.contains("user_group · unknown_code"));
    assert!(html.contains("segment dropped: address_incomplete"));
    // Labels are escaped, never markup.
    assert!(unescape(&html).contains("<i>x</i>"), "{html}");
    assert!(!html.contains("<i>x</i>"));
    assert!(!html.contains("<script"));
    // Absent data: no section.
    assert!(!html.contains("id=\"timings\"") && !html.contains("id=\"trend\""));
}

#[test]
fn timings_changes_and_trend_render_when_present() {
    let s = summary();
    let d = RejectDigest::default();
    let mut i = input(&s, &d);
    i.timings = Some(vec![StageTime {
        name: "read".into(),
        seconds: 1.5,
    }]);
    i.changes = Some(Changes {
        new: 3,
        ..Changes::default()
    });
    i.trend = Some(
        (0..40)
            .map(|n| TrendPoint {
                label: format!("run {n}"),
                users: 100 + n,
                rejects: n % 7,
            })
            .collect(),
    );
    let html = render(&i);
    assert!(html.contains("id=\"timings\"") && html.contains("1.50 s"));
    assert!(html.contains("id=\"changes\""));
    // The last 30 runs only.
    assert!(html.contains("the last 30 runs") && html.contains("from run 10 to run 39"));
}

#[test]
fn many_groups_and_codes_stay_bounded() {
    let mut s = summary();
    for n in 0..5_000 {
        s.users_by_group.insert(format!("G{n}"), 1);
        s.map.unknown_code("campus_code", &format!("C{n}"));
    }
    let d = RejectDigest::default();
    let html = render(&input(&s, &d));
    assert!(html.len() < 60_000, "{} bytes", html.len());
    assert!(html.contains("and 4,950 more codes"));
    assert!(html.contains("4,978 others"));
}

#[test]
fn numbers_have_thousands_separators() {
    assert_eq!(num(0), "0");
    assert_eq!(num(999), "999");
    assert_eq!(num(1_000), "1,000");
    assert_eq!(num(1_234_567), "1,234,567");
}
