//! Byte spans inside JSON text, for editing a request body surgically.
//!
//! Cloaking must change a few fields of a client's body while every other byte — thinking
//! signatures, `cache_control` markers, unknown fields, number formatting, key order — reaches
//! the upstream exactly as the client sent it. Re-serialising a parsed value would not
//! guarantee that, so we find the byte range of the parts we own and splice replacements in.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;
use std::ops::Range;

/// One member of a JSON object: its key and the byte range of its value within the text.
pub struct Member {
    pub key: String,
    pub value: Range<usize>,
}

struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

fn offset_in(text: &str, part: &str) -> Range<usize> {
    let start = part.as_ptr() as usize - text.as_ptr() as usize;
    start..start + part.len()
}

/// The members of the JSON object `text` (which must be exactly one object, surrounding
/// whitespace allowed), in document order; `None` if it is not an object.
pub fn object_members(text: &str) -> Option<Vec<Member>> {
    let members: Members = serde_json::from_str(text).ok()?;
    Some(
        members
            .0
            .into_iter()
            .map(|(key, raw)| Member {
                key,
                value: offset_in(text, raw.get()),
            })
            .collect(),
    )
}

/// The byte ranges of the items of the JSON array `text`; `None` if it is not an array.
pub fn array_items(text: &str) -> Option<Vec<Range<usize>>> {
    let items: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    Some(
        items
            .into_iter()
            .map(|raw| offset_in(text, raw.get()))
            .collect(),
    )
}

/// The value range of the last member called `key` (JSON parsers keep the last duplicate).
pub fn member<'m>(members: &'m [Member], key: &str) -> Option<&'m Range<usize>> {
    members
        .iter()
        .rev()
        .find(|m| m.key == key)
        .map(|m| &m.value)
}

/// A set of non-overlapping replacements, applied back to front.
#[derive(Default)]
pub struct Edits(Vec<(Range<usize>, String)>);

impl Edits {
    /// Replace `range` with `text` (an empty range inserts).
    pub fn replace(&mut self, range: Range<usize>, text: String) {
        self.0.push((range, text));
    }

    pub fn apply(mut self, original: &str) -> String {
        self.0.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
        let mut out = original.to_string();
        for (range, text) in self.0 {
            out.replace_range(range, &text);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn edits_apply_back_to_front() {
        let text = r#"{"a":1,"b":2}"#;
        let m = object_members(text).unwrap();
        let mut e = Edits::default();
        e.replace(m[1].value.clone(), "[3]".into());
        e.replace(1..1, r#""z":0,"#.into());
        e.replace(m[0].value.clone(), "10".into());
        assert_eq!(e.apply(text), r#"{"z":0,"a":10,"b":[3]}"#);
    }
}
