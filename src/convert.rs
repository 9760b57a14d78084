//! The `convert` pipeline: extracts → records → users → XML → zips, plus
//! the reject report and summary, published atomically.
//!
//! This single-threaded pipeline is the reference every faster engine
//! must match byte for byte. Stages are the modules of the crate, in
//! order: [`crate::source`], [`crate::map`], [`crate::dedupe`],
//! [`crate::xml`], [`crate::package`], [`crate::report`].
//!
//! Nothing becomes visible in the output directory until everything has
//! been written and checked: zips, `rejects.csv` and `summary.json` are
//! written under hidden temporary names and renamed at the very end (zips
//! first, summary last), so a failed run leaves the directory as it was.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::dedupe::{Conflict, IdSet, Owner};
use crate::error::{Error, Result};
use crate::map::Mapper;
use crate::package::{Limits, Packager};
use crate::profile::Profile;
use crate::report::{Fail, InputInfo, MapStats, Reason, Reject, Summary, REJECT_HEADER};
use crate::source::{Dialect, Extract, RawRecord};
use crate::xml;

/// Everything one `convert` run needs.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The profile file (for messages).
    pub profile_path: PathBuf,
    /// The parsed profile.
    pub profile: Profile,
    /// Extracts of the profile's layout, processed in this order.
    pub inputs: Vec<PathBuf>,
    /// Output directory (created if missing).
    pub out_dir: PathBuf,
    /// The date every relative date rule counts from.
    pub as_of: NaiveDate,
    /// Output limits.
    pub limits: Limits,
    /// Reject rate in percent above which the run reports failure (exit
    /// status 3) although output was written. By default 5, the rate at
    /// which Alma itself alerts.
    pub reject_threshold_percent: f64,
    /// Overrides the profile's output prefix.
    pub prefix: Option<String>,
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// What `summary.json` holds.
    pub summary: Summary,
    /// Paths published, in publication order.
    pub published: Vec<PathBuf>,
    /// Old zips of the same prefix removed because this run has fewer.
    pub removed_stale: Vec<PathBuf>,
}

/// Name of the reject report in the output directory.
pub const REJECTS_FILE: &str = "rejects.csv";
/// Name of the summary in the output directory.
pub const SUMMARY_FILE: &str = "summary.json";

fn profile_err(opts: &ConvertOptions, message: String) -> Error {
    Error::Profile {
        path: opts.profile_path.clone(),
        message,
    }
}

fn hidden_temp(dir: &Path, suffix: &str) -> Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".patronload-")
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Runs the whole conversion.
pub fn convert(opts: &ConvertOptions) -> Result<Outcome> {
    opts.limits.check()?;
    if opts.inputs.is_empty() {
        return Err(Error::Usage("no input files given".into()));
    }
    let prefix = opts
        .prefix
        .clone()
        .unwrap_or_else(|| opts.profile.output.prefix.clone());
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(profile_err(
            opts,
            format!("output prefix `{prefix}` must be letters, digits, `_` or `-`"),
        ));
    }
    let dialect = Dialect::new(&opts.profile.input)
        .map_err(|m| profile_err(opts, format!("[input]: {m}")))?;
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::io(&opts.out_dir, e))?;

    let mut rejects_tmp = hidden_temp(&opts.out_dir, ".csv.tmp")?;
    let mut rejects = csv::Writer::from_writer(std::io::BufWriter::new(rejects_tmp.as_file_mut()));
    let rej_err = |e: csv::Error| Error::io(REJECTS_FILE, e.into());
    rejects.write_record(REJECT_HEADER).map_err(rej_err)?;

    let mut packager = Packager::new(&opts.out_dir, &prefix, opts.limits, opts.as_of);
    let mut stats = MapStats::default();
    let mut mapper: Option<Mapper> = None;
    let mut ids: Option<IdSet> = None;
    let mut inputs = Vec::new();
    let mut rejected_by_reason: BTreeMap<String, u64> = BTreeMap::new();
    let mut users_by_group: BTreeMap<String, u64> = BTreeMap::new();
    let (mut read, mut written, mut rejected) = (0u64, 0u64, 0u64);
    let mut rec = RawRecord::new();
    let mut spare: Vec<&str> = Vec::new();
    let mut user_xml = Vec::new();

    for (file_idx, path) in opts.inputs.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut extract = Extract::open(path, file_idx as u32, &bytes, &dialect)?;
        let m = match &mapper {
            Some(m) => {
                if m.columns() != extract.columns.as_slice() {
                    return Err(Error::Input {
                        path: path.clone(),
                        line: Some(1),
                        message: format!(
                            "the columns differ from the first input's; files of one feed must \
                             share a layout (expected {}, found {})",
                            m.columns().join(","),
                            extract.columns.join(",")
                        ),
                    });
                }
                m
            }
            None => mapper.insert(
                Mapper::new(&opts.profile, &extract.columns, opts.as_of)
                    .map_err(|msg| profile_err(opts, msg))?,
            ),
        };
        let set = ids.get_or_insert_with(|| IdSet::new(m.identifier_case()));
        let path_label = path.display().to_string();
        let file_start = read;
        loop {
            let got = extract
                .next_record(read + 1, &mut rec)
                .map_err(|e| Error::Input {
                    path: path.clone(),
                    line: e.position().map(|p| p.line()),
                    message: e.to_string(),
                })?;
            if !got {
                break;
            }
            read += 1;
            let mut fields = recycle(std::mem::take(&mut spare));
            let result = m
                .decode(&rec.fields, &mut fields)
                .and_then(|()| m.map(&fields, &mut stats))
                .and_then(|user| {
                    let owner = Owner {
                        file: rec.file,
                        line: rec.line,
                    };
                    match set.claim(&user, owner) {
                        Ok(()) => Ok(user),
                        Err(c) => Err(duplicate_fail(&c, rec.file, &opts.inputs)),
                    }
                });
            match result {
                Ok(user) => {
                    user_xml.clear();
                    xml::write_user(&mut user_xml, &user);
                    packager.add_user(&user_xml)?;
                    *users_by_group
                        .entry(xml::group_of(&user).to_string())
                        .or_default() += 1;
                    written += 1;
                }
                Err(fail) => {
                    let primary_id = m.report_id(&rec.fields);
                    let r = Reject {
                        file: rec.file,
                        line: rec.line,
                        number: rec.number,
                        primary_id,
                        fail,
                    };
                    write_reject(&mut rejects, &path_label, &r).map_err(rej_err)?;
                    *rejected_by_reason
                        .entry(r.fail.reason.code().to_string())
                        .or_default() += 1;
                    rejected += 1;
                }
            }
            spare = recycle(fields);
        }
        inputs.push(InputInfo {
            path: path_label,
            records: read - file_start,
        });
    }

    if read == 0 {
        return Err(Error::Input {
            path: opts.inputs[0].clone(),
            line: None,
            message: "no records in the input; refusing to publish an empty load".into(),
        });
    }
    if read != written + rejected {
        return Err(Error::Invariant(format!(
            "records read ({read}) != users written ({written}) + rejected ({rejected})"
        )));
    }
    let rejected_sum: u64 = rejected_by_reason.values().sum();
    if rejected_sum != rejected {
        return Err(Error::Invariant("rejects by reason do not add up".into()));
    }

    rejects.flush().map_err(|e| Error::io(REJECTS_FILE, e))?;
    drop(rejects);
    let parts = packager.finish()?;
    let zipped: u64 = parts.iter().map(|p| p.info.users).sum();
    if zipped != written {
        return Err(Error::Invariant(format!(
            "users in zips ({zipped}) != users written ({written})"
        )));
    }
    let rate = rejected as f64 * 100.0 / read as f64;
    let summary = Summary {
        as_of: opts.as_of.format("%Y-%m-%d").to_string(),
        inputs,
        records_read: read,
        users_written: written,
        rejected,
        duplicate_identifiers: rejected_by_reason
            .get(Reason::DuplicateId.code())
            .copied()
            .unwrap_or(0),
        rejected_by_reason,
        reject_rate_percent: (rate * 1000.0).round() / 1000.0,
        reject_threshold_percent: opts.reject_threshold_percent,
        reject_threshold_exceeded: rate > opts.reject_threshold_percent,
        map: stats,
        users_by_group,
        zips: parts.iter().map(|p| p.info.clone()).collect(),
    };
    let mut summary_tmp = hidden_temp(&opts.out_dir, ".json.tmp")?;
    let mut json = serde_json::to_vec_pretty(&summary)
        .map_err(|e| Error::Invariant(format!("summary does not serialize: {e}")))?;
    json.push(b'\n');
    summary_tmp
        .write_all(&json)
        .map_err(|e| Error::io(SUMMARY_FILE, e))?;
    summary_tmp
        .as_file()
        .sync_all()
        .map_err(|e| Error::io(SUMMARY_FILE, e))?;
    rejects_tmp
        .as_file()
        .sync_all()
        .map_err(|e| Error::io(REJECTS_FILE, e))?;

    // Publish: zips first, then remove the previous run's extra parts so
    // Alma cannot load yesterday's users twice, then the reports.
    let mut published = Vec::new();
    for p in parts {
        let dest = opts.out_dir.join(&p.info.name);
        p.file
            .persist(&dest)
            .map_err(|e| Error::io(&dest, e.error))?;
        published.push(dest);
    }
    let removed_stale = remove_stale_parts(&opts.out_dir, &prefix, summary.zips.len())?;
    for (tmp, name) in [(rejects_tmp, REJECTS_FILE), (summary_tmp, SUMMARY_FILE)] {
        let dest = opts.out_dir.join(name);
        readable(tmp.as_file(), &dest)?;
        tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        published.push(dest);
    }
    Ok(Outcome {
        summary,
        published,
        removed_stale,
    })
}

/// Gives a published file the usual 0644 mode: temporary files are
/// created private, but an upload job running as another user must be
/// able to read the package.
fn readable(f: &std::fs::File, dest: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(dest, e))?;
    }
    #[cfg(not(unix))]
    let _ = (f, dest);
    Ok(())
}

/// Empties a vector of borrowed fields so its allocation can be reused for
/// the next record's borrows (in-place collect keeps the buffer).
fn recycle<'b>(mut v: Vec<&str>) -> Vec<&'b str> {
    v.clear();
    v.into_iter().map(|_| "").collect()
}

/// The reject for a record that lost an identifier to an earlier one,
/// worded like Alma's own "Identifier of type … is already taken".
fn duplicate_fail(c: &Conflict, file: u32, inputs: &[PathBuf]) -> Fail {
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

fn write_reject<W: Write>(w: &mut csv::Writer<W>, path: &str, r: &Reject) -> csv::Result<()> {
    w.write_record([
        path,
        &r.line.to_string(),
        &r.number.to_string(),
        &r.primary_id,
        r.fail.reason.code(),
        &r.fail.field,
        &r.fail.message,
    ])
}

/// Removes `<prefix>_NNN.zip` files numbered above `kept`: parts of an
/// earlier, larger run that Alma would otherwise load again.
fn remove_stale_parts(dir: &Path, prefix: &str, kept: usize) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('_'))
            .and_then(|r| r.strip_suffix(".zip"))
        else {
            continue;
        };
        if num.len() == 3 && num.bytes().all(|b| b.is_ascii_digit()) {
            let n: usize = num.parse().unwrap_or(0);
            if n > kept {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                removed.push(entry.path());
            }
        }
    }
    removed.sort();
    Ok(removed)
}
