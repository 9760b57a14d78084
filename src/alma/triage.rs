//! Alma's rejected-users job report, triaged: one line per rejected user
//! with a stable cause code, the action to take in words, and where the
//! patron came from in the run that produced the load (joined from the
//! run's `index.csv` and `summary.json`).
//!
//! Staff export "Rejected Users – By Files" to Excel; the column names of
//! that export are not documented, so columns are found by header name
//! (the first rows are searched for the header, since a title row may
//! come first), and the columns used are reported. The identifier type
//! and value, and a missing field, are read out of Alma's message text.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::read::{find_col, norm_header, sniff_delimiter};
use crate::check::zipin::{self, ZipLimits};
use crate::error::{Error, Result};

/// Stable cause codes of `triage`'s output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// "Identifier of type X and value Y is already taken": another Alma
    /// user holds the value.
    IdentifierTaken,
    /// "User is not external": the load matched an internal account.
    InternalAccount,
    /// "Mandatory field is missing: F".
    MandatoryFieldMissing,
    /// Characters Alma cannot take, or a file in the wrong encoding.
    InvalidCharacters,
    /// A message not recognised: kept verbatim.
    Unrecognised,
}

impl Cause {
    /// The code written to the output.
    pub fn code(self) -> &'static str {
        match self {
            Cause::IdentifierTaken => "identifier_taken",
            Cause::InternalAccount => "internal_account",
            Cause::MandatoryFieldMissing => "mandatory_field_missing",
            Cause::InvalidCharacters => "invalid_characters",
            Cause::Unrecognised => "unrecognised",
        }
    }
}

/// What one message says, read out of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The cause.
    pub cause: Cause,
    /// The identifier type named, if any.
    pub id_type: String,
    /// The identifier value named, if any.
    pub id_value: String,
    /// The missing field named, if any.
    pub field: String,
}

/// Finds `pat` in `hay` ignoring ASCII case; the byte offset.
fn find_ci(hay: &str, pat: &str) -> Option<usize> {
    let (h, p) = (hay.as_bytes(), pat.as_bytes());
    if p.len() > h.len() {
        return None;
    }
    (0..=h.len() - p.len()).find(|&i| h[i..i + p.len()].eq_ignore_ascii_case(p))
}

/// Reads one of Alma's messages.
pub fn read_message(msg: &str) -> Reading {
    let m = msg.trim();
    let mut r = Reading {
        cause: Cause::Unrecognised,
        id_type: String::new(),
        id_value: String::new(),
        field: String::new(),
    };
    if let Some(at) = find_ci(m, "identifier of type ") {
        let rest = &m[at + "identifier of type ".len()..];
        if let Some(v) = find_ci(rest, " and value ") {
            let after = &rest[v + " and value ".len()..];
            let end = find_ci(after, " is already taken")
                .or_else(|| find_ci(after, " is already"))
                .or_else(|| find_ci(after, " already"));
            if let Some(end) = end {
                r.cause = Cause::IdentifierTaken;
                r.id_type = rest[..v].trim().to_string();
                r.id_value = after[..end].trim().to_string();
                return r;
            }
        }
    }
    if find_ci(m, "already taken").is_some() || find_ci(m, "already exists").is_some() {
        r.cause = Cause::IdentifierTaken;
        return r;
    }
    if find_ci(m, "not external").is_some() {
        r.cause = Cause::InternalAccount;
        return r;
    }
    if let Some(at) = find_ci(m, "mandatory field is missing") {
        r.cause = Cause::MandatoryFieldMissing;
        let rest = &m[at + "mandatory field is missing".len()..];
        r.field = rest
            .trim_start_matches([':', ' ', '-'])
            .trim()
            .trim_end_matches('.')
            .to_string();
        return r;
    }
    const CHARS: &[&str] = &[
        "invalid character",
        "illegal character",
        "invalid xml character",
        "invalid byte",
        "utf-8",
        "encoding",
        "could not parse",
    ];
    if CHARS.iter().any(|c| find_ci(m, c).is_some()) {
        r.cause = Cause::InvalidCharacters;
    }
    r
}

/// The action to take, in words.
pub fn action(r: &Reading) -> String {
    match r.cause {
        Cause::IdentifierTaken if !r.id_type.is_empty() => format!(
            "another Alma user holds {} {}: most often a second record of the same person (another \
             account, or one created by hand); find that user in Alma, merge or correct the \
             records, or fix the identifier in the SIS; then reload",
            r.id_type, r.id_value
        ),
        Cause::IdentifierTaken => {
            "another Alma user holds one of this user's identifiers: find it \
             in Alma, merge or correct the records, or fix the SIS; then reload"
                .into()
        }
        Cause::InternalAccount => "the load matched an internal Alma account (library staff, or a \
             community patron who became a student): make the account External in Alma, then \
             reload"
            .into(),
        Cause::MandatoryFieldMissing if !r.field.is_empty() => {
            format!(
                "fill in {} for this patron in the SIS, then reload",
                r.field
            )
        }
        Cause::MandatoryFieldMissing => {
            "fill in the missing mandatory field in the SIS, then reload".into()
        }
        Cause::InvalidCharacters => {
            "characters Alma cannot read: fix them in the SIS, or export the \
             extract as UTF-8, then reload"
                .into()
        }
        Cause::Unrecognised => "message not recognised: read Alma's message (kept verbatim)".into(),
    }
}

/// Options of one triage.
#[derive(Debug, Clone)]
pub struct TriageOptions {
    /// Alma's exported report: `.xlsx` or `.csv` (`.txt`/`.tsv` read as
    /// delimited text too).
    pub report: PathBuf,
    /// The output directory of the `convert` run that made the load.
    pub run_dir: PathBuf,
    /// The triage file to write (CSV).
    pub out: PathBuf,
}

/// Which report columns were used, by header as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ColumnsUsed {
    /// The user id column.
    pub user_id: String,
    /// The message column.
    pub message: String,
    /// The row of the header (1-based).
    pub header_row: u64,
}

/// What a triage found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TriageOutcome {
    /// The columns used.
    pub columns: ColumnsUsed,
    /// Rows triaged.
    pub rows: u64,
    /// Rows by cause code.
    pub by_cause: BTreeMap<String, u64>,
    /// Distinct unrecognised messages.
    pub unrecognised_groups: u64,
    /// Rows whose user was found in the run's index.
    pub found_in_run: u64,
    /// The run's `as_of` date, from its summary.
    pub run_as_of: String,
}

/// Header of the triage file.
pub const TRIAGE_HEADER: [&str; 11] = [
    "user_id",
    "cause",
    "identifier_type",
    "identifier_value",
    "field",
    "action",
    "source_file",
    "line",
    "record",
    "report_row",
    "message",
];

/// Cells of the report, row by row.
fn read_rows(path: &Path) -> Result<Vec<Vec<String>>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext == "xlsx" || ext == "xlsm" {
        return read_xlsx(path);
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"PK") {
        return read_xlsx(path);
    }
    // The header may follow a title row: sniff over the first lines.
    let sample: Vec<u8> = bytes
        .split(|&b| b == b'\n')
        .take(20)
        .flatten()
        .copied()
        .collect();
    let delim = sniff_delimiter(&sample);
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t.to_string(),
        // Excel's "CSV" is often Windows-1252.
        Err(_) => encoding_rs::WINDOWS_1252.decode(&bytes).0.into_owned(),
    };
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delim)
        .flexible(true)
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::Input {
            path: path.to_path_buf(),
            line: e.position().map(|p| p.line()),
            message: e.to_string(),
        })?;
        rows.push(rec.iter().map(|c| c.trim().to_string()).collect());
    }
    Ok(rows)
}

/// An `.xlsx` is a zip: vetted like every zip we did not write before
/// `calamine` opens it.
fn read_xlsx(path: &Path) -> Result<Vec<Vec<String>>> {
    let input = |message: String| Error::Input {
        path: path.to_path_buf(),
        line: None,
        message,
    };
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut ar = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| input(format!("not a readable .xlsx (zip): {e}")))?;
    let limits = ZipLimits {
        max_entry_bytes: 1 << 30,
        max_total_bytes: 4 << 30,
        ..ZipLimits::default()
    };
    if let zipin::Plan::Refused(why) = zipin::plan(&mut ar, limits) {
        let msgs: Vec<String> = why
            .into_iter()
            .map(|(c, m)| format!("{}: {m}", c.as_str()))
            .collect();
        return Err(input(msgs.join("; ")));
    }
    drop(ar);
    use calamine::Reader;
    let mut wb = calamine::open_workbook_auto(path).map_err(|e| input(format!("{e}")))?;
    let range = wb
        .worksheet_range_at(0)
        .ok_or_else(|| input("the workbook has no sheet".into()))?
        .map_err(|e| input(format!("{e}")))?;
    Ok(range
        .rows()
        .map(|r| r.iter().map(cell_text).collect())
        .collect())
}

fn cell_text(d: &calamine::Data) -> String {
    use calamine::Data;
    match d {
        Data::Int(i) => i.to_string(),
        // Ids exported as numbers: no `.0`.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.trim().to_string(),
        Data::Bool(b) => b.to_string(),
        Data::DateTime(d) => d.to_string(),
        Data::Error(e) => e.to_string(),
        Data::Empty => String::new(),
    }
}

const ID_NAMES: &[&str] = &[
    "primaryidentifier",
    "primaryid",
    "userprimaryidentifier",
    "userid",
    "useridentifier",
    "identifier",
    "userprimaryid",
    "id",
];
const MESSAGE_NAMES: &[&str] = &[
    "message",
    "errormessage",
    "rejectionreason",
    "reason",
    "error",
    "errordescription",
    "description",
    "details",
];

/// Finds the header row and the two columns: exact names first, then a
/// header containing a key word.
fn columns(rows: &[Vec<String>]) -> Option<(usize, usize, usize)> {
    for (r, row) in rows.iter().enumerate().take(20) {
        let h: Vec<String> = row.iter().map(|c| norm_header(c)).collect();
        let contains = |words: &[&str], not: &[&str]| {
            h.iter().position(|c| {
                words.iter().any(|w| c.contains(w)) && !not.iter().any(|w| c.contains(w))
            })
        };
        let id = find_col(&h, ID_NAMES)
            .or_else(|| contains(&["primary"], &["type"]))
            .or_else(|| contains(&["identifier", "userid"], &["type"]))
            .or_else(|| contains(&["user"], &["type", "group", "name"]));
        let msg =
            find_col(&h, MESSAGE_NAMES).or_else(|| contains(&["message", "reason", "error"], &[]));
        if let (Some(id), Some(msg)) = (id, msg) {
            if id != msg {
                return Some((r, id, msg));
            }
        }
    }
    None
}

/// Where each wanted user came from: `index.csv` of the run, read once
/// and only the wanted rows kept.
fn join_index(run_dir: &Path, wanted: &HashSet<String>) -> Result<HashMap<String, [String; 3]>> {
    let path = run_dir.join(crate::run::convert::INDEX_FILE);
    let f = std::fs::File::open(&path).map_err(|e| Error::Input {
        path: path.clone(),
        line: None,
        message: format!(
            "cannot read the run's index ({e}): give --run the output directory of the \
                 convert run that made the load (runs before this version wrote none)"
        ),
    })?;
    let mut rdr = csv::Reader::from_reader(std::io::BufReader::new(f));
    let mut out = HashMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Error::Input {
            path: path.clone(),
            line: e.position().map(|p| p.line()),
            message: e.to_string(),
        })?;
        let key = crate::map::fold(rec.get(0).unwrap_or(""));
        if wanted.contains(&key) && !out.contains_key(&key) {
            out.insert(
                key,
                [
                    rec.get(1).unwrap_or("").to_string(),
                    rec.get(2).unwrap_or("").to_string(),
                    rec.get(3).unwrap_or("").to_string(),
                ],
            );
        }
    }
    Ok(out)
}

/// Triages Alma's report: writes `opts.out` atomically (a private
/// temporary beside it, then a rename) and returns the counts.
pub fn triage(opts: &TriageOptions) -> Result<TriageOutcome> {
    let rows = read_rows(&opts.report)?;
    let (hr, id_col, msg_col) = columns(&rows).ok_or_else(|| Error::Input {
        path: opts.report.clone(),
        line: None,
        message: "no header with a user id column (identifier, user, primary ...) and a \
                  message column (message, reason, error ...) in the first 20 rows"
            .into(),
    })?;
    let summary_path = opts.run_dir.join(crate::run::convert::SUMMARY_FILE);
    let run_as_of = std::fs::read(&summary_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("as_of").and_then(|a| a.as_str()).map(str::to_string))
        .ok_or_else(|| Error::Input {
            path: summary_path.clone(),
            line: None,
            message: "not a run's summary: give --run the output directory of a convert run".into(),
        })?;
    let get = |row: &Vec<String>, c: usize| row.get(c).map_or("", |s| s.trim()).to_string();
    struct Row {
        n: u64,
        id: String,
        msg: String,
        reading: Reading,
    }
    let mut items = Vec::new();
    for (i, row) in rows.iter().enumerate().skip(hr + 1) {
        let (id, msg) = (get(row, id_col), get(row, msg_col));
        if id.is_empty() && msg.is_empty() {
            continue;
        }
        let reading = read_message(&msg);
        items.push(Row {
            n: i as u64 + 1,
            id,
            msg,
            reading,
        });
    }
    let key_of = |r: &Row| {
        if r.id.is_empty() {
            crate::map::fold(&r.reading.id_value)
        } else {
            crate::map::fold(&r.id)
        }
    };
    let wanted: HashSet<String> = items.iter().map(key_of).collect();
    let found = join_index(&opts.run_dir, &wanted)?;
    // Recognised rows in report order, then the unrecognised grouped by
    // their message (groups in order of first appearance).
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for r in &items {
        if r.reading.cause == Cause::Unrecognised {
            let n = group_of.len();
            group_of.entry(r.msg.clone()).or_insert(n);
        }
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| match items[i].reading.cause {
        Cause::Unrecognised => (1, group_of[&items[i].msg]),
        _ => (0, 0),
    });
    let mut out = TriageOutcome {
        columns: ColumnsUsed {
            user_id: rows[hr][id_col].clone(),
            message: rows[hr][msg_col].clone(),
            header_row: hr as u64 + 1,
        },
        unrecognised_groups: group_of.len() as u64,
        run_as_of,
        ..TriageOutcome::default()
    };
    let mut buf = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut buf);
        w.write_record(TRIAGE_HEADER)
            .map_err(|e| Error::io(&opts.out, e.into()))?;
        for i in order {
            let r = &items[i];
            let src = found.get(&key_of(r));
            out.rows += 1;
            if src.is_some() {
                out.found_in_run += 1;
            }
            *out.by_cause
                .entry(r.reading.cause.code().into())
                .or_default() += 1;
            let (file, line, record) =
                src.map_or(("", "", ""), |s| (&s[0][..], &s[1][..], &s[2][..]));
            w.write_record([
                r.id.as_str(),
                r.reading.cause.code(),
                &r.reading.id_type,
                &r.reading.id_value,
                &r.reading.field,
                &action(&r.reading),
                file,
                line,
                record,
                &r.n.to_string(),
                &r.msg,
            ])
            .map_err(|e| Error::io(&opts.out, e.into()))?;
        }
        w.flush().map_err(|e| Error::io(&opts.out, e))?;
    }
    write_atomic(&opts.out, &buf)?;
    Ok(out)
}

/// Writes `bytes` to `path` in one step: a private (`0600`) temporary
/// beside it, synced, then renamed over it.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut b = tempfile::Builder::new();
    b.prefix(".patronload-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = b.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let r = read_message(
            "Identifier of type INST_ID and value 9001234 is already taken AcrossInstitution",
        );
        assert_eq!(r.cause, Cause::IdentifierTaken);
        assert_eq!(
            (r.id_type.as_str(), r.id_value.as_str()),
            ("INST_ID", "9001234")
        );
        assert_eq!(
            read_message("User is not external").cause,
            Cause::InternalAccount
        );
        let r = read_message("Mandatory field is missing: user_group.");
        assert_eq!(
            (r.cause, r.field.as_str()),
            (Cause::MandatoryFieldMissing, "user_group")
        );
        assert_eq!(
            read_message("Invalid byte 1 of 1-byte UTF-8 sequence").cause,
            Cause::InvalidCharacters
        );
        assert_eq!(read_message("Something else").cause, Cause::Unrecognised);
    }
}
