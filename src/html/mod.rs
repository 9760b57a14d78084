//! `report.html`: the run report for a person, published beside every
//! package with `rejects.csv` and `summary.json`.
//!
//! One self-contained file (inline CSS and SVG charts, no script, nothing
//! fetched) rendered from a compiled `askama` template
//! (`templates/report.html`). It is bounded whatever the run's size: rejects
//! are aggregated by reason and field as they are written
//! ([`RejectDigest`]) with at most [`EXAMPLES_PER_REASON`] examples each,
//! and long lists (unknown codes, user groups) are cut with a count of the
//! rest.
//!
//! **Never** holds a name, email, address, phone or birth date: it shows
//! what `rejects.csv` and `summary.json` show (ids, files, lines, field
//! names, reason codes, codes) and nothing else of the input.

mod chart;

use std::collections::BTreeMap;

use askama::Template;

use crate::profile::Profile;
use crate::report::Summary;

use chart::{BarChart, TrendChart};

/// Name of the report in the output directory.
pub const REPORT_FILE: &str = "report.html";

/// Examples kept per reject reason.
pub const EXAMPLES_PER_REASON: usize = 5;

/// Distinct unknown codes listed per field; the rest are counted.
const CODES_LISTED: usize = 50;

/// Bars per chart; the rest are added up in one "others" bar.
const BARS: usize = 25;

/// The most characters of a message an example shows.
const MESSAGE_CHARS: usize = 300;

/// One rejected record shown as an example of its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The input file.
    pub file: String,
    /// Its first line.
    pub line: u64,
    /// The record number across the run.
    pub record: u64,
    /// The primary id (empty when the record's columns cannot be trusted).
    pub primary_id: String,
    /// The profile field involved.
    pub field: String,
    /// The message of `rejects.csv` (which never quotes personal data: a
    /// date in a personal field is "not shown"), cut to a few hundred
    /// characters.
    pub message: String,
}

/// Rejects aggregated as they are written: counts by reason and field,
/// and the first few rows of each reason in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectDigest {
    /// Reason → field → records.
    pub by_reason_field: BTreeMap<String, BTreeMap<String, u64>>,
    /// Reason → its first [`EXAMPLES_PER_REASON`] rows.
    pub examples: BTreeMap<String, Vec<Example>>,
}

impl RejectDigest {
    /// Counts one row of a reject report (the columns of
    /// [`crate::report::REJECT_HEADER`]).
    #[allow(clippy::too_many_arguments)]
    pub fn note(
        &mut self,
        file: &str,
        line: u64,
        record: u64,
        primary_id: &str,
        reason: &str,
        field: &str,
        message: &str,
    ) {
        let fields = match self.by_reason_field.get_mut(reason) {
            Some(f) => f,
            None => self.by_reason_field.entry(reason.to_string()).or_default(),
        };
        match fields.get_mut(field) {
            Some(n) => *n += 1,
            None => {
                fields.insert(field.to_string(), 1);
            }
        }
        let ex = match self.examples.get_mut(reason) {
            Some(e) => e,
            None => self.examples.entry(reason.to_string()).or_default(),
        };
        if ex.len() < EXAMPLES_PER_REASON {
            ex.push(Example {
                file: file.to_string(),
                line,
                record,
                primary_id: primary_id.to_string(),
                field: field.to_string(),
                message: crate::error::excerpt(message, MESSAGE_CHARS),
            });
        }
    }
}

/// How long one stage of the run took.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTime {
    /// The stage (`read`, `compress`, `publish`, ...).
    pub name: String,
    /// Seconds.
    pub seconds: f64,
}

/// What changed since the previous run (from a state store).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Users not seen before.
    pub new: u64,
    /// Users whose XML differs from the last run's.
    pub changed: u64,
    /// Users as in the last run.
    pub unchanged: u64,
    /// Users of the last run missing from this one.
    pub departed: u64,
    /// Users seen in an earlier run, missing from the last, back now.
    pub returned: u64,
}

/// One earlier (or this) run in the trend chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrendPoint {
    /// When the run started (as the state store has it).
    pub label: String,
    /// Users written.
    pub users: u64,
    /// Records rejected.
    pub rejects: u64,
}

/// Everything the report shows. `timings`, `changes` and `trend` are
/// filled when the run has them (stage timings, a state store); their
/// sections are left out otherwise.
#[derive(Debug, Clone)]
pub struct ReportInput<'a> {
    /// The package's name prefix.
    pub prefix: &'a str,
    /// The run's summary (what `summary.json` holds).
    pub summary: &'a Summary,
    /// The rejects aggregated as `rejects.csv` was written.
    pub rejects: &'a RejectDigest,
    /// The profile table of each field, for ready-to-paste table lines
    /// (see [`field_tables`]).
    pub tables: BTreeMap<String, String>,
    /// How long each stage took.
    pub timings: Option<Vec<StageTime>>,
    /// What changed since the previous run.
    pub changes: Option<Changes>,
    /// The last runs, oldest first (at most 30 are drawn).
    pub trend: Option<Vec<TrendPoint>>,
}

/// The value table each field of `profile` translates through (top-level
/// fields; others, such as an address's country, by their label
/// `addresses[1].country`).
pub fn field_tables(profile: &Profile) -> BTreeMap<String, String> {
    let mut t: BTreeMap<String, String> = profile
        .fields
        .iter()
        .filter_map(|(k, f)| Some((k.clone(), f.table.clone()?)))
        .collect();
    for (i, a) in profile.addresses.iter().enumerate() {
        if let Some(table) = &a.country.as_ref().and_then(|c| c.table.clone()) {
            t.insert(format!("addresses[{}].country", i + 1), table.clone());
        }
    }
    t
}

/// Renders the report.
pub fn render(input: &ReportInput) -> String {
    let page = Page::new(input);
    page.render()
        .unwrap_or_else(|e| format!("<!DOCTYPE html><p>report could not be rendered: {e}</p>"))
}

/// `1234567` → `1,234,567`.
pub(crate) fn num(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A table key as TOML wants it: bare when it can be, else quoted.
fn toml_key(code: &str) -> String {
    if !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        code.to_string()
    } else {
        let mut q = String::from("\"");
        for c in code.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if c.is_control() => q.push_str(&format!("\\u{:04X}", c as u32)),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    }
}

/// One labelled number of the counts section.
struct Count {
    label: &'static str,
    value: String,
}

/// Unknown codes of one field.
struct UnknownField {
    field: String,
    total: String,
    rows: Vec<(String, String)>,
    more: String,
    paste: String,
}

/// One reason's examples.
struct ReasonExamples {
    reason: String,
    total: String,
    rows: Vec<Example>,
}

/// A key/number table row.
struct Row {
    key: String,
    value: String,
}

#[derive(Template)]
#[template(path = "report.html")]
struct Page {
    prefix: String,
    as_of: String,
    inputs: Vec<(String, String)>,
    counts: Vec<Count>,
    conservation: String,
    lines: Option<String>,
    rate: String,
    exceeded: bool,
    suspects: Vec<String>,
    by_reason: Option<BarChart>,
    by_field: Option<BarChart>,
    examples: Vec<ReasonExamples>,
    unknown: Vec<UnknownField>,
    groups: Option<BarChart>,
    dropped: Vec<Row>,
    zips: Vec<ZipRow>,
    job: Vec<Row>,
    timings: Option<BarChart>,
    changes: Option<Vec<Row>>,
    trend: Option<TrendChart>,
}

struct ZipRow {
    name: String,
    users: String,
    bytes: String,
    entries: String,
    sha256: String,
}

impl Page {
    fn new(input: &ReportInput) -> Page {
        let s = input.summary;
        let superseded = s.job.as_ref().map_or(0, |j| j.superseded);
        let mut counts = vec![
            Count {
                label: "records read",
                value: num(s.records_read),
            },
            Count {
                label: "users written",
                value: num(s.users_written),
            },
            Count {
                label: "rejected",
                value: num(s.rejected),
            },
        ];
        if s.job.is_some() {
            counts.push(Count {
                label: "superseded",
                value: num(superseded),
            });
        }
        counts.push(Count {
            label: "warnings",
            value: num(s.warnings),
        });
        let balanced = s.records_read == s.users_written + s.rejected + superseded;
        let mut conservation = format!(
            "{} read = {} written + {} rejected",
            num(s.records_read),
            num(s.users_written),
            num(s.rejected)
        );
        if s.job.is_some() {
            conservation.push_str(&format!(" + {} superseded", num(superseded)));
        }
        conservation.push_str(if balanced {
            " ✓"
        } else {
            " ✗ (does not add up)"
        });
        let lines = s.lines_read.map(|l| {
            format!(
                "{} lines = {} header + {} blank + {} written + {} rejected + {} superseded{}",
                num(l.total),
                num(l.header),
                num(l.blank),
                num(l.written),
                num(l.rejected),
                num(l.superseded),
                if l.accounted() == l.total {
                    " ✓"
                } else {
                    " ✗"
                }
            )
        });

        let by_reason = BarChart::new(
            s.rejected_by_reason
                .iter()
                .map(|(r, n)| (r.clone(), *n))
                .collect(),
            BARS,
        );
        let by_field = BarChart::new(
            input
                .rejects
                .by_reason_field
                .iter()
                .flat_map(|(r, fs)| {
                    fs.iter().map(move |(f, n)| {
                        let f = if f.is_empty() { "(record)" } else { f.as_str() };
                        (format!("{f} · {r}"), *n)
                    })
                })
                .collect(),
            BARS,
        );
        let examples = input
            .rejects
            .examples
            .iter()
            .map(|(r, rows)| ReasonExamples {
                reason: r.clone(),
                total: num(s.rejected_by_reason.get(r).copied().unwrap_or(0)),
                rows: rows.clone(),
            })
            .collect();
        let unknown = s
            .map
            .unknown_codes
            .iter()
            .map(|(field, codes)| unknown_field(field, codes, input.tables.get(field)))
            .collect();
        let groups = BarChart::new(
            s.users_by_group
                .iter()
                .map(|(g, n)| (g.clone(), *n))
                .collect(),
            BARS,
        );
        let mut dropped: Vec<Row> = Vec::new();
        let mut add = |what: &str, m: &BTreeMap<String, u64>| {
            dropped.extend(m.iter().map(|(k, n)| Row {
                key: format!("{what}: {k}"),
                value: num(*n),
            }))
        };
        add("segment dropped", &s.map.dropped_segments);
        add("field left out", &s.map.dropped_fields);
        add("value truncated", &s.map.truncated);
        add("repaired", &s.repaired);
        for (label, n) in [
            (
                "forbidden characters removed",
                s.map.forbidden_chars_removed,
            ),
            (
                "forbidden characters replaced",
                s.map.forbidden_chars_replaced,
            ),
            ("invalid bytes replaced", s.map.invalid_bytes_replaced),
        ] {
            if n > 0 {
                dropped.push(Row {
                    key: label.into(),
                    value: num(n),
                });
            }
        }
        let zips = s
            .zips
            .iter()
            .map(|z| ZipRow {
                name: z.name.clone(),
                users: num(z.users),
                bytes: num(z.bytes),
                entries: num(z.entries.len() as u64),
                sha256: z.sha256.clone(),
            })
            .collect();
        let job = s
            .job
            .as_ref()
            .map(|j| {
                let mut rows = vec![
                    Row {
                        key: format!("people in more than one record (matched on {})", j.match_on),
                        value: num(j.people_matched),
                    },
                    Row {
                        key: "records superseded".into(),
                        value: num(j.superseded),
                    },
                    Row {
                        key: "values merged into the record kept".into(),
                        value: num(j.merged_values),
                    },
                ];
                rows.extend(j.sources.iter().map(|src| Row {
                    key: format!("source {}: records read / users written", src.name),
                    value: format!("{} / {}", num(src.records), num(src.users_written)),
                }));
                rows
            })
            .unwrap_or_default();
        let timings = input.timings.as_ref().and_then(|t| {
            BarChart::with_values(
                t.iter()
                    .map(|st| {
                        (
                            st.name.clone(),
                            (st.seconds * 1000.0).round().max(0.0) as u64,
                            format!("{:.2} s", st.seconds),
                        )
                    })
                    .collect(),
            )
        });
        let changes = input.changes.map(|c| {
            [
                ("new", c.new),
                ("changed", c.changed),
                ("unchanged", c.unchanged),
                ("departed", c.departed),
                ("returned", c.returned),
            ]
            .into_iter()
            .map(|(k, n)| Row {
                key: k.into(),
                value: num(n),
            })
            .collect()
        });
        let trend = input.trend.as_ref().and_then(|t| TrendChart::new(t, 30));
        Page {
            prefix: input.prefix.to_string(),
            as_of: s.as_of.clone(),
            inputs: s
                .inputs
                .iter()
                .map(|i| (i.path.clone(), num(i.records)))
                .collect(),
            counts,
            conservation,
            lines,
            rate: format!(
                "{:.2} % rejected (threshold {} %)",
                s.reject_rate_percent, s.reject_threshold_percent
            ),
            exceeded: s.reject_threshold_exceeded,
            suspects: s
                .encoding_suspect
                .iter()
                .map(|e| {
                    format!(
                        "{} is declared {} but {} record(s) read as {}: set `encoding = \"{}\"` \
                         in [input] or export the extract as UTF-8",
                        e.path, e.declared, e.invalid_records, e.looks_like, e.looks_like
                    )
                })
                .collect(),
            by_reason,
            by_field,
            examples,
            unknown,
            groups,
            dropped,
            zips,
            job,
            timings,
            changes,
            trend,
        }
    }
}

fn unknown_field(
    field: &str,
    codes: &BTreeMap<String, u64>,
    table: Option<&String>,
) -> UnknownField {
    // Most frequent first: those are the ones worth a table line.
    let mut sorted: Vec<(&String, &u64)> = codes.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let total: u64 = codes.values().sum();
    let listed = &sorted[..sorted.len().min(CODES_LISTED)];
    let mut paste = match table {
        // Keys of the table's `map`: inside `map = { ... }`, or under a
        // `[tables.NAME.map]` section as they stand.
        Some(t) => format!(
            "# [tables.{t}]: add to its map (TODO: the Alma code of each)\n[tables.{}.map]\n",
            toml_key(t)
        ),
        None => format!("# the value table of {field} (TODO: the Alma code of each)\n"),
    };
    for (code, n) in listed {
        paste.push_str(&format!(
            "{} = \"TODO\"  # {} record{}\n",
            toml_key(code),
            num(**n),
            if **n == 1 { "" } else { "s" }
        ));
    }
    let rest = sorted.len() - listed.len();
    UnknownField {
        field: field.to_string(),
        total: format!("{} record{}", num(total), if total == 1 { "" } else { "s" }),
        rows: listed
            .iter()
            .map(|(c, n)| ((*c).clone(), num(**n)))
            .collect(),
        more: if rest > 0 {
            format!("and {} more codes (see summary.json)", num(rest as u64))
        } else {
            String::new()
        },
        paste,
    }
}

#[cfg(test)]
mod tests;
