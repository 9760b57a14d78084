//! What changed in a user: element names, never values.
//!
//! Both sides are `<user>` elements as [`crate::write::xml`] writes them
//! (one element per line, two spaces of indent per level), so the
//! comparison reads lines rather than parsing: the top-level children of
//! `<user>` are compared whole, and `contact_info` one level down
//! (`addresses`, `emails`, `phones`), so a new phone number is reported
//! as `phones`, not as the whole contact block.

use memchr::memmem;

/// The primary id of a user's XML, unescaped; `None` if it has none.
pub(crate) fn primary_id(xml: &[u8]) -> Option<String> {
    let start = memmem::find(xml, b"<primary_id>")? + b"<primary_id>".len();
    let len = memmem::find(&xml[start..], b"</primary_id>")?;
    let raw = std::str::from_utf8(&xml[start..start + len]).ok()?;
    Some(unescape(raw))
}

/// Undoes the writer's escaping of `<`, `>` and `&`.
pub(crate) fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The comparable parts of a user: (element name, its lines), in
/// document order.
pub(crate) fn parts(xml: &[u8]) -> Vec<(&str, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut in_contact = false;
    while pos < xml.len() {
        let end = memchr::memchr(b'\n', &xml[pos..]).map_or(xml.len(), |n| pos + n + 1);
        let line = &xml[pos..end];
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[indent..];
        let opening = rest.first() == Some(&b'<') && rest.get(1).is_some_and(|&b| b != b'/');
        let level = if in_contact { 6 } else { 4 };
        if indent == 4 && in_contact && rest.starts_with(b"</contact_info>") {
            in_contact = false;
        } else if opening && indent == level {
            let name_end = rest
                .iter()
                .position(|&b| b == b'>' || b == b' ')
                .unwrap_or(rest.len());
            let name = std::str::from_utf8(&rest[1..name_end]).unwrap_or("?");
            let mut close = Vec::with_capacity(name.len() + 3);
            close.extend_from_slice(b"</");
            close.extend_from_slice(name.as_bytes());
            close.push(b'>');
            if memmem::find(rest, &close).is_some() {
                out.push((name, line));
            } else if name == "contact_info" && !in_contact {
                in_contact = true;
            } else {
                // A block: up to its closing line at the same indent.
                let mut closing = vec![b' '; indent];
                closing.extend_from_slice(&close);
                let block_end = memmem::find(&xml[end..], &closing)
                    .map(|n| end + n + closing.len())
                    .unwrap_or(xml.len());
                let block_end = memchr::memchr(b'\n', &xml[block_end..])
                    .map_or(xml.len(), |n| block_end + n + 1);
                out.push((name, &xml[pos..block_end]));
                pos = block_end;
                continue;
            }
        }
        pos = end;
    }
    out
}

/// The names of the parts that differ between `old` and `new` (present
/// in one only, or with other content), sorted.
pub(crate) fn changed_fields(old: &[u8], new: &[u8]) -> Vec<String> {
    let (a, b) = (parts(old), parts(new));
    let mut names: Vec<&str> = a.iter().chain(&b).map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|n| {
            let x = a.iter().filter(|(m, _)| m == n).map(|(_, c)| *c);
            let y = b.iter().filter(|(m, _)| m == n).map(|(_, c)| *c);
            !x.eq(y)
        })
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Email, Phone, User, UserField};
    use crate::write::xml::write_user;

    fn user(last: &str, phone: Option<&str>, group: &str) -> Vec<u8> {
        let u = User {
            fields: vec![
                (UserField::PrimaryId, "S&1".into()),
                (UserField::LastName, last.into()),
                (UserField::UserGroup, group.into()),
                (UserField::PrefFirstName, "Al".into()),
            ],
            emails: vec![Email {
                preferred: true,
                address: "a@example.edu".into(),
                description: None,
                types: vec!["school".into()],
            }],
            phones: phone
                .map(|p| Phone {
                    preferred: true,
                    preferred_sms: false,
                    number: p.into(),
                    types: vec!["mobile".into()],
                })
                .into_iter()
                .collect(),
            ..User::default()
        };
        let mut out = Vec::new();
        write_user(&mut out, &u);
        out
    }

    #[test]
    fn primary_id_is_unescaped() {
        assert_eq!(primary_id(&user("X", None, "G")).as_deref(), Some("S&1"));
        assert_eq!(primary_id(b"<user></user>"), None);
    }

    #[test]
    fn names_the_fields_that_differ_and_only_those() {
        let a = user("Smith", None, "STAFF");
        assert!(changed_fields(&a, &a).is_empty());
        let b = user("Jones", Some("555"), "STAFF");
        assert_eq!(changed_fields(&a, &b), ["last_name", "phones"]);
        let c = user("Smith", None, "GRAD");
        assert_eq!(changed_fields(&a, &c), ["user_group"]);
        let names: Vec<&str> = parts(&b).iter().map(|p| p.0).collect();
        assert_eq!(
            names,
            [
                "primary_id",
                "last_name",
                "user_group",
                "emails",
                "phones",
                "pref_first_name"
            ]
        );
    }
}
