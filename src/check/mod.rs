//! `patronload check` and `repack`: validate Alma user XML that other
//! systems produce, and rebuild it into a package Alma accepts.
//!
//! The driver streams every input (plain `.xml` files, and the entries of
//! `.zip` files in stored order, as Alma reads them) through
//! [`parse`] one `<user>` at a time, runs the per-user
//! [`rules`] on each, then the package-wide identifier uniqueness of
//! [`crate::dedupe::IdSet`] (first instance wins, exactly as `convert`
//! decides it), and collects [`Finding`]s. [`repack`] walks the same way
//! and writes the users that survive.
//!
//! Findings carry file, entry, line, primary id, reason code and a
//! message; never a name, email or address.

pub(crate) mod bound;
pub mod codes;
mod decode;
pub mod parse;
pub mod repack;
pub mod rules;
mod schema;
pub mod zipin;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dedupe::{IdSet, Owner};
use crate::error::{Error, Result};
use crate::profile::IdentifierCase;
use crate::write::package::Limits;

pub use codes::CodeTables;
pub use parse::Node;
pub use rules::Issue;
pub use zipin::ZipLimits;

use parse::{ParseError, ParseLimits, ParseSink, ParsedUser, Problem};

/// What a finding is about. The codes are stable: scripts key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Code {
    /// The XML does not parse ("Could not parse file").
    NotWellFormed,
    /// The file is not UTF-8 (declared or by byte-order mark).
    NotUtf8,
    /// Bytes that are not valid UTF-8 in a file read as UTF-8.
    InvalidEncoding,
    /// A byte-order mark before the declaration.
    Bom,
    /// Bytes before the XML declaration.
    ContentBeforeProlog,
    /// No XML declaration.
    NoDeclaration,
    /// The root element is not `<users>`.
    RootElement,
    /// A namespace on the root; v2 has none.
    Namespace,
    /// Characters XML 1.0 forbids (control characters).
    ForbiddenChar,
    /// An element the schema does not allow where it is.
    UnknownElement,
    /// An element of the obsolete v1 format (`recordType`...).
    V1Element,
    /// An element that may appear once appears again.
    RepeatedElement,
    /// Children of a sequence out of order (`contact_info`).
    ElementOrder,
    /// An attribute the schema does not allow.
    UnknownAttribute,
    /// Text inside an element that holds only elements.
    UnexpectedText,
    /// A mandatory element is missing or empty.
    MissingField,
    /// An optional date element is empty.
    EmptyDate,
    /// A date is not an `xs:date` (or `xs:dateTime`).
    InvalidDate,
    /// An optional boolean element is empty.
    EmptyBoolean,
    /// A boolean is not `true`/`false`/`1`/`0`.
    InvalidBoolean,
    /// An optional number element is empty.
    EmptyNumber,
    /// A number does not parse.
    InvalidNumber,
    /// A value is longer than the schema allows.
    TooLong,
    /// An identifier `<value>` is empty.
    EmptyIdentifier,
    /// A `<statistic_category>` is empty.
    EmptyStatisticCategory,
    /// More than one preferred address, email or phone (or SMS phone).
    MultiplePreferred,
    /// An identifier value is taken by an earlier user of the package.
    DuplicateId,
    /// An identifier value repeats another of the same user.
    IdRepeatedInUser,
    /// A code the institution's code table does not know.
    UnknownCode,
    /// A user larger than the per-user limit.
    UserTooLarge,
    /// A name, attribute value or text node over the per-user limit; the
    /// rest of the user is not read.
    ValueTooLarge,
    /// A zip entry name escapes its folder, or an entry is a symlink.
    UnsafeZip,
    /// A zip entry's sizes betray a decompression bomb.
    ZipBomb,
    /// The zip cannot be read.
    ZipUnreadable,
    /// A zip entry that is not an XML file, or a zip without one.
    NotXmlEntry,
    /// A zip inside the zip: its users cannot be read.
    NestedZip,
    /// More XML files in one zip than Alma takes.
    FilesPerZip,
    /// A zip over the size limit.
    ZipTooLarge,
    /// The zips together exceed the Secure FTP directory budget.
    DirectoryBudget,
}

impl Code {
    /// The stable code string.
    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            NotWellFormed => "not_well_formed",
            NotUtf8 => "not_utf8",
            InvalidEncoding => "invalid_encoding",
            Bom => "bom",
            ContentBeforeProlog => "content_before_prolog",
            NoDeclaration => "no_declaration",
            RootElement => "root_element",
            Namespace => "namespace",
            ForbiddenChar => "forbidden_char",
            UnknownElement => "unknown_element",
            V1Element => "v1_element",
            RepeatedElement => "repeated_element",
            ElementOrder => "element_order",
            UnknownAttribute => "unknown_attribute",
            UnexpectedText => "unexpected_text",
            MissingField => "missing_field",
            EmptyDate => "empty_date",
            InvalidDate => "invalid_date",
            EmptyBoolean => "empty_boolean",
            InvalidBoolean => "invalid_boolean",
            EmptyNumber => "empty_number",
            InvalidNumber => "invalid_number",
            TooLong => "too_long",
            EmptyIdentifier => "empty_identifier",
            EmptyStatisticCategory => "empty_statistic_category",
            MultiplePreferred => "multiple_preferred",
            DuplicateId => "duplicate_id",
            IdRepeatedInUser => "id_repeated_in_user",
            UnknownCode => "unknown_code",
            UserTooLarge => "user_too_large",
            ValueTooLarge => "value_too_large",
            UnsafeZip => "unsafe_zip",
            ZipBomb => "zip_bomb",
            ZipUnreadable => "zip_unreadable",
            NotXmlEntry => "not_xml_entry",
            NestedZip => "nested_zip",
            FilesPerZip => "files_per_zip",
            ZipTooLarge => "zip_too_large",
            DirectoryBudget => "directory_budget",
        }
    }

    /// Whether `repack` repairs this without guessing (drops the empty
    /// element or segment, strips the character, converts the encoding,
    /// rewrites the prolog and root, re-splits the package). A user with
    /// any other user-level finding is rejected, never patched.
    pub fn repairable(self) -> bool {
        use Code::*;
        matches!(
            self,
            NotUtf8
                | Bom
                | ContentBeforeProlog
                | NoDeclaration
                | RootElement
                | Namespace
                | ForbiddenChar
                | EmptyDate
                | EmptyBoolean
                | EmptyNumber
                | EmptyIdentifier
                | EmptyStatisticCategory
                | IdRepeatedInUser
                | NotXmlEntry
                | FilesPerZip
                | ZipTooLarge
                | DirectoryBudget
        )
    }

    /// Whether a file with this finding cannot be repacked at all: what
    /// it holds cannot be known or must not be opened.
    pub fn fatal_for_repack(self) -> bool {
        Code::FATAL_FOR_REPACK.contains(&self)
    }

    /// The codes of [`Code::fatal_for_repack`].
    pub const FATAL_FOR_REPACK: &'static [Code] = &[
        Code::NotWellFormed,
        Code::UnsafeZip,
        Code::ZipBomb,
        Code::ZipUnreadable,
        Code::NestedZip,
    ];
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One problem found: where, whose, what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The input file as given.
    pub file: String,
    /// The zip entry, for zip inputs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Line in the XML (1-based); 0 when the finding is about a file or
    /// zip as a whole.
    pub line: u64,
    /// The user's primary id, for user-level findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_id: Option<String>,
    /// Reason code.
    pub code: Code,
    /// Element path inside `<user>`, for user-level findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong, without personal data.
    pub message: String,
}

/// One input and what was read from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    /// The path as given.
    pub path: String,
    /// XML entries read, in stored order (zip inputs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<String>,
    /// Users read.
    pub users: u64,
}

/// The result of a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The inputs, in order.
    pub files: Vec<FileReport>,
    /// Users read in all.
    pub users: u64,
    /// Users with at least one finding.
    pub users_with_findings: u64,
    /// Findings in all (also those not kept in `findings`).
    pub findings_total: u64,
    /// Findings by reason code.
    pub findings_by_code: BTreeMap<String, u64>,
    /// The findings, in input order, at most `max_findings` of them.
    pub findings: Vec<Finding>,
    /// Whether `findings` was cut at `max_findings`.
    pub findings_truncated: bool,
}

impl CheckReport {
    /// Whether Alma would take the package as it is.
    pub fn is_clean(&self) -> bool {
        self.findings_total == 0
    }

    /// Findings of `code` counted.
    pub fn count(&self, code: Code) -> u64 {
        self.findings_by_code
            .get(code.as_str())
            .copied()
            .unwrap_or(0)
    }
}

/// Options of a check (and of the checking half of a repack).
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Packaging limits the inputs are held to (files per zip, zip size,
    /// the directory budget). By default [`Limits::default`].
    pub limits: Limits,
    /// Limits on reading untrusted zips.
    pub zip: ZipLimits,
    /// Institution code tables, when given.
    pub codes: Option<CodeTables>,
    /// Bytes of text one user may hold before it is cut short and
    /// reported. By default 1 MiB (a real user is a few kilobytes).
    pub max_user_bytes: usize,
    /// Findings kept in the report; the rest are only counted. By
    /// default 10,000, so memory stays bounded on a broken 2 GB file
    /// (a kept message is cut at 1 KiB, its primary id and field at 256
    /// bytes).
    pub max_findings: usize,
    /// How identifiers compare. By default case-insensitively, as Alma
    /// compares them for institutions set up since 2018.
    pub identifier_case: IdentifierCase,
    /// Counters a progress display reads (users read, users with
    /// findings, bytes of the inputs done); never changes the report.
    pub progress: std::sync::Arc<crate::run::progress::Progress>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            limits: Limits::default(),
            zip: ZipLimits::default(),
            codes: None,
            max_user_bytes: 1 << 20,
            max_findings: 10_000,
            identifier_case: IdentifierCase::Insensitive,
            progress: Default::default(),
        }
    }
}

/// Where a user was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Index of the input file.
    pub file_index: usize,
    /// The input file as given.
    pub file: String,
    /// The zip entry, for zip inputs.
    pub entry: Option<String>,
}

impl Source {
    /// `file` or `file!/entry`, for reports.
    pub fn label(&self) -> String {
        match &self.entry {
            Some(e) => format!("{}!/{e}", self.file),
            None => self.file.clone(),
        }
    }
}

/// What the driver hands a visitor for each user.
pub(crate) struct Visit<'a> {
    pub(crate) source: &'a Source,
    pub(crate) user: &'a Node,
    pub(crate) primary_id: &'a str,
    pub(crate) issues: &'a [Issue],
}

/// Receives every user after its checks (repack writes them).
pub(crate) trait Visitor {
    /// One user, in input order.
    fn user(&mut self, v: Visit<'_>) -> Result<()>;
    /// A new input file or zip entry begins.
    fn source(&mut self, _s: &Source) -> Result<()> {
        Ok(())
    }
}

struct NoVisit;

impl Visitor for NoVisit {
    fn user(&mut self, _v: Visit<'_>) -> Result<()> {
        Ok(())
    }
}

/// Checks `inputs` (XML files and zips of XML files) as Alma would load
/// them, in order.
pub fn check(inputs: &[PathBuf], opts: &CheckOptions) -> Result<CheckReport> {
    walk(inputs, opts, &mut NoVisit)
}

/// The state of a walk over all inputs.
struct Walker<'o> {
    opts: &'o CheckOptions,
    ids: IdSet,
    labels: Vec<String>,
    report: CheckReport,
    source: Source,
    issues: Vec<Issue>,
    users_here: u64,
}

/// Bytes of a kept finding's message; beyond, it is cut (a message quotes
/// names and values, which may be up to the per-user cap each).
const MAX_MESSAGE: usize = 1024;
/// Bytes of a kept finding's primary id and field.
const MAX_LABEL: usize = 256;

/// Cuts `s` to at most `max` bytes (at a character boundary), marking
/// the cut, so kept findings stay small whatever the input holds.
fn clip(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
}

impl Walker<'_> {
    fn push(&mut self, mut f: Finding) {
        clip(&mut f.message, MAX_MESSAGE);
        if let Some(p) = f.primary_id.as_mut() {
            clip(p, MAX_LABEL);
        }
        if let Some(p) = f.field.as_mut() {
            clip(p, MAX_LABEL);
        }
        self.report.findings_total += 1;
        *self
            .report
            .findings_by_code
            .entry(f.code.as_str().to_string())
            .or_default() += 1;
        if self.report.findings.len() < self.opts.max_findings {
            self.report.findings.push(f);
        } else {
            self.report.findings_truncated = true;
        }
    }

    fn file_finding(&mut self, code: Code, line: u64, message: String) {
        let f = Finding {
            file: self.source.file.clone(),
            entry: self.source.entry.clone(),
            line,
            primary_id: None,
            code,
            field: None,
            message,
        };
        self.push(f);
    }
}

struct Sink<'w, 'o, 'v> {
    w: &'w mut Walker<'o>,
    visitor: &'v mut dyn Visitor,
}

impl ParseSink for Sink<'_, '_, '_> {
    fn problem(&mut self, p: Problem) -> Result<()> {
        self.w.file_finding(p.code, p.line, p.message);
        Ok(())
    }

    fn user(&mut self, u: ParsedUser) -> Result<()> {
        let w = &mut *self.w;
        w.report.users += 1;
        w.users_here += 1;
        w.opts.progress.set_records(w.report.users);
        let mut issues = std::mem::take(&mut w.issues);
        issues.clear();
        let node = &u.node;
        for line in &u.invalid_utf8 {
            issues.push(Issue {
                code: Code::InvalidEncoding,
                line: *line,
                field: "user".into(),
                message: "bytes that are not UTF-8; Alma reports \"Invalid byte 1 of 1-byte \
                          UTF-8 sequence\""
                    .into(),
            });
        }
        if u.too_large {
            issues.push(Issue {
                code: Code::UserTooLarge,
                line: node.line,
                field: "user".into(),
                message: format!(
                    "the user holds more than {} bytes; not checked further",
                    w.opts.max_user_bytes
                ),
            });
        }
        if let Some((line, message)) = &u.value_too_large {
            issues.push(Issue {
                code: Code::ValueTooLarge,
                line: *line,
                field: "user".into(),
                message: message.clone(),
            });
        } else {
            // A user read only in part would show made-up gaps (missing
            // fields) if its rules ran.
            rules::check_user(node, w.opts.codes.as_ref(), &mut issues);
        }
        let primary_id = node.child_text("primary_id").unwrap_or("");
        // A user Alma would reject claims nothing: its identifiers stay
        // free for later users, as in `convert` (the "chain" case).
        if issues.iter().all(|i| i.code.repairable()) {
            let mut values = rules::id_values(node);
            values.retain(|(_, n)| !n.text.trim().is_empty());
            // A value the user repeats is claimed once (repack drops the
            // repetition, as convert does).
            let mut keys: Vec<String> = Vec::new();
            values.retain(|(_, n)| {
                let k = crate::map::fold(&n.text);
                let fresh = !keys.contains(&k);
                keys.push(k);
                fresh
            });
            let owner = Owner {
                file: w.labels.len() as u32 - 1,
                line: node.line,
            };
            let claim = w.ids.claim_values(
                values
                    .iter()
                    .map(|(t, n)| (*t, n.text.as_str(), *t == "primary_id")),
                owner,
            );
            if let Err(c) = claim {
                let holder = &w.labels[c.owner.file as usize];
                let at = if c.owner.file == owner.file {
                    format!("line {}", c.owner.line)
                } else {
                    format!("line {} of {holder}", c.owner.line)
                };
                let line = values
                    .iter()
                    .find(|(t, n)| *t == c.id_type && n.text.trim() == c.value)
                    .map_or(node.line, |(_, n)| n.line);
                issues.push(Issue {
                    code: Code::DuplicateId,
                    line,
                    field: if c.id_type == "primary_id" {
                        "primary_id".into()
                    } else {
                        "user_identifiers/user_identifier/value".into()
                    },
                    message: format!(
                        "identifier of type {} and value {} is already taken by the user at \
                         {at} (as its {}); the first instance wins",
                        c.id_type, c.value, c.owner_id_type
                    ),
                });
            }
        }
        if !issues.is_empty() {
            w.report.users_with_findings += 1;
            w.opts.progress.set_rejects(w.report.users_with_findings);
        }
        for i in &issues {
            let f = Finding {
                file: w.source.file.clone(),
                entry: w.source.entry.clone(),
                line: i.line,
                primary_id: Some(primary_id.to_string()),
                code: i.code,
                field: Some(i.field.clone()),
                message: i.message.clone(),
            };
            w.push(f);
        }
        let r = self.visitor.user(Visit {
            source: &w.source,
            user: node,
            primary_id,
            issues: &issues,
        });
        w.issues = issues;
        r
    }
}

fn is_zip(path: &Path) -> Result<bool> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < 4 {
        let k = f.read(&mut magic[n..]).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n == 4 && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06"))
}

/// Walks all inputs, calling `visitor` for every user.
pub(crate) fn walk(
    inputs: &[PathBuf],
    opts: &CheckOptions,
    visitor: &mut dyn Visitor,
) -> Result<CheckReport> {
    if inputs.is_empty() {
        return Err(Error::Usage("no input files given".into()));
    }
    let mut w = Walker {
        opts,
        ids: IdSet::new(opts.identifier_case),
        labels: Vec::new(),
        report: CheckReport {
            files: Vec::new(),
            users: 0,
            users_with_findings: 0,
            findings_total: 0,
            findings_by_code: BTreeMap::new(),
            findings: Vec::new(),
            findings_truncated: false,
        },
        source: Source {
            file_index: 0,
            file: String::new(),
            entry: None,
        },
        issues: Vec::new(),
        users_here: 0,
    };
    let limits = ParseLimits {
        max_user_bytes: opts.max_user_bytes,
        user_names: parse::V2_USER,
    };
    let mut zip_total = 0u64;
    let sizes = crate::run::progress::InputBytes::of(inputs);
    opts.progress
        .begin_pass(crate::run::progress::Stage::Reading, sizes.total());
    for (idx, path) in inputs.iter().enumerate() {
        let shown = path.display().to_string();
        w.source = Source {
            file_index: idx,
            file: shown.clone(),
            entry: None,
        };
        w.users_here = 0;
        let mut entries_read = Vec::new();
        if is_zip(path)? {
            let size = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            zip_total += size;
            walk_zip(&mut w, path, limits, visitor, &mut entries_read)?;
            let xml = entries_read.len() as u64;
            w.source.entry = None;
            if xml > u64::from(opts.limits.files_per_zip) {
                w.file_finding(
                    Code::FilesPerZip,
                    0,
                    format!(
                        "{xml} XML files in one zip; Alma takes at most {}",
                        opts.limits.files_per_zip
                    ),
                );
            }
            if size > opts.limits.max_zip_bytes {
                w.file_finding(
                    Code::ZipTooLarge,
                    0,
                    format!(
                        "the zip is {size} bytes, over the {} byte limit",
                        opts.limits.max_zip_bytes
                    ),
                );
            }
            if zip_total > opts.limits.max_total_bytes
                && zip_total - size <= opts.limits.max_total_bytes
            {
                w.file_finding(
                    Code::DirectoryBudget,
                    0,
                    format!(
                        "the zips up to this one total {zip_total} bytes, over the {} byte \
                         directory budget",
                        opts.limits.max_total_bytes
                    ),
                );
            }
        } else {
            w.labels.push(shown.clone());
            visitor.source(&w.source)?;
            let f = File::open(path).map_err(|e| Error::io(path, e))?;
            let rdr = BufReader::with_capacity(1 << 16, f);
            run_parse(&mut w, rdr, limits, visitor, path)?;
        }
        w.report.files.push(FileReport {
            path: shown,
            entries: entries_read,
            users: w.users_here,
        });
        opts.progress.set_bytes(sizes.at(idx, 1, 1));
    }
    Ok(w.report)
}

fn run_parse<R: Read>(
    w: &mut Walker,
    rdr: R,
    limits: ParseLimits,
    visitor: &mut dyn Visitor,
    path: &Path,
) -> Result<()> {
    let mut sink = Sink { w, visitor };
    match parse::parse(rdr, limits, &mut sink) {
        Ok(()) => Ok(()),
        Err(ParseError::Sink(e)) => Err(e),
        Err(ParseError::Io(e)) => input_failed(sink.w, e, path),
    }
}

/// A read of an input failed: a finding about the input where the error
/// says the input is at fault, else a failure of the run.
fn input_failed(w: &mut Walker, e: std::io::Error, path: &Path) -> Result<()> {
    // Nesting past the limits stops the read like a parse error does.
    if let Some(t) = bound::too_deep(&e) {
        w.file_finding(Code::NotWellFormed, t.line, t.message.clone());
        return Ok(());
    }
    match zipin::tripped(&e) {
        Some(msg) => {
            w.file_finding(Code::ZipBomb, 0, msg);
            Ok(())
        }
        None => match e.kind() {
            // The zip crate reports corrupt data (bad CRC, bad
            // deflate stream) as InvalidData: a finding about the
            // input, not a failure of the run.
            // The zip crate stops an entry inflating past its declared
            // size itself, before our guard; that is the bomb case.
            std::io::ErrorKind::InvalidData
                if e.to_string().contains("larger than its declared") =>
            {
                w.file_finding(
                    Code::ZipBomb,
                    0,
                    format!("the entry inflates past its declared size: {e}"),
                );
                Ok(())
            }
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                w.file_finding(Code::ZipUnreadable, 0, format!("entry unreadable: {e}"));
                Ok(())
            }
            _ => Err(Error::io(path, e)),
        },
    }
}

fn walk_zip(
    w: &mut Walker,
    path: &Path,
    limits: ParseLimits,
    visitor: &mut dyn Visitor,
    entries_read: &mut Vec<String>,
) -> Result<()> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut ar = match zip::ZipArchive::new(BufReader::new(f)) {
        Ok(ar) => ar,
        Err(e) => {
            w.file_finding(Code::ZipUnreadable, 0, format!("not a readable zip: {e}"));
            return Ok(());
        }
    };
    let entries = match zipin::plan(&mut ar, w.opts.zip) {
        zipin::Plan::Refused(why) => {
            for (code, msg) in why {
                w.file_finding(code, 0, msg);
            }
            return Ok(());
        }
        zipin::Plan::Entries(e) => e,
    };
    if !entries.iter().any(|e| e.is_xml) {
        w.file_finding(
            Code::NotXmlEntry,
            0,
            "the zip holds no XML file; Alma reports \"Could not parse file\"".into(),
        );
    }
    for e in entries {
        w.source.entry = Some(e.name.clone());
        let named_zip = e.name.to_ascii_lowercase().ends_with(".zip");
        // The first bytes tell a zip whatever the entry is called.
        let opened = ar.by_index(e.index);
        let mut head = [0u8; 4];
        let (file, peeked) = match opened {
            Ok(f) => {
                let mut g = zipin::Guard::new(f, e.size);
                let n = read_head(&mut g, &mut head);
                (Some(g), n)
            }
            Err(err) => {
                if e.is_xml {
                    w.file_finding(Code::ZipUnreadable, 0, format!("entry unreadable: {err}"));
                    continue;
                }
                (None, Ok(0))
            }
        };
        let magic = matches!(&peeked, Ok(4) if zipin::is_zip_magic(&head));
        if named_zip || magic {
            w.file_finding(
                Code::NestedZip,
                0,
                "a zip inside the zip: its users cannot be read (Alma does not open nested \
                 zips); unpack it and give its XML files instead"
                    .into(),
            );
            continue;
        }
        if !e.is_xml {
            w.file_finding(
                Code::NotXmlEntry,
                0,
                "not an XML file; Alma tries to parse every file in the zip".into(),
            );
            continue;
        }
        let (Some(g), n) = (file, peeked) else {
            continue;
        };
        entries_read.push(e.name.clone());
        w.labels.push(w.source.label());
        visitor.source(&w.source)?;
        match n {
            Ok(n) => {
                let rdr = std::io::Read::chain(&head[..n], g);
                run_parse(w, rdr, limits, visitor, path)?;
            }
            Err(err) => input_failed(w, err, path)?,
        }
    }
    Ok(())
}

/// Reads up to `head.len()` bytes (fewer only at the end).
fn read_head<R: Read>(r: &mut R, head: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
