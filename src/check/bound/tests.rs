use super::*;
use std::io::Read;

/// What quick-xml would be handed, the overflows, and the line count
/// once everything is consumed.
fn run(input: &str, cap: usize) -> (String, Vec<(u64, Kind)>, u64) {
    let (dec, _) = DecodeReader::new(input.as_bytes()).unwrap();
    let mut b = Bounded::new(dec, cap);
    let mut out = String::new();
    b.read_to_string(&mut out).unwrap();
    let lines = Bounded::lines(&b);
    let o: Vec<(u64, Kind)> = b.lx.overflows.iter().map(|o| (o.line, o.kind)).collect();
    (out, o, lines)
}

#[test]
fn tokens_under_the_cap_pass_unchanged() {
    let xml = "<?xml version=\"1.0\"?>\n<!DOCTYPE users [\n <!ENTITY a \"x>y\">\n \
               <!-- c > d -->\n]>\n<users a='1>2' b=\"'\">\n<user>t &amp; u<![CDATA[<x>]]>\
               <!-- -> -->\n<?pi a > b?></user><e/>\n</users>\n";
    let (out, o, lines) = run(xml, 64);
    assert_eq!(out, xml);
    assert!(o.is_empty(), "{o:?}");
    assert_eq!(lines, xml.matches('\n').count() as u64);
}

#[test]
fn long_tokens_are_replaced_and_lines_kept() {
    let big = "v\n".repeat(20);
    let name = "n".repeat(40);
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<users>\n<user a=\"{big}\">\n<{name}>x</{name}>\n\
         <t>{big}</t><!--{big}--><![CDATA[{big}]]><?p {big}?>\n<e b='{big}'/>\n\
         </user>\n</users>\n"
    );
    let (out, o, lines) = run(&xml, 32);
    assert!(!out.contains(&name), "{out}");
    let hashed = out
        .split('<')
        .find(|t| t.starts_with('n'))
        .and_then(|t| t.split('>').next())
        .unwrap()
        .to_string();
    assert!(
        hashed.starts_with("nnnn") && hashed.contains('.'),
        "{hashed}"
    );
    assert_eq!(
        out,
        format!(
            "<?xml version=\"1.0\"?>\n<users>\n<user>\n<{hashed}>x</{hashed}>\n\
             <t> </t><!----><![CDATA[]]><!---->\n<e/>\n</user>\n</users>\n"
        )
    );
    assert_eq!(
        o,
        [
            (3, Kind::StartTag),
            (24, Kind::Name),
            (24, Kind::Name),
            (25, Kind::Text { blank: false }),
            (45, Kind::Other),
            (65, Kind::Text { blank: false }),
            (85, Kind::Other),
            (106, Kind::StartTag),
        ]
    );
    assert_eq!(lines, xml.matches('\n').count() as u64);
}

#[test]
fn different_long_names_stay_different() {
    let a = format!("<users><{}x></{}y></users>", "n".repeat(40), "n".repeat(40));
    let (out, _, _) = run(&a, 32);
    let names: Vec<&str> = out
        .split(['<', '>', '/'])
        .filter(|t| t.starts_with('n'))
        .collect();
    assert_eq!(names.len(), 2);
    assert_ne!(names[0], names[1]);
    // And a self-closing tag's `/` is not part of its name.
    let (out, _, _) = run(&format!("<u><{}/></u>", "m".repeat(40)), 32);
    assert!(out.contains("/></u>"), "{out}");
    let (same, _, _) = run(
        &format!("<u><{}></{}></u>", "m".repeat(40), "m".repeat(40)),
        32,
    );
    let name = |s: &str| {
        s.split(['<', '>', '/'])
            .find(|t| t.starts_with('m'))
            .unwrap()
            .to_string()
    };
    assert_eq!(name(&out), name(&same));
}

#[test]
fn an_unterminated_long_token_stays_unterminated() {
    let (out, o, _) = run(&format!("<users><user a=\"{}", "x".repeat(100)), 32);
    assert_eq!(out, "<users><user");
    assert!(o.is_empty());
    let (out, o, _) = run(&format!("<users>{}", " ".repeat(100)), 32);
    assert_eq!(out, "<users> ");
    assert_eq!(o, [(1, Kind::Text { blank: true })]);
}

#[test]
fn any_input_keeps_its_lines_and_small_caps_never_panic() {
    let alphabet = b"<<>>!!--[[]]??//\"'= \n\nDOCTYPE[CDATA]ENTITYaeb&;";
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for round in 0..3000 {
        let len = (round % 150) + 1;
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let text = String::from_utf8(v).unwrap();
        let nl = text.matches('\n').count() as u64;
        // Nothing over the cap: handed on as decoded.
        let (mut dec, _) = DecodeReader::new(text.as_bytes()).unwrap();
        let mut decoded = String::new();
        dec.read_to_string(&mut decoded).unwrap();
        let (out, o, lines) = run(&text, len + 1);
        assert_eq!((out.as_str(), o.len(), lines), (decoded.as_str(), 0, nl));
        // Small caps: whatever is replaced, the lines stay the file's.
        let (_, _, lines) = run(&text, 4 + round % 24);
        assert_eq!(lines, nl, "{text:?}");
    }
}

#[test]
fn nesting_stops_at_the_limits() {
    let deep = |n: usize, name: &str| {
        let mut x = String::from("<?xml version=\"1.0\"?>\n<users>\n");
        for _ in 0..n {
            x.push_str(&format!("<{name}>\n"));
        }
        x
    };
    let read = |xml: &str, cap: usize| {
        let (dec, _) = DecodeReader::new(xml.as_bytes()).unwrap();
        let mut b = Bounded::new(dec, cap);
        let mut out = Vec::new();
        let e = b.read_to_end(&mut out).err();
        (out.len(), e)
    };
    // The root and MAX_DEPTH - 1 more: read to the end.
    let xml = deep(MAX_DEPTH - 1, "a");
    let (n, e) = read(&xml, 4096);
    assert!(e.is_none(), "{e:?}");
    assert_eq!(n, xml.len());
    // One more: stopped at that start tag, on its line.
    let xml = deep(MAX_DEPTH, "a");
    let (n, e) = read(&xml, 4096);
    let e = e.expect("stopped");
    let t = too_deep(&e).expect("a TooDeep stop");
    assert_eq!(t.line, MAX_DEPTH as u64 + 2);
    assert_eq!(n, xml.len() - "<a>\n".len());
    // Open names over the limit together stop it too (the fourth
    // here, on line 6), self-closing ones not.
    let (_, e) = read(&deep(5, &"n".repeat(20_000)), 32 << 10);
    assert_eq!(e.as_ref().and_then(too_deep).map(|t| t.line), Some(6));
    let (_, e) = read(&deep(50, &format!("{}/", "n".repeat(20_000))), 32 << 10);
    assert!(e.is_none());
}
