//! Who represents a person who appears more than once across a job's feeds.
//!
//! Pure bookkeeping over small descriptors, so the rule can be tested on its
//! own and cannot depend on which thread mapped which record: a person's
//! records are ordered by user-group rank, then source order, then input
//! order (the global record number), and the first one wins.

use std::collections::hash_map::Entry;

use ahash::AHashMap;

/// What precedence needs to know about one mapped record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The person key (the match value as Alma compares it), or `None` when
    /// the record has no match value and so stands for itself.
    pub key: Option<String>,
    /// Position of the record's user group in the job's ranking; groups
    /// not ranked share the rank after the last ranked one.
    pub rank: u32,
    /// Index of the record's source in the job file.
    pub source: u16,
    /// Global record number (input order across all sources).
    pub number: u64,
}

/// The rule that put the winner ahead of a loser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// The winner's user group ranks higher.
    UserGroupRank,
    /// Same rank; the winner's source comes first in the job file.
    SourceOrder,
    /// Same rank and source; the winner comes first in the input.
    InputOrder,
}

impl Rule {
    /// The name used in `duplicates.csv` and `summary.json`.
    pub fn code(self) -> &'static str {
        match self {
            Rule::UserGroupRank => "user_group_rank",
            Rule::SourceOrder => "source_order",
            Rule::InputOrder => "input_order",
        }
    }

    fn between(winner: &Candidate, loser: &Candidate) -> Rule {
        if winner.rank != loser.rank {
            Rule::UserGroupRank
        } else if winner.source != loser.source {
            Rule::SourceOrder
        } else {
            Rule::InputOrder
        }
    }
}

/// One person seen more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Index (into the candidates) of the record that represents the
    /// person.
    pub winner: usize,
    /// The other records, best first, each with the rule that ranked the
    /// winner above it.
    pub losers: Vec<(usize, Rule)>,
}

/// The outcome of [`decide()`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// For each candidate, whether it represents its person (also true for
    /// anyone seen once).
    pub represents: Vec<bool>,
    /// Every person seen more than once, in the order of their winners.
    pub people: Vec<Decision>,
}

/// Applies the precedence rule to `cands`, which must be in input order.
pub fn decide(cands: &[Candidate]) -> Decisions {
    let mut groups: AHashMap<&str, Vec<usize>> = AHashMap::new();
    // Keys in order of first appearance, so the decisions come out in a
    // fixed order whatever the hash map's iteration order.
    let mut order: Vec<&str> = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        if let Some(k) = c.key.as_deref() {
            match groups.entry(k) {
                Entry::Occupied(mut e) => e.get_mut().push(i),
                Entry::Vacant(e) => {
                    order.push(k);
                    e.insert(vec![i]);
                }
            }
        }
    }
    let mut represents = vec![true; cands.len()];
    let mut people = Vec::new();
    for k in order {
        let mut members = groups.remove(k).unwrap_or_default();
        if members.len() < 2 {
            continue;
        }
        members.sort_by_key(|&i| (cands[i].rank, cands[i].source, cands[i].number));
        let winner = members[0];
        let losers = members[1..]
            .iter()
            .map(|&l| {
                represents[l] = false;
                (l, Rule::between(&cands[winner], &cands[l]))
            })
            .collect();
        people.push(Decision { winner, losers });
    }
    people.sort_by_key(|d| cands[d.winner].number);
    Decisions { represents, people }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &str, rank: u32, source: u16, number: u64) -> Candidate {
        Candidate {
            key: (!key.is_empty()).then(|| key.to_string()),
            rank,
            source,
            number,
        }
    }

    #[test]
    fn rank_then_source_then_input_order() {
        let cands = [
            c("a", 3, 0, 1), // student, first in input
            c("b", 1, 0, 2),
            c("a", 1, 1, 3), // faculty in the second source: outranks
            c("b", 1, 1, 4), // same rank as 2, later source
            c("a", 1, 1, 5), // same rank and source as 3, later
            c("", 0, 0, 6),  // no key: stands alone
            c("", 0, 0, 7),
        ];
        let d = decide(&cands);
        assert_eq!(
            d.represents,
            [false, true, true, false, false, true, true],
            "{d:?}"
        );
        assert_eq!(
            d.people,
            vec![
                Decision {
                    winner: 1,
                    losers: vec![(3, Rule::SourceOrder)]
                },
                Decision {
                    winner: 2,
                    losers: vec![(4, Rule::InputOrder), (0, Rule::UserGroupRank)]
                },
            ]
        );
    }

    #[test]
    fn nobody_seen_twice_means_no_decisions() {
        let d = decide(&[c("a", 0, 0, 1), c("b", 0, 0, 2)]);
        assert_eq!(d.represents, [true, true]);
        assert!(d.people.is_empty());
    }
}
