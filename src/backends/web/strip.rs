//! The HTML stripper: what a reader (or a model) of a fetched page has no use for comes out,
//! the rest stays byte for byte. A cleaner for reading, not a sanitizer.

/// Elements dropped whole by [`strip_html`] (`<script type="application/ld+json">` excepted).
const DROPPED: &[&str] = &["script", "style", "svg", "noscript"];

/// Removes what a reader (or a model) of a page has no use for: `<script>` elements (but keeps
/// `<script type="application/ld+json">`, which holds the page's structured data), `<style>`,
/// `<svg>` (nesting-aware), `<noscript>` and comments. Tag names are matched case-insensitively;
/// quoted attribute values are skipped properly, so a `>` or `<script` inside one does not
/// confuse it. Malformed input never panics: an element or comment left open runs to the end
/// and is dropped.
///
/// This is a cleaner for reading, not a sanitizer: the result is not safe to render in a browser.
pub fn strip_html(html: &str) -> String {
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len());
    let mut copied = 0; // html[..copied] is already in `out` or deliberately dropped
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        let lt = i + off;
        if b[lt..].starts_with(b"<!--") {
            out.push_str(&html[copied..lt]);
            let end = comment_end(b, lt);
            copied = end;
            i = end;
            continue;
        }
        if lt + 1 < b.len() && b[lt + 1].is_ascii_alphabetic() {
            let name_end = lt
                + 1
                + b[lt + 1..]
                    .iter()
                    .position(|&c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
                    .unwrap_or(b.len() - lt - 1);
            let name = &html[lt + 1..name_end];
            let tag = scan_tag(b, name_end);
            let dropped = DROPPED.iter().find(|d| d.eq_ignore_ascii_case(name));
            match dropped {
                Some(&"script") if is_json_ld(&tag.attrs) => {
                    // Kept verbatim, through its end tag.
                    let end = raw_text_end(b, tag.end, "script");
                    i = end;
                }
                Some(&d) => {
                    out.push_str(&html[copied..lt]);
                    let end = if d == "svg" {
                        if tag.self_closing {
                            tag.end
                        } else {
                            svg_end(b, tag.end)
                        }
                    } else {
                        raw_text_end(b, tag.end, d)
                    };
                    copied = end;
                    i = end;
                }
                None => i = tag.end,
            }
            continue;
        }
        i = lt + 1;
    }
    out.push_str(&html[copied..]);
    out
}

/// A start tag as scanned: where it ends (after `>`), its attributes, whether it ends in `/>`.
struct Tag<'a> {
    end: usize,
    attrs: Vec<(&'a [u8], &'a [u8])>,
    self_closing: bool,
}

/// Scans the attributes of a start tag from `i` (just after its name) to its `>`, honouring
/// quoted values. An unterminated tag ends at the end of input.
fn scan_tag(b: &[u8], mut i: usize) -> Tag<'_> {
    let mut attrs = Vec::new();
    let mut self_closing = false;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Tag {
                end: b.len(),
                attrs,
                self_closing,
            };
        }
        match b[i] {
            b'>' => {
                return Tag {
                    end: i + 1,
                    attrs,
                    self_closing,
                }
            }
            b'/' => {
                self_closing = b.get(i + 1) == Some(&b'>');
                i += 1;
                continue;
            }
            _ => {}
        }
        self_closing = false;
        let name_start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !b"/>=".contains(&b[i]) {
            i += 1;
        }
        // A name can start with `=` (HTML allows it); take at least one byte so we advance.
        if i == name_start {
            i += 1;
        }
        let name = &b[name_start..i];
        let mut j = i;
        while j < b.len() && b[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' && i > name_start && b[name_start] != b'=' {
            j += 1;
            while j < b.len() && b[j].is_ascii_whitespace() {
                j += 1;
            }
            let value = match b.get(j) {
                Some(&q) if q == b'"' || q == b'\'' => {
                    let start = j + 1;
                    let close = b[start..]
                        .iter()
                        .position(|&c| c == q)
                        .map_or(b.len(), |p| start + p);
                    j = (close + 1).min(b.len());
                    &b[start..close]
                }
                _ => {
                    let start = j;
                    while j < b.len() && !b[j].is_ascii_whitespace() && b[j] != b'>' {
                        j += 1;
                    }
                    &b[start..j]
                }
            };
            attrs.push((name, value));
            i = j;
        } else {
            attrs.push((name, &b[0..0]));
        }
    }
}

fn is_json_ld(attrs: &[(&[u8], &[u8])]) -> bool {
    attrs.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case(b"type")
            && value
                .trim_ascii()
                .eq_ignore_ascii_case(b"application/ld+json")
    })
}

/// Where a comment starting at `lt` ends (after `-->`, `--!>`, or the short forms `<!-->` and
/// `<!--->`); the end of input if it never closes.
fn comment_end(b: &[u8], lt: usize) -> usize {
    let body = lt + 4;
    if b[body..].starts_with(b">") {
        return body + 1;
    }
    if b[body..].starts_with(b"->") {
        return body + 2;
    }
    let mut k = body;
    while k < b.len() {
        if b[k..].starts_with(b"-->") {
            return k + 3;
        }
        if b[k..].starts_with(b"--!>") {
            return k + 4;
        }
        k += 1;
    }
    b.len()
}

/// True if `b[i..]` is `</name` followed by a tag-name terminator (or the end).
fn is_end_tag(b: &[u8], i: usize, name: &str) -> bool {
    let n = name.len();
    b.len() >= i + 2 + n
        && b[i] == b'<'
        && b[i + 1] == b'/'
        && b[i + 2..i + 2 + n].eq_ignore_ascii_case(name.as_bytes())
        && b.get(i + 2 + n)
            .is_none_or(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>')
}

/// Past the `>` of the end tag at `i` (or the end of input).
fn past_end_tag(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'>')
        .map_or(b.len(), |p| i + p + 1)
}

/// Where a raw-text element (script, style, noscript) whose content starts at `i` ends: past
/// the first `</name…>`, as in a browser; the end of input if it is never closed.
fn raw_text_end(b: &[u8], mut i: usize, name: &str) -> usize {
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off;
        if is_end_tag(b, i, name) {
            return past_end_tag(b, i);
        }
        i += 1;
    }
    b.len()
}

/// Where an `<svg>` element whose content starts at `i` ends, counting nested `<svg>`s.
fn svg_end(b: &[u8], mut i: usize) -> usize {
    let mut depth = 1usize;
    while let Some(off) = b[i..].iter().position(|&c| c == b'<') {
        i += off;
        if is_end_tag(b, i, "svg") {
            i = past_end_tag(b, i);
            depth -= 1;
            if depth == 0 {
                return i;
            }
            continue;
        }
        if b[i..].starts_with(b"<!--") {
            i = comment_end(b, i);
            continue;
        }
        let is_svg_start = b.len() >= i + 4
            && b[i + 1..i + 4].eq_ignore_ascii_case(b"svg")
            && b.get(i + 4)
                .is_none_or(|c| c.is_ascii_whitespace() || *c == b'/' || *c == b'>');
        if b.get(i + 1).is_some_and(|c| c.is_ascii_alphabetic()) {
            let name_len = b[i + 1..]
                .iter()
                .position(|&c| c.is_ascii_whitespace() || c == b'/' || c == b'>')
                .unwrap_or(b.len() - i - 1);
            let tag = scan_tag(b, i + 1 + name_len);
            if is_svg_start && !tag.self_closing {
                depth += 1;
            }
            i = tag.end;
            continue;
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_drops_scripts_styles_svg_comments() {
        let html = r#"<html><head><SCRIPT src="a.js"></SCRIPT><script>if (a<b) alert("</scrip")</script>
<script type="application/ld+json">{"@type":"Product"}</script>
<script type = 'Application/LD+JSON ' >{"b":1}</script>
<style media="x>y">p{}</style><NoScript><img src=x></NoScript></head>
<body><!-- hidden --><p title="<script>">Hi</p><svg><svg><g/></svg><text>inner</text></svg>
<Svg/><p>after</p><!--><p>short</p><!---><b>x</b></body></html>"#;
        let out = strip_html(html);
        assert!(
            out.contains(r#"<script type="application/ld+json">{"@type":"Product"}</script>"#),
            "{out}"
        );
        assert!(out.contains(r#"{"b":1}</script>"#), "{out}");
        for gone in [
            "a.js", "alert", "p{}", "<img", "hidden", "inner", "<g/>", "<svg", "<Svg", "<style",
            "NoScript",
        ] {
            assert!(!out.contains(gone), "{gone} left in {out}");
        }
        for kept in [
            r#"<p title="<script>">Hi</p>"#,
            "<p>after</p>",
            "<p>short</p>",
            "<b>x</b>",
            "</body></html>",
        ] {
            assert!(out.contains(kept), "{kept} missing from {out}");
        }
    }

    #[test]
    fn strip_survives_malformed_html() {
        assert_eq!(strip_html("a<script>never closed"), "a");
        assert_eq!(strip_html("a<!-- never closed"), "a");
        assert_eq!(strip_html("a<svg><svg></svg>"), "a");
        assert_eq!(strip_html("a<style"), "a");
        assert_eq!(
            strip_html("<p class=\"unterminated>x"),
            "<p class=\"unterminated>x"
        );
        assert_eq!(strip_html("x < y <"), "x < y <");
        assert_eq!(strip_html("<script/>x</script>y"), "y");
        assert_eq!(strip_html("<scripts>k</scripts>"), "<scripts>k</scripts>");
        assert_eq!(strip_html("é<style>ü</style>ö"), "éö");
        assert_eq!(strip_html("<script>a</script >b"), "b");
        // Whatever the input, no panic and valid UTF-8 out.
        let samples = [
            "<",
            "<!",
            "<!-",
            "<!--",
            "<a",
            "<a b",
            "<a b=",
            "<a b='",
            "</",
            "<svg",
            "<script type=",
            "<svg/",
            "ü<",
            "<ü",
        ];
        for a in samples {
            for b in samples {
                let _ = strip_html(&format!("{a}{b}"));
                let _ = strip_html(&format!("{a}x{b}y"));
            }
        }
    }

    #[test]
    fn strip_fuzz_never_panics() {
        // A deterministic pseudo-random mix of the tokens the stripper reacts to.
        let tokens = [
            "<",
            ">",
            "/",
            "\"",
            "'",
            "=",
            " ",
            "<!--",
            "-->",
            "--!>",
            "<script",
            "</script",
            "<SVG",
            "</svg",
            "<style",
            "</STYLE",
            "<noscript",
            "type=application/ld+json",
            "a",
            "é",
            "<p",
            "</p>",
            "/>",
            "\u{1F600}",
            "-",
            "!",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let mut doc = String::new();
            for _ in 0..(seed % 40) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                doc.push_str(tokens[(seed >> 33) as usize % tokens.len()]);
            }
            let out = strip_html(&doc);
            assert!(out.len() <= doc.len(), "{doc:?} grew");
        }
    }
}
