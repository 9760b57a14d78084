//! What Alma already holds: the identifiers of Alma's own users, compact,
//! for the pre-check of `convert --alma-users`.
//!
//! Alma rejects a user whose identifier another Alma user holds ("already
//! taken AcrossInstitution") and a user whose match id finds an internal
//! account ("User is not external"). Both depend on what is already in
//! Alma, which its "Export Users" job writes out. The `alma` module reads
//! that export and builds an [`AlmaIndex`]; the run's `Emitter` (and a
//! job's claims) ask it about every user before accepting the user, in
//! input order. The index lives here, below `run`, so the run never
//! depends on the readers of untrusted XML (`check`, `alma`): the binary
//! builds it and hands it in through [`crate::run::options::RunOptions`].
//!
//! Memory: one 16-byte entry per identifier (hash of the folded value,
//! arena offset, owner), the value's bytes once with a 4-byte header, and
//! 4 bytes plus a bit per Alma user; values are compared as
//! [`crate::dedupe`] compares them, and a hash match is always verified
//! against the stored bytes.

use crate::dedupe::fold_into;
use crate::error::{Error, Result};
use crate::profile::IdentifierCase;
use crate::report::{Fail, Reason};

/// The identifier type name Alma's primary id is stored under.
pub const PRIMARY: &str = "primary_id";

/// One identifier value: which Alma user holds it and where its bytes are.
#[derive(Debug, Clone, Copy)]
struct Entry {
    hash: u64,
    /// Offset in the arena of `[type u16][len u16][bytes]`.
    pos: u32,
    owner: u32,
}

/// Alma's users' identifiers, sorted by the hash of their folded value.
pub struct AlmaIndex {
    entries: Vec<Entry>,
    arena: Vec<u8>,
    /// Per Alma user: arena offset of its primary id entry
    /// (`u32::MAX` when the export gave none).
    primary: Vec<u32>,
    /// Per Alma user: whether its account is INTERNAL (a bit each).
    internal: Vec<u64>,
    types: Vec<String>,
    hasher: ahash::RandomState,
    sorted: bool,
}

impl std::fmt::Debug for AlmaIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlmaIndex")
            .field("users", &self.primary.len())
            .field("identifiers", &self.entries.len())
            .finish()
    }
}

impl Default for AlmaIndex {
    fn default() -> Self {
        AlmaIndex::new()
    }
}

/// Longest identifier value kept (Alma's own limit is 255 characters);
/// a longer value cannot be held in Alma, so it cannot collide.
const MAX_VALUE_BYTES: usize = u16::MAX as usize;

/// A match found in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hit<'a> {
    owner: u32,
    id_type: &'a str,
}

impl AlmaIndex {
    /// An empty index.
    pub fn new() -> AlmaIndex {
        AlmaIndex {
            entries: Vec::new(),
            arena: Vec::new(),
            primary: Vec::new(),
            internal: Vec::new(),
            types: vec![PRIMARY.to_string()],
            // Fixed seeds: the layout never decides an outcome, but a
            // fixed one makes runs easier to compare.
            hasher: ahash::RandomState::with_seeds(0xa1a, 0x5eed, 0x1d5, 0x0ff),
            sorted: true,
        }
    }

    /// Alma users added.
    pub fn users(&self) -> usize {
        self.primary.len()
    }

    /// Identifier values held (primary ids included).
    pub fn identifiers(&self) -> usize {
        self.entries.len()
    }

    /// Heap bytes the index holds (its capacity, what the allocator gave).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.arena.capacity()
            + self.primary.capacity() * 4
            + self.internal.capacity() * 8
            + self.types.iter().map(|t| t.capacity() + 24).sum::<usize>()
    }

    /// Adds one Alma user: its primary id, whether its account is
    /// INTERNAL, and its other identifiers `(type, value)`. Empty values
    /// are skipped.
    pub fn add_user<'a>(
        &mut self,
        primary_id: &str,
        internal: bool,
        identifiers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<()> {
        let owner = u32::try_from(self.primary.len())
            .map_err(|_| Error::Limit("more than 4 billion Alma users".into()))?;
        self.primary.push(u32::MAX);
        if self.internal.len() * 64 <= owner as usize {
            self.internal.push(0);
        }
        if internal {
            self.internal[owner as usize / 64] |= 1 << (owner % 64);
        }
        if let Some(pos) = self.push_value(PRIMARY, primary_id, owner)? {
            self.primary[owner as usize] = pos;
        }
        for (t, v) in identifiers {
            self.push_value(t, v, owner)?;
        }
        Ok(())
    }

    fn type_index(&mut self, t: &str) -> Result<u16> {
        if let Some(i) = self.types.iter().position(|x| x == t) {
            return Ok(i as u16);
        }
        let i = u16::try_from(self.types.len()).map_err(|_| {
            Error::Limit("more than 65,535 identifier types in Alma's export".into())
        })?;
        self.types.push(t.to_string());
        Ok(i)
    }

    fn push_value(&mut self, id_type: &str, value: &str, owner: u32) -> Result<Option<u32>> {
        let v = value.trim();
        if v.is_empty() || v.len() > MAX_VALUE_BYTES {
            return Ok(None);
        }
        let t = self.type_index(id_type.trim())?;
        let pos = u32::try_from(self.arena.len())
            .map_err(|_| Error::Limit("Alma's identifiers exceed 4 GiB".into()))?;
        self.arena.extend_from_slice(&t.to_le_bytes());
        self.arena
            .extend_from_slice(&(v.len() as u16).to_le_bytes());
        self.arena.extend_from_slice(v.as_bytes());
        let mut folded = String::new();
        fold_into(v, &mut folded);
        let hash = self.hasher.hash_one(folded.as_bytes());
        self.entries.push(Entry { hash, pos, owner });
        self.sorted = false;
        Ok(Some(pos))
    }

    /// Sorts the entries for lookups and gives back spare capacity; call
    /// once after the last [`AlmaIndex::add_user`].
    pub fn finish(&mut self) {
        self.entries.sort_unstable_by_key(|e| (e.hash, e.pos));
        self.entries.shrink_to_fit();
        self.arena.shrink_to_fit();
        self.primary.shrink_to_fit();
        self.internal.shrink_to_fit();
        self.sorted = true;
    }

    fn stored(&self, pos: u32) -> (&str, &str) {
        let p = pos as usize;
        let t = u16::from_le_bytes([self.arena[p], self.arena[p + 1]]) as usize;
        let len = u16::from_le_bytes([self.arena[p + 2], self.arena[p + 3]]) as usize;
        let bytes = &self.arena[p + 4..p + 4 + len];
        // Stored from a &str, so always UTF-8.
        let v = std::str::from_utf8(bytes).unwrap_or_default();
        (&self.types[t], v)
    }

    /// The primary id of Alma user `owner`, for messages.
    fn primary_of(&self, owner: u32) -> &str {
        match self.primary[owner as usize] {
            u32::MAX => "(none)",
            pos => self.stored(pos).1,
        }
    }

    /// Whether two Alma entries are one user: the same owner, or the same
    /// primary id (a user exported twice, in overlapping exports).
    fn same_user(&self, a: u32, b: u32) -> bool {
        if a == b {
            return true;
        }
        let (pa, pb) = (self.primary[a as usize], self.primary[b as usize]);
        if pa == u32::MAX || pb == u32::MAX {
            return false;
        }
        let (x, y) = (self.stored(pa).1, self.stored(pb).1);
        x.eq_ignore_ascii_case(y) || crate::map::fold(x) == crate::map::fold(y)
    }

    fn is_internal(&self, owner: u32) -> bool {
        self.internal[owner as usize / 64] & (1 << (owner % 64)) != 0
    }

    /// Every Alma holder of `value` (as Alma compares it with `case`;
    /// `primary` says whether the value is a primary id), calling `f` on
    /// each until it returns true.
    fn each_holder(
        &self,
        value: &str,
        primary: bool,
        case: IdentifierCase,
        folded: &mut String,
        mut f: impl FnMut(Hit<'_>) -> bool,
    ) -> bool {
        debug_assert!(self.sorted, "AlmaIndex::finish not called");
        let v = value.trim();
        if v.is_empty() {
            return false;
        }
        folded.clear();
        fold_into(v, folded);
        let h = self.hasher.hash_one(folded.as_bytes());
        let start = self.entries.partition_point(|e| e.hash < h);
        for e in self.entries[start..].iter().take_while(|e| e.hash == h) {
            let (t, stored) = self.stored(e.pos);
            let same = if stored.is_ascii() && folded.is_ascii() {
                stored.eq_ignore_ascii_case(folded)
            } else {
                crate::map::fold(stored) == *folded
            };
            // Alma institutions that compare additional identifiers
            // case-sensitively still fold primary ids, and any primary
            // versus additional comparison (as `dedupe` does).
            let exact_needed = case == IdentifierCase::Sensitive && !primary && t != PRIMARY;
            if same
                && (!exact_needed || stored == v)
                && f(Hit {
                    owner: e.owner,
                    id_type: t,
                })
            {
                return true;
            }
        }
        false
    }

    /// The pre-check of one user about to be written, given its
    /// identifiers as `(id_type, value, is_primary)` (the run's claim
    /// triples) and the identifier type Alma matches on (`primary_id` or
    /// an `id_type`):
    ///
    /// * the match value finds an INTERNAL Alma account → `internal_in_alma`;
    /// * any value is held by an Alma user other than the one the match
    ///   value finds → `taken_in_alma`, naming the identifier type and
    ///   that user's primary id;
    /// * otherwise (a new user, or the same external user) → `Ok`.
    pub fn check<'a, I>(
        &self,
        values: I,
        match_id: &str,
        case: IdentifierCase,
    ) -> std::result::Result<(), Fail>
    where
        I: IntoIterator<Item = (&'a str, &'a str, bool)>,
        I::IntoIter: Clone,
    {
        let values = values.into_iter();
        let mut folded = String::new();
        let mut matched: Option<u32> = None;
        let match_primary = match_id == PRIMARY;
        let mine = values.clone().find(|&(t, v, p)| {
            !v.trim().is_empty()
                && if match_primary {
                    p
                } else {
                    !p && t == match_id
                }
        });
        if let Some((_, v, p)) = mine {
            // The same user in two export files (a full export and a
            // later delta): the one added last, the newest, is Alma's.
            self.each_holder(v, p, case, &mut folded, |hit| {
                if hit.id_type == match_id {
                    matched = Some(hit.owner);
                }
                false
            });
        }
        if let (Some(owner), Some((_, v, _))) = (matched, mine) {
            if self.is_internal(owner) {
                return Err(Fail::new(
                    Reason::InternalInAlma,
                    match_id,
                    format!(
                        "the match identifier ({match_id} {}) finds Alma user {}, an internal \
                         account; Alma would reject it (\"User is not external\"): make the \
                         account External in Alma, then reload",
                        v.trim(),
                        self.primary_of(owner)
                    ),
                ));
            }
        }
        for (t, v, p) in values {
            let mut taken: Option<(u32, String)> = None;
            self.each_holder(v, p, case, &mut folded, |hit| {
                if matched.is_some_and(|m| self.same_user(m, hit.owner)) {
                    return false;
                }
                taken = Some((hit.owner, hit.id_type.to_string()));
                true
            });
            if let Some((owner, as_type)) = taken {
                return Err(Fail::new(
                    Reason::TakenInAlma,
                    t,
                    format!(
                        "identifier of type {t} and value {} is already held in Alma by user {} \
                         (as its {as_type}); Alma would reject it (\"already taken \
                         AcrossInstitution\")",
                        v.trim(),
                        self.primary_of(owner)
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> AlmaIndex {
        let mut ix = AlmaIndex::new();
        ix.add_user("S1", false, [("BARCODE", "B1"), ("UNIV_ID", "U1")])
            .unwrap();
        ix.add_user("STAFF9", true, [("BARCODE", "B9")]).unwrap();
        ix.add_user("ÄX", false, [("BARCODE", "abc")]).unwrap();
        ix.finish();
        ix
    }

    fn user<'a>(p: &'a str, ids: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a str, bool)> {
        std::iter::once((PRIMARY, p, true))
            .chain(ids.iter().map(|&(t, v)| (t, v, false)))
            .collect()
    }

    #[test]
    fn same_external_user_passes_and_new_user_passes() {
        let ix = index();
        let ins = IdentifierCase::Insensitive;
        assert!(ix
            .check(user(" s1 ", &[("BARCODE", "b1")]), PRIMARY, ins)
            .is_ok());
        assert!(ix
            .check(user("NEW", &[("BARCODE", "B2")]), PRIMARY, ins)
            .is_ok());
    }

    #[test]
    fn taken_by_another_alma_user() {
        let ix = index();
        let f = ix
            .check(
                user("NEW", &[("BARCODE", "b9")]),
                PRIMARY,
                IdentifierCase::Insensitive,
            )
            .unwrap_err();
        assert_eq!(
            (f.reason, f.field.as_str()),
            (Reason::TakenInAlma, "BARCODE")
        );
        assert!(f.message.contains("user STAFF9"), "{}", f.message);
        // Across types: our UNIV_ID is S1's primary id.
        let f = ix
            .check(
                user("NEW", &[("UNIV_ID", "s1")]),
                PRIMARY,
                IdentifierCase::Insensitive,
            )
            .unwrap_err();
        assert!(f.message.contains("as its primary_id"), "{}", f.message);
        // Unicode folding as dedupe folds.
        assert!(ix
            .check(user("äx", &[]), PRIMARY, IdentifierCase::Insensitive)
            .is_ok());
        assert!(ix
            .check(
                user("äX", &[("X", "S1")]),
                PRIMARY,
                IdentifierCase::Insensitive
            )
            .is_err());
    }

    #[test]
    fn internal_match() {
        let ix = index();
        let f = ix
            .check(user("staff9", &[]), PRIMARY, IdentifierCase::Insensitive)
            .unwrap_err();
        assert_eq!(f.reason, Reason::InternalInAlma);
        // Matching on another type: the UNIV_ID finds S1, external, and
        // OTHER is held by no one.
        assert!(ix
            .check(
                user("OTHER", &[("UNIV_ID", "U1")]),
                "UNIV_ID",
                IdentifierCase::Insensitive
            )
            .is_ok());
    }

    #[test]
    fn match_on_identifier_type() {
        let ix = index();
        // Matched by UNIV_ID to S1; its primary id differs but S1 is the
        // matched user, so nothing of S1's counts as taken.
        assert!(ix
            .check(
                user("S1", &[("UNIV_ID", "u1"), ("BARCODE", "B1")]),
                "UNIV_ID",
                IdentifierCase::Insensitive
            )
            .is_ok());
        // Not matched (no UNIV_ID): S1's primary id is taken.
        let f = ix
            .check(user("S1", &[]), "UNIV_ID", IdentifierCase::Insensitive)
            .unwrap_err();
        assert_eq!(f.reason, Reason::TakenInAlma);
    }

    #[test]
    fn case_sensitive_additional_identifiers() {
        let ix = index();
        let s = IdentifierCase::Sensitive;
        assert!(ix
            .check(user("N", &[("BARCODE", "ABC")]), PRIMARY, s)
            .is_ok());
        assert!(ix
            .check(user("N", &[("BARCODE", "abc")]), PRIMARY, s)
            .is_err());
        // Primary against additional: folded.
        assert!(ix.check(user("Abc", &[]), PRIMARY, s).is_err());
    }

    #[test]
    fn a_user_in_two_exports_is_one_user_and_the_later_one_counts() {
        let mut ix = AlmaIndex::new();
        // Full export: internal; a later delta: made External.
        ix.add_user("P1", true, [("BARCODE", "B1")]).unwrap();
        ix.add_user("p1", false, [("BARCODE", "B1")]).unwrap();
        ix.finish();
        let ins = IdentifierCase::Insensitive;
        assert!(ix
            .check(user("P1", &[("BARCODE", "b1")]), PRIMARY, ins)
            .is_ok());
        // Another user still may not take the barcode.
        assert!(ix
            .check(user("P2", &[("BARCODE", "B1")]), PRIMARY, ins)
            .is_err());
        let mut ix = AlmaIndex::new();
        ix.add_user("P1", false, []).unwrap();
        ix.add_user("P1", true, []).unwrap();
        ix.finish();
        let f = ix.check(user("P1", &[]), PRIMARY, ins).unwrap_err();
        assert_eq!(f.reason, Reason::InternalInAlma);
    }

    #[test]
    fn compact() {
        let mut ix = AlmaIndex::new();
        for i in 0..10_000 {
            let (p, b) = (format!("P{i:07}"), format!("2123400{i:07}"));
            ix.add_user(&p, i % 10 == 0, [("BARCODE", b.as_str())])
                .unwrap();
        }
        ix.finish();
        assert_eq!(ix.identifiers(), 20_000);
        let per = ix.heap_bytes() / ix.identifiers();
        assert!(per <= 64, "{per} bytes per identifier");
    }
}
