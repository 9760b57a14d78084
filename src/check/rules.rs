//! Per-user checks: the schema table (`schema.rs`) plus the Alma
//! semantic checks of `alma-user-xml.md` §7 (mandatory fields, empty
//! identifier values and statistic categories, one preferred entry per
//! kind, identifier values distinct within the user, known codes).
//!
//! Pure functions over one [`Node`]; uniqueness *across* users lives in
//! the driver because it needs the whole package in order.

use chrono::{NaiveDate, NaiveTime};

use super::codes::CodeTables;
use super::parse::Node;
use super::schema::{AttrType, Child, Content, Group, USER, USER_ATTRS, V1_NAMES};
use super::Code;

/// One problem in a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Reason code.
    pub code: Code,
    /// Line of the element concerned.
    pub line: u64,
    /// Element path inside `<user>` (`contact_info/emails/email`).
    pub field: String,
    /// Message without personal data.
    pub message: String,
}

fn issue(out: &mut Vec<Issue>, code: Code, node: &Node, field: &str, message: String) {
    out.push(Issue {
        code,
        line: node.line,
        field: field.to_string(),
        message,
    });
}

/// Checks one user; appends what is wrong to `out`.
pub(crate) fn check_user(user: &Node, codes: Option<&CodeTables>, out: &mut Vec<Issue>) {
    check_attrs(user, USER_ATTRS, None, "user", out);
    if user.forbidden > 0 {
        forbidden(user, "user", out);
    }
    check_group(user, &USER, "", codes, out);
    semantics(user, out);
}

fn forbidden(node: &Node, field: &str, out: &mut Vec<Issue>) {
    issue(
        out,
        Code::ForbiddenChar,
        node,
        field,
        format!(
            "{} control or non-character(s) in <{}> (XML 1.0 forbids C0 controls and \
             U+FFFE/U+FFFF, and a C1 control or DEL is a mis-decoded byte); a forbidden one \
             makes Alma fail the whole file",
            node.forbidden, node.name
        ),
    );
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}/{name}")
    }
}

fn check_group(
    node: &Node,
    group: &Group,
    path: &str,
    codes: Option<&CodeTables>,
    out: &mut Vec<Issue>,
) {
    let here = if path.is_empty() { "user" } else { path };
    if !node.text.trim().is_empty() {
        issue(
            out,
            Code::UnexpectedText,
            node,
            here,
            format!(
                "text directly inside <{}>, which holds only elements",
                node.name
            ),
        );
    }
    let mut counts = vec![0u32; group.children.len()];
    let mut last = 0usize;
    for child in &node.children {
        let field = join(path, &child.name);
        let Some((idx, spec)) = group.child(&child.name) else {
            let (code, what) = if V1_NAMES.contains(&child.name.as_str()) {
                (Code::V1Element, "a v1 (SOAP) element; v2 does not know it")
            } else {
                (Code::UnknownElement, "not allowed here by rest_user.xsd")
            };
            issue(
                out,
                code,
                child,
                &field,
                format!("<{}> in <{}> is {what}", child.name, node.name),
            );
            continue;
        };
        counts[idx] += 1;
        if counts[idx] == 2 && !spec.many {
            issue(
                out,
                Code::RepeatedElement,
                child,
                &field,
                format!("<{}> appears more than once in <{}>", child.name, node.name),
            );
        }
        if group.ordered {
            if idx < last {
                let order: Vec<&str> = group.children.iter().map(|c| c.name).collect();
                issue(
                    out,
                    Code::ElementOrder,
                    child,
                    &field,
                    format!(
                        "<{}> is out of order in <{}>, which wants {}",
                        child.name,
                        node.name,
                        order.join(", ")
                    ),
                );
            }
            last = last.max(idx);
        }
        check_child(child, spec, &field, codes, out);
    }
    for (spec, n) in group.children.iter().zip(&counts) {
        if spec.required && *n == 0 {
            issue(
                out,
                Code::MissingField,
                node,
                &join(path, spec.name),
                format!("<{}> has no <{}>, which is mandatory", node.name, spec.name),
            );
        }
    }
}

fn check_attrs(
    node: &Node,
    allowed: &[(&str, AttrType)],
    desc: Option<u32>,
    field: &str,
    out: &mut Vec<Issue>,
) {
    for (k, v) in &node.attrs {
        let ty = if k == "desc" {
            desc.map(AttrType::Text)
        } else {
            allowed.iter().find(|(n, _)| n == k).map(|(_, t)| *t)
        };
        match ty {
            None => issue(
                out,
                Code::UnknownAttribute,
                node,
                field,
                format!("unknown attribute {k} on <{}>", node.name),
            ),
            Some(AttrType::Bool) if !is_bool(v) => issue(
                out,
                Code::InvalidBoolean,
                node,
                field,
                format!(
                    "attribute {k} on <{}> is not an xs:boolean (true, false, 1, 0)",
                    node.name
                ),
            ),
            Some(AttrType::Text(n)) if n > 0 && v.chars().count() > n as usize => issue(
                out,
                Code::TooLong,
                node,
                field,
                format!(
                    "attribute {k} on <{}> is {} characters, more than {n}",
                    node.name,
                    v.chars().count()
                ),
            ),
            Some(_) => {}
        }
    }
}

fn check_child(
    node: &Node,
    spec: &Child,
    field: &str,
    codes: Option<&CodeTables>,
    out: &mut Vec<Issue>,
) {
    if node.forbidden > 0 {
        forbidden(node, field, out);
    }
    let desc = match spec.content {
        Content::Code(_, d) => Some(d),
        _ => None,
    };
    check_attrs(node, spec.attrs, desc, field, out);
    let simple = !matches!(spec.content, Content::Group(_) | Content::Opaque);
    if simple {
        if let Some(c) = node.children.first() {
            issue(
                out,
                Code::UnknownElement,
                c,
                &join(field, &c.name),
                format!("<{}> inside <{}>, which holds only text", c.name, node.name),
            );
        }
    }
    let text = node.text.trim();
    let name = &node.name;
    let (empty_code, bad_code, kind, ok): (Code, Code, &str, fn(&str) -> bool) = match spec.content
    {
        Content::Group(g) => return check_group(node, g, field, codes, out),
        Content::Opaque => return,
        Content::Text(n) | Content::Code(n, _) => {
            let len = node.text.chars().count();
            if n > 0 && len > n as usize {
                issue(
                    out,
                    Code::TooLong,
                    node,
                    field,
                    format!("<{name}> is {len} characters, more than the {n} the schema allows"),
                );
            }
            if let (Some(t), Content::Code(..)) = (codes, spec.content) {
                if !text.is_empty() && !t.knows(name, text) {
                    issue(
                        out,
                        Code::UnknownCode,
                        node,
                        field,
                        format!("<{name}> code {text} is not in the institution's code table"),
                    );
                }
            }
            return;
        }
        Content::Date => (Code::EmptyDate, Code::InvalidDate, "xs:date", is_date),
        Content::DateTime => (
            Code::EmptyDate,
            Code::InvalidDate,
            "xs:dateTime",
            is_datetime,
        ),
        Content::Bool => (
            Code::EmptyBoolean,
            Code::InvalidBoolean,
            "xs:boolean",
            is_bool,
        ),
        Content::Int => (Code::EmptyNumber, Code::InvalidNumber, "xs:int", is_int),
        Content::Float => (Code::EmptyNumber, Code::InvalidNumber, "xs:float", is_float),
    };
    if text.is_empty() {
        // An optional empty element can simply be left out (what repack
        // does); a mandatory one cannot, so it is plainly invalid.
        let code = if spec.required { bad_code } else { empty_code };
        issue(
            out,
            code,
            node,
            field,
            format!("empty <{name}>: '' is not a valid {kind}"),
        );
    } else if !ok(text) {
        issue(
            out,
            bad_code,
            node,
            field,
            format!("<{name}> is not a valid {kind}"),
        );
    }
}

/// Whether an optional element of this content would be dropped by
/// repack when empty (empty dates, booleans and numbers).
pub(crate) fn droppable_when_empty(content: Content) -> bool {
    matches!(
        content,
        Content::Date | Content::DateTime | Content::Bool | Content::Int | Content::Float
    )
}

fn semantics(user: &Node, out: &mut Vec<Issue>) {
    match user.child("primary_id") {
        Some(p) if !p.text.trim().is_empty() => {}
        Some(p) => issue(
            out,
            Code::MissingField,
            p,
            "primary_id",
            "empty <primary_id>: the match identifier must be in every user".into(),
        ),
        None => issue(
            out,
            Code::MissingField,
            user,
            "primary_id",
            "no <primary_id>: the match identifier must be in every user".into(),
        ),
    }
    for ids in user
        .children
        .iter()
        .filter(|c| c.name == "user_identifiers")
    {
        for id in ids.children.iter().filter(|c| c.name == "user_identifier") {
            if let Some(v) = id.child("value") {
                if v.text.trim().is_empty() {
                    issue(
                        out,
                        Code::EmptyIdentifier,
                        v,
                        "user_identifiers/user_identifier/value",
                        "empty identifier <value>; Alma rejects the user (\"Mandatory field is \
                         missing: User identifier value\")"
                            .into(),
                    );
                }
            }
        }
    }
    for stats in user.children.iter().filter(|c| c.name == "user_statistics") {
        for s in stats.children.iter().filter(|c| c.name == "user_statistic") {
            if let Some(c) = s.child("statistic_category") {
                if c.text.trim().is_empty() {
                    issue(
                        out,
                        Code::EmptyStatisticCategory,
                        c,
                        "user_statistics/user_statistic/statistic_category",
                        "empty <statistic_category>; Alma rejects the user (\"missing a \
                         mandatory field: statistical category\")"
                            .into(),
                    );
                }
            }
        }
    }
    for ci in user.children.iter().filter(|c| c.name == "contact_info") {
        for (list, item) in [
            ("addresses", "address"),
            ("emails", "email"),
            ("phones", "phone"),
        ] {
            let entries: Vec<&Node> = ci
                .children
                .iter()
                .filter(|c| c.name == list)
                .flat_map(|l| l.children.iter().filter(|c| c.name == item))
                .collect();
            let mut attrs = vec!["preferred"];
            if item == "phone" {
                attrs.push("preferred_sms");
            }
            for a in attrs {
                let marked: Vec<&&Node> = entries
                    .iter()
                    .filter(|e| matches!(e.attr(a).map(str::trim), Some("true" | "1")))
                    .collect();
                if marked.len() > 1 {
                    issue(
                        out,
                        Code::MultiplePreferred,
                        marked[1],
                        &format!("contact_info/{list}/{item}"),
                        format!(
                            "{} <{item}> entries have {a}=\"true\"; Alma allows one",
                            marked.len()
                        ),
                    );
                }
            }
        }
    }
    // Identifier values must be distinct within the user too (§6.5).
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (id_type, node) in id_values(user) {
        let v = node.text.trim();
        if v.is_empty() {
            continue;
        }
        let key = crate::map::fold(v);
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
            issue(
                out,
                Code::IdRepeatedInUser,
                node,
                if id_type == "primary_id" {
                    "primary_id"
                } else {
                    "user_identifiers/user_identifier/value"
                },
                format!(
                    "identifier of type {id_type} and value {v} repeats this user's {first}; \
                     Alma rejects the user"
                ),
            );
        } else {
            seen.push((key, id_type));
        }
    }
}

/// The identifier values of a user in claim order, primary id first:
/// `(id_type, value node)`.
pub(crate) fn id_values(user: &Node) -> Vec<(&str, &Node)> {
    let mut v = Vec::new();
    if let Some(p) = user.child("primary_id") {
        v.push(("primary_id", p));
    }
    for ids in user
        .children
        .iter()
        .filter(|c| c.name == "user_identifiers")
    {
        for id in ids.children.iter().filter(|c| c.name == "user_identifier") {
            if let Some(val) = id.child("value") {
                let t = id.child_text("id_type").unwrap_or("");
                v.push((t, val));
            }
        }
    }
    v
}

fn is_bool(s: &str) -> bool {
    matches!(s.trim(), "true" | "false" | "1" | "0")
}

fn is_int(s: &str) -> bool {
    s.parse::<i32>().is_ok()
}

fn is_float(s: &str) -> bool {
    matches!(s, "INF" | "-INF" | "NaN")
        || (s.parse::<f32>().is_ok()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b".+-eE".contains(&b)))
}

/// `xs:date`: `YYYY-MM-DD` plus an optional `Z` or `±hh:mm`.
fn is_date(s: &str) -> bool {
    s.len() >= 10 && s.is_char_boundary(10) && plain_date(&s[..10]) && is_zone(&s[10..])
}

fn plain_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok()
}

fn is_zone(z: &str) -> bool {
    match z.as_bytes() {
        [] | [b'Z'] => true,
        [s, h1, h2, b':', m1, m2] if (*s == b'+' || *s == b'-') => {
            let d = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit()).then(|| (a - b'0') * 10 + (b - b'0'))
            };
            matches!((d(*h1, *h2), d(*m1, *m2)), (Some(h), Some(m)) if h <= 14 && m < 60)
        }
        _ => false,
    }
}

/// `xs:dateTime`: date `T` `hh:mm:ss[.fff]` plus an optional zone.
fn is_datetime(s: &str) -> bool {
    let Some((d, rest)) = s.split_once('T') else {
        return false;
    };
    if !plain_date(d) || rest.len() < 8 || !rest.is_char_boundary(8) {
        return false;
    }
    let (hms, mut tail) = rest.split_at(8);
    if NaiveTime::parse_from_str(hms, "%H:%M:%S").is_err() {
        return false;
    }
    if let Some(frac) = tail.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        tail = &frac[n..];
    }
    is_zone(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_forms() {
        assert!(is_date("2027-06-30Z") && is_date("2027-06-30") && is_date("2027-06-30+02:00"));
        assert!(!is_date("2027-06-30T00:00:00Z") && !is_date("06/30/2027") && !is_date(""));
        assert!(!is_date("2027-02-30"));
        assert!(is_datetime("2019-12-18T14:36:48.659Z") && is_datetime("2019-12-18T14:36:48"));
        assert!(!is_datetime("2019-12-18"));
        assert!(is_bool("true") && is_bool("0") && !is_bool("TRUE") && !is_bool(""));
    }
}
