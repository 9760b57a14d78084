//! Reject reasons, run counters and the two report files.
//!
//! Every record read ends up either written or in `rejects.csv`; the
//! counters here are what `summary.json` reports and what the run checks
//! before it publishes anything (records read = written + rejected).
//! Nothing here ever holds a name, email or address: rejects carry the
//! primary id, the position and a reason.

use std::collections::BTreeMap;

use serde::Serialize;

/// Why a record was rejected. The codes are stable: schedulers and
/// librarians' spreadsheets key on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The record has more or fewer fields than the header.
    FieldCount,
    /// The record holds bytes invalid in the declared encoding
    /// (`invalid_bytes = "reject"`), or a column the profile uses is not
    /// valid UTF-8.
    InvalidEncoding,
    /// A mandatory field is empty.
    MissingField,
    /// A date does not parse with the profile's formats or is out of range.
    InvalidDate,
    /// A value table does not know a code and its policy is `reject`.
    UnknownCode,
    /// A value is longer than the schema allows and may not be truncated.
    TooLong,
    /// An identifier is already used by an earlier record.
    DuplicateId,
    /// The identifier Alma's profile matches on is missing.
    MissingMatchId,
    /// A quote opened and did not close on its line outside a `multiline`
    /// column, or the record it started broke a `multiline` rule (ran
    /// past `max_record_lines`, to the end of the file, to the wrong
    /// field count, or over a line that is a record on its own): only
    /// the record's first line is rejected; reading resumed on the next
    /// line.
    UnbalancedQuote,
    /// The record is longer than `max_record_bytes`.
    RecordTooLong,
    /// A field is longer than `max_field_bytes`.
    FieldTooLong,
    /// The record holds a NUL byte (often a UTF-16 file read as UTF-8).
    NulByte,
    /// The record repeats the header row (files concatenated with their
    /// headers).
    HeaderRow,
    /// A fixed-width line is shorter or longer than the layout (and the
    /// profile does not set `ragged = true`).
    RecordLength,
    /// An identifier value is already held in Alma by another user
    /// (`convert --alma-users`: Alma's "already taken AcrossInstitution").
    TakenInAlma,
    /// The match identifier finds an internal account in Alma (Alma's
    /// "User is not external").
    InternalInAlma,
}

impl Reason {
    /// The stable reason code written to `rejects.csv` and `summary.json`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::FieldCount => "field_count",
            Reason::InvalidEncoding => "invalid_encoding",
            Reason::MissingField => "missing_field",
            Reason::InvalidDate => "invalid_date",
            Reason::UnknownCode => "unknown_code",
            Reason::TooLong => "too_long",
            Reason::DuplicateId => "duplicate_id",
            Reason::MissingMatchId => "missing_match_id",
            Reason::UnbalancedQuote => "unbalanced_quote",
            Reason::RecordTooLong => "record_too_long",
            Reason::FieldTooLong => "field_too_long",
            Reason::NulByte => "nul_byte",
            Reason::HeaderRow => "header_row",
            Reason::RecordLength => "record_length",
            Reason::TakenInAlma => "taken_in_alma",
            Reason::InternalInAlma => "internal_in_alma",
        }
    }

    /// Whether a record rejected for this reason has columns that cannot
    /// be trusted (broken quoting, a wrong field count or length): its
    /// `primary_id` is then left empty in `rejects.csv`, since whatever
    /// sits in the primary-id column may be another patron's text.
    pub fn columns_untrusted(self) -> bool {
        matches!(
            self,
            Reason::UnbalancedQuote
                | Reason::FieldCount
                | Reason::RecordTooLong
                | Reason::NulByte
                | Reason::HeaderRow
                | Reason::RecordLength
        )
    }
}

/// Why mapping one record failed: the reason, the profile field and a
/// message a librarian understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    /// Reason code.
    pub reason: Reason,
    /// The profile field (`user_group`, `addresses[1].city`, ...).
    pub field: String,
    /// Human message, without personal data.
    pub message: String,
}

impl Fail {
    /// Builds a failure.
    pub fn new(reason: Reason, field: impl Into<String>, message: impl Into<String>) -> Fail {
        Fail {
            reason,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One row of `rejects.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Index of the input file.
    pub file: u32,
    /// Line where the record starts.
    pub line: u64,
    /// Line where the record ends.
    pub last_line: u64,
    /// Record number across the run.
    pub number: u64,
    /// Primary id, when the record had one.
    pub primary_id: String,
    /// What went wrong.
    pub fail: Fail,
}

/// Column names of `warnings.csv`: like `rejects.csv`, for records that
/// were kept with a field left out.
pub const WARNING_HEADER: [&str; 8] = [
    "source_file",
    "line",
    "last_line",
    "record",
    "primary_id",
    "code",
    "field",
    "message",
];

/// An input declared UTF-8 whose invalid bytes read as another encoding:
/// the extract was most likely exported in that encoding ("ANSI").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncodingSuspect {
    /// The input path as given.
    pub path: String,
    /// The encoding the profile declares.
    pub declared: String,
    /// The encoding the bytes look like (`windows-1252`).
    pub looks_like: String,
    /// Records holding invalid bytes (rejected as `invalid_encoding`, or
    /// kept with U+FFFD under `invalid_bytes = "replace"`).
    pub invalid_records: u64,
}

/// Column names of `rejects.csv`.
pub const REJECT_HEADER: [&str; 8] = [
    "source_file",
    "line",
    "last_line",
    "record",
    "primary_id",
    "reason",
    "field",
    "message",
];

/// Counters gathered while mapping records. They cover every record that
/// was mapped, including records later rejected as duplicates, so a new
/// code is noticed even when its record failed for another reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MapStats {
    /// Segments not written because they were incomplete or empty, by kind
    /// (`address_incomplete`, `identifier_empty`, ...).
    pub dropped_segments: BTreeMap<String, u64>,
    /// Codes a value table did not know, by field then code.
    pub unknown_codes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Values cut to the schema's length, by field.
    pub truncated: BTreeMap<String, u64>,
    /// Characters XML 1.0 forbids, removed from values.
    pub forbidden_chars_removed: u64,
    /// Characters XML 1.0 forbids, replaced with U+FFFD
    /// (`forbidden_chars = "replace"`).
    pub forbidden_chars_replaced: u64,
    /// Byte sequences invalid in the declared encoding, replaced with
    /// U+FFFD (`invalid_bytes = "replace"`), in records read.
    pub invalid_bytes_replaced: u64,
    /// Blank lines skipped (they are not records).
    pub blank_lines: u64,
    /// Optional fields left out because their value could not be read (an
    /// unreadable birth date), by field label; the patron is written
    /// without them and each is a row of `warnings.csv`.
    pub dropped_fields: BTreeMap<String, u64>,
    /// The drops of the record being mapped, for `warnings.csv`: whoever
    /// maps a record takes them (see [`MapStats::take_warnings`]) and
    /// writes them with the record's position.
    #[serde(skip)]
    pub warnings: Vec<Fail>,
    /// Records that held bytes invalid in the declared encoding (rejected
    /// or replaced), by input file index, for `encoding_suspect`.
    #[serde(skip)]
    pub invalid_byte_records: BTreeMap<u32, u64>,
    /// Where the first replaced invalid sequences were, in record order:
    /// `(file index, line, column)`, at most [`POSITIONS_KEPT`]. Written to
    /// the summary with file paths (`invalid_bytes_first`).
    #[serde(skip)]
    pub invalid_bytes_at: Vec<(u32, u64, u64)>,
}

/// How many positions of replaced invalid bytes the summary lists.
pub const POSITIONS_KEPT: usize = 20;

/// A position in an input, for the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Position {
    /// The input path as given.
    pub path: String,
    /// 1-based line.
    pub line: u64,
    /// 1-based column, in characters.
    pub column: u64,
}

impl MapStats {
    /// Counts one dropped segment of `kind`.
    pub fn drop_segment(&mut self, kind: &str) {
        *self.dropped_segments.entry(kind.to_string()).or_default() += 1;
    }

    /// Counts `n` forbidden characters removed or, with `replaced`,
    /// replaced.
    pub fn count_forbidden(&mut self, n: u64, replaced: bool) {
        if replaced {
            self.forbidden_chars_replaced += n;
        } else {
            self.forbidden_chars_removed += n;
        }
    }

    /// Leaves out an optional field whose value could not be read: counted
    /// under `dropped_fields` and kept for the warnings report.
    pub fn drop_field(&mut self, fail: Fail) {
        *self.dropped_fields.entry(fail.field.clone()).or_default() += 1;
        self.warnings.push(fail);
    }

    /// The warnings of the record just mapped, leaving none behind.
    pub fn take_warnings(&mut self) -> Vec<Fail> {
        std::mem::take(&mut self.warnings)
    }

    /// Notes where a record's first replaced invalid sequence was (kept
    /// for the first [`POSITIONS_KEPT`] records with one).
    pub fn note_replaced(&mut self, file: u32, line: u64, column: u64) {
        if self.invalid_bytes_at.len() < POSITIONS_KEPT {
            self.invalid_bytes_at.push((file, line, column));
        }
    }

    /// Counts one unknown `code` seen in `field`.
    pub fn unknown_code(&mut self, field: &str, code: &str) {
        *self
            .unknown_codes
            .entry(field.to_string())
            .or_default()
            .entry(code.to_string())
            .or_default() += 1;
    }

    /// Adds another shard's counters to these.
    pub fn merge(&mut self, other: MapStats) {
        for (k, v) in other.dropped_segments {
            *self.dropped_segments.entry(k).or_default() += v;
        }
        for (f, codes) in other.unknown_codes {
            let e = self.unknown_codes.entry(f).or_default();
            for (c, n) in codes {
                *e.entry(c).or_default() += n;
            }
        }
        for (k, v) in other.truncated {
            *self.truncated.entry(k).or_default() += v;
        }
        self.forbidden_chars_removed += other.forbidden_chars_removed;
        self.forbidden_chars_replaced += other.forbidden_chars_replaced;
        self.invalid_bytes_replaced += other.invalid_bytes_replaced;
        self.blank_lines += other.blank_lines;
        for (k, v) in other.dropped_fields {
            *self.dropped_fields.entry(k).or_default() += v;
        }
        self.warnings.extend(other.warnings);
        for (k, v) in other.invalid_byte_records {
            *self.invalid_byte_records.entry(k).or_default() += v;
        }
        // Shards merge in input order, so these stay the first ones.
        let room = POSITIONS_KEPT.saturating_sub(self.invalid_bytes_at.len());
        self.invalid_bytes_at
            .extend(other.invalid_bytes_at.into_iter().take(room));
    }
}

/// One zip written by the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZipInfo {
    /// File name inside the output directory.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// XML entry names, in stored order.
    pub entries: Vec<String>,
    /// Users in the zip.
    pub users: u64,
    /// SHA-256 of the zip, lower-case hex.
    pub sha256: String,
}

/// One input file's share of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputInfo {
    /// The path as given on the command line.
    pub path: String,
    /// Records read from it.
    pub records: u64,
    /// What became of each of its physical lines (`convert`; absent for
    /// `repack`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines_read: Option<LineCounts>,
    /// Size in bytes (`convert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the file, lower-case hex (`convert`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Physical lines of the input by outcome. Every line is exactly one of
/// these, so `total` = the rest added up; the run refuses to publish
/// otherwise. `total` is counted from the text alone (line breaks plus a
/// final unterminated line), independently of the reader.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LineCounts {
    /// Lines in the input.
    pub total: u64,
    /// Lines of header rows (a fixed-width title line included).
    pub header: u64,
    /// Blank lines (for fixed-width layouts: lines of only spaces too).
    pub blank: u64,
    /// Lines of records written as users.
    pub written: u64,
    /// Lines of rejected records.
    pub rejected: u64,
    /// Lines of records superseded by another record of the same person
    /// (`convert --job`).
    pub superseded: u64,
}

impl LineCounts {
    /// The lines given an outcome.
    pub fn accounted(&self) -> u64 {
        self.header + self.blank + self.written + self.rejected + self.superseded
    }

    /// Adds another input's counts.
    pub fn add(&mut self, o: &LineCounts) {
        self.total += o.total;
        self.header += o.header;
        self.blank += o.blank;
        self.written += o.written;
        self.rejected += o.rejected;
        self.superseded += o.superseded;
    }
}

/// Everything `summary.json` holds. Deterministic: no clock, no thread
/// count, maps sorted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The patronload version that wrote it.
    pub tool_version: String,
    /// SHA-256 of the profile (`convert --profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile_sha256: Option<String>,
    /// SHA-256 of the job file (`convert --job`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_sha256: Option<String>,
    /// The `--as-of` date every date rule used.
    pub as_of: String,
    /// The inputs in processing order.
    pub inputs: Vec<InputInfo>,
    /// Records read (all inputs).
    pub records_read: u64,
    /// Physical lines of all inputs by outcome (`convert`; absent for
    /// `repack`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines_read: Option<LineCounts>,
    /// Users written to the zips.
    pub users_written: u64,
    /// Records rejected (= rows of `rejects.csv`).
    pub rejected: u64,
    /// Rejected records by reason code.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Rejected / read, in percent.
    pub reject_rate_percent: f64,
    /// The threshold above which the run exits with status 3.
    pub reject_threshold_percent: f64,
    /// Whether the threshold was exceeded.
    pub reject_threshold_exceeded: bool,
    /// Records rejected because an identifier was already taken.
    pub duplicate_identifiers: u64,
    /// Counters from mapping.
    #[serde(flatten)]
    pub map: MapStats,
    /// Where the first replaced invalid byte sequences were (one per
    /// record, the first [`POSITIONS_KEPT`] records in input order).
    pub invalid_bytes_first: Vec<Position>,
    /// Inputs declared UTF-8 that look like another encoding; absent when
    /// none does. Any entry makes the run exit with status 3.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encoding_suspect: Vec<EncodingSuspect>,
    /// Rows of `warnings.csv`: fields left out of written or rejected
    /// records (each also counted under `dropped_fields`).
    pub warnings: u64,
    /// Users written per user group (`(none)` when the user has none).
    pub users_by_group: BTreeMap<String, u64>,
    /// The zips, in name order.
    pub zips: Vec<ZipInfo>,
    /// Person matching across the feeds of a job (`convert --job`); absent
    /// in a single-profile run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobSummary>,
    /// What `repack` repaired in its inputs, by finding code (`bom`,
    /// `not_utf8`, `root_element`, ...). Absent for `convert`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub repaired: BTreeMap<String, u64>,
    /// Change detection against the state file (`--state`): `changes`,
    /// `changes_by_field`, `guards` and `state`; absent without a state.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateReport>,
    /// When this run started, how long its stages took, and the exit
    /// status it ends with (for monitoring). The only part of the summary
    /// that differs between two runs of the same inputs; absent for
    /// `repack`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunInfo>,
}

/// Users by how they compare with what the state file says was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// Written, never sent before.
    pub new: u64,
    /// Written, other than last sent.
    pub changed: u64,
    /// Written, the same as last sent.
    pub unchanged: u64,
    /// Sent before, active, and not in this run's feed.
    pub departed: u64,
    /// Written again after they departed.
    pub returned: u64,
}

/// One guard against a broken extract, as checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardCheck {
    /// `population_drop`, `departed`, `group_changed`, `field_changed` or
    /// `no_users_written`.
    pub name: String,
    /// The field, for `field_changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Users concerned.
    pub count: u64,
    /// Out of how many.
    pub of: u64,
    /// `count` / `of` in percent.
    pub percent: f64,
    /// The limit in percent (above it the guard trips).
    pub limit_percent: f64,
    /// Whether the guard tripped.
    pub tripped: bool,
}

/// The state part of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateReport {
    /// Users by kind of change.
    pub changes: Changes,
    /// Changed users by element name (`last_name`, `phones`, ...).
    pub changes_by_field: BTreeMap<String, u64>,
    /// Every guard checked.
    pub guards: Vec<GuardCheck>,
    /// The state file and this run's place in it.
    pub state: StateInfo,
}

/// The run as the state file records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StateInfo {
    /// The state file.
    pub path: String,
    /// This run's number in the state file.
    pub run: i64,
    /// `full` or `delta`.
    pub package: String,
    /// `ignore` or `expire`.
    pub departed: String,
    /// Users in the package (for a delta: new, changed, returned and
    /// expired).
    pub users_sent: u64,
    /// Departed users sent once more with an expiry date.
    pub expired: u64,
    /// The last committed run compared against, if any.
    pub previous_run: Option<i64>,
    /// Active users of the last committed run.
    pub previous_users: u64,
    /// Whether `--accept-changes` let tripped guards through.
    pub accepted_changes: bool,
    /// Earlier runs published but never committed (a crash or a failed
    /// delivery), now abandoned: their users were compared with the last
    /// committed state, so they are sent again.
    pub abandoned_runs: Vec<i64>,
}

/// One source of a job and its share of the records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// The source's name in the job file.
    pub name: String,
    /// Records read from its inputs.
    pub records: u64,
    /// Users written that came from it.
    pub users_written: u64,
}

/// The person-matching part of `summary.json` (rows of `duplicates.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    /// What records are matched on: `primary_id` or an identifier type.
    pub match_on: String,
    /// The sources in job order.
    pub sources: Vec<SourceInfo>,
    /// People with more than one record.
    pub people_matched: u64,
    /// Records not written because a record of higher precedence
    /// represents the same person (= rows of `duplicates.csv`). Records
    /// read = users written + rejected + superseded.
    pub superseded: u64,
    /// Superseded records by the rule that decided.
    pub decided_by: BTreeMap<String, u64>,
    /// Values merged from superseded records into their winners.
    pub merged_values: u64,
}

/// The wall-clock side of a run, in `summary.json` under `run`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// Start time, RFC 3339, UTC, to the second.
    pub started_at: String,
    /// Wall time per stage, in order: `convert` (read, map, dedupe and
    /// compress, which overlap in the pipeline) and `reports` (the checks
    /// and the reports written before the publish step).
    pub stages: Vec<StageSeconds>,
    /// The exit status the run ends with once published: 0, or 3 when the
    /// reject rate is over the threshold or an encoding is suspect (a run
    /// that ends otherwise publishes no summary).
    pub exit_status: u8,
    /// CPU time per stage of the parallel engine (absent for the
    /// reference engine, whose one thread does everything in turn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s: Option<CpuSeconds>,
}

/// CPU seconds (to the millisecond) each stage of the parallel engine
/// spent, over all threads: what compression costs against the rest, and
/// how busy the one ordered thread is (issue 18). Thread CPU time where
/// the platform has a clock for it, busy wall time elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CpuSeconds {
    /// Mapping tasks: parse, map and serialize (a job's second pass).
    pub map: f64,
    /// The ordered consumer: opening and decoding the inputs, then
    /// numbering, claiming, rejecting and cutting documents, in order (a
    /// job's second pass, whose records it also parses).
    pub consume: f64,
    /// Compressing XML documents into zip entries.
    pub compress: f64,
    /// Placing compressed entries into zip parts, in order.
    pub place: f64,
}

/// One stage of a run and its wall time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageSeconds {
    /// The stage's name.
    pub name: String,
    /// Seconds, to the millisecond.
    pub seconds: f64,
}
