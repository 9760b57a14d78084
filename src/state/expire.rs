//! The record that expires a departed patron: the XML last sent, with a
//! new expiry (and purge) date and a note saying since when the patron is
//! missing from the feed.
//!
//! Alma's Synchronize replaces a matched user's external data wholesale,
//! so the whole last-sent record goes again; only the dates and the note
//! change. The edit keeps the schema's element order the writer uses
//! ([`crate::write::xml`]).

use chrono::NaiveDate;
use quick_xml::escape::partial_escape;

use crate::map::rules::DateRule;
use crate::model::UserField;
use crate::profile::Profile;

/// How a departed patron's purge date is set: the profile's
/// `purge_date` rules (by user group, then default), counted from the new
/// expiry date when they refer to it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PurgeRule {
    default: Option<DateRule>,
    by_group: Vec<(String, DateRule)>,
}

impl PurgeRule {
    /// The purge rules of `profile` (none when it sets no purge date or a
    /// rule does not parse; the profile was already checked).
    pub(crate) fn of(profile: &Profile) -> PurgeRule {
        let Some(spec) = profile.fields.get("purge_date") else {
            return PurgeRule::default();
        };
        PurgeRule {
            default: spec
                .default
                .as_deref()
                .and_then(|r| DateRule::parse(r).ok()),
            by_group: spec
                .by_group
                .iter()
                .flatten()
                .filter_map(|(g, r)| Some((g.clone(), DateRule::parse(r).ok()?)))
                .collect(),
        }
    }

    fn apply(&self, group: Option<&str>, as_of: NaiveDate, expiry: NaiveDate) -> Option<NaiveDate> {
        let rule = group
            .and_then(|g| self.by_group.iter().find(|(k, _)| k == g).map(|(_, r)| r))
            .or(self.default.as_ref())?;
        rule.apply(as_of, |f| (f == UserField::ExpiryDate).then_some(expiry))
    }
}

/// The order of `<user>`'s children as the writer emits them.
fn rank(name: &str) -> usize {
    const SEGMENTS: [&str; 4] = [
        "contact_info",
        "user_identifiers",
        "user_notes",
        "user_statistics",
    ];
    let heads = UserField::ALL.iter().filter(|f| !f.is_tail());
    let tails = UserField::ALL.iter().filter(|f| f.is_tail());
    heads
        .map(|f| f.name())
        .chain(SEGMENTS)
        .chain(tails.map(|f| f.name()))
        .position(|n| n == name)
        .unwrap_or(usize::MAX)
}

/// The top-level child element named by a line of the user, if it opens
/// one.
fn top_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("    <")?;
    if rest.starts_with('/') || rest.starts_with(' ') {
        return None;
    }
    let end = rest.find(['>', ' ']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Sets the single-valued top-level element `name` to `value`, replacing
/// it or inserting it at its place in the order.
fn set_field(lines: &mut Vec<String>, name: &str, value: &str) {
    let new = format!("    <{name}>{}</{name}>", partial_escape(value));
    if let Some(i) = lines.iter().position(|l| top_name(l) == Some(name)) {
        lines[i] = new;
        return;
    }
    insert_before_later(lines, rank(name), vec![new]);
}

/// Inserts `block` before the first top-level element ranked after
/// `r`, or before `</user>`.
fn insert_before_later(lines: &mut Vec<String>, r: usize, block: Vec<String>) {
    let at = lines
        .iter()
        .position(|l| top_name(l).is_some_and(|n| rank(n) > r) || l == "  </user>")
        .unwrap_or(lines.len());
    lines.splice(at..at, block);
}

/// The departure record: `xml` (a `<user>` as last sent) with
/// `expiry_date` = `expiry`, `purge_date` per `purge`, and a note of
/// `note_type` saying since when (`as_of`) the patron is missing.
pub(crate) fn expire(
    xml: &str,
    as_of: NaiveDate,
    expiry: NaiveDate,
    purge: &PurgeRule,
    note_type: &str,
) -> String {
    let mut lines: Vec<String> = xml.lines().map(str::to_string).collect();
    let field = |lines: &[String], name: &str| {
        lines.iter().find_map(|l| {
            let open = format!("    <{name}>");
            let close = format!("</{name}>");
            l.strip_prefix(&open)?
                .strip_suffix(&close)
                .map(super::diff::unescape)
        })
    };
    let group = field(&lines, "user_group");
    set_field(
        &mut lines,
        "expiry_date",
        &expiry.format("%Y-%m-%d").to_string(),
    );
    let purge = purge.apply(group.as_deref(), as_of, expiry).or_else(|| {
        // Without a rule, an earlier purge date would purge before expiry.
        let old = field(&lines, "purge_date")?;
        let old = NaiveDate::parse_from_str(&old, "%Y-%m-%d").ok()?;
        (old < expiry).then_some(expiry)
    });
    if let Some(p) = purge {
        set_field(&mut lines, "purge_date", &p.format("%Y-%m-%d").to_string());
    }
    let note = vec![
        "      <user_note segment_type=\"External\">".to_string(),
        format!(
            "        <note_type>{}</note_type>",
            partial_escape(note_type)
        ),
        format!(
            "        <note_text>Not in the SIS feed since {}</note_text>",
            as_of.format("%Y-%m-%d")
        ),
        "        <user_viewable>false</user_viewable>".to_string(),
        "        <popup_note>false</popup_note>".to_string(),
        "      </user_note>".to_string(),
    ];
    match lines.iter().position(|l| l == "    </user_notes>") {
        Some(i) => {
            lines.splice(i..i, note);
        }
        None => {
            let mut block = vec!["    <user_notes>".to_string()];
            block.extend(note);
            block.push("    </user_notes>".to_string());
            insert_before_later(&mut lines, rank("user_notes"), block);
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Note, User};
    use crate::write::xml::write_user;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn xml(u: &User) -> String {
        let mut out = Vec::new();
        write_user(&mut out, u);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn matches_the_writer_of_the_same_user() {
        let before = User {
            fields: vec![
                (UserField::PrimaryId, "S1".into()),
                (UserField::LastName, "Smith".into()),
                (UserField::UserGroup, "UG".into()),
                (UserField::ExpiryDate, "2027-06-30".into()),
                (UserField::PrefFirstName, "Al".into()),
            ],
            ..User::default()
        };
        let rule = PurgeRule {
            default: Some(DateRule::parse("expiry_date+180d").unwrap()),
            by_group: vec![("UG".into(), DateRule::parse("expiry_date+1y").unwrap())],
        };
        let got = expire(
            &xml(&before),
            d("2026-12-04"),
            d("2026-12-11"),
            &rule,
            "OTHER",
        );
        let mut after = before.clone();
        after.fields[3].1 = "2026-12-11".into();
        after
            .fields
            .insert(4, (UserField::PurgeDate, "2027-12-11".into()));
        after.notes.push(Note {
            note_type: "OTHER".into(),
            text: "Not in the SIS feed since 2026-12-04".into(),
            user_viewable: false,
            popup_note: false,
        });
        assert_eq!(got, xml(&after));
    }

    #[test]
    fn adds_to_existing_notes_and_keeps_a_later_purge_date_without_a_rule() {
        let note = Note {
            note_type: "CIRCULATION".into(),
            text: "x".into(),
            user_viewable: true,
            popup_note: false,
        };
        let before = User {
            fields: vec![
                (UserField::PrimaryId, "S1".into()),
                (UserField::ExpiryDate, "2027-06-30".into()),
                (UserField::PurgeDate, "2030-01-01".into()),
            ],
            notes: vec![note.clone()],
            ..User::default()
        };
        let got = expire(
            &xml(&before),
            d("2026-12-04"),
            d("2026-12-04"),
            &PurgeRule::default(),
            "OTHER",
        );
        let mut after = before.clone();
        after.fields[1].1 = "2026-12-04".into();
        after.notes.push(Note {
            note_type: "OTHER".into(),
            text: "Not in the SIS feed since 2026-12-04".into(),
            user_viewable: false,
            popup_note: false,
        });
        assert_eq!(got, xml(&after));
    }
}
