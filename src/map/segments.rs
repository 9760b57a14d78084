//! [`Mapper::map`] by segment kind: fields, addresses, emails, phones,
//! identifiers, statistics and notes, each added to the user in turn.

use std::borrow::Cow;

use chrono::NaiveDate;

use super::{fold, rules, take_preferred, Mapper, MatchId, Rec};

/// Whether two identifier values are the same once [`fold`]ed, without
/// allocating for the usual ASCII values.
fn same_folded(a: &str, b: &str) -> bool {
    let (a, b) = (rules::trim(a), rules::trim(b));
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        fold(a) == fold(b)
    }
}
use crate::model::{
    Address, AddressPart, Email, Identifier, Note, Phone, Statistic, User, UserField,
};
use crate::report::{Fail, MapStats, Reason};

impl Mapper {
    /// The user's plain and date fields, sorted by field; returns the
    /// dates, which later dates (and address dates) may be relative to.
    #[inline]
    pub(super) fn map_fields<'a>(
        &'a self,
        user: &mut User<'a>,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<Vec<(UserField, NaiveDate)>, Fail> {
        let mut dates: Vec<(UserField, NaiveDate)> = Vec::new();
        for (f, g) in &self.fields {
            let value = if f.is_date() {
                let d = self.date(g, rec, stats, user.get(UserField::UserGroup), &dates)?;
                match d {
                    Some(d) => {
                        dates.push((*f, d));
                        Cow::Owned(rules::format_date(d))
                    }
                    None => Cow::Borrowed(""),
                }
            } else {
                self.value(g, rec, stats)?
            };
            if !value.is_empty() {
                user.fields.push((*f, value));
            }
        }
        user.fields.sort_by_key(|(f, _)| *f);
        Ok(dates)
    }

    /// Fails the record when a mandatory field is empty.
    #[inline]
    pub(super) fn check_mandatory(&self, user: &User<'_>) -> Result<(), Fail> {
        for f in &self.mandatory {
            if user.get(*f).is_none() {
                return Err(Fail::new(
                    Reason::MissingField,
                    f.name(),
                    format!("mandatory field `{}` is empty", f.name()),
                ));
            }
        }
        Ok(())
    }

    /// The addresses present in the record, complete ones kept.
    #[inline]
    pub(super) fn map_addresses<'a>(
        &'a self,
        user: &mut User<'a>,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
        dates: &[(UserField, NaiveDate)],
    ) -> Result<(), Fail> {
        let mut preferred = false;
        for a in &self.addresses {
            // No street and no city: the record has no such address, and
            // nothing else of it is looked at (so a stray code in an absent
            // address cannot reject the record).
            let mut present = false;
            for (part, g) in &a.parts {
                if matches!(part, AddressPart::Line1 | AddressPart::City) {
                    let raw = self.raw(&g.source, rec);
                    present |= if rec.covers(&g.source) {
                        !rules::is_blank(&raw)
                    } else {
                        !rules::strip_forbidden(&raw).0.trim().is_empty()
                    };
                }
            }
            if !present {
                continue;
            }
            let mut addr = Address::default();
            let group = user.get(UserField::UserGroup);
            for (part, g) in &a.parts {
                let v = if part.is_date() {
                    match self.date(g, rec, stats, group, dates)? {
                        Some(d) => Cow::Owned(rules::format_date(d)),
                        None => Cow::Borrowed(""),
                    }
                } else {
                    self.value(g, rec, stats)?
                };
                if !v.is_empty() {
                    addr.parts.push((*part, v));
                }
            }
            addr.types = self.type_codes(&a.types, rec, stats)?;
            let has = |p| addr.parts.iter().any(|(q, _)| *q == p);
            if !has(AddressPart::Line1) || !has(AddressPart::City) || addr.types.is_empty() {
                stats.drop_segment("address_incomplete");
                continue;
            }
            addr.preferred = take_preferred(a.preferred, &mut preferred);
            user.addresses.push(addr);
        }
        Ok(())
    }

    /// The emails with an address; those without a type are dropped.
    #[inline]
    pub(super) fn map_emails<'a>(
        &'a self,
        user: &mut User<'a>,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<(), Fail> {
        let mut preferred = false;
        for e in &self.emails {
            let address = self.value(&e.address, rec, stats)?;
            if address.is_empty() {
                continue;
            }
            let types = self.type_codes(&e.types, rec, stats)?;
            if types.is_empty() {
                stats.drop_segment("email_incomplete");
                continue;
            }
            let description = match &e.description {
                Some(g) => Some(self.value(g, rec, stats)?).filter(|s| !s.is_empty()),
                None => None,
            };
            let pref = take_preferred(e.preferred, &mut preferred);
            user.emails.push(Email {
                preferred: pref,
                address,
                description,
                types,
            });
        }
        Ok(())
    }

    /// The phones with a number; those without a type are dropped.
    #[inline]
    pub(super) fn map_phones<'a>(
        &'a self,
        user: &mut User<'a>,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<(), Fail> {
        let (mut preferred, mut sms) = (false, false);
        for p in &self.phones {
            let number = self.value(&p.number, rec, stats)?;
            if number.is_empty() {
                continue;
            }
            let types = self.type_codes(&p.types, rec, stats)?;
            if types.is_empty() {
                stats.drop_segment("phone_incomplete");
                continue;
            }
            let pref = take_preferred(p.preferred, &mut preferred);
            let psms = take_preferred(p.preferred_sms, &mut sms);
            user.phones.push(Phone {
                preferred: pref,
                preferred_sms: psms,
                number,
                types,
            });
        }
        Ok(())
    }

    /// The identifiers, each value once per user; fails the record when
    /// the match identifier is missing.
    #[inline]
    pub(super) fn map_identifiers<'a>(
        &'a self,
        user: &mut User<'a>,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<(), Fail> {
        // Within one user every identifier value must differ from the
        // primary id and from each other (Alma rejects the user otherwise,
        // even for the same person); we drop the repeat instead, and
        // compare case-insensitively whatever the run-wide setting, since
        // that is the stricter reading.
        let primary = user
            .fields
            .iter()
            .find(|(f, _)| *f == UserField::PrimaryId)
            .map(|(_, v)| v.clone());
        for s in &self.identifiers {
            let value = self.value(&s.value, rec, stats)?;
            if value.is_empty() {
                stats.drop_segment("identifier_empty");
                continue;
            }
            let seen = primary
                .iter()
                .chain(user.identifiers.iter().map(|i| &i.value));
            if seen.clone().any(|k| same_folded(k, &value)) {
                stats.drop_segment("identifier_repeated_in_user");
                continue;
            }
            let note = match &s.note {
                Some(g) => Some(self.value(g, rec, stats)?).filter(|s| !s.is_empty()),
                None => None,
            };
            user.identifiers.push(Identifier {
                id_type: Cow::Borrowed(&s.id_type),
                value,
                note,
                status: Cow::Borrowed(&s.status),
            });
        }
        if let MatchId::IdType(t) = &self.match_id {
            if !user.identifiers.iter().any(|i| &i.id_type == t) {
                return Err(Fail::new(
                    Reason::MissingMatchId,
                    format!("identifiers[{t}]"),
                    format!(
                        "the match identifier {t} is missing (empty, or equal to another identifier of the user)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The statistics with a category.
    #[inline]
    pub(super) fn map_statistics<'a>(
        &'a self,
        user: &mut User<'a>,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<(), Fail> {
        for s in &self.statistics {
            let category = self.value(&s.category, rec, stats)?;
            let note = match &s.note {
                Some(g) => Some(self.value(g, rec, stats)?).filter(|s| !s.is_empty()),
                None => None,
            };
            let category_type = match &s.category_type {
                Some(g) => Some(self.value(g, rec, stats)?).filter(|s| !s.is_empty()),
                None => None,
            };
            if category.is_empty() {
                if note.is_some() || category_type.is_some() {
                    stats.drop_segment("statistic_incomplete");
                }
                continue;
            }
            user.statistics.push(Statistic {
                category,
                category_type,
                note,
            });
        }
        Ok(())
    }

    /// The notes with text.
    #[inline]
    pub(super) fn map_notes<'a>(
        &'a self,
        user: &mut User<'a>,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<(), Fail> {
        for n in &self.notes {
            let text = self.value(&n.text, rec, stats)?;
            if text.is_empty() {
                continue;
            }
            user.notes.push(Note {
                note_type: Cow::Borrowed(&n.note_type),
                text,
                user_viewable: n.user_viewable,
                popup_note: n.popup_note,
            });
        }
        Ok(())
    }
}
