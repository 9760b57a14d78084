//! XML serialization: patronload's templated writer against quick-xml's
//! element-builder `Writer`, on the same users. This is the measurement
//! behind the choice made in `src/write/xml.rs`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use patronload::model::{
    Address, AddressPart, Email, Identifier, Note, Phone, Statistic, User, UserField,
};
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

/// A fully populated user, the shape of a typical SIS record, with a
/// little escaping (`&`).
fn sample(i: usize) -> User<'static> {
    User {
        fields: vec![
            (UserField::PrimaryId, format!("S{i:07}").into()),
            (UserField::FirstName, "Ada".into()),
            (UserField::MiddleName, "Q".into()),
            (UserField::LastName, "Example & Sons".into()),
            (UserField::JobDescription, "HIST (UG)".into()),
            (UserField::UserGroup, "UNDERGRAD".into()),
            (UserField::CampusCode, "MAIN".into()),
            (UserField::PreferredLanguage, "en".into()),
            (UserField::BirthDate, "2004-02-29Z".into()),
            (UserField::ExpiryDate, "2027-06-30Z".into()),
            (UserField::PurgeDate, "2028-06-30Z".into()),
            (UserField::Status, "ACTIVE".into()),
        ],
        addresses: vec![Address {
            preferred: true,
            parts: vec![
                (AddressPart::Line1, "12 Example Street".into()),
                (AddressPart::City, "Springfield".into()),
                (AddressPart::StateProvince, "IL".into()),
                (AddressPart::PostalCode, "62701".into()),
                (AddressPart::Country, "USA".into()),
            ],
            types: vec!["home".into()],
        }],
        emails: vec![Email {
            preferred: true,
            address: format!("ada{i}@example.edu").into(),
            description: None,
            types: vec!["school".into()],
        }],
        phones: vec![Phone {
            preferred: true,
            preferred_sms: true,
            number: "+1 555 010 0001".into(),
            types: vec!["mobile".into()],
        }],
        identifiers: vec![Identifier {
            id_type: "BARCODE".into(),
            value: format!("2123400{i:07}").into(),
            note: None,
            status: "ACTIVE".into(),
        }],
        notes: vec![Note {
            note_type: "REGISTAR".into(),
            text: "Loaded from the SIS".into(),
            user_viewable: false,
            popup_note: false,
        }],
        statistics: vec![Statistic {
            category: "HIST".into(),
            category_type: None,
            note: None,
        }],
    }
}

fn text<W: std::io::Write>(w: &mut Writer<W>, name: &str, v: &str) {
    w.create_element(name)
        .write_text_content(BytesText::new(v))
        .unwrap();
}

fn tf(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// The same document through quick-xml's builder API.
fn builder(w: &mut Writer<&mut Vec<u8>>, u: &User) {
    w.create_element("user")
        .write_inner_content(|w| {
            for (f, v) in u.fields.iter().filter(|(f, _)| !f.is_tail()) {
                text(w, f.name(), v);
            }
            w.create_element("contact_info").write_inner_content(|w| {
                w.create_element("addresses").write_inner_content(|w| {
                    for a in &u.addresses {
                        w.create_element("address")
                            .with_attribute(("preferred", tf(a.preferred)))
                            .with_attribute(("segment_type", "External"))
                            .write_inner_content(|w| {
                                for (p, v) in &a.parts {
                                    text(w, p.name(), v);
                                }
                                w.create_element("address_types").write_inner_content(|w| {
                                    for t in &a.types {
                                        text(w, "address_type", t);
                                    }
                                    Ok(())
                                })?;
                                Ok(())
                            })?;
                    }
                    Ok(())
                })?;
                w.create_element("emails").write_inner_content(|w| {
                    for e in &u.emails {
                        w.create_element("email")
                            .with_attribute(("preferred", tf(e.preferred)))
                            .with_attribute(("segment_type", "External"))
                            .write_inner_content(|w| {
                                text(w, "email_address", &e.address);
                                w.create_element("email_types").write_inner_content(|w| {
                                    for t in &e.types {
                                        text(w, "email_type", t);
                                    }
                                    Ok(())
                                })?;
                                Ok(())
                            })?;
                    }
                    Ok(())
                })?;
                w.create_element("phones").write_inner_content(|w| {
                    for p in &u.phones {
                        w.create_element("phone")
                            .with_attribute(("preferred", tf(p.preferred)))
                            .with_attribute(("preferred_sms", tf(p.preferred_sms)))
                            .with_attribute(("segment_type", "External"))
                            .write_inner_content(|w| {
                                text(w, "phone_number", &p.number);
                                w.create_element("phone_types").write_inner_content(|w| {
                                    for t in &p.types {
                                        text(w, "phone_type", t);
                                    }
                                    Ok(())
                                })?;
                                Ok(())
                            })?;
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
            w.create_element("user_identifiers")
                .write_inner_content(|w| {
                    for i in &u.identifiers {
                        w.create_element("user_identifier")
                            .with_attribute(("segment_type", "External"))
                            .write_inner_content(|w| {
                                text(w, "id_type", &i.id_type);
                                text(w, "value", &i.value);
                                text(w, "status", &i.status);
                                Ok(())
                            })?;
                    }
                    Ok(())
                })?;
            w.create_element("user_notes").write_inner_content(|w| {
                for n in &u.notes {
                    w.create_element("user_note")
                        .with_attribute(("segment_type", "External"))
                        .write_inner_content(|w| {
                            text(w, "note_type", &n.note_type);
                            text(w, "note_text", &n.text);
                            text(w, "user_viewable", tf(n.user_viewable));
                            text(w, "popup_note", tf(n.popup_note));
                            Ok(())
                        })?;
                }
                Ok(())
            })?;
            w.create_element("user_statistics")
                .write_inner_content(|w| {
                    for s in &u.statistics {
                        w.create_element("user_statistic")
                            .with_attribute(("segment_type", "External"))
                            .write_inner_content(|w| {
                                text(w, "statistic_category", &s.category);
                                Ok(())
                            })?;
                    }
                    Ok(())
                })?;
            Ok(())
        })
        .unwrap();
}

fn bench(c: &mut Criterion) {
    let users: Vec<User> = (0..1000).map(sample).collect();
    let mut buf = Vec::with_capacity(4 << 20);
    for u in &users {
        patronload::write::xml::write_user(&mut buf, u);
    }
    let mut g = c.benchmark_group("xml_1000_users");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("templated", |b| {
        b.iter(|| {
            buf.clear();
            for u in &users {
                patronload::write::xml::write_user(&mut buf, black_box(u));
            }
            assert!(buf.len() > 1000 * 1000);
            black_box(&buf);
        })
    });
    g.bench_function("quick_xml_writer", |b| {
        b.iter(|| {
            buf.clear();
            let mut w = Writer::new_with_indent(&mut buf, b' ', 2);
            w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
                .unwrap();
            for u in &users {
                builder(&mut w, black_box(u));
            }
            assert!(buf.len() > 1000 * 1000);
            black_box(&buf);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
