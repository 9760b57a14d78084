//! Alma's user exports, one user at a time: v2 (`<users><user>`, the
//! user API object), v1 (`<userRecords><userRecord>`, told apart by the
//! element name), XML files or zips of them, or a CSV with a header
//! (an Analytics report: one row per user, or per user and identifier).
//!
//! The XML goes through `check`'s reader: the same zip vetting (zip-slip
//! names, symbolic links, decompression bombs refuse the whole zip), the
//! same bounded lexer and per-user byte limit. An export is Alma's own
//! output, so schema findings are not ours to report; what makes a file
//! unreadable (XML that does not parse, a refused zip, a user over the
//! limit) stops the command with an error naming the file and line, since
//! skipping part of Alma's users would let a collision through silently.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::check::parse::{self, ParseError, ParseLimits, ParseSink, ParsedUser, Problem};
use crate::check::zipin::{self, ZipLimits};
use crate::check::{Code, Node};
use crate::error::{Error, Result};

/// One Alma user as the export has it (only what the pre-check and the
/// SIS export use; names, emails and addresses are never read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlmaUser {
    /// The primary id (v1: `userName`).
    pub primary_id: String,
    /// `INTERNAL` or `EXTERNAL` (empty when the export has none).
    pub account_type: String,
    /// The user group code.
    pub user_group: String,
    /// The user's status (`ACTIVE`, ...).
    pub status: String,
    /// The expiry date as exported.
    pub expiry_date: String,
    /// Additional identifiers, `(type, value)`, in export order.
    pub identifiers: Vec<(String, String)>,
    /// The active balance as exported (`fees`), if any.
    pub fees: Option<String>,
    /// The user's blocks, in export order.
    pub blocks: Vec<Block>,
    /// Line of the user in its file (CSV: its first row).
    pub line: u64,
}

/// One user block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    /// `block_type` (e.g. `GENERAL`).
    pub block_type: String,
    /// `block_description` code (e.g. `OVERDUE`).
    pub description: String,
    /// `block_status` (`ACTIVE`/`INACTIVE`; empty means active).
    pub status: String,
    /// `created_date` as exported.
    pub created_date: String,
    /// `expiry_date` as exported.
    pub expiry_date: String,
}

impl Block {
    /// Whether the block is in force (Alma's default status is active).
    pub fn active(&self) -> bool {
        let s = self.status.trim();
        s.is_empty() || s.eq_ignore_ascii_case("active")
    }
}

/// Limits on reading Alma's exports.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Zip vetting limits (as `check`).
    pub zip: ZipLimits,
    /// Bytes one user may hold (as `check`): by default 1 MiB.
    pub max_user_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            zip: ZipLimits::default(),
            max_user_bytes: 1 << 20,
        }
    }
}

/// What was read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Users read in the v2 shape.
    pub v2_users: u64,
    /// Users read in the v1 shape.
    pub v1_users: u64,
    /// Users read from CSV.
    pub csv_users: u64,
    /// Zip entries skipped because they are not XML (named).
    pub skipped_entries: Vec<String>,
}

impl ReadStats {
    /// All users read.
    pub fn users(&self) -> u64 {
        self.v2_users + self.v1_users + self.csv_users
    }
}

/// Reads every user of `inputs` in order, calling `f` with the file (or
/// `file!/entry`) label and the user.
pub fn read_users(
    inputs: &[PathBuf],
    opts: &ReadOptions,
    f: &mut dyn FnMut(&str, AlmaUser) -> Result<()>,
) -> Result<ReadStats> {
    let mut stats = ReadStats::default();
    for path in inputs {
        let head = head_of(path)?;
        if zipin::is_zip_magic(&head_4(&head)) {
            read_zip(path, opts, &mut stats, f)?;
        } else if head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
            || head.starts_with(b"\xef\xbb\xbf<")
            || head.starts_with(&[0xff, 0xfe])
            || head.starts_with(&[0xfe, 0xff])
        {
            let label = path.display().to_string();
            let rdr = BufReader::with_capacity(1 << 16, open(path)?);
            read_xml(rdr, &label, path, opts, &mut stats, f)?;
        } else {
            read_csv(path, &mut stats, f)?;
        }
    }
    Ok(stats)
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(path, e))
}

fn head_of(path: &Path) -> Result<Vec<u8>> {
    let mut f = open(path)?;
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    head.truncate(n);
    Ok(head)
}

fn head_4(head: &[u8]) -> [u8; 4] {
    let mut h = [0u8; 4];
    let n = head.len().min(4);
    h[..n].copy_from_slice(&head[..n]);
    h
}

fn input_err(path: &Path, line: Option<u64>, message: String) -> Error {
    Error::Input {
        path: path.to_path_buf(),
        line,
        message,
    }
}

fn read_zip(
    path: &Path,
    opts: &ReadOptions,
    stats: &mut ReadStats,
    f: &mut dyn FnMut(&str, AlmaUser) -> Result<()>,
) -> Result<()> {
    let mut ar = zip::ZipArchive::new(BufReader::new(open(path)?))
        .map_err(|e| input_err(path, None, format!("not a readable zip: {e}")))?;
    let entries = match zipin::plan(&mut ar, opts.zip) {
        zipin::Plan::Refused(why) => {
            let msgs: Vec<String> = why
                .into_iter()
                .map(|(code, m)| format!("{}: {m}", code.as_str()))
                .collect();
            return Err(input_err(path, None, msgs.join("; ")));
        }
        zipin::Plan::Entries(e) => e,
    };
    for e in entries {
        let label = format!("{}!/{}", path.display(), e.name);
        if e.name.to_ascii_lowercase().ends_with(".zip") {
            return Err(input_err(
                path,
                None,
                format!(
                    "{}: a zip inside the zip ({}); unpack it and give its files instead",
                    Code::NestedZip.as_str(),
                    e.name
                ),
            ));
        }
        if !e.is_xml {
            stats.skipped_entries.push(label);
            continue;
        }
        let entry = ar
            .by_index(e.index)
            .map_err(|err| input_err(path, None, format!("entry {}: {err}", e.name)))?;
        let g = zipin::Guard::new(entry, e.size);
        read_xml(g, &label, path, opts, stats, f)?;
    }
    Ok(())
}

struct Sink<'s> {
    label: &'s str,
    path: &'s Path,
    stats: &'s mut ReadStats,
    f: &'s mut dyn FnMut(&str, AlmaUser) -> Result<()>,
    max_user_bytes: usize,
}

impl ParseSink for Sink<'_> {
    fn problem(&mut self, p: Problem) -> Result<()> {
        // Alma's own export: schema findings are not ours to make, but
        // XML that does not parse is unreadable.
        if p.code == Code::NotWellFormed {
            return Err(input_err(
                self.path,
                Some(p.line),
                format!("{}: {}", self.label, p.message),
            ));
        }
        Ok(())
    }

    fn user(&mut self, u: ParsedUser) -> Result<()> {
        if u.too_large || u.value_too_large.is_some() {
            return Err(input_err(
                self.path,
                Some(u.node.line),
                format!(
                    "{}: a user larger than {} bytes (or with a value over that size); \
                     refusing to skip it",
                    self.label, self.max_user_bytes
                ),
            ));
        }
        let user = if u.node.name == "userRecord" {
            self.stats.v1_users += 1;
            from_v1(&u.node)
        } else {
            self.stats.v2_users += 1;
            from_v2(&u.node)
        };
        (self.f)(self.label, user)
    }
}

fn read_xml<R: Read>(
    rdr: R,
    label: &str,
    path: &Path,
    opts: &ReadOptions,
    stats: &mut ReadStats,
    f: &mut dyn FnMut(&str, AlmaUser) -> Result<()>,
) -> Result<()> {
    let limits = ParseLimits {
        max_user_bytes: opts.max_user_bytes,
        user_names: &["user", "userRecord"],
    };
    let mut sink = Sink {
        label,
        path,
        stats,
        f,
        max_user_bytes: opts.max_user_bytes,
    };
    match parse::parse(rdr, limits, &mut sink) {
        Ok(()) => Ok(()),
        Err(ParseError::Sink(e)) => Err(e),
        Err(ParseError::Io(e)) => {
            if let Some(t) = crate::check::bound::too_deep(&e) {
                return Err(input_err(path, Some(t.line), t.message.clone()));
            }
            if let Some(m) = zipin::tripped(&e) {
                return Err(input_err(
                    path,
                    None,
                    format!("{label}: {}: {m}", Code::ZipBomb.as_str()),
                ));
            }
            match e.kind() {
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof => {
                    Err(input_err(path, None, format!("{label}: unreadable: {e}")))
                }
                _ => Err(Error::io(path, e)),
            }
        }
    }
}

/// The trimmed text at `path` (child names) below `n`.
fn text_at<'n>(n: &'n Node, path: &[&str]) -> Option<&'n str> {
    let mut cur = n;
    for p in path {
        cur = cur.child(p)?;
    }
    Some(cur.text.trim())
}

/// The first of several paths that has text.
fn first_text(n: &Node, paths: &[&[&str]]) -> String {
    paths
        .iter()
        .filter_map(|p| text_at(n, p))
        .find(|t| !t.is_empty())
        .unwrap_or("")
        .to_string()
}

fn children<'n>(n: &'n Node, path: &[&'static str]) -> impl Iterator<Item = &'n Node> {
    let (last, parents) = path.split_last().map_or(("", &[][..]), |(l, p)| (*l, p));
    let mut cur = Some(n);
    for p in parents {
        cur = cur.and_then(|c| c.child(p));
    }
    cur.into_iter()
        .flat_map(move |c| c.children.iter().filter(move |k| k.name == last))
}

/// A v2 `<user>` (the user API object, as "Export Users" writes it).
fn from_v2(n: &Node) -> AlmaUser {
    AlmaUser {
        primary_id: first_text(n, &[&["primary_id"]]),
        account_type: first_text(n, &[&["account_type"]]),
        user_group: first_text(n, &[&["user_group"]]),
        status: first_text(n, &[&["status"]]),
        expiry_date: first_text(n, &[&["expiry_date"]]),
        identifiers: children(n, &["user_identifiers", "user_identifier"])
            .map(|i| (first_text(i, &[&["id_type"]]), first_text(i, &[&["value"]])))
            .filter(|(_, v)| !v.is_empty())
            .collect(),
        fees: text_at(n, &["fees"]).map(str::to_string),
        blocks: children(n, &["user_blocks", "user_block"])
            .map(|b| Block {
                block_type: first_text(b, &[&["block_type"]]),
                description: first_text(b, &[&["block_description"]]),
                status: first_text(b, &[&["block_status"]]),
                created_date: first_text(b, &[&["created_date"]]),
                expiry_date: first_text(b, &[&["expiry_date"]]),
            })
            .collect(),
        line: n.line,
    }
}

/// A v1 `<userRecord>` (`userDetails`, `userIdentifiers`, camelCase).
fn from_v1(n: &Node) -> AlmaUser {
    let at = |name: &'static str| -> Vec<&'static str> { vec!["userDetails", name] };
    let paths = |names: &[&'static str]| -> String {
        let mut v: Vec<Vec<&str>> = Vec::new();
        for name in names {
            v.push(at(name));
            v.push(vec![name]);
        }
        let refs: Vec<&[&str]> = v.iter().map(|p| p.as_slice()).collect();
        first_text(n, &refs)
    };
    AlmaUser {
        primary_id: paths(&["userName", "primaryId", "userId"]),
        account_type: paths(&["accountType", "userAccountType"]),
        user_group: paths(&["userGroup"]),
        status: paths(&["status"]),
        expiry_date: paths(&["expiryDate"]),
        identifiers: children(n, &["userIdentifiers", "userIdentifier"])
            .map(|i| {
                (
                    first_text(i, &[&["type"], &["idType"]]),
                    first_text(i, &[&["value"]]),
                )
            })
            .filter(|(_, v)| !v.is_empty())
            .collect(),
        fees: Some(paths(&["activeBalance", "balance", "fees"])).filter(|f| !f.is_empty()),
        blocks: children(n, &["userBlockList", "userBlock"])
            .map(|b| Block {
                block_type: first_text(b, &[&["type"], &["blockType"]]),
                description: first_text(b, &[&["description"], &["code"], &["blockDescription"]]),
                status: first_text(b, &[&["status"], &["blockStatus"]]),
                created_date: first_text(b, &[&["creationDate"], &["createdDate"]]),
                expiry_date: first_text(b, &[&["expiryDate"]]),
            })
            .collect(),
        line: n.line,
    }
}

/// The delimiter of a delimited text: of tab, comma, semicolon and
/// pipe, the one `sample` holds most of (comma when none or tied).
pub(crate) fn sniff_delimiter(sample: &[u8]) -> u8 {
    let mut best = (0, b',');
    for d in [b',', b'\t', b';', b'|'] {
        let n = sample.iter().filter(|&&b| b == d).count();
        if n > best.0 {
            best = (n, d);
        }
    }
    best.1
}

/// Header names compared without case, spaces or punctuation.
pub(crate) fn norm_header(h: &str) -> String {
    h.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The first column whose normalized name is one of `names`.
pub(crate) fn find_col(headers: &[String], names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| headers.iter().position(|h| h == n))
}

/// A CSV export: columns found by header name; consecutive rows of the
/// same primary id are one user (one row per identifier).
fn read_csv(
    path: &Path,
    stats: &mut ReadStats,
    f: &mut dyn FnMut(&str, AlmaUser) -> Result<()>,
) -> Result<()> {
    let head = head_of(path)?;
    let delim = sniff_delimiter(head.split(|&b| b == b'\n').next().unwrap_or(&[]));
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .from_reader(BufReader::new(open(path)?));
    let headers: Vec<String> = rdr
        .byte_headers()
        .map_err(|e| input_err(path, Some(1), format!("unreadable header: {e}")))?
        .iter()
        .map(|h| norm_header(&String::from_utf8_lossy(h)))
        .collect();
    let col = |names: &[&str]| find_col(&headers, names);
    let Some(pid) = col(&[
        "primaryid",
        "primaryidentifier",
        "userprimaryidentifier",
        "userprimaryid",
        "userid",
    ]) else {
        return Err(input_err(
            path,
            Some(1),
            "no primary id column (looked for `Primary Identifier`, `primary_id`, `User Id`)"
                .into(),
        ));
    };
    let account = col(&["accounttype", "useraccounttype"]);
    let group = col(&["usergroup", "usergroupcode", "group"]);
    let id_type = col(&["identifiertype", "idtype", "useridentifiertype"]);
    let id_value = col(&[
        "identifiervalue",
        "useridentifiervalue",
        "identifier",
        "value",
    ]);
    let status = col(&["status", "userstatus"]);
    let expiry = col(&["expirydate", "userexpirydate"]);
    let fees = col(&["fees", "activebalance", "balance"]);
    let label = path.display().to_string();
    let mut cur: Option<AlmaUser> = None;
    let mut rec = csv::ByteRecord::new();
    loop {
        let more = rdr
            .read_byte_record(&mut rec)
            .map_err(|e| input_err(path, e.position().map(|p| p.line()), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let get = |c: Option<usize>| -> String {
            c.and_then(|c| rec.get(c))
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
                .unwrap_or_default()
        };
        let p = if more { get(Some(pid)) } else { String::new() };
        let same = cur
            .as_ref()
            .is_some_and(|u| more && crate::map::fold(&u.primary_id) == crate::map::fold(&p));
        if !same {
            if let Some(u) = cur.take() {
                stats.csv_users += 1;
                f(&label, u)?;
            }
            if !more {
                return Ok(());
            }
            if p.is_empty() {
                continue;
            }
            cur = Some(AlmaUser {
                primary_id: p,
                account_type: get(account),
                user_group: get(group),
                status: get(status),
                expiry_date: get(expiry),
                fees: Some(get(fees)).filter(|f| !f.is_empty()),
                line,
                ..AlmaUser::default()
            });
        }
        let (t, v) = (get(id_type), get(id_value));
        if let Some(u) = cur.as_mut() {
            if !v.is_empty() {
                let t = if t.is_empty() { "IDENTIFIER".into() } else { t };
                if !u.identifiers.iter().any(|(a, b)| *a == t && *b == v) {
                    u.identifiers.push((t, v));
                }
            }
        }
    }
}

/// Builds the pre-check's index from Alma's user exports.
pub fn load_index(
    inputs: &[PathBuf],
    opts: &ReadOptions,
) -> Result<(crate::alma_ids::AlmaIndex, ReadStats)> {
    let mut ix = crate::alma_ids::AlmaIndex::new();
    let stats = read_users(inputs, opts, &mut |_, u| {
        let internal = u.account_type.trim().eq_ignore_ascii_case("INTERNAL");
        ix.add_user(
            &u.primary_id,
            internal,
            u.identifiers.iter().map(|(t, v)| (t.as_str(), v.as_str())),
        )
    })?;
    ix.finish();
    Ok((ix, stats))
}
