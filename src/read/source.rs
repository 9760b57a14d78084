//! Source stage: UTF-8 text of one extract → records with their positions.
//!
//! Delimited extracts are parsed by the `csv` crate over an in-memory byte
//! slice, so the same code runs over a memory-mapped file, a decoded
//! buffer (see [`crate::read::decode`]) or a shard of either. Fixed-width
//! extracts are cut line by line per the profile's layout into the same
//! [`RawRecord`], so the mapper never knows which layout it read. Each
//! record carries its source file, the line where it starts and its
//! global record number, which is what rejects, errors and the parallel
//! engine's ordering all key on.
//!
//! Broken input is bounded here, record by record: a record the reader
//! can tell is broken (an unbalanced quote, a NUL byte, bytes invalid in
//! the declared encoding, an overlong record or field, a repeated header
//! row) is still a record, carrying the [`Fail`] that rejects it, so it is
//! counted and reported like any other and never swallows its neighbours.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::read::decode::{self, Text};
use crate::report::{Fail, Reason};

/// Byte-order mark of UTF-8, skipped at the start of a file.
pub(super) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

pub use super::dialect::Dialect;
pub use super::fixed::FixedLayout;
pub use super::reader::ShardReader;
pub use super::side::SideFile;

use super::reader::{body_reader, csv_reader, line_end, trim_line_end};

/// One input record, not yet decoded.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Index of the source file in the run's input list.
    pub file: u32,
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// 1-based physical line where the record ends (its last line break
    /// not counted): `line` unless a `multiline` value spans lines.
    pub last_line: u64,
    /// 1-based record number across the whole run (headers excluded).
    pub number: u64,
    /// The fields as parsed (quotes removed).
    pub fields: csv::ByteRecord,
    /// Byte offset of the record's start in the extract's text.
    pub start: usize,
    /// Byte offset one past the record's end (its line end included).
    pub end: usize,
    /// Set when the reader already knows the record must be rejected.
    pub fail: Option<Fail>,
    /// Invalid byte sequences replaced with U+FFFD in this record.
    pub replaced: u64,
    /// Line and column of the first of them.
    pub replaced_at: Option<(u64, u64)>,
    /// Blank lines right before this record.
    pub blank_before: u64,
}

/// An opened extract: its column names and where its records begin.
pub struct Extract<'a> {
    /// Column names, from the header row or the profile.
    pub columns: Vec<String>,
    /// The file's UTF-8 text after any byte-order mark; every offset in
    /// this module is into this slice.
    pub(super) data: &'a [u8],
    /// Offsets of replaced invalid sequences (see [`Text::invalid`]).
    pub(super) invalid: &'a [usize],
    /// Offset of the first byte after the header row.
    pub(super) body: usize,
    /// Newlines before `body`.
    pub(super) body_newlines: u64,
    pub(super) file: u32,
    pub(super) dialect: Dialect,
    /// The header row's fields, trimmed, to spot a repeated header.
    pub(super) header_row: Option<Vec<Vec<u8>>>,
    pub(super) encoding: &'static str,
    /// Columns of the extract itself, before side-file columns.
    pub(super) width: usize,
    /// Side files with the index of the column they join on.
    pub(super) joins: Vec<(Option<usize>, Arc<SideFile>)>,
    /// Per column of the extract: whether its values may span lines.
    pub(super) multiline: Vec<bool>,
    /// Where the header row's text ends (before its line break); 0
    /// without a header.
    pub(super) head_end: usize,
}

/// A byte range of an extract's body whose first byte starts a record
/// (or blank lines before one), with the newlines before it, so records
/// read from it know their line without the text before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// First byte.
    pub start: usize,
    /// One past the last byte a record of this shard may *start* at.
    pub end: usize,
    /// Newlines in the extract before `start`.
    pub newlines_before: u64,
}

/// Decodes a whole file per the dialect's encoding; the error is an input
/// error naming the file.
pub fn decode_input<'b>(path: &Path, bytes: &'b [u8], dialect: &Dialect) -> Result<Text<'b>> {
    decode::decode(bytes, dialect.encoding).map_err(|message| Error::Input {
        path: path.into(),
        line: None,
        message,
    })
}

impl<'a> Extract<'a> {
    /// Opens `bytes` (the whole file, UTF-8) with `dialect`. Reads the
    /// header row when the dialect has one; a file without even a header
    /// is an error.
    pub fn open(path: &Path, file: u32, bytes: &'a [u8], dialect: &Dialect) -> Result<Extract<'a>> {
        let data = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        Extract::open_inner(path, file, data, &[], "UTF-8", dialect)
    }

    /// Opens decoded text (see [`decode_input`]).
    pub fn open_text(
        path: &Path,
        file: u32,
        text: &'a Text<'_>,
        dialect: &Dialect,
    ) -> Result<Extract<'a>> {
        Extract::open_inner(
            path,
            file,
            &text.bytes,
            &text.invalid,
            text.encoding,
            dialect,
        )
    }

    fn open_inner(
        path: &Path,
        file: u32,
        data: &'a [u8],
        invalid: &'a [usize],
        encoding: &'static str,
        dialect: &Dialect,
    ) -> Result<Extract<'a>> {
        let mut x = Extract {
            columns: Vec::new(),
            data,
            invalid,
            body: 0,
            body_newlines: 0,
            file,
            dialect: dialect.clone(),
            header_row: None,
            encoding,
            width: 0,
            joins: Vec::new(),
            multiline: Vec::new(),
            head_end: 0,
        };
        x.read_columns(path, dialect)?;
        x.width = x.columns.len();
        if dialect.header {
            x.head_end = trim_line_end(&data[..x.body]).len();
        }
        x.multiline = vec![false; x.width];
        for name in &dialect.multiline {
            let i = x
                .columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| Error::Input {
                    path: path.into(),
                    line: Some(1),
                    message: format!("`multiline` column `{name}` is not a column of the extract"),
                })?;
            x.multiline[i] = true;
        }
        for side in &dialect.side_files {
            let at = match &side.join_on {
                Some(c) => {
                    Some(
                        x.columns
                            .iter()
                            .position(|n| n == c)
                            .ok_or_else(|| Error::Input {
                                path: path.into(),
                                line: Some(1),
                                message: format!(
                                    "side file join column `{c}` is not a column of the extract"
                                ),
                            })?,
                    )
                }
                None => None,
            };
            for c in &side.columns {
                if x.columns.contains(c) {
                    return Err(Error::Input {
                        path: path.into(),
                        line: Some(1),
                        message: format!(
                            "side file column `{c}` is already a column of the extract"
                        ),
                    });
                }
                x.columns.push(c.clone());
            }
            x.joins.push((at, side.clone()));
        }
        Ok(x)
    }

    /// Reads the column names (from the header row or the profile) and
    /// finds where the body starts.
    fn read_columns(&mut self, path: &Path, dialect: &Dialect) -> Result<()> {
        let x = self;
        let data = x.data;
        if !dialect.header {
            x.columns = dialect.columns.clone().unwrap_or_default();
            return Ok(());
        }
        let not_text = |message: String| Error::Input {
            path: path.into(),
            line: Some(1),
            message,
        };
        if dialect.fixed.is_some() {
            // A fixed-width header line is a title: skip it.
            x.body = line_end(data, 0).1;
            x.body_newlines = count_breaks(data, 0, x.body);
            x.columns = dialect.columns.clone().unwrap_or_default();
            x.check_header(dialect, true).map_err(not_text)?;
            return Ok(());
        }
        let mut rdr = csv_reader(data, 0, dialect.delimiter, dialect.quote);
        let mut head = csv::ByteRecord::new();
        let got = rdr.read_byte_record(&mut head).map_err(|e| Error::Input {
            path: path.into(),
            line: Some(1),
            message: e.to_string(),
        })?;
        if !got {
            return Err(Error::Input {
                path: path.into(),
                line: None,
                message: "the file is empty: no header row".into(),
            });
        }
        x.body = (rdr.position().byte() as usize).min(data.len());
        x.body_newlines = count_breaks(data, 0, x.body);
        // Names replaced by `columns` are not read, so their bytes may be
        // anything valid enough to count the columns.
        x.check_header(dialect, dialect.columns.is_none())
            .map_err(not_text)?;
        x.header_row = Some(head.iter().map(|f| f.trim_ascii().to_vec()).collect());
        // `columns` with a header row renames the columns (a header with
        // repeated or awkward names) and the header row is skipped.
        if let Some(cols) = &dialect.columns {
            if cols.len() != head.len() {
                return Err(Error::Input {
                    path: path.into(),
                    line: Some(1),
                    message: format!(
                        "the header row has {} columns but the profile's `columns` lists {}",
                        head.len(),
                        cols.len()
                    ),
                });
            }
            x.columns = cols.clone();
            return Ok(());
        }
        let mut cols = Vec::with_capacity(head.len());
        for (i, f) in head.iter().enumerate() {
            let name = std::str::from_utf8(f).map_err(|_| Error::Input {
                path: path.into(),
                line: Some(1),
                message: format!("header column {} is not valid UTF-8", i + 1),
            })?;
            cols.push(name.trim().to_string());
        }
        // Aliases: the first header name matching a spelling (ignoring
        // case) takes the logical name, unless the header has it already.
        for (logical, spellings) in &dialect.aliases {
            if cols.iter().any(|c| c == logical) {
                continue;
            }
            if let Some(c) = cols
                .iter_mut()
                .find(|c| spellings.iter().any(|s| s.eq_ignore_ascii_case(c)))
            {
                *c = logical.clone();
            }
        }
        x.columns = cols;
        Ok(())
    }

    /// Refuses a header row that no text extract has: one longer than
    /// `max_record_bytes`, or holding a NUL byte, a control character
    /// other than tab and the line ends (the delimiter and quote aside),
    /// or, when `names` are read, bytes invalid in the encoding. That is
    /// a binary file, or a text file in another encoding, given as the
    /// extract: an input error, said in a few printable words, never a
    /// profile error quoting the bytes.
    fn check_header(&self, dialect: &Dialect, names: bool) -> std::result::Result<(), String> {
        let head = &self.data[..self.body];
        let what = "the first line is not the header row of a text extract";
        if head.len() as u64 > dialect.max_record_bytes {
            return Err(format!(
                "{what}: it is {} bytes long, more than max_record_bytes ({}); is this the \
                 extract?",
                head.len(),
                dialect.max_record_bytes
            ));
        }
        let odd = |b: u8| {
            (b < 0x20 || b == 0x7F)
                && !matches!(b, b'\t' | b'\r' | b'\n')
                && b != dialect.delimiter
                && Some(b) != dialect.quote
        };
        let hint = || match decode::legacy_label(self.data) {
            "windows-1252" => "is this a binary file rather than the extract?".to_string(),
            utf16 => format!(
                "it looks like {utf16} without a byte-order mark: set `encoding = \"{utf16}\"` \
                 in [input]"
            ),
        };
        if let Some(i) = head.iter().position(|&b| odd(b)) {
            let (line, col) = decode::line_col(self.data, i);
            let which = if head[i] == 0 {
                "a NUL byte".to_string()
            } else {
                format!("control character 0x{:02X}", head[i])
            };
            return Err(format!(
                "{what}: it holds {which} at line {line}, column {col}; {}",
                hint()
            ));
        }
        if names {
            if let Some(&i) = self.invalid.first().filter(|&&i| i < self.body) {
                let (line, col) = decode::line_col(self.data, i);
                return Err(format!(
                    "the header row holds bytes not valid {} at line {line}, column {col}; it \
                     looks like {}: set `encoding` in [input]",
                    self.encoding,
                    decode::guess_legacy(self.data)
                ));
            }
        }
        Ok(())
    }

    /// The file's text after any byte-order mark.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The quote byte, if quoting is on.
    pub fn quote(&self) -> Option<u8> {
        self.dialect.quote
    }

    /// The whole body as one shard: what the reference pipeline reads.
    pub fn whole(&self) -> Shard {
        Shard {
            start: self.body,
            end: self.data.len(),
            newlines_before: self.body_newlines,
        }
    }

    /// Splits the body into shards of about `target` bytes (see
    /// [`crate::read::shard::plan`]). Without `multiline` columns every line
    /// break ends a record (a record that would span lines is rejected at
    /// its first line), so the plan splits on line breaks alone, whatever
    /// the quotes; with them it avoids quoted line breaks.
    pub fn shards(&self, target: usize) -> Vec<Shard> {
        let quote = if self.multiline.contains(&true) {
            self.dialect.quote
        } else {
            None
        };
        crate::read::shard::plan(self.data, self.whole(), quote, target)
    }

    /// `(total, header)` physical lines of the text, counted from the
    /// bytes alone: line breaks (LF, CRLF, lone CR) plus a final line
    /// without one, and the lines up to the end of the header row. The
    /// run checks that every line got exactly one outcome against these.
    pub fn line_totals(&self) -> (u64, u64) {
        let data = self.data;
        let unterminated = data.last().is_some_and(|&b| !matches!(b, b'\r' | b'\n'));
        let total = count_breaks(data, 0, data.len()) + u64::from(unterminated);
        let header = if self.dialect.header && !data.is_empty() {
            count_breaks(data, 0, self.head_end) + 1
        } else {
            0
        };
        (total, header)
    }

    /// A reader of the records that start inside `shard`.
    pub fn reader(&self, shard: Shard) -> ShardReader<'_, 'a> {
        ShardReader {
            x: self,
            csv: match self.dialect.fixed {
                Some(_) => None,
                None => Some(body_reader(
                    self.data,
                    shard.start,
                    self.dialect.delimiter,
                    self.dialect.quote,
                )),
            },
            lines: None,
            base: shard.start,
            pos: shard.start,
            shard,
            newlines: shard.newlines_before,
            counted_to: shard.start,
            first_seen: None,
            next_start: None,
            done: false,
            trailing_blank: 0,
            char_starts: Vec::new(),
        }
    }
}

/// Line breaks in `b`: LF, CRLF (once) and a CR alone (old Mac files; the
/// csv crate ends a record there too). A CR at the very end of `b` counts:
/// use [`count_breaks`] when the byte after the slice is known.
pub fn count_newlines(b: &[u8]) -> u64 {
    count_breaks(b, 0, b.len())
}

/// Line breaks in `data[a..b]` (see [`count_newlines`]); a CR at `b - 1`
/// is a break unless `data[b]` is LF, so counts of adjacent ranges add up.
pub fn count_breaks(data: &[u8], a: usize, b: usize) -> u64 {
    // Every record's bytes pass through here twice: SIMD searches, and
    // the CR check only where there is a CR.
    let lf = memchr::memchr_iter(b'\n', &data[a..b]).count();
    let cr = memchr::memchr_iter(b'\r', &data[a..b])
        .filter(|&i| data.get(a + i + 1) != Some(&b'\n'))
        .count();
    (lf + cr) as u64
}

impl RawRecord {
    /// An empty record buffer, reused across reads.
    pub fn new() -> RawRecord {
        RawRecord {
            file: 0,
            line: 0,
            last_line: 0,
            number: 0,
            fields: csv::ByteRecord::new(),
            start: 0,
            end: 0,
            fail: None,
            replaced: 0,
            replaced_at: None,
            blank_before: 0,
        }
    }
}

impl Default for RawRecord {
    fn default() -> Self {
        RawRecord::new()
    }
}

/// Every record of a whole extract, as the reference engine reads it:
/// the columns and `(line, fields, fail reason)` per record, plus the
/// blank lines counted. Shared by the fuzz targets and the corpus replay
/// test; never panics on any input.
pub fn parse_all(bytes: &[u8], dialect: &Dialect) -> Result<Parsed> {
    let text = decode_input(Path::new("fuzz"), bytes, dialect)?;
    let x = Extract::open_text(Path::new("fuzz"), 0, &text, dialect)?;
    let mut rdr = x.reader(x.whole());
    let mut rec = RawRecord::new();
    let mut out = Parsed {
        columns: x.columns.clone(),
        records: Vec::new(),
        blank_lines: 0,
    };
    let mut n = 0;
    while rdr
        .next_record(n + 1, &mut rec)
        .map_err(|e| Error::Invariant(e.to_string()))?
    {
        n += 1;
        out.blank_lines += rec.blank_before;
        out.records.push((
            rec.line,
            rec.fields.iter().map(<[u8]>::to_vec).collect(),
            rec.fail.as_ref().map(|f| f.reason),
        ));
    }
    out.blank_lines += rdr.trailing_blank();
    Ok(out)
}

/// What [`parse_all`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Column names.
    pub columns: Vec<String>,
    /// `(line, fields, fail reason)` per record.
    pub records: Vec<(u64, Vec<Vec<u8>>, Option<Reason>)>,
    /// Blank lines skipped.
    pub blank_lines: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::SideFileSpec;

    fn dialect(header: bool) -> Dialect {
        if header {
            Dialect::from_toml("").unwrap()
        } else {
            Dialect::from_toml("header = false\ncolumns = [\"a\", \"b\"]").unwrap()
        }
    }

    /// (line, record number, fields) of each record.
    type Rows = Vec<(u64, u64, Vec<String>)>;

    fn read_all(bytes: &[u8], d: &Dialect) -> (Vec<String>, Rows) {
        let x = Extract::open(Path::new("t.csv"), 0, bytes, d).unwrap();
        let mut rdr = x.reader(x.whole());
        let mut rec = RawRecord::new();
        let mut out = vec![];
        let mut n = 0;
        while rdr.next_record(n + 1, &mut rec).unwrap() {
            n += 1;
            let f = rec
                .fields
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            out.push((rec.line, rec.number, f));
        }
        (x.columns, out)
    }

    #[test]
    fn header_bom_crlf_and_quoted_newlines_keep_line_numbers() {
        let data = b"\xEF\xBB\xBFid, name\r\n1,\"a\nb\"\r\n\r\n2,\"x,y\"\r\n";
        let d = Dialect::from_toml("multiline = [\"name\"]").unwrap();
        let (cols, recs) = read_all(data, &d);
        assert_eq!(cols, ["id", "name"]);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], (2, 1, vec!["1".into(), "a\nb".into()]));
        // The quoted newline moved the next record down a line, and the
        // blank line is not a record.
        assert_eq!(recs[1], (5, 2, vec!["2".into(), "x,y".into()]));
    }

    proptest::proptest! {
        /// Each record's line is one plus the line breaks (LF, CRLF, lone
        /// CR) before where it starts, counted here byte by byte: the
        /// reader counts each record's breaks once, for its own check and
        /// the next record's line together.
        #[test]
        fn line_numbers_count_every_break_before_the_record(
            rows in proptest::collection::vec(
                ("[a-c]{0,3}", "[a-c\n\r\"]{0,6}", "(\n|\r\n|\r|\n\n|\r\n\r\n)"),
                1..12,
            )
        ) {
            let mut data = b"h1,h2\n".to_vec();
            for (a, b, end) in &rows {
                data.extend_from_slice(format!("{a},\"{}\"{end}", b.replace('"', "\"\"")).as_bytes());
            }
            let x = Extract::open(Path::new("t.csv"), 0, &data, &dialect(true)).unwrap();
            let mut rdr = x.reader(x.whole());
            let mut rec = RawRecord::new();
            let mut n = 0;
            while rdr.next_record(n + 1, &mut rec).unwrap() {
                n += 1;
                let before = &data[..rec.start];
                let breaks = before
                    .iter()
                    .enumerate()
                    .filter(|&(i, &c)| c == b'\n' || (c == b'\r' && data.get(i + 1) != Some(&b'\n')))
                    .count() as u64;
                proptest::prop_assert_eq!(rec.line, breaks + 1, "{:?}", String::from_utf8_lossy(&data));
            }
            proptest::prop_assert!(n >= 1);
        }
    }

    #[test]
    fn lf_and_crlf_give_the_same_line_numbers() {
        let lf = b"h1,h2\n\n1,\"x\ny\"\n2,b\n\n\n3,c";
        let crlf = b"h1,h2\r\n\r\n1,\"x\r\ny\"\r\n2,b\r\n\r\n\r\n3,c";
        let d = Dialect::from_toml("multiline = [\"h2\"]").unwrap();
        let lines = |b: &[u8]| read_all(b, &d).1.iter().map(|r| r.0).collect::<Vec<_>>();
        assert_eq!(lines(lf), [3, 5, 8]);
        assert_eq!(lines(crlf), [3, 5, 8]);
    }

    #[test]
    fn explicit_columns_make_the_first_line_a_record() {
        let (cols, recs) = read_all(b"1,2\n3,4\n", &dialect(false));
        assert_eq!(cols, ["a", "b"]);
        assert_eq!(recs[0].0, 1);
        assert_eq!(recs.len(), 2);
    }

    #[test]
    fn columns_with_a_header_rename_and_skip_it() {
        let mut d = dialect(true);
        d.columns = Some(vec!["x".into(), "y".into()]);
        let (cols, recs) = read_all(b"e,e\n1,2\n", &d);
        assert_eq!(cols, ["x", "y"]);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].0, 2);
        let err = Extract::open(Path::new("t"), 0, b"a,b,c\n1,2,3\n", &d)
            .err()
            .unwrap();
        assert!(err.to_string().contains("3 columns"), "{err}");
    }

    #[test]
    fn empty_file_is_an_input_error() {
        let d = dialect(true);
        let err = Extract::open(Path::new("e.csv"), 0, b"", &d).err().unwrap();
        assert!(err.to_string().contains("no header row"), "{err}");
    }

    #[test]
    fn a_header_no_text_extract_has_is_an_input_error() {
        let open = |bytes: &[u8], d: &Dialect| {
            let t = decode::decode(bytes, d.encoding).unwrap();
            Extract::open_text(Path::new("t.csv"), 0, &t, d)
                .err()
                .map(|e| e.to_string())
        };
        let d = dialect(true);
        let e = open(b"\x7fELF\x02\x01\x00,x\nA,B\n", &d).unwrap();
        assert!(
            e.contains("control character 0x7F at line 1, column 1"),
            "{e}"
        );
        assert!(e.starts_with("input error"), "{e}");
        let e = open(b"id,na\x00me\n1,2\n", &d).unwrap();
        assert!(e.contains("a NUL byte at line 1, column 6"), "{e}");
        // Bytes invalid in the encoding: named, with the likely encoding.
        let e = open(b"id,R\xe9sum\xe9\n1,2\n", &d).unwrap();
        assert!(e.contains("not valid UTF-8 at line 1, column 5"), "{e}");
        assert!(e.contains("windows-1252"), "{e}");
        // ... unless `columns` replaces the names, which are then not read.
        let renamed = Dialect::from_toml("columns = [\"a\", \"b\"]").unwrap();
        assert_eq!(open(b"id,R\xe9sum\xe9\n1,2\n", &renamed), None);
        // A control character that is the delimiter is no problem.
        let unit = Dialect::from_toml("delimiter = \"\\u001F\"").unwrap();
        assert_eq!(open(b"id\x1fname\n1\x1f2\n", &unit), None);
        // An overlong header row.
        let small = Dialect::from_toml("max_record_bytes = 10").unwrap();
        let e = open(b"abcdefghijkl\n1\n", &small).unwrap();
        assert!(
            e.contains("13 bytes long, more than max_record_bytes (10)"),
            "{e}"
        );
        // A fixed-width title line holding NULs.
        let fixed = Dialect::from_toml(
            "format = \"fixed_width\"\nheader = true\nfields = [{ name = \"a\", start = 1, length = 2 }]",
        )
        .unwrap();
        assert!(open(b"T\x00I\x00\nab\n", &fixed).is_some());
    }

    #[test]
    fn dialect_rejects_bad_settings() {
        let e = |t: &str| Dialect::from_toml(t).unwrap_err();
        assert!(e("delimiter = \"||\"").contains("delimiter"));
        assert!(Dialect::from_toml("delimiter = \"tab\"").is_ok());
        assert!(Dialect::from_toml("encoding = \"latin1\"").is_ok());
        assert!(e("encoding = \"klingon\"").contains("encoding"));
        assert!(e("delimiter = \"\\n\"").contains("line break"));
        assert!(e("format = \"fixed_width\"").contains("fields"));
        assert!(e("fields = [{ name = \"a\", start = 1, length = 2 }]").contains("fixed_width"));
    }

    fn reasons(p: &Parsed) -> Vec<(u64, Option<&'static str>)> {
        p.records
            .iter()
            .map(|r| (r.0, r.2.map(|x| x.code())))
            .collect()
    }

    #[test]
    fn an_unbalanced_quote_is_bounded_and_reading_resumes() {
        let d = Dialect::from_toml("max_record_lines = 3").unwrap();
        let data = b"id,name\n1,\"open\n2,b\n3,c\n4,d\n5,e\n";
        let p = parse_all(data, &d).unwrap();
        assert_eq!(
            reasons(&p),
            [
                (2, Some("unbalanced_quote")),
                (3, None),
                (4, None),
                (5, None),
                (6, None)
            ]
        );
        // Its fields are not kept: the quoting broke them.
        assert!(p.records[0].1.is_empty());
        // At the end of the file the limit is not needed to notice it.
        let p = parse_all(b"id,name\n1,a\n2,\"b\n3,c\n", &d).unwrap();
        assert_eq!(
            reasons(&p),
            [(2, None), (3, Some("unbalanced_quote")), (4, None)]
        );
        // A quoted line break is a record only in a `multiline` column;
        // elsewhere the first line is rejected and the next one read. That
        // line holds the closing quote, an odd one: rejected too.
        let p = parse_all(b"id,name\n1,\"a\nb\"\n2,c\n", &d).unwrap();
        assert_eq!(
            reasons(&p),
            [
                (2, Some("unbalanced_quote")),
                (3, Some("unbalanced_quote")),
                (4, None)
            ]
        );
        let d = Dialect::from_toml("max_record_lines = 3\nmultiline = [\"name\"]").unwrap();
        let p = parse_all(b"id,name\n1,\"a\nb\"\n2,c\n", &d).unwrap();
        assert_eq!(reasons(&p), [(2, None), (4, None)]);
    }

    #[test]
    fn multiline_spans_never_take_in_a_record() {
        let d = Dialect::from_toml("multiline = [\"note\"]").unwrap();
        let read = |b: &[u8]| reasons(&parse_all(b, &d).unwrap());
        // A continuation line that is a whole record on its own ends the
        // span: each line gets its own outcome.
        assert_eq!(
            read(b"id,note,x\n1,\"open,a\n2,n,b\n3,\"c\",d\n"),
            [(2, Some("unbalanced_quote")), (3, None), (4, None)]
        );
        // The wrong field count after a span: line 3 is then read on its
        // own, and its odd quote (the one that closed line 2's) rejects it.
        assert_eq!(
            read(b"id,note,x\n1,\"a\nb\",c,d\n2,n,e\n"),
            [
                (2, Some("unbalanced_quote")),
                (3, Some("unbalanced_quote")),
                (4, None)
            ]
        );
        // A quote that never closes in the last line; a quote in the
        // middle of an unquoted field is data by the CSV rules, but a line
        // with an odd number of them is rejected; an even number is data.
        assert_eq!(
            read(b"id,note,x\n1,a\"b,c\n2,\"d,e"),
            [(2, Some("unbalanced_quote")), (3, Some("unbalanced_quote"))]
        );
        let p = parse_all(b"id,note,x\n1,a\"b\"c,d\n", &d).unwrap();
        assert_eq!(reasons(&p), [(2, None)]);
        assert_eq!(p.records[0].1[1], b"a\"b\"c");
        assert_eq!(
            read(b"id,note,x\n1,\"a\nb,c\n"),
            [(2, Some("unbalanced_quote")), (3, None)]
        );
        // Two broken lines do not pair up: line 3 opens a quote of its own
        // (which closes line 2's), so it is not part of line 2's value.
        assert_eq!(
            read(b"id,note,x\n1,\"a\n2,\"b,c\n3,n,e\n"),
            [
                (2, Some("unbalanced_quote")),
                (3, Some("unbalanced_quote")),
                (4, None)
            ]
        );
        // A legitimate note: lines 2-3 are one record.
        let p = parse_all(b"id,note,x\n1,\"a\nb\",c\n2,n,e\n", &d).unwrap();
        assert_eq!(reasons(&p), [(2, None), (4, None)]);
        assert_eq!(p.records[0].1[1], b"a\nb");
    }

    #[test]
    fn every_line_is_a_record_a_blank_or_the_header() {
        let d = Dialect::from_toml("multiline = [\"note\"]").unwrap();
        for data in [
            &b"id,note\n\n1,\"a\n\nb\"\r\n\r\n2,\"x\n3,y\n\n"[..],
            b"id,note\r\n1,a\r\n\r\n",
            b"id,note\n1,\"a",
            b"id,note",
        ] {
            let x = Extract::open(Path::new("t"), 0, data, &d).unwrap();
            let mut rdr = x.reader(x.whole());
            let mut rec = RawRecord::new();
            let (mut lines, mut blank) = (0, 0);
            while rdr.next_record(1, &mut rec).unwrap() {
                lines += rec.last_line - rec.line + 1;
                blank += rec.blank_before;
            }
            blank += rdr.trailing_blank();
            let (total, header) = x.line_totals();
            assert_eq!(
                header + blank + lines,
                total,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn broken_row_kinds_have_reasons() {
        let d = Dialect::from_toml("max_record_bytes = 40\nmax_field_bytes = 10").unwrap();
        let data = b"id,name\r\n\r\n1,a\r\nid,name\r\n2,b\x00c\r\n3,abcdefghijklmnop\r\n\
                     4,abcdefghi,abcdefghi,abcdefghi,abcdefghi\r\n\r\n\r\n";
        let p = parse_all(data, &d).unwrap();
        assert_eq!(
            reasons(&p),
            [
                (3, None),
                (4, Some("header_row")),
                (5, Some("nul_byte")),
                (6, Some("field_too_long")),
                (7, Some("record_too_long")),
            ]
        );
        assert_eq!(p.blank_lines, 3);
    }

    #[test]
    fn invalid_bytes_reject_or_count() {
        let d = Dialect::from_toml("").unwrap();
        let p = parse_all(b"id,name\n1,Jos\xE9\n2,b\n", &d).unwrap();
        assert_eq!(reasons(&p), [(2, Some("invalid_encoding")), (3, None)]);
        let d = Dialect::from_toml("encoding = \"windows-1252\"").unwrap();
        let p = parse_all(b"id,name\n1,Jos\xE9\n", &d).unwrap();
        assert_eq!(p.records[0].1[1], "José".as_bytes());
        assert_eq!(p.records[0].2, None);
    }

    #[test]
    fn aliases_rename_header_spellings() {
        let d = Dialect::from_toml("aliases = { id = [\"Patron ID\", \"PID\"] }").unwrap();
        let p = parse_all(b"pid,name\n1,a\n", &d).unwrap();
        assert_eq!(p.columns, ["id", "name"]);
    }

    const SIF: &str = r#"
format = "fixed_width"
fields = [
  { name = "GROUP", start = 1, length = 4 },
  { name = "ID", start = 5, length = 3 },
]
[[segments]]
prefix = "ADDR"
start = 8
length = 5
count = 2
fields = [{ name = "TYPE", start = 1, length = 1 }, { name = "LINE1", start = 2, length = 4 }]
"#;

    #[test]
    fn fixed_width_with_segments_in_characters() {
        let d = Dialect::from_toml(&SIF.replace("format", "ragged = true\nformat")).unwrap();
        let data = "UG  0011Élm 2Oak \n\nGR  002\r\nST  0031Pine3Fir x\n".as_bytes();
        let p = parse_all(data, &d).unwrap();
        assert_eq!(
            p.columns,
            [
                "GROUP",
                "ID",
                "ADDR1_TYPE",
                "ADDR1_LINE1",
                "ADDR2_TYPE",
                "ADDR2_LINE1"
            ]
        );
        let f = |i: usize| {
            p.records[i]
                .1
                .iter()
                .map(|f| String::from_utf8(f.clone()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(f(0), ["UG  ", "001", "1", "Élm ", "2", "Oak "]);
        // A short line has empty trailing fields.
        assert_eq!(f(1), ["GR  ", "002", "", "", "", ""]);
        assert_eq!(
            reasons(&p),
            [(1, None), (3, None), (4, Some("field_count"))]
        );
        assert_eq!(p.blank_lines, 1);
        // Without `ragged` a line must be the layout's length; lines of
        // only spaces are blank.
        let d = Dialect::from_toml(SIF).unwrap();
        let data = "UG  0011Élm 2Oak \n     \nGR  002\r\nST  0031Pine3Fir x\n   ".as_bytes();
        let p = parse_all(data, &d).unwrap();
        assert_eq!(
            reasons(&p),
            [
                (1, None),
                (3, Some("record_length")),
                (4, Some("record_length"))
            ]
        );
        assert_eq!(p.blank_lines, 2);
        // In bytes the É takes two.
        let d =
            Dialect::from_toml(&SIF.replace("format", "units = \"bytes\"\nragged = true\nformat"))
                .unwrap();
        let p = parse_all("UG  0011Élm 2Oak\n".as_bytes(), &d).unwrap();
        assert_eq!(
            p.records[0].1[3],
            "Él"
                .as_bytes()
                .iter()
                .chain(b"m")
                .copied()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn fixed_width_layout_errors() {
        let e = |t: &str| Dialect::from_toml(t).unwrap_err();
        assert!(
            e("format = \"fixed_width\"\nfields = [{ name = \"a\", start = 0, length = 1 }]")
                .contains("1-based")
        );
        assert!(e(
            "format = \"fixed_width\"\nfields = [{ name = \"a\", start = 1, length = 1 }, \
                   { name = \"a\", start = 2, length = 1 }]"
        )
        .contains("twice"));
    }

    #[test]
    fn side_files_parse_and_refuse_ambiguity() {
        let spec = |key: Option<&str>, cols: &[&str]| SideFileSpec {
            path: "s".into(),
            delimiter: "|".into(),
            columns: cols.iter().map(|c| c.to_string()).collect(),
            key: key.map(String::from),
            join_on: None,
        };
        let p = Path::new("s");
        let s = SideFile::parse(&spec(Some("ID"), &["ID", "BC"]), p, b"1|a\n 2 |b").unwrap();
        assert_eq!(s.columns, ["BC"]);
        assert_eq!(s.values(Some(b"2")), Some(&[b"b".to_vec()][..]));
        assert_eq!(s.values(Some(b"3")), None);
        let e = SideFile::parse(&spec(Some("ID"), &["ID", "BC"]), p, b"1|a\n1|b\n").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let e = SideFile::parse(&spec(Some("ID"), &["ID", "BC"]), p, b"1|a|x\n").unwrap_err();
        assert!(e.to_string().contains("3 fields"), "{e}");
        let e = SideFile::parse(&spec(None, &["EXP"]), p, b"2030-01-01\n2031-01-01\n").unwrap_err();
        assert!(e.to_string().contains("one row"), "{e}");
        let s = SideFile::parse(&spec(None, &["EXP"]), p, b"2030-01-01").unwrap();
        assert_eq!(s.values(None), Some(&[b"2030-01-01".to_vec()][..]));
    }

    #[test]
    fn a_lone_cr_ends_a_line_like_the_csv_crate_ends_a_record() {
        let d = Dialect::from_toml("multiline = [\"name\"]").unwrap();
        let p = parse_all(b"id,name\r1,a\r\r2,b\r\n3,\"x\ry\"\n4,d", &d).unwrap();
        let lines: Vec<u64> = p.records.iter().map(|r| r.0).collect();
        assert_eq!(lines, [2, 4, 5, 7]);
        assert_eq!(p.blank_lines, 1);
    }
}
