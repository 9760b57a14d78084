//! Column names the usual student and HR systems give, by what patronload
//! makes of them. Names compare upper-cased with everything but letters
//! and digits removed (`Family Name` = `FAMILYNAME`).

/// What a column is taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Role {
    PrimaryId,
    LastName,
    FirstName,
    MiddleName,
    UserGroup,
    Email,
    Phone,
    Barcode,
    ExpiryDate,
    PurgeDate,
    BirthDate,
    Line1,
    Line2,
    City,
    State,
    Postal,
}

/// The system an extract comes from; its names are tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Oracle PeopleSoft Campus Solutions / HCM (`EMPLID`, `ACAD_CAREER`).
    PeopleSoft,
    /// Ellucian Banner (`SPRIDEN_ID`, `GOREMAL_EMAIL_ADDRESS`).
    Banner,
    /// Ellucian Colleague (`PERSON_ID`, `STU_ACAD_LEVELS`).
    Colleague,
    /// Workday (`Employee_ID`, `Legal_Last_Name`, `Worker_Type`).
    Workday,
}

impl Preset {
    /// The preset named `name` (`peoplesoft`, `banner`, `colleague`,
    /// `workday`).
    pub fn parse(name: &str) -> Option<Preset> {
        match name.to_ascii_lowercase().as_str() {
            "peoplesoft" => Some(Preset::PeopleSoft),
            "banner" => Some(Preset::Banner),
            "colleague" => Some(Preset::Colleague),
            "workday" => Some(Preset::Workday),
            _ => None,
        }
    }

    /// The preset's name.
    pub fn name(self) -> &'static str {
        match self {
            Preset::PeopleSoft => "peoplesoft",
            Preset::Banner => "banner",
            Preset::Colleague => "colleague",
            Preset::Workday => "workday",
        }
    }

    fn names(self) -> &'static [(&'static str, Role)] {
        use Role::*;
        match self {
            Preset::PeopleSoft => &[
                ("EMPLID", PrimaryId),
                ("LASTNAME", LastName),
                ("FIRSTNAME", FirstName),
                ("MIDDLENAME", MiddleName),
                ("ACADCAREER", UserGroup),
                ("ACADLEVEL", UserGroup),
                ("EMPLCLASS", UserGroup),
                ("EMAILADDR", Email),
                ("PHONE", Phone),
                ("ADDRESS1", Line1),
                ("ADDRESS2", Line2),
                ("POSTAL", Postal),
                ("BIRTHDATE", BirthDate),
            ],
            Preset::Banner => &[
                ("SPRIDENID", PrimaryId),
                ("SPRIDENLASTNAME", LastName),
                ("SPRIDENFIRSTNAME", FirstName),
                ("SPRIDENMI", MiddleName),
                ("STVLEVLCODE", UserGroup),
                ("SGBSTDNLEVLCODE", UserGroup),
                ("PTYPE", UserGroup),
                ("GOREMALEMAILADDRESS", Email),
                ("SPRTELEPHONENUMBER", Phone),
                ("SPRADDRSTREETLINE1", Line1),
                ("SPRADDRSTREETLINE2", Line2),
                ("SPRADDRCITY", City),
                ("SPRADDRSTATCODE", State),
                ("SPRADDRZIP", Postal),
                ("SPBPERSBIRTHDATE", BirthDate),
            ],
            Preset::Colleague => &[
                ("PERSONID", PrimaryId),
                ("ID", PrimaryId),
                ("LASTNAME", LastName),
                ("FIRSTNAME", FirstName),
                ("MIDDLENAME", MiddleName),
                ("STUACADLEVELS", UserGroup),
                ("PERSONEMAILADDRESSES", Email),
                ("PERSONALPHONENUMBER", Phone),
                ("BIRTHDATE", BirthDate),
            ],
            Preset::Workday => &[
                ("EMPLOYEEID", PrimaryId),
                ("WORKERID", PrimaryId),
                ("STUDENTID", PrimaryId),
                ("LEGALLASTNAME", LastName),
                ("LEGALFIRSTNAME", FirstName),
                ("LEGALMIDDLENAME", MiddleName),
                ("WORKERTYPE", UserGroup),
                ("ACADEMICLEVEL", UserGroup),
                ("PRIMARYWORKEMAIL", Email),
                ("PRIMARYWORKPHONE", Phone),
                ("DATEOFBIRTH", BirthDate),
            ],
        }
    }
}

/// Names any system may use.
const COMMON: &[(&str, Role)] = {
    use Role::*;
    &[
        ("PRIMARYID", PrimaryId),
        ("EMPLID", PrimaryId),
        ("SPRIDENID", PrimaryId),
        ("ID", PrimaryId),
        ("PERSONID", PrimaryId),
        ("STUDENTID", PrimaryId),
        ("EMPLOYEEID", PrimaryId),
        ("WORKERID", PrimaryId),
        ("UNIVERSITYID", PrimaryId),
        ("UNIVID", PrimaryId),
        ("PATRONID", PrimaryId),
        ("USRNAME", PrimaryId),
        ("BANNERID", PrimaryId),
        ("LASTNAME", LastName),
        ("SURNAME", LastName),
        ("FAMILYNAME", LastName),
        ("LEGALLASTNAME", LastName),
        ("SPRIDENLASTNAME", LastName),
        ("LNAME", LastName),
        ("LAST", LastName),
        ("FIRSTNAME", FirstName),
        ("GIVENNAME", FirstName),
        ("FIRSTGIVENNAME", FirstName),
        ("LEGALFIRSTNAME", FirstName),
        ("SPRIDENFIRSTNAME", FirstName),
        ("FNAME", FirstName),
        ("FIRST", FirstName),
        ("MIDDLENAME", MiddleName),
        ("SECONDGIVENNAME", MiddleName),
        ("SPRIDENMI", MiddleName),
        ("USERGROUP", UserGroup),
        ("PATRONTYPE", UserGroup),
        ("PATRONGROUP", UserGroup),
        ("ACADEMICLEVEL", UserGroup),
        ("ACADLEVEL", UserGroup),
        ("ACADCAREER", UserGroup),
        ("STUDENTLEVEL", UserGroup),
        ("EMPLOYEETYPE", UserGroup),
        ("WORKERTYPE", UserGroup),
        ("EMPLCLASS", UserGroup),
        ("EMPCLASS", UserGroup),
        ("PROFILE", UserGroup),
        ("PTYPE", UserGroup),
        ("BARCODE", Barcode),
        ("ACTIVEBARCODE", Barcode),
        ("LIBRARYBARCODE", Barcode),
        ("CARDNUMBER", Barcode),
        ("EXPIRYDATE", ExpiryDate),
        ("EXPIRATIONDATE", ExpiryDate),
        ("EXPDATE", ExpiryDate),
        ("EXPIRES", ExpiryDate),
        ("ENDDATE", ExpiryDate),
        ("PURGEDATE", PurgeDate),
        ("BIRTHDATE", BirthDate),
        ("DATEOFBIRTH", BirthDate),
        ("DOB", BirthDate),
        ("ADDRESS1", Line1),
        ("ADDR1", Line1),
        ("ADDRESSLINE1", Line1),
        ("STREET", Line1),
        ("STREET1", Line1),
        ("ADD1STREET1", Line1),
        ("ADDRESS2", Line2),
        ("ADDR2", Line2),
        ("ADDRESSLINE2", Line2),
        ("STREET2", Line2),
        ("ADD1STREET2", Line2),
        ("CITY", City),
        ("ADD1CITY", City),
        ("STATE", State),
        ("PROVINCE", State),
        ("STATEPROVINCE", State),
        ("ADD1STATE", State),
        ("ZIP", Postal),
        ("ZIPCODE", Postal),
        ("POSTAL", Postal),
        ("POSTALCODE", Postal),
        ("POSTCODE", Postal),
        ("ADD1POSTCODE", Postal),
    ]
};

/// `Family Name` → `FAMILYNAME`.
pub(super) fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// What a column named `name` is, by the preset's names first, then the
/// common ones, then a few patterns (`…EMAIL…`, `…PHONE…`).
pub(super) fn role_of(name: &str, preset: Option<Preset>) -> Option<Role> {
    let n = normalize(name);
    let exact = |list: &[(&str, Role)]| list.iter().find(|(k, _)| *k == n).map(|(_, r)| *r);
    if let Some(r) = preset.and_then(|p| exact(p.names())) {
        return Some(r);
    }
    if let Some(r) = exact(COMMON) {
        return Some(r);
    }
    if n.contains("EMAIL") {
        return Some(Role::Email);
    }
    if n.contains("PHONE") {
        return Some(Role::Phone);
    }
    None
}

/// Whether any preset or the common list knows `name`.
pub(super) fn known(name: &str) -> bool {
    role_of(name, None).is_some()
        || [
            Preset::PeopleSoft,
            Preset::Banner,
            Preset::Colleague,
            Preset::Workday,
        ]
        .iter()
        .any(|p| role_of(name, Some(*p)).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_each_system() {
        assert_eq!(role_of("EMPLID", None), Some(Role::PrimaryId));
        assert_eq!(role_of("Family Name", None), Some(Role::LastName));
        assert_eq!(role_of("CCA Email", None), Some(Role::Email));
        assert_eq!(role_of("day_phone", None), Some(Role::Phone));
        assert_eq!(
            role_of("SPRIDEN_LAST_NAME", Some(Preset::Banner)),
            Some(Role::LastName)
        );
        assert_eq!(
            role_of("Worker_Type", Some(Preset::Workday)),
            Some(Role::UserGroup)
        );
        assert_eq!(role_of("Programs", None), None);
        assert!(known("STU_ACAD_LEVELS"));
        assert_eq!(Preset::parse("Banner"), Some(Preset::Banner));
        assert_eq!(Preset::parse("sap"), None);
    }
}
