use super::*;

#[test]
fn a_headerless_extract_gets_named_columns_and_todos() {
    let text = "810000001|Alpha, Ann|00|a1@example.edu|2027-01-31\n\
                810000002|Beta, Bo|01|b2@example.edu|2027-02-28\n\
                810000003|Gamma, Cy|00||2027-03-31\n";
    let p = propose_bytes(text.as_bytes(), "uga", None).unwrap();
    let prof = &p.profile;
    assert!(prof.contains("header = false"));
    assert!(prof.contains("columns = [\"COL1\", \"COL2\", \"COL3\", \"COL4\", \"COL5\"]"));
    assert!(prof.contains("primary_id = { column = \"COL1\" }"));
    assert!(prof.contains("address = { column = \"COL4\" }"));
    assert!(
        prof.contains("# TODO: `COL5` holds dates (%Y-%m-%d)"),
        "{prof}"
    );
    assert!(prof.contains("user_group = { value = \"PATRON\" }"));
    assert!(!prof.contains("Alpha") && !prof.contains("a1@example.edu"));
    assert!(p.notes.iter().any(|n| n.contains("last_name")));
    assert!(p
        .notes
        .iter()
        .all(|n| !n.contains("Alpha") && !n.contains("example.edu")));
    assert_eq!(p.records, 3);
}

#[test]
fn group_codes_are_listed_with_counts_and_blanks_get_a_default() {
    let text = "ID,LAST_NAME,PATRON_TYPE,EXPIRATION_DATE\n1,A,UG,12/31/2027\n2,B,UG,01/15/2028\n3,C,,\n4,D,FAC,02/01/2028\n";
    let p = propose_bytes(text.as_bytes(), "x", None).unwrap();
    let prof = &p.profile;
    assert!(
        prof.contains(
            "user_group = { column = \"PATRON_TYPE\", table = \"user_groups\", default = \"UG\" }"
        ),
        "{prof}"
    );
    assert!(
        prof.contains("UG = \"UG\"  # 2 records\nFAC = \"FAC\"  # 1 record\n"),
        "{prof}"
    );
    assert!(prof.contains("expiry_date = { column = \"EXPIRATION_DATE\", formats = [\"%m/%d/%Y\"], default = \"+1y\" }"), "{prof}");
    assert!(prof
        .contains("mandatory = [\"primary_id\", \"last_name\", \"user_group\", \"expiry_date\"]"));
}

#[test]
fn repeated_header_names_are_renamed_and_multiline_columns_found() {
    let text = "id,email,NOTE,email\n1,a@x.org,\"two\nlines\",b@y.org\n2,c@x.org,one,d@y.org\n";
    let p = propose_bytes(text.as_bytes(), "x", None).unwrap();
    assert!(
        p.profile
            .contains("columns = [\"id\", \"email\", \"NOTE\", \"email2\"]"),
        "{}",
        p.profile
    );
    assert!(p.profile.contains("multiline = [\"NOTE\"]"));
    assert_eq!(p.profile.matches("[[emails]]").count(), 2);
}

#[test]
fn an_empty_extract_is_an_error() {
    assert!(propose_bytes(b"\n\n", "x", None).is_err());
    assert!(propose_bytes(b"ID,LAST_NAME\n", "x", None).is_err());
}
