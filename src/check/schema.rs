//! The parts of Ex Libris' `rest_user.xsd` (User XSD v2) that `check`
//! enforces, as a static table: which children an element may have, in
//! which order, how often, and what its text must look like.
//!
//! We hand-write the table instead of compiling the XSD because Alma's
//! loader needs only this much, the schema's annotations (`xs:tags`,
//! `xs:codeTable`) are not XSD a Rust validator understands, and a table
//! keeps the per-user check a few lookups. The `researcher` subtree
//! (Esploro) and API-only lists are checked as opaque: present or not.
//! Facts come from the saved schema in `shared/reference/`, §4 of
//! `alma-user-xml.md`.

/// What an element's content must be.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Content {
    /// A string of at most this many characters (0: unbounded).
    Text(u32),
    /// A code: a string of at most `.0` characters with an optional
    /// `desc` attribute of at most `.1` characters.
    Code(u32, u32),
    /// `xs:date`: `YYYY-MM-DD` with an optional `Z` or `±hh:mm`.
    Date,
    /// `xs:dateTime`.
    DateTime,
    /// `xs:boolean`: `true`, `false`, `1` or `0`.
    Bool,
    /// `xs:int` with an optional `link` attribute.
    Int,
    /// `xs:float` with an optional `link` attribute.
    Float,
    /// Child elements, per the group.
    Group(&'static Group),
    /// Anything; not looked into (Esploro's `researcher`).
    Opaque,
}

/// One allowed child element.
#[derive(Debug)]
pub(crate) struct Child {
    /// Element name.
    pub(crate) name: &'static str,
    /// What it holds.
    pub(crate) content: Content,
    /// `minOccurs="1"`.
    pub(crate) required: bool,
    /// `maxOccurs="unbounded"`.
    pub(crate) many: bool,
    /// Attributes other than a code's `desc`.
    pub(crate) attrs: &'static [(&'static str, AttrType)],
}

/// What an attribute value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrType {
    /// `xs:boolean`.
    Bool,
    /// A string of at most this many characters (0: unbounded).
    Text(u32),
}

/// A content model: `xs:all` (any order) or `xs:sequence` (in order).
#[derive(Debug)]
pub(crate) struct Group {
    /// Whether children must come in table order (`xs:sequence`).
    pub(crate) ordered: bool,
    /// The allowed children.
    pub(crate) children: &'static [Child],
}

impl Group {
    /// The allowed child `name` and its index in the table.
    pub(crate) fn child(&self, name: &str) -> Option<(usize, &'static Child)> {
        self.children
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
    }
}

const fn c(name: &'static str, content: Content) -> Child {
    Child {
        name,
        content,
        required: false,
        many: false,
        attrs: &[],
    }
}

const fn req(name: &'static str, content: Content) -> Child {
    Child {
        name,
        content,
        required: true,
        many: false,
        attrs: &[],
    }
}

const fn many(
    name: &'static str,
    content: Content,
    attrs: &'static [(&'static str, AttrType)],
) -> Child {
    Child {
        name,
        content,
        required: false,
        many: true,
        attrs,
    }
}

const S255: Content = Content::Text(255);
const CODE: Content = Content::Code(255, 4000);
const SEGMENT: &[(&str, AttrType)] = &[("segment_type", AttrType::Text(10))];
const PREFERRED: &[(&str, AttrType)] = &[
    ("preferred", AttrType::Bool),
    ("segment_type", AttrType::Text(10)),
];
const PHONE_ATTRS: &[(&str, AttrType)] = &[
    ("preferred", AttrType::Bool),
    ("preferred_sms", AttrType::Bool),
    ("segment_type", AttrType::Text(10)),
];
const LINK: &[(&str, AttrType)] = &[("link", AttrType::Text(0))];

/// `<users>`: any number of `<user>`.
pub(crate) static USERS_ATTRS: &[(&str, AttrType)] = &[("total_record_count", AttrType::Text(0))];

/// `<user>` (an `xs:all`), with its one attribute.
pub(crate) static USER: Group = Group {
    ordered: false,
    children: &[
        c("record_type", CODE),
        c("primary_id", S255),
        c("first_name", S255),
        c("middle_name", S255),
        c("last_name", S255),
        c("full_name", Content::Text(600)),
        c("pin_number", S255),
        c("user_title", CODE),
        c("job_category", CODE),
        c("job_description", S255),
        c("gender", CODE),
        c("user_group", CODE),
        c("campus_code", Content::Code(50, 255)),
        c("web_site_url", S255),
        c("cataloger_level", CODE),
        c("preferred_language", CODE),
        c("birth_date", Content::Date),
        c("expiry_date", Content::Date),
        c("purge_date", Content::Date),
        c("account_type", CODE),
        c("external_id", S255),
        c("password", S255),
        c("force_password_change", Content::Text(4)),
        c("status", CODE),
        c("status_date", Content::Date),
        c("last_patron_activity_date", Content::Date),
        Child {
            attrs: LINK,
            ..c("requests", Content::Int)
        },
        Child {
            attrs: LINK,
            ..c("loans", Content::Int)
        },
        Child {
            attrs: LINK,
            ..c("fees", Content::Float)
        },
        c("contact_info", Content::Group(&CONTACT_INFO)),
        c("user_identifiers", Content::Group(&USER_IDENTIFIERS)),
        c("user_roles", Content::Group(&USER_ROLES)),
        c("user_blocks", Content::Group(&USER_BLOCKS)),
        c("user_notes", Content::Group(&USER_NOTES)),
        c("user_statistics", Content::Group(&USER_STATISTICS)),
        c("proxy_for_users", Content::Group(&PROXY_FOR_USERS)),
        c("rs_libraries", Content::Group(&RS_LIBRARIES)),
        c("library_notices", Content::Group(&LIBRARY_NOTICES)),
        c("source_link_id", Content::Text(0)),
        c("source_institution_code", Content::Text(0)),
        c("linking_id", Content::Text(0)),
        c("pref_first_name", S255),
        c("pref_middle_name", S255),
        c("pref_last_name", S255),
        c("pref_name_suffix", S255),
        c("is_researcher", Content::Bool),
        c("researcher", Content::Opaque),
    ],
};

/// Attributes of `<user>`.
pub(crate) static USER_ATTRS: &[(&str, AttrType)] = LINK;

static CONTACT_INFO: Group = Group {
    // The one sequence Alma users trip over: addresses, emails, phones.
    ordered: true,
    children: &[
        c("addresses", Content::Group(&ADDRESSES)),
        c("emails", Content::Group(&EMAILS)),
        c("phones", Content::Group(&PHONES)),
    ],
};

static ADDRESSES: Group = Group {
    ordered: true,
    children: &[many("address", Content::Group(&ADDRESS), PREFERRED)],
};

static ADDRESS: Group = Group {
    ordered: false,
    children: &[
        c("line1", Content::Text(0)),
        c("line2", S255),
        c("line3", S255),
        c("line4", S255),
        c("line5", S255),
        c("city", S255),
        c("state_province", S255),
        c("postal_code", S255),
        c("country", CODE),
        c("address_note", Content::Text(1000)),
        c("start_date", Content::Date),
        c("end_date", Content::Date),
        req("address_types", Content::Group(&ADDRESS_TYPES)),
    ],
};

static ADDRESS_TYPES: Group = Group {
    ordered: true,
    children: &[many("address_type", CODE, &[])],
};

static EMAILS: Group = Group {
    ordered: true,
    children: &[many("email", Content::Group(&EMAIL), PREFERRED)],
};

static EMAIL: Group = Group {
    ordered: false,
    children: &[
        req("email_address", S255),
        c("description", S255),
        req("email_types", Content::Group(&EMAIL_TYPES)),
    ],
};

static EMAIL_TYPES: Group = Group {
    ordered: true,
    children: &[many("email_type", CODE, &[])],
};

static PHONES: Group = Group {
    ordered: true,
    children: &[many("phone", Content::Group(&PHONE), PHONE_ATTRS)],
};

static PHONE: Group = Group {
    ordered: false,
    children: &[
        req("phone_number", S255),
        req("phone_types", Content::Group(&PHONE_TYPES)),
    ],
};

static PHONE_TYPES: Group = Group {
    ordered: true,
    children: &[many("phone_type", CODE, &[])],
};

static USER_IDENTIFIERS: Group = Group {
    ordered: true,
    children: &[many(
        "user_identifier",
        Content::Group(&USER_IDENTIFIER),
        SEGMENT,
    )],
};

static USER_IDENTIFIER: Group = Group {
    ordered: false,
    children: &[
        req("id_type", CODE),
        req("value", S255),
        c("note", Content::Text(2000)),
        c("status", S255),
    ],
};

static USER_ROLES: Group = Group {
    ordered: true,
    children: &[many("user_role", Content::Group(&USER_ROLE), &[])],
};

static USER_ROLE: Group = Group {
    ordered: false,
    children: &[
        c("status", CODE),
        c("scope", Content::Code(50, 255)),
        c("role_type", CODE),
        c("expiry_date", Content::Date),
        c("parameters", Content::Group(&PARAMETERS)),
    ],
};

static PARAMETERS: Group = Group {
    ordered: true,
    children: &[many("parameter", Content::Group(&PARAMETER), &[])],
};

static PARAMETER: Group = Group {
    ordered: false,
    children: &[
        c("type", CODE),
        c("scope", Content::Code(255, 255)),
        c("value", CODE),
    ],
};

static USER_STATISTICS: Group = Group {
    ordered: true,
    children: &[many(
        "user_statistic",
        Content::Group(&USER_STATISTIC),
        SEGMENT,
    )],
};

static USER_STATISTIC: Group = Group {
    ordered: false,
    children: &[
        req("statistic_category", CODE),
        c("category_type", CODE),
        c("statistic_note", Content::Text(2000)),
    ],
};

static PROXY_FOR_USERS: Group = Group {
    ordered: true,
    children: &[many(
        "proxy_for_user",
        Content::Group(&PROXY_FOR_USER),
        LINK,
    )],
};

static PROXY_FOR_USER: Group = Group {
    ordered: true,
    children: &[c("primary_id", S255), c("full_name", Content::Text(600))],
};

static USER_NOTES: Group = Group {
    ordered: true,
    children: &[many("user_note", Content::Group(&USER_NOTE), SEGMENT)],
};

static USER_NOTE: Group = Group {
    ordered: false,
    children: &[
        req("note_type", CODE),
        c("note_text", Content::Text(2000)),
        req("user_viewable", Content::Bool),
        req("popup_note", Content::Bool),
        c("created_by", S255),
        c("created_date", Content::DateTime),
    ],
};

static USER_BLOCKS: Group = Group {
    ordered: true,
    children: &[many("user_block", Content::Group(&USER_BLOCK), SEGMENT)],
};

static USER_BLOCK: Group = Group {
    ordered: false,
    children: &[
        c("block_type", CODE),
        req("block_description", CODE),
        c("block_status", S255),
        c("block_note", Content::Text(2000)),
        c("created_by", S255),
        c("created_date", Content::DateTime),
        c("expiry_date", Content::DateTime),
        c("item_loan_id", Content::Text(0)),
    ],
};

static RS_LIBRARIES: Group = Group {
    ordered: true,
    children: &[many("rs_library", Content::Group(&RS_LIBRARY), &[])],
};

static RS_LIBRARY: Group = Group {
    ordered: false,
    children: &[c("code", Content::Code(50, 255))],
};

static LIBRARY_NOTICES: Group = Group {
    ordered: true,
    children: &[many("library_notice", Content::Group(&LIBRARY_NOTICE), &[])],
};

static LIBRARY_NOTICE: Group = Group {
    ordered: false,
    children: &[
        c("code", Content::Code(255, 255)),
        c("value", Content::Bool),
    ],
};

/// Element names of the obsolete v1 (SOAP) user format, which Alma's v2
/// loader does not know. Seen in files built from old templates.
pub(crate) const V1_NAMES: &[&str] = &[
    "userRecord",
    "recordType",
    "userDetails",
    "userIdentifiers",
    "userIdentifier",
    "userAddressList",
    "userAddress",
    "userEmail",
    "userPhone",
    "userNoteList",
    "userNote",
    "userStatistics",
    "userStatistic",
    "userBlockList",
    "owneredEntity",
    "firstName",
    "lastName",
    "middleName",
    "userGroup",
    "expiryDate",
    "purgeDate",
    "userName",
    "emailAddress",
    "phoneNumber",
    "statisticCategory",
    "idType",
];
