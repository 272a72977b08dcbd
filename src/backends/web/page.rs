//! The fetched page: which content types are served, reading the body under the byte cap, and
//! decoding it to text.
//!
//! HTML (`text/html`, `application/xhtml+xml`, or no content type) is returned with
//! [`strip_html`] applied unless the caller asks otherwise. Other textual types (`text/*`,
//! JSON, XML, JavaScript, `+json`, `+xml`) are returned as they are, never stripped: removing
//! `<script>` from a JSON document would corrupt it. Anything else is refused (415) before its
//! body is read, as is a body holding NUL bytes. Text is decoded as UTF-8 (bad bytes become
//! U+FFFD) unless the `Content-Type` charset is Latin-1/Windows-1252; an HTML `<meta charset>`
//! is not looked at. At most `max_bytes` bytes of the remote body are read (one more tells
//! whether there was more: `truncated`); a cut in the middle of a UTF-8 character is trimmed.

use std::io::Read;

use crate::backends::web::connect::transport_failure;
use crate::backends::web::strip::strip_html;
use crate::backends::web::url::Target;
use crate::base::error::{ApiError, ErrorKind};

/// A fetched page, ready to be answered.
#[derive(Debug)]
pub struct Page {
    /// The remote's own status (whatever it was).
    pub status: u16,
    pub final_url: String,
    pub content_type: String,
    pub truncated: bool,
    pub text: String,
}

/// How a content type is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Html,
    Text,
    Binary,
}

/// Classifies a `Content-Type` value (parameters ignored, case-insensitive).
fn kind_of(content_type: &str) -> Kind {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "" | "text/html" | "application/xhtml+xml" => Kind::Html,
        "application/json"
        | "application/xml"
        | "application/javascript"
        | "application/ecmascript"
        | "application/x-javascript"
        | "application/yaml"
        | "application/x-yaml"
        | "application/toml"
        | "application/csv"
        | "application/x-ndjson" => Kind::Text,
        e if e.starts_with("text/") || e.ends_with("+json") || e.ends_with("+xml") => Kind::Text,
        _ => Kind::Binary,
    }
}

/// Reads the final answer's body under the cap and decodes it.
pub fn read_page(
    resp: &mut ureq::http::Response<ureq::Body>,
    target: &Target,
    status: u16,
    max_bytes: u64,
    strip: bool,
) -> Result<Page, ApiError> {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let content_type = header("content-type");
    let encoding = header("content-encoding");
    let kind = kind_of(&content_type);
    if kind == Kind::Binary {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            format!("the page's content type {content_type:?} is not text; /v1/fetch returns only HTML and other text"),
        ));
    }
    if !encoding.is_empty() && !encoding.eq_ignore_ascii_case("identity") {
        return Err(ApiError::new(
            ErrorKind::BadGateway,
            format!("the remote sent a {encoding:?}-encoded body although none was asked for"),
        ));
    }
    let mut bytes = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| transport_failure(ureq::Error::from(e), target))?;
    let truncated = bytes.len() as u64 > max_bytes;
    if truncated {
        bytes.truncate(max_bytes as usize);
    }
    if bytes.contains(&0) {
        return Err(ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "the page holds binary data (NUL bytes); /v1/fetch returns only text",
        ));
    }
    let mut text = decode(bytes, &content_type, truncated);
    if strip && kind == Kind::Html {
        text = strip_html(&text);
    }
    Ok(Page {
        status,
        final_url: target.url(),
        content_type,
        truncated,
        text,
    })
}

/// Decodes a body: Latin-1 / Windows-1252 when the header says so, otherwise UTF-8 with bad
/// bytes replaced. A truncated body loses a trailing partial UTF-8 character rather than
/// ending in a replacement character.
fn decode(mut bytes: Vec<u8>, content_type: &str, truncated: bool) -> String {
    let charset = content_type
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase())
        .unwrap_or_default();
    if matches!(
        charset.as_str(),
        "iso-8859-1" | "latin1" | "l1" | "iso8859-1" | "windows-1252" | "cp1252" | "us-ascii"
    ) {
        return bytes.iter().map(|&b| cp1252(b)).collect();
    }
    if truncated {
        trim_partial_utf8(&mut bytes);
    }
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// One Windows-1252 byte as a char (a superset of Latin-1, which is what browsers do for both).
fn cp1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(u32::from(HIGH[usize::from(b - 0x80)])).unwrap_or('\u{FFFD}'),
        _ => char::from(b),
    }
}

/// Drops an incomplete UTF-8 sequence at the end of `b` (left by cutting at the byte cap).
fn trim_partial_utf8(b: &mut Vec<u8>) {
    let n = b.len();
    let mut start = n;
    while start > 0 && n - start < 3 && b[start - 1] & 0xC0 == 0x80 {
        start -= 1;
    }
    if start == 0 {
        return;
    }
    let need = match b[start - 1] {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    };
    if n - (start - 1) < need {
        b.truncate(start - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_kinds_and_decoding() {
        assert_eq!(kind_of("text/html; charset=utf-8"), Kind::Html);
        assert_eq!(kind_of(""), Kind::Html);
        assert_eq!(kind_of("Application/XHTML+XML"), Kind::Html);
        assert_eq!(kind_of("text/plain"), Kind::Text);
        assert_eq!(kind_of("application/ld+json"), Kind::Text);
        assert_eq!(kind_of("application/rss+xml"), Kind::Text);
        assert_eq!(kind_of("image/png"), Kind::Binary);
        assert_eq!(kind_of("application/pdf"), Kind::Binary);
        assert_eq!(kind_of("application/octet-stream"), Kind::Binary);
        assert_eq!(
            decode(
                b"caf\xe9 \x80".to_vec(),
                "text/html; charset=ISO-8859-1",
                false
            ),
            "café €"
        );
        let mut cut = "aé".as_bytes().to_vec();
        cut.pop();
        assert_eq!(decode(cut.clone(), "text/html", true), "a");
        assert_eq!(decode(cut, "text/html", false), "a\u{FFFD}");
        let mut euro = "x€".as_bytes().to_vec();
        euro.truncate(3);
        assert_eq!(decode(euro, "", true), "x");
        assert_eq!(decode("x€".as_bytes().to_vec(), "", true), "x€");
    }
}
