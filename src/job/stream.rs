//! `convert --job` in two passes, in memory like a single feed.
//!
//! 1. **Keys.** Every record is mapped (in parallel, in input order) but
//!    only what precedence and identifier claims need is kept, compactly:
//!    the person key (each distinct key stored once), the group rank, the
//!    line, and the identifier values.
//! 2. **Decisions.** [`decide`] runs over the records of people seen more
//!    than once; the winners claim their identifiers in output order, then
//!    merged identifiers are claimed, exactly as when every user was held
//!    in memory. The keys, values and claims are dropped. When the job
//!    merges, the superseded records that come *after* their winner are
//!    mapped once more (the others are reached before their winner in the
//!    next pass) and their identifiers, emails and phones kept.
//! 3. **Users.** Every record is read and mapped again and streamed:
//!    rejects in record order, winners serialized, merged and compressed
//!    as they come, losers only noted for `duplicates.csv`.
//!
//! Mapping is a pure function of the record, so both passes see the same
//! users; the second pass checks it.

use std::collections::{BTreeMap, HashMap};
use std::io::BufWriter;
use std::sync::{Arc, Mutex};

use crossbeam_channel::unbounded;

use super::decide::{decide, Candidate};
use super::{
    first_case, match_value, person_key, source_name, source_of, taken, JobOptions,
    DUPLICATES_FILE, DUPLICATES_HEADER,
};
use crate::dedupe::{IdSet, Owner};
use crate::error::{Error, Result};
use crate::map::Mapper;
use crate::model::UserField;
use crate::profile::IdentifierCase;
use crate::read::source::{Dialect, RawRecord};
use crate::report::{Fail, JobSummary, MapStats, SourceInfo};
use crate::run::convert::{finish, map_record, reject_id, ConvertOptions, Emitter, Extras};
use crate::run::cpu::{Stage as CpuStage, StageCpu};
use crate::run::engine::{finish_placing, open_docs, place_in_order, Compressed, Documents};
use crate::run::progress::Stage;
use crate::write::package::{zip_time, Placer};
use crate::write::xml;

use super::keys::*;
use super::scan::*;

/// Records read per parallel round: enough to amortize the hand-off,
/// small enough to keep the round's users in memory.
pub(super) const BATCH: usize = 4096;

/// Records mapped per parallel task.
pub(super) const CHUNK: usize = 256;

/// Record flags, one byte per record.
pub(super) const MAPPED: u8 = 1;
/// Superseded by another record of the same person.
pub(super) const LOSER: u8 = 2;
/// Represents a person seen more than once.
pub(super) const WINNER: u8 = 4;
/// Represents its person and claimed its identifiers.
pub(super) const WRITTEN: u8 = 8;
/// Superseded by a winner that comes before it and merges.
pub(super) const AHEAD: u8 = 16;

/// No person key (no match value, or not mapped).
pub(super) const NO_PERSON: u32 = u32::MAX;

pub(super) fn group_index(groups: &mut Vec<String>, g: &str) -> u32 {
    // A handful of groups per chunk: a scan is faster than hashing.
    if let Some(i) = groups.iter().position(|x| x == g) {
        return i as u32;
    }
    groups.push(g.to_string());
    (groups.len() - 1) as u32
}

pub(super) fn changed() -> Error {
    Error::Invariant("a record mapped differently in the second pass".into())
}

/// The input (index into the job's inputs) record `i` was read from.
fn file_of(file_ends: &[usize], i: usize) -> usize {
    file_ends.partition_point(|&end| end <= i)
}

/// Runs a job in two passes; see the module documentation.
pub(super) fn run(
    opts: &JobOptions,
    base: &ConvertOptions,
    dialects: &[Dialect],
    prefix: &str,
) -> Result<crate::run::convert::Outcome> {
    let job = &opts.job;
    let threads = match opts.run.engine {
        crate::run::convert::Engine::Reference => 1,
        crate::run::convert::Engine::Parallel { threads, .. } => threads,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Invariant(format!("thread pool: {e}")))?;
    let ctx = Ctx {
        opts,
        base,
        dialects,
        pool,
    };
    let mut em = Emitter::new(base)?;
    let case = first_case(job);
    let file_source: Vec<usize> = job
        .sources
        .iter()
        .enumerate()
        .flat_map(|(si, s)| s.inputs.iter().map(move |_| si))
        .collect();

    let total = em.bytes.total();
    em.progress.begin_pass(Stage::Scanning, total);
    // 1. Keys.
    let Keys {
        people,
        seen_twice,
        person,
        rank,
        line,
        mut flags,
        ids,
        file_ends,
        records_by_source,
    } = first_pass(&ctx, case)?;

    // 2. Decisions, over the records of people seen more than once.
    let decided = decide_people(
        people,
        seen_twice,
        person,
        rank,
        &file_source,
        &file_ends,
        &mut flags,
    );
    let mut claimed = claim(
        &ctx, case, &mut flags, line, ids, &file_ends, &decided, &mut em,
    );
    let kept = map_ahead(&ctx, &mut flags, &decided)?;

    // 3. Users.
    em.progress.begin_pass(Stage::Reading, total);
    let streamed = second_pass(
        &ctx,
        prefix,
        threads,
        &mut em,
        &flags,
        &decided,
        &mut claimed,
        kept,
    )?;

    // duplicates.csv and the summary part.
    let (dup_tmp, summary) = write_duplicates(
        &ctx,
        &mut em,
        &file_source,
        &flags,
        &decided,
        &claimed,
        &streamed,
        &records_by_source,
    )?;
    finish(
        base,
        em,
        streamed.parts,
        prefix,
        Extras {
            files: vec![(dup_tmp, DUPLICATES_FILE)],
            job: Some(summary),
        },
    )
}

/// The first pass: every record mapped, only its person key, group rank,
/// line and identifier values kept.
fn first_pass(ctx: &Ctx, case: IdentifierCase) -> Result<Keys> {
    let job = &ctx.opts.job;
    let rank_of: BTreeMap<&str, u32> = job
        .people
        .group_rank
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i as u32))
        .collect();
    let unranked = job.people.group_rank.len() as u32;
    let mut people = People::new();
    let mut seen_twice: Vec<bool> = Vec::new();
    let mut person: Vec<u32> = Vec::new();
    let mut rank: Vec<u32> = Vec::new();
    let mut line: Vec<u64> = Vec::new();
    let mut flags: Vec<u8> = Vec::new();
    let mut ids = IdValues::default();
    let mut file_ends: Vec<usize> = Vec::new();
    let mut records_by_source = vec![0u64; job.sources.len()];
    let map_keys = |m: &Mapper, recs: &[RawRecord]| {
        key_chunk(m, recs, &job.people.match_on, case, &rank_of, unranked)
    };
    ctx.scan(map_keys, |ev| {
        let (si, batch, chunks) = match ev {
            Event::EndFile { records, .. } => {
                file_ends.push(records as usize);
                return Ok(());
            }
            Event::Batch {
                source,
                recs,
                chunks,
            } => (source, recs, chunks),
        };
        {
            records_by_source[si] += batch.len() as u64;
            let mut recs = batch.iter();
            for chunk in chunks {
                let mut prev_ids = 0;
                for item in chunk.items {
                    let rec = recs.next().ok_or_else(changed)?;
                    line.push(rec.line);
                    match item {
                        KeyItem::Rejected => {
                            flags.push(0);
                            person.push(NO_PERSON);
                            rank.push(0);
                        }
                        KeyItem::Mapped {
                            key,
                            rank: r,
                            ids_end,
                        } => {
                            flags.push(MAPPED);
                            rank.push(r);
                            for &(t, a, b, p) in &chunk.ids[prev_ids..ids_end] {
                                let t = ids.type_index(&chunk.types[t as usize]);
                                ids.text.push_str(&chunk.text[a..b]);
                                ids.values.push((ids.text.len(), t, p));
                            }
                            prev_ids = ids_end;
                            let p = match key {
                                Some((a, b)) => {
                                    let (p, seen) = people.intern(&chunk.text[a..b])?;
                                    if seen {
                                        seen_twice[p as usize] = true;
                                    } else {
                                        seen_twice.push(false);
                                    }
                                    p
                                }
                                None => NO_PERSON,
                            };
                            person.push(p);
                        }
                    }
                    ids.records.push(ids.values.len());
                }
            }
        }
        Ok(())
    })?;
    Ok(Keys {
        people,
        seen_twice,
        person,
        rank,
        line,
        flags,
        ids,
        file_ends,
        records_by_source,
    })
}

/// Maps one chunk of the first pass, keeping only its keys.
fn key_chunk(
    m: &Mapper,
    recs: &[RawRecord],
    match_on: &str,
    case: IdentifierCase,
    rank_of: &BTreeMap<&str, u32>,
    unranked: u32,
) -> KeyChunk {
    let mut out = KeyChunk::default();
    let mut stats = MapStats::default();
    let mut spare = Vec::new();
    for rec in recs {
        let item = match map_record(m, rec, &mut spare, &mut stats) {
            Err(_) => KeyItem::Rejected,
            Ok(user) => {
                let key = match_value(&user, match_on).map(|v| {
                    let start = out.text.len();
                    out.text.push_str(&person_key(v, case));
                    (start, out.text.len())
                });
                for (t, v, p) in crate::run::convert::id_values(&user) {
                    let t = match out.types.iter().position(|x| x == t) {
                        Some(i) => i,
                        None => {
                            out.types.push(t.to_string());
                            out.types.len() - 1
                        }
                    };
                    let start = out.text.len();
                    out.text.push_str(v);
                    out.ids.push((t as u16, start, out.text.len(), p));
                }
                let rank = rank_of
                    .get(xml::group_of(&user))
                    .copied()
                    .unwrap_or(unranked);
                KeyItem::Mapped {
                    key,
                    rank,
                    ids_end: out.ids.len(),
                }
            }
        };
        out.items.push(item);
    }
    out
}

/// Between the passes: [`decide`] over the records of people seen more
/// than once, marking winners and losers in `flags`.
fn decide_people(
    people: People,
    seen_twice: Vec<bool>,
    person: Vec<u32>,
    rank: Vec<u32>,
    file_source: &[usize],
    file_ends: &[usize],
    flags: &mut [u8],
) -> Decided {
    let mut members: Vec<usize> = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();
    for (i, &p) in person.iter().enumerate() {
        if p != NO_PERSON && seen_twice[p as usize] {
            members.push(i);
            cands.push(Candidate {
                key: Some(people.key(p).to_string()),
                rank: rank[i],
                source: file_source[file_of(file_ends, i)] as u16,
                number: i as u64 + 1,
            });
        }
    }
    drop((people, person, rank, seen_twice));
    let decisions = decide(&cands);
    drop(cands);
    let persons: Vec<Person> = decisions
        .people
        .into_iter()
        .map(|d| Person {
            winner: members[d.winner],
            losers: d
                .losers
                .into_iter()
                .map(|(l, rule)| (members[l], rule))
                .collect(),
        })
        .collect();
    drop(members);
    let mut winner_of: HashMap<usize, usize> = HashMap::new();
    let mut person_of: HashMap<usize, usize> = HashMap::new();
    for (pi, p) in persons.iter().enumerate() {
        flags[p.winner] |= WINNER;
        person_of.insert(p.winner, pi);
        for &(l, _) in &p.losers {
            flags[l] |= LOSER;
            winner_of.insert(l, p.winner);
        }
    }
    Decided {
        persons,
        winner_of,
        person_of,
    }
}

/// Between the passes: winners claim their identifiers in output order,
/// first wins, then the identifiers they merge.
#[allow(clippy::too_many_arguments)]
fn claim(
    ctx: &Ctx,
    case: IdentifierCase,
    flags: &mut [u8],
    line: Vec<u64>,
    ids: IdValues,
    file_ends: &[usize],
    decided: &Decided,
    em: &mut Emitter,
) -> Claimed {
    let (job, base) = (&ctx.opts.job, ctx.base);
    let merge = job.people.merge;
    let persons = &decided.persons;
    let file_of = |i: usize| file_of(file_ends, i);
    // Winners claim their identifiers in output order, first wins.
    let mut claims = IdSet::new(case);
    claims.reserve(ids.values.len(), ids.text.len());
    let mut lost: HashMap<usize, Fail> = HashMap::new();
    for i in 0..flags.len() {
        if flags[i] & MAPPED == 0 || flags[i] & LOSER != 0 {
            continue;
        }
        let owner = Owner {
            file: file_of(i) as u32,
            line: line[i],
        };
        // Alma's own users first (`[alma] users`): a user Alma would
        // refuse claims nothing.
        if let Some(alma) = ctx.opts.run.alma.as_deref() {
            let match_id = source_of(job, owner.file).profile.rules.match_id.trim();
            if let Err(fail) = alma.check(ids.of(i), match_id, case) {
                lost.insert(i, fail);
                continue;
            }
        }
        match claims.claim_values(ids.of(i), owner) {
            Ok(()) => {
                flags[i] |= WRITTEN;
                // Winners are final here: `index.csv` in input order.
                let primary = ids.of(i).find(|v| v.2).map_or("", |v| v.1.trim());
                em.index_row(primary, owner.file, owner.line, i as u64 + 1);
            }
            Err(c) => {
                lost.insert(i, taken(&c, &base.inputs, source_name(job, c.owner.file)));
            }
        }
    }
    // Then merged identifiers, after every winner's own, so a merged
    // value never costs another person their record.
    let mut merges: Vec<Vec<Merge>> = Vec::with_capacity(persons.len());
    for p in persons {
        let mut per_loser = Vec::with_capacity(p.losers.len());
        let merging = merge && flags[p.winner] & WRITTEN != 0;
        let owner = Owner {
            file: file_of(p.winner) as u32,
            line: line[p.winner],
        };
        let mut has: Vec<String> = if merging {
            ids.of(p.winner)
                .map(|(_, v, _)| person_key(v, case))
                .collect()
        } else {
            Vec::new()
        };
        for &(l, _) in &p.losers {
            let mut m = Merge::default();
            if merging {
                for (pos, (t, v, _)) in ids.of(l).filter(|&(_, _, primary)| !primary).enumerate() {
                    let key = person_key(v, case);
                    if has.contains(&key) {
                        continue;
                    }
                    let label = format!("{t}:{}", v.trim());
                    match claims.claim_values(std::iter::once((t, v, false)), owner) {
                        Ok(()) => {
                            m.took.push(label);
                            m.ids.push(pos);
                            has.push(key);
                        }
                        Err(c) => m.left.push(format!(
                            "{label} (taken by line {} of {}, source {})",
                            c.owner.line,
                            base.inputs[c.owner.file as usize].display(),
                            source_name(job, c.owner.file)
                        )),
                    }
                }
            }
            per_loser.push(m);
        }
        merges.push(per_loser);
    }
    drop((claims, ids, line));
    Claimed { lost, merges }
}

/// The merge-ahead parse: a merging winner written before its loser
/// merges from it, so those losers are mapped once more now and their
/// material kept for the second pass.
fn map_ahead(
    ctx: &Ctx,
    flags: &mut [u8],
    decided: &Decided,
) -> Result<HashMap<usize, Box<Material>>> {
    let merge = ctx.opts.job.people.merge;
    let persons = &decided.persons;
    let mut ahead = 0usize;
    if merge {
        for p in persons {
            if flags[p.winner] & WRITTEN != 0 {
                for &(l, _) in p.losers.iter().filter(|&&(l, _)| l > p.winner) {
                    flags[l] |= AHEAD;
                    ahead += 1;
                }
            }
        }
    }
    let mut kept: HashMap<usize, Box<Material>> = HashMap::with_capacity(ahead);
    if ahead > 0 {
        let flags = &flags;
        let map_ahead = |m: &Mapper, recs: &[RawRecord]| {
            let mut spare = Vec::new();
            let mut stats = MapStats::default();
            recs.iter()
                .filter(|rec| flags.get(rec.number as usize - 1).copied().unwrap_or(0) & AHEAD != 0)
                .map(|rec| {
                    let user = map_record(m, rec, &mut spare, &mut stats).ok();
                    (
                        rec.number as usize - 1,
                        user.map(|u| Box::new(Material::of(u, rec.line))),
                    )
                })
                .collect::<Vec<_>>()
        };
        ctx.scan(map_ahead, |ev| {
            if let Event::Batch { chunks, .. } = ev {
                for (i, mat) in chunks.into_iter().flatten() {
                    kept.insert(i, mat.ok_or_else(changed)?);
                }
            }
            Ok(())
        })?;
    }
    Ok(kept)
}

/// The second pass: every record mapped again and streamed; rejects in
/// record order, winners serialized, merged and compressed as they come,
/// losers only noted for `duplicates.csv`.
#[allow(clippy::too_many_arguments)]
fn second_pass(
    ctx: &Ctx,
    prefix: &str,
    threads: usize,
    em: &mut Emitter,
    flags: &[u8],
    decided: &Decided,
    claimed: &mut Claimed,
    mut kept: HashMap<usize, Box<Material>>,
) -> Result<Streamed> {
    let (opts, job) = (ctx.opts, &ctx.opts.job);
    let merge = job.people.merge;
    let Decided {
        persons,
        winner_of,
        person_of,
    } = decided;
    let Claimed { lost, merges } = claimed;
    let (level, mtime) = (opts.run.limits.compression_level, zip_time(opts.run.as_of));
    let placer = Placer::new(&opts.run.out_dir, prefix, opts.run.limits);
    let mut users_by_source = vec![0u64; job.sources.len()];
    let mut rows: HashMap<usize, Row> = HashMap::new();
    // Chunk XML buffers go back for reuse once consumed: fresh ones for
    // every chunk would be page-faulted in anew, a gigabyte per million
    // users.
    let spare_xml: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let cpu = Arc::new(StageCpu::default());
    em.cpu = Some(Arc::clone(&cpu));
    let map_users = |m: &Mapper, recs: &[RawRecord]| {
        cpu.time(CpuStage::Map, || user_chunk(m, recs, flags, &spare_xml))
    };
    // Documents are compressed on the pool as they fill, under the
    // single-feed engine's budget of XML in flight, and placed in order.
    let (tok_tx, tok_rx) = open_docs(threads);
    let (ent_tx, ent_rx) = unbounded::<Compressed>();
    // Users are copied into the documents' own buffers, which nobody
    // reuses: the chunk buffers go back to `spare_xml` at once.
    let (back, _) = unbounded::<Vec<u8>>();
    let parts = std::thread::scope(|ts| -> Result<_> {
        let place_cpu = Arc::clone(&cpu);
        let placer_thread = ts.spawn(move || {
            place_cpu.time(CpuStage::Place, || place_in_order(placer, ent_rx, tok_tx))
        });
        let mut docs = Documents::new(
            &ctx.pool,
            (opts.run.limits.users_per_file, level, mtime),
            &tok_rx,
            ent_tx.clone(),
            back,
            Arc::clone(&cpu),
        );
        // This thread parses the records and consumes them in order.
        let consuming = cpu.mark();
        let mut user_xml = Vec::new();
        let consumed = ctx.scan(map_users, |ev| {
            let (si, batch, chunks) = match ev {
                Event::EndFile {
                    file,
                    trailing_blank,
                    suspect,
                    totals,
                    ..
                } => {
                    if let Some(looks) = suspect {
                        em.note_suspect(file, looks);
                    }
                    // The file's batches are merged into `em.stats` by now.
                    em.stats.blank_lines += trailing_blank;
                    em.end_file(file as usize, totals);
                    return Ok(());
                }
                Event::Batch {
                    source,
                    recs,
                    chunks,
                } => (source, recs, chunks),
            };
            {
                let mut recs = batch.iter();
                for chunk in chunks {
                    em.stats.merge(chunk.stats);
                    let mut prev = 0;
                    let mut warnings = chunk.warnings.into_iter().peekable();
                    for (j, item) in chunk.items.into_iter().enumerate() {
                        let rec = recs.next().ok_or_else(changed)?;
                        if let Some((_, id, fails)) = warnings.next_if(|w| w.0 == j) {
                            em.warn(rec.file, rec.line, rec.last_line, rec.number, &id, &fails)?;
                        }
                        let number = em.next_number();
                        let i = number as usize - 1;
                        if number != rec.number {
                            return Err(changed());
                        }
                        match item {
                            UserItem::Changed => return Err(changed()),
                            UserItem::Rejected(_, _) if flags[i] & MAPPED != 0 => {
                                return Err(changed())
                            }
                            UserItem::Rejected(id, fail) => {
                                em.reject(rec.file, rec.line, rec.last_line, number, &id, &fail)?
                            }
                            UserItem::Taken(id) => {
                                let fail = lost.get(&i).ok_or_else(changed)?;
                                em.reject(rec.file, rec.line, rec.last_line, number, &id, fail)?;
                            }
                            UserItem::Xml(end, g) => {
                                users_by_source[si] += 1;
                                let group = &chunk.groups[g as usize];
                                em.count_written(rec.file, rec.last_line - rec.line + 1, group);
                                let user = &chunk.xml[prev..end];
                                prev = end;
                                if em.send(user, group)? {
                                    docs.copy(user)?;
                                }
                            }
                            UserItem::Member(mut user) => {
                                let primary =
                                    user.get(UserField::PrimaryId).unwrap_or("").to_string();
                                let group = xml::group_of(&user).to_string();
                                let key = if flags[i] & WINNER != 0 {
                                    match_value(&user, &job.people.match_on)
                                        .unwrap_or("")
                                        .trim()
                                        .to_string()
                                } else {
                                    String::new()
                                };
                                rows.insert(
                                    i,
                                    Row {
                                        file: rec.file,
                                        line: rec.line,
                                        lines: rec.last_line - rec.line + 1,
                                        group: group.clone(),
                                        primary_id: primary.clone(),
                                        key,
                                    },
                                );
                                if flags[i] & LOSER != 0 {
                                    let w = winner_of.get(&i).copied().ok_or_else(changed)?;
                                    if merge && w > i && flags[w] & WRITTEN != 0 {
                                        kept.insert(i, Box::new(Material::of(*user, rec.line)));
                                    }
                                } else if flags[i] & WRITTEN == 0 {
                                    let fail = lost.get(&i).ok_or_else(changed)?;
                                    em.reject(
                                        rec.file,
                                        rec.line,
                                        rec.last_line,
                                        number,
                                        &primary,
                                        fail,
                                    )?;
                                } else {
                                    if merge {
                                        let pi = person_of.get(&i).copied().ok_or_else(changed)?;
                                        take_merged(
                                            &mut user,
                                            &persons[pi],
                                            &mut merges[pi],
                                            &mut kept,
                                        )?;
                                    }
                                    users_by_source[si] += 1;
                                    user_xml.clear();
                                    xml::write_user(&mut user_xml, &user);
                                    em.count_written(
                                        rec.file,
                                        rec.last_line - rec.line + 1,
                                        &group,
                                    );
                                    if em.send(&user_xml, &group)? {
                                        docs.copy(&user_xml)?;
                                    }
                                }
                            }
                        }
                    }
                    docs.flush();
                    let mut buf = chunk.xml;
                    buf.clear();
                    if let Ok(mut v) = spare_xml.lock() {
                        v.push(buf);
                    }
                }
            }
            Ok(())
        });
        // Expired departed users (`--state`), after the feed's.
        let consumed = consumed.and_then(|()| {
            for user in em.departed()? {
                docs.copy(&user)?;
            }
            Ok(())
        });
        em.progress.set_stage(Stage::Compressing);
        // Dropped here, with its sender of entries, so that the placer
        // sees the end once the last compression task is done.
        let consumed = consumed.and_then(|()| docs.finish());
        cpu.add_since(CpuStage::Consume, consuming);
        finish_placing(placer_thread, ent_tx, consumed)
    })?;
    Ok(Streamed {
        parts,
        users_by_source,
        rows,
    })
}

/// Maps one chunk of the second pass: rejects keep their id, people seen
/// more than once stay users for the decisions, and a record that alone
/// represents its person is serialized at once.
fn user_chunk(
    m: &Mapper,
    recs: &[RawRecord],
    flags: &[u8],
    spare_xml: &Mutex<Vec<Vec<u8>>>,
) -> UserChunk {
    let mut out = UserChunk::default();
    if let Some(buf) = spare_xml.lock().ok().and_then(|mut v| v.pop()) {
        out.xml = buf;
    }
    let mut spare = Vec::new();
    for rec in recs {
        let f = flags.get(rec.number as usize - 1).copied().unwrap_or(0);
        let result = map_record(m, rec, &mut spare, &mut out.stats);
        let warnings = out.stats.take_warnings();
        if !warnings.is_empty() {
            out.warnings
                .push((out.items.len(), m.report_id(&rec.fields), warnings));
        }
        let item = match result {
            Err(fail) => UserItem::Rejected(reject_id(m, rec, &fail), fail),
            Ok(_) if f & MAPPED == 0 => UserItem::Changed,
            Ok(user) if f & (LOSER | WINNER) != 0 => UserItem::Member(Box::new(user.into_owned())),
            Ok(user) if f & WRITTEN != 0 => {
                xml::write_user(&mut out.xml, &user);
                UserItem::Xml(
                    out.xml.len(),
                    group_index(&mut out.groups, xml::group_of(&user)),
                )
            }
            Ok(user) => UserItem::Taken(user.get(UserField::PrimaryId).unwrap_or("").to_string()),
        };
        out.items.push(item);
    }
    out
}

/// After the passes: `duplicates.csv`, one row per superseded record, and
/// the job's summary part.
#[allow(clippy::too_many_arguments)]
fn write_duplicates(
    ctx: &Ctx,
    em: &mut Emitter,
    file_source: &[usize],
    flags: &[u8],
    decided: &Decided,
    claimed: &Claimed,
    streamed: &Streamed,
    records_by_source: &[u64],
) -> Result<(tempfile::NamedTempFile, JobSummary)> {
    let (opts, base, job) = (ctx.opts, ctx.base, &ctx.opts.job);
    let persons = &decided.persons;
    let merges = &claimed.merges;
    let Streamed {
        users_by_source,
        rows,
        ..
    } = streamed;
    let dup_tmp = crate::outdir::hidden_temp(&opts.run.out_dir, ".csv.tmp")?;
    let f = dup_tmp
        .reopen()
        .map_err(|e| Error::io(DUPLICATES_FILE, e))?;
    let mut w = csv::Writer::from_writer(BufWriter::new(f));
    let dup_err = |e: csv::Error| Error::io(DUPLICATES_FILE, e.into());
    w.write_record(DUPLICATES_HEADER).map_err(dup_err)?;
    let mut decided_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut superseded = 0u64;
    let mut merged_values = 0u64;
    let source_of = |file: u32| &job.sources[file_source[file as usize]].name;
    let path_of = |file: u32| base.inputs[file as usize].display().to_string();
    for (p, per_loser) in persons.iter().zip(merges) {
        let win = rows.get(&p.winner).ok_or_else(changed)?;
        let outcome = if flags[p.winner] & WRITTEN != 0 {
            "written"
        } else {
            "rejected"
        };
        for (&(l, rule), m) in p.losers.iter().zip(per_loser) {
            let lose = rows.get(&l).ok_or_else(changed)?;
            superseded += 1;
            em.count_superseded(lose.file, lose.lines);
            merged_values += m.took.len() as u64;
            *decided_by.entry(rule.code().to_string()).or_default() += 1;
            w.write_record([
                win.key.as_str(),
                source_of(win.file),
                &path_of(win.file),
                &win.line.to_string(),
                &win.group,
                outcome,
                source_of(lose.file),
                &path_of(lose.file),
                &lose.line.to_string(),
                &lose.primary_id,
                &lose.group,
                rule.code(),
                &m.took.join(";"),
                &m.left.join(";"),
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
        people_matched: persons.len() as u64,
        superseded,
        decided_by,
        merged_values,
    };
    Ok((dup_tmp, summary))
}
