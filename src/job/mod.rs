//! Jobs: several feeds (a student SIS, an HR system, ...) converted in one
//! run into one institution-wide package with one user per person.
//!
//! Alma keeps one user per person and rejects the second record of anyone
//! in two feeds, so the choice of which record represents a person is made
//! here, declared in the job file and explained in `duplicates.csv`: by
//! user-group rank, then source order, then input order ([`mod@decide`]).
//! Identifier collisions between *different* people are still rejected,
//! first wins in output order, exactly as in a single feed.
//!
//! A job maps every record of every source first (in parallel, in input
//! order), decides, then claims identifiers and writes. Mapped users are
//! held in memory until the decisions are made, so a job needs memory in
//! proportion to its users, unlike a single-feed `convert`.

pub mod decide;

use std::collections::{BTreeMap, HashSet};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rayon::prelude::*;
use serde::Deserialize;

use crate::convert::{
    check_engine, check_prefix, csv_err, finish, hidden_temp, id_values, in_out_dir, load_dialect,
    map_record, reject_id, ConvertOptions, Emitter, Engine, Extras, Outcome,
};
use crate::dedupe::{Conflict, Owner};
use crate::error::{Error, Result};
use crate::input::{Input, MmapChoice};
use crate::map::{fold, Mapper};
use crate::model::{User, UserField};
use crate::package::{compress_entry, zip_time, Limits, Placer};
use crate::profile::{IdentifierCase, Profile};
use crate::report::{Fail, JobSummary, MapStats, Reason, SourceInfo};
use crate::source::{decode_input, Dialect, Extract, RawRecord};
use crate::xml;

use decide::{decide, Candidate};

/// Name of the person-decision report in the output directory.
pub const DUPLICATES_FILE: &str = "duplicates.csv";

/// Header of `duplicates.csv`.
pub const DUPLICATES_HEADER: [&str; 14] = [
    "person_key",
    "winner_source",
    "winner_file",
    "winner_line",
    "winner_group",
    "winner_outcome",
    "loser_source",
    "loser_file",
    "loser_line",
    "loser_primary_id",
    "loser_group",
    "rule",
    "merged",
    "not_merged",
];

/// Records mapped per parallel task: enough to amortize the hand-off,
/// small enough to spread a file over every thread.
const BATCH: usize = 4096;

/// The job file as written (TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Output naming.
    #[serde(default)]
    pub output: JobOutput,
    /// How people are matched and who wins.
    #[serde(default)]
    pub people: PeopleSpec,
    /// The feeds, in precedence order (`[[source]]` tables).
    #[serde(rename = "source", default)]
    pub sources: Vec<SourceSpec>,
}

/// `[output]` of a job file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOutput {
    /// Zip and XML name prefix; by default the first source's profile's.
    pub prefix: Option<String>,
}

/// `[people]` of a job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleSpec {
    /// What identifies a person across feeds: `primary_id` (the default)
    /// or an identifier type every feed maps (e.g. `UNIV_ID`). Compared
    /// the way Alma compares identifiers.
    #[serde(default = "default_match_on")]
    pub match_on: String,
    /// Alma user groups, highest precedence first. Groups not listed rank
    /// below every listed one, equal among themselves.
    #[serde(default)]
    pub group_rank: Vec<String>,
    /// Whether a winner takes the additional identifiers, emails and
    /// phones of the records it supersedes, where no one else holds them.
    #[serde(default)]
    pub merge: bool,
}

impl Default for PeopleSpec {
    fn default() -> Self {
        PeopleSpec {
            match_on: default_match_on(),
            group_rank: Vec::new(),
            merge: false,
        }
    }
}

fn default_match_on() -> String {
    "primary_id".into()
}

/// One `[[source]]` of a job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Name used in reports (`students`, `employees`).
    pub name: String,
    /// The source's profile, relative to the job file.
    pub profile: PathBuf,
    /// The source's extracts, relative to the job file, in order.
    pub inputs: Vec<PathBuf>,
}

/// A source with its profile loaded and paths resolved.
#[derive(Debug, Clone)]
pub struct Source {
    /// Name used in reports.
    pub name: String,
    /// The profile file.
    pub profile_path: PathBuf,
    /// The parsed profile.
    pub profile: Profile,
    /// The extracts, in order.
    pub inputs: Vec<PathBuf>,
}

/// A loaded, checked job.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job file.
    pub path: PathBuf,
    /// How people are matched and who wins.
    pub people: PeopleSpec,
    /// The job's output prefix, if it sets one.
    pub prefix: Option<String>,
    /// The sources, in precedence order.
    pub sources: Vec<Source>,
}

impl Job {
    /// Reads and checks a job file, loading every source's profile.
    pub fn load(path: &Path) -> Result<Job> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec: JobSpec = toml::from_str(&text).map_err(|e| job_err(path, e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &PathBuf| {
            if p.is_absolute() {
                p.clone()
            } else {
                base.join(p)
            }
        };
        if spec.sources.is_empty() {
            return Err(job_err(path, "no [[source]] tables".into()));
        }
        if spec.people.match_on.trim().is_empty() {
            return Err(job_err(path, "[people] match_on must not be empty".into()));
        }
        let mut seen = HashSet::new();
        for g in &spec.people.group_rank {
            if !seen.insert(g.as_str()) {
                return Err(job_err(path, format!("group_rank lists `{g}` twice")));
            }
        }
        let mut names = HashSet::new();
        let mut sources = Vec::new();
        for s in &spec.sources {
            if s.name.trim().is_empty() || !names.insert(s.name.as_str()) {
                return Err(job_err(
                    path,
                    format!("source name `{}` is empty or used twice", s.name),
                ));
            }
            if s.inputs.is_empty() {
                return Err(job_err(path, format!("source `{}` has no inputs", s.name)));
            }
            let profile_path = resolve(&s.profile);
            sources.push(Source {
                name: s.name.clone(),
                profile: Profile::load(&profile_path)?,
                profile_path,
                inputs: s.inputs.iter().map(resolve).collect(),
            });
        }
        if sources.len() > u16::MAX as usize {
            return Err(job_err(path, "too many sources".into()));
        }
        let case = sources[0].profile.rules.identifier_case;
        if let Some(s) = sources
            .iter()
            .find(|s| s.profile.rules.identifier_case != case)
        {
            return Err(job_err(
                path,
                format!(
                    "source `{}` compares identifiers differently from `{}`; one institution \
                     has one rule (rules.identifier_case)",
                    s.name, sources[0].name
                ),
            ));
        }
        Ok(Job {
            path: path.to_path_buf(),
            people: spec.people,
            prefix: spec.output.prefix,
            sources,
        })
    }
}

fn job_err(path: &Path, message: String) -> Error {
    Error::Profile {
        path: path.to_path_buf(),
        message,
    }
}

/// Everything one `convert --job` run needs.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// The loaded job.
    pub job: Job,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// The date every relative date rule counts from.
    pub as_of: NaiveDate,
    /// Output limits.
    pub limits: Limits,
    /// Reject rate in percent above which the run reports failure.
    pub reject_threshold_percent: f64,
    /// Overrides the job's output prefix.
    pub prefix: Option<String>,
    /// [`Engine::Reference`] maps on one thread; [`Engine::Parallel`] on
    /// its thread count (shard size does not apply). Same output either
    /// way.
    pub engine: Engine,
    /// Whether inputs may be memory-mapped.
    pub mmap: MmapChoice,
}

/// A mapped record waiting for the person decisions.
struct Mapped {
    source: u16,
    file: u32,
    line: u64,
    /// Physical lines of the record.
    lines: u64,
    number: u64,
    user: User,
}

/// A reject waiting to be written in record order.
struct PendingReject {
    number: u64,
    file: u32,
    line: u64,
    last_line: u64,
    primary_id: String,
    fail: Fail,
}

/// Runs a job: every source, one package, `duplicates.csv` beside
/// `rejects.csv` and `summary.json`, published atomically.
pub fn convert_job(opts: &JobOptions) -> Result<Outcome> {
    opts.limits.check()?;
    let job = &opts.job;
    let first = &job.sources[0];
    let prefix = opts
        .prefix
        .clone()
        .or_else(|| job.prefix.clone())
        .unwrap_or_else(|| first.profile.output.prefix.clone());
    check_prefix(&prefix).map_err(|m| job_err(&job.path, m))?;
    check_engine(opts.engine)?;
    let dialects = job
        .sources
        .iter()
        .map(|s| load_dialect(&s.profile, &s.profile_path))
        .collect::<Result<Vec<_>>>()?;
    // The single-feed bookkeeping (rejects, counters, publication) works
    // on the flattened input list.
    let base = ConvertOptions {
        profile_path: job.path.clone(),
        profile: first.profile.clone(),
        inputs: job
            .sources
            .iter()
            .flat_map(|s| s.inputs.iter().cloned())
            .collect(),
        out_dir: opts.out_dir.clone(),
        as_of: opts.as_of,
        limits: opts.limits,
        reject_threshold_percent: opts.reject_threshold_percent,
        prefix: Some(prefix.clone()),
        engine: opts.engine,
        mmap: opts.mmap,
    };
    in_out_dir(&opts.out_dir, || run(opts, &base, &dialects, &prefix))
}

fn run(
    opts: &JobOptions,
    base: &ConvertOptions,
    dialects: &[Dialect],
    prefix: &str,
) -> Result<Outcome> {
    let job = &opts.job;
    let threads = match opts.engine {
        Engine::Reference => 1,
        Engine::Parallel { threads, .. } => threads,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Invariant(format!("thread pool: {e}")))?;
    let mut em = Emitter::new(base)?;
    em.set_identifier_case(first_case(job));

    // 1. Map everything, in input order.
    let mut mapped: Vec<Mapped> = Vec::new();
    let mut rejects: Vec<PendingReject> = Vec::new();
    let mut stats = MapStats::default();
    let mut file = 0u32;
    let mut number = 0u64;
    let mut records_by_source = vec![0u64; job.sources.len()];
    for (si, src) in job.sources.iter().enumerate() {
        let mut mapper: Option<Mapper> = None;
        for path in &src.inputs {
            let input = Input::open(path, opts.mmap)?;
            let text = decode_input(path, input.bytes(), &dialects[si])?;
            let x = Extract::open_text(path, file, &text, &dialects[si])?;
            let m = match mapper.take() {
                Some(m) if m.columns() != x.columns.as_slice() => {
                    return Err(Error::Input {
                        path: path.clone(),
                        line: Some(1),
                        message: format!(
                            "the columns differ from the first input of source `{}`",
                            src.name
                        ),
                    })
                }
                Some(m) => m,
                None => Mapper::new(&src.profile, &x.columns, opts.as_of).map_err(|message| {
                    Error::Profile {
                        path: src.profile_path.clone(),
                        message,
                    }
                })?,
            };
            let mut rdr = x.reader(x.whole());
            let blank_start = stats.blank_lines;
            loop {
                let mut batch = Vec::with_capacity(BATCH);
                while batch.len() < BATCH {
                    let mut rec = RawRecord::new();
                    if !rdr
                        .next_record(number + 1, &mut rec)
                        .map_err(|e| csv_err(base, file as usize, e))?
                    {
                        break;
                    }
                    number = em.next_number();
                    batch.push(rec);
                }
                if batch.is_empty() {
                    break;
                }
                records_by_source[si] += batch.len() as u64;
                let results = map_batch(&pool, &m, &batch);
                for (chunk_results, chunk_stats) in results {
                    stats.merge(chunk_stats);
                    for (rec, result) in chunk_results {
                        let rec = &batch[rec];
                        match result {
                            Ok(user) => mapped.push(Mapped {
                                source: si as u16,
                                file: rec.file,
                                line: rec.line,
                                lines: rec.last_line - rec.line + 1,
                                number: rec.number,
                                user,
                            }),
                            Err(fail) => rejects.push(PendingReject {
                                number: rec.number,
                                file: rec.file,
                                line: rec.line,
                                last_line: rec.last_line,
                                primary_id: reject_id(&m, rec, &fail),
                                fail,
                            }),
                        }
                    }
                }
                if batch.len() < BATCH {
                    break;
                }
            }
            // The batches' blank lines are in `stats` by now.
            stats.blank_lines += rdr.trailing_blank();
            em.end_file(
                file as usize,
                x.line_totals(),
                stats.blank_lines - blank_start,
            );
            file += 1;
            mapper = Some(m);
        }
    }
    em.stats.merge(stats);

    // 2. Decide who represents each person.
    let case = first_case(job);
    let rank_of: BTreeMap<&str, u32> = job
        .people
        .group_rank
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i as u32))
        .collect();
    let unranked = job.people.group_rank.len() as u32;
    let cands: Vec<Candidate> = mapped
        .iter()
        .map(|r| Candidate {
            key: match_value(&r.user, &job.people.match_on).map(|v| person_key(v, case)),
            rank: rank_of
                .get(xml::group_of(&r.user))
                .copied()
                .unwrap_or(unranked),
            source: r.source,
            number: r.number,
        })
        .collect();
    let decisions = decide(&cands);

    // 3. Claim identifiers in output order; winners only.
    let mut written = vec![false; mapped.len()];
    for (i, r) in mapped.iter().enumerate() {
        if !decisions.represents[i] {
            continue;
        }
        let owner = Owner {
            file: r.file,
            line: r.line,
        };
        match em.claim_conflict(id_values(&r.user), owner) {
            Ok(()) => written[i] = true,
            Err(c) => rejects.push(PendingReject {
                number: r.number,
                file: r.file,
                line: r.line,
                last_line: r.line + r.lines - 1,
                primary_id: r.user.get(UserField::PrimaryId).unwrap_or("").to_string(),
                fail: taken(&c, &base.inputs, source_name(job, c.owner.file)),
            }),
        }
    }

    // 4. Merge, after every winner's own identifiers are claimed, so a
    //    merged value never costs another person their record.
    let mut merged: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    let mut merged_values = 0u64;
    for d in &decisions.people {
        for &(l, _) in &d.losers {
            let mut took = Vec::new();
            let mut left = Vec::new();
            if job.people.merge && written[d.winner] {
                merge_into(
                    &mut em,
                    &mut mapped,
                    d.winner,
                    l,
                    case,
                    (&base.inputs, job),
                    (&mut took, &mut left),
                );
            }
            merged_values += took.len() as u64;
            merged.push((took, left));
        }
    }

    // 5. Write rejects in record order, then the users.
    rejects.sort_by_key(|r| r.number);
    for r in &rejects {
        em.reject(
            r.file,
            r.line,
            r.last_line,
            r.number,
            &r.primary_id,
            &r.fail,
        )?;
    }
    let (level, mtime) = (opts.limits.compression_level, zip_time(opts.as_of));
    let mut placer = Placer::new(&opts.out_dir, prefix, opts.limits);
    let mut user_xml = Vec::new();
    let mut users_by_source = vec![0u64; job.sources.len()];
    // Documents are compressed a batch of one per thread at a time and
    // placed in order, so the bytes do not depend on the thread count.
    let mut batch: Vec<(Vec<u8>, u64)> = Vec::with_capacity(threads);
    let compress = |batch: &mut Vec<(Vec<u8>, u64)>, placer: &mut Placer| -> Result<()> {
        let entries: Vec<Result<_>> = pool.install(|| {
            batch
                .par_iter()
                .map(|(doc, users)| compress_entry(doc, *users, level, mtime))
                .collect()
        });
        for entry in entries {
            placer.place(entry?)?;
        }
        batch.clear();
        Ok(())
    };
    for (i, r) in mapped.iter().enumerate() {
        if !written[i] {
            continue;
        }
        users_by_source[r.source as usize] += 1;
        user_xml.clear();
        xml::write_user(&mut user_xml, &r.user);
        if let Some(full) = em.accept(r.file, r.lines, &user_xml, xml::group_of(&r.user)) {
            batch.push(full);
            if batch.len() == threads {
                compress(&mut batch, &mut placer)?;
            }
        }
    }
    if let Some(last) = em.last_document() {
        batch.push(last);
    }
    compress(&mut batch, &mut placer)?;
    let parts = placer.finish()?;

    // 6. duplicates.csv and the summary part.
    let dup_tmp = hidden_temp(&opts.out_dir, ".csv.tmp")?;
    let f = dup_tmp
        .reopen()
        .map_err(|e| Error::io(DUPLICATES_FILE, e))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(f));
    let dup_err = |e: csv::Error| Error::io(DUPLICATES_FILE, e.into());
    w.write_record(DUPLICATES_HEADER).map_err(dup_err)?;
    let mut decided_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut superseded = 0u64;
    let mut merged_iter = merged.iter();
    let none = (Vec::new(), Vec::new());
    for d in &decisions.people {
        let win = &mapped[d.winner];
        let key = match_value(&win.user, &job.people.match_on)
            .unwrap_or("")
            .trim()
            .to_string();
        let outcome = if written[d.winner] {
            "written"
        } else {
            "rejected"
        };
        for &(l, rule) in &d.losers {
            let (took, left) = merged_iter.next().unwrap_or(&none);
            let lose = &mapped[l];
            superseded += 1;
            em.count_superseded(lose.file, lose.lines);
            *decided_by.entry(rule.code().to_string()).or_default() += 1;
            w.write_record([
                key.as_str(),
                &job.sources[win.source as usize].name,
                &base.inputs[win.file as usize].display().to_string(),
                &win.line.to_string(),
                xml::group_of(&win.user),
                outcome,
                &job.sources[lose.source as usize].name,
                &base.inputs[lose.file as usize].display().to_string(),
                &lose.line.to_string(),
                lose.user.get(UserField::PrimaryId).unwrap_or(""),
                xml::group_of(&lose.user),
                rule.code(),
                &took.join(";"),
                &left.join(";"),
            ])
            .map_err(dup_err)?;
        }
    }
    w.flush().map_err(|e| Error::io(DUPLICATES_FILE, e))?;
    drop(w);
    dup_tmp
        .as_file()
        .sync_all()
        .map_err(|e| Error::io(DUPLICATES_FILE, e))?;
    em.superseded = superseded;
    let summary = JobSummary {
        match_on: job.people.match_on.clone(),
        sources: job
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| SourceInfo {
                name: s.name.clone(),
                records: records_by_source[i],
                users_written: users_by_source[i],
            })
            .collect(),
        people_matched: decisions.people.len() as u64,
        superseded,
        decided_by,
        merged_values,
    };
    finish(
        base,
        em,
        parts,
        prefix,
        Extras {
            files: vec![(dup_tmp, DUPLICATES_FILE)],
            job: Some(summary),
        },
    )
}

/// The name of the source that input `file` (an index into the flattened
/// input list) belongs to.
fn source_name(job: &Job, file: u32) -> &str {
    let mut f = file as usize;
    for s in &job.sources {
        if f < s.inputs.len() {
            return &s.name;
        }
        f -= s.inputs.len();
    }
    "?"
}

fn first_case(job: &Job) -> IdentifierCase {
    job.sources[0].profile.rules.identifier_case
}

/// Index of each record in its batch with its mapping result, and the
/// batch's counters, per chunk, in input order.
type BatchResult = Vec<(Vec<(usize, std::result::Result<User, Fail>)>, MapStats)>;

fn map_batch(pool: &rayon::ThreadPool, m: &Mapper, batch: &[RawRecord]) -> BatchResult {
    const CHUNK: usize = 256;
    pool.install(|| {
        batch
            .par_chunks(CHUNK)
            .enumerate()
            .map(|(c, recs)| {
                let mut stats = MapStats::default();
                let mut spare = Vec::new();
                let out = recs
                    .iter()
                    .enumerate()
                    .map(|(j, rec)| (c * CHUNK + j, map_record(m, rec, &mut spare, &mut stats)))
                    .collect();
                (out, stats)
            })
            .collect()
    })
}

/// The value a person is matched on, as the record has it.
fn match_value<'u>(user: &'u User, match_on: &str) -> Option<&'u str> {
    let v = if match_on == "primary_id" {
        user.get(UserField::PrimaryId)
    } else {
        user.identifiers
            .iter()
            .find(|i| i.id_type == match_on)
            .map(|i| i.value.as_str())
    };
    v.filter(|v| !v.trim().is_empty())
}

/// The match value as Alma compares it.
fn person_key(v: &str, case: IdentifierCase) -> String {
    match case {
        IdentifierCase::Insensitive => fold(v),
        IdentifierCase::Sensitive => v.trim().to_string(),
    }
}

/// The reject of a winner whose identifier another person holds, naming
/// the other person's source, file and line.
fn taken(c: &Conflict, inputs: &[PathBuf], owner_source: &str) -> Fail {
    Fail::new(
        Reason::DuplicateId,
        c.id_type.as_str(),
        format!(
            "identifier of type {} and value {} is already taken by the record at line {} \
             of {} (source {}, as its {})",
            c.id_type,
            c.value,
            c.owner.line,
            inputs[c.owner.file as usize].display(),
            owner_source,
            c.owner_id_type
        ),
    )
}

/// Moves the loser's additional identifiers, emails and phones that the
/// winner lacks into the winner, claiming each identifier so no one else
/// loses it. Lists what was taken and what was left (and why); emails and
/// phones are listed by kind and line, never by value.
#[allow(clippy::too_many_arguments)]
fn merge_into(
    em: &mut Emitter,
    mapped: &mut [Mapped],
    winner: usize,
    loser: usize,
    case: IdentifierCase,
    (inputs, job): (&[PathBuf], &Job),
    (took, left): (&mut Vec<String>, &mut Vec<String>),
) {
    let (ids, emails, phones, line) = {
        let l = &mapped[loser];
        (
            l.user.identifiers.clone(),
            l.user.emails.clone(),
            l.user.phones.clone(),
            l.line,
        )
    };
    let w = &mut mapped[winner];
    let owner = Owner {
        file: w.file,
        line: w.line,
    };
    for id in ids {
        let key = person_key(&id.value, case);
        let has = |v: &str| person_key(v, case) == key;
        if w.user.get(UserField::PrimaryId).is_some_and(has)
            || w.user.identifiers.iter().any(|i| has(&i.value))
        {
            continue;
        }
        let label = format!("{}:{}", id.id_type, id.value.trim());
        match em.claim_conflict(
            std::iter::once((id.id_type.as_str(), id.value.as_str(), false)),
            owner,
        ) {
            Ok(()) => {
                took.push(label);
                w.user.identifiers.push(id);
            }
            Err(c) => left.push(format!(
                "{label} (taken by line {} of {}, source {})",
                c.owner.line,
                inputs[c.owner.file as usize].display(),
                source_name(job, c.owner.file)
            )),
        }
    }
    for mut e in emails {
        if w.user
            .emails
            .iter()
            .any(|x| x.address.trim().eq_ignore_ascii_case(e.address.trim()))
        {
            continue;
        }
        e.preferred = false;
        took.push(format!("email from line {line}"));
        w.user.emails.push(e);
    }
    for mut p in phones {
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        if w.user
            .phones
            .iter()
            .any(|x| digits(&x.number) == digits(&p.number))
        {
            continue;
        }
        p.preferred = false;
        p.preferred_sms = false;
        took.push(format!("phone from line {line}"));
        w.user.phones.push(p);
    }
}
