//! Institution-wide identifier uniqueness, exactly as Alma applies it.
//!
//! Alma rejects a user any of whose identifiers (primary or additional, of
//! any type) is already held by another user, and in one feed the first
//! instance wins. [`IdSet::claim`] is that rule run in input order: a
//! record claims all its values at once or none of them, so a record that
//! loses one value does not block later records with its others (the
//! "chain" case). The parallel engine must reproduce these decisions
//! exactly; this sequential form is the reference.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use crate::model::{User, UserField};
use crate::profile::IdentifierCase;

/// Where a value was first claimed, for the reject message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Input file index.
    pub file: u32,
    /// Line where the owning record starts.
    pub line: u64,
}

/// A lost claim: which value of the record collided and with whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `primary_id` or the identifier type that collided.
    pub id_type: String,
    /// The colliding value, as this record has it.
    pub value: String,
    /// The owner of the value.
    pub owner: Owner,
    /// The identifier type under which the owner holds it.
    pub owner_id_type: String,
}

/// The comparison spaces of [`IdSet`]. With case-insensitive identifiers
/// everything lives in `Folded`. With case-sensitive additional
/// identifiers, primary ids stay case-insensitive (Alma always compares
/// them so) and any primary-versus-additional comparison is made
/// case-insensitively too, the conservative reading: a value Alma might
/// treat as taken is treated as taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Space {
    /// Case-folded values of everything (insensitive mode), or of primary
    /// ids only (sensitive mode).
    Folded,
    /// Case-folded values of additional identifiers (sensitive mode),
    /// checked by primary ids.
    FoldedAdditional,
    /// Exact values of additional identifiers (sensitive mode).
    Exact,
}

impl Space {
    fn from_bits(b: u64) -> Option<Space> {
        match b {
            0 => Some(Space::Folded),
            1 => Some(Space::FoldedAdditional),
            2 => Some(Space::Exact),
            _ => None,
        }
    }
}

/// Low bits of a table entry: a slice of the value's hash (the tag), so
/// that a probe reads a stored value back only when the tags agree. The
/// high bits hold the record's position in the log plus one, so that 0
/// marks an empty bucket (a 1 TiB log at most).
const TAG_BITS: u32 = 24;
const TAG_FIELD: u64 = (1 << TAG_BITS) - 1;
const POS_LIMIT: u64 = 1 << (64 - TAG_BITS);

/// The load [`IdSet::reserve`] sizes the table for, and the load at which
/// an insert grows it (linear probing stays short below 7/8).
const SIZED_LOAD: (usize, usize) = (3, 4);
const MAX_LOAD: (usize, usize) = (7, 8);

/// Log bytes kept in RAM before they go to the spill file: large enough
/// that a write is one syscall per thousands of values, small beside the
/// table.
const TAIL_MAX: usize = 1 << 20;

/// Most bytes a record's header takes: four LEB128 varints of a `u64`.
const MAX_HEADER: usize = 40;

/// Bytes read at a time when the table is rebuilt from the log.
const SCAN_CHUNK: usize = 1 << 20;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The header of one log record: `(id_type << 2 | space, file, line,
/// len)` as varints, then `len` bytes of the value.
struct Header {
    space: Space,
    id_type: u16,
    owner: Owner,
    len: usize,
    /// Bytes of the header itself.
    size: usize,
}

fn corrupt() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "identifier log record is damaged",
    )
}

impl Header {
    fn write(out: &mut Vec<u8>, space: Space, id_type: u16, owner: Owner, key: &[u8]) {
        put_varint(out, (u64::from(id_type) << 2) | space as u64);
        put_varint(out, u64::from(owner.file));
        put_varint(out, owner.line);
        put_varint(out, key.len() as u64);
        out.extend_from_slice(key);
    }

    fn read(b: &[u8]) -> io::Result<Header> {
        let mut at = 0;
        let mut next = || get_varint(b, &mut at).ok_or_else(corrupt);
        let kind = next()?;
        let file = next()?;
        let line = next()?;
        let len = next()?;
        Ok(Header {
            space: Space::from_bits(kind & 3).ok_or_else(corrupt)?,
            id_type: u16::try_from(kind >> 2).map_err(|_| corrupt())?,
            owner: Owner {
                file: u32::try_from(file).map_err(|_| corrupt())?,
                line,
            },
            len: usize::try_from(len).map_err(|_| corrupt())?,
            size: at,
        })
    }
}

/// Every claimed value, once, in claim order: the bytes the table's
/// entries point into. The newest part is in RAM (`tail`); with a spill
/// directory, the rest is in an unlinked private file there.
struct Log {
    tail: Vec<u8>,
    /// Bytes of the log in the file; `tail` starts there.
    flushed: u64,
    file: Option<File>,
    /// Where the file goes once `tail` reaches `tail_max`; `None` keeps
    /// the whole log in RAM.
    dir: Option<PathBuf>,
    tail_max: usize,
}

impl Log {
    fn len(&self) -> u64 {
        self.flushed + self.tail.len() as u64
    }

    /// Bytes `pos..pos + n` of the log into `out`, from the file and/or
    /// the tail (a range may straddle the two).
    fn read_at(&mut self, pos: u64, n: usize, out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        let end = pos + n as u64;
        if pos < self.flushed {
            let file = self.file.as_mut().ok_or_else(corrupt)?;
            file.seek(SeekFrom::Start(pos))?;
            out.resize((end.min(self.flushed) - pos) as usize, 0);
            file.read_exact(out)?;
        }
        if end > self.flushed {
            let a = (pos.max(self.flushed) - self.flushed) as usize;
            let b = (end - self.flushed) as usize;
            out.extend_from_slice(self.tail.get(a..b).ok_or_else(corrupt)?);
        }
        Ok(())
    }

    /// Moves the tail to the file once it is long enough. On an error
    /// the tail keeps its bytes, so lookups stay exact.
    fn spill(&mut self) -> io::Result<()> {
        if self.tail.len() < self.tail_max {
            return Ok(());
        }
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile_in(dir)?),
        };
        file.seek(SeekFrom::Start(self.flushed))?;
        file.write_all(&self.tail)?;
        self.flushed += self.tail.len() as u64;
        self.tail.clear();
        Ok(())
    }
}

/// The set of identifier values claimed so far in a run.
///
/// Each value is one record in a log (the value, its comparison space,
/// identifier type and owner, back to back); the table holds 8 bytes per
/// value, the record's position and a 24-bit tag from the value's hash,
/// and compares real bytes whenever a tag agrees, so a lookup is exact,
/// never a hash guess. With [`IdSet::spill_in`] the log goes to a private
/// temporary file beyond its newest megabyte, so the RAM a run spends per
/// identifier is the table's ≈ 11 bytes. (At 5M patrons of two
/// identifiers each, 16-byte slots, 12-byte owners and the values in RAM
/// came to about 395 MiB; the table is 96 MiB, and the run's peak RSS
/// fell by 286 MiB.) A hit reads one record back: only a value that is
/// really taken (or one tag collision in 16 million) costs a read.
pub struct IdSet {
    case: IdentifierCase,
    /// Open addressing, linear probing; 0 is empty.
    table: Buckets,
    entries: usize,
    log: Log,
    hasher: ahash::RandomState,
    /// The hash bits an entry keeps (tests shrink it to force collisions).
    tag_mask: u64,
    /// Identifier type names, interned so records stay small.
    types: Vec<String>,
    /// Keys of the record being claimed, back to back, and what to insert
    /// once all are known free: reused so a claim allocates nothing.
    scratch: String,
    pending: Vec<(u16, Space, usize, usize)>,
    /// A record read back for comparison.
    buf: Vec<u8>,
    /// The first error of the spill file.
    error: Option<io::Error>,
}

impl std::fmt::Debug for IdSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdSet")
            .field("values", &self.entries)
            .finish()
    }
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet::new(IdentifierCase::default())
    }
}

/// The table's hash of a key in its space.
fn key_hash(hasher: &ahash::RandomState, space: Space, key: &[u8]) -> u64 {
    hasher.hash_one((space as u8, key))
}

/// The bucket a hash starts probing at (any table length, not only
/// powers of two, so a presized table is no larger than it needs).
fn bucket(h: u64, len: usize) -> usize {
    ((u128::from(h) * len as u128) >> 64) as usize
}

/// Puts `entry` in the first empty bucket from `h`'s: after every entry
/// already there with the same hash, so the first claimed is found first.
/// The table's buckets, zeroed. A large run's table is hundreds of MiB
/// probed at random, and with 4 KiB pages nearly every probe misses the
/// TLB as well as the caches; so a large table is an anonymous mapping
/// advised to use huge pages where the system allows it (measured at 1M
/// rich patrons on 2 cores: the ordered consumer 18 % faster with huge
/// pages than without). Small tables, and any failure to map, are a `Vec`.
enum Buckets {
    Heap(Vec<u64>),
    Mapped(memmap2::MmapMut),
}

/// Tables from this many bytes are mapped (a huge page is 2 MiB).
const MAP_MIN: usize = 4 << 20;

impl Buckets {
    fn zeroed(len: usize) -> Buckets {
        if len * 8 >= MAP_MIN {
            if let Ok(map) = memmap2::MmapMut::map_anon(len * 8) {
                // Only advice: without huge pages the table works the same.
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage);
                return Buckets::Mapped(map);
            }
        }
        Buckets::Heap(vec![0; len])
    }
}

impl std::ops::Deref for Buckets {
    type Target = [u64];

    fn deref(&self) -> &[u64] {
        match self {
            Buckets::Heap(v) => v,
            Buckets::Mapped(m) => bytemuck::cast_slice(&m[..]),
        }
    }
}

impl std::ops::DerefMut for Buckets {
    fn deref_mut(&mut self) -> &mut [u64] {
        match self {
            Buckets::Heap(v) => v,
            Buckets::Mapped(m) => bytemuck::cast_slice_mut(&mut m[..]),
        }
    }
}

fn place(table: &mut [u64], h: u64, entry: u64) {
    let mut i = bucket(h, table.len());
    while table[i] != 0 {
        i += 1;
        if i == table.len() {
            i = 0;
        }
    }
    table[i] = entry;
}

/// A table of `len` buckets holding every record of `log`: the hashes
/// are recomputed from the stored values, read in order.
fn rebuild(
    log: &mut Log,
    hasher: &ahash::RandomState,
    tag_mask: u64,
    len: usize,
) -> io::Result<Buckets> {
    let mut table = Buckets::zeroed(len);
    let end = log.len();
    let (mut chunk, mut at) = (Vec::new(), 0u64);
    let mut pos = 0u64;
    while pos < end {
        let mut refill = |chunk: &mut Vec<u8>, at: &mut u64, need: u64| {
            *at = pos;
            let n = need.max(SCAN_CHUNK as u64).min(end - pos);
            log.read_at(pos, n as usize, chunk)
        };
        if pos + (MAX_HEADER as u64).min(end - pos) > at + chunk.len() as u64 {
            refill(&mut chunk, &mut at, MAX_HEADER as u64)?;
        }
        let h = Header::read(&chunk[(pos - at) as usize..])?;
        let size = (h.size + h.len) as u64;
        if pos + size > at + chunk.len() as u64 {
            refill(&mut chunk, &mut at, size)?;
        }
        let off = (pos - at) as usize + h.size;
        let key = chunk.get(off..off + h.len).ok_or_else(corrupt)?;
        let hash = key_hash(hasher, h.space, key);
        place(&mut table, hash, entry(pos, hash & tag_mask));
        pos += size;
    }
    Ok(table)
}

fn entry(pos: u64, tag: u64) -> u64 {
    ((pos + 1) << TAG_BITS) | tag
}

/// Buckets for `n` entries at [`SIZED_LOAD`].
fn sized(n: usize) -> usize {
    n / SIZED_LOAD.0 * SIZED_LOAD.1 + 16
}

/// The key a primary id is matched on across runs: compared the way Alma
/// compares primary ids (trimmed, case-insensitively), as [`IdSet`] does.
pub fn match_key(primary_id: &str) -> String {
    let mut out = String::with_capacity(primary_id.len());
    fold_into(primary_id, &mut out);
    out
}

/// Appends `crate::map::fold(s)` to `out` without allocating for ASCII.
pub(crate) fn fold_into(s: &str, out: &mut String) {
    let t = s.trim();
    if t.is_ascii() {
        out.extend(t.bytes().map(|b| b.to_ascii_lowercase() as char));
    } else {
        // Full Unicode lowercasing is contextual (final sigma): leave it
        // to the standard library.
        out.push_str(&t.to_lowercase());
    }
}

impl IdSet {
    /// An empty set comparing values per `case`, holding everything in
    /// RAM (see [`IdSet::spill_in`]).
    pub fn new(case: IdentifierCase) -> IdSet {
        IdSet {
            case,
            table: Buckets::Heap(Vec::new()),
            entries: 0,
            log: Log {
                tail: Vec::new(),
                flushed: 0,
                file: None,
                dir: None,
                tail_max: TAIL_MAX,
            },
            // Fixed seeds: the hash decides only the table layout, never an
            // outcome, but a fixed layout makes runs easier to compare.
            hasher: ahash::RandomState::with_seeds(0x5eed, 0xa17a, 0x1d5, 0x7ab1e),
            tag_mask: TAG_FIELD,
            types: vec!["primary_id".into()],
            scratch: String::new(),
            pending: Vec::new(),
            buf: Vec::new(),
            error: None,
        }
    }

    /// Keeps the claimed values, beyond the newest megabyte, in an
    /// unlinked temporary file in `dir` (private, `0600`, gone when the
    /// set is dropped or the process dies) instead of RAM. By default
    /// nothing is written anywhere.
    pub fn spill_in(&mut self, dir: impl Into<PathBuf>) {
        self.log.dir = Some(dir.into());
    }

    /// The first I/O error of the spill file, if there was one. After a
    /// failed read, outcomes may be wrong (a value could not be compared),
    /// so a caller that spills must check this before it uses them.
    pub fn take_error(&mut self) -> Option<io::Error> {
        self.error.take()
    }

    /// How this set compares values.
    pub fn case(&self) -> IdentifierCase {
        self.case
    }

    /// Makes room for about `values` more values of `bytes` bytes in all,
    /// so a large run never stops to rebuild a table of millions.
    pub fn reserve(&mut self, values: usize, bytes: usize) {
        let want = sized(self.entries + values);
        if want > self.table.len() {
            self.resize(want);
        }
        if self.log.dir.is_none() {
            // A record's header is about 6 bytes.
            self.log.tail.reserve(bytes + values * 6);
        }
    }

    fn fail(&mut self, e: io::Error) {
        self.error.get_or_insert(e);
    }

    fn resize(&mut self, len: usize) {
        // The log, not the old table, is what the new one is built from:
        // free the old one first.
        self.table = Buckets::Heap(Vec::new());
        match rebuild(&mut self.log, &self.hasher, self.tag_mask, len) {
            Ok(t) => self.table = t,
            Err(e) => {
                self.fail(e);
                self.table = Buckets::zeroed(len);
            }
        }
    }

    fn hash(&self, space: Space, key: &[u8]) -> u64 {
        key_hash(&self.hasher, space, key)
    }

    /// The type and owner of `key` in `space`, if claimed.
    fn find(&mut self, space: Space, key: &str) -> Option<(u16, Owner)> {
        if self.table.is_empty() {
            return None;
        }
        let key = key.as_bytes();
        let h = self.hash(space, key);
        let tag = h & self.tag_mask;
        let mut i = bucket(h, self.table.len());
        loop {
            let e = self.table[i];
            if e == 0 {
                return None;
            }
            if e & TAG_FIELD == tag {
                match self.stored(e >> TAG_BITS, space, key) {
                    Ok(Some(hit)) => return Some(hit),
                    Ok(None) => {}
                    Err(err) => {
                        self.fail(err);
                        return None;
                    }
                }
            }
            i += 1;
            if i == self.table.len() {
                i = 0;
            }
        }
    }

    /// Reads the record an entry points to (its position plus one) and
    /// returns its type and owner if it holds `key` in `space`.
    fn stored(&mut self, pos1: u64, space: Space, key: &[u8]) -> io::Result<Option<(u16, Owner)>> {
        let pos = pos1 - 1;
        let n = (MAX_HEADER + key.len()).min((self.log.len() - pos) as usize);
        self.log.read_at(pos, n, &mut self.buf)?;
        let h = Header::read(&self.buf)?;
        if h.space != space || h.len != key.len() {
            return Ok(None);
        }
        let v = self.buf.get(h.size..h.size + h.len).ok_or_else(corrupt)?;
        Ok((v == key).then_some((h.id_type, h.owner)))
    }

    fn intern(&mut self, t: &str) -> u16 {
        if let Some(i) = self.types.iter().position(|x| x == t) {
            return i as u16;
        }
        self.types.push(t.to_string());
        (self.types.len() - 1) as u16
    }

    /// Claims every identifier value of `user` for `owner`, or none if any
    /// is already taken, returning the first collision in the user's own
    /// order (primary id first).
    pub fn claim(&mut self, user: &User<'_>, owner: Owner) -> Result<(), Conflict> {
        let primary = user
            .get(UserField::PrimaryId)
            .map(|p| ("primary_id", p, true));
        let others = user
            .identifiers
            .iter()
            .map(|i| (i.id_type.as_ref(), i.value.as_ref(), false));
        self.claim_values(primary.into_iter().chain(others), owner)
    }

    /// [`IdSet::claim`] over `(id_type, value, is_primary)` triples, so
    /// callers need not keep a whole [`User`] around.
    pub fn claim_values<'a>(
        &mut self,
        values: impl IntoIterator<Item = (&'a str, &'a str, bool)>,
        owner: Owner,
    ) -> Result<(), Conflict> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut pending = std::mem::take(&mut self.pending);
        scratch.clear();
        pending.clear();
        let free = self.check(values, &mut scratch, &mut pending);
        if free.is_ok() {
            for &(id_type, space, a, b) in &pending {
                self.insert(id_type, space, &scratch[a..b], owner);
            }
            if let Err(e) = self.log.spill() {
                // The tail keeps the values, so outcomes stay exact; stop
                // trying, and let the caller fail the run.
                self.log.dir = None;
                self.fail(e);
            }
        }
        self.scratch = scratch;
        self.pending = pending;
        free
    }

    /// Looks every value up; on success `pending` lists the keys (ranges
    /// of `scratch`) to insert.
    fn check<'a>(
        &mut self,
        values: impl IntoIterator<Item = (&'a str, &'a str, bool)>,
        scratch: &mut String,
        pending: &mut Vec<(u16, Space, usize, usize)>,
    ) -> Result<(), Conflict> {
        for (id_type, value, primary) in values {
            let t = self.intern(id_type);
            let f0 = scratch.len();
            fold_into(value, scratch);
            let f1 = scratch.len();
            let hit = match (self.case, primary) {
                (IdentifierCase::Insensitive, _) => {
                    pending.push((t, Space::Folded, f0, f1));
                    self.find(Space::Folded, &scratch[f0..f1])
                }
                (IdentifierCase::Sensitive, true) => {
                    pending.push((t, Space::Folded, f0, f1));
                    self.find(Space::Folded, &scratch[f0..f1])
                        .or_else(|| self.find(Space::FoldedAdditional, &scratch[f0..f1]))
                }
                (IdentifierCase::Sensitive, false) => {
                    scratch.push_str(value.trim());
                    let e1 = scratch.len();
                    pending.push((t, Space::Exact, f1, e1));
                    pending.push((t, Space::FoldedAdditional, f0, f1));
                    self.find(Space::Exact, &scratch[f1..e1])
                        .or_else(|| self.find(Space::Folded, &scratch[f0..f1]))
                }
            };
            if let Some((owner_type, owner)) = hit {
                return Err(Conflict {
                    id_type: id_type.to_string(),
                    value: value.trim().to_string(),
                    owner,
                    owner_id_type: self.types[owner_type as usize].clone(),
                });
            }
        }
        Ok(())
    }

    fn insert(&mut self, id_type: u16, space: Space, key: &str, owner: Owner) {
        let key = key.as_bytes();
        if (self.entries + 1) * MAX_LOAD.1 > self.table.len() * MAX_LOAD.0 {
            let len = (self.table.len() / 2 * 3).max(sized(self.entries + 1));
            self.resize(len);
        }
        let pos = self.log.len();
        // A terabyte of identifiers cannot be claimed on the machines
        // this runs on; the check keeps a bad position impossible.
        assert!(pos + 1 < POS_LIMIT, "identifier log past 1 TiB");
        Header::write(&mut self.log.tail, space, id_type, owner, key);
        let h = self.hash(space, key);
        place(&mut self.table, h, entry(pos, h & self.tag_mask));
        self.entries += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Identifier;

    fn user(primary: &str, ids: &[(&str, &str)]) -> User<'static> {
        User {
            fields: vec![(UserField::PrimaryId, primary.to_string().into())],
            identifiers: ids
                .iter()
                .map(|(t, v)| Identifier {
                    id_type: t.to_string().into(),
                    value: v.to_string().into(),
                    note: None,
                    status: "ACTIVE".into(),
                })
                .collect(),
            ..User::default()
        }
    }

    fn at(line: u64) -> Owner {
        Owner { file: 0, line }
    }

    #[test]
    fn first_wins_across_types_and_case() {
        let mut s = IdSet::new(IdentifierCase::Insensitive);
        s.claim(&user("S1", &[("BARCODE", "B1")]), at(2)).unwrap();
        let c = s
            .claim(&user("X9", &[("UNIV_ID", " s1 ")]), at(3))
            .unwrap_err();
        assert_eq!(c.id_type, "UNIV_ID");
        assert_eq!(c.owner, at(2));
        assert_eq!(c.owner_id_type, "primary_id");
        let c = s.claim(&user("b1", &[]), at(4)).unwrap_err();
        assert_eq!(
            (c.id_type.as_str(), c.owner_id_type.as_str()),
            ("primary_id", "BARCODE")
        );
    }

    #[test]
    fn a_losing_record_claims_nothing_chain_case() {
        let mut s = IdSet::new(IdentifierCase::Insensitive);
        s.claim(&user("A", &[("BARCODE", "1")]), at(2)).unwrap();
        // Record 2 loses its primary id, so its barcode stays free...
        assert!(s.claim(&user("a", &[("BARCODE", "2")]), at(3)).is_err());
        // ...and record 3 may take it.
        s.claim(&user("C", &[("BARCODE", "2")]), at(4)).unwrap();
    }

    #[test]
    fn case_sensitive_additional_identifiers() {
        let mut s = IdSet::new(IdentifierCase::Sensitive);
        s.claim(&user("P1", &[("BARCODE", "abc")]), at(2)).unwrap();
        // Additional vs additional: exact comparison.
        s.claim(&user("P2", &[("BARCODE", "ABC")]), at(3)).unwrap();
        assert!(s.claim(&user("P3", &[("UNIV_ID", "abc")]), at(4)).is_err());
        // Primary ids stay case-insensitive, also against additional ids.
        assert!(s.claim(&user("p1", &[]), at(5)).is_err());
        assert!(s.claim(&user("Abc", &[]), at(6)).is_err());
        assert!(s.claim(&user("P7", &[("BARCODE", "P1")]), at(7)).is_err());
        assert!(s.claim(&user("P8", &[("BARCODE", "p1")]), at(8)).is_err());
    }

    #[test]
    fn values_of_16_mib_and_more_compare_exactly() {
        let mut s = IdSet::new(IdentifierCase::Insensitive);
        let long = "x".repeat((1 << 24) + 3);
        let other = format!("{}y", &long[1..]);
        s.claim(&user("A", &[("BARCODE", &long)]), at(2)).unwrap();
        s.claim(&user("B", &[("BARCODE", &other)]), at(3)).unwrap();
        // Short values stored after a long one are still where they were.
        s.claim(&user("C", &[]), at(4)).unwrap();
        let c = s
            .claim(&user("D", &[("UNIV_ID", &long.to_uppercase())]), at(5))
            .unwrap_err();
        assert_eq!((c.owner, c.owner_id_type.as_str()), (at(2), "BARCODE"));
        assert_eq!(s.claim(&user("c", &[]), at(6)).unwrap_err().owner, at(4));
        assert_eq!(
            s.claim(&user("E", &[("X", &other)]), at(7))
                .unwrap_err()
                .owner,
            at(3)
        );
    }

    #[test]
    fn owners_keep_lines_past_32_bits() {
        let mut s = IdSet::new(IdentifierCase::Insensitive);
        let far = Owner {
            file: 7,
            line: (1 << 40) + 5,
        };
        s.claim(&user("A", &[]), far).unwrap();
        assert_eq!(s.claim(&user("a", &[]), at(1)).unwrap_err().owner, far);
    }

    #[test]
    fn reserving_changes_no_outcome() {
        let run = |reserve: bool| {
            let mut s = IdSet::new(IdentifierCase::Sensitive);
            if reserve {
                s.reserve(3000, 30_000);
            }
            (0..2000)
                .map(|i| {
                    let b = format!("B{}", i % 700);
                    let p = format!("p{}", i % 1300);
                    s.claim(&user(&p, &[("BARCODE", &b)]), at(i)).is_ok()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(false), run(true));
        assert!(run(true).iter().any(|ok| !ok));
    }

    #[test]
    fn a_mapped_table_decides_as_a_small_one() {
        let run = |values: usize| {
            let mut s = IdSet::new(IdentifierCase::Insensitive);
            s.reserve(values, values * 8);
            let mapped = matches!(s.table, Buckets::Mapped(_));
            let out = (0..3000)
                .map(|i| {
                    let b = format!("B{}", i % 900);
                    let p = format!("P{}", i % 2000);
                    s.claim(&user(&p, &[("BARCODE", &b)]), at(i)).is_ok()
                })
                .collect::<Vec<_>>();
            (mapped, out)
        };
        let (small, a) = run(0);
        let (mapped, b) = run(1_000_000);
        assert!(!small && mapped);
        assert_eq!(a, b);
        assert!(a.iter().any(|ok| !ok));
    }

    /// A set whose entries keep `tag_bits` of the hash, spilling into
    /// `dir` whenever more than `tail_max` log bytes are in RAM.
    fn stressed(
        case: IdentifierCase,
        tag_bits: u32,
        dir: &std::path::Path,
        tail_max: usize,
    ) -> IdSet {
        let mut s = IdSet::new(case);
        s.tag_mask = (1 << tag_bits) - 1;
        s.spill_in(dir);
        s.log.tail_max = tail_max;
        s
    }

    /// Claims of ids drawn from a small pool, in several cases, so many
    /// collide; each is `(primary, [(type, value)])`.
    fn claims(n: u64) -> Vec<(String, Vec<(&'static str, String)>)> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let case = |v: String, r: u64| if r == 0 { v.to_uppercase() } else { v };
        (0..n)
            .map(|_| {
                let p = case(format!("p{}", next(900)), next(3));
                let mut ids = vec![("BARCODE", case(format!("b{}", next(700)), next(4)))];
                if next(3) == 0 {
                    // Another type, sometimes a primary id's value.
                    let v = if next(2) == 0 {
                        format!("p{}", next(900))
                    } else {
                        format!("b{}", next(700))
                    };
                    ids.push(("UNIV_ID", case(v, next(2))));
                }
                (p, ids)
            })
            .collect()
    }

    fn outcomes(
        s: &mut IdSet,
        claims: &[(String, Vec<(&'static str, String)>)],
    ) -> Vec<Result<(), Conflict>> {
        claims
            .iter()
            .enumerate()
            .map(|(i, (p, ids))| {
                s.claim(
                    &user(
                        p,
                        ids.iter()
                            .map(|(t, v)| (*t, v.as_str()))
                            .collect::<Vec<_>>()
                            .as_slice(),
                    ),
                    at(i as u64 + 2),
                )
            })
            .collect()
    }

    #[test]
    fn a_matching_tag_is_checked_against_the_stored_bytes() {
        // With no tag bits every entry probed is a tag match, so only the
        // comparison of the stored bytes tells values apart.
        let dir = tempfile::tempdir().unwrap();
        let cl = claims(3000);
        for case in [IdentifierCase::Insensitive, IdentifierCase::Sensitive] {
            let want = outcomes(&mut IdSet::new(case), &cl);
            assert!(want.iter().filter(|r| r.is_err()).count() > 500);
            assert!(want.iter().filter(|r| r.is_ok()).count() > 500);
            for (tag_bits, tail_max) in [(0, TAIL_MAX), (0, 1), (1, 37), (24, 1)] {
                let mut s = stressed(case, tag_bits, dir.path(), tail_max);
                assert_eq!(
                    outcomes(&mut s, &cl),
                    want,
                    "{case:?} {tag_bits} {tail_max}"
                );
                assert!(s.take_error().is_none());
            }
        }
    }

    #[test]
    fn claims_match_a_plain_list_of_values() {
        // The insensitive rule with nothing clever: a list of (folded
        // value, owner, type), first claim of a value wins.
        let cl = claims(2000);
        let mut held: Vec<(String, Owner, &str)> = Vec::new();
        let want: Vec<Result<(), Conflict>> = cl
            .iter()
            .enumerate()
            .map(|(i, (p, ids))| {
                let vals: Vec<(&str, &str)> = std::iter::once(("primary_id", p.as_str()))
                    .chain(ids.iter().map(|(t, v)| (*t, v.as_str())))
                    .collect();
                for &(t, v) in &vals {
                    if let Some((_, o, ot)) = held.iter().find(|h| h.0 == match_key(v)) {
                        return Err(Conflict {
                            id_type: t.to_string(),
                            value: v.to_string(),
                            owner: *o,
                            owner_id_type: ot.to_string(),
                        });
                    }
                }
                for &(t, v) in &vals {
                    held.push((match_key(v), at(i as u64 + 2), t));
                }
                Ok(())
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut s = stressed(IdentifierCase::Insensitive, 3, dir.path(), 64);
        assert_eq!(outcomes(&mut s, &cl), want);
        assert_eq!(
            outcomes(&mut IdSet::new(IdentifierCase::Insensitive), &cl),
            want
        );
    }

    #[test]
    fn values_on_both_sides_of_the_spill_boundary() {
        let dir = tempfile::tempdir().unwrap();
        // Whole records go to the file once 100 bytes are in RAM: some
        // values are read back from the file, others from the tail, and
        // a lookup near the end of the file reads on into the tail.
        let mut s = stressed(IdentifierCase::Insensitive, 0, dir.path(), 100);
        for i in 0..50u64 {
            s.claim(
                &user(&format!("P{i}"), &[("BARCODE", &format!("{i:0>30}"))]),
                at(i),
            )
            .unwrap();
        }
        assert!(s.log.flushed > 0 && !s.log.tail.is_empty());
        for i in 0..50u64 {
            let c = s
                .claim(&user("new", &[("X", &format!("{i:0>30}"))]), at(99))
                .unwrap_err();
            assert_eq!((c.owner, c.owner_id_type.as_str()), (at(i), "BARCODE"));
            let c = s.claim(&user(&format!("p{i}"), &[]), at(99)).unwrap_err();
            assert_eq!(c.owner, at(i));
        }
        // The table grew from nothing by rebuilding from the log.
        assert_eq!(s.entries, 100);
        assert!(s.take_error().is_none());
    }

    proptest::proptest! {
        #[test]
        fn fold_into_is_fold(a in "\\PC{0,12}", b in "[ A-Za-zΣσς0-9]{0,12}") {
            for v in [a, b] {
                let mut out = String::from("prefix");
                fold_into(&v, &mut out);
                proptest::prop_assert_eq!(&out[6..], crate::map::fold(&v));
            }
        }
    }
}
