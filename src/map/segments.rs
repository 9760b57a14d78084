//! [`Mapper::map`] by segment kind: fields, addresses, emails, phones,
//! identifiers, statistics and notes, each added to the user in turn.

use chrono::NaiveDate;

use super::{fold, rules, take_preferred, Mapper, MatchId};
use crate::model::{
    Address, AddressPart, Email, Identifier, Note, Phone, Statistic, User, UserField,
};
use crate::report::{Fail, MapStats, Reason};

impl Mapper {
    /// The user's plain and date fields, sorted by field; returns the
    /// dates, which later dates (and address dates) may be relative to.
    #[inline]
    pub(super) fn map_fields(
        &self,
        user: &mut User,
        rec: &[&str],
        stats: &mut MapStats,
    ) -> Result<Vec<(UserField, NaiveDate)>, Fail> {
        let mut dates: Vec<(UserField, NaiveDate)> = Vec::new();
        for (f, g) in &self.fields {
            let value = if f.is_date() {
                let d = self.date(g, rec, stats, user.get(UserField::UserGroup), &dates)?;
                match d {
                    Some(d) => {
                        dates.push((*f, d));
                        rules::format_date(d)
                    }
                    None => String::new(),
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
    pub(super) fn check_mandatory(&self, user: &User) -> Result<(), Fail> {
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
    pub(super) fn map_addresses(
        &self,
        user: &mut User,
        rec: &[&str],
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
                    present |= !rules::strip_forbidden(&raw).0.trim().is_empty();
                }
            }
            if !present {
                continue;
            }
            let mut addr = Address::default();
            let group = user.get(UserField::UserGroup);
            for (part, g) in &a.parts {
                let v = if part.is_date() {
                    self.date(g, rec, stats, group, dates)?
                        .map(rules::format_date)
                        .unwrap_or_default()
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
    pub(super) fn map_emails(
        &self,
        user: &mut User,
        rec: &[&str],
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
    pub(super) fn map_phones(
        &self,
        user: &mut User,
        rec: &[&str],
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
    pub(super) fn map_identifiers(
        &self,
        user: &mut User,
        rec: &[&str],
        stats: &mut MapStats,
    ) -> Result<(), Fail> {
        // Within one user every identifier value must differ from the
        // primary id and from each other (Alma rejects the user otherwise,
        // even for the same person); we drop the repeat instead, and
        // compare case-insensitively whatever the run-wide setting, since
        // that is the stricter reading.
        let mut seen: Vec<String> = user
            .get(UserField::PrimaryId)
            .map(fold)
            .into_iter()
            .collect();
        for s in &self.identifiers {
            let value = self.value(&s.value, rec, stats)?;
            if value.is_empty() {
                stats.drop_segment("identifier_empty");
                continue;
            }
            let key = fold(&value);
            if seen.contains(&key) {
                stats.drop_segment("identifier_repeated_in_user");
                continue;
            }
            seen.push(key);
            let note = match &s.note {
                Some(g) => Some(self.value(g, rec, stats)?).filter(|s| !s.is_empty()),
                None => None,
            };
            user.identifiers.push(Identifier {
                id_type: s.id_type.clone(),
                value,
                note,
                status: s.status.clone(),
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
    pub(super) fn map_statistics(
        &self,
        user: &mut User,
        rec: &[&str],
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
    pub(super) fn map_notes(
        &self,
        user: &mut User,
        rec: &[&str],
        stats: &mut MapStats,
    ) -> Result<(), Fail> {
        for n in &self.notes {
            let text = self.value(&n.text, rec, stats)?;
            if text.is_empty() {
                continue;
            }
            user.notes.push(Note {
                note_type: n.note_type.clone(),
                text,
                user_viewable: n.user_viewable,
                popup_note: n.popup_note,
            });
        }
        Ok(())
    }
}
