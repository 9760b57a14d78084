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
        if spec.header && spec.columns.is_some() {
            return Err("give either header = true or `columns`, not both".into());
        }
        Ok(Dialect {
            delimiter,
            quote,
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

/// A parsed extract: its column names and a record reader.
pub struct Extract<'a> {
    /// Column names, from the header row or the profile.
    pub columns: Vec<String>,
    rdr: csv::Reader<&'a [u8]>,
    file: u32,
    bytes: &'a [u8],
    /// Newlines counted in `bytes[..counted_to]`.
    newlines: u64,
    counted_to: usize,
}

impl<'a> Extract<'a> {
    /// Opens `bytes` (the whole file) with `dialect`. Reads the header row
    /// when the dialect has one; a file without even a header is an error.
    pub fn open(path: &Path, file: u32, bytes: &'a [u8], dialect: &Dialect) -> Result<Extract<'a>> {
        let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        let mut b = csv::ReaderBuilder::new();
        b.delimiter(dialect.delimiter)
            .has_headers(false)
            .flexible(true);
        match dialect.quote {
            Some(q) => b.quote(q),
            None => b.quoting(false),
        };
        let mut rdr = b.from_reader(bytes);
        let columns = match &dialect.columns {
            Some(cols) => cols.clone(),
            None => {
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
                let mut cols = Vec::with_capacity(head.len());
                for (i, f) in head.iter().enumerate() {
                    let name = std::str::from_utf8(f).map_err(|_| Error::Input {
                        path: path.into(),
                        line: Some(1),
                        message: format!("header column {} is not valid UTF-8", i + 1),
                    })?;
                    cols.push(name.trim().to_string());
                }
                cols
            }
        };
        Ok(Extract {
            columns,
            rdr,
            file,
            bytes,
            newlines: 0,
            counted_to: 0,
        })
    }

    /// Reads the next record into `rec`, numbering it `number`. Returns
    /// `false` at the end of the file. Blank lines are not records.
    pub fn next_record(
        &mut self,
        number: u64,
        rec: &mut RawRecord,
    ) -> std::result::Result<bool, csv::Error> {
        if !self.rdr.read_byte_record(&mut rec.fields)? {
            return Ok(false);
        }
        rec.file = self.file;
        rec.number = number;
        let start = rec.fields.position().map_or(0, |p| p.byte() as usize);
        rec.line = self.line_at(start);
        Ok(true)
    }

    /// The 1-based line of the first byte of a record starting at or
    /// after `start`. We count newlines ourselves because the csv crate's
    /// line numbers drift by one on CRLF files (it places a record's start
    /// before the LF of the previous line's CRLF).
    fn line_at(&mut self, start: usize) -> u64 {
        let mut start = start.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start < self.counted_to {
            // Offsets only grow; guard anyway rather than count wrong.
            self.newlines = 0;
            self.counted_to = 0;
        }
        self.newlines += self.bytes[self.counted_to..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.counted_to = start;
        self.newlines + 1
    }
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
        let mut x = Extract::open(Path::new("t.csv"), 0, bytes, d).unwrap();
        let mut rec = RawRecord::new();
        let mut out = vec![];
        let mut n = 0;
        while x.next_record(n + 1, &mut rec).unwrap() {
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
