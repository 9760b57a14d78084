//! The `convert` pipeline: extracts → records → users → XML → zips, plus
//! the reject report and summary, published atomically.
//!
//! Stages are the modules of the crate, in order: [`crate::read::source`],
//! [`crate::map`], [`crate::dedupe`], [`crate::write::xml`], [`crate::write::package`],
//! [`crate::report`]. Two engines drive them: [`Engine::Reference`], a plain
//! single-threaded loop, and [`Engine::Parallel`] (the `engine` module),
//! which must produce the same bytes for any thread count and shard size.
//! Both feed one `Emitter`, which owns every decision that depends on
//! input order: identifier claims, record numbers, rejects, entry cuts.
//!
//! Nothing becomes visible in the output directory until everything has
//! been written and checked: zips, `rejects.csv` and `summary.json` are
//! written into a hidden staging directory that replaces the output
//! directory in one step (see [`crate::outdir`]), so a failed run leaves
//! the directory as it was.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::dedupe::{Conflict, IdSet, Owner};
use crate::error::{Error, Result};
use crate::map::Mapper;
use crate::model::User;
use crate::outdir::{hidden_temp, OutputOptions, Staged};
use crate::profile::Profile;
use crate::read::decode::Text;
use crate::read::input::Input;
use crate::read::source::{decode_input, Dialect, Extract, RawRecord, SideFile};
use crate::report::{EncodingSuspect, Fail, LineCounts, MapStats, Position, Reason, Summary};
use crate::write::package::{compress_entry, zip_time, Finished, Placer};
use crate::write::xml;

pub(crate) use super::emit::{Emitter, RejectsWriter};

pub use super::options::{Engine, RunOptions, DEFAULT_SHARD_BYTES};

/// Everything one `convert` run needs.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The profile file (for messages).
    pub profile_path: PathBuf,
    /// The parsed profile.
    pub profile: Profile,
    /// Extracts of the profile's layout, processed in this order.
    pub inputs: Vec<PathBuf>,
    /// What every run shares: output, date, limits, threshold, engine.
    /// Its `prefix` overrides the profile's.
    pub run: RunOptions,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct Outcome {
    /// What `summary.json` holds.
    pub summary: Summary,
    /// Paths published, in publication order.
    pub published: Vec<PathBuf>,
    /// Old zips of the same prefix removed because this run has fewer.
    pub removed_stale: Vec<PathBuf>,
    /// With `--state`: the published run, to be committed once the
    /// package has gone where it goes ([`crate::state::Pending::commit`]);
    /// until then the state file holds it as published, not sent.
    pub state: Option<crate::state::Pending>,
}

/// Name of the reject report in the output directory.
pub const REJECTS_FILE: &str = "rejects.csv";
/// Name of the warnings report in the output directory: records written
/// (or rejected for another reason) with an optional field left out.
pub const WARNINGS_FILE: &str = "warnings.csv";

/// Name of the per-run index in the output directory: where each written
/// user came from, joined by `triage` to Alma's rejected-users report.
pub const INDEX_FILE: &str = "index.csv";

/// Header of `index.csv` (no names, emails or addresses).
pub const INDEX_HEADER: [&str; 4] = ["primary_id", "source_file", "line", "record"];
/// Name of the summary in the output directory.
pub const SUMMARY_FILE: &str = "summary.json";

fn profile_err(opts: &ConvertOptions, message: String) -> Error {
    Error::Profile {
        path: opts.profile_path.clone(),
        message,
    }
}

/// What the run knows once the profile and dialect are checked.
pub(crate) struct Setup<'o> {
    pub(crate) opts: &'o ConvertOptions,
    pub(crate) dialect: Dialect,
    pub(crate) mtime: zip::DateTime,
    mapper: Option<Mapper>,
}

impl<'o> Setup<'o> {
    /// Opens input `idx`.
    pub(crate) fn open(&self, idx: usize) -> Result<Input> {
        Input::open(&self.opts.inputs[idx], self.opts.run.mmap)
    }

    /// Decodes input `idx` to UTF-8 (borrowing when it already is).
    pub(crate) fn decode<'a>(&self, idx: usize, input: &'a Input) -> Result<Text<'a>> {
        decode_input(&self.opts.inputs[idx], input.bytes(), &self.dialect)
    }

    /// Opens the extract in `text`, compiling the mapper against the
    /// first input's columns; later inputs must have the same columns.
    pub(crate) fn extract<'a>(
        &mut self,
        idx: usize,
        text: &'a Text<'_>,
        em: &mut Emitter,
    ) -> Result<Extract<'a>> {
        let path = &self.opts.inputs[idx];
        let x = Extract::open_text(path, idx as u32, text, &self.dialect)?;
        if let Some(looks) = encoding_suspect(&self.dialect, text) {
            em.note_suspect(idx as u32, looks);
        }
        let m = match self.mapper.take() {
            Some(m) => {
                if m.columns() != x.columns.as_slice() {
                    return Err(Error::Input {
                        path: path.clone(),
                        line: Some(1),
                        message: format!(
                            "the columns differ from the first input's; files of one feed must \
                             share a layout (expected {}, found {})",
                            crate::error::excerpt(&m.columns().join(","), 200),
                            crate::error::excerpt(&x.columns.join(","), 200)
                        ),
                    });
                }
                m
            }
            None => Mapper::new(&self.opts.profile, &x.columns, self.opts.run.as_of)
                .map_err(|msg| profile_err(self.opts, msg))?,
        };
        if em.ids.is_none() {
            // Beyond its newest megabyte the set's values go to a private
            // file in the staging directory: a run's RAM then grows by the
            // table's ≈ 10 bytes per identifier, not by the values.
            let mut ids = IdSet::new(m.identifier_case());
            ids.spill_in(crate::outdir::temp_dir_for(&self.opts.run.out_dir)?.0);
            em.ids = Some(ids);
        }
        self.mapper = Some(m);
        Ok(x)
    }

    /// The mapper compiled by [`Setup::extract`].
    pub(crate) fn mapper(&self) -> Result<&Mapper> {
        self.mapper
            .as_ref()
            .ok_or_else(|| Error::Invariant("no mapper before the first input".into()))
    }
}

/// Publishes a finished run into `dir` in one step: writes `summary.json`,
/// names every staged file (zips, `rejects.csv`, `extra` in order, summary
/// last), then swaps the staging directory in for `dir` (see
/// [`crate::outdir`]). The previous package goes as a whole, so Alma can
/// never load yesterday's extra parts again. Returns (published, previous
/// zips of this prefix the new package no longer has).
pub(crate) fn publish(
    dir: &Path,
    prefix: &str,
    parts: Vec<Finished>,
    rejects: NamedTempFile,
    extra: Vec<(NamedTempFile, &'static str)>,
    summary: &Summary,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut summary_tmp = hidden_temp(dir, ".json.tmp")?;
    let mut json = serde_json::to_vec_pretty(summary)
        .map_err(|e| Error::Invariant(format!("summary does not serialize: {e}")))?;
    json.push(b'\n');
    summary_tmp
        .write_all(&json)
        .map_err(|e| Error::io(dir.join(SUMMARY_FILE), e))?;
    summary_tmp
        .as_file()
        .sync_all()
        .map_err(|e| Error::io(dir.join(SUMMARY_FILE), e))?;
    let reports = std::iter::once((rejects, REJECTS_FILE))
        .chain(extra)
        .chain(std::iter::once((summary_tmp, SUMMARY_FILE)));
    let staged = parts
        .into_iter()
        .map(|p| Staged {
            file: p.file,
            name: p.info.name,
        })
        .chain(reports.map(|(file, name)| Staged {
            file,
            name: name.to_string(),
        }))
        .collect();
    crate::outdir::publish(dir, prefix, staged)
}

/// Maps one raw record: decode, map. `spare` lends its allocation to the
/// borrowed field list. A record the reader already failed is rejected
/// with the reader's reason.
pub(crate) fn map_record<'a>(
    m: &'a Mapper,
    rec: &'a RawRecord,
    spare: &mut Vec<&'static str>,
    stats: &mut MapStats,
) -> std::result::Result<User<'a>, Fail> {
    stats.blank_lines += rec.blank_before;
    stats.invalid_bytes_replaced += rec.replaced;
    if let Some((line, column)) = rec.replaced_at {
        stats.note_replaced(rec.file, line, column);
    }
    let result = match &rec.fail {
        Some(f) => Err(f.clone()),
        None => {
            let mut fields = recycle(std::mem::take(spare));
            let result = m.decode(&rec.fields, &mut fields).and_then(|()| {
                let clean = !crate::map::rules::any_forbidden(rec.fields.as_slice());
                m.map_known(&fields, clean, stats)
            });
            *spare = recycle(fields);
            result
        }
    };
    if rec.replaced > 0 || matches!(&result, Err(f) if f.reason == Reason::InvalidEncoding) {
        *stats.invalid_byte_records.entry(rec.file).or_default() += 1;
    }
    result
}

/// What an input declared UTF-8 with invalid bytes most likely is
/// (`windows-1252`, or UTF-16 without a mark); `None` for any other input.
pub(crate) fn encoding_suspect(dialect: &Dialect, text: &Text) -> Option<&'static str> {
    (dialect.encoding == crate::read::decode::Encoding::Utf8
        && text.encoding == "UTF-8"
        && !text.invalid.is_empty())
    .then(|| crate::read::decode::legacy_label(&text.bytes))
}

/// The primary id `rejects.csv` reports for a record rejected with
/// `fail`: empty when the reader could not trust its columns (broken
/// quoting, a wrong field count or length), so the report never shows
/// another patron's text as an id.
pub(crate) fn reject_id(m: &Mapper, rec: &RawRecord, fail: &Fail) -> String {
    if fail.reason.columns_untrusted() {
        return String::new();
    }
    m.report_id(&rec.fields)
}

/// The identifier values of a user in claim order: primary id first.
pub(crate) fn id_values<'u>(
    user: &'u User<'_>,
) -> impl Iterator<Item = (&'u str, &'u str, bool)> + Clone {
    user.get(crate::model::UserField::PrimaryId)
        .map(|p| ("primary_id", p, true))
        .into_iter()
        .chain(
            user.identifiers
                .iter()
                .map(|i| (i.id_type.as_ref(), i.value.as_ref(), false)),
        )
}

/// Runs the whole conversion.
pub fn convert(opts: &ConvertOptions) -> Result<Outcome> {
    opts.run.limits.check()?;
    if opts.inputs.is_empty() {
        return Err(Error::Usage("no input files given".into()));
    }
    let prefix = opts
        .run
        .prefix
        .clone()
        .unwrap_or_else(|| opts.profile.output.prefix.clone());
    check_prefix(&prefix).map_err(|m| profile_err(opts, m))?;
    let dialect = load_dialect(&opts.profile, &opts.profile_path)?;
    check_engine(opts.run.engine)?;
    in_out_dir(&opts.run.out_dir, &prefix, opts.run.output, || {
        run_and_publish(opts, dialect, &prefix)
    })
}

/// Checks an output name prefix.
pub(crate) fn check_prefix(prefix: &str) -> std::result::Result<(), String> {
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "output prefix `{prefix}` must be letters, digits, `_` or `-`"
        ));
    }
    Ok(())
}

/// Builds the reading rules of `profile`, with its side files loaded.
/// Side files are named relative to the profile, which lives with them.
pub(crate) fn load_dialect(profile: &Profile, profile_path: &Path) -> Result<Dialect> {
    let dialect = Dialect::new(&profile.input).map_err(|m| Error::Profile {
        path: profile_path.to_path_buf(),
        message: format!("[input]: {m}"),
    })?;
    let base = profile_path.parent().unwrap_or_else(|| Path::new("."));
    let side_files = profile
        .input
        .side_files
        .iter()
        .map(|spec| SideFile::load(spec, base, dialect.encoding))
        .collect::<Result<Vec<_>>>()?;
    Ok(dialect.with_side_files(side_files))
}

/// Refuses zero threads or shard bytes.
pub(crate) fn check_engine(engine: Engine) -> Result<()> {
    if let Engine::Parallel {
        threads,
        shard_bytes,
    } = engine
    {
        if threads == 0 || shard_bytes == 0 {
            return Err(Error::Usage(
                "threads and shard size must be at least 1".into(),
            ));
        }
    }
    Ok(())
}

/// Runs `f` holding the output directory `dir` for a package of
/// `prefix`: one run at a time, temporaries in a staging directory that
/// [`publish`] swaps in. If `f` fails, the staging directory and any
/// directory created for the run are removed.
pub(crate) fn in_out_dir<T>(
    dir: &Path,
    prefix: &str,
    output: OutputOptions,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    crate::outdir::hold(dir, prefix, output, f)
}

fn run_and_publish(opts: &ConvertOptions, dialect: Dialect, prefix: &str) -> Result<Outcome> {
    let mut setup = Setup {
        opts,
        dialect,
        mtime: zip_time(opts.run.as_of),
        mapper: None,
    };
    let mut em = Emitter::new(opts)?;
    em.progress
        .begin_pass(super::progress::Stage::Reading, em.bytes.total());
    let placer = Placer::new(&opts.run.out_dir, prefix, opts.run.limits);
    let parts = match opts.run.engine {
        Engine::Reference => run_reference(&mut setup, &mut em, placer)?,
        Engine::Parallel {
            threads,
            shard_bytes,
        } => crate::run::engine::run(&mut setup, &mut em, placer, threads, shard_bytes)?,
    };
    finish(opts, em, parts, prefix, Extras::default())
}

/// What a job run adds to [`finish`]: its report file and summary part.
#[derive(Default)]
pub(crate) struct Extras {
    /// Extra reports (temporary file, published name), published after
    /// the zips and before the summary.
    pub(crate) files: Vec<(NamedTempFile, &'static str)>,
    /// The person-matching summary.
    pub(crate) job: Option<crate::report::JobSummary>,
}

/// The reference engine: every stage on the calling thread, in order.
fn run_reference(setup: &mut Setup, em: &mut Emitter, mut placer: Placer) -> Result<Vec<Finished>> {
    let (level, mtime) = (setup.opts.run.limits.compression_level, setup.mtime);
    let mut rec = RawRecord::new();
    let mut spare = Vec::new();
    let mut user_xml = Vec::new();
    let mut stats = MapStats::default();
    for idx in 0..setup.opts.inputs.len() {
        let input = setup.open(idx)?;
        let text = setup.decode(idx, &input)?;
        let x = setup.extract(idx, &text, em)?;
        let m = setup.mapper()?;
        let mut rdr = x.reader(x.whole());
        loop {
            let number = em.read + 1;
            if !rdr
                .next_record(number, &mut rec)
                .map_err(|e| csv_err(setup.opts, idx, e))?
            {
                break;
            }
            if em.next_number().is_multiple_of(PROGRESS_EVERY) {
                em.read_to(idx, rec.end, x.data().len());
            }
            let owner = Owner {
                file: rec.file,
                line: rec.line,
            };
            let mapped = map_record(m, &rec, &mut spare, &mut stats);
            let warnings = stats.take_warnings();
            if !warnings.is_empty() {
                em.warn(
                    rec.file,
                    rec.line,
                    rec.last_line,
                    number,
                    &m.report_id(&rec.fields),
                    &warnings,
                )?;
            }
            let result = mapped.and_then(|user| em.claim(id_values(&user), owner).map(|()| user));
            match result {
                Ok(user) => {
                    user_xml.clear();
                    xml::write_user(&mut user_xml, &user);
                    let lines = rec.last_line - rec.line + 1;
                    if let Some((doc, users)) =
                        em.accept(rec.file, lines, &user_xml, xml::group_of(&user))?
                    {
                        placer.place(compress_entry(&doc, users, level, mtime)?)?;
                    }
                }
                Err(fail) => em.reject(
                    rec.file,
                    rec.line,
                    rec.last_line,
                    number,
                    &reject_id(m, &rec, &fail),
                    &fail,
                )?,
            }
        }
        stats.blank_lines += rdr.trailing_blank();
        em.stats.merge(std::mem::take(&mut stats));
        em.end_file(idx, x.line_totals());
        em.read_to(idx, x.data().len(), x.data().len());
    }
    for user_xml in em.departed()? {
        if let Some((doc, users)) = em.add_extra(&user_xml) {
            placer.place(compress_entry(&doc, users, level, mtime)?)?;
        }
    }
    em.progress.set_stage(super::progress::Stage::Compressing);
    if let Some((doc, users)) = em.last_document() {
        placer.place(compress_entry(&doc, users, level, mtime)?)?;
    }
    placer.finish()
}

/// How many records the reference engine reads between two updates of
/// the bytes read (the records themselves are counted one by one).
const PROGRESS_EVERY: u64 = 1024;

/// An I/O-level parse error of input `idx`, with its position.
pub(crate) fn csv_err(opts: &ConvertOptions, idx: usize, e: csv::Error) -> Error {
    Error::Input {
        path: opts.inputs[idx].clone(),
        line: e.position().map(|p| p.line()),
        message: e.to_string(),
    }
}

/// Checks the books, writes the summary and publishes everything.
pub(crate) fn finish(
    opts: &ConvertOptions,
    em: Emitter,
    parts: Vec<Finished>,
    prefix: &str,
    extras: Extras,
) -> Result<Outcome> {
    em.progress.set_stage(super::progress::Stage::Publishing);
    let reports_start = std::time::Instant::now();
    let Emitter {
        mut rejects,
        warnings,
        warned,
        suspects,
        stats,
        read,
        written,
        rejected,
        rejected_by_reason,
        users_by_group,
        mut files,
        superseded,
        lines,
        mut state,
        file_hashes,
        index,
        index_failed,
        started,
        cpu,
        ids,
        ..
    } = em;
    if let Some(e) = index_failed {
        return Err(e);
    }
    if let Some(e) = ids.and_then(|mut ids| ids.take_error()) {
        // A value that could not be read back may have been let through.
        return Err(Error::io(opts.run.out_dir.join("(identifier set)"), e));
    }
    let mut hashes = file_hashes
        .map(|h| h.join().unwrap_or_default())
        .unwrap_or_default();
    let config_sha256 = hashes.pop().flatten().map(|(_, h)| h);
    for (info, h) in files.iter_mut().zip(hashes) {
        if let Some((size, sha)) = h {
            info.size = Some(size);
            info.sha256 = Some(sha);
        }
    }
    if read == 0 {
        return Err(Error::Input {
            path: opts.inputs[0].clone(),
            line: None,
            message: "no records in the input; refusing to publish an empty load".into(),
        });
    }
    if read != written + rejected + superseded {
        return Err(Error::Invariant(format!(
            "records read ({read}) != users written ({written}) + rejected ({rejected}) \
             + superseded ({superseded})"
        )));
    }
    if extras.job.as_ref().map_or(0, |j| j.superseded) != superseded {
        return Err(Error::Invariant(
            "superseded records do not match the person decisions".into(),
        ));
    }
    let mut lines_read = LineCounts::default();
    for (info, l) in files.iter_mut().zip(&lines) {
        if l.accounted() != l.total {
            return Err(Error::Invariant(format!(
                "lines of {}: {} in the file != header {} + blank {} + written {} + \
                 rejected {} + superseded {}",
                info.path, l.total, l.header, l.blank, l.written, l.rejected, l.superseded
            )));
        }
        info.lines_read = Some(*l);
        lines_read.add(l);
    }
    if files.len() != lines.len() {
        return Err(Error::Invariant(
            "an input was never read to its end".into(),
        ));
    }
    if rejected_by_reason.values().sum::<u64>() != rejected {
        return Err(Error::Invariant("rejects by reason do not add up".into()));
    }
    if stats.dropped_fields.values().sum::<u64>() != warned || !stats.warnings.is_empty() {
        return Err(Error::Invariant(
            "dropped fields do not match the rows of warnings.csv".into(),
        ));
    }
    // With a state, a delta leaves unchanged users out and expired
    // departed users come in.
    let sent = state.as_ref().map_or(written, |t| t.users_sent());
    let zipped: u64 = parts.iter().map(|p| p.info.users).sum();
    if zipped != sent {
        return Err(Error::Invariant(format!(
            "users in zips ({zipped}) != users written ({written}) and sent ({sent})"
        )));
    }
    // The guards, before anything is published or committed.
    let state_report = match state.as_mut() {
        Some(t) => Some(t.report(written)?),
        None => None,
    };
    let digest = std::mem::take(&mut rejects.digest);
    let rejects_tmp = rejects.finish()?;
    let mut reports = vec![(warnings.finish()?, WARNINGS_FILE)];
    reports.push((index.finish()?, INDEX_FILE));
    reports.extend(extras.files);
    if let Some(t) = state.as_mut() {
        reports.push((t.changes_file()?, crate::state::CHANGES_FILE));
    }
    let encoding_suspect = suspects
        .iter()
        .map(|&(f, looks)| EncodingSuspect {
            path: opts.inputs[f as usize].display().to_string(),
            declared: "utf-8".into(),
            looks_like: looks.into(),
            invalid_records: stats.invalid_byte_records.get(&f).copied().unwrap_or(0),
        })
        .collect();

    let rate = rejected as f64 * 100.0 / read as f64;
    let is_job = extras.job.is_some();
    let summary = Summary {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        profile_sha256: config_sha256.clone().filter(|_| !is_job),
        job_sha256: config_sha256.filter(|_| is_job),
        as_of: opts.run.as_of.format("%Y-%m-%d").to_string(),
        inputs: files,
        records_read: read,
        lines_read: Some(lines_read),
        users_written: written,
        rejected,
        duplicate_identifiers: rejected_by_reason
            .get(Reason::DuplicateId.code())
            .copied()
            .unwrap_or(0),
        rejected_by_reason,
        reject_rate_percent: (rate * 1000.0).round() / 1000.0,
        reject_threshold_percent: opts.run.reject_threshold_percent,
        reject_threshold_exceeded: rate > opts.run.reject_threshold_percent,
        invalid_bytes_first: stats
            .invalid_bytes_at
            .iter()
            .map(|&(f, line, column)| Position {
                path: opts.inputs[f as usize].display().to_string(),
                line,
                column,
            })
            .collect(),
        map: stats,
        encoding_suspect,
        warnings: warned,
        users_by_group,
        zips: parts.iter().map(|p| p.info.clone()).collect(),
        job: extras.job,
        repaired: BTreeMap::new(),
        state: state_report,
        run: None,
    };
    let exit_status = if summary.reject_threshold_exceeded || !summary.encoding_suspect.is_empty() {
        3
    } else {
        0
    };
    let millis = |d: std::time::Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    let stages = vec![
        crate::report::StageSeconds {
            name: "convert".into(),
            seconds: millis(reports_start.duration_since(started.1)),
        },
        crate::report::StageSeconds {
            name: "reports".into(),
            seconds: millis(reports_start.elapsed()),
        },
    ];
    let mut summary = summary;
    summary.run = Some(crate::report::RunInfo {
        started_at: started.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        stages,
        exit_status,
        cpu_s: cpu.map(|c| c.seconds()),
    });
    // The report's trend: the last committed runs and this one.
    let trend = match state.as_ref() {
        Some(t) => {
            let mut points: Vec<crate::html::TrendPoint> = t
                .trend(29)?
                .into_iter()
                .map(|(label, users, rejects)| crate::html::TrendPoint {
                    label,
                    users,
                    rejects,
                })
                .collect();
            points.push(crate::html::TrendPoint {
                label: summary
                    .run
                    .as_ref()
                    .map(|r| r.started_at.clone())
                    .unwrap_or_default(),
                users: summary.users_written,
                rejects: summary.rejected,
            });
            Some(points)
        }
        None => None,
    };
    reports.push((
        report_html(
            &opts.run.out_dir,
            &crate::html::ReportInput {
                prefix,
                summary: &summary,
                rejects: &digest,
                tables: crate::html::field_tables(&opts.profile),
                timings: summary.run.as_ref().map(|r| {
                    r.stages
                        .iter()
                        .map(|s| crate::html::StageTime {
                            name: s.name.clone(),
                            seconds: s.seconds,
                        })
                        .collect()
                }),
                changes: summary.state.as_ref().map(|st| crate::html::Changes {
                    new: st.changes.new,
                    changed: st.changes.changed,
                    unchanged: st.changes.unchanged,
                    departed: st.changes.departed,
                    returned: st.changes.returned,
                }),
                trend,
            },
        )?,
        crate::html::REPORT_FILE,
    ));
    let (published, removed_stale) = publish(
        &opts.run.out_dir,
        prefix,
        parts,
        rejects_tmp,
        reports,
        &summary,
    )?;
    let state = match state {
        Some(t) => Some(t.published(&summary)?),
        None => None,
    };
    Ok(Outcome {
        summary,
        published,
        removed_stale,
        state,
    })
}

/// Renders `report.html` into a staged temporary file of `dir`.
pub(crate) fn report_html(dir: &Path, input: &crate::html::ReportInput) -> Result<NamedTempFile> {
    let name = crate::html::REPORT_FILE;
    let mut tmp = hidden_temp(dir, ".html.tmp")?;
    tmp.write_all(crate::html::render(input).as_bytes())
        .map_err(|e| Error::io(dir.join(name), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(dir.join(name), e))?;
    Ok(tmp)
}

/// Empties a vector of borrowed fields so its allocation can be reused for
/// the next record's borrows (in-place collect keeps the buffer).
pub(super) fn recycle<'b>(mut v: Vec<&str>) -> Vec<&'b str> {
    v.clear();
    v.into_iter().map(|_| "").collect()
}

/// The reject for a record that lost an identifier to an earlier one,
/// worded like Alma's own "Identifier of type … is already taken".
pub(super) fn duplicate_fail(c: &Conflict, file: u32, inputs: &[PathBuf]) -> Fail {
    let at = if c.owner.file == file {
        format!("line {}", c.owner.line)
    } else {
        format!(
            "line {} of {}",
            c.owner.line,
            inputs[c.owner.file as usize].display()
        )
    };
    Fail::new(
        Reason::DuplicateId,
        c.id_type.as_str(),
        format!(
            "identifier of type {} and value {} is already taken by the record at {at} \
             (as its {})",
            c.id_type, c.value, c.owner_id_type
        ),
    )
}
