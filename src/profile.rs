//! The profile: a TOML file that says how one kind of extract maps to Alma.
//!
//! This module only *describes* the profile (serde types with their
//! defaults) and loads it; [`crate::map::Mapper`] compiles it against an
//! input header into something that can map records. Everything a campus
//! script hard-codes (columns, code tables, date rules, which fields are
//! mandatory) is expressed here so that no code change is needed when the
//! SIS changes. `docs/profile.md` documents every key with a worked example.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A whole profile file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// How the extract is laid out.
    pub input: InputSpec,
    /// Output naming.
    #[serde(default)]
    pub output: OutputSpec,
    /// Run-wide rules: mandatory fields, the match identifier, identifier
    /// comparison, date formats.
    #[serde(default)]
    pub rules: RulesSpec,
    /// Single-valued user fields, keyed by Alma element name
    /// (`primary_id`, `last_name`, `expiry_date`, ...).
    #[serde(default)]
    pub fields: BTreeMap<String, FieldSpec>,
    /// Address segments, in the order they are emitted.
    #[serde(default)]
    pub addresses: Vec<AddressSpec>,
    /// Email segments, in the order they are emitted.
    #[serde(default)]
    pub emails: Vec<EmailSpec>,
    /// Phone segments, in the order they are emitted.
    #[serde(default)]
    pub phones: Vec<PhoneSpec>,
    /// Additional identifiers (barcode, university id, ...).
    #[serde(default)]
    pub identifiers: Vec<IdentifierSpec>,
    /// User statistics.
    #[serde(default)]
    pub statistics: Vec<StatisticSpec>,
    /// User notes.
    #[serde(default)]
    pub notes: Vec<NoteSpec>,
    /// Value tables (SIS code → Alma code), referenced by name from fields.
    #[serde(default)]
    pub tables: BTreeMap<String, TableSpec>,
}

/// Input dialect of a delimited extract.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Layout kind: `delimited` (the default) or `fixed_width`.
    #[serde(default)]
    pub format: InputFormat,
    /// Field delimiter: one ASCII character, or `tab`. By default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Quote character, or `none` to disable quoting. By default `"`.
    #[serde(default = "default_quote")]
    pub quote: String,
    /// Whether the first row of each file holds the column names (for
    /// fixed-width layouts: whether to skip the first line). By default
    /// `true` for delimited and `false` for fixed-width layouts.
    #[serde(default)]
    pub header: Option<bool>,
    /// Column names. Required when `header = false`; with a header row
    /// they replace its names (for headers with repeated or awkward
    /// names), and the header row must have as many columns.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Encoding label: `utf-8`, `auto`, or any WHATWG label
    /// (`windows-1252`, `iso-8859-1`, `utf-16le`, ...). By default `utf-8`
    /// (a UTF-8 byte-order mark is accepted and skipped).
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// What to do with a record holding bytes that are invalid in the
    /// declared encoding. By default `reject`.
    #[serde(default)]
    pub invalid_bytes: InvalidBytes,
    /// What to do with characters XML 1.0 forbids (control characters,
    /// U+FFFE/U+FFFF). By default `remove`.
    #[serde(default)]
    pub forbidden_chars: ForbiddenChars,
    /// What to do with a record with more or fewer fields than the
    /// columns. By default `reject`.
    #[serde(default)]
    pub ragged_rows: RaggedRows,
    /// Columns whose quoted values may hold line breaks (a free-text note).
    /// A record whose line breaks all fall inside these columns may span
    /// lines (see docs/profile.md §3.2); any other line break inside
    /// quotes rejects the record's first line as `unbalanced_quote` and
    /// reading resumes on the next line. By default none.
    #[serde(default)]
    pub multiline: Vec<String>,
    /// Fixed-width layouts: accept lines shorter than the layout (missing
    /// trailing fields read as empty) and longer ones whose extra text is
    /// blank. By default `false`: such a line is rejected
    /// (`record_length`).
    #[serde(default)]
    pub ragged: bool,
    /// A record of a `multiline` column spanning more lines than this is
    /// taken for an unbalanced quote: its first line is rejected and
    /// reading resumes on the next line. By default 20.
    #[serde(default = "default_max_record_lines")]
    pub max_record_lines: u64,
    /// A record longer than this many bytes is rejected. By default
    /// 65536.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: u64,
    /// A field longer than this many bytes rejects its record. By default
    /// 4096.
    #[serde(default = "default_max_field_bytes")]
    pub max_field_bytes: u64,
    /// Fixed-width layouts: whether `start` and `length` count characters
    /// (the default) or bytes of the UTF-8 text.
    #[serde(default)]
    pub units: Units,
    /// Fixed-width layouts: the fields of each line.
    #[serde(default)]
    pub fields: Vec<FixedField>,
    /// Fixed-width layouts: repeating segments (address blocks), which
    /// become numbered columns `<prefix><n>_<name>`.
    #[serde(default)]
    pub segments: Vec<FixedSegment>,
    /// Alternative header spellings: logical column name → the names a
    /// header may use for it. The first spelling found in the header is
    /// renamed to the logical name.
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    /// Side files joined to every record by key (a barcode file, an
    /// expiry date per class); their value columns are added to the
    /// extract's.
    #[serde(default)]
    pub side_files: Vec<SideFileSpec>,
}

/// A side file: a small delimited file without a header whose value
/// columns are joined to each record by key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SideFileSpec {
    /// The file, relative to the profile's directory.
    pub path: String,
    /// Field delimiter: one ASCII character, or `tab`. By default `|`.
    #[serde(default = "default_side_delimiter")]
    pub delimiter: String,
    /// Names of the file's columns, in order.
    pub columns: Vec<String>,
    /// The side file's key column. Without one the file's first row
    /// applies to every record (a single expiry date for the run).
    pub key: Option<String>,
    /// The extract's column matched against `key`. By default the column
    /// named like `key`.
    pub join_on: Option<String>,
}

/// Bytes invalid in the declared encoding.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvalidBytes {
    /// Reject the record (`invalid_encoding`, with line and column).
    #[default]
    Reject,
    /// Replace each invalid sequence with U+FFFD and count it.
    Replace,
}

/// Characters XML 1.0 forbids.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ForbiddenChars {
    /// Remove them and count them.
    #[default]
    Remove,
    /// Replace each with U+FFFD and count it.
    Replace,
}

/// Records with more or fewer fields than the columns.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RaggedRows {
    /// Reject them (`field_count`).
    #[default]
    Reject,
    /// Pad a short record with empty fields; drop extra fields when they
    /// are all blank (a trailing delimiter); reject otherwise.
    Pad,
}

/// Units of fixed-width positions.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Units {
    /// Characters (Unicode scalar values).
    #[default]
    Chars,
    /// Bytes of the UTF-8 text.
    Bytes,
}

/// One fixed-width field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedField {
    /// Column name the profile refers to.
    pub name: String,
    /// 1-based position of the first unit (in a segment: relative to the
    /// segment's start).
    pub start: usize,
    /// Width in units.
    pub length: usize,
}

/// A repeating fixed-width segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedSegment {
    /// Column prefix: field `LINE1` of the 2nd repetition is `<prefix>2_LINE1`.
    pub prefix: String,
    /// 1-based position where the first repetition starts.
    pub start: usize,
    /// Width of one repetition (the stride).
    pub length: usize,
    /// How many repetitions the layout has room for.
    pub count: usize,
    /// The fields of one repetition.
    pub fields: Vec<FixedField>,
}

/// Input layout kind.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// Delimiter-separated values (CSV, pipe, tab).
    #[default]
    Delimited,
    /// Fixed-width lines (`fields` and `segments`).
    FixedWidth,
}

/// Output naming.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Name prefix of zips (`<prefix>_001.zip`) and their XML entries
    /// (`<prefix>_001_01.xml`). By default `alma_users`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            prefix: default_prefix(),
        }
    }
}

/// Run-wide rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSpec {
    /// Fields without which a record is rejected. By default
    /// `primary_id`, `last_name`, `user_group`, `expiry_date`.
    #[serde(default = "default_mandatory")]
    pub mandatory: Vec<String>,
    /// The identifier Alma's integration profile matches on:
    /// `primary_id` (the default) or an identifier `id_type`. Every user
    /// written carries it.
    #[serde(default = "default_match_id")]
    pub match_id: String,
    /// How identifier values are compared for uniqueness. By default
    /// `insensitive`, Alma's rule since 2018.
    #[serde(default)]
    pub identifier_case: IdentifierCase,
    /// Input date formats (chrono `strftime` syntax), tried in order. By
    /// default `["%Y-%m-%d"]`. A field may override them.
    #[serde(default = "default_date_formats")]
    pub date_formats: Vec<String>,
}

impl Default for RulesSpec {
    fn default() -> Self {
        RulesSpec {
            mandatory: default_mandatory(),
            match_id: default_match_id(),
            identifier_case: IdentifierCase::default(),
            date_formats: default_date_formats(),
        }
    }
}

/// How identifier values are compared for uniqueness.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierCase {
    /// Every identifier compares case-insensitively after trimming.
    #[default]
    Insensitive,
    /// Additional identifiers compare exactly with each other (Alma
    /// institutions loaded before June 2018); primary ids, and any
    /// primary-versus-additional comparison, stay case-insensitive.
    Sensitive,
}

/// Where one value comes from and how it is cleaned.
///
/// Exactly one source key may be given: `column`, `value` (a constant),
/// `template` (`"{Last}, {First}"`) or `first_of` (the first non-empty of
/// several columns). Date fields may have no source and only a `default`
/// rule.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Take the value from this column.
    pub column: Option<String>,
    /// A constant value.
    pub value: Option<String>,
    /// A template over column names in braces; empty when every column it
    /// names is empty.
    pub template: Option<String>,
    /// The first non-empty of these columns.
    pub first_of: Option<Vec<String>>,
    /// Trim surrounding whitespace. By default `true`.
    pub trim: Option<bool>,
    /// Change letter case.
    pub case: Option<CaseRule>,
    /// Translate through this value table (see [`TableSpec`]).
    pub table: Option<String>,
    /// Cut a value longer than the schema allows instead of rejecting the
    /// record (counted in the summary). By default `false`.
    #[serde(default)]
    pub truncate: bool,
    /// Used when the source gives an empty value. For date fields this is
    /// a date rule (`+6y`, `+180d`, `expiry_date+1y`, `2030-06-30`).
    pub default: Option<String>,
    /// Date fields only: input formats for this field, overriding
    /// `rules.date_formats`.
    pub formats: Option<Vec<String>>,
    /// Date fields only: a date rule per (mapped) user group, used when the
    /// source is empty and before `default`.
    pub by_group: Option<BTreeMap<String, String>>,
    /// Date fields only: the century of a two-digit year (`%y`): `"past"`
    /// (the latest date not after `--as-of`) or how many years after the
    /// as-of year the hundred-year window reaches (0–99). By default
    /// `"past"` for `birth_date`, 50 for every other date.
    pub two_digit_year: Option<TwoDigitYear>,
}

/// A `two_digit_year` setting as written: a word or a number.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TwoDigitYear {
    /// A number of years after the as-of year (`50`).
    Years(i64),
    /// `"past"` (or a number written as a string).
    Word(String),
}

impl TwoDigitYear {
    /// The setting as text, for [`crate::map::rules::Century::parse`].
    pub fn text(&self) -> String {
        match self {
            TwoDigitYear::Years(n) => n.to_string(),
            TwoDigitYear::Word(w) => w.clone(),
        }
    }
}

/// Letter-case transform.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CaseRule {
    /// UPPER CASE.
    Upper,
    /// lower case.
    Lower,
    /// Title Case (first letter of each word upper, rest lower).
    Title,
}

/// A segment type code: a constant (`"home"`) or a value spec.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TypeSpec {
    /// A constant code.
    Code(String),
    /// A code taken from the record.
    Field(Box<FieldSpec>),
}

/// One address segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressSpec {
    /// Address type codes (`home`, `work`, `school`, `alternative`).
    pub types: Vec<TypeSpec>,
    /// Mark preferred. Only the first present address marked preferred
    /// keeps the mark, so a fallback order can be declared.
    #[serde(default)]
    pub preferred: bool,
    /// Street line 1 (needed for the address to be emitted).
    pub line1: Option<FieldSpec>,
    /// Line 2.
    pub line2: Option<FieldSpec>,
    /// Line 3.
    pub line3: Option<FieldSpec>,
    /// Line 4.
    pub line4: Option<FieldSpec>,
    /// Line 5.
    pub line5: Option<FieldSpec>,
    /// City (needed for the address to be emitted).
    pub city: Option<FieldSpec>,
    /// State or province.
    pub state_province: Option<FieldSpec>,
    /// Postal code.
    pub postal_code: Option<FieldSpec>,
    /// Country code (ISO 3166 alpha-3, usually through a table).
    pub country: Option<FieldSpec>,
    /// Free-text note.
    pub address_note: Option<FieldSpec>,
    /// Start date (date rules apply).
    pub start_date: Option<FieldSpec>,
    /// End date (date rules apply).
    pub end_date: Option<FieldSpec>,
}

/// One email segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// The address (needed for the email to be emitted).
    pub address: FieldSpec,
    /// Email type codes (`personal`, `work`, `school`, `alternative`).
    pub types: Vec<TypeSpec>,
    /// Mark preferred (first present one wins).
    #[serde(default)]
    pub preferred: bool,
    /// Optional description.
    pub description: Option<FieldSpec>,
}

/// One phone segment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneSpec {
    /// The number (needed for the phone to be emitted).
    pub number: FieldSpec,
    /// Phone type codes (`home`, `mobile`, `office`, ...).
    pub types: Vec<TypeSpec>,
    /// Mark preferred (first present one wins).
    #[serde(default)]
    pub preferred: bool,
    /// Mark preferred for SMS (first present one wins).
    #[serde(default)]
    pub preferred_sms: bool,
}

/// One additional identifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierSpec {
    /// Alma identifier type code (`BARCODE`, `UNIV_ID`, ...).
    pub id_type: String,
    /// Where the identifier value comes from.
    pub value: FieldSpec,
    /// Optional note.
    pub note: Option<FieldSpec>,
    /// Identifier status. By default `ACTIVE`.
    #[serde(default = "default_active")]
    pub status: String,
}

/// One user statistic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticSpec {
    /// Statistic category code (needed for the statistic to be emitted).
    pub category: FieldSpec,
    /// Category type code.
    pub category_type: Option<FieldSpec>,
    /// Statistic note.
    pub note: Option<FieldSpec>,
}

/// One user note.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteSpec {
    /// Note type code (`REGISTAR`, `LIBRARY`, `OTHER`, ...).
    pub note_type: String,
    /// Note text (needed for the note to be emitted).
    pub text: FieldSpec,
    /// Whether the patron sees the note. By default `false`.
    #[serde(default)]
    pub user_viewable: bool,
    /// Whether the note pops up at circulation. By default `false`.
    #[serde(default)]
    pub popup_note: bool,
}

/// A value table: SIS code → Alma code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// The translations. Keys are compared after the field's trim/case.
    pub map: BTreeMap<String, String>,
    /// Value for unknown codes under `unknown = "default"`.
    pub default: Option<String>,
    /// What to do with a code the table does not know. By default
    /// `reject`. Unknown codes are counted in the summary in every case.
    #[serde(default)]
    pub unknown: UnknownPolicy,
}

/// What to do with a code a value table does not know.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnknownPolicy {
    /// Reject the record (reason `unknown_code`).
    #[default]
    Reject,
    /// Use the table's `default`.
    Default,
    /// Pass the code through unchanged.
    Pass,
}

fn default_delimiter() -> String {
    ",".into()
}
fn default_quote() -> String {
    "\"".into()
}
fn default_encoding() -> String {
    "utf-8".into()
}
fn default_side_delimiter() -> String {
    "|".into()
}
fn default_max_record_lines() -> u64 {
    20
}
fn default_max_record_bytes() -> u64 {
    65536
}
fn default_max_field_bytes() -> u64 {
    4096
}
fn default_prefix() -> String {
    "alma_users".into()
}
fn default_mandatory() -> Vec<String> {
    ["primary_id", "last_name", "user_group", "expiry_date"]
        .into_iter()
        .map(String::from)
        .collect()
}
fn default_match_id() -> String {
    "primary_id".into()
}
fn default_date_formats() -> Vec<String> {
    vec!["%Y-%m-%d".into()]
}
fn default_active() -> String {
    "ACTIVE".into()
}

impl Profile {
    /// Reads and parses a profile file. Semantic checks (known field
    /// names, columns present, table references) happen when the profile
    /// is compiled by [`crate::map::Mapper::new`].
    pub fn load(path: &Path) -> Result<Profile> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Profile {
            path: path.to_path_buf(),
            message: format!("cannot read the file: {e}"),
        })?;
        Profile::parse(&text).map_err(|message| Error::Profile {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses profile text; the error is a human-readable message.
    pub fn parse(text: &str) -> std::result::Result<Profile, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
