//! Pure value rules: XML character cleaning, letter case, templates and
//! date rules. No I/O, no state; each is unit-tested on its own.

use std::borrow::Cow;

use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{Datelike, Days, Months, NaiveDate};

use crate::model::UserField;
use crate::profile::CaseRule;

/// Whether XML 1.0 allows `c` in character data. Rust strings cannot hold
/// lone surrogates, so what is left to refuse is the C0 controls other
/// than tab, LF and CR, and the non-characters U+FFFE and U+FFFF.
pub fn xml_allowed(c: char) -> bool {
    !matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}

/// Removes characters XML 1.0 forbids, returning how many were removed.
/// Borrows when there is nothing to remove (the common case, decided on
/// bytes: a control byte, or 0xEF that may start U+FFFE/U+FFFF).
pub fn strip_forbidden(s: &str) -> (Cow<'_, str>, u64) {
    // No early exit: the loop vectorizes, and values are short.
    let suspicious = s.bytes().fold(false, |acc, b| {
        acc | ((b < 0x20) & !matches!(b, b'\t' | b'\n' | b'\r')) | (b == 0xEF)
    });
    if !suspicious || s.chars().all(xml_allowed) {
        return (Cow::Borrowed(s), 0);
    }
    let kept: String = s.chars().filter(|&c| xml_allowed(c)).collect();
    let removed = (s.chars().count() - kept.chars().count()) as u64;
    (Cow::Owned(kept), removed)
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

/// Input date formats, compiled once rather than re-parsed per value.
#[derive(Debug, Clone)]
pub struct DateFormats {
    items: Vec<Vec<Item<'static>>>,
    /// The formats as written, for messages.
    pub text: Vec<String>,
}

impl DateFormats {
    /// Compiles strftime formats; the error names the bad one.
    pub fn new(formats: &[String]) -> Result<DateFormats, String> {
        let mut items = Vec::with_capacity(formats.len());
        for f in formats {
            let it = StrftimeItems::new(f)
                .parse_to_owned()
                .map_err(|_| format!("date format `{f}` is not a valid strftime format"))?;
            items.push(it);
        }
        Ok(DateFormats {
            items,
            text: formats.to_vec(),
        })
    }
}

/// Parses `s` with the first of `formats` that accepts it.
pub fn parse_date(s: &str, formats: &DateFormats) -> Option<NaiveDate> {
    formats
        .items
        .iter()
        .find_map(|items| {
            let mut p = Parsed::new();
            chrono::format::parse(&mut p, s, items.iter()).ok()?;
            p.to_naive_date().ok()
        })
        .filter(|d| in_range(*d))
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

    #[test]
    fn forbidden_characters_are_removed_and_counted() {
        let (s, n) = strip_forbidden("a\u{0}b\u{1F}c\td\u{FFFE}");
        assert_eq!((s.as_ref(), n), ("abc\td", 3));
        assert!(matches!(strip_forbidden("plain é"), (Cow::Borrowed(_), 0)));
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
        let f = DateFormats::new(&["%Y-%m-%d".to_string(), "%m/%d/%Y".to_string()]).unwrap();
        assert_eq!(parse_date("07/18/1990", &f), Some(ymd(1990, 7, 18)));
        assert_eq!(parse_date("2027-13-45", &f), None);
        assert_eq!(parse_date("0099-01-01", &f), None);
        assert_eq!(format_date(ymd(2027, 6, 30)), "2027-06-30Z");
        assert_eq!(format_date(ymd(1001, 1, 2)), "1001-01-02Z");
        assert!(DateFormats::new(&["%Q".to_string()]).is_err());
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
