//! Decoding stage: an extract's bytes in its declared encoding → UTF-8.
//!
//! Everything after this stage reads UTF-8. A valid UTF-8 file (the common
//! case) is passed through without a copy, so a mapped file stays mapped.
//! Any other encoding, and UTF-8 with invalid bytes, is decoded once, up
//! front, into an owned buffer that the rest of the pipeline reads exactly
//! like mapped bytes. Each malformed sequence becomes U+FFFD in that buffer
//! and its offset is recorded, so the reader can reject the record that
//! holds it (or count it) and say at which line and column it was.
//!
//! Decoding follows the WHATWG Encoding Standard (encoding_rs): a
//! byte-order mark overrides the declared label, `iso-8859-1` and `latin1`
//! mean windows-1252, and UTF-16 is decoded but never written.

use std::borrow::Cow;

use encoding_rs::{DecoderResult, Encoding as Enc, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};

/// Byte-order mark of UTF-8.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A declared input encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (a byte-order mark is skipped).
    Utf8,
    /// Sniff a byte-order mark; without one the file must be valid UTF-8,
    /// otherwise the run stops and names the likely legacy encoding.
    Auto,
    /// Any other WHATWG encoding (windows-1252, UTF-16LE, ...).
    Other(&'static Enc),
    /// Windows-1252 in which the five bytes the code page leaves
    /// undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) are invalid bytes, as in
    /// Microsoft's own tables, instead of the C1 controls WHATWG reads
    /// them as: they follow `invalid_bytes` and are counted.
    Windows1252Strict,
}

impl Encoding {
    /// Parses a profile label: `auto`, a UTF-8 spelling (also `utf-8-bom`
    /// and `utf-8-sig`: the mark is skipped either way) or any WHATWG label.
    pub fn from_label(label: &str) -> Result<Encoding, String> {
        let l = label.trim().to_ascii_lowercase();
        match l.as_str() {
            "auto" => return Ok(Encoding::Auto),
            "windows-1252-strict" | "cp1252-strict" => return Ok(Encoding::Windows1252Strict),
            "utf-8-bom" | "utf-8-sig" | "utf8-bom" | "utf8-sig" => return Ok(Encoding::Utf8),
            _ => {}
        }
        match Enc::for_label(l.as_bytes()) {
            Some(e) if e == UTF_8 => Ok(Encoding::Utf8),
            // WHATWG maps a few labels (`replacement`, `x-user-defined`)
            // to encodings that cannot describe a real extract.
            Some(e) if e.name() == "replacement" => Err(format!(
                "encoding `{label}` is a WHATWG `replacement` label and cannot be read"
            )),
            Some(e) => Ok(Encoding::Other(e)),
            None => Err(format!(
                "encoding `{label}` is not known; use `auto`, `utf-8`, `windows-1252`, \
                 `iso-8859-1`, `utf-16le`, `utf-16be` or another WHATWG label"
            )),
        }
    }

    /// The canonical name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Auto => "auto",
            Encoding::Other(e) => e.name(),
            Encoding::Windows1252Strict => STRICT_1252,
        }
    }
}

/// The name of [`Encoding::Windows1252Strict`] in messages.
const STRICT_1252: &str = "windows-1252 (strict)";

/// An extract as UTF-8.
#[derive(Debug, Clone)]
pub struct Text<'a> {
    /// The UTF-8 bytes, without a byte-order mark. Borrowed when the input
    /// was valid UTF-8 already.
    pub bytes: Cow<'a, [u8]>,
    /// Offsets in `bytes` of each U+FFFD that replaced a malformed input
    /// sequence, ascending.
    pub invalid: Vec<usize>,
    /// The encoding the bytes were read in (after byte-order-mark sniffing).
    pub encoding: &'static str,
}

impl Text<'_> {
    /// The text freed of the input it was decoded from, when it owns its
    /// bytes: a decoded copy needs the input no longer, so the caller can
    /// unmap it instead of holding the extract twice.
    pub fn detach(self) -> Result<Text<'static>, Self> {
        match self.bytes {
            Cow::Owned(bytes) => Ok(Text {
                bytes: Cow::Owned(bytes),
                invalid: self.invalid,
                encoding: self.encoding,
            }),
            Cow::Borrowed(_) => Err(self),
        }
    }
}

/// Decodes `bytes` (a whole file) declared as `enc`. The error, for
/// `auto` on a file that is not UTF-8, says where the first bad byte is
/// and which encoding the file probably is.
pub fn decode(bytes: &[u8], enc: Encoding) -> Result<Text<'_>, String> {
    let target = match enc {
        Encoding::Utf8 => UTF_8,
        Encoding::Other(e) => e,
        Encoding::Windows1252Strict => WINDOWS_1252,
        Encoding::Auto => match Enc::for_bom(bytes) {
            Some((e, _)) => e,
            None => match std::str::from_utf8(bytes) {
                // ASCII text in UTF-16 without a mark is valid UTF-8 full
                // of NULs: refuse it rather than reject every record.
                Ok(_) if guess_legacy(bytes).starts_with("UTF-16") => {
                    return Err(format!(
                        "the file has no byte-order mark and looks like {}: set `encoding` in \
                         [input] to say so",
                        guess_legacy(bytes)
                    ))
                }
                Ok(_) => UTF_8,
                Err(e) => return Err(not_utf8_message(bytes, e.valid_up_to())),
            },
        },
    };
    // A BOM overrides the label (WHATWG), so a UTF-16 file declared
    // windows-1252 is still read right.
    let target = Enc::for_bom(bytes).map_or(target, |(e, _)| e);
    if target == UTF_8 {
        let body = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        if std::str::from_utf8(body).is_ok() {
            return Ok(Text {
                bytes: Cow::Borrowed(body),
                invalid: Vec::new(),
                encoding: UTF_8.name(),
            });
        }
    }
    let (out, invalid) = transcode(bytes, target);
    if enc == Encoding::Windows1252Strict && target == WINDOWS_1252 {
        let (out, invalid) = mark_undefined_1252(out);
        return Ok(Text {
            bytes: Cow::Owned(out),
            invalid,
            encoding: STRICT_1252,
        });
    }
    Ok(Text {
        bytes: Cow::Owned(out),
        invalid,
        encoding: target.name(),
    })
}

/// Whether `b` is one of the bytes Windows-1252 leaves undefined.
fn undefined_1252(b: u8) -> bool {
    matches!(b, 0x81 | 0x8D | 0x8F | 0x90 | 0x9D)
}

/// Replaces, in text decoded from Windows-1252, each character that came
/// from an undefined byte with U+FFFD, returning where each went. WHATWG
/// decodes those bytes, and only those, to U+0081, U+008D, U+008F,
/// U+0090 and U+009D (UTF-8 `C2 xx`; 0xC2 never continues a character).
fn mark_undefined_1252(text: Vec<u8>) -> (Vec<u8>, Vec<usize>) {
    let at = |i: usize| text[i] == 0xC2 && text.get(i + 1).is_some_and(|&b| undefined_1252(b));
    if !memchr::memchr_iter(0xC2, &text).any(at) {
        return (text, Vec::new());
    }
    let mut out = Vec::with_capacity(text.len() + 64);
    let mut invalid = Vec::new();
    let mut copied = 0;
    for i in memchr::memchr_iter(0xC2, &text) {
        if at(i) {
            out.extend_from_slice(&text[copied..i]);
            invalid.push(out.len());
            out.extend_from_slice("\u{FFFD}".as_bytes());
            copied = i + 2;
        }
    }
    out.extend_from_slice(&text[copied..]);
    (out, invalid)
}

/// Decodes with BOM removal, replacing each malformed sequence with
/// U+FFFD and recording where it went.
fn transcode(src: &[u8], enc: &'static Enc) -> (Vec<u8>, Vec<usize>) {
    let mut dec = enc.new_decoder_with_bom_removal();
    // Single-byte encodings grow by the share of non-ASCII bytes; start a
    // little above the input and grow when the decoder asks.
    let mut out = vec![0u8; src.len() + src.len() / 4 + 16];
    let mut invalid = Vec::new();
    let (mut read, mut written) = (0usize, 0usize);
    loop {
        let (res, r, w) =
            dec.decode_to_utf8_without_replacement(&src[read..], &mut out[written..], true);
        read += r;
        written += w;
        match res {
            DecoderResult::InputEmpty => break,
            DecoderResult::OutputFull => {
                let grown = out.len() * 2 + 16;
                out.resize(grown, 0);
            }
            DecoderResult::Malformed(_, _) => {
                if out.len() < written + 3 {
                    let grown = out.len() * 2 + 16;
                    out.resize(grown, 0);
                }
                invalid.push(written);
                out[written..written + 3].copy_from_slice("\u{FFFD}".as_bytes());
                written += 3;
            }
        }
    }
    out.truncate(written);
    (out, invalid)
}

/// The 1-based line and column (in characters) of byte `pos` of `data`.
pub fn line_col(data: &[u8], pos: usize) -> (u64, u64) {
    let pos = pos.min(data.len());
    let before = &data[..pos];
    let line = crate::read::source::count_breaks(data, 0, pos) + 1;
    let line_start = before
        .iter()
        .rposition(|&b| matches!(b, b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    (line, column(&data[line_start..pos]))
}

/// The 1-based column, in characters, just after `line_prefix`: UTF-8
/// continuation bytes do not start a character.
pub fn column(line_prefix: &[u8]) -> u64 {
    line_prefix.iter().filter(|&&b| (b as i8) >= -0x40).count() as u64 + 1
}

/// Why `auto` refuses a file that is not UTF-8, with a suggestion.
fn not_utf8_message(bytes: &[u8], at: usize) -> String {
    let (line, col) = line_col(bytes, at);
    format!(
        "the file is not valid UTF-8 (first bad byte 0x{:02X} at line {line}, column {col}) and \
         has no byte-order mark; it looks like {}: set `encoding` in [input] to say so",
        bytes[at],
        guess_legacy(bytes)
    )
}

/// The profile label of [`guess_legacy`]'s guess: `windows-1252`,
/// `utf-16le` or `utf-16be`.
pub fn legacy_label(bytes: &[u8]) -> &'static str {
    let g = guess_legacy(bytes);
    if g.starts_with("UTF-16LE") {
        "utf-16le"
    } else if g.starts_with("UTF-16BE") {
        "utf-16be"
    } else {
        "windows-1252"
    }
}

/// The likely encoding of a file that is not UTF-8: UTF-16 without a mark
/// when NUL bytes fill alternate positions, windows-1252 otherwise (the
/// WHATWG superset of Latin-1 that Western SIS exports use).
pub fn guess_legacy(bytes: &[u8]) -> &'static str {
    let sample = &bytes[..bytes.len().min(4096)];
    let even = sample.iter().step_by(2).filter(|&&b| b == 0).count();
    let odd = sample
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|&&b| b == 0)
        .count();
    let half = sample.len() / 2;
    // UTF-16 text has its NULs on one side only; a binary file (an
    // executable given as the extract) has them on both.
    if half > 0 && odd * 3 > half && even * 10 < half {
        "UTF-16LE (`utf-16le`)"
    } else if half > 0 && even * 3 > half && odd * 10 < half {
        "UTF-16BE (`utf-16be`)"
    } else {
        "windows-1252 (`windows-1252`, also called Latin-1 or ISO-8859-1)"
    }
}

/// The UTF-16 encodings, for tests and fixtures.
pub fn utf16(big_endian: bool) -> &'static Enc {
    if big_endian {
        UTF_16BE
    } else {
        UTF_16LE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(l: &str) -> Encoding {
        Encoding::from_label(l).unwrap()
    }

    #[test]
    fn labels() {
        assert_eq!(enc("UTF-8"), Encoding::Utf8);
        assert_eq!(enc("utf-8-bom"), Encoding::Utf8);
        assert_eq!(enc("auto"), Encoding::Auto);
        assert_eq!(enc("latin1").name(), "windows-1252");
        assert_eq!(enc("ISO-8859-1").name(), "windows-1252");
        assert_eq!(enc("cp1252").name(), "windows-1252");
        assert_eq!(enc("utf-16le").name(), "UTF-16LE");
        assert!(Encoding::from_label("klingon").is_err());
        assert!(Encoding::from_label("iso-2022-kr").is_err());
    }

    #[test]
    fn utf8_borrows_and_strips_the_bom() {
        let t = decode(b"\xEF\xBB\xBFa,b\n", Encoding::Utf8).unwrap();
        assert!(matches!(t.bytes, Cow::Borrowed(_)));
        assert_eq!(&*t.bytes, b"a,b\n");
        let t = decode(b"a,b\n", Encoding::Auto).unwrap();
        assert!(matches!(t.bytes, Cow::Borrowed(_)));
    }

    #[test]
    fn windows_1252_and_invalid_positions() {
        let t = decode(b"Jos\xE9,\x80\n", enc("windows-1252")).unwrap();
        assert_eq!(std::str::from_utf8(&t.bytes).unwrap(), "José,€\n");
        assert!(t.invalid.is_empty());
        let t = decode(b"ab\nc\xFFd\n", Encoding::Utf8).unwrap();
        assert_eq!(std::str::from_utf8(&t.bytes).unwrap(), "ab\nc\u{FFFD}d\n");
        assert_eq!(t.invalid, [4]);
        assert_eq!(line_col(&t.bytes, 4), (2, 2));
    }

    #[test]
    fn strict_windows_1252_counts_the_undefined_bytes_as_invalid() {
        let strict = enc("windows-1252-strict");
        assert_eq!(strict, Encoding::Windows1252Strict);
        let src = b"Bj\x8D\xF6rn,\x81\x8F\x90\x9D,\x80\xC2\n";
        let t = decode(src, strict).unwrap();
        let s = std::str::from_utf8(&t.bytes).unwrap();
        assert_eq!(s, "Bj\u{FFFD}örn,\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD},€Â\n");
        // Offsets of each U+FFFD in the decoded text.
        assert_eq!(t.invalid, [2, 10, 13, 16, 19]);
        assert!(t.encoding.contains("strict"));
        // The lenient label keeps WHATWG's C1 reading (the mapper then
        // removes those controls as forbidden characters).
        let t = decode(src, enc("windows-1252")).unwrap();
        assert!(t.invalid.is_empty());
        assert!(std::str::from_utf8(&t.bytes)
            .unwrap()
            .starts_with("Bj\u{8D}ö"));
        // Nothing undefined: no copy of the decoded text is made twice.
        let t = decode(b"Jos\xE9\n", strict).unwrap();
        assert_eq!((&t.bytes[..], t.invalid.len()), ("José\n".as_bytes(), 0));
    }

    #[test]
    fn utf16_with_bom_whatever_the_label() {
        let mut b = vec![0xFF, 0xFE];
        for u in "é,1\r\n".encode_utf16() {
            b.extend(u.to_le_bytes());
        }
        for label in ["utf-16le", "auto", "windows-1252"] {
            let t = decode(&b, enc(label)).unwrap();
            assert_eq!(std::str::from_utf8(&t.bytes).unwrap(), "é,1\r\n", "{label}");
            assert_eq!(t.encoding, "UTF-16LE");
        }
        // A lone surrogate is malformed.
        let t = decode(&[0x00, 0xD8, b'a', 0], enc("utf-16le")).unwrap();
        assert_eq!(t.invalid, [0]);
    }

    #[test]
    fn auto_refuses_legacy_bytes_and_suggests() {
        let e = decode(b"id\nJos\xE9\n", Encoding::Auto).unwrap_err();
        assert!(e.contains("line 2, column 4"), "{e}");
        assert!(e.contains("windows-1252"), "{e}");
        let mut b = Vec::new();
        for u in "id,name\nx,y\n".encode_utf16() {
            b.extend(u.to_le_bytes());
        }
        let e = decode(&b, Encoding::Auto).unwrap_err();
        assert!(e.contains("UTF-16LE"), "{e}");
        b.push(0xFF);
        let e = decode(&b, Encoding::Auto).unwrap_err();
        assert!(e.contains("UTF-16LE"), "{e}");
    }

    #[test]
    fn only_decoded_text_detaches_from_its_input() {
        let utf8 = b"id\n1\n".to_vec();
        assert!(decode(&utf8, Encoding::Utf8).unwrap().detach().is_err());
        let latin = b"id\nJos\xe9\n".to_vec();
        let t = decode(&latin, Encoding::from_label("windows-1252").unwrap()).unwrap();
        let t = t.detach().map_err(|_| "kept its borrow").unwrap();
        drop(latin);
        assert_eq!(&t.bytes[..], "id\nJosé\n".as_bytes());
    }
}
