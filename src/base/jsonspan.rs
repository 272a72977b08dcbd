//! Byte spans inside JSON text: finding them fast, reading what they hold, and editing a body
//! around them.
//!
//! A coding agent's request is its whole history, megabytes of JSON whose bulk (file contents,
//! tool results, thinking) claudegate only passes on. Two users:
//! - **Cloaking** changes a few fields of a client's body while every other byte — thinking
//!   signatures, `cache_control` markers, unknown fields, number formatting, key order — reaches
//!   the upstream exactly as the client sent it: [`object_members`] and [`array_items`] find
//!   the byte ranges of the parts it owns, [`Edits`] splices replacements in.
//! - **The OpenAI translators** read a request through a [`Doc`]: every value's span, found in
//!   one pass, so the text of a message is copied from the client's JSON into the translated
//!   request as it stands (escapes and all) instead of being decoded into a `serde_json::Value`
//!   and encoded again. A 5 MB history then costs one scan and one copy, and no allocation per
//!   string.
//!
//! The scanner looks at 8 bytes at a time for the bytes that matter inside a string (`"`, `\`,
//! control characters: [`next_special`]), so its speed does not depend on the C library or on
//! the optimiser. It accepts exactly what serde_json accepts ([`Grammar`]), so a body it
//! refuses is one serde_json refuses too, and the caller can take serde_json's own error
//! message for the client.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::Value;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of a byte of the result is set where the byte of `w` is `"`, `\` or a control
/// character (below 0x20). Exact for the lowest such byte; above it, a borrow may flag others.
#[inline(always)]
pub fn specials(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    ((quote.wrapping_sub(ONES) & !quote)
        | (backslash.wrapping_sub(ONES) & !backslash)
        | (w.wrapping_sub(ONES * 0x20) & !w))
        & HIGHS
}

/// The index of the first `"`, `\` or control character in `b` at or after `i` (`b.len()`
/// when there is none).
#[inline(always)]
pub fn next_special(b: &[u8], i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    let i = match sse2::next_special(b, i) {
        Ok(found) => return found,
        Err(rest) => rest,
    };
    next_special_words(b, i)
}

/// [`next_special`] 8 bytes at a time, then byte by byte (the end of a text, and the
/// targets without SSE2).
#[inline(always)]
fn next_special_words(b: &[u8], mut i: usize) -> usize {
    while let Some(w) = b.get(i..).and_then(|r| r.first_chunk::<8>()) {
        let m = specials(u64::from_le_bytes(*w));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !matches!(b[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

/// 16 bytes at a time with SSE2, which every x86_64 processor has (so no detection): a
/// quarter of the instructions of [`specials`] per byte. The size-optimised release build
/// never vectorises a loop by itself, and a 5 MB history is scanned on every request.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_set_epi64x,
    };

    /// The first special byte in `b` at or after `i`; `Err` with where fewer than 16 bytes are
    /// left when there is none before that.
    #[inline(always)]
    pub fn next_special(b: &[u8], i: usize) -> Result<usize, usize> {
        // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64 processor has it, and the
        // target enables it), which is all `scan` asks for.
        unsafe { scan(b, i) }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn scan(b: &[u8], mut i: usize) -> Result<usize, usize> {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let control = _mm_set1_epi8(0x1f);
        while let Some(w) = b.get(i..).and_then(|r| r.first_chunk::<16>()) {
            // Two words make one register (the compiler emits one unaligned load).
            let (lo, hi) = w.split_at(8);
            let word = |h: &[u8]| i64::from_le_bytes(h.try_into().unwrap_or_default());
            let v = _mm_set_epi64x(word(hi), word(lo));
            // A control character is one at most 0x1f: min(v, 0x1f) == v, unsigned.
            let hits = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                _mm_cmpeq_epi8(_mm_min_epu8(v, control), v),
            );
            let m = _mm_movemask_epi8(hits) as u32;
            if m != 0 {
                return Ok(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
        Err(i)
    }
}

/// Which JSON a scan accepts, so that it refuses exactly what serde_json refuses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Grammar {
    /// What `serde_json::Value` accepts: at most 127 levels of nesting, no lone surrogate
    /// (`\ud800`) in a string, no number beyond an `f64` (`1e400`).
    Value,
    /// What serde_json's `RawValue` accepts, which the Messages pass-through forwards: any
    /// nesting, lone surrogates, any exponent; but the keys of the outermost object are read
    /// as strings, so they follow the `Value` rules.
    Raw,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Null,
    Bool,
    Number,
    /// A string without a backslash: its text is its value.
    Str,
    /// A string with escapes.
    EscapedStr,
    Array,
    Object,
}

/// One value of a [`Doc`]: its span and where the next value after its own (and its
/// children's) nodes is.
#[derive(Clone, Copy, Debug)]
struct Node {
    start: u32,
    end: u32,
    next: u32,
    kind: Kind,
}

/// A JSON text with the span of every value in it. An object's nodes alternate key and value.
pub struct Doc<'t> {
    text: &'t str,
    nodes: Vec<Node>,
}

impl<'t> Doc<'t> {
    /// Scans `text` (one JSON value, surrounding whitespace allowed); `None` when it is not
    /// JSON under `grammar`, or longer than 4 GiB.
    pub fn parse(text: &'t str, grammar: Grammar) -> Option<Doc<'t>> {
        Scan::run(text, grammar, usize::MAX)
    }

    /// The outermost value.
    pub fn root(&self) -> Item<'_> {
        Item { doc: self, at: 0 }
    }
}

/// The scanner: one pass, no recursion (nesting is bounded by the grammar or costs a byte per
/// level), recording the values down to `record_depth` (0: the outermost value).
struct Scan<'t> {
    b: &'t [u8],
    i: usize,
    grammar: Grammar,
    record_depth: usize,
    nodes: Vec<Node>,
    /// Per open container: whether it is an object.
    open: Vec<bool>,
    /// The nodes of the open containers that are recorded.
    recorded: Vec<u32>,
}

impl<'t> Scan<'t> {
    fn run(text: &'t str, grammar: Grammar, record_depth: usize) -> Option<Doc<'t>> {
        u32::try_from(text.len()).ok()?;
        let mut s = Scan {
            b: text.as_bytes(),
            i: 0,
            grammar,
            record_depth,
            // A few hundred bytes per value in a conversation; the vector grows if not.
            nodes: Vec::with_capacity(if record_depth == usize::MAX {
                text.len() / 128 + 8
            } else {
                64
            }),
            open: Vec::new(),
            recorded: Vec::new(),
        };
        s.document()?;
        Some(Doc {
            text,
            nodes: s.nodes,
        })
    }

    fn document(&mut self) -> Option<()> {
        'value: loop {
            self.ws();
            match *self.b.get(self.i)? {
                c @ (b'{' | b'[') => {
                    if self.grammar == Grammar::Value && self.open.len() >= 127 {
                        return None; // serde_json: "recursion limit exceeded"
                    }
                    let object = c == b'{';
                    self.open_container(object);
                    self.ws();
                    let close = if object { b'}' } else { b']' };
                    if self.b.get(self.i) == Some(&close) {
                        self.close_container();
                    } else {
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                }
                b'"' => self.string(false)?,
                b't' => self.literal(b"true", Kind::Bool)?,
                b'f' => self.literal(b"false", Kind::Bool)?,
                b'n' => self.literal(b"null", Kind::Null)?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value: the next one in its container, or the container's end.
            loop {
                let Some(&object) = self.open.last() else {
                    self.ws();
                    return (self.i == self.b.len()).then_some(());
                };
                self.ws();
                match *self.b.get(self.i)? {
                    b',' => {
                        self.i += 1;
                        if object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    b'}' if object => self.close_container(),
                    b']' if !object => self.close_container(),
                    _ => return None,
                }
            }
        }
    }

    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Whether a value opened now (at the current nesting) is recorded.
    fn recording(&self) -> bool {
        self.open.len() <= self.record_depth
    }

    fn leaf(&mut self, kind: Kind, start: usize) {
        if self.recording() {
            let next = self.nodes.len() as u32 + 1;
            self.nodes.push(Node {
                start: start as u32,
                end: self.i as u32,
                next,
                kind,
            });
        }
    }

    fn open_container(&mut self, object: bool) {
        if self.recording() {
            self.recorded.push(self.nodes.len() as u32);
            self.nodes.push(Node {
                start: self.i as u32,
                end: 0,
                next: 0,
                kind: if object { Kind::Object } else { Kind::Array },
            });
        }
        self.open.push(object);
        self.i += 1;
    }

    fn close_container(&mut self) {
        self.i += 1;
        self.open.pop();
        if self.recording() {
            let next = self.nodes.len() as u32;
            if let Some(node) = self
                .recorded
                .pop()
                .and_then(|at| self.nodes.get_mut(at as usize))
            {
                node.end = self.i as u32;
                node.next = next;
            }
        }
    }

    /// A member's key and its colon.
    fn key(&mut self) -> Option<()> {
        self.ws();
        if self.b.get(self.i) != Some(&b'"') {
            return None;
        }
        self.string(true)?;
        self.ws();
        if self.b.get(self.i) != Some(&b':') {
            return None;
        }
        self.i += 1;
        Some(())
    }

    /// A string, at its opening quote.
    fn string(&mut self, key: bool) -> Option<()> {
        let strict = self.grammar == Grammar::Value || (key && self.open.len() == 1);
        let b = self.b;
        let start = self.i;
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i = next_special(b, i);
            match *b.get(i)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i = escape_end(b, i, strict)?;
                }
                _ => return None, // a raw control character
            }
        }
        self.i = i + 1;
        self.leaf(if escaped { Kind::EscapedStr } else { Kind::Str }, start);
        Some(())
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        let start = self.i;
        self.i += word.len();
        self.leaf(kind, start);
        Some(())
    }

    /// A number: JSON's grammar; under [`Grammar::Value`] also serde_json's range.
    fn number(&mut self) -> Option<()> {
        let b = self.b;
        let start = self.i;
        let mut i = start + usize::from(b[start] == b'-');
        let digits = |i: &mut usize| {
            let from = *i;
            while let Some(b'0'..=b'9') = b.get(*i) {
                *i += 1;
            }
            *i > from
        };
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        let mut simple = i - start <= 18;
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                return None;
            }
            simple = false;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
            simple = false;
        }
        // A short integer always fits; anything else is what serde_json says it is (it
        // refuses what overflows an f64).
        if self.grammar == Grammar::Value
            && !simple
            && serde_json::from_slice::<Value>(&b[start..i]).is_err()
        {
            return None;
        }
        self.i = i;
        self.leaf(Kind::Number, start);
        Some(())
    }
}

/// The end of the escape at `b[i]` (a backslash); `None` when it is not one serde_json takes.
/// `strict`: surrogate escapes must come in pairs (a string read as a string); otherwise any
/// four hex digits do (a string passed on as raw JSON).
fn escape_end(b: &[u8], i: usize, strict: bool) -> Option<usize> {
    match *b.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
        b'u' => {
            let unit = hex4(b.get(i + 2..i + 6)?)?;
            if !strict || !(0xD800..=0xDFFF).contains(&unit) {
                return Some(i + 6);
            }
            // A leading surrogate, followed by the escape of a trailing one.
            if unit >= 0xDC00 || b.get(i + 6..i + 8)? != b"\\u" {
                return None;
            }
            let low = hex4(b.get(i + 8..i + 12)?)?;
            (0xDC00..=0xDFFF).contains(&low).then_some(i + 12)
        }
        _ => None,
    }
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter()
        .try_fold(0u32, |n, &c| Some(n * 16 + (c as char).to_digit(16)?))
}

/// The value of a JSON string's inside (between its quotes): escapes decoded, a lone
/// surrogate (which only [`Grammar::Raw`] lets through) as U+FFFD.
fn unescape(inner: &str) -> String {
    let b = inner.as_bytes();
    let mut out = String::with_capacity(inner.len());
    let mut i = 0;
    while i < b.len() {
        let j = next_special(b, i);
        out.push_str(&inner[i..j]);
        let Some(&escape) = b.get(j + 1).filter(|_| b[j] == b'\\') else {
            // The end, or a byte a validated string cannot hold here: kept as it is.
            if let Some(c) = inner.get(j..).and_then(|rest| rest.chars().next()) {
                out.push(c);
            }
            i = j + 1;
            continue;
        };
        i = j + 2;
        match escape {
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let unit = b.get(i..i + 4).and_then(hex4).unwrap_or(0xFFFD);
                i += 4;
                let low = b
                    .get(i..i + 6)
                    .filter(|e| (0xD800..0xDC00).contains(&unit) && e.starts_with(b"\\u"))
                    .and_then(|e| hex4(&e[2..]))
                    .filter(|low| (0xDC00..=0xDFFF).contains(low));
                let c = match low {
                    Some(low) => {
                        i += 6;
                        char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                    }
                    None => char::from_u32(unit),
                };
                out.push(c.unwrap_or('\u{FFFD}'));
            }
            other => out.push(char::from(other)), // `"`, `\`, `/`
        }
    }
    out
}

/// One value of a [`Doc`].
#[derive(Clone, Copy)]
pub struct Item<'a> {
    doc: &'a Doc<'a>,
    at: u32,
}

impl<'a> Item<'a> {
    fn node(&self) -> Node {
        self.doc.nodes[self.at as usize]
    }

    /// The value's JSON text, exactly as written.
    pub fn raw(&self) -> &'a str {
        let n = self.node();
        &self.doc.text[n.start as usize..n.end as usize]
    }

    /// Where [`Item::raw`] sits in the document's text.
    pub fn span(&self) -> Range<usize> {
        let n = self.node();
        n.start as usize..n.end as usize
    }

    pub fn is_null(&self) -> bool {
        self.node().kind == Kind::Null
    }

    pub fn is_string(&self) -> bool {
        matches!(self.node().kind, Kind::Str | Kind::EscapedStr)
    }

    pub fn is_array(&self) -> bool {
        self.node().kind == Kind::Array
    }

    pub fn is_object(&self) -> bool {
        self.node().kind == Kind::Object
    }

    pub fn as_bool(&self) -> Option<bool> {
        (self.node().kind == Kind::Bool).then(|| self.raw() == "true")
    }

    /// A string's value (borrowed from the text when it has no escapes).
    pub fn as_str(&self) -> Option<Cow<'a, str>> {
        let raw = self.raw();
        let inner = raw.get(1..raw.len().saturating_sub(1))?;
        match self.node().kind {
            Kind::Str => Some(Cow::Borrowed(inner)),
            Kind::EscapedStr => Some(Cow::Owned(unescape(inner))),
            _ => None,
        }
    }

    /// Whether this is the string `s`.
    pub fn is_str(&self, s: &str) -> bool {
        let n = self.node();
        let inner = (n.end - n.start).saturating_sub(2) as usize;
        match n.kind {
            // Compared as bytes, in place: called for every key of every object a translator
            // looks a member up in (tens of thousands in a long history), where slicing the
            // text as a `str` and calling the C library's `memcmp` cost more than the compare.
            Kind::Str => {
                let text = self.doc.text.as_bytes();
                let at = n.start as usize + 1;
                inner == s.len()
                    && text
                        .get(at..at + inner)
                        .is_some_and(|t| t.iter().zip(s.as_bytes()).all(|(a, b)| a == b))
            }
            // An escape is 2 to 12 bytes of text for 1 to 4 bytes of value, so the value is
            // no longer than the text and at least a sixth of it: a long tool result is not
            // decoded only to learn that it is not `""`.
            Kind::EscapedStr => {
                inner >= s.len() && inner <= 6 * s.len() && self.as_str().is_some_and(|v| v == s)
            }
            _ => false,
        }
    }

    /// The last member called `key` (JSON parsers keep the last of duplicates); `None` when
    /// there is none or this is not an object.
    pub fn get(&self, key: &str) -> Option<Item<'a>> {
        // A plain loop over the nodes: called a few times per message of a long history.
        let node = self.node();
        if node.kind != Kind::Object {
            return None;
        }
        let (doc, mut at, mut found) = (self.doc, self.at + 1, None);
        while at < node.next {
            // A key is a string, so its value is the next node.
            let value = at + 1;
            if (Item { doc, at }).is_str(key) {
                found = Some(Item { doc, at: value });
            }
            at = doc.nodes.get(value as usize)?.next;
        }
        found
    }

    /// A member's value, `None` when absent or `null` (OpenAI's APIs treat them alike).
    pub fn field(&self, key: &str) -> Option<Item<'a>> {
        self.get(key).filter(|v| !v.is_null())
    }

    /// An object's members, keys and values, in order; nothing for anything else.
    pub fn members(&self) -> impl Iterator<Item = (Item<'a>, Item<'a>)> + 'a {
        let mut children = self.children(Kind::Object);
        std::iter::from_fn(move || Some((children.next()?, children.next()?)))
    }

    /// An array's items, in order; nothing for anything else.
    pub fn items(&self) -> impl Iterator<Item = Item<'a>> + 'a {
        self.children(Kind::Array)
    }

    fn children(&self, kind: Kind) -> impl Iterator<Item = Item<'a>> + 'a {
        let node = self.node();
        let doc = self.doc;
        let (mut at, end) = if node.kind == kind {
            (self.at + 1, node.next)
        } else {
            (0, 0)
        };
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let item = Item { doc, at };
            at = doc.nodes[at as usize].next;
            Some(item)
        })
    }

    /// The value as a `serde_json::Value` (for the small parts that are worked on as one).
    /// `Null` only if serde_json cannot read it, which a [`Grammar::Value`] document rules
    /// out.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(self.raw()).unwrap_or(Value::Null)
    }
}

/// One member of a JSON object: its key and the byte range of its value within the text.
pub struct Member {
    pub key: String,
    pub value: Range<usize>,
}

/// The outermost value's children, scanned as serde_json's `RawValue` would take them.
fn shallow(text: &str) -> Option<Doc<'_>> {
    Scan::run(text, Grammar::Raw, 1)
}

/// The members of the JSON object `text` (which must be exactly one object, surrounding
/// whitespace allowed), in document order; `None` if it is not an object.
pub fn object_members(text: &str) -> Option<Vec<Member>> {
    let doc = shallow(text)?;
    let root = doc.root();
    if !root.is_object() {
        return None;
    }
    Some(
        root.members()
            .map(|(k, v)| Member {
                key: k.as_str().map(Cow::into_owned).unwrap_or_default(),
                value: v.span(),
            })
            .collect(),
    )
}

/// The byte ranges of the items of the JSON array `text`; `None` if it is not an array.
pub fn array_items(text: &str) -> Option<Vec<Range<usize>>> {
    let doc = shallow(text)?;
    let root = doc.root();
    if !root.is_array() {
        return None;
    }
    Some(root.items().map(|v| v.span()).collect())
}

/// The value range of the last member called `key` (JSON parsers keep the last duplicate).
pub fn member<'m>(members: &'m [Member], key: &str) -> Option<&'m Range<usize>> {
    members
        .iter()
        .rev()
        .find(|m| m.key == key)
        .map(|m| &m.value)
}

/// A set of non-overlapping replacements.
#[derive(Default)]
pub struct Edits(Vec<(Range<usize>, String)>);

impl Edits {
    /// Replace `range` with `text` (an empty range inserts; of two inserts at one place, the
    /// later comes first).
    pub fn replace(&mut self, range: Range<usize>, text: String) {
        self.0.push((range, text));
    }

    /// The replacements in the order they are written: by place; of two inserts at one
    /// place, the later first.
    fn sorted(self) -> Vec<(Range<usize>, String)> {
        let mut edits: Vec<(usize, Range<usize>, String)> = self
            .0
            .into_iter()
            .enumerate()
            .map(|(n, (r, t))| (n, r, t))
            .collect();
        edits.sort_by_key(|(n, r, _)| (r.start, std::cmp::Reverse(*n)));
        edits.into_iter().map(|(_, r, t)| (r, t)).collect()
    }

    /// `original` with the replacements, written in one pass into a text of the final size.
    /// Bytes, not a `str`: the ranges fall on JSON tokens and the replacements are whole
    /// texts, so valid UTF-8 stays valid, and a body the caller already checked (megabytes of
    /// history) is not checked again only to be edited.
    pub fn apply(self, original: &[u8]) -> Vec<u8> {
        write_edits(&self.sorted(), original)
    }

    /// [`Edits::apply`] to `text` itself, when nothing moves left (the usual edits insert or
    /// lengthen): the text grows in its own buffer (`realloc`, which moves a large block's
    /// pages rather than copying them) and each stretch between edits moves right once, from
    /// the last to the first. A second buffer the size of the body would cost a page fault
    /// per 4 KiB written into its fresh pages: measured, 1,300 more faults and about 2 ms on
    /// a 5 MB history, more than the copy. Otherwise written anew by [`Edits::apply`].
    pub fn apply_in_place(self, text: &mut Vec<u8>) {
        let edits = self.sorted();
        let len = text.len();
        // In place only when the ranges are in order and in bounds, and every stretch moves
        // right (or stays): the running growth never falls below zero.
        let (mut at, mut growth, mut in_place) = (0usize, 0isize, true);
        for (range, replacement) in &edits {
            if range.start < at || range.end < range.start || range.end > len {
                in_place = false;
                break;
            }
            at = range.end;
            growth += replacement.len() as isize - range.len() as isize;
            in_place &= growth >= 0;
        }
        if !in_place {
            *text = write_edits(&edits, text);
            return;
        }
        let new_len = len + growth as usize;
        text.reserve_exact(new_len - len);
        text.resize(new_len, 0);
        // From the end: the stretch after each edit moves to its place, then the edit's text
        // goes in front of it; what is left of the front stays where it is.
        let (mut end, mut to) = (len, new_len);
        let mut bounce = Vec::new();
        for (range, replacement) in edits.iter().rev() {
            let stretch = end - range.end;
            move_right(text, range.end..end, to - stretch, &mut bounce);
            to -= stretch;
            text[to - replacement.len()..to].copy_from_slice(replacement.as_bytes());
            to -= replacement.len();
            end = range.start;
        }
    }
}

/// Moves `text[from]` to start at `to` (at or after its start). Not one `copy_within`: that
/// is a `memmove`, which musl does backwards a byte at a time (`std; rep movsb`) when the
/// target overlaps the source from the right, as here; measured on a 5 MB history, it cost
/// more than the page faults it saved. So from the end, 64 KiB at a time through `bounce`,
/// each piece copied twice forwards (`rep movsq`).
fn move_right(text: &mut [u8], from: Range<usize>, to: usize, bounce: &mut Vec<u8>) {
    if to == from.start {
        return;
    }
    bounce.resize(64 << 10, 0);
    let mut end = from.end;
    while end > from.start {
        let start = end.saturating_sub(bounce.len()).max(from.start);
        let n = end - start;
        bounce[..n].copy_from_slice(&text[start..end]);
        let at = to + (start - from.start);
        text[at..at + n].copy_from_slice(&bounce[..n]);
        end = start;
    }
}

/// `original` with `edits` (sorted as [`Edits::sorted`] leaves them), into a new text.
fn write_edits(edits: &[(Range<usize>, String)], original: &[u8]) -> Vec<u8> {
    let grown: usize = edits.iter().map(|(_, t)| t.len()).sum();
    let mut out = Vec::with_capacity(original.len() + grown);
    let mut at = 0;
    for (range, text) in edits {
        // Ranges come from a scan of `original`, so they are in bounds and apart; one that is
        // not is skipped rather than trusted.
        let Some(before) = original.get(at..range.start) else {
            continue;
        };
        out.extend_from_slice(before);
        out.extend_from_slice(text.as_bytes());
        at = range.end.max(range.start);
    }
    out.extend_from_slice(original.get(at..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests;
