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

use quick_xml::parser::{CommentParser, ElementParser, Parser, PiParser};

use super::decode::DecodeReader;

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

// A port of quick-xml 0.42's `DtdParser` (crate-private there; MIT
// licensed), so a DOCTYPE ends here exactly where quick-xml ends it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtd {
    /// If inside a PubidLiteral or SystemLiteral, it holds the quote type (either `'` or `"`).
    /// Otherwise, it holds `0` (this is an initial state).
    ///
    /// ```text
    /// [28]    doctypedecl     ::=   '<!DOCTYPE' S Name (S ExternalID)? S? ('[' intSubset ']' S?)? '>'
    /// ```
    BeforeInternalSubset(u8),
    /// Inside of the `intSubset` rule.
    ///
    /// ```text
    /// [28a]   DeclSep         ::=   PEReference | S
    /// [28b]   intSubset       ::=   (markupdecl | DeclSep)*
    /// [29]    markupdecl      ::=   elementdecl | AttlistDecl | EntityDecl | NotationDecl | PI | Comment
    /// ```
    InsideOfInternalSubset,
    /// After `]` but before `>`.
    AfterInternalSubset,
    InComment(CommentParser),
    InPi(PiParser),
    /// ```text
    /// [45]    elementdecl     ::=   '<!ELEMENT' S Name S contentspec S? '>'
    /// ```
    InElementDecl,
    /// This state handles ATTLIST, ENTITY and NOTATION elements, i.e. all elements that can have
    /// quotes strings (`'...'` or `"..."`) inside their markup, in which `>` should not be treated
    /// as the end of the markup.
    ///
    /// This state handles the following productions from XML grammar:
    ///
    /// ### ATTLIST
    ///
    /// ```text
    /// [52]    AttlistDecl     ::=   '<!ATTLIST' S Name AttDef* S? '>'
    /// [53]    AttDef          ::=   S Name S AttType S DefaultDecl
    /// [60]    DefaultDecl     ::=   '#REQUIRED' | '#IMPLIED' | (('#FIXED' S)? AttValue)
    /// ```
    ///
    /// ### ENTITY
    ///
    /// ```text
    /// [70]    EntityDecl      ::=   GEDecl | PEDecl
    /// [71]    GEDecl          ::=   '<!ENTITY' S Name S EntityDef S? '>'
    /// [72]    PEDecl          ::=   '<!ENTITY' S '%' S Name S PEDef S? '>'
    /// [73]    EntityDef       ::=   EntityValue | (ExternalID NDataDecl?)
    /// [74]    PEDef           ::=   EntityValue | ExternalID
    /// [75]    ExternalID      ::=   'SYSTEM' S SystemLiteral | 'PUBLIC' S PubidLiteral S SystemLiteral
    /// [76]    NDataDecl       ::=   S 'NDATA' S Name
    /// ```
    ///
    /// ### NOTATION
    ///
    /// ```text
    /// [82]    NotationDecl    ::=   '<!NOTATION' S Name S (ExternalID | PublicID) S? '>'
    /// ```
    InQuoteSensitive(ElementParser),
    /// The state where it was not possible to determine which markup it was during the previous iteration.  \
    /// It holds the number of bytes read since the start of the markup.
    UndecidedMarkup(usize),
    Finished,
}

impl Dtd {
    /// Skip DTD contents.
    ///
    /// # Parameters (as same as `reader::BangType::parse`)
    /// - `buf`: buffer with data consumed on previous iterations
    /// - `chunk`: data read on current iteration and not yet consumed from reader
    fn feed(&mut self, buf: &[u8], chunk: &[u8]) -> Option<usize> {
        // This method assumes the DTD is well-formed.
        // Since this crate does not support parsing DTDs, the inability to read non-well-formed DTDs
        // is not particularly problematic; the only point of interest is reporting well-formed DTDs
        // to the user without errors.

        let mut cur = chunk;
        while !cur.is_empty() {
            match *self {
                Self::BeforeInternalSubset(0) => {
                    // Find the
                    // - start of quoted string ('...' or "...")
                    // - start of internal subset ([...])
                    // - end of DOCTYPE declaration (>)
                    if let Some(i) = cur
                        .iter()
                        .position(|&b| matches!(b, b'\'' | b'"' | b'[' | b'>'))
                    {
                        let b = cur[i];
                        match b {
                            b'\'' | b'"' => {
                                // SystemLiteral or PubidLiteral
                                *self = Self::BeforeInternalSubset(b);
                                cur = &cur[i + 1..]; // +1 to skip `'` or `"`
                                continue;
                            }
                            b'[' => {
                                *self = Self::InsideOfInternalSubset;
                                cur = &cur[i + 1..]; // +1 to skip `[`
                                continue;
                            }
                            b'>' => {
                                *self = Self::Finished;
                                return Some(chunk.len() - cur.len() + i);
                            }
                            _ => {}
                        }
                        continue;
                    }
                    break;
                }
                // Inside the quoted string (this is PubidLiteral or SystemLiteral) we do not want to
                // recognize other special characters (namely [ and >). Find only the closing quote
                Self::BeforeInternalSubset(quote) => {
                    // ExternalID handling
                    if let Some(i) = memchr::memchr(quote, cur) {
                        *self = Self::BeforeInternalSubset(0);
                        cur = &cur[i + 1..];
                        continue;
                    }
                    break;
                }
                Self::InsideOfInternalSubset => {
                    // Find the end of internal subset (]) or the start of the markup inside (<)
                    if let Some(i) = memchr::memchr2(b']', b'<', cur) {
                        if cur[i] == b']' {
                            *self = Self::AfterInternalSubset;
                            cur = &cur[i + 1..]; // +1 to skip `]`
                            continue;
                        }
                        // +1 to start after `<`
                        if let Some(skip) = self.switch(&cur[i + 1..]) {
                            cur = &cur[i + 1 + skip..]; // +1 to skip `<`
                            continue;
                        }
                        // Keep the number of already looked bytes (started from byte after `<`, so -1),
                        // try to decide after feeding the new chunk.
                        let skipped = cur.len() - i - 1;
                        // The 9-byte work buffer in `UndecidedMarkup` is sized
                        // for `!NOTATION` (the longest keyword). If the chunk
                        // already gave us 9+ bytes after `<` and `switch()`
                        // returned `None`, the markup is definitively not one
                        // of `<!--`, `<![CDATA[`, `<!ELEMENT`, `<!ATTLIST`,
                        // `<!ENTITY`, `<!NOTATION`, so skip until `>` rather
                        // than staging more bytes than the buffer can hold
                        // (which would panic on the slice copy in
                        // `UndecidedMarkup`).
                        if skipped >= 9 {
                            cur = &cur[i + 1..];
                            *self = Self::InElementDecl;
                            continue;
                        }
                        *self = Self::UndecidedMarkup(skipped);
                    }
                    break;
                }
                Self::AfterInternalSubset => {
                    if let Some(i) = memchr::memchr(b'>', cur) {
                        *self = Self::Finished;
                        return Some(chunk.len() - cur.len() + i);
                    }
                    break;
                }
                Self::InComment(ref mut parser) => {
                    // If comment is ended, return to the main state, otherwise keep in the current state
                    if let Some(i) = parser.feed(cur) {
                        *self = Self::InsideOfInternalSubset;
                        cur = &cur[i..];
                        continue;
                    }
                    break;
                }
                Self::InPi(ref mut parser) => {
                    // If processing instruction is ended, return to the main state,
                    // otherwise keep in the current state
                    if let Some(i) = parser.feed(cur) {
                        *self = Self::InsideOfInternalSubset;
                        cur = &cur[i..];
                        continue;
                    }
                    break;
                }
                Self::InElementDecl => {
                    // `<!ELEMENT >` does not have places where `>` could be escaped
                    // so the first occurrence ends that state
                    if let Some(i) = memchr::memchr(b'>', cur) {
                        *self = Self::InsideOfInternalSubset;
                        cur = &cur[i + 1..]; // +1 for `>`
                        continue;
                    }
                    break;
                }
                Self::InQuoteSensitive(ref mut parser) => {
                    // If ATTLIST, ENTITY or NOTATION is ended, return to the main state,
                    // otherwise keep in the current state
                    if let Some(i) = parser.feed(cur) {
                        *self = Self::InsideOfInternalSubset;
                        cur = &cur[i..];
                        continue;
                    }
                    break;
                }
                Self::UndecidedMarkup(skipped) => {
                    // Buffer is long enough to store the longest possible keyword `!NOTATION`
                    let mut bytes = [0u8; 9];

                    // Copy the last `skipped` bytes from the previous iteration into buffer,
                    // for example, "!NOT" (skipped = 4 in that case)...
                    bytes[..skipped].copy_from_slice(&buf[buf.len() - skipped..]);

                    // ...add new bytes to the buffer from current iteration,
                    // for example, "ATION"...
                    let end = bytes.len().min(skipped + cur.len());
                    bytes[skipped..end].copy_from_slice(&cur[..end - skipped]);

                    // ...and try to match over it.
                    // For example, "!NOTATION" will return 9, and we skip 9-4=5 bytes of "ATION"
                    if let Some(skip) = self.switch(&bytes[..end]) {
                        cur = &cur[skip - skipped..];
                        continue;
                    }
                    // No keyword matched. If we have a full 9-byte window the
                    // markup is definitively not one of `<!--`, `<![CDATA[`,
                    // `<!ELEMENT`, `<!ATTLIST`, `<!ENTITY`, `<!NOTATION`, so
                    // fall back to skipping until the closing `>` instead of
                    // accumulating `skipped` past `bytes.len()` (which would
                    // panic on the slice-copy above on a later iteration).
                    if end == bytes.len() {
                        cur = &cur[end - skipped..];
                        *self = Self::InElementDecl;
                        continue;
                    }
                    *self = Self::UndecidedMarkup(skipped + cur.len());
                    break;
                }
                Self::Finished => break,
            }
        }

        None
    }

    #[inline]
    fn switch(&mut self, markup: &[u8]) -> Option<usize> {
        match markup {
            [b'?', ..] => {
                // <?
                *self = Self::InPi(PiParser(false));
                Some(1)
            }
            [b'!', b'-', b'-', ..] => {
                // <!--
                *self = Self::InComment(CommentParser::Seen0);
                Some(3)
            }
            [b'!', b'E', b'L', b'E', b'M', b'E', b'N', b'T', ..] => {
                // <!ELEMENT
                *self = Self::InElementDecl;
                Some(8)
            }
            [b'!', b'E', b'N', b'T', b'I', b'T', b'Y', ..] => {
                // <!ENTITY
                *self = Self::InQuoteSensitive(ElementParser::Outside);
                Some(7)
            }
            [b'!', b'A', b'T', b'T', b'L', b'I', b'S', b'T', ..] => {
                // <!ATTLIST
                *self = Self::InQuoteSensitive(ElementParser::Outside);
                Some(8)
            }
            [b'!', b'N', b'O', b'T', b'A', b'T', b'I', b'O', b'N', ..] => {
                // <!NOTATION
                *self = Self::InQuoteSensitive(ElementParser::Outside);
                Some(9)
            }
            // <... - `markup` does not have enough data to determine markup
            // or markup is not known.
            // Undecided markup bytes will be written to `buf` to be available on
            // next iteration.
            _ => {
                // FIXME: to correctly report error position in DTD we need to provide
                // DTD events. For now our task just to skip (correct) DTD, so we postpone
                // error reporting and go with ending the unknown markup with `>`.
                if let Some(i) = memchr::memchr(b'>', markup) {
                    *self = Self::InsideOfInternalSubset;
                    Some(i + 1) // +1 to skip `>`
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// What quick-xml would be handed, the overflows, and the line count
    /// once everything is consumed.
    fn run(input: &str, cap: usize) -> (String, Vec<(u64, Kind)>, u64) {
        let (dec, _) = DecodeReader::new(input.as_bytes()).unwrap();
        let mut b = Bounded::new(dec, cap);
        let mut out = String::new();
        b.read_to_string(&mut out).unwrap();
        let lines = Bounded::lines(&b);
        let o: Vec<(u64, Kind)> = b.lx.overflows.iter().map(|o| (o.line, o.kind)).collect();
        (out, o, lines)
    }

    #[test]
    fn tokens_under_the_cap_pass_unchanged() {
        let xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE users [\n <!ENTITY a \"x>y\">\n \
                   <!-- c > d -->\n]>\n<users a='1>2' b=\"'\">\n<user>t &amp; u<![CDATA[<x>]]>\
                   <!-- -> -->\n<?pi a > b?></user><e/>\n</users>\n";
        let (out, o, lines) = run(xml, 64);
        assert_eq!(out, xml);
        assert!(o.is_empty(), "{o:?}");
        assert_eq!(lines, xml.matches('\n').count() as u64);
    }

    #[test]
    fn long_tokens_are_replaced_and_lines_kept() {
        let big = "v\n".repeat(20);
        let name = "n".repeat(40);
        let xml = format!(
            "<?xml version=\"1.0\"?>\n<users>\n<user a=\"{big}\">\n<{name}>x</{name}>\n\
             <t>{big}</t><!--{big}--><![CDATA[{big}]]><?p {big}?>\n<e b='{big}'/>\n\
             </user>\n</users>\n"
        );
        let (out, o, lines) = run(&xml, 32);
        assert!(!out.contains(&name), "{out}");
        let hashed = out
            .split('<')
            .find(|t| t.starts_with('n'))
            .and_then(|t| t.split('>').next())
            .unwrap()
            .to_string();
        assert!(
            hashed.starts_with("nnnn") && hashed.contains('.'),
            "{hashed}"
        );
        assert_eq!(
            out,
            format!(
                "<?xml version=\"1.0\"?>\n<users>\n<user>\n<{hashed}>x</{hashed}>\n\
                 <t> </t><!----><![CDATA[]]><!---->\n<e/>\n</user>\n</users>\n"
            )
        );
        assert_eq!(
            o,
            [
                (3, Kind::StartTag),
                (24, Kind::Name),
                (24, Kind::Name),
                (25, Kind::Text { blank: false }),
                (45, Kind::Other),
                (65, Kind::Text { blank: false }),
                (85, Kind::Other),
                (106, Kind::StartTag),
            ]
        );
        assert_eq!(lines, xml.matches('\n').count() as u64);
    }

    #[test]
    fn different_long_names_stay_different() {
        let a = format!("<users><{}x></{}y></users>", "n".repeat(40), "n".repeat(40));
        let (out, _, _) = run(&a, 32);
        let names: Vec<&str> = out
            .split(['<', '>', '/'])
            .filter(|t| t.starts_with('n'))
            .collect();
        assert_eq!(names.len(), 2);
        assert_ne!(names[0], names[1]);
        // And a self-closing tag's `/` is not part of its name.
        let (out, _, _) = run(&format!("<u><{}/></u>", "m".repeat(40)), 32);
        assert!(out.contains("/></u>"), "{out}");
        let (same, _, _) = run(
            &format!("<u><{}></{}></u>", "m".repeat(40), "m".repeat(40)),
            32,
        );
        let name = |s: &str| {
            s.split(['<', '>', '/'])
                .find(|t| t.starts_with('m'))
                .unwrap()
                .to_string()
        };
        assert_eq!(name(&out), name(&same));
    }

    #[test]
    fn an_unterminated_long_token_stays_unterminated() {
        let (out, o, _) = run(&format!("<users><user a=\"{}", "x".repeat(100)), 32);
        assert_eq!(out, "<users><user");
        assert!(o.is_empty());
        let (out, o, _) = run(&format!("<users>{}", " ".repeat(100)), 32);
        assert_eq!(out, "<users> ");
        assert_eq!(o, [(1, Kind::Text { blank: true })]);
    }

    #[test]
    fn any_input_keeps_its_lines_and_small_caps_never_panic() {
        let alphabet = b"<<>>!!--[[]]??//\"'= \n\nDOCTYPE[CDATA]ENTITYaeb&;";
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for round in 0..3000 {
            let len = (round % 150) + 1;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let text = String::from_utf8(v).unwrap();
            let nl = text.matches('\n').count() as u64;
            // Nothing over the cap: handed on as decoded.
            let (mut dec, _) = DecodeReader::new(text.as_bytes()).unwrap();
            let mut decoded = String::new();
            dec.read_to_string(&mut decoded).unwrap();
            let (out, o, lines) = run(&text, len + 1);
            assert_eq!((out.as_str(), o.len(), lines), (decoded.as_str(), 0, nl));
            // Small caps: whatever is replaced, the lines stay the file's.
            let (_, _, lines) = run(&text, 4 + round % 24);
            assert_eq!(lines, nl, "{text:?}");
        }
    }

    #[test]
    fn nesting_stops_at_the_limits() {
        let deep = |n: usize, name: &str| {
            let mut x = String::from("<?xml version=\"1.0\"?>\n<users>\n");
            for _ in 0..n {
                x.push_str(&format!("<{name}>\n"));
            }
            x
        };
        let read = |xml: &str, cap: usize| {
            let (dec, _) = DecodeReader::new(xml.as_bytes()).unwrap();
            let mut b = Bounded::new(dec, cap);
            let mut out = Vec::new();
            let e = b.read_to_end(&mut out).err();
            (out.len(), e)
        };
        // The root and MAX_DEPTH - 1 more: read to the end.
        let xml = deep(MAX_DEPTH - 1, "a");
        let (n, e) = read(&xml, 4096);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(n, xml.len());
        // One more: stopped at that start tag, on its line.
        let xml = deep(MAX_DEPTH, "a");
        let (n, e) = read(&xml, 4096);
        let e = e.expect("stopped");
        let t = too_deep(&e).expect("a TooDeep stop");
        assert_eq!(t.line, MAX_DEPTH as u64 + 2);
        assert_eq!(n, xml.len() - "<a>\n".len());
        // Open names over the limit together stop it too (the fourth
        // here, on line 6), self-closing ones not.
        let (_, e) = read(&deep(5, &"n".repeat(20_000)), 32 << 10);
        assert_eq!(e.as_ref().and_then(too_deep).map(|t| t.line), Some(6));
        let (_, e) = read(&deep(50, &format!("{}/", "n".repeat(20_000))), 32 << 10);
        assert!(e.is_none());
    }
}
