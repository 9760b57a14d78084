//! Institution-wide identifier uniqueness, exactly as Alma applies it.
//!
//! Alma rejects a user any of whose identifiers (primary or additional, of
//! any type) is already held by another user, and in one feed the first
//! instance wins. [`IdSet::claim`] is that rule run in input order: a
//! record claims all its values at once or none of them, so a record that
//! loses one value does not block later records with its others (the
//! "chain" case). The parallel engine must reproduce these decisions
//! exactly; this sequential form is the reference.

use ahash::AHashMap;

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

/// A value as stored: its comparison space and its compared form.
type Key = (Space, String);

/// The set of identifier values claimed so far in a run.
#[derive(Debug, Default)]
pub struct IdSet {
    case: IdentifierCase,
    owners: AHashMap<Key, (Owner, u32)>,
    /// Identifier type names, interned so entries stay small.
    types: Vec<String>,
}

impl IdSet {
    /// An empty set comparing values per `case`.
    pub fn new(case: IdentifierCase) -> IdSet {
        IdSet {
            case,
            owners: AHashMap::new(),
            types: vec!["primary_id".into()],
        }
    }

    /// The (space, key) pairs a value is looked up under, and those it is
    /// inserted as.
    fn keys(&self, value: &str, primary: bool) -> (Vec<Key>, Vec<Key>) {
        let folded = crate::map::fold(value);
        match (self.case, primary) {
            (IdentifierCase::Insensitive, _) => (
                vec![(Space::Folded, folded.clone())],
                vec![(Space::Folded, folded)],
            ),
            (IdentifierCase::Sensitive, true) => (
                vec![
                    (Space::Folded, folded.clone()),
                    (Space::FoldedAdditional, folded.clone()),
                ],
                vec![(Space::Folded, folded)],
            ),
            (IdentifierCase::Sensitive, false) => {
                let exact = value.trim().to_string();
                (
                    vec![
                        (Space::Exact, exact.clone()),
                        (Space::Folded, folded.clone()),
                    ],
                    vec![(Space::Exact, exact), (Space::FoldedAdditional, folded)],
                )
            }
        }
    }

    fn intern(&mut self, t: &str) -> u32 {
        match self.types.iter().position(|x| x == t) {
            Some(i) => i as u32,
            None => {
                self.types.push(t.to_string());
                (self.types.len() - 1) as u32
            }
        }
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
        let mut inserts = Vec::new();
        for (id_type, value, primary) in values {
            let (lookups, ins) = self.keys(value, primary);
            for k in &lookups {
                if let Some(&(owner, t)) = self.owners.get(k) {
                    return Err(Conflict {
                        id_type: id_type.to_string(),
                        value: value.trim().to_string(),
                        owner,
                        owner_id_type: self.types[t as usize].clone(),
                    });
                }
            }
            inserts.push((id_type, ins));
        }
        for (id_type, ins) in inserts {
            let t = self.intern(id_type);
            for k in ins {
                self.owners.insert(k, (owner, t));
            }
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
