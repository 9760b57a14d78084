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
//! A job reads its sources twice (`stream`): the first pass maps every
//! record but keeps only compact per-record keys (person key, group rank,
//! line, identifier values), from which the people are decided and the
//! winners' identifiers claimed; the second maps again and streams the
//! winners' users into the package in input order, as `convert` does.
//! Whole users are kept only for people in more than one record, so a
//! job needs memory like a single feed of the same size, not in
//! proportion to its users.

pub mod decide;
mod keys;
mod scan;
mod stream;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dedupe::Conflict;
use crate::error::{Error, Result};
use crate::map::fold;
use crate::model::{User, UserField};
use crate::profile::{IdentifierCase, Profile};
use crate::report::{Fail, Reason};
use crate::run::convert::{
    check_engine, check_prefix, in_out_dir, load_dialect, ConvertOptions, Outcome,
};
use crate::run::options::RunOptions;
use crate::state::{Departed, PackageKind, StateOptions};

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
    /// `[delivery.NAME]` targets: read by `deliver::config`, not here.
    #[serde(default)]
    pub delivery: Option<toml::Table>,
    /// `[notify]`: read by `deliver::config`, not here.
    #[serde(default)]
    pub notify: Option<toml::Table>,
    /// Memory of past runs (`[state]`): as `convert --state` and its
    /// flags, which win over it.
    pub state: Option<JobState>,
    /// Alma's own users to check every user against (`[alma]`).
    #[serde(default)]
    pub alma: AlmaSpec,
}

/// `[alma]` of a job file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlmaSpec {
    /// Alma's user exports (XML, zips of XML, or CSV), relative to the
    /// job file: every user is checked against them before it is
    /// written (as `convert --alma-users`).
    #[serde(default)]
    pub users: Vec<PathBuf>,
}

/// `[state]` of a job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobState {
    /// The state file, relative to the job file.
    pub path: PathBuf,
    /// `full` (the default) or `delta`.
    pub package: Option<String>,
    /// `ignore` (the default) or `expire`.
    pub departed: Option<String>,
    /// Days after the as-of date a departed patron expires (default 0).
    pub grace_days: Option<u32>,
    /// Note type of the departure note (default `OTHER`).
    pub note_type: Option<String>,
    /// Guard limit in percent: users fewer than the last run (10).
    pub guard_population_drop: Option<f64>,
    /// Guard limit in percent: departed users (5).
    pub guard_departed: Option<f64>,
    /// Guard limit in percent: user group changed (10).
    pub guard_group_changed: Option<f64>,
    /// Guard limit in percent: any one field changed (20).
    pub guard_field_changed: Option<f64>,
}

impl JobState {
    /// The state options, the path resolved against `base`.
    fn options(&self, base: &Path) -> std::result::Result<StateOptions, String> {
        let mut o = StateOptions::new(if self.path.is_absolute() {
            self.path.clone()
        } else {
            base.join(&self.path)
        });
        o.package = match self.package.as_deref() {
            None | Some("full") => PackageKind::Full,
            Some("delta") => PackageKind::Delta,
            Some(p) => return Err(format!("[state] package `{p}`: write `full` or `delta`")),
        };
        o.departed = match self.departed.as_deref() {
            None | Some("ignore") => Departed::Ignore,
            Some("expire") => Departed::Expire,
            Some(d) => {
                return Err(format!(
                    "[state] departed `{d}`: write `ignore` or `expire`"
                ))
            }
        };
        o.grace_days = self.grace_days.unwrap_or(0);
        if let Some(t) = &self.note_type {
            o.note_type = t.clone();
        }
        let g = &mut o.guards;
        for (v, slot) in [
            (self.guard_population_drop, &mut g.population_drop_percent),
            (self.guard_departed, &mut g.departed_percent),
            (self.guard_group_changed, &mut g.group_changed_percent),
            (self.guard_field_changed, &mut g.field_changed_percent),
        ] {
            if let Some(v) = v {
                if !(0.0..=100.0).contains(&v) {
                    return Err(format!("[state] guard limit {v} is not a percentage"));
                }
                *slot = v;
            }
        }
        Ok(o)
    }
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
    /// `[state]`, resolved.
    pub state: Option<StateOptions>,
    /// Alma's user exports to check against (`[alma] users`), resolved.
    pub alma_users: Vec<PathBuf>,
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
        let state = spec
            .state
            .as_ref()
            .map(|st| st.options(base))
            .transpose()
            .map_err(|m| job_err(path, m))?;
        Ok(Job {
            path: path.to_path_buf(),
            people: spec.people,
            prefix: spec.output.prefix,
            sources,
            state,
            alma_users: spec.alma.users.iter().map(resolve).collect(),
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
    /// What every run shares: output, date, limits, threshold, engine.
    /// Its `prefix` overrides the job's.
    pub run: RunOptions,
}

/// Runs a job: every source, one package, `duplicates.csv` beside
/// `rejects.csv` and `summary.json`, published atomically.
pub fn convert_job(opts: &JobOptions) -> Result<Outcome> {
    opts.run.limits.check()?;
    let job = &opts.job;
    let first = &job.sources[0];
    let prefix = opts
        .run
        .prefix
        .clone()
        .or_else(|| job.prefix.clone())
        .unwrap_or_else(|| first.profile.output.prefix.clone());
    check_prefix(&prefix).map_err(|m| job_err(&job.path, m))?;
    check_engine(opts.run.engine)?;
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
        run: RunOptions {
            prefix: Some(prefix.clone()),
            state: opts.run.state.clone().or_else(|| job.state.clone()),
            ..opts.run.clone()
        },
    };
    in_out_dir(&opts.run.out_dir, &prefix, opts.run.output, || {
        stream::run(opts, &base, &dialects, &prefix)
    })
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

/// The source that input `file` (an index into the flattened input list)
/// belongs to.
fn source_of(job: &Job, file: u32) -> &Source {
    let mut f = file as usize;
    for s in &job.sources {
        if f < s.inputs.len() {
            return s;
        }
        f -= s.inputs.len();
    }
    &job.sources[job.sources.len() - 1]
}

fn first_case(job: &Job) -> IdentifierCase {
    job.sources[0].profile.rules.identifier_case
}

/// The value a person is matched on, as the record has it.
fn match_value<'u>(user: &'u User<'_>, match_on: &str) -> Option<&'u str> {
    let v = if match_on == "primary_id" {
        user.get(UserField::PrimaryId)
    } else {
        user.identifiers
            .iter()
            .find(|i| i.id_type == match_on)
            .map(|i| i.value.as_ref())
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
