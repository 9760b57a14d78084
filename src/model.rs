//! The Alma user as patronload builds it: only what User XSD v2 allows,
//! only non-empty values, segments already complete.
//!
//! The mapping stage produces a [`User`]; the XML stage writes it without
//! further checks, so every rule that keeps Alma from rejecting a user
//! (no empty dates, no identifier without a value, at most one preferred)
//! is enforced before a value reaches this type.
//!
//! Values are [`Cow`]s: the mapping stage borrows them from the record
//! and the profile where it can (an unchanged column, a table's output,
//! a type code), so a user costs a few allocations instead of one per
//! value; a user kept beyond its record is made [`User::into_owned`].

use std::borrow::Cow;

/// Single-valued `<user>` children patronload emits, in the schema's
/// declaration order (which Alma itself uses; `xs:all` accepts any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum UserField {
    PrimaryId,
    FirstName,
    MiddleName,
    LastName,
    PinNumber,
    UserTitle,
    JobCategory,
    JobDescription,
    Gender,
    UserGroup,
    CampusCode,
    WebSiteUrl,
    PreferredLanguage,
    BirthDate,
    ExpiryDate,
    PurgeDate,
    Status,
    PrefFirstName,
    PrefMiddleName,
    PrefLastName,
    PrefNameSuffix,
}

impl UserField {
    /// Every field, in emission order.
    pub const ALL: [UserField; 21] = [
        UserField::PrimaryId,
        UserField::FirstName,
        UserField::MiddleName,
        UserField::LastName,
        UserField::PinNumber,
        UserField::UserTitle,
        UserField::JobCategory,
        UserField::JobDescription,
        UserField::Gender,
        UserField::UserGroup,
        UserField::CampusCode,
        UserField::WebSiteUrl,
        UserField::PreferredLanguage,
        UserField::BirthDate,
        UserField::ExpiryDate,
        UserField::PurgeDate,
        UserField::Status,
        UserField::PrefFirstName,
        UserField::PrefMiddleName,
        UserField::PrefLastName,
        UserField::PrefNameSuffix,
    ];

    /// The Alma element name, which is also the profile key.
    pub fn name(self) -> &'static str {
        match self {
            UserField::PrimaryId => "primary_id",
            UserField::FirstName => "first_name",
            UserField::MiddleName => "middle_name",
            UserField::LastName => "last_name",
            UserField::PinNumber => "pin_number",
            UserField::UserTitle => "user_title",
            UserField::JobCategory => "job_category",
            UserField::JobDescription => "job_description",
            UserField::Gender => "gender",
            UserField::UserGroup => "user_group",
            UserField::CampusCode => "campus_code",
            UserField::WebSiteUrl => "web_site_url",
            UserField::PreferredLanguage => "preferred_language",
            UserField::BirthDate => "birth_date",
            UserField::ExpiryDate => "expiry_date",
            UserField::PurgeDate => "purge_date",
            UserField::Status => "status",
            UserField::PrefFirstName => "pref_first_name",
            UserField::PrefMiddleName => "pref_middle_name",
            UserField::PrefLastName => "pref_last_name",
            UserField::PrefNameSuffix => "pref_name_suffix",
        }
    }

    /// Looks a profile key up.
    pub fn from_name(name: &str) -> Option<UserField> {
        UserField::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Whether the value is an `xs:date`.
    pub fn is_date(self) -> bool {
        matches!(
            self,
            UserField::BirthDate | UserField::ExpiryDate | UserField::PurgeDate
        )
    }

    /// Whether the element comes after the segment lists (the `pref_*`
    /// names are declared last in the schema).
    pub fn is_tail(self) -> bool {
        self >= UserField::PrefFirstName
    }

    /// Maximum length in characters allowed by the schema.
    pub fn max_chars(self) -> usize {
        match self {
            UserField::CampusCode => 50,
            _ => 255,
        }
    }
}

/// A user ready to be written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User<'a> {
    /// Single-valued fields, non-empty, sorted by [`UserField`] order.
    pub fields: Vec<(UserField, Cow<'a, str>)>,
    /// Complete addresses (line1, city and at least one type).
    pub addresses: Vec<Address<'a>>,
    /// Complete emails.
    pub emails: Vec<Email<'a>>,
    /// Complete phones.
    pub phones: Vec<Phone<'a>>,
    /// Identifiers with a value, distinct from each other and from the
    /// primary id.
    pub identifiers: Vec<Identifier<'a>>,
    /// Notes with a text.
    pub notes: Vec<Note<'a>>,
    /// Statistics with a category.
    pub statistics: Vec<Statistic<'a>>,
}

impl User<'_> {
    /// The value of a single-valued field, if present.
    pub fn get(&self, field: UserField) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_ref())
    }

    /// The same user owning all its values, to keep beyond its record.
    pub fn into_owned(self) -> User<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        let owns = |v: Vec<Cow<'_, str>>| v.into_iter().map(own).collect();
        User {
            fields: self.fields.into_iter().map(|(f, v)| (f, own(v))).collect(),
            addresses: self
                .addresses
                .into_iter()
                .map(|a| Address {
                    preferred: a.preferred,
                    parts: a.parts.into_iter().map(|(p, v)| (p, own(v))).collect(),
                    types: owns(a.types),
                })
                .collect(),
            emails: self
                .emails
                .into_iter()
                .map(|e| Email {
                    preferred: e.preferred,
                    address: own(e.address),
                    description: e.description.map(own),
                    types: owns(e.types),
                })
                .collect(),
            phones: self
                .phones
                .into_iter()
                .map(|p| Phone {
                    preferred: p.preferred,
                    preferred_sms: p.preferred_sms,
                    number: own(p.number),
                    types: owns(p.types),
                })
                .collect(),
            identifiers: self
                .identifiers
                .into_iter()
                .map(|i| Identifier {
                    id_type: own(i.id_type),
                    value: own(i.value),
                    note: i.note.map(own),
                    status: own(i.status),
                })
                .collect(),
            notes: self
                .notes
                .into_iter()
                .map(|n| Note {
                    note_type: own(n.note_type),
                    text: own(n.text),
                    user_viewable: n.user_viewable,
                    popup_note: n.popup_note,
                })
                .collect(),
            statistics: self
                .statistics
                .into_iter()
                .map(|s| Statistic {
                    category: own(s.category),
                    category_type: s.category_type.map(own),
                    note: s.note.map(own),
                })
                .collect(),
        }
    }
}

/// Address children other than the types, in schema order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum AddressPart {
    Line1,
    Line2,
    Line3,
    Line4,
    Line5,
    City,
    StateProvince,
    PostalCode,
    Country,
    AddressNote,
    StartDate,
    EndDate,
}

impl AddressPart {
    /// Every part, in schema order.
    pub const ALL: [AddressPart; 12] = [
        AddressPart::Line1,
        AddressPart::Line2,
        AddressPart::Line3,
        AddressPart::Line4,
        AddressPart::Line5,
        AddressPart::City,
        AddressPart::StateProvince,
        AddressPart::PostalCode,
        AddressPart::Country,
        AddressPart::AddressNote,
        AddressPart::StartDate,
        AddressPart::EndDate,
    ];

    /// The Alma element name (also the profile key).
    pub fn name(self) -> &'static str {
        match self {
            AddressPart::Line1 => "line1",
            AddressPart::Line2 => "line2",
            AddressPart::Line3 => "line3",
            AddressPart::Line4 => "line4",
            AddressPart::Line5 => "line5",
            AddressPart::City => "city",
            AddressPart::StateProvince => "state_province",
            AddressPart::PostalCode => "postal_code",
            AddressPart::Country => "country",
            AddressPart::AddressNote => "address_note",
            AddressPart::StartDate => "start_date",
            AddressPart::EndDate => "end_date",
        }
    }

    /// Maximum length in characters. `line1` is unbounded in the schema;
    /// we hold it to 255 like the other lines because Alma's own forms do.
    pub fn max_chars(self) -> usize {
        match self {
            AddressPart::AddressNote => 1000,
            _ => 255,
        }
    }

    /// Whether the value is an `xs:date`.
    pub fn is_date(self) -> bool {
        matches!(self, AddressPart::StartDate | AddressPart::EndDate)
    }
}

/// One address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address<'a> {
    /// Preferred mark (at most one per user).
    pub preferred: bool,
    /// Non-empty parts in schema order.
    pub parts: Vec<(AddressPart, Cow<'a, str>)>,
    /// Address type codes (at least one).
    pub types: Vec<Cow<'a, str>>,
}

/// One email.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Email<'a> {
    /// Preferred mark (at most one per user).
    pub preferred: bool,
    /// The address.
    pub address: Cow<'a, str>,
    /// Optional description.
    pub description: Option<Cow<'a, str>>,
    /// Email type codes (at least one).
    pub types: Vec<Cow<'a, str>>,
}

/// One phone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phone<'a> {
    /// Preferred mark (at most one per user).
    pub preferred: bool,
    /// Preferred-for-SMS mark (at most one per user).
    pub preferred_sms: bool,
    /// The number.
    pub number: Cow<'a, str>,
    /// Phone type codes (at least one).
    pub types: Vec<Cow<'a, str>>,
}

/// One additional identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identifier<'a> {
    /// Identifier type code.
    pub id_type: Cow<'a, str>,
    /// The value (non-empty, trimmed).
    pub value: Cow<'a, str>,
    /// Optional note.
    pub note: Option<Cow<'a, str>>,
    /// Status (`ACTIVE` by default).
    pub status: Cow<'a, str>,
}

/// One note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note<'a> {
    /// Note type code.
    pub note_type: Cow<'a, str>,
    /// Text (non-empty).
    pub text: Cow<'a, str>,
    /// Visible to the patron.
    pub user_viewable: bool,
    /// Pops up at circulation.
    pub popup_note: bool,
}

/// One statistic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statistic<'a> {
    /// Category code (non-empty).
    pub category: Cow<'a, str>,
    /// Optional category type code.
    pub category_type: Option<Cow<'a, str>>,
    /// Optional note.
    pub note: Option<Cow<'a, str>>,
}
