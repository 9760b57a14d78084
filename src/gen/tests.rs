use super::*;
use std::collections::{HashMap, HashSet};

fn gen(opts: &GenOptions) -> (Vec<u8>, Vec<u8>, GenStats) {
    let (mut e, mut t) = (Vec::new(), Vec::new());
    let stats = generate(opts, &mut e, &mut t).unwrap();
    (e, t, stats)
}

fn opts(rows: u64, seed: u64, rate: f64) -> GenOptions {
    GenOptions {
        rows,
        seed,
        dup_rate: rate,
        bad_rate: rate,
    }
}

/// The truth file's rows as string records, header checked and dropped.
fn truth_rows(t: &[u8]) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_reader(t);
    assert_eq!(r.headers().unwrap(), &TRUTH_HEADER[..]);
    r.records().map(Result::unwrap).collect()
}

#[test]
fn same_seed_same_bytes() {
    let o = opts(2000, 42, 0.05);
    let a = gen(&o);
    let b = gen(&o);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    assert_eq!(a.2, b.2);
}

#[test]
fn different_seed_different_bytes() {
    let a = gen(&opts(2000, 1, 0.05));
    let b = gen(&opts(2000, 2, 0.05));
    assert_ne!(a.0, b.0);
}

#[test]
fn counts_add_up() {
    for rows in [0, 1, 10, 11, 3000] {
        let (e, t, stats) = gen(&opts(rows, 7, 0.1));
        let truth = truth_rows(&t);
        assert_eq!(truth.len() as u64, rows);
        assert_eq!(stats.rows, rows);
        assert_eq!(stats.expected_written + stats.expected_rejected, rows);
        let written = truth.iter().filter(|r| &r[3] == "written").count() as u64;
        assert_eq!(written, stats.expected_written);
        assert!(e.starts_with(b"EMPLID,BARCODE,LAST_NAME,"));
        assert!(!e.contains(&b'\r'));
        assert!(std::str::from_utf8(&e).is_ok());
    }
}

#[test]
fn default_options() {
    let (_, _, stats) = gen(&GenOptions::default());
    assert_eq!(stats.rows, 300);
}

#[test]
fn bad_rates_are_refused() {
    for (d, b) in [(-0.1, 0.0), (0.0, 1.5), (0.6, 0.6), (f64::NAN, 0.0)] {
        let o = GenOptions {
            dup_rate: d,
            bad_rate: b,
            ..GenOptions::default()
        };
        let err = generate(&o, io::sink(), io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
    // Everything a defect is allowed.
    generate(&opts(100, 1, 0.5), io::sink(), io::sink()).unwrap();
}

#[test]
fn truth_lines_match_the_extract() {
    let (e, t, _) = gen(&opts(20_000, 3, 0.05));
    let truth = truth_rows(&t);
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(&e[..]);
    assert_eq!(r.headers().unwrap(), &HEADER[..]);
    let mut rec = csv::ByteRecord::new();
    let mut i = 0;
    let mut multiline = 0;
    while r.read_byte_record(&mut rec).unwrap() {
        let want = &truth[i];
        assert_eq!(
            rec.position().unwrap().line().to_string(),
            &want[0],
            "record {}",
            i + 1
        );
        assert_eq!((i + 1).to_string(), &want[1]);
        assert_eq!(&rec[0], want[2].as_bytes());
        let expect_fields = if &want[5] == "ragged" { 17 } else { 20 };
        assert_eq!(rec.len(), expect_fields, "record {}", i + 1);
        multiline += usize::from(&want[5] == "multiline");
        i += 1;
    }
    assert_eq!(i, truth.len());
    assert!(multiline > 0);
}

/// Every defect kind shows up, and each record has exactly the defect
/// its kind says: checked against a small model of the converter's
/// rules (case-insensitive identifiers, first written record wins,
/// rejected records claim nothing).
#[test]
fn defects_are_present_and_exact() {
    let (e, t, _) = gen(&opts(20_000, 11, 0.05));
    let truth = truth_rows(&t);
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(&e[..]);
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut claimed: HashSet<String> = HashSet::new();
    for (rec, want) in r.records().map(Result::unwrap).zip(&truth) {
        *kinds.entry(want[5].to_string()).or_default() += 1;
        let id = rec[0].to_lowercase();
        let barcode = rec[1].to_lowercase();
        let ids: Vec<&str> = if barcode == id {
            vec![&id]
        } else {
            vec![&id, &barcode]
        };
        let collides = ids.iter().any(|v| claimed.contains(*v));
        let valid_date = |s: &str| {
            s.is_empty()
                || (s.len() == 10
                    && !BAD_DATES.contains(&s)
                    && (s.as_bytes()[4] == b'-' || s.as_bytes()[2] == b'/'))
        };
        let reason = if rec.len() != 20 {
            "field_count"
        } else if rec[0].is_empty() || rec[2].is_empty() {
            "missing_field"
        } else if !["UG", "GR", "FAC", "STF"].contains(&&rec[6]) {
            "unknown_code"
        } else if !valid_date(&rec[17]) || !valid_date(&rec[18]) {
            "invalid_date"
        } else if collides {
            "duplicate_id"
        } else {
            ""
        };
        assert_eq!(reason, &want[4], "record {}: {:?}", &want[1], rec);
        assert_eq!(want[3] == *"written", reason.is_empty());
        if reason.is_empty() {
            for v in ids {
                claimed.insert(v.to_string());
            }
        }
        // Kinds that only change one thing.
        match &want[5] {
            "self_barcode" => assert_eq!(&rec[0], &rec[1]),
            "unknown_campus" => assert!(!["M", "D"].contains(&&rec[7])),
            "multiline" => assert!(rec[12].contains('\n')),
            "dup_primary" => assert!(rec[0].starts_with('s')),
            "normal" => {
                assert!(["M", "D"].contains(&&rec[7]));
                assert!(!rec[12].contains('\n'));
                assert_ne!(&rec[0], &rec[1]);
            }
            _ => {}
        }
    }
    for k in [
        "normal",
        "self_barcode",
        "unknown_campus",
        "multiline",
        "dup_primary",
        "dup_barcode",
        "chain",
        "missing_last",
        "missing_id",
        "unknown_group",
        "bad_date",
        "ragged",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} in {kinds:?}"
        );
    }
}

#[test]
fn push_num_pads() {
    let mut b = Vec::new();
    push_num(&mut b, 42, 5);
    push_num(&mut b, 0, 1);
    push_num(&mut b, 123_456, 2);
    push_num(&mut b, u64::MAX, 1);
    assert_eq!(
        b,
        b"000420123456"
            .iter()
            .chain(b"18446744073709551615")
            .copied()
            .collect::<Vec<_>>()
    );
}

/// The bundled example is this generator's output (examples/README.md
/// gives the command): the default layout's bytes must not move when the
/// rich one changes.
#[test]
fn default_layout_reproduces_the_bundled_example() {
    let o = GenOptions {
        rows: 400,
        seed: 41,
        dup_rate: 0.02,
        bad_rate: 0.025,
    };
    let (e, t, _) = gen(&o);
    assert!(e == include_bytes!("../../examples/students.csv"));
    assert!(t == include_bytes!("../../examples/students.truth.csv"));
}

#[test]
fn rich_layout_reproduces_the_bundled_example() {
    let o = GenOptions {
        rows: 500,
        seed: 47,
        dup_rate: 0.02,
        bad_rate: 0.025,
    };
    let (mut e, mut t) = (Vec::new(), Vec::new());
    generate_rich(&o, &mut e, &mut t).unwrap();
    assert!(e == include_bytes!("../../examples/rich.csv"));
    assert!(t == include_bytes!("../../examples/rich.truth.csv"));
}

/// Rich records: same seed, same bytes; the extra columns; identifiers
/// unique per written record; every date format present and each value
/// read back, with the formats in order, as a date in its range.
#[test]
fn rich_layout_is_exact() {
    let o = opts(20_000, 5, 0.05);
    let rich = |o: &GenOptions| {
        let (mut e, mut t) = (Vec::new(), Vec::new());
        let stats = generate_rich(o, &mut e, &mut t).unwrap();
        (e, t, stats)
    };
    let (e, t, stats) = rich(&o);
    assert_eq!((e.clone(), t.clone(), stats), rich(&o));
    let truth = truth_rows(&t);
    assert_eq!(truth.len() as u64, stats.rows);
    let mut r = csv::ReaderBuilder::new().flexible(true).from_reader(&e[..]);
    let header: Vec<&str> = HEADER.iter().chain(&RICH_EXTRA).copied().collect();
    assert_eq!(r.headers().unwrap(), &header[..]);
    let mut formats = [0usize; RICH_DATE_FORMATS.len()];
    let (mut kinds, mut ids) = (HashSet::new(), HashSet::new());
    let mut rec = csv::ByteRecord::new();
    let mut i = 0;
    while r.read_byte_record(&mut rec).unwrap() {
        let want = &truth[i];
        i += 1;
        assert_eq!(rec.position().unwrap().line().to_string(), &want[0]);
        kinds.insert(want[5].to_string());
        let ragged = &want[5] == "ragged";
        assert_eq!(rec.len(), if ragged { 21 } else { 24 }, "record {i}");
        if ragged {
            continue;
        }
        let text = |k: usize| std::str::from_utf8(&rec[k]).unwrap();
        for (k, years) in [(17, 1950..=2006), (18, 2027..=2030)] {
            if text(k).is_empty() || (k == 18 && &want[5] == "bad_date") {
                continue;
            }
            let (f, d) = RICH_DATE_FORMATS
                .iter()
                .enumerate()
                .find_map(|(f, fmt)| {
                    chrono::NaiveDate::parse_from_str(text(k), fmt)
                        .ok()
                        .filter(|d| (1000..=9999).contains(&chrono::Datelike::year(d)))
                        .map(|d| (f, d))
                })
                .unwrap_or_else(|| panic!("record {i}: date {}", text(k)));
            // chrono puts %y 00-68 in 2000-2068: the windows the profile
            // uses put these years in place too.
            let y = chrono::Datelike::year(&d);
            let y = if f == 6 && y > 2026 && k == 17 {
                y - 100
            } else {
                y
            };
            assert!(years.contains(&y), "record {i}: {}", text(k));
            formats[f] += 1;
        }
        if &want[3] == "written" {
            for k in [21usize, 22] {
                let v = text(k);
                if !v.is_empty() {
                    assert!(ids.insert(v.to_lowercase()), "record {i}: {v}");
                }
            }
        }
        assert!(!rec[23].contains(&b'\n'));
    }
    assert_eq!(i, truth.len());
    assert!(formats.iter().all(|&n| n > 0), "{formats:?}");
    assert!(kinds.len() == 12, "{kinds:?}");
}
