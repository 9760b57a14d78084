//! `patronload init`: a first profile from an extract nobody has described
//! yet.
//!
//! [`propose`] sniffs the encoding, the layout (delimiter and quoting, or
//! fixed-width columns) and the header (`sniff`), maps the columns it
//! recognises by the names the usual systems give them (`names`, with a
//! [`Preset`] tried first) and by their content (emails, phones, dates and
//! their formats, a column of unique ids), and writes a commented profile
//! with `TODO`s for what it could not decide: a user group table with the
//! distinct codes found and their counts, and placeholder rules that keep
//! the profile loadable, so the extract converts at once and the librarian
//! fixes the rest by reading the report.
//!
//! **Never** puts a value of the extract in the profile or the notes
//! except the codes of the user group column (codes, not personal data):
//! columns are described by their name, shape and counts.

mod names;
mod sniff;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::profile::Profile;

pub use names::Preset;
use names::Role;
use sniff::{ColumnStats, Layout};

/// The most bytes of an extract [`propose`] reads; statistics and codes
/// are then those of its first part, and the notes say so.
pub const SAMPLE_BYTES: usize = 64 << 20;

/// The most records [`propose`] looks at.
const SAMPLE_ROWS: usize = 200_000;

/// What `init` made of an extract.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The profile, TOML with comments.
    pub profile: String,
    /// What could not be decided, or was guessed: one sentence each, no
    /// value of the extract in them.
    pub notes: Vec<String>,
    /// Records looked at.
    pub records: usize,
}

/// One column as `init` sees it.
struct Column {
    name: String,
    stats: ColumnStats,
    role: Option<Role>,
}

/// Reads the extract at `path` and proposes a profile for it.
pub fn propose(path: &Path, preset: Option<Preset>) -> Result<Proposal> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    f.take(SAMPLE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    let cut = bytes.len() > SAMPLE_BYTES;
    if cut {
        bytes.truncate(SAMPLE_BYTES);
        // Whole lines only.
        if let Some(nl) = bytes.iter().rposition(|b| *b == b'\n') {
            bytes.truncate(nl + 1);
        }
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut p = propose_bytes(&bytes, &stem, preset).map_err(|message| Error::Input {
        path: path.to_path_buf(),
        line: None,
        message,
    })?;
    if cut {
        p.notes.push(format!(
            "only the first {} MiB were read: codes and counts are those of its first {} records",
            SAMPLE_BYTES >> 20,
            p.records
        ));
    }
    Ok(p)
}

/// [`propose`] on the bytes of an extract; `stem` names the output prefix.
pub fn propose_bytes(
    bytes: &[u8],
    stem: &str,
    preset: Option<Preset>,
) -> std::result::Result<Proposal, String> {
    let mut notes = Vec::new();
    let enc = sniff::encoding(bytes);
    let text = sniff::decode(bytes, &enc);
    let lines = sniff::lines(&text);
    if lines.is_empty() {
        return Err("the extract holds no line of text".into());
    }
    let layout = sniff::layout(&lines);
    let (rows, header) = match &layout {
        Layout::Delimited { delimiter, quote } => {
            let rows = sniff::rows(&text, *delimiter, *quote, SAMPLE_ROWS + 1);
            let header = sniff::has_header(&rows, names::known);
            (rows, header)
        }
        Layout::Fixed { columns, .. } => {
            notes.push(format!(
                "no delimiter: read as fixed width, {} columns cut where every line is blank; \
                 check the positions against the layout's documentation and name the columns",
                columns.len()
            ));
            (sniff::fixed_rows(&lines, columns, SAMPLE_ROWS), false)
        }
    };
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    if ncols == 0 {
        return Err("no columns found".into());
    }
    let header_names: Vec<String> = if header {
        rows[0].iter().map(|s| s.trim().to_string()).collect()
    } else {
        Vec::new()
    };
    let data = if header { &rows[1..] } else { &rows[..] };
    if data.is_empty() {
        return Err("the extract holds a header and no record".into());
    }
    let ragged = data.iter().any(|r| r.len() != ncols);
    let stats = sniff::column_stats(data, ncols);
    let (names, renamed) = column_names(&header_names, ncols);
    let mut cols: Vec<Column> = names
        .into_iter()
        .zip(stats)
        .map(|(name, stats)| Column {
            role: if header {
                names::role_of(&name, preset)
            } else {
                None
            },
            name,
            stats,
        })
        .collect();
    assign_by_content(&mut cols, &mut notes);
    // A role a name gave twice: the first column keeps it (emails and
    // phones may repeat).
    let mut taken = std::collections::HashSet::new();
    for c in cols.iter_mut() {
        if let Some(r) = c.role {
            if !matches!(r, Role::Email | Role::Phone) && !taken.insert(r) {
                notes.push(format!(
                    "column `{}` looks like a second {:?} column: not mapped (TODO)",
                    c.name, r
                ));
                c.role = None;
            }
        }
    }
    let multiline: Vec<String> = match &layout {
        Layout::Delimited { .. } => cols
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                data.iter().any(|r| {
                    r.get(*i)
                        .is_some_and(|v| v.contains('\n') || v.contains('\r'))
                })
            })
            .map(|(_, c)| c.name.clone())
            .collect(),
        Layout::Fixed { .. } => Vec::new(),
    };
    let mut w = Writer {
        out: String::new(),
        notes,
        group_table: None,
    };
    w.header(stem, &enc, preset, data.len());
    w.input(&layout, header, &cols, renamed, ragged, &multiline);
    w.encoding(&enc);
    w.output(stem);
    w.fields(&cols, data.len());
    let Writer { out, notes, .. } = w;
    // What init writes must load and compile against the columns it saw.
    let profile = Profile::parse(&out)
        .map_err(|e| format!("init wrote a profile that does not load: {e}"))?;
    let columns: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    crate::map::Mapper::new(&profile, &columns, as_of)
        .map_err(|e| format!("init wrote a profile that does not compile: {e}"))?;
    Ok(Proposal {
        profile: out,
        notes,
        records: data.len(),
    })
}

/// Column names: the header's (a repeated or empty one renamed), or
/// `COL1`, `COL2`, ... Returns whether any was renamed or made up (the
/// profile must then list them in `columns`).
fn column_names(header: &[String], n: usize) -> (Vec<String>, bool) {
    let mut out = Vec::with_capacity(n);
    let mut renamed = header.is_empty();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..n {
        let base = header
            .get(i)
            .filter(|h| !h.is_empty())
            .cloned()
            .unwrap_or_else(|| {
                renamed = true;
                format!("COL{}", i + 1)
            });
        let k = seen.entry(base.to_ascii_lowercase()).or_default();
        *k += 1;
        if *k > 1 {
            renamed = true;
            out.push(format!("{base}{k}"));
        } else {
            out.push(base);
        }
    }
    (out, renamed)
}

/// Roles from content for columns no name decided: emails, phones, a
/// column of unique ids when no primary id was named, and expiry dates
/// only by name (a date column is listed, not guessed).
fn assign_by_content(cols: &mut [Column], notes: &mut Vec<String>) {
    for c in cols.iter_mut() {
        if c.role.is_some() {
            continue;
        }
        if c.stats.mostly("email") {
            c.role = Some(Role::Email);
        } else if c.stats.mostly("phone") {
            c.role = Some(Role::Phone);
        }
    }
    if !cols.iter().any(|c| c.role == Some(Role::PrimaryId)) {
        // Short values without spaces, all distinct: numbers first.
        let id_like = |c: &Column| {
            c.role.is_none()
                && c.stats.unique
                && c.stats.max_len <= 40
                && !c.stats.mostly("date")
                && !c.stats.mostly("email")
        };
        let pick = cols
            .iter()
            .position(|c| id_like(c) && c.stats.mostly("number") && c.stats.max_len >= 4)
            .or_else(|| cols.iter().position(id_like));
        match pick {
            Some(i) => {
                cols[i].role = Some(Role::PrimaryId);
                notes.push(format!(
                    "primary_id: no column has a known id name; `{}` (every value distinct) was \
                     taken: check it",
                    cols[i].name
                ));
            }
            None => notes.push(
                "primary_id: no column has a known id name or only distinct values: set it \
                 (TODO in the profile)"
                    .into(),
            ),
        }
    }
}

/// A TOML string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML key: bare when it can be.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        s.to_string()
    } else {
        q(s)
    }
}

struct Writer {
    out: String,
    notes: Vec<String>,
    /// The group column, its codes (`None`: too many) and filled rows,
    /// for the table written last.
    group_table: Option<GroupTable>,
}

/// The group column's name, its codes and counts (`None`: too many to
/// list) and its filled rows.
type GroupTable = (String, Option<BTreeMap<String, usize>>, usize);

impl Writer {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn header(
        &mut self,
        stem: &str,
        enc: &sniff::Encoding,
        preset: Option<Preset>,
        records: usize,
    ) {
        self.line(&format!(
            "# Profile proposed by `patronload init` for {stem} ({records} records looked at{}).",
            preset.map_or(String::new(), |p| format!(", preset {}", p.name()))
        ));
        self.line("# Every key is documented in docs/profile.md. Search for TODO: those are");
        self.line("# guesses or placeholders that keep the profile loadable; convert once,");
        self.line("# open report.html beside the package, and fix them.");
        self.line(&format!("# Encoding: {}.", enc.why));
        self.line("");
    }

    /// The last key of `[input]` (the blank line after it is written by
    /// [`Writer::input`], so this goes before it).
    fn encoding(&mut self, enc: &sniff::Encoding) {
        let line = format!("encoding = {}\n", q(enc.label));
        let at = self.out.rfind("\n\n").map_or(self.out.len(), |i| i + 1);
        self.out.insert_str(at, &line);
        if enc.label == "windows-1252" {
            self.notes.push(
                "not valid UTF-8: read as Windows-1252 (\"ANSI\"); if accented letters come out \
                 wrong, ask for a UTF-8 export"
                    .into(),
            );
        }
    }

    fn input(
        &mut self,
        layout: &Layout,
        header: bool,
        cols: &[Column],
        renamed: bool,
        ragged: bool,
        multiline: &[String],
    ) {
        self.line("[input]");
        match layout {
            Layout::Delimited { delimiter, quote } => {
                self.line("format = \"delimited\"");
                let d = match delimiter {
                    b'\t' => "tab".to_string(),
                    d => (*d as char).to_string(),
                };
                self.line(&format!("delimiter = {}", q(&d)));
                match quote {
                    Some(qc) => self.line(&format!("quote = '{}'", *qc as char)),
                    None => {
                        self.line("# A quote appears inside unquoted values: no quoting.");
                        self.line("quote = \"none\"");
                    }
                }
                self.line(&format!("header = {header}"));
                if !header {
                    self.notes.push(
                        "no header row: columns are named COL1, COL2, ... (rename them in \
                         `columns`, and in the fields below)"
                            .into(),
                    );
                }
                if renamed {
                    if header {
                        self.line("# The header repeats or leaves out names: these replace it.");
                    } else {
                        self.line("# No header row: TODO name the columns (and the fields below).");
                    }
                    let names: Vec<String> = cols.iter().map(|c| q(&c.name)).collect();
                    self.line(&format!("columns = [{}]", names.join(", ")));
                }
                if ragged {
                    // Padding would load a broken row as a patron: the
                    // librarian decides (`ragged_rows = "pad"`).
                    self.line(
                        "# TODO: some records have fewer or more fields than the columns; they are",
                    );
                    self.line("# rejected (field_count) unless `ragged_rows = \"pad\"` (docs/profile.md 3.2).");
                    self.notes.push(
                        "some records have fewer or more fields than the columns: they will be \
                         rejected as field_count (or set `ragged_rows = \"pad\"`)"
                            .into(),
                    );
                }
                if !multiline.is_empty() {
                    self.line("# Quoted values with line breaks were found in these columns.");
                    let m: Vec<String> = multiline.iter().map(|n| q(n)).collect();
                    self.line(&format!("multiline = [{}]", m.join(", ")));
                }
            }
            Layout::Fixed { columns, ragged } => {
                self.line("format = \"fixed_width\"");
                if *ragged {
                    self.line("# Lines differ in length (trailing blanks cut).");
                    self.line("ragged = true");
                }
                self.line("# TODO: positions cut where every line is blank; name each field.");
                self.line("fields = [");
                for (c, (start, len)) in cols.iter().zip(columns) {
                    self.line(&format!(
                        "  {{ name = {}, start = {start}, length = {len} }},",
                        q(&c.name)
                    ));
                }
                self.line("]");
            }
        }
        self.line("");
    }

    fn output(&mut self, stem: &str) {
        let mut prefix: String = stem
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if prefix.is_empty() {
            prefix = "alma".into();
        }
        self.line("[output]");
        self.line(&format!("prefix = {}", q(&format!("{prefix}_users"))));
        self.line("");
    }

    fn fields(&mut self, cols: &[Column], records: usize) {
        let find = |r: Role| cols.iter().find(|c| c.role == Some(r));
        let all = |r: Role| cols.iter().filter(move |c| c.role == Some(r));
        let last = find(Role::LastName);
        let group = find(Role::UserGroup);
        let expiry = find(Role::ExpiryDate);
        let id = find(Role::PrimaryId);

        self.line("[rules]");
        if last.is_some() {
            self.line(
                "mandatory = [\"primary_id\", \"last_name\", \"user_group\", \"expiry_date\"]",
            );
        } else {
            self.line("# TODO: no last-name column was recognised; map last_name below and add it");
            self.line("# here (Alma needs it for a new user).");
            self.line("mandatory = [\"primary_id\", \"user_group\", \"expiry_date\"]");
            self.notes
                .push("last_name: no column has a known last-name name (TODO)".into());
        }
        self.line("match_id = \"primary_id\"");
        self.line("");

        self.line("[fields]");
        match id {
            Some(c) => self.line(&format!("primary_id = {{ column = {} }}", q(&c.name))),
            None => {
                self.line("# TODO: the column of the id Alma matches users on.");
                self.line("primary_id = { column = \"TODO\" }");
            }
        }
        for (role, field) in [
            (Role::FirstName, "first_name"),
            (Role::MiddleName, "middle_name"),
            (Role::LastName, "last_name"),
        ] {
            if let Some(c) = find(role) {
                self.line(&format!("{field} = {{ column = {} }}", q(&c.name)));
            }
        }
        match group {
            Some(c) => {
                let codes = c.stats.distinct.clone();
                let empty = c.stats.rows - c.stats.filled;
                let mut spec = format!(
                    "user_group = {{ column = {}, table = \"user_groups\"",
                    q(&c.name)
                );
                let top = codes
                    .as_ref()
                    .and_then(|m| {
                        m.iter()
                            .max_by_key(|(k, n)| (**n, std::cmp::Reverse((*k).clone())))
                    })
                    .map(|(k, _)| k.clone());
                if empty > 0 {
                    if let Some(t) = &top {
                        self.line(&format!(
                            "# TODO: {empty} records have no {}; they get the default below.",
                            c.name
                        ));
                        let _ = write!(spec, ", default = {}", q(t));
                        self.notes.push(format!(
                            "user_group: {empty} record(s) with an empty `{}` get the most \
                             common code as a default (TODO)",
                            c.name
                        ));
                    }
                }
                spec.push_str(" }");
                self.line(&spec);
                self.group_table = Some((c.name.clone(), codes, c.stats.filled));
            }
            None => {
                self.line(
                    "# TODO: no user-group column was recognised: every user gets this group.",
                );
                self.line("user_group = { value = \"PATRON\" }");
                let candidates: Vec<String> = cols
                    .iter()
                    .filter(|c| {
                        c.role.is_none()
                            && c.stats
                                .distinct
                                .as_ref()
                                .is_some_and(|d| (2..=30).contains(&d.len()))
                            && c.stats.max_len <= 30
                            && !c.stats.mostly("date")
                    })
                    .map(|c| format!("`{}`", c.name))
                    .collect();
                self.notes.push(format!(
                    "user_group: no column has a known group name; every user gets `PATRON` \
                     (TODO){}",
                    if candidates.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; columns with few distinct codes: {}",
                            candidates.join(", ")
                        )
                    }
                ));
            }
        }
        match expiry {
            Some(c) => {
                let f = self.formats(c);
                self.line(&format!(
                    "expiry_date = {{ column = {}{f}, default = \"+1y\" }}",
                    q(&c.name)
                ));
            }
            None => {
                self.line("# TODO: no expiry column was recognised: one year from --as-of.");
                self.line("expiry_date = { default = \"+1y\" }");
                self.notes.push(
                    "expiry_date: no column has a known expiry name; one year from --as-of (TODO)"
                        .into(),
                );
            }
        }
        if let Some(c) = find(Role::PurgeDate) {
            let f = self.formats(c);
            self.line(&format!("purge_date = {{ column = {}{f} }}", q(&c.name)));
        }
        if let Some(c) = find(Role::BirthDate) {
            let f = self.formats(c);
            self.line(&format!("birth_date = {{ column = {}{f} }}", q(&c.name)));
        }
        // Date columns nobody named: listed, not guessed.
        for c in cols
            .iter()
            .filter(|c| c.role.is_none() && c.stats.mostly("date"))
        {
            let f = c.stats.date_formats.join(", ");
            self.line(&format!(
                "# TODO: `{}` holds dates ({f}): an expiry, purge or birth date?",
                c.name
            ));
            self.notes.push(format!(
                "`{}` holds dates but its name says nothing: not mapped (TODO)",
                c.name
            ));
        }
        self.line("");

        if let (Some(l1), Some(city)) = (find(Role::Line1), find(Role::City)) {
            self.line("[[addresses]]");
            self.line("types = [\"home\"]");
            self.line("preferred = true");
            self.line(&format!("line1 = {{ column = {} }}", q(&l1.name)));
            if let Some(c) = find(Role::Line2) {
                self.line(&format!("line2 = {{ column = {} }}", q(&c.name)));
            }
            self.line(&format!("city = {{ column = {} }}", q(&city.name)));
            if let Some(c) = find(Role::State) {
                self.line(&format!("state_province = {{ column = {} }}", q(&c.name)));
            }
            if let Some(c) = find(Role::Postal) {
                self.line(&format!("postal_code = {{ column = {} }}", q(&c.name)));
            }
            self.line("# TODO: country (ISO 3166 alpha-3, usually through a table), if the extract has it.");
            self.line("");
        }
        for (i, c) in all(Role::Email).enumerate() {
            self.line("[[emails]]");
            self.line(&format!(
                "types = [\"{}\"]",
                if i == 0 { "personal" } else { "alternative" }
            ));
            self.line(&format!("preferred = {}", i == 0));
            self.line(&format!("address = {{ column = {} }}", q(&c.name)));
            self.line("");
        }
        for (i, c) in all(Role::Phone).enumerate() {
            self.line("[[phones]]");
            self.line("types = [\"home\"]");
            self.line(&format!("preferred = {}", i == 0));
            self.line(&format!("number = {{ column = {} }}", q(&c.name)));
            self.line("");
        }
        if let Some(c) = find(Role::Barcode) {
            self.line("[[identifiers]]");
            self.line("id_type = \"BARCODE\"");
            self.line(&format!("value = {{ column = {} }}", q(&c.name)));
            self.line("");
        }
        let unmapped: Vec<String> = cols
            .iter()
            .filter(|c| c.role.is_none() && !c.stats.mostly("date") && c.stats.filled > 0)
            .map(|c| format!("`{}`", c.name))
            .collect();
        if !unmapped.is_empty() {
            self.notes.push(format!(
                "not mapped (TODO, or leave out): {}",
                unmapped.join(", ")
            ));
        }

        if let Some((column, codes, filled)) = self.group_table.take() {
            self.line("# User groups: every code found in the extract, with its records.");
            self.line("# TODO: replace each value with the Alma user group code it stands for.");
            self.line("[tables.user_groups]");
            match codes {
                Some(codes) => {
                    self.line("unknown = \"reject\"");
                    self.line("");
                    self.line("[tables.user_groups.map]");
                    let mut sorted: Vec<(&String, &usize)> = codes.iter().collect();
                    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                    for (code, n) in sorted {
                        self.line(&format!(
                            "{} = {}  # {n} record{}",
                            key(code),
                            q(code),
                            if *n == 1 { "" } else { "s" }
                        ));
                    }
                }
                None => {
                    self.line(&format!(
                        "# `{column}` has more than {} distinct values in {filled} records: codes \
                         pass through unchanged.",
                        sniff::DISTINCT_KEPT
                    ));
                    self.line("unknown = \"pass\"");
                    self.line("map = {}");
                    self.notes.push(format!(
                        "user_group: `{column}` has more than {} distinct values; codes pass \
                         through (TODO: a table)",
                        sniff::DISTINCT_KEPT
                    ));
                }
            }
        }
        let _ = records;
    }

    /// `, formats = [...]` for a date column, noting a day/month doubt.
    fn formats(&mut self, c: &Column) -> String {
        let f = &c.stats.date_formats;
        if f.is_empty() {
            if c.stats.filled > 0 {
                self.notes.push(format!(
                    "`{}`: no date format reads its values; patronload's default (%Y-%m-%d) \
                     is kept (TODO)",
                    c.name
                ));
            }
            return String::new();
        }
        if f.contains(&"%m/%d/%Y") && f.contains(&"%d/%m/%Y") {
            self.notes.push(format!(
                "`{}`: some dates read only as month/day, others only as day/month; both \
                 formats are listed, month/day first (TODO: check)",
                c.name
            ));
        }
        let list: Vec<String> = f.iter().map(|s| q(s)).collect();
        format!(", formats = [{}]", list.join(", "))
    }
}

#[cfg(test)]
mod tests;
