//! The Alma user as patronload builds it: only what User XSD v2 allows,
//! only non-empty values, segments already complete.
//!
//! The mapping stage produces a [`User`]; the XML stage writes it without
//! further checks, so every rule that keeps Alma from rejecting a user
//! (no empty dates, no identifier without a value, at most one preferred)
//! is enforced before a value reaches this type.

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
pub struct User {
    /// Single-valued fields, non-empty, sorted by [`UserField`] order.
    pub fields: Vec<(UserField, String)>,
    /// Complete addresses (line1, city and at least one type).
    pub addresses: Vec<Address>,
    /// Complete emails.
    pub emails: Vec<Email>,
    /// Complete phones.
    pub phones: Vec<Phone>,
    /// Identifiers with a value, distinct from each other and from the
    /// primary id.
    pub identifiers: Vec<Identifier>,
    /// Notes with a text.
    pub notes: Vec<Note>,
    /// Statistics with a category.
    pub statistics: Vec<Statistic>,
}

impl User {
    /// The value of a single-valued field, if present.
    pub fn get(&self, field: UserField) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
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
pub struct Address {
    /// Preferred mark (at most one per user).
    pub preferred: bool,
    /// Non-empty parts in schema order.
    pub parts: Vec<(AddressPart, String)>,
    /// Address type codes (at least one).
    pub types: Vec<String>,
}

/// One email.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Email {
    /// Preferred mark (at most one per user).
    pub preferred: bool,
    /// The address.
    pub address: String,
    /// Optional description.
    pub description: Option<String>,
    /// Email type codes (at least one).
    pub types: Vec<String>,
}

/// One phone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Phone {
    /// Preferred mark (at most one per user).
    pub preferred: bool,
    /// Preferred-for-SMS mark (at most one per user).
    pub preferred_sms: bool,
    /// The number.
    pub number: String,
    /// Phone type codes (at least one).
    pub types: Vec<String>,
}

/// One additional identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identifier {
    /// Identifier type code.
    pub id_type: String,
    /// The value (non-empty, trimmed).
    pub value: String,
    /// Optional note.
    pub note: Option<String>,
    /// Status (`ACTIVE` by default).
    pub status: String,
}

/// One note.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// Note type code.
    pub note_type: String,
    /// Text (non-empty).
    pub text: String,
    /// Visible to the patron.
    pub user_viewable: bool,
    /// Pops up at circulation.
    pub popup_note: bool,
}

/// One statistic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Statistic {
    /// Category code (non-empty).
    pub category: String,
    /// Optional category type code.
    pub category_type: Option<String>,
    /// Optional note.
    pub note: Option<String>,
}
