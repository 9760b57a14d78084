//! What the first pass of a job keeps per record, compactly: person keys
//! (each distinct key stored once), identifier values, and the material
//! a winner merges from the records it supersedes; and what each step of
//! the job hands the next.

use std::collections::HashMap;

use super::decide::Rule;
use crate::error::{Error, Result};
use crate::model::{Email, Identifier, Phone, User};
use crate::report::{Fail, MapStats};

use super::stream::*;

/// A superseded record's identifiers, emails and phones, kept for the
/// winner that merges them.
pub(super) struct Material {
    pub(super) line: u64,
    pub(super) identifiers: Vec<Identifier<'static>>,
    pub(super) emails: Vec<Email<'static>>,
    pub(super) phones: Vec<Phone<'static>>,
}

impl Material {
    pub(super) fn of(user: User<'_>, line: u64) -> Material {
        let user = user.into_owned();
        Material {
            line,
            identifiers: user.identifiers,
            emails: user.emails,
            phones: user.phones,
        }
    }
}

/// First-pass result of one chunk: per record, whether it mapped, and if
/// so its key and identifier values as ranges of one text buffer.
#[derive(Default)]
pub(super) struct KeyChunk {
    pub(super) items: Vec<KeyItem>,
    pub(super) text: String,
    /// `(type, start, end, is_primary)`; types index `types`.
    pub(super) ids: Vec<(u16, usize, usize, bool)>,
    pub(super) types: Vec<String>,
}

pub(super) enum KeyItem {
    Rejected,
    Mapped {
        key: Option<(usize, usize)>,
        rank: u32,
        ids_end: usize,
    },
}

/// Person keys, each stored once, numbered in order of first appearance.
pub(super) struct People {
    pub(super) table: hashbrown::HashTable<u32>,
    pub(super) ends: Vec<usize>,
    pub(super) text: String,
    pub(super) hasher: ahash::RandomState,
}

pub(super) fn key_at<'t>(ends: &[usize], text: &'t str, p: u32) -> &'t str {
    let p = p as usize;
    let start = if p == 0 { 0 } else { ends[p - 1] };
    &text[start..ends[p]]
}

impl People {
    pub(super) fn new() -> People {
        People {
            table: hashbrown::HashTable::new(),
            ends: Vec::new(),
            text: String::new(),
            // The hash decides only the table layout, never an outcome.
            hasher: ahash::RandomState::with_seeds(0x7e0, 0x91e, 0x5eed, 0x0b5),
        }
    }

    pub(super) fn key(&self, p: u32) -> &str {
        key_at(&self.ends, &self.text, p)
    }

    /// The person with `key`, and whether they were seen before.
    pub(super) fn intern(&mut self, key: &str) -> Result<(u32, bool)> {
        let h = self.hasher.hash_one(key);
        let (ends, text) = (&self.ends, &self.text);
        if let Some(&p) = self.table.find(h, |&p| key_at(ends, text, p) == key) {
            return Ok((p, true));
        }
        let p = u32::try_from(self.ends.len())
            .ok()
            .filter(|&p| p != NO_PERSON)
            .ok_or_else(|| Error::Invariant("more than 4 billion people in one job".into()))?;
        self.text.push_str(key);
        self.ends.push(self.text.len());
        let (ends, text, hasher) = (&self.ends, &self.text, &self.hasher);
        self.table
            .insert_unique(h, p, |&q| hasher.hash_one(key_at(ends, text, q)));
        Ok((p, false))
    }
}

/// Every record's identifier values in claim order (primary id first),
/// back to back in one buffer.
#[derive(Default)]
pub(super) struct IdValues {
    pub(super) text: String,
    /// Per value: its end in `text`, its type (index into `types`) and
    /// whether it is the primary id.
    pub(super) values: Vec<(usize, u16, bool)>,
    /// Per record: the end of its values in `values`.
    pub(super) records: Vec<usize>,
    pub(super) types: Vec<String>,
}

impl IdValues {
    /// The values of record `i` (0-based), as `IdSet::claim_values` takes
    /// them.
    pub(super) fn of(&self, i: usize) -> impl Iterator<Item = (&str, &str, bool)> + Clone {
        let a = if i == 0 { 0 } else { self.records[i - 1] };
        (a..self.records[i]).map(move |v| {
            let start = if v == 0 { 0 } else { self.values[v - 1].0 };
            let (end, t, primary) = self.values[v];
            (
                self.types[t as usize].as_str(),
                &self.text[start..end],
                primary,
            )
        })
    }

    pub(super) fn type_index(&mut self, t: &str) -> u16 {
        match self.types.iter().position(|x| x == t) {
            Some(i) => i as u16,
            None => {
                self.types.push(t.to_string());
                (self.types.len() - 1) as u16
            }
        }
    }
}

/// A person seen more than once: record indexes (0-based numbers).
pub(super) struct Person {
    pub(super) winner: usize,
    pub(super) losers: Vec<(usize, Rule)>,
}

/// What a winner took from one superseded record, and what it left.
#[derive(Default)]
pub(super) struct Merge {
    /// Positions in the loser's identifiers of those merged.
    pub(super) ids: Vec<usize>,
    pub(super) took: Vec<String>,
    pub(super) left: Vec<String>,
}

/// What `duplicates.csv` says about one record of a person seen more
/// than once.
pub(super) struct Row {
    pub(super) file: u32,
    pub(super) line: u64,
    /// Physical lines of the record.
    pub(super) lines: u64,
    pub(super) group: String,
    pub(super) primary_id: String,
    /// The match value as the record has it (winners only).
    pub(super) key: String,
}

/// Second-pass result of one chunk.
#[derive(Default)]
pub(super) struct UserChunk {
    pub(super) items: Vec<UserItem>,
    pub(super) xml: Vec<u8>,
    pub(super) groups: Vec<String>,
    pub(super) stats: MapStats,
    /// Fields left out of a record (index in `items`, its report id),
    /// for `warnings.csv`.
    pub(super) warnings: Vec<(usize, String, Vec<Fail>)>,
}

pub(super) enum UserItem {
    Rejected(String, Fail),
    /// A winner of its own: `xml[previous end..end]`, its group.
    Xml(usize, u32),
    /// A winner of its own that lost an identifier: its primary id.
    Taken(String),
    /// A record of a person seen more than once.
    Member(Box<User<'static>>),
    /// Mapped now but not in the first pass.
    Changed,
}

/// What the first pass keeps of every record, indexed by record number
/// less one.
pub(super) struct Keys {
    pub(super) people: People,
    pub(super) seen_twice: Vec<bool>,
    pub(super) person: Vec<u32>,
    pub(super) rank: Vec<u32>,
    pub(super) line: Vec<u64>,
    pub(super) flags: Vec<u8>,
    pub(super) ids: IdValues,
    /// Records read by the end of each input.
    pub(super) file_ends: Vec<usize>,
    pub(super) records_by_source: Vec<u64>,
}

/// The people seen more than once, and who won and lost among them.
pub(super) struct Decided {
    pub(super) persons: Vec<Person>,
    pub(super) winner_of: HashMap<usize, usize>,
    pub(super) person_of: HashMap<usize, usize>,
}

/// What the claims leave for the second pass: the identifiers each
/// record lost, and what each loser's winner merges.
pub(super) struct Claimed {
    pub(super) lost: HashMap<usize, Fail>,
    pub(super) merges: Vec<Vec<Merge>>,
}

/// What the second pass leaves for `duplicates.csv` and the summary.
pub(super) struct Streamed {
    pub(super) parts: Vec<crate::write::package::Finished>,
    pub(super) users_by_source: Vec<u64>,
    pub(super) rows: HashMap<usize, Row>,
}

/// Gives a winner what its superseded records bring, in precedence
/// order: the identifiers planned (and claimed) before the second pass,
/// then emails whose address and phones whose digits it lacks, as
/// non-preferred segments. Emails and phones are listed by kind and line,
/// never by value.
pub(super) fn take_merged(
    user: &mut User<'_>,
    p: &Person,
    merges: &mut [Merge],
    kept: &mut HashMap<usize, Box<Material>>,
) -> Result<()> {
    for (&(l, _), m) in p.losers.iter().zip(merges) {
        let mat = kept.remove(&l).ok_or_else(changed)?;
        let Material {
            line,
            identifiers,
            emails,
            phones,
        } = *mat;
        for &pos in &m.ids {
            user.identifiers
                .push(identifiers.get(pos).cloned().ok_or_else(changed)?);
        }
        for mut e in emails {
            if user
                .emails
                .iter()
                .any(|x| x.address.trim().eq_ignore_ascii_case(e.address.trim()))
            {
                continue;
            }
            e.preferred = false;
            m.took.push(format!("email from line {line}"));
            user.emails.push(e);
        }
        let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
        for mut ph in phones {
            if user
                .phones
                .iter()
                .any(|x| digits(&x.number) == digits(&ph.number))
            {
                continue;
            }
            ph.preferred = false;
            ph.preferred_sms = false;
            m.took.push(format!("phone from line {line}"));
            user.phones.push(ph);
        }
    }
    Ok(())
}
