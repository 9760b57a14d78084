//! The record reader of one shard: delimited records through the `csv`
//! crate, fixed-width ones line by line, each with its position and,
//! for a broken record, the [`Fail`] that rejects it.

use crate::profile::{InvalidBytes, Units};
use crate::read::decode::{self};
use crate::report::{Fail, Reason};

use super::source::*;

/// The csv reader of a shard: over the whole text from `start`, with
/// positions relative to `start`. It seeks (see [`ShardReader::resume`])
/// rather than being rebuilt, as building one costs more than reading a
/// few records.
pub(super) fn body_reader(
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
pub(super) fn line_parser(delimiter: u8, quote: Option<u8>) -> csv_core::Reader {
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
pub(super) fn scan_line(p: &mut csv_core::Reader, text: &[u8]) -> (usize, bool) {
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

pub(super) fn csv_reader(
    data: &[u8],
    start: usize,
    delimiter: u8,
    quote: Option<u8>,
) -> csv::Reader<&[u8]> {
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
    pub(super) x: &'x Extract<'a>,
    /// The csv reader (delimited layouts), reading `data[base..]`.
    pub(super) csv: Option<csv::Reader<std::io::Cursor<&'a [u8]>>>,
    /// Parses single lines for the multi-line checks; built on first use.
    pub(super) lines: Option<Box<csv_core::Reader>>,
    pub(super) base: usize,
    /// Fixed-width layouts: where the next line starts.
    pub(super) pos: usize,
    pub(super) shard: Shard,
    /// Newlines counted in `data[..counted_to]`.
    pub(super) newlines: u64,
    pub(super) counted_to: usize,
    pub(super) first_seen: Option<usize>,
    pub(super) next_start: Option<usize>,
    pub(super) done: bool,
    pub(super) trailing_blank: u64,
    /// Reused: byte offset of each character of a fixed-width line.
    pub(super) char_starts: Vec<usize>,
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
            // A well-formed value that spans lines leaves its quote open
            // across each middle line (an even number of quotes: its own
            // are doubled) and closes it on the last (an odd number). A
            // quote that "closes" on another count is the opening quote of
            // some later field: a broken line taking in the next one.
            if let Some(q) = d.quote {
                // The value's first lone quote on a continuation line ends
                // it; right after a delimiter it is rather the opening quote
                // of a field of a record of its own (two broken lines
                // pairing up).
                if opens_field(&data[p..e], q, d.delimiter) {
                    return Some(format!(
                        "would take in line {line}, which starts a quoted field of its own"
                    ));
                }
                let odd = memchr::memchr_iter(q, &data[p..e]).count() % 2 == 1;
                if odd != (next >= content_end || e >= content_end) {
                    return Some(format!(
                        "would take in line {line}, whose quotes do not continue the value \
                         (an {} number of them)",
                        if odd { "odd" } else { "even" }
                    ));
                }
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

pub(super) fn units_name(u: Units) -> &'static str {
    match u {
        Units::Chars => "characters",
        Units::Bytes => "bytes",
    }
}

/// `b` without its trailing line break(s).
pub(super) fn trim_line_end(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = b {
        b = rest;
    }
    b
}

/// Where the line holding `start` ends (its first CR or LF, or the end of
/// the data) and where the next line starts.
pub(super) fn line_end(data: &[u8], start: usize) -> (usize, usize) {
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

/// Whether the first lone quote of `line` (not one of a doubled pair)
/// comes right after a delimiter: the opening quote of a field.
fn opens_field(line: &[u8], quote: u8, delimiter: u8) -> bool {
    let mut i = 0;
    while let Some(k) = memchr::memchr(quote, &line[i..]) {
        let at = i + k;
        if line.get(at + 1) == Some(&quote) {
            i = at + 2;
            continue;
        }
        return at > 0 && line[at - 1] == delimiter;
    }
    false
}
