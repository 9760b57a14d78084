//! Pure value rules: XML character cleaning, letter case, templates and
//! date rules. No I/O, no state; each is unit-tested on its own.

use std::borrow::Cow;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{Datelike, Days, Months, NaiveDate};

use crate::model::UserField;
use crate::profile::CaseRule;

/// Whether `c` may appear in the XML patronload writes (and `check`
/// accepts). Rust strings cannot hold lone surrogates, so what is left to
/// refuse is what XML 1.0 forbids (the C0 controls other than tab, LF and
/// CR, and the non-characters U+FFFE and U+FFFF) and the controls it
/// discourages (DEL and the C1 block U+0080–U+009F, which XML 1.1 forbids
/// as literal text). No name or address holds a control: a C1 character
/// is a Windows-1252 byte read wrongly (`Bj\u{8D}rn`), never data.
pub fn xml_allowed(c: char) -> bool {
    !matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{7F}'..='\u{9F}' | '\u{FFFE}' | '\u{FFFF}')
}

/// Removes the characters [`xml_allowed`] refuses, returning how many
/// were removed. Borrows when there is nothing to remove (the common case,
/// decided on bytes: a control byte, DEL, 0xC2 that may start a C1
/// control, or 0xEF that may start U+FFFE/U+FFFF).
pub fn strip_forbidden(s: &str) -> (Cow<'_, str>, u64) {
    if !any_forbidden(s.as_bytes()) || s.chars().all(xml_allowed) {
        return (Cow::Borrowed(s), 0);
    }
    let kept: String = s.chars().filter(|&c| xml_allowed(c)).collect();
    let removed = (s.chars().count() - kept.chars().count()) as u64;
    (Cow::Owned(kept), removed)
}

/// Whether `bytes` (UTF-8) may hold a character [`xml_allowed`] refuses:
/// a control byte, DEL, 0xC2 (which may start a C1 control) or 0xEF
/// (which may start U+FFFE/U+FFFF). `false` proves there is none; run
/// once over a whole record, it spares every value its own scan.
pub fn any_forbidden(bytes: &[u8]) -> bool {
    // No early exit: the loop vectorizes.
    bytes.iter().fold(false, |acc, &b| {
        acc | ((b < 0x20) & !matches!(b, b'\t' | b'\n' | b'\r'))
            | (b == 0x7F)
            | (b == 0xC2)
            | (b == 0xEF)
    })
}

/// [`strip_forbidden`], or with `replace` each forbidden character
/// becomes U+FFFD instead of disappearing (so a reader sees something was
/// there). Returns how many characters were affected.
pub fn clean_forbidden(s: &str, replace: bool) -> (Cow<'_, str>, u64) {
    let (clean, n) = strip_forbidden(s);
    if n == 0 || !replace {
        return (clean, n);
    }
    let replaced = s
        .chars()
        .map(|c| if xml_allowed(c) { c } else { '\u{FFFD}' })
        .collect();
    (Cow::Owned(replaced), n)
}

/// [`clean_forbidden`] of a value that may already be owned, keeping
/// the borrow when nothing is removed.
pub fn clean_forbidden_cow(s: Cow<'_, str>, replace: bool) -> (Cow<'_, str>, u64) {
    match clean_forbidden(&s, replace) {
        (Cow::Owned(clean), n) => (Cow::Owned(clean), n),
        (Cow::Borrowed(_), n) => (s, n),
    }
}

/// `str::trim`, decided on two bytes for the usual value that starts
/// and ends with a visible ASCII character, instead of by the Unicode
/// white-space scan from both ends.
pub fn trim(s: &str) -> &str {
    if untrimmed(s) {
        s
    } else {
        s.trim()
    }
}

/// Whether `s` starts and ends with a visible ASCII character (so has
/// nothing to trim).
fn untrimmed(s: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
    edge(s.as_bytes().first()) && edge(s.as_bytes().last())
}

/// Whether `s` is empty or only white space.
pub fn is_blank(s: &str) -> bool {
    trim(s).is_empty()
}

/// Trims white space, keeping the borrow (or the allocation, when
/// nothing is trimmed).
pub fn trim_cow(s: Cow<'_, str>) -> Cow<'_, str> {
    if untrimmed(&s) {
        return s;
    }
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
    }
}

/// [`apply_case`], keeping the borrow when the value is already in that
/// case (identifiers and codes usually are): decided on bytes for ASCII,
/// by comparing with the converted text otherwise.
pub fn apply_case_cow(s: Cow<'_, str>, rule: CaseRule) -> Cow<'_, str> {
    // One pass: ASCII and without a letter of the other case.
    let already = match rule {
        CaseRule::Upper => s.bytes().all(|b| b < 0x80 && !b.is_ascii_lowercase()),
        CaseRule::Lower => s.bytes().all(|b| b < 0x80 && !b.is_ascii_uppercase()),
        CaseRule::Title => false,
    };
    if already {
        return s;
    }
    let converted = apply_case(&s, rule);
    if converted == *s {
        s
    } else {
        Cow::Owned(converted)
    }
}

/// Applies a letter-case rule.
pub fn apply_case(s: &str, rule: CaseRule) -> String {
    match rule {
        CaseRule::Upper => s.to_uppercase(),
        CaseRule::Lower => s.to_lowercase(),
        CaseRule::Title => {
            let mut out = String::with_capacity(s.len());
            let mut start = true;
            for c in s.chars() {
                if start {
                    out.extend(c.to_uppercase());
                } else {
                    out.extend(c.to_lowercase());
                }
                start = c.is_whitespace() || c == '-' || c == '\'';
            }
            out
        }
    }
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<C> {
    /// Literal text.
    Lit(String),
    /// A column reference.
    Col(C),
}

/// Parses `"{Last}, {First}"` into pieces naming columns. `{{` and `}}`
/// stand for literal braces.
pub fn parse_template(t: &str) -> Result<Vec<Piece<String>>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("template `{t}` has an unclosed `{{`")),
                    }
                }
                if !lit.is_empty() {
                    out.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                out.push(Piece::Col(name.trim().to_string()));
            }
            '}' => return Err(format!("template `{t}` has a `}}` without `{{`")),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    if !out.iter().any(|p| matches!(p, Piece::Col(_))) {
        return Err(format!(
            "template `{t}` names no column; use `value` for a constant"
        ));
    }
    Ok(out)
}

/// What a date rule counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateBase {
    /// The run's `--as-of` date.
    AsOf,
    /// Another date field of the same user.
    Field(UserField),
    /// A fixed date.
    Fixed(NaiveDate),
}

/// A date offset unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Calendar years (Feb 29 + 1y = Feb 28).
    Years,
    /// Calendar months.
    Months,
    /// Days.
    Days,
}

/// A parsed date rule: a base plus signed offsets, e.g. `expiry_date+1y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateRule {
    /// Where counting starts.
    pub base: DateBase,
    /// Offsets applied in order.
    pub offsets: Vec<(i64, Unit)>,
}

impl DateRule {
    /// Parses `+6y`, `-30d`, `+1y6m`, `expiry_date+1y`, `2030-06-30`,
    /// `as_of` or `today`.
    pub fn parse(s: &str) -> Result<DateRule, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "date rule `{s}` is not understood; write e.g. `+6y`, `+180d`, \
                 `expiry_date+1y` or `2030-06-30`"
            )
        };
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(DateRule {
                base: DateBase::Fixed(d),
                offsets: vec![],
            });
        }
        let split = s.find(['+', '-']).unwrap_or(s.len());
        let (head, mut rest) = s.split_at(split);
        let base = match head.trim() {
            "" | "as_of" | "today" => DateBase::AsOf,
            name => match UserField::from_name(name) {
                Some(f) if f.is_date() => DateBase::Field(f),
                _ => return Err(bad()),
            },
        };
        let mut offsets = Vec::new();
        while !rest.is_empty() {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            rest = &rest[1..];
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
            let unit = match rest[digits..].chars().next() {
                Some('y') => Unit::Years,
                Some('m') => Unit::Months,
                Some('d') => Unit::Days,
                _ => return Err(bad()),
            };
            offsets.push((sign * n, unit));
            rest = &rest[digits + 1..];
            // `+1y6m`: a unit may be followed directly by another number.
            if rest.starts_with(|c: char| c.is_ascii_digit()) {
                let sign_char = if sign > 0 { "+" } else { "-" };
                let owned = format!("{sign_char}{rest}");
                let tail = DateRule::parse(&owned)?;
                offsets.extend(tail.offsets);
                break;
            }
        }
        Ok(DateRule { base, offsets })
    }

    /// Applies the rule. `field` resolves other date fields of the user;
    /// `None` when the base is missing or the result is out of range.
    pub fn apply(
        &self,
        as_of: NaiveDate,
        field: impl Fn(UserField) -> Option<NaiveDate>,
    ) -> Option<NaiveDate> {
        let mut d = match self.base {
            DateBase::AsOf => as_of,
            DateBase::Fixed(d) => d,
            DateBase::Field(f) => field(f)?,
        };
        for &(n, unit) in &self.offsets {
            d = match unit {
                Unit::Years => add_months(d, n.checked_mul(12)?)?,
                Unit::Months => add_months(d, n)?,
                Unit::Days if n >= 0 => d.checked_add_days(Days::new(n as u64))?,
                Unit::Days => d.checked_sub_days(Days::new(n.unsigned_abs()))?,
            };
        }
        in_range(d).then_some(d)
    }
}

fn add_months(d: NaiveDate, n: i64) -> Option<NaiveDate> {
    let m = Months::new(u32::try_from(n.unsigned_abs()).ok()?);
    if n >= 0 {
        d.checked_add_months(m)
    } else {
        d.checked_sub_months(m)
    }
}

/// Whether a date can be written as a four-digit-year `xs:date`.
pub fn in_range(d: NaiveDate) -> bool {
    (1000..=9999).contains(&d.year())
}

/// How a two-digit year (`%y`) finds its century, relative to `--as-of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Century {
    /// The latest date that is not after `--as-of`: birth dates are never
    /// in the future, so `2/15/54` is 1954.
    Past,
    /// The hundred years ending this many years after the as-of year:
    /// with 50 and as-of 2026, `54` is 2054 and `95` is 1995.
    Window(u32),
}

impl Century {
    /// Parses the profile's `two_digit_year`: `"past"` or a number of
    /// years (0–99) the window reaches beyond the as-of year.
    pub fn parse(s: &str) -> Result<Century, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("past") {
            return Ok(Century::Past);
        }
        match s.trim_start_matches('+').parse::<u32>() {
            Ok(n) if n <= 99 => Ok(Century::Window(n)),
            _ => Err(format!(
                "two_digit_year `{s}` is not understood; write \"past\" or a number of years \
                 from 0 to 99 (how far after --as-of a two-digit year may reach, e.g. \"50\")"
            )),
        }
    }
}

/// Input date formats, compiled once rather than re-parsed per value.
#[derive(Debug, Clone)]
pub struct DateFormats {
    items: Vec<Vec<Item<'static>>>,
    /// Each format's literal text (white space aside), in order: a value
    /// that lacks it cannot parse, so the format is not tried (a profile
    /// may list seven formats, and chrono's parse is the dearest step).
    literals: Vec<Vec<u8>>,
    /// The formats as written, for messages.
    pub text: Vec<String>,
    /// How `%y` finds its century.
    pub century: Century,
}

impl DateFormats {
    /// Compiles strftime formats; the error names the bad one.
    pub fn new(formats: &[String], century: Century) -> Result<DateFormats, String> {
        let mut items = Vec::with_capacity(formats.len());
        for f in formats {
            let it = StrftimeItems::new(f)
                .parse_to_owned()
                .map_err(|_| format!("date format `{f}` is not a valid strftime format"))?;
            items.push(it);
        }
        let literals = items
            .iter()
            .map(|it| {
                it.iter()
                    .flat_map(|i| match i {
                        Item::Literal(l) => l.as_bytes(),
                        Item::OwnedLiteral(l) => l.as_bytes(),
                        _ => &[],
                    })
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect()
            })
            .collect();
        Ok(DateFormats {
            items,
            literals,
            text: formats.to_vec(),
            century,
        })
    }
}

/// What one format made of a value that did not become a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The value does not have the format's shape.
    Shape,
    /// A month, day or other number is out of range (month 13).
    Range,
    /// The numbers fit but name no day (February 30).
    Impossible,
    /// The format does not give a whole date (no day, no year).
    Incomplete,
    /// A date, but its year is outside 1000–9999 (`%Y` reading `95`).
    Year(i32),
}

impl Attempt {
    /// In words; `personal` leaves the year out.
    fn describe(self, personal: bool) -> String {
        match self {
            Attempt::Shape => "does not fit".into(),
            Attempt::Range => "a month or day is out of range".into(),
            Attempt::Impossible => "no such day".into(),
            Attempt::Incomplete => "does not give a whole date".into(),
            Attempt::Year(_) if personal => "the year is outside 1000-9999".into(),
            Attempt::Year(y) => format!("gives year {y}, outside 1000-9999"),
        }
    }
}

/// Parses `s` with the first of `formats` that gives a valid date (a
/// format whose year falls outside 1000–9999 does not stop the search:
/// `%m/%d/%Y` reads `9/19/95` as year 95, and `%m/%d/%y` after it then
/// gives 1995). A two-digit year takes its century per
/// `formats.century`. The error holds what each format gave, in order.
pub fn parse_date(
    s: &str,
    formats: &DateFormats,
    as_of: NaiveDate,
) -> Result<NaiveDate, Vec<Attempt>> {
    let one = |items: &[Item<'static>]| -> Result<NaiveDate, Attempt> {
        let mut p = Parsed::new();
        chrono::format::parse(&mut p, s, items.iter()).map_err(kind)?;
        match resolve(&p, formats.century, as_of) {
            Ok(d) if in_range(d) => Ok(d),
            Ok(d) => Err(Attempt::Year(d.year())),
            Err(e) => Err(kind(e)),
        }
    };
    // A format whose literal text is not in the value fails in chrono
    // too, so skipping it changes which format wins for no value.
    let fits = |lits: &[u8]| {
        let mut rest = s.as_bytes();
        lits.iter().all(|&b| match memchr::memchr(b, rest) {
            Some(i) => {
                rest = &rest[i + 1..];
                true
            }
            None => false,
        })
    };
    let found = formats
        .items
        .iter()
        .zip(&formats.literals)
        .filter(|(_, lits)| fits(lits))
        .find_map(|(items, _)| one(items).ok());
    if let Some(d) = found {
        return Ok(d);
    }
    // Unreadable values are rare: only then say what each format gave.
    Err(formats
        .items
        .iter()
        .map(|items| one(items).err().unwrap_or(Attempt::Shape))
        .collect())
}

fn kind(e: chrono::format::ParseError) -> Attempt {
    use chrono::format::ParseErrorKind as K;
    match e.kind() {
        K::OutOfRange => Attempt::Range,
        K::Impossible => Attempt::Impossible,
        K::NotEnough => Attempt::Incomplete,
        _ => Attempt::Shape,
    }
}

/// The date of a successful parse, a two-digit year placed per `century`
/// (chrono alone would put `54` in 2054 and `95` in 1995 whatever the
/// field means).
fn resolve(
    p: &Parsed,
    century: Century,
    as_of: NaiveDate,
) -> Result<NaiveDate, chrono::format::ParseError> {
    let (Some(yy), None, None) = (p.year_mod_100(), p.year(), p.year_div_100()) else {
        return p.to_naive_date();
    };
    let with_year = |y: i32| {
        let mut q = p.clone();
        q.set_year(i64::from(y))?;
        q.to_naive_date()
    };
    let now = as_of.year();
    match century {
        Century::Past => {
            let mut y = now - now.rem_euclid(100) + yy;
            if y > now {
                y -= 100;
            }
            match with_year(y) {
                Ok(d) if d > as_of => with_year(y - 100),
                r => r,
            }
        }
        Century::Window(ahead) => {
            let hi = now + ahead as i32;
            with_year(hi - (hi - yy).rem_euclid(100))
        }
    }
}

/// Why a present date value was refused, naming each format and what it
/// gave. `value` is quoted only when it is not personal data (`None` for
/// a birth date); it is cut and escaped (see [`crate::error::excerpt`]).
pub fn date_failure(
    label: &str,
    value: Option<&str>,
    formats: &DateFormats,
    tried: &[Attempt],
) -> String {
    let each: Vec<String> = formats
        .text
        .iter()
        .zip(tried)
        .map(|(f, a)| format!("{f}: {}", a.describe(value.is_none())))
        .collect();
    let what = match value {
        Some(v) => format!("{label} `{}`", crate::error::excerpt(v, 60)),
        None => format!("{label} (not shown: personal data)"),
    };
    format!(
        "{what} is not a date in any of the formats ({})",
        each.join("; ")
    )
}

/// Formats a date the way patronload always emits it: `YYYY-MM-DDZ`.
pub fn format_date(d: NaiveDate) -> String {
    let y = d.year();
    if !(0..=9999).contains(&y) {
        return format!("{y:04}-{:02}-{:02}Z", d.month(), d.day());
    }
    // Every user has two or three dates: skip the formatting machinery.
    let digit = |n: u32| char::from(b'0' + (n % 10) as u8);
    let (y, m, day) = (y as u32, d.month(), d.day());
    let mut s = String::with_capacity(11);
    s.extend([digit(y / 1000), digit(y / 100), digit(y / 10), digit(y)]);
    s.extend([
        '-',
        digit(m / 10),
        digit(m),
        '-',
        digit(day / 10),
        digit(day),
        'Z',
    ]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    proptest::proptest! {
        /// The whole-record check is sound: when it finds nothing, no
        /// character of any field is forbidden.
        #[test]
        fn no_suspicious_byte_means_nothing_forbidden(
            s in "(\\PC|[\u{0}-\u{1F}\u{7F}-\u{9F}\u{FFFE}\u{FFFF}])*"
        ) {
            if !any_forbidden(s.as_bytes()) {
                proptest::prop_assert!(s.chars().all(xml_allowed));
            }
            proptest::prop_assert_eq!(
                strip_forbidden(&s).0.into_owned(),
                s.chars().filter(|&c| xml_allowed(c)).collect::<String>()
            );
        }

        /// Skipping formats whose literal text is missing never changes
        /// which date a value gives.
        #[test]
        fn the_literal_filter_changes_no_date(
            d in 1u32..=31, m in 1u32..=12, y in 1900i32..2100, mon in 0usize..12,
            shape in 0usize..9, junk in "[-./ 0-9A-Za-z]{0,3}"
        ) {
            const MON: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
            let v = match shape {
                0 => format!("{y}-{m:02}-{d:02}"),
                1 => format!("{m}/{d}/{y}"),
                2 => format!("{d:02}.{m:02}.{y}"),
                3 => format!("{y}{m:02}{d:02}"),
                4 => format!("{d:02}-{}-{y}", MON[mon]),
                5 => format!("{} {d} {y}", MON[mon]),
                6 => format!("{m:02}/{d:02}/{:02}", y % 100),
                7 => format!("{m}/{d}/{y}{junk}"),
                _ => format!("{junk}{d}.{m}"),
            };
            let f = formats(
                &["%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%d-%b-%Y", "%b %d %Y", "%m/%d/%y"],
                Century::Past,
            );
            let as_of = ymd(2026, 11, 24);
            let every = f.items.iter().find_map(|items| {
                let mut p = Parsed::new();
                chrono::format::parse(&mut p, &v, items.iter()).ok()?;
                resolve(&p, f.century, as_of).ok().filter(|d| in_range(*d))
            });
            proptest::prop_assert_eq!(parse_date(&v, &f, as_of).ok(), every);
        }

        /// The case and trim shortcuts give what the plain rules give.
        #[test]
        fn cow_rules_match_the_plain_ones(s in "[ a-zA-Z0-9ßǅΣσé\t\u{A0}\u{3000}]{0,12}") {
            for rule in [CaseRule::Upper, CaseRule::Lower, CaseRule::Title] {
                proptest::prop_assert_eq!(
                    apply_case_cow(Cow::Borrowed(&s), rule).into_owned(),
                    apply_case(&s, rule)
                );
            }
            proptest::prop_assert_eq!(trim(&s), s.trim());
            proptest::prop_assert_eq!(is_blank(&s), s.trim().is_empty());
            proptest::prop_assert_eq!(trim_cow(Cow::Borrowed(&s)).into_owned(), s.trim());
            proptest::prop_assert_eq!(trim_cow(Cow::Owned(s.clone())).into_owned(), s.trim());
        }
    }

    #[test]
    fn forbidden_characters_are_removed_and_counted() {
        let (s, n) = strip_forbidden("a\u{0}b\u{1F}c\td\u{FFFE}");
        assert_eq!((s.as_ref(), n), ("abc\td", 3));
        assert!(matches!(strip_forbidden("plain é"), (Cow::Borrowed(_), 0)));
        // DEL and the C1 controls (undefined Windows-1252 bytes read as
        // Latin-1) go too; the letters around them, and U+00A0, stay.
        let (s, n) = strip_forbidden("Bj\u{8D}örn\u{7F}\u{80}\u{9F}\u{A0}x\u{7E}");
        assert_eq!((s.as_ref(), n), ("Björn\u{A0}x~", 4));
        assert!(matches!(strip_forbidden("Zoë ©"), (Cow::Borrowed(_), 0)));
    }

    #[test]
    fn case_rules() {
        assert_eq!(
            apply_case("o'brien-smith ann", CaseRule::Title),
            "O'Brien-Smith Ann"
        );
        assert_eq!(apply_case("Straße", CaseRule::Upper), "STRASSE");
        assert_eq!(apply_case("ABC", CaseRule::Lower), "abc");
    }

    #[test]
    fn templates_parse_and_refuse_nonsense() {
        let p = parse_template("{Last}, {First} {{x}}").unwrap();
        assert_eq!(
            p,
            vec![
                Piece::Col("Last".into()),
                Piece::Lit(", ".into()),
                Piece::Col("First".into()),
                Piece::Lit(" {x}".into()),
            ]
        );
        assert!(parse_template("{Last").is_err());
        assert!(parse_template("no columns").is_err());
    }

    #[test]
    fn date_rules_relative_to_as_of_fields_and_fixed() {
        let as_of = ymd(2026, 11, 24);
        let none = |_| None;
        assert_eq!(
            DateRule::parse("+6y").unwrap().apply(as_of, none),
            Some(ymd(2032, 11, 24))
        );
        assert_eq!(
            DateRule::parse("+180d").unwrap().apply(as_of, none),
            Some(ymd(2027, 5, 23))
        );
        assert_eq!(
            DateRule::parse("-1m").unwrap().apply(as_of, none),
            Some(ymd(2026, 10, 24))
        );
        assert_eq!(
            DateRule::parse("+1y6m").unwrap().apply(as_of, none),
            Some(ymd(2028, 5, 24))
        );
        assert_eq!(
            DateRule::parse("2382-12-21").unwrap().apply(as_of, none),
            Some(ymd(2382, 12, 21))
        );
        let rule = DateRule::parse("expiry_date+1y").unwrap();
        assert_eq!(rule.base, DateBase::Field(UserField::ExpiryDate));
        let leap = |_| Some(ymd(2028, 2, 29));
        assert_eq!(rule.apply(as_of, leap), Some(ymd(2029, 2, 28)));
        assert_eq!(rule.apply(as_of, none), None);
        assert!(DateRule::parse("+6x").is_err());
        assert!(DateRule::parse("last_name+1y").is_err());
        assert!(DateRule::parse("+99999y")
            .unwrap()
            .apply(as_of, none)
            .is_none());
    }

    #[test]
    fn dates_parse_with_listed_formats_and_emit_with_zone() {
        let f = formats(&["%Y-%m-%d", "%m/%d/%Y"], Century::Window(50));
        let as_of = ymd(2026, 11, 24);
        assert_eq!(parse_date("07/18/1990", &f, as_of), Ok(ymd(1990, 7, 18)));
        assert_eq!(
            parse_date("2027-13-45", &f, as_of).unwrap_err()[0],
            Attempt::Range
        );
        assert_eq!(
            parse_date("0099-01-01", &f, as_of).unwrap_err()[0],
            Attempt::Year(99)
        );
        assert_eq!(format_date(ymd(2027, 6, 30)), "2027-06-30Z");
        assert_eq!(format_date(ymd(1001, 1, 2)), "1001-01-02Z");
        assert!(DateFormats::new(&["%Q".to_string()], Century::Past).is_err());
    }

    fn formats(f: &[&str], century: Century) -> DateFormats {
        let owned: Vec<String> = f.iter().map(|s| s.to_string()).collect();
        DateFormats::new(&owned, century).unwrap()
    }

    #[test]
    fn a_format_giving_an_out_of_range_year_lets_the_next_one_try() {
        let as_of = ymd(2026, 11, 24);
        let f = formats(&["%m/%d/%Y", "%m/%d/%y"], Century::Past);
        assert_eq!(parse_date("9/19/95", &f, as_of), Ok(ymd(1995, 9, 19)));
        assert_eq!(parse_date("9/19/1995", &f, as_of), Ok(ymd(1995, 9, 19)));
        // Without the two-digit format the year-95 reading is refused.
        let only = formats(&["%m/%d/%Y"], Century::Past);
        assert_eq!(
            parse_date("9/19/95", &only, as_of),
            Err(vec![Attempt::Year(95)])
        );
        assert!(matches!(
            parse_date("2/30/1995", &only, as_of).unwrap_err()[..],
            [Attempt::Range | Attempt::Impossible]
        ));
    }

    #[test]
    fn two_digit_years_take_the_fields_century() {
        let as_of = ymd(2026, 11, 24);
        let past = formats(&["%m/%d/%y"], Century::Past);
        assert_eq!(parse_date("2/15/54", &past, as_of), Ok(ymd(1954, 2, 15)));
        assert_eq!(parse_date("2/15/26", &past, as_of), Ok(ymd(2026, 2, 15)));
        // Later this year than as-of: a birth date cannot be in the future.
        assert_eq!(parse_date("12/15/26", &past, as_of), Ok(ymd(1926, 12, 15)));
        assert_eq!(parse_date("11/24/26", &past, as_of), Ok(ymd(2026, 11, 24)));
        assert_eq!(parse_date("1/1/00", &past, as_of), Ok(ymd(2000, 1, 1)));
        let window = formats(&["%m/%d/%y"], Century::Window(50));
        assert_eq!(parse_date("6/30/54", &window, as_of), Ok(ymd(2054, 6, 30)));
        assert_eq!(parse_date("6/30/76", &window, as_of), Ok(ymd(2076, 6, 30)));
        assert_eq!(parse_date("6/30/77", &window, as_of), Ok(ymd(1977, 6, 30)));
        assert_eq!(parse_date("6/30/25", &window, as_of), Ok(ymd(2025, 6, 30)));
        // 2000 is a leap year, 1900 is not: the century decides the day.
        let narrow = formats(&["%m/%d/%y"], Century::Window(0));
        assert!(parse_date("2/29/00", &narrow, ymd(1999, 1, 1)).is_err());
        assert_eq!(
            parse_date("2/29/00", &narrow, ymd(2000, 1, 1)),
            Ok(ymd(2000, 2, 29))
        );
        assert_eq!(Century::parse("past"), Ok(Century::Past));
        assert_eq!(Century::parse("50"), Ok(Century::Window(50)));
        assert!(Century::parse("100").is_err());
        assert!(Century::parse("future").is_err());
    }

    #[test]
    fn date_failures_name_each_format_and_hide_personal_values() {
        let f = formats(&["%Y-%m-%d", "%m/%d/%Y"], Century::Past);
        let tried = parse_date("13/45/0095", &f, ymd(2026, 11, 24)).unwrap_err();
        let m = date_failure("birth_date", None, &f, &tried);
        assert!(!m.contains("0095") && !m.contains("13/45"), "{m}");
        assert!(m.contains("%Y-%m-%d: does not fit"), "{m}");
        assert!(
            m.contains("%m/%d/%Y: a month or day is out of range"),
            "{m}"
        );
        let tried = parse_date("09/19/0095", &f, ymd(2026, 11, 24)).unwrap_err();
        let m = date_failure("expiry_date", Some("09/19/0095"), &f, &tried);
        assert!(m.contains("`09/19/0095`"), "{m}");
        assert!(
            m.contains("%m/%d/%Y: gives year 95, outside 1000-9999"),
            "{m}"
        );
        let m = date_failure("birth_date", None, &f, &tried);
        assert!(!m.contains("95"), "{m}");
    }

    #[test]
    fn date_digits_match_the_formatter() {
        for y in [-5, 0, 7, 99, 999, 1000, 1999, 2026, 9999, 10_000] {
            for m in 1..=12 {
                for d in [1, 9, 10, 19, 28] {
                    let date = ymd(y, m, d);
                    let want = format!("{:04}-{:02}-{:02}Z", date.year(), m, d);
                    assert_eq!(format_date(date), want);
                }
            }
        }
    }
}
