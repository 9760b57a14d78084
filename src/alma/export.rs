//! Users with fines or blocks, from Alma's export, into the file the SIS
//! loads to place registration holds.
//!
//! An **export profile** (TOML, `examples/alma/sis_holds.toml`) says
//! which users go out (`[filter]`: a balance above a threshold, active
//! blocks of given types or descriptions), which columns the file has
//! (`[[column]]`: match id, any identifier type, group, balance, block
//! types and descriptions, dates, constants), and how the file is written
//! (`[output]`: delimited or fixed width, encoding, line ending). Alma's
//! export is read streaming ([`super::read`], with `check`'s zip and XML
//! limits); the file is published like `convert`'s package (lock, staging
//! directory, one atomic swap, private modes) with `export_summary.json`
//! and, for users a value of which the file cannot hold (wider than its
//! fixed-width column, or not in the declared encoding),
//! `export_rejects.csv`. Nothing is cut or replaced silently.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::read::{read_users, AlmaUser, ReadOptions, ReadStats};
use crate::error::{Error, Result};
use crate::outdir::{hidden_temp, OutputOptions, Staged};

/// Name of the export's summary in the output directory.
pub const EXPORT_SUMMARY_FILE: &str = "export_summary.json";
/// Name of the export's list of users left out of the file.
pub const EXPORT_REJECTS_FILE: &str = "export_rejects.csv";

/// An export profile as written (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportProfile {
    /// How the file is written.
    pub output: ExportOutput,
    /// Which users go out.
    #[serde(default)]
    pub filter: ExportFilter,
    /// The columns, in order (`[[column]]`).
    #[serde(rename = "column")]
    pub columns: Vec<ExportColumn>,
}

/// `[output]` of an export profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportOutput {
    /// The file name written in the output directory.
    pub file: String,
    /// `delimited` (the default) or `fixed`.
    #[serde(default)]
    pub format: Format,
    /// Delimiter of a delimited file (one character). By default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Whether a delimited file starts with a header row of the column
    /// names. By default true.
    #[serde(default = "yes")]
    pub header: bool,
    /// Encoding label (`utf-8`, `windows-1252`, `iso-8859-1`, ...). By
    /// default UTF-8 without a byte-order mark.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// `lf` (the default) or `crlf`.
    #[serde(default)]
    pub line_ending: LineEnding,
    /// Between the items of a list column (block types). By default `;`.
    #[serde(default = "default_list_separator")]
    pub list_separator: String,
    /// How dates are written (chrono `strftime`). By default `%Y-%m-%d`.
    #[serde(default = "default_date_format")]
    pub date_format: String,
}

/// File layout.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Separated values, quoted where needed (RFC 4180 rules).
    #[default]
    Delimited,
    /// Fixed-width columns, each `width` characters.
    Fixed,
}

/// Line ending.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LineEnding {
    /// `\n`.
    #[default]
    Lf,
    /// `\r\n`.
    Crlf,
}

/// `[filter]` of an export profile. A user goes out when it meets any
/// of the conditions given (or all, with `require = "all"`); with no
/// condition every user goes out.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFilter {
    /// The active balance must be above this amount.
    pub min_balance: Option<f64>,
    /// An active block of one of these `block_type` codes.
    #[serde(default)]
    pub block_types: Vec<String>,
    /// An active block of one of these `block_description` codes.
    #[serde(default)]
    pub block_descriptions: Vec<String>,
    /// `any` (the default) or `all` of the conditions.
    #[serde(default)]
    pub require: Require,
    /// Only accounts of this type (`EXTERNAL` or `INTERNAL`); by default
    /// both.
    pub account_type: Option<String>,
}

/// How filter conditions combine.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Require {
    /// Any condition.
    #[default]
    Any,
    /// Every condition.
    All,
}

/// One `[[column]]` of an export profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportColumn {
    /// Header name.
    pub name: String,
    /// What goes in: `primary_id`, `identifier:TYPE`, `user_group`,
    /// `account_type`, `status`, `expiry_date`, `balance`, `block_types`,
    /// `block_descriptions`, `block_count`, `block_since` (the earliest
    /// active block's creation date), `block_until` (the latest active
    /// block's expiry date), or `const:TEXT`.
    pub value: String,
    /// Width in characters (fixed format: required).
    pub width: Option<usize>,
    /// `left` (the default) or `right` alignment in a fixed-width column.
    #[serde(default)]
    pub align: Align,
    /// Padding character of a fixed-width column. By default a space.
    #[serde(default = "default_pad")]
    pub pad: char,
}

/// Alignment in a fixed-width column.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Align {
    /// Padded on the right.
    #[default]
    Left,
    /// Padded on the left.
    Right,
}

fn default_delimiter() -> String {
    ",".into()
}
fn yes() -> bool {
    true
}
fn default_encoding() -> String {
    "utf-8".into()
}
fn default_list_separator() -> String {
    ";".into()
}
fn default_date_format() -> String {
    "%Y-%m-%d".into()
}
fn default_pad() -> char {
    ' '
}

/// What a column takes from the user, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    PrimaryId,
    Identifier(String),
    UserGroup,
    AccountType,
    Status,
    ExpiryDate,
    Balance,
    BlockTypes,
    BlockDescriptions,
    BlockCount,
    BlockSince,
    BlockUntil,
    Const(String),
}

impl ExportProfile {
    /// Reads and checks an export profile.
    pub fn load(path: &Path) -> Result<ExportProfile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let p: ExportProfile = toml::from_str(&text).map_err(|e| Error::Profile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        p.compile().map_err(|message| Error::Profile {
            path: path.to_path_buf(),
            message,
        })?;
        Ok(p)
    }

    fn compile(&self) -> std::result::Result<Compiled, String> {
        let o = &self.output;
        let name = Path::new(&o.file);
        if o.file.is_empty()
            || name.components().count() != 1
            || o.file.starts_with('.')
            || [EXPORT_SUMMARY_FILE, EXPORT_REJECTS_FILE].contains(&o.file.as_str())
        {
            return Err(format!(
                "output.file `{}` must be a plain file name (no folder, not hidden, not {} or {})",
                o.file, EXPORT_SUMMARY_FILE, EXPORT_REJECTS_FILE
            ));
        }
        let encoding = encoding_rs::Encoding::for_label(o.encoding.trim().as_bytes())
            .ok_or_else(|| format!("output.encoding `{}` is not an encoding label", o.encoding))?;
        let encoding = encoding.output_encoding();
        let mut d = o.delimiter.chars();
        let delimiter = match (d.next(), d.next()) {
            (Some(c), None) if c.is_ascii() && c != '"' && c != '\n' && c != '\r' => c as u8,
            _ if o.format == Format::Fixed => b',',
            _ => {
                return Err(format!(
                    "output.delimiter `{}` must be one ASCII character (not a quote)",
                    o.delimiter
                ))
            }
        };
        if self.columns.is_empty() {
            return Err("no [[column]] tables".into());
        }
        let bad_date = chrono::format::StrftimeItems::new(&o.date_format)
            .any(|i| matches!(i, chrono::format::Item::Error));
        if bad_date {
            return Err(format!(
                "output.date_format `{}` is not valid",
                o.date_format
            ));
        }
        let mut values = Vec::new();
        for c in &self.columns {
            let v = c.value.trim();
            let value = match v {
                "primary_id" => Value::PrimaryId,
                "user_group" => Value::UserGroup,
                "account_type" => Value::AccountType,
                "status" => Value::Status,
                "expiry_date" => Value::ExpiryDate,
                "balance" => Value::Balance,
                "block_types" => Value::BlockTypes,
                "block_descriptions" => Value::BlockDescriptions,
                "block_count" => Value::BlockCount,
                "block_since" => Value::BlockSince,
                "block_until" => Value::BlockUntil,
                _ => {
                    if let Some(t) = v
                        .strip_prefix("identifier:")
                        .filter(|t| !t.trim().is_empty())
                    {
                        Value::Identifier(t.trim().to_string())
                    } else if let Some(t) = v.strip_prefix("const:") {
                        Value::Const(t.to_string())
                    } else {
                        return Err(format!(
                            "column `{}`: value `{v}` is not one of primary_id, identifier:TYPE, \
                             user_group, account_type, status, expiry_date, balance, \
                             block_types, block_descriptions, block_count, block_since, \
                             block_until, const:TEXT",
                            c.name
                        ));
                    }
                }
            };
            if o.format == Format::Fixed && c.width.unwrap_or(0) == 0 {
                return Err(format!(
                    "column `{}` needs a width (format = \"fixed\")",
                    c.name
                ));
            }
            values.push(value);
        }
        Ok(Compiled {
            values,
            encoding,
            delimiter,
            eol: match o.line_ending {
                LineEnding::Lf => "\n",
                LineEnding::Crlf => "\r\n",
            },
        })
    }
}

struct Compiled {
    values: Vec<Value>,
    encoding: &'static encoding_rs::Encoding,
    delimiter: u8,
    eol: &'static str,
}

/// Options of one export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The export profile.
    pub profile: ExportProfile,
    /// The output directory (published like `convert`'s).
    pub out_dir: PathBuf,
    /// Alma's exports, in order.
    pub inputs: Vec<PathBuf>,
    /// Limits on reading them.
    pub read: ReadOptions,
    /// Locking and file modes.
    pub output: OutputOptions,
}

/// `export_summary.json`: counts, the file and its checksum.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExportSummary {
    /// Inputs, as given.
    pub inputs: Vec<String>,
    /// Users read (all shapes).
    pub users_read: u64,
    /// Users read in the v2, v1 and CSV shapes.
    pub users_by_format: BTreeMap<String, u64>,
    /// Users that met the filter.
    pub users_selected: u64,
    /// Users written to the file.
    pub users_written: u64,
    /// Selected users left out (see `export_rejects.csv`).
    pub users_rejected: u64,
    /// Users whose balance could not be read as a number (they do not
    /// meet a balance condition).
    pub unreadable_balance: u64,
    /// The file written.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

fn parse_balance(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Some(0.0);
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The date part of an exported date or date-time (`2026-11-03Z`,
/// `2026-11-03T10:00:00.000Z`), formatted.
fn date_part(s: &str, fmt: &str) -> String {
    let t = s.trim();
    let d = t.get(..10).unwrap_or(t);
    match chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d") {
        Ok(date) => date.format(fmt).to_string(),
        Err(_) => t.to_string(),
    }
}

fn selected(f: &ExportFilter, u: &AlmaUser, balance: Option<f64>) -> bool {
    if let Some(t) = &f.account_type {
        if !u.account_type.trim().eq_ignore_ascii_case(t.trim()) {
            return false;
        }
    }
    let mut conds = Vec::new();
    if let Some(min) = f.min_balance {
        conds.push(balance.is_some_and(|b| b > min));
    }
    let has = |list: &[String], get: fn(&super::read::Block) -> &str| {
        u.blocks.iter().filter(|b| b.active()).any(|b| {
            list.iter()
                .any(|x| x.trim().eq_ignore_ascii_case(get(b).trim()))
        })
    };
    if !f.block_types.is_empty() {
        conds.push(has(&f.block_types, |b| &b.block_type));
    }
    if !f.block_descriptions.is_empty() {
        conds.push(has(&f.block_descriptions, |b| &b.description));
    }
    if conds.is_empty() {
        return true;
    }
    match f.require {
        Require::Any => conds.iter().any(|&c| c),
        Require::All => conds.iter().all(|&c| c),
    }
}

fn cell(v: &Value, u: &AlmaUser, balance: Option<f64>, o: &ExportOutput) -> String {
    let active = || u.blocks.iter().filter(|b| b.active());
    let join = |items: Vec<&str>| {
        let mut seen: Vec<&str> = Vec::new();
        for i in items {
            if !i.is_empty() && !seen.contains(&i) {
                seen.push(i);
            }
        }
        seen.join(&o.list_separator)
    };
    match v {
        Value::PrimaryId => u.primary_id.clone(),
        Value::Identifier(t) => u
            .identifiers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(t))
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
        Value::UserGroup => u.user_group.clone(),
        Value::AccountType => u.account_type.clone(),
        Value::Status => u.status.clone(),
        Value::ExpiryDate => date_part(&u.expiry_date, &o.date_format),
        Value::Balance => {
            balance.map_or_else(|| u.fees.clone().unwrap_or_default(), |b| format!("{b:.2}"))
        }
        Value::BlockTypes => join(active().map(|b| b.block_type.trim()).collect()),
        Value::BlockDescriptions => join(active().map(|b| b.description.trim()).collect()),
        Value::BlockCount => active().count().to_string(),
        Value::BlockSince => active()
            .map(|b| date_part(&b.created_date, "%Y-%m-%d"))
            .filter(|d| !d.is_empty())
            .min()
            .map(|d| date_part(&d, &o.date_format))
            .unwrap_or_default(),
        Value::BlockUntil => active()
            .map(|b| date_part(&b.expiry_date, "%Y-%m-%d"))
            .filter(|d| !d.is_empty())
            .max()
            .map(|d| date_part(&d, &o.date_format))
            .unwrap_or_default(),
        Value::Const(c) => c.clone(),
    }
}

/// One line of the file for `cells`, or why it cannot be written.
fn line(
    p: &ExportProfile,
    c: &Compiled,
    cells: &[String],
) -> std::result::Result<String, (usize, String)> {
    let mut s = String::new();
    for (i, (v, col)) in cells.iter().zip(&p.columns).enumerate() {
        if v.contains(['\n', '\r']) {
            return Err((i, "holds a line break".into()));
        }
        match p.output.format {
            Format::Delimited => {
                if i > 0 {
                    s.push(c.delimiter as char);
                }
                if v.contains(c.delimiter as char) || v.contains('"') {
                    s.push('"');
                    s.push_str(&v.replace('"', "\"\""));
                    s.push('"');
                } else {
                    s.push_str(v);
                }
            }
            Format::Fixed => {
                let w = col.width.unwrap_or(0);
                let n = v.chars().count();
                if n > w {
                    return Err((i, format!("is {n} characters, wider than its {w}")));
                }
                let pad: String = std::iter::repeat_n(col.pad, w - n).collect();
                match col.align {
                    Align::Left => {
                        s.push_str(v);
                        s.push_str(&pad);
                    }
                    Align::Right => {
                        s.push_str(&pad);
                        s.push_str(v);
                    }
                }
            }
        }
    }
    s.push_str(c.eol);
    Ok(s)
}

/// Runs an export: reads `inputs`, writes the file, `export_rejects.csv`
/// and `export_summary.json` into `out_dir`, published in one step.
pub fn export(opts: &ExportOptions) -> Result<ExportSummary> {
    let compiled = opts.profile.compile().map_err(Error::Usage)?;
    if opts.inputs.is_empty() {
        return Err(Error::Usage("no Alma export given".into()));
    }
    let file = opts.profile.output.file.clone();
    let prefix = Path::new(&file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("export")
        .to_string();
    crate::outdir::hold(&opts.out_dir, &prefix, opts.output, || {
        run(opts, &compiled, &file, &prefix)
    })
}

fn run(opts: &ExportOptions, c: &Compiled, file: &str, prefix: &str) -> Result<ExportSummary> {
    let dir = &opts.out_dir;
    let p = &opts.profile;
    let tmp = hidden_temp(dir, ".tmp")?;
    let rej_tmp = hidden_temp(dir, ".csv.tmp")?;
    let mut w = BufWriter::new(tmp.reopen().map_err(|e| Error::io(dir.join(file), e))?);
    let mut rej = csv::Writer::from_writer(BufWriter::new(
        rej_tmp
            .reopen()
            .map_err(|e| Error::io(dir.join(EXPORT_REJECTS_FILE), e))?,
    ));
    let io = |name: &str, e: std::io::Error| Error::io(dir.join(name), e);
    rej.write_record(["source", "line", "primary_id", "column", "message"])
        .map_err(|e| io(EXPORT_REJECTS_FILE, e.into()))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut emit = |text: &str, w: &mut BufWriter<std::fs::File>| -> Result<bool> {
        let (enc, _, unmappable) = c.encoding.encode(text);
        if unmappable {
            return Ok(false);
        }
        hasher.update(&enc);
        bytes += enc.len() as u64;
        w.write_all(&enc).map_err(|e| io(file, e))?;
        Ok(true)
    };
    if p.output.header && p.output.format == Format::Delimited {
        let names: Vec<String> = p.columns.iter().map(|c| c.name.clone()).collect();
        let head = line(p, c, &names)
            .map_err(|(i, m)| Error::Usage(format!("column name `{}` {m}", p.columns[i].name)))?;
        if !emit(&head, &mut w)? {
            return Err(Error::Usage(format!(
                "a column name is not in the encoding {}",
                c.encoding.name()
            )));
        }
    }
    let mut s = ExportSummary {
        inputs: opts
            .inputs
            .iter()
            .map(|i| i.display().to_string())
            .collect(),
        file: file.to_string(),
        ..ExportSummary::default()
    };
    let stats: ReadStats = read_users(&opts.inputs, &opts.read, &mut |label, u| {
        let balance = u.fees.as_deref().and_then(parse_balance);
        if u.fees.is_some() && balance.is_none() {
            s.unreadable_balance += 1;
        }
        if !selected(&p.filter, &u, balance) {
            return Ok(());
        }
        s.users_selected += 1;
        let cells: Vec<String> = c
            .values
            .iter()
            .map(|v| cell(v, &u, balance, &p.output))
            .collect();
        let why = match line(p, c, &cells) {
            Ok(text) => {
                if emit(&text, &mut w)? {
                    s.users_written += 1;
                    return Ok(());
                }
                let bad = cells
                    .iter()
                    .position(|v| c.encoding.encode(v).2)
                    .unwrap_or(0);
                (
                    bad,
                    format!("holds characters not in {}", c.encoding.name()),
                )
            }
            Err(why) => why,
        };
        s.users_rejected += 1;
        rej.write_record([
            label,
            &u.line.to_string(),
            &u.primary_id,
            &p.columns[why.0].name,
            &format!("the value of column `{}` {}", p.columns[why.0].name, why.1),
        ])
        .map_err(|e| io(EXPORT_REJECTS_FILE, e.into()))
    })?;
    w.flush().map_err(|e| io(file, e))?;
    w.into_inner()
        .map_err(|e| io(file, e.into_error()))?
        .sync_all()
        .map_err(|e| io(file, e))?;
    rej.flush().map_err(|e| io(EXPORT_REJECTS_FILE, e))?;
    drop(rej);
    s.users_read = stats.users();
    s.users_by_format = [
        ("v2".to_string(), stats.v2_users),
        ("v1".to_string(), stats.v1_users),
        ("csv".to_string(), stats.csv_users),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    s.bytes = bytes;
    s.sha256 = hex(&hasher.finalize());
    let sum_tmp = hidden_temp(dir, ".json.tmp")?;
    {
        let mut f = sum_tmp.reopen().map_err(|e| io(EXPORT_SUMMARY_FILE, e))?;
        let mut json = serde_json::to_vec_pretty(&s)
            .map_err(|e| io(EXPORT_SUMMARY_FILE, std::io::Error::other(e)))?;
        json.push(b'\n');
        f.write_all(&json).map_err(|e| io(EXPORT_SUMMARY_FILE, e))?;
        f.sync_all().map_err(|e| io(EXPORT_SUMMARY_FILE, e))?;
    }
    crate::outdir::publish(
        dir,
        prefix,
        vec![
            Staged {
                file: tmp,
                name: file.to_string(),
            },
            Staged {
                file: rej_tmp,
                name: EXPORT_REJECTS_FILE.into(),
            },
            Staged {
                file: sum_tmp,
                name: EXPORT_SUMMARY_FILE.into(),
            },
        ],
    )?;
    Ok(s)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alma::Block;

    fn user() -> AlmaUser {
        AlmaUser {
            primary_id: "P1".into(),
            fees: Some("12.5".into()),
            blocks: vec![
                Block {
                    block_type: "GENERAL".into(),
                    description: "FINES".into(),
                    status: "ACTIVE".into(),
                    ..Block::default()
                },
                Block {
                    block_type: "GENERAL".into(),
                    description: "LOST".into(),
                    status: "INACTIVE".into(),
                    ..Block::default()
                },
            ],
            ..AlmaUser::default()
        }
    }

    #[test]
    fn filters() {
        let u = user();
        let f = |min: Option<f64>, d: &[&str], require| ExportFilter {
            min_balance: min,
            block_descriptions: d.iter().map(|s| s.to_string()).collect(),
            require,
            ..ExportFilter::default()
        };
        assert!(selected(&f(Some(10.0), &[], Require::Any), &u, Some(12.5)));
        assert!(!selected(&f(Some(12.5), &[], Require::Any), &u, Some(12.5)));
        // An inactive block does not count.
        assert!(!selected(&f(None, &["LOST"], Require::Any), &u, Some(12.5)));
        assert!(selected(
            &f(Some(50.0), &["fines"], Require::Any),
            &u,
            Some(12.5)
        ));
        assert!(!selected(
            &f(Some(50.0), &["FINES"], Require::All),
            &u,
            Some(12.5)
        ));
    }
}
