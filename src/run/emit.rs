//! The ordered half of a run: the [`Emitter`] takes every decision that
//! depends on input order (record numbers, identifier claims, rejects,
//! where XML documents are cut) and writes `rejects.csv` and
//! `warnings.csv` as it goes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::NamedTempFile;

use crate::alma_ids::AlmaIndex;
use crate::dedupe::{IdSet, Owner};
use crate::error::{Error, Result};
use crate::outdir::hidden_temp;
use crate::report::{Fail, InputInfo, LineCounts, MapStats, REJECT_HEADER, WARNING_HEADER};
use crate::write::package::EntryBuilder;

use super::progress::{InputBytes, Progress};

use super::convert::*;

/// The thread hashing the run's files: (size, SHA-256) of each, `None`
/// for one it could not read.
pub(crate) type FileHashes = std::thread::JoinHandle<Vec<Option<(u64, String)>>>;

/// The ordered half of a run: record numbers, identifier claims, the
/// reject report, counters, and cutting users into XML documents.
pub(crate) struct Emitter<'o> {
    pub(super) inputs: &'o [PathBuf],
    /// The inputs as the reports name them, formatted once: `index.csv`
    /// names one for every user written.
    input_names: Vec<String>,
    pub(super) rejects: RejectsWriter,
    pub(super) warnings: RejectsWriter,
    pub(super) warned: u64,
    /// Inputs declared UTF-8 with invalid bytes: (file, what they look like).
    pub(super) suspects: Vec<(u32, &'static str)>,
    pub(super) ids: Option<IdSet>,
    pub(super) builder: EntryBuilder,
    pub(crate) stats: MapStats,
    pub(super) read: u64,
    pub(super) written: u64,
    pub(super) rejected: u64,
    pub(super) rejected_by_reason: BTreeMap<String, u64>,
    pub(super) users_by_group: BTreeMap<String, u64>,
    pub(super) files: Vec<InputInfo>,
    pub(super) file_start: u64,
    /// Blank lines counted in `stats` before the current input.
    file_blank_start: u64,
    /// Records represented by another record of the same person (jobs).
    pub(crate) superseded: u64,
    /// Physical lines by outcome, per input.
    pub(super) lines: Vec<LineCounts>,
    /// When the run started: the clock for `summary.json`, the monotonic
    /// instant for stage durations.
    pub(super) started: (chrono::DateTime<chrono::Utc>, std::time::Instant),
    /// Size and SHA-256 of each input, then of the profile (or job) file,
    /// hashed on a thread of its own while the run reads them.
    pub(crate) file_hashes: Option<FileHashes>,
    /// Change detection (`--state`): classifies each user written, in
    /// input order, and says whether it goes into the package.
    pub(crate) state: Option<crate::state::Tracker>,
    /// Alma's own users and the profile's match id (`--alma-users`).
    alma: Option<(Arc<AlmaIndex>, String)>,
    /// `index.csv`: where each written user came from, for `triage`.
    pub(super) index: RejectsWriter,
    /// The first error writing `index.csv`.
    pub(super) index_failed: Option<Error>,
    /// What a progress display reads (records, rejects, bytes).
    pub(crate) progress: Arc<Progress>,
    /// CPU time per stage, set by the parallel engines for `run.cpu_s`.
    pub(crate) cpu: Option<Arc<super::cpu::StageCpu>>,
    /// The inputs' sizes, to turn text positions into bytes read.
    pub(crate) bytes: InputBytes,
}

impl<'o> Emitter<'o> {
    pub(crate) fn new(opts: &'o ConvertOptions) -> Result<Emitter<'o>> {
        Ok(Emitter {
            inputs: &opts.inputs,
            input_names: opts
                .inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            rejects: RejectsWriter::new(&opts.run.out_dir)?,
            warnings: RejectsWriter::open(&opts.run.out_dir, WARNING_HEADER, WARNINGS_FILE)?,
            warned: 0,
            suspects: Vec::new(),
            ids: None,
            builder: EntryBuilder::new(opts.run.limits.users_per_file),
            stats: MapStats::default(),
            read: 0,
            written: 0,
            rejected: 0,
            rejected_by_reason: BTreeMap::new(),
            users_by_group: BTreeMap::new(),
            files: Vec::new(),
            file_start: 0,
            file_blank_start: 0,
            superseded: 0,
            lines: vec![LineCounts::default(); opts.inputs.len()],
            started: (chrono::Utc::now(), std::time::Instant::now()),
            cpu: None,
            file_hashes: {
                let files: Vec<PathBuf> = opts
                    .inputs
                    .iter()
                    .chain(std::iter::once(&opts.profile_path))
                    .cloned()
                    .collect();
                Some(std::thread::spawn(move || {
                    files
                        .iter()
                        .map(|p| {
                            let mut f = File::open(p).ok()?;
                            crate::write::package::hash_file(&mut f).ok()
                        })
                        .collect()
                }))
            },
            state: match &opts.run.state {
                Some(s) => Some(crate::state::Tracker::open(
                    s,
                    &opts.run.out_dir,
                    opts.run.as_of,
                    &opts.profile,
                    opts.run.output.wait,
                )?),
                None => None,
            },
            alma: opts
                .run
                .alma
                .clone()
                .map(|ix| (ix, opts.profile.rules.match_id.trim().to_string())),
            index_failed: None,
            index: RejectsWriter::with_header(&opts.run.out_dir, &INDEX_HEADER, INDEX_FILE)?,
            progress: Arc::clone(&opts.run.progress),
            bytes: InputBytes::of(&opts.inputs),
        })
    }

    /// Whether a user just counted written goes into the package: always
    /// without a state; with one, classified against it (a delta leaves
    /// unchanged users out). Called in input order, before compression.
    pub(crate) fn send(&mut self, user_xml: &[u8], group: &str) -> Result<bool> {
        match self.state.as_mut() {
            Some(t) => t.classify(user_xml, group),
            None => Ok(true),
        }
    }

    /// Whether the package is a delta (most users left out).
    pub(crate) fn is_delta(&self) -> bool {
        self.state.as_ref().is_some_and(|t| t.is_delta())
    }

    /// After the last input: the records that expire departed users
    /// (`--departed expire`), to be placed after the feed's users.
    pub(crate) fn departed(&mut self) -> Result<Vec<Vec<u8>>> {
        match self.state.as_mut() {
            Some(t) => t.departed(),
            None => Ok(Vec::new()),
        }
    }

    /// Adds a user that is not one of the feed's (an expired departed
    /// user) to the document being filled.
    pub(crate) fn add_extra(&mut self, user_xml: &[u8]) -> Option<(Vec<u8>, u64)> {
        self.builder.add(user_xml)
    }

    /// Numbers the next record.
    pub(crate) fn next_number(&mut self) -> u64 {
        self.read += 1;
        self.progress.set_records(self.read);
        self.read
    }

    /// Tells the progress display that input `idx` is read up to `pos` of
    /// its `len` bytes of text.
    pub(crate) fn read_to(&self, idx: usize, pos: usize, len: usize) {
        self.progress.set_bytes(self.bytes.at(idx, pos, len));
    }

    /// Makes room in the identifier set for what the rest of the run is
    /// expected to claim (see [`IdSet::reserve`]).
    pub(crate) fn reserve_ids(&mut self, values: usize, bytes: usize) {
        if let Some(ids) = self.ids.as_mut() {
            ids.reserve(values, bytes);
        }
    }

    /// Claims a mapped user's identifiers (first wins, in call order),
    /// after checking them against Alma's own users when given; a user
    /// Alma would refuse claims nothing. A claimed user gets its row in
    /// `index.csv` (the current record number is its number).
    pub(crate) fn claim<'a, I>(&mut self, values: I, owner: Owner) -> std::result::Result<(), Fail>
    where
        I: IntoIterator<Item = (&'a str, &'a str, bool)>,
        I::IntoIter: Clone,
    {
        let values = values.into_iter();
        let set = self.ids.get_or_insert_with(Default::default);
        if let Some((ix, match_id)) = &self.alma {
            ix.check(values.clone(), match_id, set.case())?;
        }
        set.claim_values(values.clone(), owner)
            .map_err(|c| duplicate_fail(&c, owner.file, self.inputs))?;
        let primary = values.clone().find(|v| v.2).map_or("", |v| v.1.trim());
        self.index_row(primary, owner.file, owner.line, self.read);
        Ok(())
    }

    /// Writes one row of `index.csv` (a user written). A write error
    /// fails the run at `finish`, not this record.
    pub(crate) fn index_row(&mut self, primary_id: &str, file: u32, line: u64, record: u64) {
        if self.index_failed.is_some() {
            return;
        }
        let path = &self.input_names[file as usize];
        // Once per user on the ordered thread: numbers formatted on the
        // stack, not into two new strings.
        let (mut l, mut r) = (itoa::Buffer::new(), itoa::Buffer::new());
        self.index_failed = self
            .index
            .write_row(&[primary_id, path, l.format(line), r.format(record)])
            .err();
    }

    /// Accepts a user whose identifiers were claimed, from `lines`
    /// physical lines of input `file`; returns a full XML document when
    /// this user completed one (never for a user a delta leaves out).
    pub(crate) fn accept(
        &mut self,
        file: u32,
        lines: u64,
        user_xml: &[u8],
        group: &str,
    ) -> Result<Option<(Vec<u8>, u64)>> {
        self.count_written(file, lines, group);
        if !self.send(user_xml, group)? {
            return Ok(None);
        }
        Ok(self.builder.add(user_xml))
    }

    /// Counts a user written, for callers that assemble documents
    /// themselves (the parallel engine).
    pub(crate) fn count_written(&mut self, file: u32, lines: u64, group: &str) {
        self.lines[file as usize].written += lines;
        self.written += 1;
        match self.users_by_group.get_mut(group) {
            Some(n) => *n += 1,
            None => {
                self.users_by_group.insert(group.to_string(), 1);
            }
        }
    }

    /// Counts the lines of a record superseded by another record of the
    /// same person (jobs).
    pub(crate) fn count_superseded(&mut self, file: u32, lines: u64) {
        self.lines[file as usize].superseded += lines;
    }

    /// Records a rejected record, lines `line..=last_line` of `file`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn reject(
        &mut self,
        file: u32,
        line: u64,
        last_line: u64,
        number: u64,
        primary_id: &str,
        fail: &Fail,
    ) -> Result<()> {
        self.lines[file as usize].rejected += last_line.saturating_sub(line) + 1;
        if let Some(t) = self.state.as_mut() {
            t.keep(primary_id)?;
        }
        let path = self.input_names[file as usize].clone();
        // A broken record's "id" may be a swallowed paragraph: keep the
        // report readable.
        let primary_id = match primary_id.char_indices().nth(REPORT_ID_CHARS) {
            Some((cut, _)) => &primary_id[..cut],
            None => primary_id,
        };
        self.rejects.write(
            &path,
            line,
            last_line,
            number,
            primary_id,
            fail.reason.code(),
            &fail.field,
            &fail.message,
        )?;
        *self
            .rejected_by_reason
            .entry(fail.reason.code().to_string())
            .or_default() += 1;
        self.rejected += 1;
        self.progress.set_rejects(self.rejected);
        Ok(())
    }

    /// Lists the fields left out of record `number` (see
    /// [`MapStats::take_warnings`]) in `warnings.csv`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn warn(
        &mut self,
        file: u32,
        line: u64,
        last_line: u64,
        number: u64,
        primary_id: &str,
        warnings: &[Fail],
    ) -> Result<()> {
        let path = self.input_names[file as usize].clone();
        for w in warnings {
            self.warnings.write(
                &path,
                line,
                last_line,
                number,
                primary_id,
                w.reason.code(),
                &w.field,
                &w.message,
            )?;
            self.warned += 1;
        }
        Ok(())
    }

    /// Records an input declared UTF-8 that looks like another encoding
    /// (what [`super::convert::encoding_suspect`] found): most likely an "ANSI" export,
    /// reported whatever the reject rate says.
    pub(crate) fn note_suspect(&mut self, file: u32, looks: &'static str) {
        self.suspects.push((file, looks));
    }

    /// Closes the accounting of one input file: `(total, header)` lines
    /// counted from its text (see [`Extract::line_totals`]); its blank
    /// lines are those added to `stats` since the previous input, so
    /// callers merge the file's counters before calling this.
    pub(crate) fn end_file(&mut self, idx: usize, (total, header): (u64, u64)) {
        let l = &mut self.lines[idx];
        l.total = total;
        l.header = header;
        l.blank = self.stats.blank_lines - self.file_blank_start;
        self.file_blank_start = self.stats.blank_lines;
        self.files.push(InputInfo {
            path: self.inputs[idx].display().to_string(),
            records: self.read - self.file_start,
            lines_read: None,
            size: None,
            sha256: None,
        });
        self.file_start = self.read;
    }

    /// The last, partial XML document.
    pub(crate) fn last_document(&mut self) -> Option<(Vec<u8>, u64)> {
        self.builder.take()
    }
}

/// The most characters of a primary id `rejects.csv` reports.
pub(super) const REPORT_ID_CHARS: usize = 255;

/// `rejects.csv` while it is written: a hidden temporary file in the
/// output directory, published by [`publish`]. Shared by `convert` and
/// `repack` so both write the same columns, and by `warnings.csv`.
pub(crate) struct RejectsWriter {
    pub(super) wtr: csv::Writer<BufWriter<File>>,
    pub(super) tmp: NamedTempFile,
    pub(super) name: &'static str,
    /// The rows aggregated for report.html.
    pub(crate) digest: crate::html::RejectDigest,
}

impl RejectsWriter {
    /// Starts the report (header row written) in `dir`.
    pub(crate) fn new(dir: &Path) -> Result<RejectsWriter> {
        RejectsWriter::open(dir, REJECT_HEADER, REJECTS_FILE)
    }

    /// Starts a report of the same shape with its own header and name.
    pub(crate) fn open(dir: &Path, header: [&str; 8], name: &'static str) -> Result<RejectsWriter> {
        RejectsWriter::with_header(dir, &header, name)
    }

    /// Starts a CSV report with any header.
    pub(crate) fn with_header(
        dir: &Path,
        header: &[&str],
        name: &'static str,
    ) -> Result<RejectsWriter> {
        let tmp = hidden_temp(dir, ".csv.tmp")?;
        let f = tmp.reopen().map_err(|e| Error::io(name, e))?;
        let mut wtr = csv::Writer::from_writer(BufWriter::new(f));
        wtr.write_record(header)
            .map_err(|e| Error::io(name, e.into()))?;
        Ok(RejectsWriter {
            wtr,
            tmp,
            name,
            digest: Default::default(),
        })
    }

    /// Writes one row (the columns of [`REJECT_HEADER`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write(
        &mut self,
        source: &str,
        line: u64,
        last_line: u64,
        number: u64,
        primary_id: &str,
        reason: &str,
        field: &str,
        message: &str,
    ) -> Result<()> {
        self.digest
            .note(source, line, number, primary_id, reason, field, message);
        self.wtr
            .write_record([
                source,
                &line.to_string(),
                &last_line.to_string(),
                &number.to_string(),
                primary_id,
                reason,
                field,
                message,
            ])
            .map_err(|e| Error::io(self.name, e.into()))
    }

    /// Writes one row of any shape.
    pub(crate) fn write_row(&mut self, row: &[&str]) -> Result<()> {
        self.wtr
            .write_record(row)
            .map_err(|e| Error::io(self.name, e.into()))
    }

    /// Flushes and syncs the report; returns its temporary file.
    pub(crate) fn finish(self) -> Result<NamedTempFile> {
        let RejectsWriter {
            mut wtr, tmp, name, ..
        } = self;
        wtr.flush().map_err(|e| Error::io(name, e))?;
        let inner = wtr
            .into_inner()
            .map_err(|e| Error::io(name, e.into_error()))?;
        inner
            .into_inner()
            .map_err(|e| Error::io(name, e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io(name, e))?;
        Ok(tmp)
    }
}
