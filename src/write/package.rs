//! Packaging stage: XML entries → zip parts within Alma's limits.
//!
//! Users are appended to an XML entry until it holds `users_per_file`;
//! the entry is then compressed on its own (into a one-entry zip in
//! memory) so its exact compressed size is known *before* it is placed.
//! It goes into the current zip part unless that would pass the part's
//! entry or byte limit, in which case the part is finished and a new one
//! begun; the compressed bytes are copied in without recompressing. This
//! is also what lets the parallel engine compress entries on several
//! cores and place them in order.
//!
//! Parts are written to hidden temporary files in the output directory
//! and only renamed to `<prefix>_NNN.zip` by [`crate::run::convert`] once the
//! whole run has succeeded, so Alma never sees half a package.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::error::{Error, Result};
use crate::report::ZipInfo;
use crate::write::xml;

/// Bytes a zip spends per entry beyond the compressed data and twice the
/// name (local header 30, central header 46, room for zip64 extras and a
/// data descriptor), and per archive (end records). Used to place entries
/// before a part is finished; the finished size is checked for real.
const ENTRY_OVERHEAD: u64 = 30 + 46 + 64;
const ARCHIVE_OVERHEAD: u64 = 22 + 56 + 20;

/// Output limits, defaults from Alma's and Ex Libris Secure FTP's
/// documented limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Users per XML entry. By default 20,000.
    pub users_per_file: u64,
    /// XML entries per zip. By default 50.
    pub files_per_zip: u32,
    /// Bytes per zip. By default 1 GB (1,000,000,000), the Secure FTP
    /// directory limit.
    pub max_zip_bytes: u64,
    /// Bytes of all zips of the run together. By default 1 GB, since the
    /// whole run must fit the directory at once.
    pub max_total_bytes: u64,
    /// Deflate level 0–9 (0 stores without compression). By default 6.
    pub compression_level: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            users_per_file: 20_000,
            files_per_zip: 50,
            max_zip_bytes: 1_000_000_000,
            max_total_bytes: 1_000_000_000,
            compression_level: 6,
        }
    }
}

impl Limits {
    /// Refuses limits that cannot produce a package.
    pub fn check(&self) -> Result<()> {
        if self.users_per_file == 0 || self.files_per_zip == 0 {
            return Err(Error::Usage(
                "users per file and files per zip must be at least 1".into(),
            ));
        }
        if self.compression_level > 9 {
            return Err(Error::Usage("compression level must be 0 to 9".into()));
        }
        if self.max_zip_bytes < 1024 || self.max_total_bytes < 1024 {
            return Err(Error::Usage("zip size limits must be at least 1 KB".into()));
        }
        Ok(())
    }
}

/// A compressed XML entry, not yet placed in a part.
pub struct Entry {
    /// The one-entry zip holding the compressed data.
    zip: Vec<u8>,
    /// Compressed size of the data.
    compressed: u64,
    /// Users in the entry.
    users: u64,
}

impl Entry {
    /// Size of the one-entry zip in memory (compressed data plus its zip
    /// headers), for measurements.
    pub fn zip_len(&self) -> usize {
        self.zip.len()
    }
}

/// Bytes handed to the compressor per write. Deflate output depends on
/// how its input is split into writes (measured: zlib-rs at level 6 gives
/// other bytes for 64 KiB writes than for one write), so every path feeds
/// exactly these chunks, whatever pieces a document is made of.
const FEED: usize = 64 * 1024;

/// Compresses one complete XML document into a one-entry zip in memory.
/// Pure and deterministic, so entries can be compressed on any thread.
pub fn compress_entry(xml: &[u8], users: u64, level: u32, mtime: zip::DateTime) -> Result<Entry> {
    let mut w = EntryWriter::new(xml.len(), level, mtime)?;
    w.write(xml)?;
    w.finish(users)
}

/// Compresses one XML document, given piece by piece, into a one-entry
/// zip in memory, so a caller can let go of each piece once it is
/// written. The compressor sees the same fixed-size writes whatever the
/// pieces, so the bytes equal [`compress_entry`]'s for the whole.
pub struct EntryWriter {
    w: ZipWriter<Cursor<Vec<u8>>>,
    stage: Vec<u8>,
    /// Bytes written so far, and the most a streamed entry (one started
    /// before its length was known, so without zip64) may take.
    written: u64,
    limit: u64,
}

fn zip_err(source: zip::result::ZipError) -> Error {
    Error::Zip {
        path: PathBuf::from("(memory)"),
        source,
    }
}

fn mem_err(e: std::io::Error) -> Error {
    Error::io("(memory)", e)
}

impl EntryWriter {
    /// Starts an entry of `len` bytes of XML in all.
    pub fn new(len: usize, level: u32, mtime: zip::DateTime) -> Result<EntryWriter> {
        EntryWriter::with_room(len, level, mtime, len / 6 + 1024)
    }

    fn with_room(len: usize, level: u32, mtime: zip::DateTime, room: usize) -> Result<EntryWriter> {
        let mut w = ZipWriter::new(Cursor::new(Vec::with_capacity(room)));
        w.start_file("entry.xml", file_options(level, mtime, len as u64))
            .map_err(zip_err)?;
        Ok(EntryWriter {
            w,
            stage: Vec::new(),
            written: 0,
            limit: u64::MAX,
        })
    }

    /// Starts an entry whose length is not known yet, so that a document
    /// can be compressed while it is still being filled. Its bytes are
    /// those of [`EntryWriter::new`] given the final length, as long as
    /// that stays under 4 GiB (the zip64 choice is made at the start): a
    /// longer document is refused with [`Error::Limit`]. `room` is the
    /// compressed size expected (the previous document's, say), so the
    /// buffer need not double its way up past it.
    pub fn streaming(level: u32, mtime: zip::DateTime, room: usize) -> Result<EntryWriter> {
        let mut w = EntryWriter::with_room(0, level, mtime, room)?;
        w.limit = u64::from(u32::MAX) - 1;
        Ok(w)
    }

    /// Appends the next piece of the document.
    pub fn write(&mut self, mut p: &[u8]) -> Result<()> {
        self.written += p.len() as u64;
        if self.written > self.limit {
            return Err(Error::Limit(
                "an XML document passes 4 GiB; lower --users-per-file".into(),
            ));
        }
        while !p.is_empty() {
            if self.stage.is_empty() && p.len() >= FEED {
                self.w.write_all(&p[..FEED]).map_err(mem_err)?;
                p = &p[FEED..];
                continue;
            }
            let take = (FEED - self.stage.len()).min(p.len());
            self.stage.extend_from_slice(&p[..take]);
            p = &p[take..];
            if self.stage.len() == FEED {
                self.w.write_all(&self.stage).map_err(mem_err)?;
                self.stage.clear();
            }
        }
        Ok(())
    }

    /// Ends the document; `users` is how many it holds.
    pub fn finish(mut self, users: u64) -> Result<Entry> {
        if !self.stage.is_empty() {
            self.w.write_all(&self.stage).map_err(mem_err)?;
        }
        let zip = self.w.finish().map_err(zip_err)?.into_inner();
        let mut ar = ZipArchive::new(Cursor::new(&zip)).map_err(zip_err)?;
        let compressed = ar.by_index_raw(0).map_err(zip_err)?.compressed_size();
        Ok(Entry {
            zip,
            compressed,
            users,
        })
    }
}

fn file_options(level: u32, mtime: zip::DateTime, len: u64) -> SimpleFileOptions {
    let o = SimpleFileOptions::default()
        .last_modified_time(mtime)
        .unix_permissions(0o644)
        .large_file(len >= u32::MAX as u64);
    if level == 0 {
        o.compression_method(CompressionMethod::Stored)
    } else {
        o.compression_method(CompressionMethod::Deflated)
            .compression_level(Some(level as i64))
    }
}

/// The fixed entry timestamp: midnight of the `--as-of` date, clamped to
/// what a zip can store, so the same run gives the same bytes.
pub fn zip_time(as_of: NaiveDate) -> zip::DateTime {
    let year = as_of.year().clamp(1980, 2107) as u16;
    zip::DateTime::from_date_and_time(year, as_of.month() as u8, as_of.day() as u8, 0, 0, 0)
        .unwrap_or_default()
}

/// The file under a zip part. Once abandoned (the run failed, or a write
/// failed), writes and seeks go nowhere: `ZipWriter` finalizes an
/// unfinished archive when dropped and prints any error from its
/// destructor, which on a full disk would add a stray message about a
/// file that is deleted anyway. The first error is still returned.
struct PartFile {
    file: NamedTempFile,
    abandoned: Arc<AtomicBool>,
}

impl Write for PartFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Ok(buf.len());
        }
        self.file.write(buf).inspect_err(|_| self.abandon())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.file.flush().inspect_err(|_| self.abandon())
    }
}

impl PartFile {
    fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

impl Seek for PartFile {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        if self.abandoned.load(Ordering::Relaxed) {
            return Ok(0);
        }
        self.file.seek(pos).inspect_err(|_| self.abandon())
    }
}

struct Part {
    zip: ZipWriter<PartFile>,
    abandoned: Arc<AtomicBool>,
    index: u32,
    entries: Vec<String>,
    users: u64,
    bytes: u64,
}

/// A zip part finished but not yet published.
pub struct Finished {
    /// What `summary.json` says about it.
    pub info: ZipInfo,
    /// The temporary file holding it, in the output directory.
    pub file: NamedTempFile,
}

/// Collects serialized users into XML documents of `users_per_file`.
pub struct EntryBuilder {
    buf: Vec<u8>,
    users: u64,
    per_file: u64,
    /// Length of the last finished document: the next one is reserved at
    /// about that size, because growing a 40 MB buffer by doubling leaves
    /// it at 64 MB.
    last_len: usize,
}

impl EntryBuilder {
    /// A builder cutting documents at `per_file` users.
    pub fn new(per_file: u64) -> EntryBuilder {
        EntryBuilder {
            buf: Vec::new(),
            users: 0,
            per_file,
            last_len: 0,
        }
    }

    /// Appends one serialized `<user>`; returns the document (and its user
    /// count) when it has become full.
    pub fn add(&mut self, user_xml: &[u8]) -> Option<(Vec<u8>, u64)> {
        if self.users == 0 {
            self.buf.reserve(self.last_len + self.last_len / 32);
            self.buf.clear();
            self.buf.extend_from_slice(xml::HEADER);
        }
        self.buf.extend_from_slice(user_xml);
        self.users += 1;
        if self.users == self.per_file {
            return self.take();
        }
        None
    }

    /// The last, partial document, if any users are left.
    pub fn take(&mut self) -> Option<(Vec<u8>, u64)> {
        if self.users == 0 {
            return None;
        }
        self.buf.extend_from_slice(xml::FOOTER);
        self.last_len = self.last_len.max(self.buf.len());
        let users = std::mem::take(&mut self.users);
        Some((std::mem::take(&mut self.buf), users))
    }
}

/// Places compressed entries, in order, into zip parts.
pub struct Placer {
    dir: PathBuf,
    prefix: String,
    limits: Limits,
    part: Option<Part>,
    parts: u32,
    done: Vec<Finished>,
}

/// The sequential packager: builds, compresses and places entries on the
/// calling thread.
pub struct Packager {
    builder: EntryBuilder,
    placer: Placer,
    mtime: zip::DateTime,
    level: u32,
}

impl Packager {
    /// A packager writing parts named `<prefix>_NNN.zip` into `dir`.
    pub fn new(dir: &Path, prefix: &str, limits: Limits, as_of: NaiveDate) -> Packager {
        Packager {
            builder: EntryBuilder::new(limits.users_per_file),
            placer: Placer::new(dir, prefix, limits),
            mtime: zip_time(as_of),
            level: limits.compression_level,
        }
    }

    /// Appends one serialized `<user>` element.
    pub fn add_user(&mut self, user_xml: &[u8]) -> Result<()> {
        match self.builder.add(user_xml) {
            Some((doc, users)) => self
                .placer
                .place(compress_entry(&doc, users, self.level, self.mtime)?),
            None => Ok(()),
        }
    }

    /// Writes the last partial entry and finishes like [`Placer::finish`].
    pub fn finish(mut self) -> Result<Vec<Finished>> {
        if let Some((doc, users)) = self.builder.take() {
            self.placer
                .place(compress_entry(&doc, users, self.level, self.mtime)?)?;
        }
        self.placer.finish()
    }
}

impl Placer {
    /// A placer writing parts named `<prefix>_NNN.zip` into `dir`.
    pub fn new(dir: &Path, prefix: &str, limits: Limits) -> Placer {
        Placer {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            limits,
            part: None,
            parts: 0,
            done: Vec::new(),
        }
    }

    /// Final name of part `index` (1-based).
    pub fn part_name(prefix: &str, index: u32) -> String {
        format!("{prefix}_{index:03}.zip")
    }

    /// Puts a compressed entry into the current part, or a new one.
    pub fn place(&mut self, entry: Entry) -> Result<()> {
        // Names are the same length in every part, so the size estimate
        // does not depend on where the entry lands.
        let name_len = (self.prefix.len() + "_000_00.xml".len()) as u64;
        let cost = entry.compressed + 2 * name_len + ENTRY_OVERHEAD;
        if cost + ARCHIVE_OVERHEAD > self.limits.max_zip_bytes {
            return Err(Error::Limit(format!(
                "one XML file of {} users compresses to {} bytes, more than the zip limit of {} \
                 bytes; lower --users-per-file or raise --max-zip-bytes",
                entry.users, entry.compressed, self.limits.max_zip_bytes
            )));
        }
        let full = match &self.part {
            Some(p) => {
                p.entries.len() as u32 >= self.limits.files_per_zip
                    || p.bytes + cost > self.limits.max_zip_bytes
            }
            None => true,
        };
        if full {
            self.finish_part()?;
            self.parts += 1;
            let file = crate::outdir::hidden_temp(&self.dir, ".zip.tmp")?;
            let abandoned = Arc::new(AtomicBool::new(false));
            self.part = Some(Part {
                zip: ZipWriter::new(PartFile {
                    file,
                    abandoned: abandoned.clone(),
                }),
                abandoned,
                index: self.parts,
                entries: Vec::new(),
                users: 0,
                bytes: ARCHIVE_OVERHEAD,
            });
        }
        // `full` above guarantees a part exists here.
        let Some(part) = self.part.as_mut() else {
            return Err(Error::Invariant("no open zip part".into()));
        };
        let name = format!(
            "{}_{:03}_{:02}.xml",
            self.prefix,
            part.index,
            part.entries.len() + 1
        );
        let zip_path = self.dir.join(Placer::part_name(&self.prefix, part.index));
        let zerr = |source| Error::Zip {
            path: zip_path.clone(),
            source,
        };
        let mut ar = ZipArchive::new(Cursor::new(&entry.zip)).map_err(zerr)?;
        let file = ar.by_index_raw(0).map_err(zerr)?;
        part.zip.raw_copy_file_rename(file, &name).map_err(zerr)?;
        part.entries.push(name);
        part.users += entry.users;
        part.bytes += cost;
        Ok(())
    }

    fn finish_part(&mut self) -> Result<()> {
        let Some(part) = self.part.take() else {
            return Ok(());
        };
        let name = Placer::part_name(&self.prefix, part.index);
        let path = self.dir.join(&name);
        let mut tmp = part
            .zip
            .finish()
            .map_err(|source| Error::Zip {
                path: path.clone(),
                source,
            })?
            .file;
        tmp.as_file_mut().flush().map_err(|e| Error::io(&path, e))?;
        tmp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
        let (bytes, sha256) = hash_file(tmp.as_file_mut()).map_err(|e| Error::io(&path, e))?;
        if bytes > self.limits.max_zip_bytes {
            return Err(Error::Invariant(format!(
                "{name} is {bytes} bytes, over the {} byte limit the packager planned for",
                self.limits.max_zip_bytes
            )));
        }
        self.done.push(Finished {
            info: ZipInfo {
                name,
                bytes,
                entries: part.entries,
                users: part.users,
                sha256,
            },
            file: tmp,
        });
        Ok(())
    }

    /// Finishes the last part and checks the run total. Returns the parts
    /// in order.
    pub fn finish(mut self) -> Result<Vec<Finished>> {
        self.finish_part()?;
        let done = std::mem::take(&mut self.done);
        let total: u64 = done.iter().map(|f| f.info.bytes).sum();
        if total > self.limits.max_total_bytes {
            return Err(Error::Limit(format!(
                "the zips total {total} bytes, more than the {} bytes allowed for the whole run \
                 (the Secure FTP directory limit); raise --max-total-bytes if your directory \
                 allows more, or split the load",
                self.limits.max_total_bytes
            )));
        }
        Ok(done)
    }
}

impl Drop for Placer {
    /// A placer dropped with a part open belongs to a failed run: the
    /// part is deleted with its temporary file, unfinished.
    fn drop(&mut self) {
        if let Some(part) = &self.part {
            part.abandoned.store(true, Ordering::Relaxed);
        }
    }
}

/// Size and SHA-256 (lower-case hex) of a file, read from its start.
pub(crate) fn hash_file(f: &mut File) -> std::io::Result<(u64, String)> {
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((n, hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_of() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()
    }

    fn user(i: u32) -> Vec<u8> {
        format!("  <user>\n    <primary_id>U{i:06}</primary_id>\n  </user>\n").into_bytes()
    }

    fn run(limits: Limits, users: u32) -> Vec<Finished> {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Packager::new(dir.path(), "t", limits, as_of());
        for i in 0..users {
            p.add_user(&user(i)).unwrap();
        }
        let parts = p.finish().unwrap();
        // Keep the directory alive as long as the temp files.
        std::mem::forget(dir);
        parts
    }

    #[test]
    fn splits_by_users_and_files_per_zip() {
        let limits = Limits {
            users_per_file: 3,
            files_per_zip: 2,
            ..Limits::default()
        };
        let parts = run(limits, 14);
        let shape: Vec<(String, Vec<String>, u64)> = parts
            .iter()
            .map(|f| (f.info.name.clone(), f.info.entries.clone(), f.info.users))
            .collect();
        assert_eq!(shape.len(), 3);
        assert_eq!(shape[0].0, "t_001.zip");
        assert_eq!(shape[0].1, ["t_001_01.xml", "t_001_02.xml"]);
        // 14 users in files of 3 = 5 files; 2 files per zip = 2 + 2 + 1.
        assert_eq!(shape[2].1, ["t_003_01.xml"]);
        assert_eq!(shape.iter().map(|s| s.2).sum::<u64>(), 14);
        assert_eq!(shape[2].2, 2);
    }

    #[test]
    fn splits_by_bytes_and_never_passes_the_limit() {
        let limits = Limits {
            users_per_file: 50,
            max_zip_bytes: 2000,
            ..Limits::default()
        };
        let parts = run(limits, 1000);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(
                p.info.bytes <= 2000,
                "{} is {} bytes",
                p.info.name,
                p.info.bytes
            );
            let mut ar = ZipArchive::new(p.file.reopen().unwrap()).unwrap();
            assert_eq!(ar.len(), p.info.entries.len());
            let mut s = String::new();
            ar.by_index(0).unwrap().read_to_string(&mut s).unwrap();
            assert!(s.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<users>\n"));
            assert!(s.ends_with("</users>\n"));
        }
    }

    #[test]
    fn over_the_run_total_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            users_per_file: 10,
            max_zip_bytes: 1500,
            max_total_bytes: 3000,
            ..Limits::default()
        };
        let mut p = Packager::new(dir.path(), "t", limits, as_of());
        for i in 0..2000 {
            p.add_user(&user(i)).unwrap();
        }
        let err = p.finish().err().unwrap();
        assert!(matches!(err, Error::Limit(_)), "{err}");
    }

    #[test]
    fn same_input_same_bytes() {
        let a = run(
            Limits {
                users_per_file: 7,
                ..Limits::default()
            },
            40,
        );
        let b = run(
            Limits {
                users_per_file: 7,
                ..Limits::default()
            },
            40,
        );
        let sums = |v: &[Finished]| v.iter().map(|f| f.info.sha256.clone()).collect::<Vec<_>>();
        assert_eq!(sums(&a), sums(&b));
    }

    #[test]
    fn parts_compress_to_the_bytes_of_the_whole() {
        let doc: Vec<u8> = (0..40_000u32)
            .flat_map(|i| format!("<user><id>{}</id></user>\n", i * 7919 % 10007).into_bytes())
            .collect();
        let mtime = zip_time(as_of());
        for level in [0, 1, 6] {
            let whole = compress_entry(&doc, 1, level, mtime).unwrap();
            for cut in [1, 100, FEED - 1, FEED, FEED + 1, 3 * FEED + 17] {
                let mut w = EntryWriter::new(doc.len(), level, mtime).unwrap();
                for piece in doc.chunks(cut) {
                    w.write(piece).unwrap();
                }
                let split = w.finish(1).unwrap();
                assert!(split.zip == whole.zip, "level {level}, pieces of {cut}");
                // Started before its length is known, with any room.
                for room in [0, 10, 1 << 20] {
                    let mut w = EntryWriter::streaming(level, mtime, room).unwrap();
                    for piece in doc.chunks(cut) {
                        w.write(piece).unwrap();
                    }
                    let streamed = w.finish(1).unwrap();
                    assert!(streamed.zip == whole.zip, "level {level}, {cut}, {room}");
                }
            }
        }
    }

    #[test]
    fn a_streamed_entry_past_its_limit_is_refused() {
        // The real limit is 4 GiB, where zip64 would have been needed.
        let mut w = EntryWriter::streaming(6, zip_time(as_of()), 0).unwrap();
        w.limit = 10;
        w.write(b"0123456789").unwrap();
        assert!(matches!(w.write(b"x"), Err(Error::Limit(_))));
    }
}
