//! Compiling a profile against an extract's columns: the compiled
//! getters, tables and segment maps a [`Mapper`] holds, and [`Mapper::new`].

use std::collections::HashMap;

use chrono::NaiveDate;

use super::rules::{self, DateRule, Piece};
use crate::model::{AddressPart, UserField};
use crate::profile::{
    CaseRule, FieldSpec, ForbiddenChars, Profile, RaggedRows, TableSpec, TypeSpec, UnknownPolicy,
};

use super::{Mapper, MatchId};

/// Where a value comes from, with columns resolved to indices.
#[derive(Debug, Clone)]
pub(super) enum Source {
    None,
    Column(usize),
    Const(String),
    Template(Vec<Piece<usize>>),
    FirstOf(Vec<usize>),
}

/// A compiled value table.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// Looked up once per coded value of every record: a fast hash.
    pub(super) map: ahash::AHashMap<String, String>,
    pub(super) default: Option<String>,
    pub(super) unknown: UnknownPolicy,
}

/// Date-specific parts of a getter.
#[derive(Debug, Clone)]
pub(super) struct DateSpec {
    pub(super) formats: rules::DateFormats,
    pub(super) by_group: Vec<(String, DateRule)>,
    pub(super) default: Option<DateRule>,
    /// Whether an unreadable value drops the field (and warns) instead of
    /// rejecting the record: not mandatory, not the expiry date, and no
    /// date rule counts from it.
    pub(super) optional: bool,
    /// Whether the value is personal data that messages must not quote.
    pub(super) personal: bool,
}

/// One compiled value: source, cleaning, table, length limit.
#[derive(Debug, Clone)]
pub(super) struct Getter {
    /// Name used in reports (`user_group`, `addresses[1].city`).
    pub(super) label: String,
    pub(super) source: Source,
    pub(super) trim: bool,
    pub(super) case: Option<CaseRule>,
    pub(super) table: Option<usize>,
    pub(super) truncate: bool,
    pub(super) default: Option<String>,
    pub(super) max_chars: usize,
    pub(super) date: Option<DateSpec>,
}

#[derive(Debug, Clone)]
pub(super) enum TypeGetter {
    Code(String),
    Field(Box<Getter>),
}

#[derive(Debug, Clone)]
pub(super) struct AddressMap {
    pub(super) preferred: bool,
    pub(super) parts: Vec<(AddressPart, Getter)>,
    pub(super) types: Vec<TypeGetter>,
}

#[derive(Debug, Clone)]
pub(super) struct EmailMap {
    pub(super) preferred: bool,
    pub(super) address: Getter,
    pub(super) description: Option<Getter>,
    pub(super) types: Vec<TypeGetter>,
}

#[derive(Debug, Clone)]
pub(super) struct PhoneMap {
    pub(super) preferred: bool,
    pub(super) preferred_sms: bool,
    pub(super) number: Getter,
    pub(super) types: Vec<TypeGetter>,
}

#[derive(Debug, Clone)]
pub(super) struct IdentifierMap {
    pub(super) id_type: String,
    pub(super) value: Getter,
    pub(super) note: Option<Getter>,
    pub(super) status: String,
}

#[derive(Debug, Clone)]
pub(super) struct StatisticMap {
    pub(super) category: Getter,
    pub(super) category_type: Option<Getter>,
    pub(super) note: Option<Getter>,
}

#[derive(Debug, Clone)]
pub(super) struct NoteMap {
    pub(super) note_type: String,
    pub(super) text: Getter,
    pub(super) user_viewable: bool,
    pub(super) popup_note: bool,
}

/// Compiles getters; collects the column indices they use.
pub(super) struct Compiler<'a> {
    pub(super) columns: &'a [String],
    /// Column name → index; `None` when the header repeats the name.
    pub(super) index: HashMap<&'a str, Option<usize>>,
    pub(super) used: Vec<bool>,
    pub(super) table_index: HashMap<&'a str, usize>,
    pub(super) date_formats: &'a [String],
}

impl<'a> Compiler<'a> {
    fn column(&mut self, label: &str, name: &str) -> Result<usize, String> {
        match self.index.get(name) {
            Some(&Some(i)) => {
                self.used[i] = true;
                Ok(i)
            }
            Some(None) => Err(format!(
                "{label}: column `{name}` appears more than once in the header, so it is \
                 ambiguous; name the columns yourself with `columns = [...]` in [input]"
            )),
            None => Err(format!(
                "{label}: column `{name}` is not in the extract's columns ({})",
                crate::error::excerpt(&self.columns.join(", "), crate::error::EXCERPT_CHARS)
            )),
        }
    }

    fn getter(
        &mut self,
        label: String,
        spec: &FieldSpec,
        max_chars: usize,
        is_date: bool,
    ) -> Result<Getter, String> {
        let given = [
            spec.column.is_some(),
            spec.value.is_some(),
            spec.template.is_some(),
            spec.first_of.is_some(),
        ];
        let n = given.iter().filter(|&&g| g).count();
        if n > 1 {
            return Err(format!(
                "{label}: give only one of `column`, `value`, `template`, `first_of`"
            ));
        }
        let rule_only = is_date && spec.by_group.is_some();
        if n == 0 && spec.default.is_none() && !rule_only {
            return Err(format!(
                "{label}: needs a source: `column`, `value`, `template`, `first_of` or `default`"
            ));
        }
        let source = if let Some(c) = &spec.column {
            Source::Column(self.column(&label, c)?)
        } else if let Some(v) = &spec.value {
            Source::Const(v.clone())
        } else if let Some(t) = &spec.template {
            let pieces = rules::parse_template(t).map_err(|e| format!("{label}: {e}"))?;
            let mut out = Vec::with_capacity(pieces.len());
            for p in pieces {
                out.push(match p {
                    Piece::Lit(s) => Piece::Lit(s),
                    Piece::Col(c) => Piece::Col(self.column(&label, &c)?),
                });
            }
            Source::Template(out)
        } else if let Some(cols) = &spec.first_of {
            if cols.is_empty() {
                return Err(format!("{label}: `first_of` lists no column"));
            }
            let idx = cols
                .iter()
                .map(|c| self.column(&label, c))
                .collect::<Result<_, _>>()?;
            Source::FirstOf(idx)
        } else {
            Source::None
        };
        let table =
            match &spec.table {
                Some(t) => Some(*self.table_index.get(t.as_str()).ok_or_else(|| {
                    format!("{label}: table `{t}` is not defined under [tables]")
                })?),
                None => None,
            };
        let date = if is_date {
            if table.is_some() {
                return Err(format!("{label}: a date field cannot use a value table"));
            }
            let default = match &spec.default {
                Some(r) => Some(DateRule::parse(r).map_err(|e| format!("{label}: {e}"))?),
                None => None,
            };
            let mut by_group = Vec::new();
            for (g, r) in spec.by_group.iter().flatten() {
                by_group.push((
                    g.clone(),
                    DateRule::parse(r).map_err(|e| format!("{label}: {e}"))?,
                ));
            }
            let formats = spec
                .formats
                .clone()
                .unwrap_or_else(|| self.date_formats.to_vec());
            if formats.is_empty() {
                return Err(format!("{label}: no date formats"));
            }
            // Birth dates are never in the future; every other date
            // (expiry, purge, an address's start and end) lies in the
            // decades around --as-of.
            let personal = label == UserField::BirthDate.name();
            let century = match &spec.two_digit_year {
                Some(t) => rules::Century::parse(&t.text()).map_err(|e| format!("{label}: {e}"))?,
                None if personal => rules::Century::Past,
                None => rules::Century::Window(50),
            };
            Some(DateSpec {
                formats: rules::DateFormats::new(&formats, century)
                    .map_err(|e| format!("{label}: {e}"))?,
                by_group,
                default,
                optional: true,
                personal,
            })
        } else {
            if spec.formats.is_some() || spec.by_group.is_some() || spec.two_digit_year.is_some() {
                return Err(format!(
                    "{label}: `formats`, `by_group` and `two_digit_year` apply to date fields only"
                ));
            }
            None
        };
        if let (Some(d), false) = (&spec.default, is_date) {
            plain(&label, d)?;
            if d.chars().count() > max_chars && !spec.truncate {
                return Err(format!(
                    "{label}: the default is longer than the {max_chars} characters Alma allows"
                ));
            }
        }
        Ok(Getter {
            label,
            source,
            trim: spec.trim.unwrap_or(true),
            case: spec.case,
            table,
            truncate: spec.truncate,
            default: if is_date { None } else { spec.default.clone() },
            max_chars,
            date,
        })
    }

    fn types(&mut self, label: &str, specs: &[TypeSpec]) -> Result<Vec<TypeGetter>, String> {
        if specs.is_empty() {
            return Err(format!("{label}: `types` must list at least one type"));
        }
        specs
            .iter()
            .enumerate()
            .map(|(i, t)| match t {
                TypeSpec::Code(c) if c.trim().is_empty() => {
                    Err(format!("{label}: type {} is empty", i + 1))
                }
                TypeSpec::Code(c) => {
                    plain(label, c)?;
                    Ok(TypeGetter::Code(c.trim().to_string()))
                }
                TypeSpec::Field(f) => Ok(TypeGetter::Field(Box::new(self.getter(
                    format!("{label}.types[{}]", i + 1),
                    f,
                    255,
                    false,
                )?))),
            })
            .collect()
    }

    fn opt(
        &mut self,
        label: String,
        spec: &Option<FieldSpec>,
        max: usize,
    ) -> Result<Option<Getter>, String> {
        spec.as_ref()
            .map(|s| self.getter(label, s, max, false))
            .transpose()
    }
}

/// Refuses a profile constant that would put a control character in the
/// XML: values from the extract are cleaned per `forbidden_chars`, but
/// constants (codes, defaults, table values) are written as they are.
pub(super) fn plain(label: &str, s: &str) -> Result<(), String> {
    match s.chars().find(|&c| !rules::xml_allowed(c)) {
        Some(c) => Err(format!(
            "{label}: `{}` holds control character U+{:04X}, which Alma's XML may not carry",
            crate::error::excerpt(s, 60),
            c as u32
        )),
        None => Ok(()),
    }
}

pub(super) fn compile_table(name: &str, t: &TableSpec) -> Result<Table, String> {
    if t.unknown == UnknownPolicy::Default && t.default.is_none() {
        return Err(format!(
            "table `{name}`: unknown = \"default\" needs a `default` value"
        ));
    }
    let label = format!("table `{name}`");
    for v in t.map.values().chain(t.default.iter()) {
        plain(&label, v)?;
    }
    Ok(Table {
        map: t.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        default: t.default.clone(),
        unknown: t.unknown,
    })
}

impl Mapper {
    /// Compiles `profile` against the extract's `columns`. `as_of` is the
    /// date every relative date rule counts from. The error is a message
    /// for a librarian, naming the profile key at fault.
    pub fn new(profile: &Profile, columns: &[String], as_of: NaiveDate) -> Result<Mapper, String> {
        let mut table_names: Vec<&str> = Vec::new();
        let mut tables = Vec::new();
        for (name, t) in &profile.tables {
            table_names.push(name);
            tables.push(compile_table(name, t)?);
        }
        let mut index: HashMap<&str, Option<usize>> = HashMap::new();
        for (i, c) in columns.iter().enumerate() {
            index
                .entry(c.as_str())
                .and_modify(|e| *e = None)
                .or_insert(Some(i));
        }
        let mut cx = Compiler {
            columns,
            index,
            used: vec![false; columns.len()],
            table_index: table_names
                .iter()
                .enumerate()
                .map(|(i, n)| (*n, i))
                .collect(),
            date_formats: &profile.rules.date_formats,
        };

        let mut fields = Vec::new();
        for (name, spec) in &profile.fields {
            let f = UserField::from_name(name).ok_or_else(|| {
                format!(
                    "[fields]: `{name}` is not an Alma user field patronload writes; known: {}",
                    UserField::ALL.map(|f| f.name()).join(", ")
                )
            })?;
            fields.push((
                f,
                cx.getter(name.clone(), spec, f.max_chars(), f.is_date())?,
            ));
        }
        // Dates last and in schema order, so a rule may refer to the user
        // group and to an earlier date (purge = expiry + 1y).
        fields.sort_by_key(|(f, _)| (f.is_date(), *f));
        for (f, g) in &fields {
            let Some(d) = &g.date else { continue };
            let rules = d.default.iter().chain(d.by_group.iter().map(|(_, r)| r));
            for r in rules {
                if let rules::DateBase::Field(base) = r.base {
                    if base >= *f {
                        return Err(format!(
                            "{}: a date rule may only refer to an earlier date field \
                             (birth_date, expiry_date, purge_date), not `{}`",
                            f.name(),
                            base.name()
                        ));
                    }
                }
            }
        }

        let mut addresses = Vec::new();
        for (i, a) in profile.addresses.iter().enumerate() {
            let label = format!("addresses[{}]", i + 1);
            let mut parts = Vec::new();
            let specs = [
                (AddressPart::Line1, &a.line1),
                (AddressPart::Line2, &a.line2),
                (AddressPart::Line3, &a.line3),
                (AddressPart::Line4, &a.line4),
                (AddressPart::Line5, &a.line5),
                (AddressPart::City, &a.city),
                (AddressPart::StateProvince, &a.state_province),
                (AddressPart::PostalCode, &a.postal_code),
                (AddressPart::Country, &a.country),
                (AddressPart::AddressNote, &a.address_note),
                (AddressPart::StartDate, &a.start_date),
                (AddressPart::EndDate, &a.end_date),
            ];
            for (part, spec) in specs {
                if let Some(s) = spec {
                    let l = format!("{label}.{}", part.name());
                    parts.push((part, cx.getter(l, s, part.max_chars(), part.is_date())?));
                }
            }
            if !parts.iter().any(|(p, _)| *p == AddressPart::Line1)
                || !parts.iter().any(|(p, _)| *p == AddressPart::City)
            {
                return Err(format!(
                    "{label}: Alma needs `line1` and `city` in every address"
                ));
            }
            let types = cx.types(&label, &a.types)?;
            addresses.push(AddressMap {
                preferred: a.preferred,
                parts,
                types,
            });
        }
        let mut emails = Vec::new();
        for (i, e) in profile.emails.iter().enumerate() {
            let label = format!("emails[{}]", i + 1);
            emails.push(EmailMap {
                preferred: e.preferred,
                address: cx.getter(format!("{label}.address"), &e.address, 255, false)?,
                description: cx.opt(format!("{label}.description"), &e.description, 255)?,
                types: cx.types(&label, &e.types)?,
            });
        }
        let mut phones = Vec::new();
        for (i, p) in profile.phones.iter().enumerate() {
            let label = format!("phones[{}]", i + 1);
            phones.push(PhoneMap {
                preferred: p.preferred,
                preferred_sms: p.preferred_sms,
                number: cx.getter(format!("{label}.number"), &p.number, 255, false)?,
                types: cx.types(&label, &p.types)?,
            });
        }
        let mut identifiers = Vec::new();
        for (i, s) in profile.identifiers.iter().enumerate() {
            let label = format!("identifiers[{}]", i + 1);
            if s.id_type.trim().is_empty() {
                return Err(format!("{label}: `id_type` is empty"));
            }
            plain(&label, &s.id_type)?;
            plain(&label, &s.status)?;
            identifiers.push(IdentifierMap {
                id_type: s.id_type.trim().to_string(),
                value: cx.getter(format!("{label}.value"), &s.value, 255, false)?,
                note: cx.opt(format!("{label}.note"), &s.note, 2000)?,
                status: s.status.clone(),
            });
        }
        let mut statistics = Vec::new();
        for (i, s) in profile.statistics.iter().enumerate() {
            let label = format!("statistics[{}]", i + 1);
            statistics.push(StatisticMap {
                category: cx.getter(format!("{label}.category"), &s.category, 255, false)?,
                category_type: cx.opt(format!("{label}.category_type"), &s.category_type, 255)?,
                note: cx.opt(format!("{label}.note"), &s.note, 2000)?,
            });
        }
        let mut notes = Vec::new();
        for (i, n) in profile.notes.iter().enumerate() {
            let label = format!("notes[{}]", i + 1);
            if n.note_type.trim().is_empty() {
                return Err(format!("{label}: `note_type` is empty"));
            }
            plain(&label, &n.note_type)?;
            notes.push(NoteMap {
                note_type: n.note_type.trim().to_string(),
                text: cx.getter(format!("{label}.text"), &n.text, 2000, false)?,
                user_viewable: n.user_viewable,
                popup_note: n.popup_note,
            });
        }

        let mut mandatory = Vec::new();
        for m in &profile.rules.mandatory {
            let f = UserField::from_name(m)
                .ok_or_else(|| format!("rules.mandatory: `{m}` is not a user field"))?;
            if !fields.iter().any(|(g, _)| *g == f) {
                return Err(format!(
                    "rules.mandatory: `{m}` is mandatory but [fields] does not map it"
                ));
            }
            mandatory.push(f);
        }
        let match_id = match profile.rules.match_id.trim() {
            "primary_id" => {
                if !fields.iter().any(|(f, _)| *f == UserField::PrimaryId) {
                    return Err("rules.match_id is primary_id but [fields] does not map it".into());
                }
                if !mandatory.contains(&UserField::PrimaryId) {
                    mandatory.insert(0, UserField::PrimaryId);
                }
                MatchId::PrimaryId
            }
            t => {
                if !identifiers.iter().any(|i| i.id_type == t) {
                    return Err(format!(
                        "rules.match_id `{t}` is neither primary_id nor the id_type of an [[identifiers]] entry"
                    ));
                }
                MatchId::IdType(t.to_string())
            }
        };

        // A date other rules count from, the expiry date and a mandatory
        // date reject the record when unreadable; any other date is left
        // out with a warning rather than cost the patron their account.
        let keyed: Vec<UserField> = fields
            .iter()
            .filter_map(|(_, g)| g.date.as_ref())
            .chain(
                addresses
                    .iter()
                    .flat_map(|a| a.parts.iter().filter_map(|(_, g)| g.date.as_ref())),
            )
            .flat_map(|d| d.default.iter().chain(d.by_group.iter().map(|(_, r)| r)))
            .filter_map(|r| match r.base {
                rules::DateBase::Field(f) => Some(f),
                _ => None,
            })
            .collect();
        for (f, g) in &mut fields {
            if let Some(d) = &mut g.date {
                d.optional =
                    *f != UserField::ExpiryDate && !mandatory.contains(f) && !keyed.contains(f);
            }
        }

        Ok(Mapper {
            columns: columns.to_vec(),
            used: cx.used,
            fields,
            addresses,
            emails,
            phones,
            identifiers,
            statistics,
            notes,
            tables,
            mandatory,
            match_id,
            identifier_case: profile.rules.identifier_case,
            as_of,
            pad_ragged: profile.input.ragged_rows == RaggedRows::Pad,
            replace_forbidden: profile.input.forbidden_chars == ForbiddenChars::Replace,
        })
    }
}
