//! Mapping stage: one record's fields → an Alma [`User`], or a [`Fail`].
//!
//! [`Mapper::new`] compiles a profile against the column names of an
//! extract once (column names resolved to indices, tables and date rules
//! parsed, references checked), so that a profile mistake is reported
//! before any record is read and mapping a record does no lookups by
//! name. A `Mapper` is immutable and `Sync`: the parallel engine shares one
//! across threads, each with its own [`MapStats`].
//!
//! `compile` holds the compiled form (getters, tables, segment maps) and
//! [`Mapper::new`]; this module maps records with it; [`rules`] holds the
//! pure value rules.

mod compile;
pub mod rules;
mod segments;

use std::borrow::Cow;

use chrono::NaiveDate;

use crate::model::{User, UserField};
use crate::profile::{IdentifierCase, UnknownPolicy};
use crate::report::{Fail, MapStats, Reason};
use rules::Piece;

use compile::{
    AddressMap, EmailMap, Getter, IdentifierMap, NoteMap, PhoneMap, Source, StatisticMap, Table,
    TypeGetter,
};

/// The identifier Alma's integration profile matches users on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchId {
    /// The primary id.
    PrimaryId,
    /// An additional identifier of this type.
    IdType(String),
}

/// A profile compiled against one set of column names.
#[derive(Debug, Clone)]
pub struct Mapper {
    columns: Vec<String>,
    used: Vec<bool>,
    fields: Vec<(UserField, Getter)>,
    addresses: Vec<AddressMap>,
    emails: Vec<EmailMap>,
    phones: Vec<PhoneMap>,
    identifiers: Vec<IdentifierMap>,
    statistics: Vec<StatisticMap>,
    notes: Vec<NoteMap>,
    tables: Vec<Table>,
    mandatory: Vec<UserField>,
    match_id: MatchId,
    identifier_case: IdentifierCase,
    as_of: NaiveDate,
    /// `ragged_rows = "pad"`.
    pad_ragged: bool,
    /// `forbidden_chars = "replace"`.
    replace_forbidden: bool,
}

impl Mapper {
    /// The column names this mapper was compiled against.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The primary id of a record as it stands in the extract (trimmed,
    /// before case rules and tables), for the reject report. Works on
    /// records that could not be mapped, even ragged ones when the id is a
    /// plain column they still have; empty when it cannot be known.
    pub fn report_id(&self, rec: &csv::ByteRecord) -> String {
        let Some((_, g)) = self.fields.iter().find(|(f, _)| *f == UserField::PrimaryId) else {
            return String::new();
        };
        let lossy = |i: usize| rec.get(i).map(String::from_utf8_lossy).unwrap_or_default();
        let raw = match &g.source {
            Source::Column(i) => lossy(*i),
            _ if rec.len() == self.columns.len() => {
                let owned: Vec<Cow<str>> = (0..rec.len()).map(lossy).collect();
                let fields: Vec<&str> = owned.iter().map(|c| c.as_ref()).collect();
                let rec = Rec {
                    fields: &fields,
                    clean: false,
                };
                Cow::Owned(self.raw(&g.source, rec).into_owned())
            }
            _ => Cow::Borrowed(""),
        };
        rules::strip_forbidden(raw.trim()).0.into_owned()
    }

    /// [`Mapper::report_id`], but only when it differs from `mapped` (the
    /// primary id the user got); the common case, a plain column the
    /// profile left alone, costs a comparison and no allocation.
    pub fn report_id_if_changed(&self, rec: &csv::ByteRecord, mapped: &str) -> Option<String> {
        if let Some((_, g)) = self.fields.iter().find(|(f, _)| *f == UserField::PrimaryId) {
            if let Source::Column(i) = g.source {
                if rec.get(i).map(|b| b.trim_ascii()) == Some(mapped.as_bytes()) {
                    return None;
                }
            }
        }
        let raw = self.report_id(rec);
        (raw != mapped).then_some(raw)
    }

    /// `t` as a name owned by the mapper (`primary_id` or an identifier
    /// type of the profile), so per-record results can borrow it.
    pub fn id_type_name<'m>(&'m self, t: &str) -> &'m str {
        if t == "primary_id" {
            return "primary_id";
        }
        self.identifiers
            .iter()
            .map(|i| i.id_type.as_str())
            .find(|&n| n == t)
            .unwrap_or("?")
    }

    /// How identifiers compare for uniqueness.
    pub fn identifier_case(&self) -> IdentifierCase {
        self.identifier_case
    }

    /// Decodes a raw record's fields into `out` (reused). A column the
    /// profile uses that is not valid UTF-8 fails the record; unused
    /// columns are never looked at.
    pub fn decode<'r>(&self, rec: &'r csv::ByteRecord, out: &mut Vec<&'r str>) -> Result<(), Fail> {
        out.clear();
        let n = self.columns.len();
        // With `ragged_rows = "pad"` a short record reads as if padded with
        // empty fields and blank extra fields (a trailing delimiter) are
        // ignored; extra fields holding data are never dropped silently.
        let tolerated = self.pad_ragged
            && (rec.len() < n || rec.iter().skip(n).all(|f| f.trim_ascii().is_empty()));
        if rec.len() != n && !tolerated {
            return Err(Fail::new(
                Reason::FieldCount,
                "",
                format!(
                    "the record has {} fields but the header has {}",
                    rec.len(),
                    self.columns.len()
                ),
            ));
        }
        // One validation per record instead of one per field: when the
        // whole record is UTF-8 and no field boundary splits a character,
        // every field is UTF-8.
        let fields = (0..rec.len().min(n)).map(|i| rec.range(i).unwrap_or(0..0));
        let whole = std::str::from_utf8(rec.as_slice()).ok().filter(|all| {
            fields
                .clone()
                .all(|r| all.is_char_boundary(r.start) && all.is_char_boundary(r.end))
        });
        if let Some(all) = whole {
            out.extend(fields.map(|r| &all[r]));
        } else {
            for (i, f) in rec.iter().take(n).enumerate() {
                match std::str::from_utf8(f) {
                    Ok(s) => out.push(s),
                    Err(e) if self.used[i] => {
                        return Err(Fail::new(
                            Reason::InvalidEncoding,
                            self.columns[i].as_str(),
                            format!(
                                "column `{}` is not valid UTF-8 at byte {} of the field",
                                self.columns[i],
                                e.valid_up_to() + 1
                            ),
                        ))
                    }
                    Err(_) => out.push(""),
                }
            }
        }
        while out.len() < n {
            out.push("");
        }
        Ok(())
    }

    /// Maps one decoded record. Counters for dropped segments, unknown
    /// codes and truncations go to `stats`.
    pub fn map<'a>(&'a self, rec: &[&'a str], stats: &mut MapStats) -> Result<User<'a>, Fail> {
        self.map_known(rec, false, stats)
    }

    /// [`Mapper::map`] of a record whose bytes the caller has checked
    /// with [`rules::any_forbidden`] (`clean` when none may be forbidden):
    /// then no value taken from it is scanned again, one pass per record
    /// instead of one per value.
    pub fn map_known<'a>(
        &'a self,
        rec: &[&'a str],
        clean: bool,
        stats: &mut MapStats,
    ) -> Result<User<'a>, Fail> {
        let rec = Rec { fields: rec, clean };
        // Sized once: growing by doubling costs a few reallocations a
        // record, a million times.
        let mut user = User {
            fields: Vec::with_capacity(self.fields.len()),
            identifiers: Vec::with_capacity(self.identifiers.len()),
            ..User::default()
        };
        let dates = self.map_fields(&mut user, rec, stats)?;
        self.check_mandatory(&user)?;
        self.map_addresses(&mut user, rec, stats, &dates)?;
        self.map_emails(&mut user, rec, stats)?;
        self.map_phones(&mut user, rec, stats)?;
        self.map_identifiers(&mut user, rec, stats)?;
        self.map_statistics(&mut user, rec, stats)?;
        self.map_notes(&mut user, rec, stats)?;
        Ok(user)
    }

    fn type_codes<'a>(
        &'a self,
        types: &'a [TypeGetter],
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<Vec<Cow<'a, str>>, Fail> {
        let mut out = Vec::with_capacity(types.len());
        for t in types {
            let v = match t {
                TypeGetter::Code(c) => Cow::Borrowed(c.as_str()),
                TypeGetter::Field(g) => self.value(g, rec, stats)?,
            };
            if !v.is_empty() && !out.contains(&v) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The raw (uncleaned) text of a source.
    fn raw<'r>(&self, src: &'r Source, rec: Rec<'_, 'r>) -> Cow<'r, str> {
        match src {
            Source::None => Cow::Borrowed(""),
            Source::Column(i) => Cow::Borrowed(rec[*i]),
            Source::Const(s) => Cow::Borrowed(s),
            Source::FirstOf(cols) => Cow::Borrowed(
                cols.iter()
                    .map(|&i| rec[i])
                    .find(|v| !rules::is_blank(v))
                    .unwrap_or(""),
            ),
            Source::Template(pieces) => {
                let any = pieces
                    .iter()
                    .any(|p| matches!(p, Piece::Col(i) if !rules::is_blank(rec[*i])));
                if !any {
                    return Cow::Borrowed("");
                }
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Lit(l) => s.push_str(l),
                        Piece::Col(i) => s.push_str(rules::trim(rec[*i])),
                    }
                }
                Cow::Owned(s)
            }
        }
    }

    /// The getter's source text without characters XML forbids (counted
    /// in `stats`); not scanned again when the record's check covers it.
    fn cleaned<'a>(
        &'a self,
        g: &'a Getter,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Cow<'a, str> {
        let raw = self.raw(&g.source, rec);
        if rec.covers(&g.source) {
            return raw;
        }
        let (clean, removed) = rules::clean_forbidden_cow(raw, self.replace_forbidden);
        stats.count_forbidden(removed, self.replace_forbidden);
        clean
    }

    /// Evaluates a text getter: source, XML cleaning, trim, case, default,
    /// table, length.
    ///
    /// Borrows from the record or the profile whenever the rules leave the
    /// text as it is (a plain column, a value already in its case, a
    /// table's output), so most values cost no allocation.
    fn value<'a>(
        &'a self,
        g: &'a Getter,
        rec: Rec<'_, 'a>,
        stats: &mut MapStats,
    ) -> Result<Cow<'a, str>, Fail> {
        let clean = self.cleaned(g, rec, stats);
        let mut v = if g.trim {
            rules::trim_cow(clean)
        } else {
            clean
        };
        if let Some(c) = g.case {
            v = rules::apply_case_cow(v, c);
        }
        // Whitespace is no value, even where the profile keeps it; the
        // default is the Alma value itself, so it bypasses the table.
        if rules::is_blank(&v) {
            match &g.default {
                Some(d) => v = Cow::Borrowed(d.as_str()),
                None => return Ok(Cow::Borrowed("")),
            }
        } else if let Some(t) = g.table {
            let table = &self.tables[t];
            v = match table.map.get(v.as_ref()) {
                Some(m) => Cow::Borrowed(m.as_str()),
                None => {
                    stats.unknown_code(&g.label, &v);
                    match table.unknown {
                        UnknownPolicy::Reject => {
                            return Err(Fail::new(
                                Reason::UnknownCode,
                                g.label.as_str(),
                                format!(
                                    "code `{}` is not in the profile's table for {}",
                                    crate::error::excerpt(&v, crate::error::EXCERPT_CHARS),
                                    g.label
                                ),
                            ))
                        }
                        // Compiling checked the default exists.
                        UnknownPolicy::Default => {
                            Cow::Borrowed(table.default.as_deref().unwrap_or_default())
                        }
                        UnknownPolicy::Pass => v,
                    }
                }
            };
        }
        // Bytes bound characters from above: count only when it matters.
        let chars = if v.len() <= g.max_chars {
            v.len()
        } else {
            v.chars().count()
        };
        if chars > g.max_chars {
            if !g.truncate {
                return Err(Fail::new(
                    Reason::TooLong,
                    g.label.as_str(),
                    format!(
                        "{} is {chars} characters long; Alma allows {}",
                        g.label, g.max_chars
                    ),
                ));
            }
            *stats.truncated.entry(g.label.clone()).or_default() += 1;
            let cut: String = v.chars().take(g.max_chars).collect();
            v = Cow::Owned(cut.trim_end().to_string());
        }
        Ok(v)
    }

    /// Evaluates a date getter: the source parsed with the formats, else
    /// the user group's rule, else the default rule.
    fn date(
        &self,
        g: &Getter,
        rec: Rec<'_, '_>,
        stats: &mut MapStats,
        group: Option<&str>,
        earlier: &[(UserField, NaiveDate)],
    ) -> Result<Option<NaiveDate>, Fail> {
        // Compiling gives every date getter a DateSpec.
        let Some(spec) = &g.date else { return Ok(None) };
        let clean = self.cleaned(g, rec, stats);
        let text = rules::trim(&clean);
        if !text.is_empty() {
            let tried = match rules::parse_date(text, &spec.formats, self.as_of) {
                Ok(d) => return Ok(Some(d)),
                Err(tried) => tried,
            };
            let shown = (!spec.personal).then_some(text);
            let why = rules::date_failure(&g.label, shown, &spec.formats, &tried);
            if spec.optional {
                stats.drop_field(Fail::new(
                    Reason::InvalidDate,
                    g.label.as_str(),
                    format!("{why}; the field is left out and the patron written without it"),
                ));
                return Ok(None);
            }
            return Err(Fail::new(Reason::InvalidDate, g.label.as_str(), why));
        }
        let rule = group
            .and_then(|grp| spec.by_group.iter().find(|(k, _)| k == grp).map(|(_, r)| r))
            .or(spec.default.as_ref());
        let lookup = |f: UserField| earlier.iter().find(|(e, _)| *e == f).map(|(_, d)| *d);
        Ok(rule.and_then(|r| r.apply(self.as_of, lookup)))
    }
}

/// One decoded record as the mapping rules see it: its fields, and
/// whether its bytes were found free of anything XML forbids.
#[derive(Clone, Copy)]
pub(super) struct Rec<'r, 'a> {
    fields: &'r [&'a str],
    clean: bool,
}

impl<'a> std::ops::Index<usize> for Rec<'_, 'a> {
    type Output = &'a str;

    fn index(&self, i: usize) -> &&'a str {
        &self.fields[i]
    }
}

impl Rec<'_, '_> {
    /// Whether a value of `src` comes from the record alone, so the
    /// record's check covers it (constants and template text do not).
    fn covers(&self, src: &Source) -> bool {
        self.clean && matches!(src, Source::Column(_) | Source::FirstOf(_) | Source::None)
    }
}

/// The key an identifier value is compared by: trimmed and lower-cased.
pub fn fold(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Grants the preferred mark to the first present segment of a kind that
/// asks for it, so a profile can declare a fallback order (school email,
/// else personal) while Alma still sees at most one preferred.
fn take_preferred(wanted: bool, taken: &mut bool) -> bool {
    let grant = wanted && !*taken;
    *taken |= grant;
    grant
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    const COLS: &[&str] = &[
        "ID", "LAST", "FIRST", "TYPE", "EXP", "BC", "MAIL", "ADDR", "CITY",
    ];

    fn mapper(extra: &str) -> Result<Mapper, String> {
        let text = format!(
            r#"
[input]
[fields]
primary_id = {{ column = "ID" }}
last_name = {{ column = "LAST" }}
user_group = {{ column = "TYPE", table = "groups" }}
expiry_date = {{ column = "EXP", by_group = {{ FACULTY = "+3y" }}, default = "+1y" }}
purge_date = {{ default = "expiry_date+180d" }}
{extra}
[tables.groups]
map = {{ UG = "UNDERGRAD", FAC = "FACULTY" }}
unknown = "reject"
"#
        );
        let p = Profile::parse(&text)?;
        let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
        Mapper::new(&p, &cols, NaiveDate::from_ymd_opt(2026, 11, 24).unwrap())
    }

    fn row<'a>(vals: &[(&str, &'a str)]) -> Vec<&'a str> {
        let mut r = vec![""; COLS.len()];
        for (k, v) in vals {
            r[COLS.iter().position(|c| c == k).unwrap()] = v;
        }
        r
    }

    fn base<'a>() -> Vec<(&'static str, &'a str)> {
        vec![("ID", " S1 "), ("LAST", "Doe"), ("TYPE", "UG")]
    }

    #[test]
    fn fields_dates_and_group_rules() {
        let m = mapper("").unwrap();
        let mut st = MapStats::default();
        let u = m.map(&row(&base()), &mut st).unwrap();
        assert_eq!(u.get(UserField::PrimaryId), Some("S1"));
        assert_eq!(u.get(UserField::UserGroup), Some("UNDERGRAD"));
        assert_eq!(u.get(UserField::ExpiryDate), Some("2027-11-24Z"));
        assert_eq!(u.get(UserField::PurgeDate), Some("2028-05-22Z"));
        let u = m
            .map(
                &row(&[("ID", "F1"), ("LAST", "X"), ("TYPE", "FAC")]),
                &mut st,
            )
            .unwrap();
        assert_eq!(u.get(UserField::ExpiryDate), Some("2029-11-24Z"));
        let u = m
            .map(
                &row(&[
                    ("ID", "F1"),
                    ("LAST", "X"),
                    ("TYPE", "FAC"),
                    ("EXP", "2030-01-31"),
                ]),
                &mut st,
            )
            .unwrap();
        assert_eq!(u.get(UserField::ExpiryDate), Some("2030-01-31Z"));
        // Fields come out in schema order whatever the profile's order.
        let order: Vec<UserField> = u.fields.iter().map(|(f, _)| *f).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted);
    }

    #[test]
    fn rejects_with_reason_and_field() {
        let m = mapper("").unwrap();
        let mut st = MapStats::default();
        let mut r = base();
        r[1] = ("LAST", "  ");
        let f = m.map(&row(&r), &mut st).unwrap_err();
        assert_eq!(
            (f.reason, f.field.as_str()),
            (Reason::MissingField, "last_name")
        );
        let mut r = base();
        r[2] = ("TYPE", "ZZ");
        let f = m.map(&row(&r), &mut st).unwrap_err();
        assert_eq!(
            (f.reason, f.field.as_str()),
            (Reason::UnknownCode, "user_group")
        );
        assert_eq!(st.unknown_codes["user_group"]["ZZ"], 1);
        let mut r = base();
        r.push(("EXP", "31/12/2027"));
        let f = m.map(&row(&r), &mut st).unwrap_err();
        assert_eq!(
            (f.reason, f.field.as_str()),
            (Reason::InvalidDate, "expiry_date")
        );
        let long = "x".repeat(256);
        let mut r = base();
        r[1] = ("LAST", &long);
        let f = m.map(&row(&r), &mut st).unwrap_err();
        assert_eq!((f.reason, f.field.as_str()), (Reason::TooLong, "last_name"));
    }

    #[test]
    fn truncation_when_allowed_is_counted() {
        let m = mapper("first_name = { column = \"FIRST\", truncate = true }").unwrap();
        let mut st = MapStats::default();
        let long = "y".repeat(300);
        let mut r = base();
        r.push(("FIRST", &long));
        let u = m.map(&row(&r), &mut st).unwrap();
        assert_eq!(u.get(UserField::FirstName).unwrap().chars().count(), 255);
        assert_eq!(st.truncated["first_name"], 1);
    }

    #[test]
    fn table_policies_default_and_pass() {
        let text = r#"
[input]
[rules]
mandatory = []
match_id = "BARCODE"
[fields]
campus_code = { column = "TYPE", case = "lower", table = "c" }
gender = { column = "FIRST", table = "g" }
[[identifiers]]
id_type = "BARCODE"
value = { column = "BC" }
[tables.c]
map = { ug = "MAIN" }
default = "OTHER"
unknown = "default"
[tables.g]
map = {}
unknown = "pass"
"#;
        let p = Profile::parse(text).unwrap();
        let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
        let m = Mapper::new(&p, &cols, NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()).unwrap();
        let mut st = MapStats::default();
        let u = m
            .map(
                &row(&[("TYPE", "GR"), ("FIRST", "F"), ("BC", "1")]),
                &mut st,
            )
            .unwrap();
        assert_eq!(u.get(UserField::CampusCode), Some("OTHER"));
        assert_eq!(u.get(UserField::Gender), Some("F"));
        assert_eq!(st.unknown_codes["campus_code"]["gr"], 1);
        assert_eq!(st.unknown_codes["gender"]["F"], 1);
        // The match identifier must be present.
        let f = m.map(&row(&[("TYPE", "UG")]), &mut st).unwrap_err();
        assert_eq!(f.reason, Reason::MissingMatchId);
    }

    #[test]
    fn segments_incomplete_dropped_preferred_once_ids_distinct() {
        let m = mapper(
            r#"
[[addresses]]
types = ["home"]
preferred = true
line1 = { column = "ADDR" }
city = { column = "CITY" }
[[emails]]
types = ["school"]
preferred = true
address = { column = "MAIL" }
[[emails]]
types = ["personal"]
preferred = true
address = { template = "{FIRST}@example.org" }
[[identifiers]]
id_type = "BARCODE"
value = { column = "BC" }
[[identifiers]]
id_type = "UNIV_ID"
value = { column = "ID", case = "lower" }
"#,
        )
        .unwrap();
        let mut st = MapStats::default();
        let mut r = base();
        r.extend([
            ("ADDR", "1 Road"),
            ("MAIL", "a@x.edu"),
            ("FIRST", "ann"),
            ("BC", "b1"),
        ]);
        let u = m.map(&row(&r), &mut st).unwrap();
        // Address without a city is dropped and counted.
        assert!(u.addresses.is_empty());
        assert_eq!(st.dropped_segments["address_incomplete"], 1);
        // Both emails present: only the first keeps the preferred mark.
        assert_eq!(
            u.emails.iter().map(|e| e.preferred).collect::<Vec<_>>(),
            [true, false]
        );
        // UNIV_ID equals the primary id (case-insensitively): dropped.
        assert_eq!(u.identifiers.len(), 1);
        assert_eq!(st.dropped_segments["identifier_repeated_in_user"], 1);
        // With the school email missing, the personal one becomes preferred.
        let mut r = base();
        r.extend([("FIRST", "ann")]);
        let u = m.map(&row(&r), &mut st).unwrap();
        assert_eq!(u.emails.len(), 1);
        assert!(u.emails[0].preferred);
        assert_eq!(u.emails[0].address, "ann@example.org");
        assert_eq!(st.dropped_segments["identifier_empty"], 1);
    }

    #[test]
    fn blank_is_empty_and_defaults_bypass_tables() {
        let m = mapper(
            r#"first_name = { column = "FIRST", trim = false }
gender = { column = "MAIL", table = "groups", default = "NONE" }"#,
        )
        .unwrap();
        let mut st = MapStats::default();
        let mut r = base();
        r.push(("FIRST", "   "));
        let u = m.map(&row(&r), &mut st).unwrap();
        assert_eq!(u.get(UserField::FirstName), None);
        // NONE is not in the table, but as the default it is the value.
        assert_eq!(u.get(UserField::Gender), Some("NONE"));
        assert!(st.unknown_codes.is_empty());
    }

    #[test]
    fn an_absent_address_is_not_evaluated_or_counted() {
        let m = mapper(
            r#"
[[addresses]]
types = [{ column = "TYPE", table = "groups" }]
line1 = { column = "ADDR" }
city = { column = "CITY" }
country = { value = "USA" }
start_date = { column = "BC" }
"#,
        )
        .unwrap();
        let mut st = MapStats::default();
        let mut r = base();
        // A date the address would reject, but the address is absent.
        r.push(("BC", "not a date"));
        let u = m.map(&row(&r), &mut st).unwrap();
        assert!(u.addresses.is_empty());
        assert!(st.dropped_segments.is_empty());
        let mut r = base();
        r.push(("ADDR", "1 Road"));
        m.map(&row(&r), &mut st).unwrap();
        assert_eq!(st.dropped_segments["address_incomplete"], 1);
    }

    #[test]
    fn a_record_checked_clean_maps_as_one_checked_per_value() {
        let m = mapper(
            "first_name = { column = \"FIRST\", case = \"title\" }\n\
             job_description = { template = \"{FIRST} x\" }",
        )
        .unwrap();
        for first in ["ann", " Ann ", "A\u{1}n", "Bj\u{8D}rn", "Zoë", ""] {
            let mut r = base();
            r.push(("FIRST", first));
            let rec = row(&r);
            let clean = !rules::any_forbidden(rec.concat().as_bytes());
            let (mut a, mut b) = (MapStats::default(), MapStats::default());
            assert_eq!(
                m.map_known(&rec, clean, &mut a).unwrap(),
                m.map(&rec, &mut b).unwrap(),
                "{first:?}"
            );
            assert_eq!(a.forbidden_chars_removed, b.forbidden_chars_removed);
        }
    }

    #[test]
    fn forbidden_characters_never_reach_the_user() {
        let m = mapper("first_name = { column = \"FIRST\" }").unwrap();
        let mut st = MapStats::default();
        let mut r = base();
        r.push(("FIRST", "A\u{1}n\u{0}n"));
        let u = m.map(&row(&r), &mut st).unwrap();
        assert_eq!(u.get(UserField::FirstName), Some("Ann"));
        assert_eq!(st.forbidden_chars_removed, 2);
    }

    #[test]
    fn an_unreadable_optional_date_is_dropped_a_driving_one_rejects() {
        let m = mapper("birth_date = { column = \"BC\" }").unwrap();
        let mut st = MapStats::default();
        let mut r = base();
        r.push(("BC", "1990-13-45"));
        let u = m.map(&row(&r), &mut st).unwrap();
        assert_eq!(u.get(UserField::BirthDate), None);
        assert_eq!(st.dropped_fields["birth_date"], 1);
        let w = st.take_warnings();
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].reason, w[0].field.as_str()),
            (Reason::InvalidDate, "birth_date")
        );
        assert!(!w[0].message.contains("1990"), "{}", w[0].message);
        assert!(st.take_warnings().is_empty());
        // The expiry date is never optional: purge counts from it, and
        // the patron's access ends with it.
        let mut r = base();
        r.push(("EXP", "2027-02-30"));
        let f = m.map(&row(&r), &mut st).unwrap_err();
        assert_eq!(
            (f.reason, f.field.as_str()),
            (Reason::InvalidDate, "expiry_date")
        );
        assert!(f.message.contains("`2027-02-30`"), "{}", f.message);
        // A birth date a rule counts from, or a mandatory one, rejects.
        for extra in [
            "birth_date = { column = \"BC\" }\n[[addresses]]\ntypes = [\"home\"]\n\
             line1 = { column = \"ADDR\" }\ncity = { column = \"CITY\" }\n\
             end_date = { default = \"birth_date+100y\" }",
            "birth_date = { column = \"BC\" }\n[rules]\nmandatory = [\"birth_date\"]",
        ] {
            let m = mapper(extra).unwrap();
            let mut r = base();
            r.push(("BC", "1990-13-45"));
            let f = m.map(&row(&r), &mut st).unwrap_err();
            assert_eq!(
                (f.reason, f.field.as_str()),
                (Reason::InvalidDate, "birth_date")
            );
        }
        // An address date is optional: the part is left out.
        let m = mapper(
            "[[addresses]]\ntypes = [\"home\"]\nline1 = { column = \"ADDR\" }\n\
             city = { column = \"CITY\" }\nstart_date = { column = \"BC\" }",
        )
        .unwrap();
        let mut r = base();
        r.extend([("ADDR", "1 Road"), ("CITY", "Town"), ("BC", "soon")]);
        let u = m.map(&row(&r), &mut st).unwrap();
        assert_eq!(u.addresses.len(), 1);
        assert_eq!(st.dropped_fields["addresses[1].start_date"], 1);
        assert!(st.take_warnings()[0].message.contains("`soon`"));
    }

    #[test]
    fn compile_errors_name_the_key() {
        let e = mapper("nickname = { column = \"FIRST\" }").unwrap_err();
        assert!(e.contains("nickname"), "{e}");
        let e = mapper("first_name = { column = \"NOPE\" }").unwrap_err();
        assert!(e.contains("NOPE"), "{e}");
        let e = mapper("first_name = { column = \"FIRST\", value = \"x\" }").unwrap_err();
        assert!(e.contains("only one"), "{e}");
        let e = mapper("birth_date = { default = \"purge_date-20y\" }").unwrap_err();
        assert!(e.contains("earlier date field"), "{e}");
        let e =
            mapper("first_name = { column = \"FIRST\", by_group = { A = \"+1y\" } }").unwrap_err();
        assert!(e.contains("date fields only"), "{e}");
        let e =
            mapper("[[addresses]]\ntypes = [\"home\"]\nline1 = { column = \"ADDR\" }").unwrap_err();
        assert!(e.contains("city"), "{e}");
        // Constants are written as they are: no control character in one.
        for bad in [
            "gender = { column = \"FIRST\", default = \"X\\u0085\" }",
            "[[emails]]\ntypes = [\"home\\u007F\"]\naddress = { column = \"MAIL\" }",
            "[[notes]]\nnote_type = \"OTHER\\u0001\"\ntext = { column = \"FIRST\" }",
        ] {
            let e = mapper(bad).unwrap_err();
            assert!(e.contains("control character U+00"), "{bad}: {e}");
        }
    }

    #[test]
    fn decode_checks_field_count_and_encoding_of_used_columns() {
        let m = mapper("").unwrap();
        let mut out = Vec::new();
        let rec = csv::ByteRecord::from(vec!["a", "b"]);
        assert_eq!(
            m.decode(&rec, &mut out).unwrap_err().reason,
            Reason::FieldCount
        );
        let mut fields: Vec<&[u8]> = vec![b""; COLS.len()];
        fields[1] = b"D\xE9j\xE0";
        let rec = csv::ByteRecord::from(fields.clone());
        let f = m.decode(&rec, &mut out).unwrap_err();
        assert_eq!(
            (f.reason, f.field.as_str()),
            (Reason::InvalidEncoding, "LAST")
        );
        // A bad byte in a column the profile does not use is harmless.
        fields[1] = b"ok";
        fields[8] = b"\xFF";
        let rec = csv::ByteRecord::from(fields);
        m.decode(&rec, &mut out).unwrap();
    }

    #[test]
    fn ragged_rows_pad_short_and_ignore_blank_extras_only() {
        let text = |extra: &str| {
            format!(
                "[input]\nragged_rows = \"pad\"\nforbidden_chars = \"replace\"\n[rules]\nmandatory = [\"primary_id\"]\n[fields]\n\
                 primary_id = {{ column = \"ID\" }}\nlast_name = {{ column = \"LAST\" }}{extra}"
            )
        };
        let p = Profile::parse(&text("")).unwrap();
        let cols: Vec<String> = COLS.iter().map(|s| s.to_string()).collect();
        let m = Mapper::new(&p, &cols, NaiveDate::from_ymd_opt(2026, 11, 24).unwrap()).unwrap();
        let short = csv::ByteRecord::from(vec!["1", "Doe"]);
        let mut out = Vec::new();
        m.decode(&short, &mut out).unwrap();
        assert_eq!(out.len(), COLS.len());
        let mut long: Vec<&str> = vec![""; COLS.len()];
        long.push("  ");
        let blank_extra = csv::ByteRecord::from(long.clone());
        m.decode(&blank_extra, &mut Vec::new()).unwrap();
        *long.last_mut().unwrap() = "data";
        let data_extra = csv::ByteRecord::from(long);
        let f = m.decode(&data_extra, &mut Vec::new()).unwrap_err();
        assert_eq!(f.reason, Reason::FieldCount);
        // forbidden_chars = "replace" keeps a mark where the character was.
        let mut st = MapStats::default();
        let mut r = vec![""; COLS.len()];
        r[0] = "1";
        r[1] = "D\u{1}oe";
        let u = m.map(&r, &mut st).unwrap();
        assert_eq!(u.get(UserField::LastName), Some("D\u{FFFD}oe"));
        assert_eq!(
            (st.forbidden_chars_replaced, st.forbidden_chars_removed),
            (1, 0)
        );
    }
}
