//! Source stage: bytes of one extract → records with their positions.
//!
//! The parser is the `csv` crate over an in-memory byte slice, so the same
//! code later runs over a memory-mapped file or a shard of one. Each
//! [`RawRecord`] carries its source file, the line where it starts and its
//! global record number, which is what rejects, errors and the parallel
//! engine's ordering all key on.

use std::path::Path;

use crate::error::{Error, Result};
use crate::profile::InputSpec;

/// Byte-order mark of UTF-8, skipped at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The compiled input dialect.
#[derive(Debug, Clone)]
pub struct Dialect {
    delimiter: u8,
    quote: Option<u8>,
    header: bool,
    columns: Option<Vec<String>>,
}

impl Dialect {
    /// Validates the `[input]` table of a profile.
    pub fn new(spec: &InputSpec) -> std::result::Result<Dialect, String> {
        let label = spec.encoding.trim().to_ascii_lowercase();
        if !matches!(label.as_str(), "utf-8" | "utf8" | "unicode-1-1-utf-8") {
            return Err(format!(
                "encoding `{}` is not supported yet; use utf-8",
                spec.encoding
            ));
        }
        let delimiter =
            single_byte("delimiter", &spec.delimiter)?.ok_or("delimiter must not be `none`")?;
        let quote = single_byte("quote", &spec.quote)?;
        if Some(delimiter) == quote {
            return Err("delimiter and quote must differ".into());
        }
        if !spec.header && spec.columns.is_none() {
            return Err("header = false needs `columns = [...]` naming every column".into());
        }
        Ok(Dialect {
            delimiter,
            quote,
            header: spec.header,
            columns: spec.columns.clone(),
        })
    }
}

fn single_byte(what: &str, s: &str) -> std::result::Result<Option<u8>, String> {
    match s {
        "tab" | "\t" => Ok(Some(b'\t')),
        "none" | "" => Ok(None),
        _ if s.len() == 1 && s.is_ascii() => Ok(Some(s.as_bytes()[0])),
        _ => Err(format!(
            "{what} must be one ASCII character, `tab` or `none`, not `{s}`"
        )),
    }
}

/// One input record, not yet decoded.
#[derive(Debug, Clone)]
pub struct RawRecord {
    /// Index of the source file in the run's input list.
    pub file: u32,
    /// 1-based physical line where the record starts.
    pub line: u64,
    /// 1-based record number across the whole run (headers excluded).
    pub number: u64,
    /// The fields as parsed (quotes removed).
    pub fields: csv::ByteRecord,
}

/// An opened extract: its column names and where its records begin.
pub struct Extract<'a> {
    /// Column names, from the header row or the profile.
    pub columns: Vec<String>,
    /// The file's bytes after any byte-order mark; every offset in this
    /// module is into this slice.
    data: &'a [u8],
    /// Offset of the first byte after the header row.
    body: usize,
    /// Newlines before `body`.
    body_newlines: u64,
    file: u32,
    delimiter: u8,
    quote: Option<u8>,
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

impl<'a> Extract<'a> {
    /// Opens `bytes` (the whole file) with `dialect`. Reads the header row
    /// when the dialect has one; a file without even a header is an error.
    pub fn open(path: &Path, file: u32, bytes: &'a [u8], dialect: &Dialect) -> Result<Extract<'a>> {
        let data = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        let mut x = Extract {
            columns: Vec::new(),
            data,
            body: 0,
            body_newlines: 0,
            file,
            delimiter: dialect.delimiter,
            quote: dialect.quote,
        };
        if !dialect.header {
            x.columns = dialect.columns.clone().unwrap_or_default();
            return Ok(x);
        }
        let mut rdr = x.csv_reader(0);
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
        x.body_newlines = count_newlines(&data[..x.body]);
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
            return Ok(x);
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
        x.columns = cols;
        Ok(x)
    }

    fn csv_reader(&self, start: usize) -> csv::Reader<&'a [u8]> {
        let mut b = csv::ReaderBuilder::new();
        b.delimiter(self.delimiter)
            .has_headers(false)
            .flexible(true);
        match self.quote {
            Some(q) => b.quote(q),
            None => b.quoting(false),
        };
        b.from_reader(&self.data[start..])
    }

    /// The file's bytes after any byte-order mark.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The quote byte, if quoting is on.
    pub fn quote(&self) -> Option<u8> {
        self.quote
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
    /// [`crate::shard::plan`]).
    pub fn shards(&self, target: usize) -> Vec<Shard> {
        crate::shard::plan(self.data, self.whole(), self.quote, target)
    }

    /// A reader of the records that start inside `shard`.
    pub fn reader(&self, shard: Shard) -> ShardReader<'a> {
        ShardReader {
            rdr: self.csv_reader(shard.start),
            data: self.data,
            shard,
            file: self.file,
            newlines: shard.newlines_before,
            counted_to: shard.start,
            first_seen: None,
            next_start: None,
            done: false,
        }
    }
}

/// Reads the records of one shard.
pub struct ShardReader<'a> {
    rdr: csv::Reader<&'a [u8]>,
    data: &'a [u8],
    shard: Shard,
    file: u32,
    /// Newlines counted in `data[..counted_to]`.
    newlines: u64,
    counted_to: usize,
    first_seen: Option<usize>,
    next_start: Option<usize>,
    done: bool,
}

impl ShardReader<'_> {
    /// Reads the next record of the shard into `rec`, numbering it
    /// `number`. Returns `false` once the next record starts at or after
    /// the shard's end, or at the end of the file. Blank lines are not
    /// records.
    pub fn next_record(
        &mut self,
        number: u64,
        rec: &mut RawRecord,
    ) -> std::result::Result<bool, csv::Error> {
        if self.done {
            return Ok(false);
        }
        if !self.rdr.read_byte_record(&mut rec.fields)? {
            self.done = true;
            return Ok(false);
        }
        let rel = rec.fields.position().map_or(0, |p| p.byte() as usize);
        let start = self.true_start(self.shard.start + rel);
        self.first_seen.get_or_insert(start);
        if start >= self.shard.end {
            self.next_start = Some(start);
            self.done = true;
            return Ok(false);
        }
        rec.file = self.file;
        rec.number = number;
        rec.line = self.line_at(start);
        Ok(true)
    }

    /// Where the first record this reader saw starts (emitted or not);
    /// `None` if it saw none. Valid once [`ShardReader::next_record`]
    /// returned `false`.
    pub fn first_seen(&self) -> Option<usize> {
        self.first_seen
    }

    /// Where the first record at or after the shard's end starts, `None`
    /// at the end of the file. The next shard is correct exactly when its
    /// first record starts there: from a record start on, the parse cannot
    /// depend on where it began.
    pub fn next_start(&self) -> Option<usize> {
        self.next_start
    }

    /// The csv crate reports a record as starting before the LF of the
    /// previous line's CRLF, and before blank lines it skipped; the record
    /// really starts at its first other byte.
    fn true_start(&self, mut start: usize) -> usize {
        start = start.min(self.data.len());
        while start < self.data.len() && matches!(self.data[start], b'\r' | b'\n') {
            start += 1;
        }
        start
    }

    /// The 1-based line of `start`. We count newlines ourselves because
    /// the csv crate's line numbers drift by one on CRLF files.
    fn line_at(&mut self, start: usize) -> u64 {
        if start >= self.counted_to {
            self.newlines += count_newlines(&self.data[self.counted_to..start]);
            self.counted_to = start;
        }
        self.newlines + 1
    }
}

/// Number of LF bytes in `b`.
pub fn count_newlines(b: &[u8]) -> u64 {
    b.iter().filter(|&&c| c == b'\n').count() as u64
}

impl RawRecord {
    /// An empty record buffer, reused across reads.
    pub fn new() -> RawRecord {
        RawRecord {
            file: 0,
            line: 0,
            number: 0,
            fields: csv::ByteRecord::new(),
        }
    }
}

impl Default for RawRecord {
    fn default() -> Self {
        RawRecord::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect(header: bool) -> Dialect {
        Dialect::new(&InputSpec {
            format: Default::default(),
            delimiter: ",".into(),
            quote: "\"".into(),
            header,
            columns: if header {
                None
            } else {
                Some(vec!["a".into(), "b".into()])
            },
            encoding: "utf-8".into(),
        })
        .unwrap()
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
        let (cols, recs) = read_all(data, &dialect(true));
        assert_eq!(cols, ["id", "name"]);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], (2, 1, vec!["1".into(), "a\nb".into()]));
        // The quoted newline moved the next record down a line, and the
        // blank line is not a record.
        assert_eq!(recs[1], (5, 2, vec!["2".into(), "x,y".into()]));
    }

    #[test]
    fn lf_and_crlf_give_the_same_line_numbers() {
        let lf = b"h1,h2\n\n1,\"x\ny\"\n2,b\n\n\n3,c";
        let crlf = b"h1,h2\r\n\r\n1,\"x\r\ny\"\r\n2,b\r\n\r\n\r\n3,c";
        let lines = |b: &[u8]| {
            read_all(b, &dialect(true))
                .1
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>()
        };
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
    fn dialect_rejects_bad_settings() {
        let mut spec = InputSpec {
            format: Default::default(),
            delimiter: "||".into(),
            quote: "\"".into(),
            header: true,
            columns: None,
            encoding: "utf-8".into(),
        };
        assert!(Dialect::new(&spec).unwrap_err().contains("delimiter"));
        spec.delimiter = "tab".into();
        assert!(Dialect::new(&spec).is_ok());
        spec.encoding = "latin1".into();
        assert!(Dialect::new(&spec).unwrap_err().contains("encoding"));
    }
}
