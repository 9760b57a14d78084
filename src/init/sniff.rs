//! Reading an unknown extract: its encoding, its layout (delimiter and
//! quoting, or fixed width), whether it has a header, and per column what
//! the values look like. Only shapes and counts leave this module (plus
//! the distinct short codes of a column, for a group table): never a value
//! that could be a name, an email or an address.

use std::collections::BTreeMap;

use chrono::NaiveDate;

/// The date formats tried on a column, most common first.
pub(super) const DATE_FORMATS: &[&str] = &[
    "%Y-%m-%d", "%m/%d/%Y", "%d/%m/%Y", "%Y%m%d", "%Y.%m.%d", "%Y/%m/%d", "%d.%m.%Y", "%d-%b-%Y",
    "%d-%b-%y", "%m/%d/%y", "%m-%d-%Y",
];

/// How the bytes are encoded, as a profile's `encoding` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Encoding {
    /// `utf-8`, `utf-16le`, `utf-16be` or `windows-1252`.
    pub(super) label: &'static str,
    /// Why (for the notes).
    pub(super) why: &'static str,
}

/// Sniffs the encoding: a byte-order mark, UTF-16 by its NUL bytes, valid
/// UTF-8, else Windows-1252 (what "ANSI" exports are).
pub(super) fn encoding(bytes: &[u8]) -> Encoding {
    let e = |label, why| Encoding { label, why };
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return e("utf-8", "UTF-8 byte-order mark");
    }
    if bytes.starts_with(b"\xFF\xFE") {
        return e("utf-16le", "UTF-16 little-endian byte-order mark");
    }
    if bytes.starts_with(b"\xFE\xFF") {
        return e("utf-16be", "UTF-16 big-endian byte-order mark");
    }
    let head = &bytes[..bytes.len().min(4096)];
    let (even, odd) = head.iter().enumerate().fold((0, 0), |(e, o), (i, b)| {
        if *b == 0 {
            if i % 2 == 0 {
                (e + 1, o)
            } else {
                (e, o + 1)
            }
        } else {
            (e, o)
        }
    });
    if head.len() >= 4 && odd * 3 > head.len() && even * 20 < head.len() {
        return e(
            "utf-16le",
            "every other byte is NUL (UTF-16 without a byte-order mark)",
        );
    }
    if head.len() >= 4 && even * 3 > head.len() && odd * 20 < head.len() {
        return e(
            "utf-16be",
            "every other byte is NUL (UTF-16 without a byte-order mark)",
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(_) => e("utf-8", "valid UTF-8"),
        // A cut in the middle of a character at the end of a sample.
        Err(err) if err.error_len().is_none() => e("utf-8", "valid UTF-8"),
        Err(_) => e(
            "windows-1252",
            "not valid UTF-8; read as Windows-1252 (\"ANSI\")",
        ),
    }
}

/// Decodes `bytes` with the sniffed encoding (the mark removed).
pub(super) fn decode(bytes: &[u8], enc: &Encoding) -> String {
    let encoding = match enc.label {
        "utf-16le" => encoding_rs::UTF_16LE,
        "utf-16be" => encoding_rs::UTF_16BE,
        "windows-1252" => encoding_rs::WINDOWS_1252,
        _ => encoding_rs::UTF_8,
    };
    encoding.decode_with_bom_removal(bytes).0.into_owned()
}

/// The layout of the lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Layout {
    /// Delimited by `delimiter`, `quote` or none.
    Delimited { delimiter: u8, quote: Option<u8> },
    /// Fixed width: `(start, length)` of each column, 1-based; `ragged`
    /// when the lines differ in length.
    Fixed {
        columns: Vec<(usize, usize)>,
        ragged: bool,
    },
}

/// The non-blank lines of `text` (for sniffing only: a quoted line break
/// splits a record, which the counts below tolerate).
pub(super) fn lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// Occurrences of `d` in `line` outside double quotes.
fn count_outside_quotes(line: &str, d: u8) -> usize {
    let mut inside = false;
    let mut n = 0;
    for b in line.bytes() {
        if b == b'"' {
            inside = !inside;
        } else if b == d && !inside {
            n += 1;
        }
    }
    n
}

/// Picks the delimiter the lines agree on; fixed width when none does and
/// the lines look like columns of padded text.
pub(super) fn layout(lines: &[&str]) -> Layout {
    let sample = &lines[..lines.len().min(500)];
    let mut best: Option<(u8, usize, usize)> = None;
    for d in [b',', b'\t', b'|', b';'] {
        let counts: Vec<usize> = sample.iter().map(|l| count_outside_quotes(l, d)).collect();
        let mut freq: BTreeMap<usize, usize> = BTreeMap::new();
        for c in &counts {
            *freq.entry(*c).or_default() += 1;
        }
        // The most common count, and how many lines have it.
        let Some((&mode, &agree)) = freq
            .iter()
            .filter(|(c, _)| **c > 0)
            .max_by_key(|(c, n)| (**n, **c))
        else {
            continue;
        };
        // Most lines must agree (a broken or multi-line record may not).
        if agree * 10 < sample.len() * 8 {
            continue;
        }
        if best.is_none_or(|(_, a, m)| (agree, mode) > (a, m)) {
            best = Some((d, agree, mode));
        }
    }
    if let Some((delimiter, _, _)) = best {
        let quoted = sample.iter().any(|l| {
            l.split(delimiter as char)
                .any(|f| f.trim_start().starts_with('"'))
        });
        let any_quote = sample.iter().any(|l| l.contains('"'));
        // A quote inside unquoted text (a pipe file's `5'11"`) must stay
        // text: no quoting at all then.
        let quote = if quoted || !any_quote {
            Some(b'"')
        } else {
            None
        };
        return Layout::Delimited { delimiter, quote };
    }
    let lens: Vec<usize> = sample.iter().map(|l| l.chars().count()).collect();
    let (min, max) = (
        lens.iter().copied().min().unwrap_or(0),
        lens.iter().copied().max().unwrap_or(0),
    );
    let columns = fixed_columns(sample, max);
    if columns.len() >= 2 {
        return Layout::Fixed {
            columns,
            ragged: min != max,
        };
    }
    // One column: a list of ids, say.
    Layout::Delimited {
        delimiter: b',',
        quote: Some(b'"'),
    }
}

/// Columns of a fixed-width file: runs of positions where some line has
/// text, separated by positions that are blank (or past the end) in every
/// line. Two adjacent values with no blank between them stay one column.
fn fixed_columns(lines: &[&str], width: usize) -> Vec<(usize, usize)> {
    let mut used = vec![false; width];
    for l in lines {
        for (i, c) in l.chars().enumerate() {
            if c != ' ' {
                used[i] = true;
            }
        }
    }
    let mut cols = Vec::new();
    let mut i = 0;
    while i < width {
        if used[i] {
            let start = i;
            while i < width && used[i] {
                i += 1;
            }
            // The padding after a value belongs to it, up to the next one.
            let mut end = i;
            while end < width && !used[end] {
                end += 1;
            }
            cols.push((start + 1, end - start));
            i = end;
        } else {
            i += 1;
        }
    }
    // Leading blanks before the first column: fold them into it so the
    // layout starts at position 1.
    if let Some(first) = cols.first_mut() {
        if first.0 > 1 {
            first.1 += first.0 - 1;
            first.0 = 1;
        }
    }
    cols
}

/// The rows of a delimited text, each a list of fields (ragged rows kept
/// as they are; a broken quote never stops the sniff).
pub(super) fn rows(text: &str, delimiter: u8, quote: Option<u8>, max: usize) -> Vec<Vec<String>> {
    let mut b = csv::ReaderBuilder::new();
    b.has_headers(false).flexible(true).delimiter(delimiter);
    match quote {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    let mut rdr = b.from_reader(text.as_bytes());
    let mut out = Vec::new();
    for rec in rdr.records().take(max) {
        let Ok(rec) = rec else { continue };
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        out.push(rec.iter().map(str::to_string).collect());
    }
    out
}

/// The rows of a fixed-width text cut at `columns`.
pub(super) fn fixed_rows(
    lines: &[&str],
    columns: &[(usize, usize)],
    max: usize,
) -> Vec<Vec<String>> {
    lines
        .iter()
        .take(max)
        .map(|l| {
            let chars: Vec<char> = l.chars().collect();
            columns
                .iter()
                .map(|&(s, len)| {
                    let a = (s - 1).min(chars.len());
                    let b = (s - 1 + len).min(chars.len());
                    chars[a..b].iter().collect::<String>()
                })
                .collect()
        })
        .collect()
}

/// What a value looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Empty,
    Email,
    Phone,
    Number,
    Date,
    Text,
}

/// Whether `v` is an email address (one `@`, a dot in the domain, no
/// space).
pub(super) fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !v.contains(char::is_whitespace)
        && !domain.contains('@')
}

/// Whether `v` looks like a phone number: 7 to 15 digits among digits,
/// spaces, `+ - . ( )`, and at least one separator or a leading `+` (a
/// bare run of digits is an id).
pub(super) fn is_phone(v: &str) -> bool {
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let ok = v
        .chars()
        .all(|c| c.is_ascii_digit() || " +-.()".contains(c));
    let separated = v.chars().any(|c| "-.() ".contains(c)) || v.starts_with('+');
    ok && separated && (7..=15).contains(&digits) && !looks_like_date(v)
}

fn looks_like_date(v: &str) -> bool {
    DATE_FORMATS
        .iter()
        .any(|f| NaiveDate::parse_from_str(v, f).is_ok())
}

/// The shape of one value.
pub(super) fn shape(v: &str) -> Shape {
    let v = v.trim();
    if v.is_empty() {
        Shape::Empty
    } else if is_email(v) {
        Shape::Email
    } else if looks_like_date(v) && !v.chars().all(|c| c.is_ascii_digit()) || is_compact_date(v) {
        Shape::Date
    } else if is_phone(v) {
        Shape::Phone
    } else if v.chars().all(|c| c.is_ascii_digit()) {
        Shape::Number
    } else {
        Shape::Text
    }
}

/// `YYYYMMDD` with a plausible year: a date, not an id.
fn is_compact_date(v: &str) -> bool {
    v.len() == 8
        && v.chars().all(|c| c.is_ascii_digit())
        && NaiveDate::parse_from_str(v, "%Y%m%d")
            .is_ok_and(|d| (1900..=2100).contains(&chrono::Datelike::year(&d)))
}

/// What one column's values look like.
#[derive(Debug, Clone, Default)]
pub(super) struct ColumnStats {
    /// Rows with a value.
    pub(super) filled: usize,
    /// Rows in the sample.
    pub(super) rows: usize,
    /// Values by shape.
    pub(super) shapes: BTreeMap<&'static str, usize>,
    /// Distinct trimmed values with their counts, while there are at most
    /// [`DISTINCT_KEPT`] of them; `None` past that.
    pub(super) distinct: Option<BTreeMap<String, usize>>,
    /// Every value distinct (and the column always filled).
    pub(super) unique: bool,
    /// The longest value, in characters.
    pub(super) max_len: usize,
    /// Date formats that read the values: for each value the first of
    /// [`DATE_FORMATS`] that reads it, most used first.
    pub(super) date_formats: Vec<&'static str>,
}

/// Distinct values counted per column before the column is taken for
/// free text.
pub(super) const DISTINCT_KEPT: usize = 60;

impl ColumnStats {
    /// Whether most filled values have `shape`.
    pub(super) fn mostly(&self, shape: &str) -> bool {
        self.filled > 0 && self.shapes.get(shape).copied().unwrap_or(0) * 10 >= self.filled * 9
    }
}

fn shape_name(s: Shape) -> &'static str {
    match s {
        Shape::Empty => "empty",
        Shape::Email => "email",
        Shape::Phone => "phone",
        Shape::Number => "number",
        Shape::Date => "date",
        Shape::Text => "text",
    }
}

/// Statistics of each of `ncols` columns over `rows`.
pub(super) fn column_stats(rows: &[Vec<String>], ncols: usize) -> Vec<ColumnStats> {
    (0..ncols)
        .map(|c| {
            let mut st = ColumnStats {
                rows: rows.len(),
                distinct: Some(BTreeMap::new()),
                ..Default::default()
            };
            let mut all = std::collections::HashSet::new();
            let mut values = Vec::new();
            for r in rows {
                let v = r.get(c).map(|v| v.trim()).unwrap_or("");
                let s = shape(v);
                if s != Shape::Empty {
                    st.filled += 1;
                    *st.shapes.entry(shape_name(s)).or_default() += 1;
                    st.max_len = st.max_len.max(v.chars().count());
                    all.insert(v);
                    values.push(v);
                    if let Some(d) = st.distinct.as_mut() {
                        *d.entry(v.to_string()).or_default() += 1;
                        if d.len() > DISTINCT_KEPT {
                            st.distinct = None;
                        }
                    }
                }
            }
            st.unique = st.filled == rows.len() && all.len() == st.filled && st.filled > 0;
            if st.filled > 0 && st.mostly("date") {
                let mut used: BTreeMap<usize, usize> = BTreeMap::new();
                for v in &values {
                    if let Some(i) = DATE_FORMATS
                        .iter()
                        .position(|f| NaiveDate::parse_from_str(v, f).is_ok())
                    {
                        *used.entry(i).or_default() += 1;
                    }
                }
                let mut order: Vec<(usize, usize)> = used.into_iter().collect();
                order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                st.date_formats = order.into_iter().map(|(i, _)| DATE_FORMATS[i]).collect();
            }
            st
        })
        .collect()
}

/// Whether the first row is a header: none of its fields looks like data
/// (a date, an email, a number, a phone), they are all distinct, and
/// either some name is one patronload knows or some column below holds
/// data where the first row holds a word.
pub(super) fn has_header(rows: &[Vec<String>], known: impl Fn(&str) -> bool) -> bool {
    let Some(first) = rows.first() else {
        return false;
    };
    let words = first.iter().all(|f| {
        let f = f.trim();
        f.is_empty() || shape(f) == Shape::Text
    });
    if !words || first.iter().all(|f| f.trim().is_empty()) {
        return false;
    }
    if first.iter().any(|f| known(f.trim())) {
        return true;
    }
    let mut seen = std::collections::HashSet::new();
    let distinct = first
        .iter()
        .filter(|f| !f.trim().is_empty())
        .all(|f| seen.insert(f.trim().to_ascii_lowercase()));
    if !distinct {
        return false;
    }
    let below = &rows[1..];
    (0..first.len()).any(|c| {
        below
            .iter()
            .filter_map(|r| r.get(c))
            .any(|v| !matches!(shape(v), Shape::Text | Shape::Empty))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_told_apart() {
        assert_eq!(encoding(b"\xEF\xBB\xBFa,b\n").label, "utf-8");
        assert_eq!(encoding(b"\xFF\xFEa\0,\0").label, "utf-16le");
        assert_eq!(encoding(b"a\0,\0b\0\n\0").label, "utf-16le");
        assert_eq!(encoding(b"\0a\0,\0b\0\n").label, "utf-16be");
        assert_eq!(encoding("Zoë,1\n".as_bytes()).label, "utf-8");
        assert_eq!(encoding(b"Zo\xEB,1\n").label, "windows-1252");
        assert_eq!(decode(b"Zo\xEB,", &encoding(b"Zo\xEB,")), "Zoë,");
    }

    #[test]
    fn the_delimiter_is_the_one_every_line_agrees_on() {
        let l = ["a|b|c, d", "1|2|3", "4|5|6, 7"];
        assert_eq!(
            layout(&l),
            Layout::Delimited {
                delimiter: b'|',
                quote: Some(b'"')
            }
        );
        let l = ["\"a,b\",c", "\"1\",2"];
        assert!(matches!(
            layout(&l),
            Layout::Delimited {
                delimiter: b',',
                ..
            }
        ));
        // A stray quote inside unquoted text: no quoting.
        let l = ["id|height", "1|5'11\"", "2|6'"];
        assert_eq!(
            layout(&l),
            Layout::Delimited {
                delimiter: b'|',
                quote: None
            }
        );
    }

    #[test]
    fn padded_lines_become_fixed_width_columns() {
        let l = ["ST   2016.01.01  930123456", "FAC  2017.02.02  930123457"];
        match layout(&l) {
            Layout::Fixed { columns, ragged } => {
                assert_eq!(columns, vec![(1, 5), (6, 12), (18, 9)]);
                assert!(!ragged);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn shapes_and_dates() {
        assert_eq!(shape("a.b@example.edu"), Shape::Email);
        assert_eq!(shape("900-123-4567"), Shape::Phone);
        assert_eq!(shape("2027-11-24"), Shape::Date);
        assert_eq!(shape("20271124"), Shape::Date);
        assert_eq!(shape("812345678"), Shape::Number);
        assert_eq!(shape("Main St."), Shape::Text);
        let rows: Vec<Vec<String>> = [["12/31/2027"], ["01/02/2027"]]
            .iter()
            .map(|r| r.iter().map(|s| s.to_string()).collect())
            .collect();
        let st = column_stats(&rows, 1);
        assert_eq!(st[0].date_formats, vec!["%m/%d/%Y"]);
    }

    #[test]
    fn a_header_is_words_over_data() {
        let r = |v: &[&[&str]]| -> Vec<Vec<String>> {
            v.iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        assert!(has_header(&r(&[&["id", "mail"], &["1", "a@b.cd"]]), |_| {
            false
        }));
        assert!(!has_header(
            &r(&[&["1", "a@b.cd"], &["2", "c@d.ef"]]),
            |_| false
        ));
        assert!(has_header(&r(&[&["EMPLID", "NAME"], &["X", "Y"]]), |n| n == "EMPLID"));
        assert!(!has_header(&r(&[&["a", "a"], &["1", "2"]]), |_| false));
    }
}
