//! `patronload repack`: users of existing Alma XML → a corrected, split,
//! deterministic package with the same `rejects.csv` and `summary.json`
//! as `convert`.
//!
//! Every user goes through the same walk as `check`. A user whose
//! findings are all [repairable](super::Code::repairable) is written
//! again as UTF-8: empty optional dates, booleans and numbers are left
//! out (Alma rejects them, and leaving a field out is what an empty field
//! meant), empty identifiers and statistic segments are dropped, a value
//! the user repeats is kept once, characters XML forbids are gone. Any
//! other finding rejects the user: repack never invents data. The users
//! written go through [`Packager`], so names, splitting and limits are
//! exactly `convert`'s; publication is `convert`'s too (all or nothing).

use std::collections::BTreeMap;
use std::path::PathBuf;

use quick_xml::escape::{escape, partial_escape};

use super::parse::Node;
use super::schema::{Content, Group, USER};
use super::{walk, CheckOptions, CheckReport, Code, Source, Visit, Visitor};
use crate::error::{Error, Result};
use crate::report::{InputInfo, MapStats, Summary};
use crate::run::convert::{in_out_dir, publish, report_html, RejectsWriter};
use crate::run::options::RunOptions;
use crate::write::package::Packager;

/// Everything one `repack` run needs.
#[derive(Debug, Clone)]
pub struct RepackOptions {
    /// Alma user XML files and zips, in load order.
    pub inputs: Vec<PathBuf>,
    /// The checks, their limits and code tables.
    pub check: CheckOptions,
    /// What every run shares: output directory, the zip entries'
    /// timestamp, output limits, reject threshold, prefix (default
    /// `alma_users`) and publishing. `engine` and `mmap` do not apply:
    /// repack reads on one thread.
    pub run: RunOptions,
}

/// What a finished repack produced.
#[derive(Debug, Clone)]
pub struct RepackOutcome {
    /// What `summary.json` holds.
    pub summary: Summary,
    /// What the check of the inputs found.
    pub check: CheckReport,
    /// Paths published, in publication order.
    pub published: Vec<PathBuf>,
    /// Old zips of the same prefix removed because this run has fewer.
    pub removed_stale: Vec<PathBuf>,
}

struct Writer {
    packager: Option<Packager>,
    rejects: RejectsWriter,
    stats: MapStats,
    read: u64,
    written: u64,
    rejected: u64,
    by_reason: BTreeMap<String, u64>,
    by_group: BTreeMap<String, u64>,
    inputs: Vec<InputInfo>,
    buf: Vec<u8>,
}

impl Visitor for Writer {
    fn source(&mut self, s: &Source) -> Result<()> {
        if self.inputs.len() <= s.file_index {
            self.inputs.push(InputInfo {
                path: s.file.clone(),
                records: 0,
                lines_read: None,
                size: None,
                sha256: None,
            });
        }
        Ok(())
    }

    fn user(&mut self, v: Visit<'_>) -> Result<()> {
        self.read += 1;
        if let Some(info) = self.inputs.last_mut() {
            info.records += 1;
        }
        if let Some(bad) = v.issues.iter().find(|i| !i.code.repairable()) {
            self.rejects.write(
                &v.source.label(),
                bad.line,
                bad.line,
                self.read,
                v.primary_id,
                bad.code.as_str(),
                &bad.field,
                &bad.message,
            )?;
            *self
                .by_reason
                .entry(bad.code.as_str().to_string())
                .or_default() += 1;
            self.rejected += 1;
            return Ok(());
        }
        self.buf.clear();
        write_user(&mut self.buf, v.user, &mut self.stats);
        let group = v
            .user
            .child_text("user_group")
            .filter(|g| !g.is_empty())
            .unwrap_or("(none)");
        *self.by_group.entry(group.to_string()).or_default() += 1;
        self.written += 1;
        match self.packager.as_mut() {
            Some(p) => p.add_user(&self.buf),
            None => Err(Error::Invariant("packager already finished".into())),
        }
    }
}

/// Runs the repack.
pub fn repack(opts: &RepackOptions) -> Result<RepackOutcome> {
    opts.run.limits.check()?;
    let prefix = opts.run.prefix.as_deref().unwrap_or(DEFAULT_PREFIX);
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::Usage(format!(
            "output prefix `{prefix}` must be letters, digits, `_` or `-`"
        )));
    }
    in_out_dir(&opts.run.out_dir, prefix, opts.run.output, || {
        run(opts, prefix)
    })
}

/// The prefix of the zips and XML files when the options name none.
pub const DEFAULT_PREFIX: &str = "alma_users";

fn run(opts: &RepackOptions, prefix: &str) -> Result<RepackOutcome> {
    let mut w = Writer {
        packager: Some(Packager::new(
            &opts.run.out_dir,
            prefix,
            opts.run.limits,
            opts.run.as_of,
        )),
        rejects: RejectsWriter::new(&opts.run.out_dir)?,
        stats: MapStats::default(),
        read: 0,
        written: 0,
        rejected: 0,
        by_reason: BTreeMap::new(),
        by_group: BTreeMap::new(),
        inputs: Vec::new(),
        buf: Vec::new(),
    };
    let report = walk(&opts.inputs, &opts.check, &mut w)?;
    // A file we could not read to its end, or must not open, cannot be
    // repacked: publishing part of it would drop users silently.
    if let Some(f) = report.findings.iter().find(|f| f.code.fatal_for_repack()) {
        let at = match &f.entry {
            Some(e) => format!("{}!/{e}", f.file),
            None => f.file.clone(),
        };
        return Err(Error::Input {
            path: PathBuf::from(at),
            line: (f.line > 0).then_some(f.line),
            message: format!("{}: {}; nothing can be repacked from it", f.code, f.message),
        });
    }
    // Findings past `max_findings` are only counted: look at the counts.
    if Code::FATAL_FOR_REPACK.iter().any(|c| report.count(*c) > 0) {
        return Err(Error::Input {
            path: opts.inputs[0].clone(),
            line: None,
            message: "an input cannot be read to its end (see `patronload check`); nothing \
                      can be repacked"
                .into(),
        });
    }
    if w.read == 0 {
        return Err(Error::Input {
            path: opts.inputs[0].clone(),
            line: None,
            message: "no users in the input; refusing to publish an empty load".into(),
        });
    }
    let Writer {
        packager,
        rejects,
        stats,
        read,
        written,
        rejected,
        by_reason,
        by_group,
        mut inputs,
        ..
    } = w;
    let parts = match packager {
        Some(p) => p.finish()?,
        None => return Err(Error::Invariant("packager already finished".into())),
    };
    let zipped: u64 = parts.iter().map(|p| p.info.users).sum();
    if zipped != written || read != written + rejected {
        return Err(Error::Invariant(format!(
            "users read {read}, written {written}, rejected {rejected}, zipped {zipped}"
        )));
    }
    // Inputs without users (or refused) still belong in the summary.
    for (i, p) in opts.inputs.iter().enumerate() {
        let shown = p.display().to_string();
        if inputs.get(i).is_none_or(|x| x.path != shown) {
            inputs.insert(
                i.min(inputs.len()),
                InputInfo {
                    path: shown,
                    records: 0,
                    lines_read: None,
                    size: None,
                    sha256: None,
                },
            );
        }
    }
    let rate = rejected as f64 * 100.0 / read as f64;
    let repaired = report
        .findings_by_code
        .iter()
        .filter(|(c, _)| FILE_REPAIRS.contains(&c.as_str()))
        .map(|(c, n)| (c.clone(), *n))
        .collect();
    let summary = Summary {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        profile_sha256: None,
        job_sha256: None,
        as_of: opts.run.as_of.format("%Y-%m-%d").to_string(),
        inputs,
        records_read: read,
        lines_read: None,
        users_written: written,
        rejected,
        duplicate_identifiers: by_reason
            .get(Code::DuplicateId.as_str())
            .copied()
            .unwrap_or(0),
        rejected_by_reason: by_reason,
        reject_rate_percent: (rate * 1000.0).round() / 1000.0,
        reject_threshold_percent: opts.run.reject_threshold_percent,
        reject_threshold_exceeded: rate > opts.run.reject_threshold_percent,
        map: stats,
        invalid_bytes_first: Vec::new(),
        encoding_suspect: Vec::new(),
        warnings: 0,
        users_by_group: by_group,
        zips: parts.iter().map(|p| p.info.clone()).collect(),
        job: None,
        repaired,
        state: None,
        run: None,
    };
    opts.run
        .progress
        .set_stage(crate::run::progress::Stage::Publishing);
    let mut rejects = rejects;
    let digest = std::mem::take(&mut rejects.digest);
    let rejects_tmp = rejects.finish()?;
    let html = report_html(
        &opts.run.out_dir,
        &crate::html::ReportInput {
            prefix,
            summary: &summary,
            rejects: &digest,
            tables: Default::default(),
            timings: None,
            changes: None,
            trend: None,
        },
    )?;
    let (published, removed_stale) = publish(
        &opts.run.out_dir,
        prefix,
        parts,
        rejects_tmp,
        vec![(html, crate::html::REPORT_FILE)],
        &summary,
    )?;
    Ok(RepackOutcome {
        summary,
        check: report,
        published,
        removed_stale,
    })
}

/// File-level findings repack repairs by rewriting, reported in the
/// summary's `repaired`.
const FILE_REPAIRS: &[&str] = &[
    "not_utf8",
    "bom",
    "content_before_prolog",
    "no_declaration",
    "root_element",
    "namespace",
    "not_xml_entry",
    "files_per_zip",
    "zip_too_large",
    "directory_budget",
];

/// Writes one repaired `<user>` the way [`crate::write::xml`] indents users.
fn write_user(out: &mut Vec<u8>, user: &Node, stats: &mut MapStats) {
    stats.forbidden_chars_removed += user.forbidden;
    out.extend_from_slice(b"  <user");
    write_attrs(out, user);
    out.extend_from_slice(b">\n");
    let mut seen = Vec::new();
    write_children(out, user, Some(&USER), 2, stats, &mut seen);
    out.extend_from_slice(b"  </user>\n");
}

fn write_attrs(out: &mut Vec<u8>, n: &Node) {
    for (k, v) in &n.attrs {
        out.push(b' ');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"=\"");
        out.extend_from_slice(escape(v.as_str()).as_bytes());
        out.push(b'"');
    }
}

/// Whether `n` is a segment to leave out, and under which counter.
fn dropped_segment(n: &Node, seen: &mut Vec<String>) -> Option<&'static str> {
    match n.name.as_str() {
        "user_identifier" => {
            let v = n.child_text("value").unwrap_or("");
            if v.is_empty() {
                return Some("identifier_empty");
            }
            let k = crate::map::fold(v);
            if seen.contains(&k) {
                return Some("identifier_repeated_in_user");
            }
            seen.push(k);
            None
        }
        "user_statistic" if n.child_text("statistic_category") == Some("") => {
            Some("statistic_incomplete")
        }
        _ => None,
    }
}

fn write_children(
    out: &mut Vec<u8>,
    node: &Node,
    group: Option<&Group>,
    depth: usize,
    stats: &mut MapStats,
    seen: &mut Vec<String>,
) {
    if node.name == "user" {
        if let Some(p) = node.child_text("primary_id") {
            seen.push(crate::map::fold(p));
        }
    }
    for c in &node.children {
        let spec = group.and_then(|g| g.child(&c.name)).map(|(_, s)| s);
        let content = spec.map(|s| s.content);
        if let Some(s) = spec {
            if !s.required
                && super::rules::droppable_when_empty(s.content)
                && c.text.trim().is_empty()
            {
                stats.drop_segment(&format!("empty_{}", c.name));
                continue;
            }
        }
        if let Some(kind) = dropped_segment(c, seen) {
            stats.drop_segment(kind);
            continue;
        }
        stats.forbidden_chars_removed += c.forbidden;
        let indent = "  ".repeat(depth);
        out.extend_from_slice(indent.as_bytes());
        out.push(b'<');
        out.extend_from_slice(c.name.as_bytes());
        write_attrs(out, c);
        let sub = match content {
            Some(Content::Group(g)) => Some(g),
            _ => None,
        };
        if c.children.is_empty() {
            if c.text.is_empty() || sub.is_some() {
                out.extend_from_slice(b"/>\n");
            } else {
                out.push(b'>');
                out.extend_from_slice(partial_escape(c.text.as_str()).as_bytes());
                out.extend_from_slice(b"</");
                out.extend_from_slice(c.name.as_bytes());
                out.extend_from_slice(b">\n");
            }
            continue;
        }
        out.extend_from_slice(b">\n");
        let mut inner = Vec::new();
        write_children(&mut inner, c, sub, depth + 1, stats, seen);
        out.extend_from_slice(&inner);
        out.extend_from_slice(indent.as_bytes());
        out.extend_from_slice(b"</");
        out.extend_from_slice(c.name.as_bytes());
        out.extend_from_slice(b">\n");
    }
}
