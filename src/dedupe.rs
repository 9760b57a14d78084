//! Institution-wide identifier uniqueness, exactly as Alma applies it.
//!
//! Alma rejects a user any of whose identifiers (primary or additional, of
//! any type) is already held by another user, and in one feed the first
//! instance wins. [`IdSet::claim`] is that rule run in input order: a
//! record claims all its values at once or none of them, so a record that
//! loses one value does not block later records with its others (the
//! "chain" case). The parallel engine must reproduce these decisions
//! exactly; this sequential form is the reference.

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

/// One claimed value: where its bytes are in the arena and who holds it.
/// Kept to 16 bytes because a run holds one per identifier of every user
/// (ten million for five million patrons).
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Arena offset (low 40 bits) and byte length (high 24 bits). A value
    /// of 16 MiB or more (only `check` can meet one) has [`LEN_LONG`]
    /// here and its length in 8 bytes before its bytes.
    pos: u64,
    owner: u32,
    id_type: u16,
    space: Space,
}

const START_BITS: u32 = 40;
const START_MASK: u64 = (1 << START_BITS) - 1;
const LEN_LONG: u64 = (1 << (64 - START_BITS)) - 1;

impl Slot {
    fn range(&self, arena: &[u8]) -> std::ops::Range<usize> {
        let start = (self.pos & START_MASK) as usize;
        match self.pos >> START_BITS {
            LEN_LONG => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&arena[start..start + 8]);
                start + 8..start + 8 + u64::from_le_bytes(n) as usize
            }
            len => start..start + len as usize,
        }
    }
}

/// Who holds a value, packed to 12 bytes (one per claiming record).
#[derive(Debug, Clone, Copy)]
struct PackedOwner([u32; 3]);

impl PackedOwner {
    fn new(o: Owner) -> PackedOwner {
        PackedOwner([o.file, o.line as u32, (o.line >> 32) as u32])
    }

    fn get(self) -> Owner {
        Owner {
            file: self.0[0],
            line: u64::from(self.0[1]) | (u64::from(self.0[2]) << 32),
        }
    }
}

/// The set of identifier values claimed so far in a run.
///
/// Values live once, back to back, in one byte arena; the hash table
/// holds only 4-byte slot numbers and compares real bytes, so a lookup is
/// exact, not a hash guess, at a fraction of the memory of a
/// `HashMap<String, _>` (measured: 1M patrons went from 413 MB to about
/// 100 MB for this structure, then to about 75 MB with 16-byte slots and
/// 12-byte owners).
pub struct IdSet {
    case: IdentifierCase,
    table: hashbrown::HashTable<u32>,
    slots: Vec<Slot>,
    arena: Vec<u8>,
    owners: Vec<PackedOwner>,
    hasher: ahash::RandomState,
    /// Identifier type names, interned so slots stay small.
    types: Vec<String>,
    /// Keys of the record being claimed, back to back, and what to insert
    /// once all are known free: reused so a claim allocates nothing.
    scratch: String,
    pending: Vec<(u16, Space, usize, usize)>,
}

impl std::fmt::Debug for IdSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdSet")
            .field("values", &self.slots.len())
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

/// [`key_hash`] of a stored value, for the table when it grows.
fn slot_hash(hasher: &ahash::RandomState, s: &Slot, arena: &[u8]) -> u64 {
    key_hash(hasher, s.space, &arena[s.range(arena)])
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
    /// An empty set comparing values per `case`.
    pub fn new(case: IdentifierCase) -> IdSet {
        IdSet {
            case,
            table: hashbrown::HashTable::new(),
            slots: Vec::new(),
            arena: Vec::new(),
            owners: Vec::new(),
            // Fixed seeds: the hash decides only the table layout, never an
            // outcome, but a fixed layout makes runs easier to compare.
            hasher: ahash::RandomState::with_seeds(0x5eed, 0xa17a, 0x1d5, 0x7ab1e),
            types: vec!["primary_id".into()],
            scratch: String::new(),
            pending: Vec::new(),
        }
    }

    /// How this set compares values.
    pub fn case(&self) -> IdentifierCase {
        self.case
    }

    /// Makes room for about `values` more values of `bytes` bytes in all
    /// from `records` more records, so a large run neither rehashes nor
    /// regrows as it fills.
    pub fn reserve(&mut self, records: usize, values: usize, bytes: usize) {
        let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
        self.table
            .reserve(values, |&j| slot_hash(hasher, &slots[j as usize], arena));
        self.slots.reserve(values);
        self.arena.reserve(bytes);
        self.owners.reserve(records);
    }

    fn hash(&self, space: Space, key: &[u8]) -> u64 {
        key_hash(&self.hasher, space, key)
    }

    fn find(&self, space: Space, key: &str) -> Option<&Slot> {
        let key = key.as_bytes();
        let h = self.hash(space, key);
        let (slots, arena) = (&self.slots, &self.arena);
        self.table
            .find(h, |&i| {
                let s = &slots[i as usize];
                s.space == space && &arena[s.range(arena)] == key
            })
            .map(|&i| &self.slots[i as usize])
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
            let owner_idx = self.owners.len() as u32;
            self.owners.push(PackedOwner::new(owner));
            for &(id_type, space, a, b) in &pending {
                self.insert(id_type, space, &scratch[a..b], owner_idx);
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
            if let Some(slot) = hit {
                return Err(Conflict {
                    id_type: id_type.to_string(),
                    value: value.trim().to_string(),
                    owner: self.owners[slot.owner as usize].get(),
                    owner_id_type: self.types[slot.id_type as usize].clone(),
                });
            }
        }
        Ok(())
    }

    fn insert(&mut self, id_type: u16, space: Space, key: &str, owner: u32) {
        let start = self.arena.len() as u64;
        // A terabyte of identifier bytes cannot be allocated on the
        // machines this runs on; the check keeps a bad offset impossible.
        assert!(start <= START_MASK, "identifier arena past 1 TiB");
        let len = key.len() as u64;
        let pos = if len < LEN_LONG {
            start | (len << START_BITS)
        } else {
            self.arena.extend_from_slice(&len.to_le_bytes());
            start | (LEN_LONG << START_BITS)
        };
        self.arena.extend_from_slice(key.as_bytes());
        let h = self.hash(space, key.as_bytes());
        let i = self.slots.len() as u32;
        self.slots.push(Slot {
            pos,
            owner,
            id_type,
            space,
        });
        let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
        self.table
            .insert_unique(h, i, |&j| slot_hash(hasher, &slots[j as usize], arena));
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
                s.reserve(1000, 3000, 30_000);
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
