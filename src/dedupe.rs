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

/// One claimed value: its bytes in the arena and who holds it. Kept to
/// 24 bytes because a run holds one per identifier of every user (two
/// million for a million patrons).
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u64,
    len: u32,
    id_type: u16,
    space: Space,
    owner: u32,
}

/// The set of identifier values claimed so far in a run.
///
/// Values live once, back to back, in one byte arena; the hash table
/// holds only 4-byte slot numbers and compares real bytes, so a lookup is
/// exact, not a hash guess, at a fraction of the memory of a
/// `HashMap<String, _>` (measured: 1M patrons went from 413 MB to about
/// 100 MB for this structure).
pub struct IdSet {
    case: IdentifierCase,
    table: hashbrown::HashTable<u32>,
    slots: Vec<Slot>,
    arena: Vec<u8>,
    owners: Vec<Owner>,
    hasher: ahash::RandomState,
    /// Identifier type names, interned so slots stay small.
    types: Vec<String>,
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
        }
    }

    fn hash(&self, space: Space, key: &str) -> u64 {
        self.hasher.hash_one((space as u8, key))
    }

    fn find(&self, space: Space, key: &str) -> Option<&Slot> {
        let h = self.hash(space, key);
        let (slots, arena) = (&self.slots, &self.arena);
        self.table
            .find(h, |&i| {
                let s = &slots[i as usize];
                s.space == space
                    && &arena[s.start as usize..s.start as usize + s.len as usize] == key.as_bytes()
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
    pub fn claim(&mut self, user: &User, owner: Owner) -> Result<(), Conflict> {
        let primary = user
            .get(UserField::PrimaryId)
            .map(|p| ("primary_id", p, true));
        let others = user
            .identifiers
            .iter()
            .map(|i| (i.id_type.as_str(), i.value.as_str(), false));
        self.claim_values(primary.into_iter().chain(others), owner)
    }

    /// [`IdSet::claim`] over `(id_type, value, is_primary)` triples, so
    /// callers need not keep a whole [`User`] around.
    pub fn claim_values<'a>(
        &mut self,
        values: impl IntoIterator<Item = (&'a str, &'a str, bool)>,
        owner: Owner,
    ) -> Result<(), Conflict> {
        // (id_type, space, key) to insert once every value is known free.
        let mut inserts: Vec<(&str, Space, String)> = Vec::new();
        for (id_type, value, primary) in values {
            let folded = crate::map::fold(value);
            let (hit, exact) = match (self.case, primary) {
                (IdentifierCase::Insensitive, _) => (self.find(Space::Folded, &folded), None),
                (IdentifierCase::Sensitive, true) => (
                    self.find(Space::Folded, &folded)
                        .or_else(|| self.find(Space::FoldedAdditional, &folded)),
                    None,
                ),
                (IdentifierCase::Sensitive, false) => {
                    let exact = value.trim().to_string();
                    let hit = self
                        .find(Space::Exact, &exact)
                        .or_else(|| self.find(Space::Folded, &folded));
                    (hit, Some(exact))
                }
            };
            if let Some(slot) = hit {
                return Err(Conflict {
                    id_type: id_type.to_string(),
                    value: value.trim().to_string(),
                    owner: self.owners[slot.owner as usize],
                    owner_id_type: self.types[slot.id_type as usize].clone(),
                });
            }
            match exact {
                Some(exact) => {
                    inserts.push((id_type, Space::Exact, exact));
                    inserts.push((id_type, Space::FoldedAdditional, folded));
                }
                None => inserts.push((id_type, Space::Folded, folded)),
            }
        }
        let owner_idx = self.owners.len() as u32;
        self.owners.push(owner);
        for (id_type, space, key) in inserts {
            let t = self.intern(id_type);
            // Values are at most 255 characters (longer ones were rejected
            // when mapped), so their length fits easily.
            let (start, len) = (self.arena.len() as u64, key.len() as u32);
            self.arena.extend_from_slice(key.as_bytes());
            let h = self.hash(space, &key);
            let i = self.slots.len() as u32;
            self.slots.push(Slot {
                start,
                len,
                id_type: t,
                space,
                owner: owner_idx,
            });
            let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
            self.table.insert_unique(h, i, |&j| {
                let s = &slots[j as usize];
                let k = &arena[s.start as usize..s.start as usize + s.len as usize];
                // Keys were valid UTF-8 when stored.
                hasher.hash_one((s.space as u8, std::str::from_utf8(k).unwrap_or_default()))
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Identifier;

    fn user(primary: &str, ids: &[(&str, &str)]) -> User {
        User {
            fields: vec![(UserField::PrimaryId, primary.into())],
            identifiers: ids
                .iter()
                .map(|(t, v)| Identifier {
                    id_type: t.to_string(),
                    value: v.to_string(),
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
}
