//! The parallel engine: the reference pipeline's stages on many cores,
//! with the same bytes out.
//!
//! ```text
//!  shards (rayon) ──► ordered consumer ──► entry compression (rayon) ──► placer thread
//!  parse, map,        record numbers,      each document as it fills,     zip parts, in
//!  serialize          claims, rejects,     a shard's users at a time      entry order
//!                     cutting documents
//! ```
//!
//! Everything that depends on input order happens in one place, the
//! ordered consumer (the calling thread), which takes shard results in
//! shard order whatever order they finish in; so identifier claims are
//! exactly the sequential first-wins decisions, and thread timing never
//! decides an outcome. Work in flight is bounded on both sides: a window
//! of shards being mapped, and a budget of bytes of XML handed to
//! compression ([`XML_IN_FLIGHT`]), with a few documents open at once; a
//! document is compressed while it fills, so it is never held whole, and
//! the XML in memory does not grow with the users per file.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

use crate::dedupe::Owner;
use crate::error::{Error, Result};
use crate::map::Mapper;
use crate::read::decode::Text;
use crate::read::source::{count_breaks, Extract, RawRecord, Shard};
use crate::report::{Fail, MapStats};
use crate::run::convert::{csv_err, id_values, map_record, reject_id, Emitter, Setup};
use crate::run::cpu::{Stage, StageCpu};
use crate::write::package::{Entry, EntryWriter, Finished, Placer};
use crate::write::xml;

/// One record's outcome inside a shard.
enum Item {
    /// Mapped; its XML is `xml[prev_end..xml_end]` of the shard.
    User {
        line: u64,
        /// Physical lines of the record.
        lines: u64,
        xml_end: usize,
        /// Its identifiers: `ids[prev..ids_end]` of the shard.
        ids_end: usize,
        /// Index into the shard's `groups`.
        group: u32,
        /// The primary id as the extract has it, when the profile changed
        /// it (rejects report the extract's form).
        raw_id: Option<String>,
    },
    /// Not mapped.
    Reject {
        line: u64,
        last_line: u64,
        primary_id: String,
        fail: Fail,
    },
}

/// What mapping one shard produced. Identifier values live in one text
/// buffer per shard rather than a `String` each: the consumer reads them
/// once, in order, and fewer allocations crossing threads keep the heap
/// compact.
struct ShardOut<'m> {
    file: u32,
    xml: Vec<u8>,
    items: Vec<Item>,
    /// `(id_type, start, end, is_primary)`, values in `id_text`.
    ids: Vec<(&'m str, usize, usize, bool)>,
    id_text: String,
    /// The user groups of the shard's users, each once.
    groups: Groups,
    stats: MapStats,
    first_seen: Option<usize>,
    next_start: Option<usize>,
    /// Blank lines after the last record, when the shard's reader reached
    /// the end of the file.
    trailing_blank: u64,
    /// Fields left out of the shard's records: (index into `items`, line,
    /// primary id, warnings), in item order.
    warnings: Vec<ShardWarning>,
}

/// Fields left out of one record: (index into `items`, line, primary id,
/// warnings).
type ShardWarning = (usize, (u64, u64), String, Vec<Fail>);

/// Parses, maps and serializes the records of one shard.
fn map_shard<'m>(
    x: &Extract,
    m: &'m Mapper,
    shard: Shard,
    idx: usize,
    mut xml: Vec<u8>,
    setup_err: impl Fn(csv::Error) -> Error,
) -> Result<ShardOut<'m>> {
    // XML runs about 12 times the size of its CSV.
    xml.clear();
    xml.reserve(shard.end.saturating_sub(shard.start) * 12);
    let mut rdr = x.reader(shard);
    let mut rec = RawRecord::new();
    let mut spare = Vec::new();
    let mut out = ShardOut {
        file: idx as u32,
        xml,
        items: Vec::new(),
        ids: Vec::new(),
        id_text: String::new(),
        groups: Groups::default(),
        stats: MapStats::default(),
        first_seen: None,
        next_start: None,
        trailing_blank: 0,
        warnings: Vec::new(),
    };
    while rdr.next_record(0, &mut rec).map_err(&setup_err)? {
        let mapped = map_record(m, &rec, &mut spare, &mut out.stats);
        let warnings = out.stats.take_warnings();
        if !warnings.is_empty() {
            out.warnings.push((
                out.items.len(),
                (rec.line, rec.last_line),
                m.report_id(&rec.fields),
                warnings,
            ));
        }
        let item = match mapped {
            Ok(user) => {
                xml::write_user(&mut out.xml, &user);
                let mapped = user.get(crate::model::UserField::PrimaryId).unwrap_or("");
                for (t, v, p) in id_values(&user) {
                    let start = out.id_text.len();
                    out.id_text.push_str(v);
                    out.ids
                        .push((m.id_type_name(t), start, out.id_text.len(), p));
                }
                Item::User {
                    raw_id: m.report_id_if_changed(&rec.fields, mapped),
                    line: rec.line,
                    lines: rec.last_line - rec.line + 1,
                    xml_end: out.xml.len(),
                    ids_end: out.ids.len(),
                    group: out.groups.index(xml::group_of(&user)),
                }
            }
            Err(fail) => Item::Reject {
                line: rec.line,
                last_line: rec.last_line,
                primary_id: reject_id(m, &rec, &fail),
                fail,
            },
        };
        out.items.push(item);
    }
    out.trailing_blank = rdr.trailing_blank();
    out.first_seen = rdr.first_seen();
    out.next_start = rdr.next_start();
    Ok(out)
}

/// Names each user group once per shard, so items carry a number, not
/// an allocated name. Institutions have a handful of groups; a map takes
/// over only if a profile passes through many more.
#[derive(Default)]
struct Groups {
    names: Vec<String>,
    many: ahash::AHashMap<String, u32>,
}

impl Groups {
    fn index(&mut self, group: &str) -> u32 {
        if self.many.is_empty() {
            if let Some(i) = self.names.iter().position(|g| g == group) {
                return i as u32;
            }
            if self.names.len() == 32 {
                self.many = self
                    .names
                    .iter()
                    .enumerate()
                    .map(|(i, g)| (g.clone(), i as u32))
                    .collect();
            }
        } else if let Some(&i) = self.many.get(group) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(group.to_string());
        if !self.many.is_empty() {
            self.many.insert(group.to_string(), i);
        }
        i
    }
}

/// A compressed document on its way to the placer, with its sequence
/// number.
pub(crate) type Compressed = (u64, Result<Entry>);

/// Runs the conversion of all inputs; returns the finished zip parts.
pub(crate) fn run(
    setup: &mut Setup,
    em: &mut Emitter,
    placer: Placer,
    threads: usize,
    shard_bytes: usize,
) -> Result<Vec<Finished>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("patronload-{i}"))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {threads} threads: {e}")))?;
    // Documents open at once: the one being filled and those still
    // compressing or waiting to be placed. Compression is under half of
    // the CPU a record costs, so half the threads compressing keeps the
    // others mapping; but at least two besides the one being filled, or
    // on two cores compression runs one document at a time behind the
    // mappers (measured at 1M patrons, 2 threads: 6.5 s with one, 6.1 s
    // with two). What bounds memory is the XML they hold, in bytes
    // (see [`XML_IN_FLIGHT`]), not their number.
    let (tok_tx, tok_rx) = open_docs(threads);
    let (ent_tx, ent_rx) = unbounded::<Compressed>();
    // Shard XML buffers handed back for reuse: by the consumer, or by the
    // compression task that held the last piece of one.
    let (shard_back, shards_back) = unbounded::<Vec<u8>>();
    let per_file = setup.opts.run.limits.users_per_file;
    let level = setup.opts.run.limits.compression_level;
    let mtime = setup.mtime;
    let cpu = Arc::new(StageCpu::default());
    em.cpu = Some(Arc::clone(&cpu));
    std::thread::scope(|ts| {
        let place_cpu = Arc::clone(&cpu);
        let placer_thread = ts
            .spawn(move || place_cpu.time(Stage::Place, || place_in_order(placer, ent_rx, tok_tx)));
        let consumed = cpu.time(Stage::Consume, || -> Result<()> {
            let mut docs = Documents::new(
                &pool,
                (per_file, level, mtime),
                &tok_rx,
                ent_tx.clone(),
                shard_back.clone(),
                Arc::clone(&cpu),
            );
            for idx in 0..setup.opts.inputs.len() {
                let mut file = |setup: &mut Setup, em: &mut Emitter, text: &Text| {
                    let x = setup.extract(idx, text, em)?;
                    let m = setup.mapper()?;
                    let totals = x.line_totals();
                    pool.in_place_scope(|scope| {
                        run_file(
                            scope,
                            setup.opts,
                            &x,
                            m,
                            idx,
                            threads,
                            shard_bytes,
                            em,
                            (&shard_back, &shards_back),
                            &mut docs,
                        )
                    })?;
                    Ok::<_, Error>(totals)
                };
                let input = setup.open(idx)?;
                let totals = match setup.decode(idx, &input)?.detach() {
                    // A decoded copy (another encoding, or replaced bytes)
                    // is the whole extract: unmap the original rather than
                    // hold it twice.
                    Ok(decoded) => {
                        drop(input);
                        file(setup, em, &decoded)?
                    }
                    Err(mapped) => file(setup, em, &mapped)?,
                };
                em.end_file(idx, totals);
            }
            // Expired departed users, after the feed's.
            let departed = em.departed()?;
            if !departed.is_empty() {
                let ends: Vec<usize> = departed
                    .iter()
                    .scan(0, |end, x| {
                        *end += x.len();
                        Some(*end)
                    })
                    .collect();
                let buf = Arc::new(departed.concat());
                let mut start = 0;
                for end in ends {
                    docs.push(&buf, start..end)?;
                    start = end;
                }
            }
            em.progress
                .set_stage(crate::run::progress::Stage::Compressing);
            // Dropped here, with its sender of entries, so that the placer
            // sees the end once the last compression task is done.
            docs.finish()
        });
        finish_placing(placer_thread, ent_tx, consumed)
    })
}

/// Maps the shards of one input on the pool and consumes them in order.
#[allow(clippy::too_many_arguments)]
fn run_file<'s>(
    scope: &rayon::Scope<'s>,
    opts: &'s crate::run::convert::ConvertOptions,
    x: &'s Extract<'s>,
    m: &'s Mapper,
    idx: usize,
    threads: usize,
    shard_bytes: usize,
    em: &mut Emitter,
    (buf_back, bufs): (&Sender<Vec<u8>>, &Receiver<Vec<u8>>),
    docs: &mut Documents<'_>,
) -> Result<()> {
    let cpu = em.cpu.clone().unwrap_or_default();
    let mut shards = x.shards(shard_bytes);
    let window = threads + 2;
    let (sh_tx, sh_rx) = unbounded::<(u32, usize, Result<ShardOut>)>();
    let mut generation = 0u32;
    let (mut next_dispatch, mut next_consume) = (0usize, 0usize);
    let mut pending: BTreeMap<usize, Result<ShardOut>> = BTreeMap::new();
    let mut expected: Option<Option<usize>> = None;
    loop {
        while next_dispatch < shards.len() && next_dispatch < next_consume + window {
            let (tx, shard, i, g) = (
                sh_tx.clone(),
                shards[next_dispatch],
                next_dispatch,
                generation,
            );
            let buf = bufs.try_recv().unwrap_or_default();
            let cpu = Arc::clone(&cpu);
            scope.spawn(move |_| {
                let r = cpu.time(Stage::Map, || {
                    map_shard(x, m, shard, idx, buf, |e| csv_err(opts, idx, e))
                });
                let _ = tx.send((g, i, r));
            });
            next_dispatch += 1;
        }
        if next_consume >= shards.len() {
            return Ok(());
        }
        let out = match pending.remove(&next_consume) {
            Some(o) => o,
            None => loop {
                let (g, i, r) = sh_rx
                    .recv()
                    .map_err(|_| Error::Invariant("shard worker vanished".into()))?;
                if g != generation {
                    continue;
                }
                if i == next_consume {
                    break r;
                }
                pending.insert(i, r);
            },
        }?;
        if let Some(exp) = expected {
            if out.first_seen != exp {
                // The plan split inside a record (odd quoting): the shard
                // holding the record start the previous shard reported
                // now starts there; the shards after it keep their plan
                // (each is checked the same way). Re-reading the whole
                // rest as one shard instead would hold its XML at once:
                // 2.4 GB at 1M patrons with 1 % unclosed quotes.
                generation += 1;
                pending.clear();
                match exp {
                    Some(start) => {
                        let mut k = next_consume;
                        while k + 1 < shards.len() && shards[k].end <= start {
                            k += 1;
                        }
                        let t = shards[k];
                        // `start` is at or after the end of the shard before
                        // `next_consume`, so inside `t`; counted from the
                        // file start should that ever not hold.
                        let newlines_before = if t.start <= start {
                            t.newlines_before + count_breaks(x.data(), t.start, start)
                        } else {
                            count_breaks(x.data(), 0, start)
                        };
                        let resumed = Shard {
                            start,
                            end: t.end.max(start),
                            newlines_before,
                        };
                        shards.splice(next_consume..=k, [resumed]);
                    }
                    None => shards.truncate(next_consume),
                }
                next_dispatch = next_consume;
                continue;
            }
        }
        // Every reader that reaches the end of the file counts the blank
        // lines after the last record; after a shard that did, the next
        // one holds no record and only those same lines.
        let mut out = out;
        if expected == Some(None) {
            out.trailing_blank = 0;
        }
        out.stats.blank_lines += out.trailing_blank;
        expected = Some(out.next_start);
        if next_consume == 0 {
            presize(em, &out, shards[0], x.data().len());
        }
        if let Some(buf) = consume(em, out, docs)? {
            let _ = buf_back.send(buf);
        }
        em.read_to(idx, shards[next_consume].end, x.data().len());
        next_consume += 1;
    }
}

/// Sizes the identifier set for the rest of the file from its first
/// shard, so a large run never stops to rehash a table of millions.
fn presize(em: &mut Emitter, out: &ShardOut, first: Shard, len: usize) {
    let shard_len = first.end.saturating_sub(first.start).max(1);
    let rest = len.saturating_sub(first.end);
    let scale = |n: usize| (n as u128 * rest as u128 / shard_len as u128) as usize;
    em.reserve_ids(scale(out.ids.len()), scale(out.id_text.len()));
}

/// Bytes of XML handed to compression and not yet compressed, at most
/// (one batch more when none is held, so a huge one cannot wait forever).
/// A fixed budget, whatever the users per file or the size of a user:
/// documents are compressed while they are filled, shard by shard, so
/// no document is ever held whole. 32 MiB keeps every thread busy on two
/// cores (see `run`), at about 80 % of a default document of 20,000
/// users.
const XML_IN_FLIGHT: usize = 32 << 20;

/// Pieces of shard buffers on their way into one document, in order.
#[derive(Default)]
struct Batch {
    parts: Vec<(Arc<Vec<u8>>, Range<usize>)>,
    /// Bytes of XML the pieces hold.
    bytes: usize,
    /// The last part is this batch's own copy buffer.
    owned_last: bool,
}

impl Batch {
    fn push(&mut self, buf: &Arc<Vec<u8>>, r: Range<usize>) {
        self.bytes += r.len();
        if let Some((last, lr)) = self.parts.last_mut() {
            if Arc::ptr_eq(last, buf) && lr.end == r.start {
                lr.end = r.end;
                return;
            }
        }
        self.parts.push((Arc::clone(buf), r));
        self.owned_last = false;
    }

    /// Adds a copy of `bytes`: for a sparse document (a delta), whose
    /// users would otherwise hold a shard buffer each for a few bytes of
    /// it, and for users whose buffer is not shared (a job's).
    fn copy(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len();
        if self.owned_last {
            if let Some((last, lr)) = self.parts.last_mut() {
                if let Some(v) = Arc::get_mut(last) {
                    v.extend_from_slice(bytes);
                    lr.end = v.len();
                    return;
                }
            }
        }
        self.parts.push((Arc::new(bytes.to_vec()), 0..bytes.len()));
        self.owned_last = true;
    }
}

/// A count of bytes held, and a wait for room under a maximum.
struct Budget {
    held: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Budget {
    fn new(max: usize) -> Budget {
        Budget {
            held: Mutex::new(0),
            freed: Condvar::new(),
            max,
        }
    }

    /// Waits until `n` more bytes fit (or nothing is held), then holds them.
    fn take(&self, n: usize) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        while *held > 0 && *held + n > self.max {
            held = self.freed.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        *held += n;
    }

    fn give(&self, n: usize) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        *held -= n;
        self.freed.notify_all();
    }
}

/// What every compression task shares.
struct Shared {
    /// Where compression tasks add their CPU time.
    cpu: Arc<StageCpu>,
    level: u32,
    mtime: zip::DateTime,
    budget: Budget,
    /// Shard buffers whose last piece is written, for reuse.
    back: Sender<Vec<u8>>,
    entries: Sender<Compressed>,
    /// The size of the last compressed document: a size hint only, which
    /// no byte of output depends on.
    last_zip: AtomicUsize,
}

/// One document being compressed as it fills: batches queue here, and
/// one task at a time (a new one whenever the queue was left empty)
/// writes them into the document's compressor, in order.
struct Stream {
    seq: u64,
    state: Mutex<StreamState>,
}

#[derive(Default)]
struct StreamState {
    queue: VecDeque<Batch>,
    /// A task is writing the queue (or is about to).
    draining: bool,
    /// The users of the document, once it is complete.
    done: Option<u64>,
    /// The compressor between two tasks; `None` before the first.
    writer: Option<Result<EntryWriter>>,
}

impl Stream {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes the queued batches of `s` into its compressor and, once the
/// document is complete and written, sends the entry to the placer. Each
/// shard buffer goes back for reuse as soon as its last piece is written.
fn drain(s: &Stream, sh: &Shared) {
    let mut w = s.lock().writer.take().unwrap_or_else(|| {
        let last = sh.last_zip.load(Ordering::Relaxed);
        let mut w = EntryWriter::streaming(sh.level, sh.mtime, last + last / 8)?;
        w.write(xml::HEADER)?;
        Ok(w)
    });
    loop {
        let next = {
            let mut st = s.lock();
            match (st.queue.pop_front(), st.done) {
                (Some(batch), _) => Ok(batch),
                (None, Some(users)) => Err(users),
                (None, None) => {
                    st.writer = Some(w);
                    st.draining = false;
                    return;
                }
            }
        };
        match next {
            Ok(batch) => {
                for (buf, r) in batch.parts {
                    if let Ok(wr) = &mut w {
                        if let Err(e) = wr.write(&buf[r]) {
                            w = Err(e);
                        }
                    }
                    if let Some(buf) = Arc::into_inner(buf) {
                        let _ = sh.back.send(buf);
                    }
                }
                sh.budget.give(batch.bytes);
            }
            Err(users) => {
                let entry = w.and_then(|mut w| {
                    w.write(xml::FOOTER)?;
                    w.finish(users)
                });
                if let Ok(e) = &entry {
                    sh.last_zip.store(e.zip_len(), Ordering::Relaxed);
                }
                let _ = sh.entries.send((s.seq, entry));
                return;
            }
        }
    }
}

/// The document being filled, cut every `per_file` users: its users go
/// to its compression task a shard at a time, under the byte budget, so
/// the XML in flight never depends on how many users a document holds.
pub(crate) struct Documents<'p> {
    pool: &'p rayon::ThreadPool,
    per_file: u64,
    /// One per open document (see `run`).
    tokens: &'p Receiver<()>,
    shared: Arc<Shared>,
    /// The next document's number, in output order.
    seq: u64,
    open: Option<Arc<Stream>>,
    /// The open document's users not yet handed over.
    batch: Batch,
    /// Users in the open document.
    users: u64,
}

impl<'p> Documents<'p> {
    /// Documents of `per_file` users compressed at `level` with `mtime`
    /// on `pool`, each opened once `tokens` gives one (see [`open_docs`]),
    /// their entries sent to `entries`, and the buffers their users were
    /// in to `back` once written.
    pub(crate) fn new(
        pool: &'p rayon::ThreadPool,
        (per_file, level, mtime): (u64, u32, zip::DateTime),
        tokens: &'p Receiver<()>,
        entries: Sender<Compressed>,
        back: Sender<Vec<u8>>,
        cpu: Arc<StageCpu>,
    ) -> Documents<'p> {
        Documents {
            pool,
            per_file,
            tokens,
            shared: Arc::new(Shared {
                cpu,
                level,
                mtime,
                budget: Budget::new(XML_IN_FLIGHT),
                back,
                entries,
                last_zip: AtomicUsize::new(0),
            }),
            seq: 0,
            open: None,
            batch: Batch::default(),
            users: 0,
        }
    }

    /// Adds a user (a range of a shard buffer) to the document.
    fn push(&mut self, buf: &Arc<Vec<u8>>, r: Range<usize>) -> Result<()> {
        self.start()?;
        self.batch.push(buf, r);
        self.added()
    }

    /// Adds a copy of a user (see [`Batch::copy`]).
    pub(crate) fn copy(&mut self, bytes: &[u8]) -> Result<()> {
        self.start()?;
        self.batch.copy(bytes);
        self.added()
    }

    /// Opens a document if none is, once the placer has room for it.
    fn start(&mut self) -> Result<()> {
        if self.open.is_none() {
            self.tokens
                .recv()
                .map_err(|_| Error::Invariant("zip placer stopped early".into()))?;
            self.open = Some(Arc::new(Stream {
                seq: self.seq,
                state: Mutex::default(),
            }));
            self.seq += 1;
        }
        Ok(())
    }

    fn added(&mut self) -> Result<()> {
        self.users += 1;
        if self.users == self.per_file {
            self.close();
        }
        Ok(())
    }

    /// Hands the batch to the open document's compression, waiting for
    /// room in the budget.
    pub(crate) fn flush(&mut self) {
        let Some(s) = &self.open else {
            return;
        };
        if self.batch.parts.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        self.shared.budget.take(batch.bytes);
        let mut st = s.lock();
        st.queue.push_back(batch);
        self.wake(s, &mut st);
    }

    /// Makes sure a task is writing the queue of `s`.
    fn wake(&self, s: &Arc<Stream>, st: &mut StreamState) {
        if !st.draining {
            st.draining = true;
            let (s, sh) = (Arc::clone(s), Arc::clone(&self.shared));
            self.pool
                .spawn(move || sh.cpu.time(Stage::Compress, || drain(&s, &sh)));
        }
    }

    /// Completes the open document.
    fn close(&mut self) {
        self.flush();
        if let Some(s) = self.open.take() {
            let mut st = s.lock();
            st.done = Some(self.users);
            self.wake(&s, &mut st);
        }
        self.users = 0;
    }

    /// Completes the last document, if one is open.
    pub(crate) fn finish(mut self) -> Result<()> {
        self.close();
        Ok(())
    }
}

/// Takes one shard's records in order: numbers, claims, rejects, users.
/// Returns the shard's XML buffer for reuse when no document holds a
/// piece of it.
fn consume(
    em: &mut Emitter,
    mut out: ShardOut,
    docs: &mut Documents<'_>,
) -> Result<Option<Vec<u8>>> {
    em.stats.merge(std::mem::take(&mut out.stats));
    let sparse = em.is_delta();
    let xml = Arc::new(std::mem::take(&mut out.xml));
    let (mut prev_end, mut prev_ids) = (0, 0);
    let mut warnings = std::mem::take(&mut out.warnings).into_iter().peekable();
    for (i, item) in out.items.into_iter().enumerate() {
        let number = em.next_number();
        while let Some((_, (line, last_line), id, w)) = warnings.next_if(|w| w.0 == i) {
            em.warn(out.file, line, last_line, number, &id, &w)?;
        }
        match item {
            Item::User {
                line,
                lines,
                xml_end,
                ids_end,
                group,
                raw_id,
            } => {
                let ids = &out.ids[prev_ids..ids_end];
                prev_ids = ids_end;
                let owner = Owner {
                    file: out.file,
                    line,
                };
                let text = out.id_text.as_str();
                let values = ids.iter().map(|&(t, a, b, p)| (t, &text[a..b], p));
                match em.claim(values, owner) {
                    Ok(()) => {
                        let group = &out.groups.names[group as usize];
                        em.count_written(out.file, lines, group);
                        if em.send(&xml[prev_end..xml_end], group)? {
                            if sparse {
                                docs.copy(&xml[prev_end..xml_end])?;
                            } else {
                                docs.push(&xml, prev_end..xml_end)?;
                            }
                        }
                    }
                    Err(fail) => {
                        let mapped = ids.iter().find(|i| i.3).map_or("", |i| &text[i.1..i.2]);
                        let primary = raw_id.as_deref().unwrap_or(mapped);
                        let last = line + lines - 1;
                        em.reject(out.file, line, last, number, primary, &fail)?;
                    }
                }
                prev_end = xml_end;
            }
            Item::Reject {
                line,
                last_line,
                primary_id,
                fail,
            } => {
                em.reject(out.file, line, last_line, number, &primary_id, &fail)?;
            }
        }
    }
    // The shard's users go to compression together: one hand-over per
    // shard, not per user.
    docs.flush();
    Ok(Arc::into_inner(xml))
}

/// Ends a run's ordered half: closes the entry channel, waits for the
/// placer, then reports the consumer's error before the placer's result
/// (the placer stops early only because the consumer failed).
pub(crate) fn finish_placing(
    placer: std::thread::ScopedJoinHandle<'_, Result<Vec<Finished>>>,
    entries: Sender<Compressed>,
    consumed: Result<()>,
) -> Result<Vec<Finished>> {
    drop(entries);
    let placed = placer
        .join()
        .map_err(|_| Error::Invariant("zip placer panicked".into()))?;
    consumed?;
    placed
}

/// The placer thread: puts compressed documents into zip parts in
/// sequence order, returning a token for each so the consumer may start
/// another. After an error it keeps draining (so nobody waits forever)
/// and reports the first error at the end.
pub(crate) fn place_in_order(
    mut placer: Placer,
    rx: Receiver<Compressed>,
    tokens: Sender<()>,
) -> Result<Vec<Finished>> {
    let mut waiting: BTreeMap<u64, Result<Entry>> = BTreeMap::new();
    let mut next = 0u64;
    let mut failed: Option<Error> = None;
    for (n, r) in rx {
        waiting.insert(n, r);
        while let Some(r) = waiting.remove(&next) {
            next += 1;
            if failed.is_none() {
                if let Err(e) = r.and_then(|entry| placer.place(entry)) {
                    failed = Some(e);
                }
            }
            let _ = tokens.send(());
        }
    }
    match failed {
        Some(e) => Err(e),
        None if !waiting.is_empty() => Err(Error::Invariant(
            "a compressed document never arrived".into(),
        )),
        None => placer.finish(),
    }
}

/// The tokens of the documents open at once (see `run`): the one being
/// filled, and half the threads compressing or waiting to be placed, but
/// at least two, and never more than the threads. Shared by the job's
/// engine; the placer sends one back for each document it places.
pub(crate) fn open_docs(threads: usize) -> (Sender<()>, Receiver<()>) {
    let n = (threads / 2).max(2).min(threads) + 1;
    let (tok_tx, tok_rx) = bounded::<()>(n);
    for _ in 0..n {
        // The channel has room for every token.
        let _ = tok_tx.send(());
    }
    (tok_tx, tok_rx)
}

#[cfg(test)]
mod tests {
    use super::Groups;

    #[test]
    fn groups_keep_their_numbers_past_the_small_list() {
        let mut g = Groups::default();
        let names: Vec<String> = (0..100).map(|i| format!("G{}", i % 70)).collect();
        let first: Vec<u32> = names.iter().map(|n| g.index(n)).collect();
        assert_eq!(g.names.len(), 70);
        for (n, i) in names.iter().zip(&first) {
            assert_eq!(&g.names[*i as usize], n);
            assert_eq!(g.index(n), *i);
        }
    }
}
