//! A bound on every piece of markup and text quick-xml is handed.
//!
//! quick-xml's `Reader` collects a whole event (a start tag with all its
//! attributes, a text run, a comment) in one buffer before returning it,
//! so one 1 GiB attribute costs 1 GiB however small the rest of the user
//! is. [`Bounded`] sits between the decoder and quick-xml and splits the
//! stream into the tokens quick-xml will see, with quick-xml's own end
//! rules (its `ElementParser` and `PiParser`, and ports of its comment,
//! CDATA and DOCTYPE rules), holding one token at a time. A token of up to
//! `cap` bytes is handed on unchanged; a longer one is read to its end
//! without being kept and replaced by a short token of the same kind (a
//! single space for text, `<name>`, `<name/>` or `</name>` for tags, an
//! empty comment for comments, processing instructions and DOCTYPEs), and
//! an [`Overflow`] is recorded for the parser to report. Element names
//! over the cap become a prefix plus a hash of the whole name, so start
//! and end tags still match exactly when they did. Lines keep counting the
//! original bytes, so every line number is that of the file.

use std::collections::VecDeque;
use std::io::{self, BufRead};

use quick_xml::parser::{ElementParser, Parser, PiParser};

use super::decode::DecodeReader;

mod dtd;
use dtd::Dtd;

/// Bytes of a replaced element name kept before its hash.
const NAME_PREFIX: usize = 64;

/// Elements open at once that a file may have. quick-xml keeps the name
/// of every open element (to match end tags), so depth is memory too; an
/// Alma user file is six levels deep.
pub(crate) const MAX_DEPTH: usize = 1000;

/// Bytes the names of the open elements may hold together: the cap, but
/// never less than this.
const MIN_OPEN_BYTES: usize = 1 << 16;

/// The error [`Bounded`] stops with when elements nest deeper than
/// [`MAX_DEPTH`], or their open names exceed the cap together.
#[derive(Debug)]
pub(crate) struct TooDeep {
    /// Line of the start tag that went too deep.
    pub(crate) line: u64,
    /// What was exceeded.
    pub(crate) message: String,
}

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TooDeep {}

/// Whether `e` is a [`TooDeep`] stop.
pub(crate) fn too_deep(e: &io::Error) -> Option<&TooDeep> {
    e.get_ref().and_then(|i| i.downcast_ref::<TooDeep>())
}

/// What was too large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An element name.
    Name,
    /// A start tag with its attributes (an attribute value, in practice).
    StartTag,
    /// An end tag (whitespace or junk after the name).
    EndTag,
    /// A text node or CDATA section; `blank` when only whitespace.
    Text {
        /// Whether the text was whitespace only.
        blank: bool,
    },
    /// A comment, processing instruction or DOCTYPE: carries no data.
    Other,
}

/// One token over the cap, replaced in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overflow {
    /// Offset of the replacement in the stream handed to quick-xml.
    pub(crate) at: u64,
    /// Line the token started on.
    pub(crate) line: u64,
    /// What it was.
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Tok {
    Text,
    /// After `<`.
    Lt,
    /// After `<!`.
    Bang,
    Start(ElementParser),
    End(ElementParser),
    Pi(PiParser),
    Comment,
    CData,
    Doctype(Dtd),
}

/// An element name read without keeping it whole: its first `cap + 1`
/// bytes, its length and an FNV-1a hash of all of it.
#[derive(Debug)]
struct NameAcc {
    keep: Vec<u8>,
    len: u64,
    hash: u64,
    last: u8,
    done: bool,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// `FNV_PRIME`'s inverse modulo 2^64: takes the last byte back out.
const FNV_PRIME_INV: u64 = 0xce96_5057_aff6_957b;

impl NameAcc {
    fn new() -> NameAcc {
        NameAcc {
            keep: Vec::new(),
            len: 0,
            hash: FNV_OFFSET,
            last: 0,
            done: false,
        }
    }

    /// Takes name bytes from the start of `bytes`; returns how many were
    /// name (the name ends at the first whitespace, as quick-xml's does).
    fn push(&mut self, bytes: &[u8], cap: usize) -> usize {
        if self.done {
            return 0;
        }
        let n = match bytes.iter().position(|&b| is_ws(b)) {
            Some(n) => {
                self.done = true;
                n
            }
            None => bytes.len(),
        };
        let name = &bytes[..n];
        let mut h = self.hash;
        for &b in name {
            h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
        self.hash = h;
        let room = (cap + 1).saturating_sub(self.keep.len()).min(n);
        self.keep.extend_from_slice(&name[..room]);
        if let Some(&b) = name.last() {
            self.last = b;
        }
        self.len += n as u64;
        n
    }

    /// The name as the replacement token carries it, and whether the
    /// name itself was over the cap.
    fn finish(mut self, self_closing: bool, cap: usize) -> (Vec<u8>, bool) {
        // quick-xml strips the `/` of `/>` before taking the name.
        if self_closing && !self.done && self.len > 0 && self.last == b'/' {
            self.hash = self.hash.wrapping_mul(FNV_PRIME_INV) ^ u64::from(b'/');
            self.len -= 1;
            if self.keep.len() as u64 > self.len {
                self.keep.truncate(self.len as usize);
            }
        }
        if self.len <= cap as u64 {
            return (self.keep, false);
        }
        let mut cut = NAME_PREFIX.min(self.keep.len());
        while cut > 0 && cut < self.keep.len() && (self.keep[cut] & 0xC0) == 0x80 {
            cut -= 1;
        }
        let mut name = self.keep[..cut].to_vec();
        name.extend_from_slice(format!(".{:016x}", self.hash).as_bytes());
        (name, true)
    }
}

/// What is tracked of a token being read past the cap.
#[derive(Debug)]
struct Skip {
    blank: bool,
    name: NameAcc,
    junk: bool,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\r' | b'\n' | b'\t')
}

/// The lexer and the bytes ready for quick-xml (apart from the source,
/// so both can be borrowed at once).
struct Lex {
    cap: usize,
    /// `out[pos..ready]` is for quick-xml; `out[ready..]` is the token
    /// being read.
    out: Vec<u8>,
    pos: usize,
    ready: usize,
    /// Stream offset of `out[0]`.
    base: u64,
    /// Lines consumed by quick-xml, replaced tokens' lines included.
    lines: u64,
    /// (stream offset where a replacement ends, newlines it stands for).
    credits: VecDeque<(u64, u64)>,
    overflows: VecDeque<Overflow>,
    tok: Tok,
    tok_len: usize,
    /// Line the token starts on, and newlines in it (known once it is
    /// over the cap).
    tok_line: u64,
    tok_nl: u64,
    /// Line of the first visible character of a text token.
    first_vis: Option<u64>,
    /// The last bytes of the token (at most 16), kept where the end rule
    /// looks back, and once over the cap.
    tail: [u8; 16],
    tail_len: usize,
    skip: Option<Skip>,
    /// Name lengths of the open elements, and their sum.
    open: Vec<usize>,
    open_bytes: usize,
    /// Set when elements nest too deep: nothing more is handed on.
    stop: Option<TooDeep>,
}

/// A `BufRead` that hands quick-xml no token over `cap` bytes.
pub(crate) struct Bounded<R> {
    inner: DecodeReader<R>,
    lx: Lex,
    done: bool,
}

impl<R: io::Read> Bounded<R> {
    /// Bounds `inner` to tokens of at most `cap` bytes.
    pub(crate) fn new(inner: DecodeReader<R>, cap: usize) -> Bounded<R> {
        let lines = DecodeReader::lines(&inner);
        Bounded {
            inner,
            lx: Lex {
                cap,
                out: Vec::with_capacity(1 << 16),
                pos: 0,
                ready: 0,
                base: 0,
                lines,
                credits: VecDeque::new(),
                overflows: VecDeque::new(),
                tok: Tok::Text,
                tok_len: 0,
                tok_line: lines + 1,
                tok_nl: 0,
                first_vis: None,
                tail: [0; 16],
                tail_len: 0,
                skip: None,
                open: Vec::new(),
                open_bytes: 0,
                stop: None,
            },
            done: false,
        }
    }

    /// Lines fully consumed by quick-xml (the next event starts on line
    /// `lines() + 1`).
    pub(crate) fn lines(&self) -> u64 {
        let at = self.lx.consumed();
        self.lx.lines
            + self
                .lx
                .credits
                .iter()
                .take_while(|c| c.0 <= at)
                .map(|c| c.1)
                .sum::<u64>()
    }

    /// Takes the lines of invalid sequences at or before `line`.
    pub(crate) fn take_invalid_through(&mut self, line: u64) -> Vec<u64> {
        self.inner.take_invalid_through(line)
    }

    /// The next overflow that quick-xml has consumed the replacement of
    /// (or started to).
    pub(crate) fn take_overflow(&mut self) -> Option<Overflow> {
        let at = self.lx.consumed();
        if self.lx.overflows.front().is_some_and(|o| o.at < at) {
            self.lx.overflows.pop_front()
        } else {
            None
        }
    }
}

impl<R: io::Read> io::Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: io::Read> BufRead for Bounded<R> {
    #[inline]
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.lx.pos == self.lx.ready && !self.done {
            self.lx.compact();
            while self.lx.ready == self.lx.pos && self.lx.stop.is_none() {
                let chunk = self.inner.fill_buf()?;
                if chunk.is_empty() {
                    self.lx.eof();
                    self.done = true;
                    break;
                }
                let n = chunk.len();
                self.lx.step(chunk);
                self.inner.consume(n);
            }
            // Everything before the stop has been handed on: now fail.
            if self.lx.ready == self.lx.pos {
                if let Some(e) = self.lx.stop.take() {
                    self.done = true;
                    return Err(io::Error::other(e));
                }
            }
        }
        Ok(&self.lx.out[self.lx.pos..self.lx.ready])
    }

    #[inline]
    fn consume(&mut self, amt: usize) {
        let lx = &mut self.lx;
        let end = (lx.pos + amt).min(lx.ready);
        // Mostly a few bytes (one tag): a plain count beats memchr's setup.
        lx.lines += lx.out[lx.pos..end].iter().filter(|&&b| b == b'\n').count() as u64;
        lx.pos = end;
        let at = lx.consumed();
        while let Some(&(end, n)) = lx.credits.front() {
            if end > at {
                break;
            }
            lx.lines += n;
            lx.credits.pop_front();
        }
    }
}

impl Lex {
    fn consumed(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Drops what quick-xml has consumed, keeping the token being read.
    fn compact(&mut self) {
        if self.pos > 0 {
            self.out.drain(..self.pos);
            self.base += self.pos as u64;
            self.ready -= self.pos;
            self.pos = 0;
        }
    }

    fn begin(&mut self, tok: Tok) {
        self.tok = tok;
        self.tok_len = 0;
        self.tok_nl = 0;
        self.first_vis = None;
        self.tail_len = 0;
        self.skip = None;
    }

    /// Bytes of the current token. Under the cap they are only copied:
    /// lines, the tail and the first visible character are worked out
    /// when a token goes over, which real files never make happen.
    fn take(&mut self, seg: &[u8]) {
        if seg.is_empty() {
            return;
        }
        if self.skip.is_none() {
            if self.tok_len + seg.len() <= self.cap {
                self.out.extend_from_slice(seg);
                self.tok_len += seg.len();
                if matches!(self.tok, Tok::Comment | Tok::CData | Tok::Doctype(_)) {
                    self.tail_push(seg);
                }
                return;
            }
            self.start_skip();
        }
        let nl = memchr::memchr_iter(b'\n', seg).count() as u64;
        if matches!(self.tok, Tok::Text) && self.first_vis.is_none() {
            if let Some(p) = seg.iter().position(|&b| !is_ws(b)) {
                let before = memchr::memchr_iter(b'\n', &seg[..p]).count() as u64;
                self.first_vis = Some(self.tok_line + self.tok_nl + before);
            }
        }
        self.tok_nl += nl;
        if let Some(mut s) = self.skip.take() {
            self.skip_feed(&mut s, seg);
            self.skip = Some(s);
        }
        self.tok_len += seg.len();
        self.tail_push(seg);
    }

    /// The token being held goes over the cap: stop holding it.
    fn start_skip(&mut self) {
        // Everything before the token is in `out[..ready]`: consumed
        // lines, newlines handed on but not consumed, and the lines of
        // replacements not yet consumed.
        let pending: u64 = self.credits.iter().map(|c| c.1).sum();
        let handed = memchr::memchr_iter(b'\n', &self.out[self.pos..self.ready]).count() as u64;
        self.tok_line = self.lines + handed + pending + 1;
        let held = self.out.split_off(self.ready);
        self.tok_nl = memchr::memchr_iter(b'\n', &held).count() as u64;
        self.tail_len = 0;
        self.tail_push(&held);
        if matches!(self.tok, Tok::Text) {
            if let Some(p) = held.iter().position(|&b| !is_ws(b)) {
                let before = memchr::memchr_iter(b'\n', &held[..p]).count() as u64;
                self.first_vis = Some(self.tok_line + before);
            }
        }
        let mut s = Skip {
            blank: true,
            name: NameAcc::new(),
            junk: false,
        };
        let prefix = match self.tok {
            Tok::Start(_) => 1,
            Tok::End(_) => 2,
            _ => 0,
        };
        self.skip_feed(&mut s, &held[prefix.min(held.len())..]);
        self.skip = Some(s);
    }

    fn skip_feed(&self, s: &mut Skip, bytes: &[u8]) {
        match self.tok {
            Tok::Text | Tok::CData if s.blank => {
                s.blank = bytes.iter().all(|&b| is_ws(b));
            }
            Tok::Start(_) | Tok::End(_) => {
                let n = s.name.push(bytes, self.cap);
                if matches!(self.tok, Tok::End(_)) && !s.junk {
                    s.junk = bytes[n..].iter().any(|&b| !is_ws(b));
                }
            }
            _ => {}
        }
    }

    /// The two token bytes before `rest[k]`.
    fn prev2(&self, rest: &[u8], k: usize) -> [u8; 2] {
        let at = |j: usize| -> u8 {
            // j counts back from k: 1 = the byte just before.
            if k >= j {
                rest[k - j]
            } else {
                let back = j - k;
                self.tail_len.checked_sub(back).map_or(0, |i| self.tail[i])
            }
        };
        [at(2), at(1)]
    }

    /// Keeps count of the open elements as quick-xml will (a start tag
    /// not ending in `/>` opens one, an end tag closes one); false, with
    /// the token dropped and the stop set, when they go over the limits.
    fn nest(&mut self) -> bool {
        let token = &self.out[self.ready..];
        if matches!(self.tok, Tok::End(_)) {
            if let Some(n) = self.open.pop() {
                self.open_bytes -= n;
            }
            return true;
        }
        // The name as it will be handed on: the kept bytes, or, over the
        // cap, the replacement's (a prefix and a hash).
        let (self_closing, name) = match &self.skip {
            None => {
                let content = &token[1.min(token.len())..token.len().saturating_sub(1)];
                let name = content
                    .iter()
                    .position(|&b| is_ws(b))
                    .unwrap_or(content.len());
                (token.ends_with(b"/>"), name)
            }
            Some(s) => {
                let sc = self.tail_len >= 2 && self.tail[self.tail_len - 2] == b'/';
                let len = usize::try_from(s.name.len).unwrap_or(usize::MAX);
                (
                    sc,
                    if len > self.cap {
                        NAME_PREFIX + 17
                    } else {
                        len
                    },
                )
            }
        };
        if self_closing {
            return true;
        }
        self.open.push(name);
        self.open_bytes = self.open_bytes.saturating_add(name);
        if self.open.len() <= MAX_DEPTH && self.open_bytes <= self.cap.max(MIN_OPEN_BYTES) {
            return true;
        }
        let pending: u64 = self.credits.iter().map(|c| c.1).sum();
        let handed = memchr::memchr_iter(b'\n', &self.out[self.pos..self.ready]).count() as u64;
        let line = match &self.skip {
            Some(_) => self.tok_line,
            None => self.lines + handed + pending + 1,
        };
        self.out.truncate(self.ready);
        self.skip = None;
        self.stop = Some(TooDeep {
            line,
            message: format!(
                "elements nested deeper than {MAX_DEPTH}, or open element names over {} \
                 bytes together; the rest of the file is not read",
                self.cap.max(MIN_OPEN_BYTES)
            ),
        });
        false
    }

    /// The current token is complete: hand it on, or its replacement.
    fn end_token(&mut self) {
        if matches!(self.tok, Tok::Start(_) | Tok::End(_)) && !self.nest() {
            return;
        }
        let Some(s) = self.skip.take() else {
            self.ready = self.out.len();
            return;
        };
        let (repl, kind): (Vec<u8>, Kind) = match self.tok {
            Tok::Text => (b" ".to_vec(), Kind::Text { blank: s.blank }),
            Tok::CData => (b"<![CDATA[]]>".to_vec(), Kind::Text { blank: s.blank }),
            Tok::Start(_) => {
                // `tail` ends with the `>`; the byte before tells `/>`.
                let self_closing = self.tail_len >= 2 && self.tail[self.tail_len - 2] == b'/';
                let (name, long) = s.name.finish(self_closing, self.cap);
                let mut t = b"<".to_vec();
                t.extend_from_slice(&name);
                t.extend_from_slice(if self_closing { b"/>" } else { b">" });
                (t, if long { Kind::Name } else { Kind::StartTag })
            }
            Tok::End(_) => {
                let (name, long) = s.name.finish(false, self.cap);
                let mut t = b"</".to_vec();
                t.extend_from_slice(&name);
                // Anything after the name makes quick-xml's name differ
                // from every start tag's: keep it differing.
                if s.junk {
                    t.extend_from_slice(b" x");
                }
                t.push(b'>');
                (t, if long { Kind::Name } else { Kind::EndTag })
            }
            _ => (b"<!---->".to_vec(), Kind::Other),
        };
        self.replace(&repl);
        self.overflows.push_back(Overflow {
            at: self.base + (self.out.len() - repl.len()) as u64,
            // Text is reported where it becomes visible, as
            // `unexpected_text` is.
            line: self.first_vis.unwrap_or(self.tok_line),
            kind,
        });
    }

    fn replace(&mut self, repl: &[u8]) {
        self.out.truncate(self.ready);
        self.out.extend_from_slice(repl);
        self.ready = self.out.len();
        let nl = memchr::memchr_iter(b'\n', repl).count() as u64;
        self.credits
            .push_back((self.base + self.ready as u64, self.tok_nl - nl));
    }

    /// The source ended.
    fn eof(&mut self) {
        if self.skip.is_none() {
            self.ready = self.out.len();
            return;
        }
        if matches!(self.tok, Tok::Text) {
            self.end_token();
            return;
        }
        // An unterminated token: hand on an unterminated token of the
        // same kind, so quick-xml reports the file as it would have.
        let s = self.skip.take();
        let repl: Vec<u8> = match (self.tok, s) {
            (Tok::Start(_), Some(s)) => {
                let mut t = b"<".to_vec();
                t.extend_from_slice(&s.name.finish(false, self.cap).0);
                t
            }
            (Tok::End(_), Some(s)) => {
                let mut t = b"</".to_vec();
                t.extend_from_slice(&s.name.finish(false, self.cap).0);
                t
            }
            (Tok::Pi(_), _) => b"<?".to_vec(),
            (Tok::CData, _) => b"<![CDATA[".to_vec(),
            (Tok::Doctype(_), _) => b"<!DOCTYPE".to_vec(),
            _ => b"<!--".to_vec(),
        };
        self.replace(&repl);
    }

    /// Lexes all of `chunk`.
    fn step(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() && self.stop.is_none() {
            let rest = &chunk[i..];
            match self.tok {
                Tok::Text => match memchr::memchr(b'<', rest) {
                    Some(k) => {
                        self.take(&rest[..k]);
                        self.end_token();
                        self.begin(Tok::Lt);
                        self.take(b"<");
                        i += k + 1;
                    }
                    None => {
                        self.take(rest);
                        i = chunk.len();
                    }
                },
                Tok::Lt => match rest[0] {
                    b'!' => {
                        self.take(b"!");
                        self.tok = Tok::Bang;
                        i += 1;
                    }
                    b'/' => {
                        self.take(b"/");
                        self.tok = Tok::End(ElementParser::Outside);
                        i += 1;
                    }
                    b'?' => self.tok = Tok::Pi(PiParser(false)),
                    _ => self.tok = Tok::Start(ElementParser::Outside),
                },
                Tok::Bang => match rest[0] {
                    b'[' => self.tok = Tok::CData,
                    b'-' => self.tok = Tok::Comment,
                    b'D' | b'd' => self.tok = Tok::Doctype(Dtd::BeforeInternalSubset(0)),
                    _ => {
                        // quick-xml stops at `<!` followed by anything
                        // else: hand it on as it is.
                        self.end_token();
                        self.begin(Tok::Text);
                    }
                },
                Tok::Start(mut p) | Tok::End(mut p) => {
                    let found = p.feed(rest);
                    self.tok = match self.tok {
                        Tok::Start(_) => Tok::Start(p),
                        _ => Tok::End(p),
                    };
                    match found {
                        Some(k) => {
                            // The name and junk are looked at without the
                            // `>`, which is taken on its own.
                            self.take(&rest[..k]);
                            self.take_gt();
                            self.end_token();
                            self.begin(Tok::Text);
                            i += k + 1;
                        }
                        None => {
                            self.take(rest);
                            i = chunk.len();
                        }
                    }
                }
                Tok::Pi(mut p) => {
                    let found = p.feed(rest);
                    self.tok = Tok::Pi(p);
                    i += self.take_until(rest, found);
                }
                Tok::Comment | Tok::CData => {
                    let comment = matches!(self.tok, Tok::Comment);
                    let mut found = None;
                    for k in memchr::memchr_iter(b'>', rest) {
                        // Index in the token after `<!`.
                        let j = self.tok_len - 2 + k;
                        let p = self.prev2(rest, k);
                        if (comment && j >= 4 && p == *b"--") || (!comment && p == *b"]]") {
                            found = Some(k);
                            break;
                        }
                    }
                    i += self.take_until(rest, found);
                }
                Tok::Doctype(mut d) => {
                    let tail = self.tail;
                    let found = d.feed(&tail[..self.tail_len], rest);
                    self.tok = Tok::Doctype(d);
                    i += self.take_until(rest, found);
                }
            }
        }
    }

    /// Takes `rest` up to and including `found` (then ends the token), or
    /// all of it; returns the bytes taken.
    fn take_until(&mut self, rest: &[u8], found: Option<usize>) -> usize {
        match found {
            Some(k) => {
                self.take(&rest[..=k]);
                self.end_token();
                self.begin(Tok::Text);
                k + 1
            }
            None => {
                self.take(rest);
                rest.len()
            }
        }
    }

    /// Takes the `>` that ends a tag, without showing it to the skip
    /// state (it is neither name nor junk).
    fn take_gt(&mut self) {
        self.tok_len += 1;
        if self.skip.is_none() {
            self.out.push(b'>');
        } else {
            self.tail_push(b">");
        }
    }

    fn tail_push(&mut self, seg: &[u8]) {
        if seg.len() >= self.tail.len() {
            self.tail.copy_from_slice(&seg[seg.len() - 16..]);
            self.tail_len = 16;
        } else {
            let keep = (16 - seg.len()).min(self.tail_len);
            self.tail
                .copy_within(self.tail_len - keep..self.tail_len, 0);
            self.tail[keep..keep + seg.len()].copy_from_slice(seg);
            self.tail_len = keep + seg.len();
        }
    }
}

#[cfg(test)]
mod tests;
