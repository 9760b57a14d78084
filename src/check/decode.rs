//! Bytes of one XML file → UTF-8 for the parser, with the line count and
//! the places where the bytes were not what they claimed to be.
//!
//! Alma's loader is a Java parser reading UTF-8. Before quick-xml sees a
//! byte we look at the start of the file the way that parser would
//! (byte-order mark, junk before `<?xml`, the declared encoding), then
//! stream the rest through a decoder:
//!
//! * declared or assumed UTF-8: bytes are validated as they pass; each
//!   invalid sequence becomes U+FFFD and its line is remembered, so the
//!   check can say which user holds it ("Invalid byte 1 of 1-byte UTF-8
//!   sequence" in Alma's words) instead of stopping at the first one, as
//!   quick-xml would;
//! * any other encoding (UTF-16 by byte-order mark, ISO-8859-1 or
//!   windows-1252 by declaration...) is transcoded with encoding_rs.
//!
//! Newlines survive decoding, so lines counted here are lines of the
//! original file. Lines are counted when the parser *consumes* bytes, not
//! when they are read ahead, so the count is exact at every event.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

/// How far into a file we look for the XML declaration.
const SNIFF_BYTES: usize = 4096;
/// Input chunk size.
const CHUNK: usize = 64 << 10;
/// Invalid-byte lines kept for attribution; beyond this only counted.
const MAX_PENDING: usize = 10_000;

/// What the start of a file said about its encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Sniffed {
    /// A byte-order mark was present: its name.
    pub(crate) bom: Option<&'static str>,
    /// The encoding the rest is decoded from, when not UTF-8.
    pub(crate) transcoded_from: Option<&'static str>,
    /// The declared encoding label, when it is not usable as declared.
    pub(crate) bad_label: Option<String>,
    /// Bytes before the XML declaration (or before the first `<`).
    pub(crate) junk_bytes: usize,
    /// Whether those bytes were only whitespace.
    pub(crate) junk_is_space: bool,
}

enum Mode {
    Utf8,
    Other(encoding_rs::Decoder),
}

/// A `BufRead` of UTF-8 over any byte source, counting consumed lines.
pub(crate) struct DecodeReader<R> {
    inner: R,
    input: Vec<u8>,
    ipos: usize,
    eof: bool,
    out: Vec<u8>,
    opos: usize,
    mode: Mode,
    lines: u64,
    invalid: VecDeque<u64>,
}

impl<R: Read> DecodeReader<R> {
    /// Reads the start of `inner`, decides the encoding and returns the
    /// reader positioned at the XML declaration (or first `<`).
    pub(crate) fn new(mut inner: R) -> io::Result<(DecodeReader<R>, Sniffed)> {
        let mut input = Vec::with_capacity(CHUNK);
        let mut eof = false;
        while input.len() < SNIFF_BYTES {
            let mut tmp = [0u8; SNIFF_BYTES];
            let n = read_retry(&mut inner, &mut tmp[..SNIFF_BYTES - input.len()])?;
            if n == 0 {
                eof = true;
                break;
            }
            input.extend_from_slice(&tmp[..n]);
        }
        let mut s = Sniffed::default();
        let mut ipos = 0;
        let mut lines = 0;
        let mut enc: &'static Encoding = UTF_8;
        if input.starts_with(&[0xEF, 0xBB, 0xBF]) {
            s.bom = Some("UTF-8");
            ipos = 3;
        } else if input.starts_with(&[0xFF, 0xFE]) {
            s.bom = Some("UTF-16LE");
            enc = UTF_16LE;
            ipos = 2;
        } else if input.starts_with(&[0xFE, 0xFF]) {
            s.bom = Some("UTF-16BE");
            enc = UTF_16BE;
            ipos = 2;
        } else if input.starts_with(&[b'<', 0, b'?', 0]) {
            enc = UTF_16LE;
        } else if input.starts_with(&[0, b'<', 0, b'?']) {
            enc = UTF_16BE;
        }
        if enc == UTF_8 {
            let head = &input[ipos..];
            let start = find(head, b"<?xml").or_else(|| head.iter().position(|&b| b == b'<'));
            if let Some(k) = start {
                if k > 0 {
                    s.junk_bytes = k;
                    s.junk_is_space = head[..k].iter().all(|b| b.is_ascii_whitespace());
                    lines = head[..k].iter().filter(|&&b| b == b'\n').count() as u64;
                    ipos += k;
                }
            }
            if let Some(label) = declared_encoding(&input[ipos..]) {
                match Encoding::for_label(label.as_bytes()) {
                    Some(e) if e == UTF_8 => {}
                    // UTF-16 declared over bytes we just read as ASCII:
                    // the label is wrong, the bytes are what they are.
                    Some(e) if e == UTF_16LE || e == UTF_16BE => s.bad_label = Some(label),
                    Some(e) => {
                        enc = e;
                        s.bad_label = Some(label);
                    }
                    None => s.bad_label = Some(label),
                }
            }
        }
        if enc != UTF_8 {
            s.transcoded_from = Some(enc.name());
        }
        let mode = if enc == UTF_8 {
            Mode::Utf8
        } else {
            Mode::Other(enc.new_decoder_without_bom_handling())
        };
        Ok((
            DecodeReader {
                inner,
                input,
                ipos,
                eof,
                out: Vec::with_capacity(CHUNK * 3),
                opos: 0,
                mode,
                lines,
                invalid: VecDeque::new(),
            },
            s,
        ))
    }

    /// Lines fully consumed by the parser (the next event starts on line
    /// `lines() + 1`).
    pub(crate) fn lines(&self) -> u64 {
        self.lines
    }

    /// Takes the lines of invalid sequences at or before `line`.
    pub(crate) fn take_invalid_through(&mut self, line: u64) -> Vec<u64> {
        let mut v = Vec::new();
        while let Some(&l) = self.invalid.front() {
            if l > line {
                break;
            }
            v.push(l);
            self.invalid.pop_front();
        }
        v
    }

    fn refill_input(&mut self) -> io::Result<()> {
        if self.ipos > 0 {
            self.input.drain(..self.ipos);
            self.ipos = 0;
        }
        let old = self.input.len();
        self.input.resize(old + CHUNK, 0);
        let n = read_retry(&mut self.inner, &mut self.input[old..]);
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.input.truncate(old);
                return Err(e);
            }
        };
        self.input.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }

    /// Decodes the next chunk into `out` (which the caller has emptied).
    fn decode_more(&mut self) -> io::Result<()> {
        loop {
            if self.ipos == self.input.len() && !self.eof {
                self.refill_input()?;
            }
            let avail = &self.input[self.ipos..];
            if avail.is_empty() && self.eof {
                if let Mode::Other(d) = &mut self.mode {
                    let mut tail = [0u8; 16];
                    let (_, _, n, _) = d.decode_to_utf8(&[], &mut tail, true);
                    self.out.extend_from_slice(&tail[..n]);
                }
                return Ok(());
            }
            if let Mode::Other(d) = &mut self.mode {
                let cap = d
                    .max_utf8_buffer_length(avail.len())
                    .unwrap_or(avail.len() * 3 + 16);
                let start = self.out.len();
                self.out.resize(start + cap, 0);
                let (_, read, written, _) =
                    d.decode_to_utf8(avail, &mut self.out[start..], self.eof);
                self.out.truncate(start + written);
                self.ipos += read;
                if !self.out.is_empty() || self.eof {
                    return Ok(());
                }
                continue;
            }
            let (valid, bad) = match std::str::from_utf8(avail) {
                Ok(_) => (avail.len(), None),
                Err(e) => (e.valid_up_to(), Some(e.error_len())),
            };
            let (from, to) = (self.ipos, self.ipos + valid);
            self.out.extend_from_slice(&self.input[from..to]);
            self.ipos = to;
            match bad {
                None => return Ok(()),
                Some(Some(n)) => {
                    self.mark_invalid();
                    self.ipos += n;
                }
                Some(None) if self.eof => {
                    self.mark_invalid();
                    self.ipos = self.input.len();
                }
                // An incomplete sequence at the chunk end: read on and
                // look again.
                Some(None) if valid > 0 => return Ok(()),
                Some(None) => self.refill_input()?,
            }
            if !self.out.is_empty() {
                return Ok(());
            }
        }
    }

    fn mark_invalid(&mut self) {
        let line = self.lines + self.out.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        self.out.extend_from_slice("\u{FFFD}".as_bytes());
        if self.invalid.len() < MAX_PENDING {
            self.invalid.push_back(line);
        }
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for DecodeReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.opos == self.out.len() {
            self.out.clear();
            self.opos = 0;
            while self.out.is_empty() && !(self.eof && self.ipos == self.input.len()) {
                self.decode_more()?;
            }
        }
        Ok(&self.out[self.opos..])
    }

    fn consume(&mut self, amt: usize) {
        let end = (self.opos + amt).min(self.out.len());
        self.lines += self.out[self.opos..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        self.opos = end;
    }
}

fn read_retry<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The `encoding` pseudo-attribute of an XML declaration at the start of
/// `head`, read as ASCII.
fn declared_encoding(head: &[u8]) -> Option<String> {
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = find(head, b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let val = &rest[1..];
    let close = val.find(quote)?;
    Some(val[..close].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (String, Sniffed, Vec<u64>) {
        let (mut r, s) = DecodeReader::new(bytes).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        let lines = r.take_invalid_through(u64::MAX);
        (out, s, lines)
    }

    #[test]
    fn utf8_passes_through() {
        let (out, s, bad) = decode("<?xml version=\"1.0\"?>\n<a>é</a>".as_bytes());
        assert_eq!(out, "<?xml version=\"1.0\"?>\n<a>é</a>");
        assert_eq!(s, Sniffed::default());
        assert!(bad.is_empty());
    }

    #[test]
    fn bom_and_junk_are_skipped_and_reported() {
        let (out, s, _) = decode(b"\xEF\xBB\xBF  \n<?xml version=\"1.0\"?><a/>");
        assert_eq!(out, "<?xml version=\"1.0\"?><a/>");
        assert_eq!(s.bom, Some("UTF-8"));
        assert_eq!((s.junk_bytes, s.junk_is_space), (3, true));
    }

    #[test]
    fn latin1_declared_is_transcoded() {
        let (out, s, bad) = decode(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<a>\xE9</a>");
        assert!(out.ends_with("<a>é</a>"), "{out}");
        assert_eq!(s.transcoded_from, Some("windows-1252"));
        assert_eq!(s.bad_label.as_deref(), Some("ISO-8859-1"));
        assert!(bad.is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_with_its_line() {
        let (out, _, bad) = decode(b"<?xml version=\"1.0\"?>\n<a>\n\xE9t\xE9</a>");
        assert!(out.contains("\u{FFFD}t\u{FFFD}"));
        assert_eq!(bad, [3, 3]);
    }

    #[test]
    fn utf16_by_bom() {
        let mut b = vec![0xFF, 0xFE];
        for u in "<?xml version=\"1.0\"?>\n<a>é</a>".encode_utf16() {
            b.extend_from_slice(&u.to_le_bytes());
        }
        let (out, s, _) = decode(&b);
        assert_eq!(out, "<?xml version=\"1.0\"?>\n<a>é</a>");
        assert_eq!(s.bom, Some("UTF-16LE"));
        assert_eq!(s.transcoded_from, Some("UTF-16LE"));
    }

    #[test]
    fn multibyte_across_chunks() {
        let mut text = "<?xml version=\"1.0\"?>\n<a>".to_string();
        while text.len() < CHUNK * 2 + 10 {
            text.push('é');
        }
        text.push_str("</a>");
        let (out, _, bad) = decode(text.as_bytes());
        assert_eq!(out, text);
        assert!(bad.is_empty());
    }
}
