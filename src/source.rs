//! Source stage: UTF-8 text of one extract → records with their positions.
//!
//! Delimited extracts are parsed by the `csv` crate over an in-memory byte
//! slice, so the same code runs over a memory-mapped file, a decoded
//! buffer (see [`crate::decode`]) or a shard of either. Fixed-width
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

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::decode::{self, Encoding, Text};
use crate::error::{Error, Result};
use crate::profile::{InputFormat, InputSpec, InvalidBytes, SideFileSpec, Units};
use crate::report::{Fail, Reason};

/// Byte-order mark of UTF-8, skipped at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The largest fixed-width start or length: far beyond any real layout,
/// small enough that positions never overflow.
const MAX_POSITION: usize = 1 << 20;
/// The most repetitions of one fixed-width segment.
const MAX_SEGMENTS: usize = 1000;

/// A compiled fixed-width layout: byte or character ranges per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedLayout {
    /// Column names, in layout order (segments expanded).
    pub names: Vec<String>,
    /// `(start, end)` per column, 0-based, end exclusive, in `units`.
    pub ranges: Vec<(usize, usize)>,
    /// Whether ranges count characters or bytes.
    pub units: Units,
    /// Units the layout covers: text beyond it must be blank.
    pub width: usize,
}

impl FixedLayout {
    /// Compiles the `fields` and `segments` of `spec`.
    pub fn new(spec: &InputSpec) -> std::result::Result<FixedLayout, String> {
        let mut names = Vec::new();
        let mut ranges = Vec::new();
        let mut push = |name: String,
                        base: usize,
                        f: &crate::profile::FixedField,
                        limit: Option<usize>|
         -> std::result::Result<(), String> {
            if f.start == 0 || f.length == 0 {
                return Err(format!(
                    "field `{name}`: start is 1-based and length must be at least 1"
                ));
            }
            if f.start > MAX_POSITION || f.length > MAX_POSITION {
                return Err(format!(
                    "field `{name}`: start and length may not exceed {MAX_POSITION}"
                ));
            }
            let start = base + f.start - 1;
            if let Some(l) = limit {
                if f.start - 1 + f.length > l {
                    return Err(format!(
                        "field `{name}` ends past its segment's length ({l})"
                    ));
                }
            }
            if names.contains(&name) {
                return Err(format!("column `{name}` is declared twice"));
            }
            names.push(name);
            ranges.push((start, start + f.length));
            Ok(())
        };
        for f in &spec.fields {
            push(f.name.clone(), 0, f, None)?;
        }
        for seg in &spec.segments {
            if seg.start == 0 || seg.length == 0 || seg.count == 0 {
                return Err(format!(
                    "segment `{}`: start is 1-based, length and count must be at least 1",
                    seg.prefix
                ));
            }
            if seg.start > MAX_POSITION || seg.length > MAX_POSITION || seg.count > MAX_SEGMENTS {
                return Err(format!(
                    "segment `{}`: start and length may not exceed {MAX_POSITION}, count {MAX_SEGMENTS}",
                    seg.prefix
                ));
            }
            for n in 1..=seg.count {
                let base = seg.start - 1 + (n - 1) * seg.length;
                for f in &seg.fields {
                    push(
                        format!("{}{n}_{}", seg.prefix, f.name),
                        base,
                        f,
                        Some(seg.length),
                    )?;
                }
            }
        }
        if names.is_empty() {
            return Err("format = \"fixed_width\" needs `fields` (or `segments`)".into());
        }
        let width = ranges.iter().map(|r| r.1).max().unwrap_or(0);
        Ok(FixedLayout {
            names,
            ranges,
            units: spec.units,
            width,
        })
    }
}

/// A side file loaded for joining (see [`SideFileSpec`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideFile {
    /// The value columns it adds to the extract (all but its key).
    pub columns: Vec<String>,
    /// The extract column it joins on; `None` for a one-row file that
    /// applies to every record.
    pub join_on: Option<String>,
    /// Trimmed key → values.
    rows: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    /// The values of a file without a key.
    constant: Vec<Vec<u8>>,
}

impl SideFile {
    /// Loads `spec.path`, relative to `base` (the profile's directory),
    /// decoded like the extract. A row with the wrong number of fields,
    /// or a key given twice, is an input error: a join that could pick
    /// either value would lose data silently.
    pub fn load(spec: &SideFileSpec, base: &Path, encoding: Encoding) -> Result<SideFile> {
        let path = base.join(&spec.path);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let text = decode::decode(&bytes, encoding).map_err(|message| Error::Input {
            path: path.clone(),
            line: None,
            message,
        })?;
        SideFile::parse(spec, &path, &text.bytes)
    }

    /// Parses a side file's UTF-8 text (see [`SideFile::load`]).
    pub fn parse(spec: &SideFileSpec, path: &Path, text: &[u8]) -> Result<SideFile> {
        let err = |line: Option<u64>, message: String| Error::Input {
            path: path.to_path_buf(),
            line,
            message,
        };
        let delimiter = single_byte("delimiter", &spec.delimiter)
            .map_err(|m| err(None, m))?
            .ok_or_else(|| err(None, "delimiter must not be `none`".into()))?;
        let key = match &spec.key {
            Some(k) => Some(
                spec.columns
                    .iter()
                    .position(|c| c == k)
                    .ok_or_else(|| err(None, format!("key `{k}` is not one of its columns")))?,
            ),
            None => None,
        };
        let mut side = SideFile {
            columns: spec
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != key)
                .map(|(_, c)| c.clone())
                .collect(),
            join_on: key.map(|_| {
                spec.join_on
                    .clone()
                    .or(spec.key.clone())
                    .unwrap_or_default()
            }),
            rows: HashMap::new(),
            constant: Vec::new(),
        };
        let mut rdr = csv_reader(text, 0, delimiter, None);
        let mut rec = csv::ByteRecord::new();
        let mut first = true;
        while rdr
            .read_byte_record(&mut rec)
            .map_err(|e| err(None, e.to_string()))?
        {
            let line = rec.position().map_or(0, |p| p.line());
            if rec.len() != spec.columns.len() {
                return Err(err(
                    Some(line),
                    format!(
                        "the row has {} fields; `columns` names {}",
                        rec.len(),
                        spec.columns.len()
                    ),
                ));
            }
            let values: Vec<Vec<u8>> = rec
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != key)
                .map(|(_, f)| f.to_vec())
                .collect();
            match key {
                Some(k) => {
                    let kv = rec[k].trim_ascii().to_vec();
                    if side.rows.insert(kv, values).is_some() {
                        return Err(err(
                            Some(line),
                            format!(
                                "key `{}` is given twice",
                                crate::error::excerpt(&String::from_utf8_lossy(&rec[k]), 200)
                            ),
                        ));
                    }
                }
                None if first => side.constant = values,
                None => {
                    return Err(err(
                        Some(line),
                        "a side file without `key` must have one row".into(),
                    ))
                }
            }
            first = false;
        }
        if key.is_none() && first {
            return Err(err(None, "the side file is empty".into()));
        }
        Ok(side)
    }

    /// The values joined to a record whose join column holds `key`;
    /// `None` when the file has no row for it.
    fn values(&self, key: Option<&[u8]>) -> Option<&[Vec<u8>]> {
        match key {
            None => Some(&self.constant),
            Some(k) => self.rows.get(k.trim_ascii()).map(|v| v.as_slice()),
        }
    }
}

/// The compiled input dialect.
#[derive(Debug, Clone)]
pub struct Dialect {
    delimiter: u8,
    quote: Option<u8>,
    header: bool,
    columns: Option<Vec<String>>,
    /// The declared encoding.
    pub encoding: Encoding,
    invalid_bytes: InvalidBytes,
    max_record_lines: u64,
    max_record_bytes: u64,
    max_field_bytes: u64,
    fixed: Option<Arc<FixedLayout>>,
    aliases: Vec<(String, Vec<String>)>,
    side_files: Vec<Arc<SideFile>>,
    /// Columns whose quoted values may span lines.
    multiline: Vec<String>,
    /// Fixed-width: lines need not be the layout's length.
    ragged: bool,
}

impl Dialect {
    /// Adds loaded side files (see [`SideFile::load`]).
    pub fn with_side_files(mut self, files: Vec<SideFile>) -> Dialect {
        self.side_files = files.into_iter().map(Arc::new).collect();
        self
    }

    /// Validates the `[input]` table of a profile.
    pub fn new(spec: &InputSpec) -> std::result::Result<Dialect, String> {
        let encoding = Encoding::from_label(&spec.encoding)?;
        if spec.max_record_lines == 0 || spec.max_record_bytes == 0 || spec.max_field_bytes == 0 {
            return Err(
                "max_record_lines, max_record_bytes and max_field_bytes must be at least 1".into(),
            );
        }
        let mut d = Dialect {
            delimiter: b',',
            quote: None,
            header: false,
            columns: None,
            encoding,
            invalid_bytes: spec.invalid_bytes,
            max_record_lines: spec.max_record_lines,
            max_record_bytes: spec.max_record_bytes,
            max_field_bytes: spec.max_field_bytes,
            fixed: None,
            aliases: spec
                .aliases
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            side_files: Vec::new(),
            multiline: spec.multiline.clone(),
            ragged: spec.ragged,
        };
        if spec.format == InputFormat::FixedWidth {
            if !spec.multiline.is_empty() {
                return Err("`multiline` applies to delimited extracts: a fixed-width \
                            record is one line"
                    .into());
            }
            if spec.columns.is_some() {
                return Err(
                    "fixed_width layouts name their columns in `fields`, not `columns`".into(),
                );
            }
            let layout = FixedLayout::new(spec)?;
            d.columns = Some(layout.names.clone());
            d.fixed = Some(Arc::new(layout));
            d.header = spec.header.unwrap_or(false);
            return Ok(d);
        }
        if !spec.fields.is_empty() || !spec.segments.is_empty() {
            return Err("`fields` and `segments` need format = \"fixed_width\"".into());
        }
        if spec.ragged {
            return Err(
                "`ragged` applies to fixed-width layouts; delimited extracts \
                        use `ragged_rows`"
                    .into(),
            );
        }
        d.delimiter =
            single_byte("delimiter", &spec.delimiter)?.ok_or("delimiter must not be `none`")?;
        d.quote = single_byte("quote", &spec.quote)?;
        if Some(d.delimiter) == d.quote {
            return Err("delimiter and quote must differ".into());
        }
        if matches!(d.delimiter, b'\r' | b'\n') || matches!(d.quote, Some(b'\r' | b'\n')) {
            return Err("delimiter and quote may not be a line break".into());
        }
        d.header = spec.header.unwrap_or(true);
        if !d.header && spec.columns.is_none() {
            return Err("header = false needs `columns = [...]` naming every column".into());
        }
        d.columns = spec.columns.clone();
        Ok(d)
    }

    /// A dialect from `[input]` TOML text (tests and fuzz targets).
    pub fn from_toml(text: &str) -> std::result::Result<Dialect, String> {
        let spec: InputSpec = toml::from_str(text).map_err(|e| e.to_string())?;
        Dialect::new(&spec)
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
    data: &'a [u8],
    /// Offsets of replaced invalid sequences (see [`Text::invalid`]).
    invalid: &'a [usize],
    /// Offset of the first byte after the header row.
    body: usize,
    /// Newlines before `body`.
    body_newlines: u64,
    file: u32,
    dialect: Dialect,
    /// The header row's fields, trimmed, to spot a repeated header.
    header_row: Option<Vec<Vec<u8>>>,
    encoding: &'static str,
    /// Columns of the extract itself, before side-file columns.
    width: usize,
    /// Side files with the index of the column they join on.
    joins: Vec<(Option<usize>, Arc<SideFile>)>,
    /// Per column of the extract: whether its values may span lines.
    multiline: Vec<bool>,
    /// Where the header row's text ends (before its line break); 0
    /// without a header.
    head_end: usize,
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
    /// [`crate::shard::plan`]). Without `multiline` columns every line
    /// break ends a record (a record that would span lines is rejected at
    /// its first line), so the plan splits on line breaks alone, whatever
    /// the quotes; with them it avoids quoted line breaks.
    pub fn shards(&self, target: usize) -> Vec<Shard> {
        let quote = if self.multiline.contains(&true) {
            self.dialect.quote
        } else {
            None
        };
        crate::shard::plan(self.data, self.whole(), quote, target)
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

/// The csv reader of a shard: over the whole text from `start`, with
/// positions relative to `start`. It seeks (see [`ShardReader::resume`])
/// rather than being rebuilt, as building one costs more than reading a
/// few records.
fn body_reader(
    data: &[u8],
    start: usize,
    delimiter: u8,
    quote: Option<u8>,
) -> csv::Reader<std::io::Cursor<&[u8]>> {
    let mut b = csv::ReaderBuilder::new();
    b.delimiter(delimiter).has_headers(false).flexible(true);
    match quote {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    let mut cur = std::io::Cursor::new(data);
    cur.set_position(start.min(data.len()) as u64);
    b.from_reader(cur)
}

/// A csv parser for one line at a time (see [`scan_line`]).
fn line_parser(delimiter: u8, quote: Option<u8>) -> csv_core::Reader {
    let mut b = csv_core::ReaderBuilder::new();
    b.delimiter(delimiter);
    match quote {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    b.build()
}

/// Parses `text` followed by one more line break, by csv rules: the
/// number of fields of its first record, and whether that record ended
/// within the text or at the added break (`false`: it ran to the end
/// inside an open quote).
fn scan_line(p: &mut csv_core::Reader, text: &[u8]) -> (usize, bool) {
    use csv_core::ReadFieldResult;
    p.reset();
    let mut out = [0u8; 256];
    let mut fields = 0;
    for chunk in [text, b"\n", b""] {
        let mut input = chunk;
        loop {
            let (res, nin, _) = p.read_field(input, &mut out);
            input = &input[nin..];
            match res {
                ReadFieldResult::InputEmpty => break,
                ReadFieldResult::OutputFull => {}
                ReadFieldResult::Field { record_end } => {
                    fields += 1;
                    if record_end {
                        return (fields, !chunk.is_empty());
                    }
                }
                ReadFieldResult::End => return (fields, false),
            }
        }
    }
    (fields, false)
}

fn csv_reader(data: &[u8], start: usize, delimiter: u8, quote: Option<u8>) -> csv::Reader<&[u8]> {
    let mut b = csv::ReaderBuilder::new();
    b.delimiter(delimiter).has_headers(false).flexible(true);
    match quote {
        Some(q) => b.quote(q),
        None => b.quoting(false),
    };
    b.from_reader(&data[start.min(data.len())..])
}

/// Reads the records of one shard.
pub struct ShardReader<'x, 'a> {
    x: &'x Extract<'a>,
    /// The csv reader (delimited layouts), reading `data[base..]`.
    csv: Option<csv::Reader<std::io::Cursor<&'a [u8]>>>,
    /// Parses single lines for the multi-line checks; built on first use.
    lines: Option<Box<csv_core::Reader>>,
    base: usize,
    /// Fixed-width layouts: where the next line starts.
    pos: usize,
    shard: Shard,
    /// Newlines counted in `data[..counted_to]`.
    newlines: u64,
    counted_to: usize,
    first_seen: Option<usize>,
    next_start: Option<usize>,
    done: bool,
    trailing_blank: u64,
    /// Reused: byte offset of each character of a fixed-width line.
    char_starts: Vec<usize>,
}

impl ShardReader<'_, '_> {
    /// Reads the next record of the shard into `rec`, numbering it
    /// `number`. Returns `false` once the next record starts at or after
    /// the shard's end, or at the end of the file. Blank lines are not
    /// records (they are counted in [`RawRecord::blank_before`] and
    /// [`ShardReader::trailing_blank`]).
    pub fn next_record(
        &mut self,
        number: u64,
        rec: &mut RawRecord,
    ) -> std::result::Result<bool, csv::Error> {
        if self.done {
            return Ok(false);
        }
        let data = self.x.data;
        let (start, end) = if self.csv.is_some() {
            match self.read_delimited(rec)? {
                Some(r) => r,
                None => return Ok(false),
            }
        } else {
            // Lines of only spaces are blank lines in a fixed-width file:
            // they are counted by `blank_before`, never records.
            let mut p = self.pos;
            loop {
                while p < data.len() && matches!(data[p], b'\r' | b'\n') {
                    p += 1;
                }
                if p >= data.len() {
                    self.finish();
                    return Ok(false);
                }
                let (e, next) = line_end(data, p);
                if !data[p..e].iter().all(|&b| b == b' ') {
                    break;
                }
                p = next;
            }
            (p, 0)
        };
        self.first_seen.get_or_insert(start);
        if start >= self.shard.end {
            self.next_start = Some(start);
            self.done = true;
            return Ok(false);
        }
        rec.file = self.x.file;
        rec.number = number;
        rec.line = self.line_at(start);
        rec.last_line = rec.line;
        rec.start = start;
        rec.fail = None;
        rec.replaced = 0;
        rec.replaced_at = None;
        rec.blank_before = self.blank_before(start);
        if self.csv.is_some() {
            rec.end = end;
            self.check_delimited(rec);
        } else {
            self.read_fixed(rec);
        }
        if rec.fail.is_none() {
            self.check_common(rec);
        }
        self.join(rec);
        Ok(true)
    }

    /// Appends the side files' values. Only a record with the extract's
    /// own number of fields is joined: in a ragged one the join column
    /// cannot be trusted (it is rejected, or padded with empty values).
    fn join(&self, rec: &mut RawRecord) {
        if self.x.joins.is_empty() || rec.fields.len() != self.x.width {
            return;
        }
        for (at, side) in &self.x.joins {
            let key = at.map(|i| &rec.fields[i]);
            match side.values(key) {
                Some(vals) => {
                    for v in vals {
                        rec.fields.push_field(v);
                    }
                }
                None => {
                    for _ in &side.columns {
                        rec.fields.push_field(b"");
                    }
                }
            }
        }
    }

    /// Reads the next delimited record; `(start, end)` of it, `None` at the
    /// end of the file.
    fn read_delimited(
        &mut self,
        rec: &mut RawRecord,
    ) -> std::result::Result<Option<(usize, usize)>, csv::Error> {
        let Some(rdr) = self.csv.as_mut() else {
            return Ok(None);
        };
        if !rdr.read_byte_record(&mut rec.fields)? {
            self.finish();
            return Ok(None);
        }
        let rel = rec.fields.position().map_or(0, |p| p.byte() as usize);
        let end = (self.base + rdr.position().byte() as usize).min(self.x.data.len());
        let start = self.true_start(self.base + rel);
        Ok(Some((start, end.max(start))))
    }

    /// Bounds a delimited record: an unbalanced quote, an overlong record
    /// or field.
    ///
    /// A record may span lines only when every line break in it lies in a
    /// `multiline` column, it has the extract's field count, it stays
    /// within `max_record_lines`, and none of its continuation lines would
    /// be a complete record on its own; and no record may end inside an
    /// open quote at the end of the file. Otherwise only its first line is
    /// rejected (`unbalanced_quote`) and reading resumes on the next line,
    /// so a line that is a patron on its own is never absorbed into
    /// another record.
    fn check_delimited(&mut self, rec: &mut RawRecord) {
        let data = self.x.data;
        let d = &self.x.dialect;
        let (start, end) = (rec.start, rec.end);
        let content_end = start + trim_line_end(&data[start..end]).len();
        let lines = count_breaks(data, start, content_end) + 1;
        let mut why = if lines > 1 {
            self.span_problem(rec, content_end, lines)
        } else {
            None
        };
        if why.is_none() && end >= data.len() && self.ends_in_quotes(start) {
            why = Some("runs to the end of the file inside quotes".to_string());
        }
        if let Some(why) = why {
            // Resume on the line after the record's start. Its fields are
            // not kept: with the quoting broken they cannot be trusted.
            let next = line_end(data, start).1;
            rec.fields.clear();
            self.resume(next);
            rec.end = next;
            rec.fail = Some(Fail::new(
                Reason::UnbalancedQuote,
                "",
                format!(
                    "a quote opened at line {l} does not close on that line (the record {why}); \
                     line {l} is rejected and reading resumes at line {}. If line breaks are \
                     legitimate in that column, list it in `[input] multiline`",
                    rec.line + 1,
                    l = rec.line,
                ),
            ));
            return;
        }
        // A one-line record with an odd number of quotes holds a quote
        // that closes nothing opened on its line: the tail of a value
        // broken over lines (whose first line was rejected above, perhaps
        // in another shard) or a stray quote. The csv rules would keep it
        // as text and write, say, half a primary id with the rest of the
        // patron's row; the line is rejected instead, decided from the line
        // alone so every shard plan agrees.
        if lines == 1 {
            if let Some(q) = d.quote {
                let line = &data[start..content_end];
                let n = memchr::memchr_iter(q, line).count();
                if n % 2 == 1 {
                    rec.fields.clear();
                    rec.fail = Some(Fail::new(
                        Reason::UnbalancedQuote,
                        "",
                        format!(
                            "line {} holds an odd number of quotes ({n}): a quote that closes a \
                             value broken over lines, or a stray quote; the line is rejected \
                             because its columns cannot be trusted",
                            rec.line
                        ),
                    ));
                    rec.last_line = rec.line;
                    return;
                }
            }
        }
        rec.last_line = rec.line + lines - 1;
        // The record's line breaks are counted: the next line number
        // need not count them again.
        if self.counted_to == start {
            self.newlines += lines - 1;
            self.counted_to = content_end;
        }
        if let Some(i) = rec
            .fields
            .iter()
            .position(|f| f.len() as u64 > d.max_field_bytes)
        {
            let name = self.x.columns.get(i).map_or("", |c| c.as_str());
            rec.fail = Some(Fail::new(
                Reason::FieldTooLong,
                name,
                format!(
                    "field {} ({name}) is {} bytes long; max_field_bytes is {}",
                    i + 1,
                    rec.fields[i].len(),
                    d.max_field_bytes
                ),
            ));
            return;
        }
        if let Some(h) = &self.x.header_row {
            if rec.fields.len() == h.len()
                && rec
                    .fields
                    .iter()
                    .zip(h)
                    .all(|(f, h)| f.trim_ascii() == &h[..])
            {
                rec.fail = Some(Fail::new(
                    Reason::HeaderRow,
                    "",
                    "the record repeats the header row",
                ));
            }
        }
    }

    /// Makes the csv reader go on at `at` (a line start).
    fn resume(&mut self, at: usize) {
        let d = &self.x.dialect;
        let ok = self.csv.as_mut().is_some_and(|r| {
            r.seek_raw(std::io::SeekFrom::Start(at as u64), csv::Position::new())
                .is_ok()
        });
        if !ok {
            self.csv = Some(body_reader(self.x.data, at, d.delimiter, d.quote));
        }
        self.base = at;
    }

    /// The single-line parser, built on first use.
    fn line_parser(&mut self) -> &mut csv_core::Reader {
        let d = &self.x.dialect;
        self.lines
            .get_or_insert_with(|| Box::new(line_parser(d.delimiter, d.quote)))
    }

    /// Why a record spanning `lines` lines may not (see
    /// [`ShardReader::check_delimited`]); `None` when it may.
    fn span_problem(&mut self, rec: &RawRecord, content_end: usize, lines: u64) -> Option<String> {
        let d = &self.x.dialect;
        // Outside quotes a line break ends the record, so each break of
        // the record is inside a quoted field and kept in its value.
        for (i, f) in rec.fields.iter().enumerate() {
            if memchr::memchr2(b'\n', b'\r', f).is_some()
                && !self.x.multiline.get(i).copied().unwrap_or(false)
            {
                let name = self.x.columns.get(i).map_or("?", |c| c.as_str());
                return Some(format!(
                    "would run over a line break in field {} ({name}), which is not a \
                     `multiline` column",
                    i + 1
                ));
            }
        }
        if rec.fields.len() != self.x.width {
            return Some(format!(
                "would span {lines} lines with {} fields instead of {}",
                rec.fields.len(),
                self.x.width
            ));
        }
        if lines > d.max_record_lines {
            return Some(format!(
                "would run past {} lines (max_record_lines)",
                d.max_record_lines
            ));
        }
        let data = self.x.data;
        let mut p = line_end(data, rec.start).1;
        let mut line = rec.line + 1;
        while p < content_end {
            let (e, next) = line_end(data, p);
            if let Some(what) = self.record_like(&data[p..e]) {
                return Some(format!("would take in line {line}, which {what}"));
            }
            p = next;
            line += 1;
        }
        None
    }

    /// Why one continuation line (without its line break) may not be part
    /// of a multi-line value, read on its own: it is a complete record
    /// (its quotes close on the line and it has the extract's field
    /// count), or it opens a quote that does not close on the line (a
    /// broken record start of its own: two such lines must not pair up
    /// into one record). A value's own text lines are neither.
    fn record_like(&mut self, line: &[u8]) -> Option<&'static str> {
        if line.is_empty() {
            return None;
        }
        let width = self.x.width;
        let (fields, closed) = scan_line(self.line_parser(), line);
        if !closed {
            Some("opens a quote of its own that does not close on it")
        } else if fields == width {
            Some("is a complete record on its own")
        } else {
            None
        }
    }

    /// Whether the record at `start`, which runs to the end of the file,
    /// ends inside an open quote. Follows csv semantics (a quote inside an
    /// unquoted field is data): the text is parsed with one more line
    /// break, which completes the record unless it is quoted.
    fn ends_in_quotes(&mut self, start: usize) -> bool {
        let data = self.x.data;
        let tail = &data[start..];
        let Some(q) = self.x.dialect.quote else {
            return false;
        };
        if memchr::memchr(q, tail).is_none() {
            return false;
        }
        !scan_line(self.line_parser(), tail).1
    }

    /// Cuts one fixed-width line into `rec.fields`.
    fn read_fixed(&mut self, rec: &mut RawRecord) {
        let data = self.x.data;
        let Some(layout) = self.x.dialect.fixed.clone() else {
            return;
        };
        let start = rec.start;
        let (end, next) = line_end(data, start);
        self.pos = next;
        rec.end = next;
        let line = &data[start..end];
        rec.fields.clear();
        let (len, tail) = match layout.units {
            Units::Bytes => {
                for &(a, b) in &layout.ranges {
                    rec.fields
                        .push_field(&line[a.min(line.len())..b.min(line.len())]);
                }
                (line.len(), &line[layout.width.min(line.len())..])
            }
            Units::Chars => {
                self.char_starts.clear();
                self.char_starts.extend(
                    line.iter()
                        .enumerate()
                        .filter(|(_, &b)| (b as i8) >= -0x40)
                        .map(|(i, _)| i),
                );
                let n = self.char_starts.len();
                let at = |c: usize| self.char_starts.get(c).copied().unwrap_or(line.len());
                for &(a, b) in &layout.ranges {
                    rec.fields.push_field(&line[at(a.min(n))..at(b.min(n))]);
                }
                (n, &line[at(layout.width.min(n))..])
            }
        };
        if !self.x.dialect.ragged && len != layout.width {
            rec.fail = Some(Fail::new(
                Reason::RecordLength,
                "",
                format!(
                    "the line is {len} {u} long; the layout expects {} {u} (set `ragged = true` \
                     to accept shorter and longer lines)",
                    layout.width,
                    u = units_name(layout.units),
                ),
            ));
        } else if !tail.trim_ascii().is_empty() {
            rec.fail = Some(Fail::new(
                Reason::FieldCount,
                "",
                format!(
                    "the line is {len} {} long and holds text past the layout's {}",
                    units_name(layout.units),
                    layout.width
                ),
            ));
        }
    }

    /// Checks every layout shares: record length, NUL bytes, invalid
    /// bytes.
    fn check_common(&mut self, rec: &mut RawRecord) {
        let data = self.x.data;
        let d = &self.x.dialect;
        let (start, end) = (rec.start, rec.end.min(data.len()));
        let bytes = &data[start..end];
        if bytes.len() as u64 > d.max_record_bytes {
            rec.fail = Some(Fail::new(
                Reason::RecordTooLong,
                "",
                format!(
                    "the record is {} bytes long; max_record_bytes is {}",
                    bytes.len(),
                    d.max_record_bytes
                ),
            ));
            return;
        }
        if let Some(i) = memchr::memchr(0, bytes) {
            let (l, c) = self.line_col(rec, start + i);
            rec.fail = Some(Fail::new(
                Reason::NulByte,
                "",
                format!(
                    "NUL byte at line {l}, column {c} (a UTF-16 file read as UTF-8? set \
                     `encoding`)"
                ),
            ));
            return;
        }
        let inv = self.x.invalid;
        if inv.is_empty() {
            return;
        }
        let a = inv.partition_point(|&o| o < start);
        let b = inv.partition_point(|&o| o < end);
        if a == b {
            return;
        }
        match d.invalid_bytes {
            InvalidBytes::Replace => {
                rec.replaced = (b - a) as u64;
                rec.replaced_at = Some(self.line_col(rec, inv[a]));
            }
            InvalidBytes::Reject => {
                let (l, c) = self.line_col(rec, inv[a]);
                rec.fail = Some(Fail::new(
                    Reason::InvalidEncoding,
                    "",
                    format!(
                        "bytes not valid {} at line {l}, column {c}{}",
                        self.x.encoding,
                        if b - a > 1 {
                            format!(" ({} invalid sequences in the record)", b - a)
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
    }

    /// Line and column of `pos` inside `rec` (which starts a line).
    fn line_col(&self, rec: &RawRecord, pos: usize) -> (u64, u64) {
        let within = &self.x.data[rec.start..pos];
        let line_start = within
            .iter()
            .rposition(|&b| matches!(b, b'\r' | b'\n'))
            .map_or(rec.start, |i| rec.start + i + 1);
        (
            rec.line + count_breaks(self.x.data, rec.start, pos),
            decode::column(&self.x.data[line_start..pos]),
        )
    }

    /// The end of the file: counts the blank lines after the last record.
    fn finish(&mut self) {
        self.done = true;
        let data = self.x.data;
        // A shard after this one can only hold these same blank lines;
        // the parallel engine ignores its count (see `engine::run_file`).
        self.trailing_blank = self.blank_before(data.len());
    }

    /// Blank lines right before `start` (a record start or the end of the
    /// file): the line breaks after the last other byte, less the one
    /// ending that byte's line (or the header's). In a fixed-width file a
    /// line of only spaces is blank too. Derived from the text alone, so
    /// every engine and shard plan counts each blank line exactly once.
    fn blank_before(&self, start: usize) -> u64 {
        let data = self.x.data;
        let spaces = self.x.dialect.fixed.is_some();
        let floor = self.x.head_end;
        let mut g = start;
        while g > floor && (matches!(data[g - 1], b'\r' | b'\n') || (spaces && data[g - 1] == b' '))
        {
            g -= 1;
        }
        let mut n = count_breaks(data, g, start);
        // A last line of only spaces, without a line break.
        if start == data.len() && start > g && !matches!(data[start - 1], b'\r' | b'\n') {
            n += 1;
        }
        // The break ending the previous line (or the header row) is not
        // a blank line.
        if g > 0 || self.x.dialect.header {
            n.saturating_sub(1)
        } else {
            n
        }
    }

    /// Blank lines after the last record, known once [`ShardReader::next_record`]
    /// returned `false` at the end of the file (0 otherwise).
    pub fn trailing_blank(&self) -> u64 {
        self.trailing_blank
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
        let data = self.x.data;
        start = start.min(data.len());
        while start < data.len() && matches!(data[start], b'\r' | b'\n') {
            start += 1;
        }
        start
    }

    /// The 1-based line of `start`. We count newlines ourselves because
    /// the csv crate's line numbers drift by one on CRLF files.
    fn line_at(&mut self, start: usize) -> u64 {
        if start >= self.counted_to {
            self.newlines += count_breaks(self.x.data, self.counted_to, start);
            self.counted_to = start;
        }
        self.newlines + 1
    }
}

fn units_name(u: Units) -> &'static str {
    match u {
        Units::Chars => "characters",
        Units::Bytes => "bytes",
    }
}

/// `b` without its trailing line break(s).
fn trim_line_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = b {
        b = rest;
    }
    b
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

/// Where the line holding `start` ends (its first CR or LF, or the end of
/// the data) and where the next line starts.
fn line_end(data: &[u8], start: usize) -> (usize, usize) {
    match data[start..]
        .iter()
        .position(|&b| matches!(b, b'\r' | b'\n'))
    {
        None => (data.len(), data.len()),
        Some(i) => {
            let e = start + i;
            let crlf = data[e] == b'\r' && data.get(e + 1) == Some(&b'\n');
            (e, e + 1 + usize::from(crlf))
        }
    }
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
