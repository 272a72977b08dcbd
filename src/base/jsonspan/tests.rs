//! The scanner against serde_json itself: it must accept exactly what serde_json accepts,
//! under each grammar, and read every value as serde_json reads it.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;

/// What serde_json says of `text`: as a `Value`, and as an object of `RawValue`s / as one
/// `RawValue` (what the pass-through and cloaking rely on).
fn serde_value(text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok()
}

fn serde_raw(text: &str) -> bool {
    if text.trim_start().starts_with('{') {
        serde_json::from_str::<BTreeMap<String, &serde_json::value::RawValue>>(text).is_ok()
    } else {
        serde_json::from_str::<&serde_json::value::RawValue>(text).is_ok()
    }
}

/// Rebuilds a `Value` from a document, to compare with serde_json's reading.
fn rebuild(item: Item) -> Value {
    if item.is_object() {
        let mut m = serde_json::Map::new();
        for (k, v) in item.members() {
            m.insert(k.as_str().unwrap().into_owned(), rebuild(v));
        }
        return Value::Object(m);
    }
    if item.is_array() {
        return Value::Array(item.items().map(rebuild).collect());
    }
    if item.is_string() {
        return Value::String(item.as_str().unwrap().into_owned());
    }
    item.to_value()
}

const CASES: &[&str] = &[
    "{}",
    "[]",
    " { \"a\" : [ 1 , -2.5e+3 , true , false , null , \"x\" ] } ",
    r#"{"a":"\u00e9\n\t\"\\\/\b\f\r","b":{"c":[[],{}]}}"#,
    r#""\ud83d\ude00""#,
    r#""\ud800""#,
    r#""\udc00""#,
    r#""\ud800\u0041""#,
    r#"{"\ud800":1}"#,
    r#"{"k":"\ud800"}"#,
    r#"{"k":{"\ud800":1}}"#,
    r#""\x""#,
    r#""\u12g4""#,
    "\"tab\there\"",
    "\"a",
    "1e400",
    "[1e400]",
    "{\"k\":1e400}",
    "-0",
    "01",
    "1.",
    ".5",
    "-",
    "+1",
    "1e+",
    "123456789012345678901234567890",
    "0.1e-400",
    "[1,]",
    "{\"a\":1,}",
    "{\"a\" 1}",
    "{1:2}",
    "[1 2]",
    "tru",
    "nulls",
    "null x",
    "",
    "   ",
    "\u{feff}{}",
    "{\"a\":1}{}",
    "[\"é😀\"]",
    "{\"a\":1,\"a\":2}",
];

#[test]
fn accepts_exactly_what_serde_json_accepts() {
    let mut cases: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    for depth in [126, 127, 128, 300] {
        cases.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
        cases.push(format!(
            "{{\"k\":{}{}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        ));
    }
    for text in &cases {
        let doc = Doc::parse(text, Grammar::Value);
        assert_eq!(doc.is_some(), serde_value(text), "Value grammar: {text:?}");
        if let Some(doc) = doc {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(rebuild(doc.root()), want, "{text:?}");
        }
        let raw = shallow(text).is_some();
        assert_eq!(raw, serde_raw(text), "Raw grammar: {text:?}");
        assert_eq!(
            Doc::parse(text, Grammar::Raw).is_some(),
            raw,
            "Raw grammar, every value recorded: {text:?}"
        );
    }
}

#[test]
fn reads_a_conversation_as_serde_json_does() {
    let mut messages = Vec::new();
    for i in 0..50 {
        messages.push(json!({"role": "user", "content": format!("step {i}: \"quoted\"\n\ttabbed é→😀 \u{1}")}));
        messages.push(
            json!({"role": "assistant", "content": [{"type": "text", "text": "x".repeat(i * 7)}],
            "n": [i, -(i as i64), i as f64 / 3.0]}),
        );
    }
    let text = json!({"model": "m", "messages": messages}).to_string();
    let doc = Doc::parse(&text, Grammar::Value).unwrap();
    assert_eq!(
        rebuild(doc.root()),
        serde_json::from_str::<Value>(&text).unwrap()
    );
    let root = doc.root();
    assert!(root.get("model").unwrap().is_str("m"));
    assert!(root.get("nothing").is_none());
    let first = root.get("messages").unwrap().items().next().unwrap();
    assert_eq!(first.get("role").unwrap().raw(), "\"user\"");
    assert_eq!(&text[first.span()], first.raw());
    // Duplicates: the last one counts, as in a parsed Value.
    let doc = Doc::parse(r#"{"a":1,"b":null,"a":2}"#, Grammar::Value).unwrap();
    assert_eq!(doc.root().get("a").unwrap().raw(), "2");
    assert!(doc.root().field("b").is_none() && doc.root().get("b").is_some());
}

#[test]
fn spans_point_at_the_raw_values() {
    let text = r#" {"a": 1.50, "b":{"x":[1,2]}, "a":"é\u00e9"} "#;
    let m = object_members(text).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(&text[m[0].value.clone()], "1.50");
    assert_eq!(&text[m[1].value.clone()], r#"{"x":[1,2]}"#);
    assert_eq!(&text[member(&m, "a").unwrap().clone()], r#""é\u00e9""#);
    let items = array_items(r#"[ {"t":1} , "s" ]"#).unwrap();
    assert_eq!(items.len(), 2);
    assert!(object_members("[1]").is_none());
    assert!(array_items("{}").is_none());
    // Escaped keys are read as strings.
    let m = object_members(r#"{"\u0073ystem":[]}"#).unwrap();
    assert_eq!(m[0].key, "system");
}

#[test]
fn strings_are_read_with_their_escapes_decoded() {
    for s in [
        r#""plain""#,
        r#""\"\\\/\b\f\n\r\t""#,
        r#""\u00e9\u20ac\ud83d\ude00""#,
    ] {
        let doc = Doc::parse(s, Grammar::Value).unwrap();
        let want: String = serde_json::from_str(s).unwrap();
        assert_eq!(doc.root().as_str().unwrap(), want);
        assert!(doc.root().is_str(&want));
        assert!(!doc.root().is_str("") && !doc.root().is_str(&format!("{want}x")));
    }
    // The value of an escaped string is between a sixth of its text and all of it.
    let six = Doc::parse(r#""\u0041""#, Grammar::Value).unwrap();
    assert!(six.root().is_str("A"));
    let long = Doc::parse(r#""a\nb""#, Grammar::Value).unwrap();
    assert!(long.root().is_str("a\nb") && !long.root().is_str("a\n"));
    // A lone surrogate passes only as raw JSON, and reads as U+FFFD.
    assert_eq!(unescape(r#"a\ud800b"#), "a\u{FFFD}b");
}

#[test]
fn edits_apply_in_one_pass() {
    let text = r#"{"a":1,"b":2}"#;
    let m = object_members(text).unwrap();
    let mut e = Edits::default();
    e.replace(m[1].value.clone(), "[3]".into());
    e.replace(1..1, r#""z":0,"#.into());
    e.replace(m[0].value.clone(), "10".into());
    assert_eq!(e.apply(text.as_bytes()), br#"{"z":0,"a":10,"b":[3]}"#);
    // Two inserts at one place: the later one first (as the old back-to-front edit did).
    let mut e = Edits::default();
    e.replace(1..1, "1".into());
    e.replace(1..1, "2".into());
    assert_eq!(e.apply(b"[]"), b"[21]");
}

#[test]
fn edits_in_place_give_what_apply_gives() {
    let text = br#"{"a":1,"bb":22,"c":"three"}"#;
    let cases: Vec<Vec<(std::ops::Range<usize>, &str)>> = vec![
        vec![],
        vec![(1..1, r#""z":0,"#)],
        vec![(5..6, "100"), (1..1, "x"), (1..1, "y"), (27..27, " ")],
        // A shorter text first, a longer one after: the running growth dips below zero, so
        // the edit is written anew.
        vec![(5..6, ""), (12..14, "2222")],
        vec![(12..14, "2"), (20..27, r#""3""#)],
        // Out of order or out of bounds: skipped, as `apply` skips them.
        vec![(5..6, "9"), (4..7, "8"), (40..41, "7")],
    ];
    for edits in cases {
        let (mut a, mut b) = (Edits::default(), Edits::default());
        for (r, t) in &edits {
            a.replace(r.clone(), t.to_string());
            b.replace(r.clone(), t.to_string());
        }
        let mut in_place = text.to_vec();
        b.apply_in_place(&mut in_place);
        assert_eq!(in_place, a.apply(text), "{edits:?}");
    }
    // A text longer than the 64 KiB pieces it moves in, edited at both ends.
    let long: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let (mut a, mut b) = (Edits::default(), Edits::default());
    for e in [&mut a, &mut b] {
        e.replace(1..1, "front".into());
        e.replace(100_000..100_001, "middle".into());
        e.replace(199_999..199_999, "end".into());
    }
    let mut in_place = long.clone();
    b.apply_in_place(&mut in_place);
    assert_eq!(in_place, a.apply(&long));
}

#[test]
fn the_scan_finds_specials_at_every_offset() {
    for at in 0..20 {
        for special in [b'"', b'\\', 0x00, 0x1f] {
            let mut b = vec![b'a'; 20];
            b[at] = special;
            assert_eq!(next_special(&b, 0), at);
            assert_eq!(next_special(&b, at + 1), 20);
        }
    }
    // Every byte value at every offset of two 16-byte blocks and a tail: exactly `"`, `\`
    // and the control characters are special.
    for at in 0..40 {
        for c in 0..=255u8 {
            let mut b = vec![b'a'; 40];
            b[at] = c;
            let special = matches!(c, b'"' | b'\\' | 0..=0x1f);
            assert_eq!(
                next_special(&b, 0),
                if special { at } else { 40 },
                "{c:#x} at {at}"
            );
        }
    }
    // Bytes at or above 0x80 (UTF-8) and 0x7f are not special.
    assert_eq!(next_special("é😀\u{7f} ".as_bytes(), 0), 8);
}
