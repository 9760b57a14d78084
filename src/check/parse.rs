//! Streaming parse of one XML file into `<user>` subtrees.
//!
//! quick-xml reads events from a `DecodeReader`; everything outside a
//! `<user>` is looked at and let go, and each `<user>` is collected into a
//! small [`Node`] tree, handed to the `ParseSink`, then dropped, so a
//! file of any size is checked in the memory of its largest user. Like
//! Alma's loader we look for `<user>` children of the root whatever the
//! root is called (MIT's `<userRecords>` loads in production), and report
//! the root separately.

use std::io::Read;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::bound::{Bounded, Kind, Overflow};
use super::decode::{DecodeReader, Sniffed};
use super::schema;
use super::Code;
use crate::map::rules::xml_allowed;

/// One element of a user, with its line in the original file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Element name as written.
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// Character data directly inside (entities resolved, characters XML
    /// forbids already removed).
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Node>,
    /// Line of the start tag.
    pub line: u64,
    /// Characters XML 1.0 forbids that were removed from `text`/`attrs`.
    pub forbidden: u64,
}

impl Node {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The trimmed text of child `name`, if present.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }
}

/// A file-level problem met while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) code: Code,
    pub(crate) line: u64,
    pub(crate) message: String,
}

/// A parsed user and what the parser noticed inside it.
#[derive(Debug)]
pub(crate) struct ParsedUser {
    pub(crate) node: Node,
    /// Lines of invalid UTF-8 sequences inside the user.
    pub(crate) invalid_utf8: Vec<u64>,
    /// The user was larger than the limit and was cut short.
    pub(crate) too_large: bool,
    /// A name, attribute value or text node of the user was over the cap:
    /// its line and what it was. The rest of the user was not read.
    pub(crate) value_too_large: Option<(u64, String)>,
}

/// Receives what [`parse`] finds, in document order.
pub(crate) trait ParseSink {
    /// A file-level problem.
    fn problem(&mut self, p: Problem) -> crate::Result<()>;
    /// A complete `<user>`.
    fn user(&mut self, u: ParsedUser) -> crate::Result<()>;
}

/// Limits on one user, so a hostile file cannot make us hold it whole.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ParseLimits {
    /// Bytes of text and names one user may hold; also the cap on one
    /// name, tag or text node (at least [`MIN_TOKEN_CAP`]).
    pub(crate) max_user_bytes: usize,
    /// Element names that are a user at the root's level: `user` for
    /// `check`; Alma's exports also name it `userRecord` (v1).
    pub(crate) user_names: &'static [&'static str],
}

/// What `check` reads as a user: v2's `<user>` only.
pub(crate) const V2_USER: &[&str] = &["user"];

/// The smallest cap on one tag or text node, whatever `max_user_bytes`
/// is: an XML declaration must fit.
pub(crate) const MIN_TOKEN_CAP: usize = 4096;

/// What went wrong below the parser: the input itself failed (I/O, or a
/// zip entry tripped its limits).
#[derive(Debug)]
pub(crate) enum ParseError {
    /// The byte source failed.
    Io(std::io::Error),
    /// The sink failed.
    Sink(crate::Error),
}

fn encoding_problems(s: &Sniffed) -> Vec<Problem> {
    let mut v = Vec::new();
    if let Some(bom) = s.bom {
        v.push(Problem {
            code: Code::Bom,
            line: 1,
            message: format!(
                "the file starts with a {bom} byte-order mark; Alma reports \"Content is not \
                 allowed in prolog\""
            ),
        });
    }
    if s.junk_bytes > 0 {
        v.push(Problem {
            code: Code::ContentBeforeProlog,
            line: 1,
            message: format!(
                "{} byte(s) before the XML declaration{}; Alma reports \"Content is not \
                 allowed in prolog\"",
                s.junk_bytes,
                if s.junk_is_space { " (whitespace)" } else { "" }
            ),
        });
    }
    match (s.transcoded_from, &s.bad_label) {
        (Some(enc), Some(label)) => v.push(Problem {
            code: Code::NotUtf8,
            line: 1,
            message: format!("declared encoding {label} ({enc}); Alma reads UTF-8 only"),
        }),
        (Some(enc), None) => v.push(Problem {
            code: Code::NotUtf8,
            line: 1,
            message: format!("the file is {enc}; Alma reads UTF-8 only"),
        }),
        (None, Some(label)) => v.push(Problem {
            code: Code::NotUtf8,
            line: 1,
            message: format!(
                "declared encoding `{label}` is not UTF-8 and not usable for these bytes; \
                 read as UTF-8"
            ),
        }),
        (None, None) => {}
    }
    v
}

struct State {
    stack: Vec<Node>,
    /// Depth inside the root (0 = at root level, before/after root).
    depth: usize,
    /// Depth at which a user started (its element's depth), if in one.
    user_depth: Option<usize>,
    user_bytes: usize,
    too_large: bool,
    value_too_large: Option<(u64, String)>,
    root_seen: bool,
    root_closed: bool,
    max_user_bytes: usize,
    user_names: &'static [&'static str],
}

/// Parses one XML byte stream, calling `sink` for every user and
/// problem. Stops at the first well-formedness error (reported as a
/// problem), like any XML parser.
pub(crate) fn parse<R: Read>(
    src: R,
    limits: ParseLimits,
    sink: &mut dyn ParseSink,
) -> Result<(), ParseError> {
    let (dec, sniffed) = DecodeReader::new(src).map_err(ParseError::Io)?;
    for p in encoding_problems(&sniffed) {
        sink.problem(p).map_err(ParseError::Sink)?;
    }
    let cap = limits.max_user_bytes.max(MIN_TOKEN_CAP);
    let mut rdr = Reader::from_reader(Bounded::new(dec, cap));
    rdr.config_mut().check_end_names = true;
    let mut buf = Vec::with_capacity(1 << 12);
    let mut st = State {
        stack: Vec::new(),
        depth: 0,
        user_depth: None,
        user_bytes: 0,
        too_large: false,
        value_too_large: None,
        root_seen: false,
        root_closed: false,
        max_user_bytes: limits.max_user_bytes,
        user_names: limits.user_names,
    };
    let mut first = true;
    let problem = |sink: &mut dyn ParseSink, code, line, message: String| {
        sink.problem(Problem {
            code,
            line,
            message,
        })
        .map_err(ParseError::Sink)
    };
    loop {
        buf.clear();
        let line = rdr.get_ref().lines() + 1;
        let ev = match rdr.read_event_into(&mut buf) {
            Ok(ev) => ev,
            Err(quick_xml::Error::Io(e)) => {
                // Our own source failed (a zip entry over its limits, a
                // read error): not a property of the XML.
                let e = std::sync::Arc::try_unwrap(e)
                    .unwrap_or_else(|a| std::io::Error::new(a.kind(), a.to_string()));
                return Err(ParseError::Io(e));
            }
            Err(e) => {
                let line = rdr.get_ref().lines() + 1;
                return problem(
                    sink,
                    Code::NotWellFormed,
                    line,
                    format!("XML does not parse: {e}; Alma reports \"Could not parse file\""),
                );
            }
        };
        // A token over the cap was replaced by a short one; it is
        // reported with the element it belongs to: after a start tag is
        // opened, before anything else is handled.
        let over = rdr.get_mut().take_overflow();
        let (over_now, over_after_start) = match ev {
            Event::Start(_) | Event::Empty(_) => (None, over),
            _ => (over, None),
        };
        if let Some(o) = over_now {
            overflow(&mut st, o, cap, sink)?;
        }
        let was_first = std::mem::replace(&mut first, false);
        match ev {
            Event::Decl(_) => {
                if !was_first {
                    problem(
                        sink,
                        Code::NotWellFormed,
                        line,
                        "XML declaration not at the start of the file".into(),
                    )?;
                }
                continue;
            }
            _ if was_first && !matches!(ev, Event::Eof) => {
                problem(
                    sink,
                    Code::NoDeclaration,
                    1,
                    "no XML declaration; Alma expects <?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                        .into(),
                )?;
            }
            _ => {}
        }
        match ev {
            Event::Start(e) => {
                start(&mut st, &e, line, sink)?;
                st.depth += 1;
                if let Some(o) = over_after_start {
                    overflow(&mut st, o, cap, sink)?;
                }
            }
            Event::Empty(e) => {
                start(&mut st, &e, line, sink)?;
                st.depth += 1;
                if let Some(o) = over_after_start {
                    overflow(&mut st, o, cap, sink)?;
                }
                end(&mut st, &mut rdr, sink)?;
            }
            Event::End(_) => end(&mut st, &mut rdr, sink)?,
            Event::Text(t) => text(&mut st, &t, line, sink)?,
            Event::CData(t) => text(&mut st, &t, line, sink)?,
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c.to_string()),
                        _ => None,
                    }
                } else {
                    quick_xml::escape::resolve_predefined_entity(&r).map(str::to_string)
                };
                match resolved {
                    Some(s) => text(&mut st, &s, line, sink)?,
                    None => problem(
                        sink,
                        Code::NotWellFormed,
                        line,
                        format!("unknown entity or character reference &{};", &*r),
                    )?,
                }
            }
            Event::Eof => {
                if !st.root_seen {
                    problem(sink, Code::NotWellFormed, line, "no root element".into())?;
                } else if !st.root_closed {
                    problem(
                        sink,
                        Code::NotWellFormed,
                        line,
                        "unexpected end of file: elements left open".into(),
                    )?;
                }
                return Ok(());
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

fn start(
    st: &mut State,
    e: &BytesStart,
    line: u64,
    sink: &mut dyn ParseSink,
) -> Result<(), ParseError> {
    let name = e.name().as_ref().to_string();
    let p = |sink: &mut dyn ParseSink, code, message| {
        sink.problem(Problem {
            code,
            line,
            message,
        })
        .map_err(ParseError::Sink)
    };
    if st.depth == 0 {
        if st.root_seen {
            return p(sink, Code::NotWellFormed, "a second root element".into());
        }
        st.root_seen = true;
        if name != "users" {
            let hint = if schema::V1_NAMES.contains(&name.as_str()) {
                " (a v1 element name)"
            } else {
                ""
            };
            p(
                sink,
                Code::RootElement,
                format!("root element is <{name}>{hint}; rest_users.xsd wants <users>"),
            )?;
        }
        for a in e.attributes().flatten() {
            let key = a.key.as_ref();
            if key == "xmlns" || key.starts_with("xmlns:") {
                p(
                    sink,
                    Code::Namespace,
                    format!("namespace declaration {key} on the root; Alma's v2 schema has none"),
                )?;
            } else if name == "users" && !schema::USERS_ATTRS.iter().any(|(n, _)| *n == key) {
                p(
                    sink,
                    Code::UnknownAttribute,
                    format!("unknown attribute {key} on <{name}>"),
                )?;
            }
        }
        if !st.user_names.contains(&name.as_str()) {
            return Ok(());
        }
    }
    if st.user_depth.is_none() {
        if st.user_names.contains(&name.as_str()) && st.depth <= 1 {
            st.user_depth = Some(st.depth);
            st.user_bytes = 0;
            st.too_large = false;
            st.value_too_large = None;
        } else {
            if st.depth == 1 {
                let (code, what) = if schema::V1_NAMES.contains(&name.as_str()) {
                    (Code::V1Element, "a v1 element")
                } else {
                    (Code::UnknownElement, "not <user>")
                };
                p(
                    sink,
                    code,
                    format!("<{name}> in the root is {what}; Alma ignores or rejects it"),
                )?;
            }
            return Ok(());
        }
    }
    // Once a user is cut short nothing more of it is kept: an element
    // opened now is never attached, so it holds no name or attributes
    // (they are still parsed, for their errors), however many levels
    // are open.
    let discard = st.too_large;
    let mut node = Node {
        name: if discard { String::new() } else { name },
        line,
        ..Node::default()
    };
    for a in e.attributes() {
        match a {
            Ok(a) => {
                let key = a.key.as_ref().to_string();
                let value = match a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
                    Ok(v) => v.into_owned(),
                    Err(err) => {
                        p(sink, Code::NotWellFormed, format!("attribute {key}: {err}"))?;
                        String::new()
                    }
                };
                if discard {
                    continue;
                }
                let (clean, removed) = crate::map::rules::strip_forbidden(&value);
                node.forbidden += removed;
                node.attrs.push((key, clean.into_owned()));
            }
            Err(err) => p(sink, Code::NotWellFormed, format!("attribute: {err}"))?,
        }
    }
    st.user_bytes += node.name.len()
        + node
            .attrs
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    if st.user_bytes > st.max_user_bytes {
        st.too_large = true;
    }
    st.stack.push(node);
    Ok(())
}

fn end<R: Read>(
    st: &mut State,
    rdr: &mut Reader<Bounded<R>>,
    sink: &mut dyn ParseSink,
) -> Result<(), ParseError> {
    st.depth = st.depth.saturating_sub(1);
    if st.depth == 0 && st.user_depth != Some(0) {
        st.root_closed = true;
        return Ok(());
    }
    let Some(ud) = st.user_depth else {
        return Ok(());
    };
    let Some(node) = st.stack.pop() else {
        return Ok(());
    };
    if st.depth > ud {
        if let Some(parent) = st.stack.last_mut() {
            if !st.too_large {
                parent.children.push(node);
            }
        }
        return Ok(());
    }
    // The user is complete.
    st.user_depth = None;
    if st.depth == 0 {
        st.root_closed = true;
    }
    let last = rdr.get_ref().lines() + 1;
    let invalid_utf8 = rdr.get_mut().take_invalid_through(last);
    let value_too_large = st.value_too_large.take();
    // Cut short for a value over the cap is reported as that alone.
    let too_large = std::mem::take(&mut st.too_large) && value_too_large.is_none();
    sink.user(ParsedUser {
        node,
        invalid_utf8,
        too_large,
        value_too_large,
    })
    .map_err(ParseError::Sink)
}

/// Reports a token [`Bounded`] replaced: inside a user, the user is
/// marked and not collected further; outside, a file-level problem.
/// Comments, processing instructions and whitespace between users carry
/// nothing, so dropping them loses nothing.
fn overflow(
    st: &mut State,
    o: Overflow,
    cap: usize,
    sink: &mut dyn ParseSink,
) -> Result<(), ParseError> {
    let in_user = st.user_depth.is_some();
    let what = match o.kind {
        Kind::Other => return Ok(()),
        Kind::Text { blank: true } if !in_user => return Ok(()),
        Kind::Name => "an element name",
        Kind::StartTag => "a start tag (an attribute value)",
        Kind::EndTag => "an end tag",
        Kind::Text { .. } => "a text node",
    };
    if in_user {
        st.too_large = true;
        if st.value_too_large.is_none() {
            st.value_too_large = Some((
                o.line,
                format!("{what} longer than {cap} bytes; the rest of the user is not read"),
            ));
        }
        return Ok(());
    }
    sink.problem(Problem {
        code: Code::ValueTooLarge,
        line: o.line,
        message: format!("{what} longer than {cap} bytes outside any user; skipped"),
    })
    .map_err(ParseError::Sink)
}

fn text(st: &mut State, t: &str, line: u64, sink: &mut dyn ParseSink) -> Result<(), ParseError> {
    if st.user_depth.is_none() {
        if st.depth == 1 && !t.trim().is_empty() {
            // The text event starts where the last tag ended; name the
            // line of its first visible character.
            let lead = t.len() - t.trim_start().len();
            let nl = t[..lead].bytes().filter(|&b| b == b'\n').count() as u64;
            sink.problem(Problem {
                code: Code::UnexpectedText,
                line: line + nl,
                message: "text between users, where the root holds only <user> elements".into(),
            })
            .map_err(ParseError::Sink)?;
        }
        let (_, removed) = crate::map::rules::strip_forbidden(t);
        if removed > 0 {
            sink.problem(Problem {
                code: Code::ForbiddenChar,
                line,
                message: format!("{removed} control or non-character(s) outside any user"),
            })
            .map_err(ParseError::Sink)?;
        }
        return Ok(());
    }
    let Some(top) = st.stack.last_mut() else {
        return Ok(());
    };
    if st.too_large {
        return Ok(());
    }
    st.user_bytes += t.len();
    if st.user_bytes > st.max_user_bytes {
        st.too_large = true;
        return Ok(());
    }
    if t.chars().all(xml_allowed) {
        top.text.push_str(t);
    } else {
        let (clean, removed) = crate::map::rules::strip_forbidden(t);
        top.forbidden += removed;
        top.text.push_str(&clean);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        problems: Vec<(Code, u64)>,
        users: Vec<ParsedUser>,
    }

    impl ParseSink for Collect {
        fn problem(&mut self, p: Problem) -> crate::Result<()> {
            self.problems.push((p.code, p.line));
            Ok(())
        }
        fn user(&mut self, u: ParsedUser) -> crate::Result<()> {
            self.users.push(u);
            Ok(())
        }
    }

    fn run(xml: &str, max: usize) -> Collect {
        let mut c = Collect::default();
        let limits = ParseLimits {
            max_user_bytes: max,
            user_names: V2_USER,
        };
        if parse(xml.as_bytes(), limits, &mut c).is_err() {
            panic!("parse failed");
        }
        c
    }

    #[test]
    fn lines_entities_and_forbidden_characters() {
        let c = run(
            "<?xml version=\"1.0\"?>\n<users>\n\n  <user>\n    <a x=\"1 &amp; 2\">A &amp; B&#x41;\u{1}</a>\n  </user>\n</users>\n",
            1 << 20,
        );
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        let u = &c.users[0].node;
        assert_eq!(u.line, 4);
        let a = &u.children[0];
        assert_eq!((a.line, a.text.as_str(), a.forbidden), (5, "A & BA", 1));
        assert_eq!(a.attr("x"), Some("1 & 2"));
    }

    #[test]
    fn a_single_user_root_is_a_user() {
        let c = run(
            "<?xml version=\"1.0\"?>\n<user><primary_id>P</primary_id></user>",
            1 << 20,
        );
        assert_eq!(c.problems, [(Code::RootElement, 2)]);
        assert_eq!(c.users.len(), 1);
    }

    #[test]
    fn truncated_file_and_oversized_user() {
        let c = run("<?xml version=\"1.0\"?>\n<users>\n<user>", 1 << 20);
        assert_eq!(c.problems, [(Code::NotWellFormed, 3)]);
        let c = run(
            "<?xml version=\"1.0\"?>\n<users><user><a>0123456789</a></user></users>",
            8,
        );
        assert!(c.users[0].too_large);
        assert!(c.users[0].node.children.is_empty());
    }

    #[test]
    fn values_over_the_cap_are_reported_where_they_start() {
        let big = "x\n".repeat(3000);
        let blank = " \n".repeat(3000);
        let xml = format!(
            "<?xml version=\"1.0\"?>\n<users>\n<user>\n<primary_id>P1</primary_id>\n\
             <note a=\"{big}\"><b>{big}</b></note>\n</user>\n{blank}<user>\n\
             <primary_id>P2</primary_id>\n</user>\n{big}<user><primary_id>P3</primary_id>\
             </user>\n</users>\n"
        );
        let c = run(&xml, 64);
        // P1: the attribute on line 5 is reported; the text after it is
        // not collected.
        let u = &c.users[0];
        assert_eq!(u.node.child_text("primary_id"), Some("P1"));
        assert_eq!(u.value_too_large.as_ref().map(|v| v.0), Some(5));
        assert!(!u.too_large);
        assert_eq!(u.node.children.len(), 1);
        // Whitespace between users is no finding; P2 keeps its lines.
        let u = &c.users[1];
        assert_eq!((u.node.line, u.value_too_large.is_none()), (9007, true));
        // Text between users: a file-level finding where it starts.
        assert_eq!(c.problems, [(Code::ValueTooLarge, 9010)]);
        assert_eq!(c.users[2].node.line, 12010);
        assert_eq!(c.users.len(), 3);
    }
}
