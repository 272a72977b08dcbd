//! URLs for the page fetcher, parsed here rather than by a resolver: the scheme, the host with
//! every numeric form that `inet_aton` accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`)
//! turned into the address it means, so that a literal non-public address is refused before
//! anything is looked up; the canonical form sent and reported as `final_url`; and a
//! `Location` joined against the URL it came from (RFC 3986 §5.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::backends::web::guard::{blocked_message, blocked_reason};
use crate::base::error::{ApiError, ErrorKind};

/// Longest URL accepted, in bytes; real pages stay far below.
const MAX_URL_LEN: usize = 8192;

/// A URL's host, after numeric forms have been decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A lowercase DNS name (ASCII; IDNs must come as punycode).
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// A parsed http(s) URL, in the canonical form sent to ureq and reported as `final_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    https: bool,
    pub(super) host: Host,
    pub(super) port: u16,
    /// Path and query, starting with `/`; the fragment is dropped (it is never sent).
    path: String,
}

impl Target {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = match &self.host {
            Host::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
            h => h.to_string(),
        };
        let default = if self.https { 443 } else { 80 };
        if self.port == default {
            format!("{scheme}://{host}{}", self.path)
        } else {
            format!("{scheme}://{host}:{}{}", self.port, self.path)
        }
    }
}

/// Why a URL cannot be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Not a usable http(s) URL.
    Invalid(String),
    /// A literal address that is not public.
    Blocked(String),
}

impl UrlError {
    /// For a redirect's `Location`: a blocked address is still 400 (the page asked for
    /// something it may not have), while an unusable URL is the remote's fault: 502.
    pub fn in_redirect(self) -> ApiError {
        match self {
            UrlError::Blocked(m) => {
                ApiError::new(ErrorKind::InvalidRequest, format!("redirect refused: {m}"))
            }
            UrlError::Invalid(m) => ApiError::new(
                ErrorKind::BadGateway,
                format!("the remote redirected to an unusable URL: {m}"),
            ),
        }
    }
}

/// The caller's own URL: 400, whatever is wrong with it.
impl From<UrlError> for ApiError {
    fn from(e: UrlError) -> ApiError {
        match e {
            UrlError::Invalid(m) | UrlError::Blocked(m) => {
                ApiError::new(ErrorKind::InvalidRequest, m)
            }
        }
    }
}

fn invalid(m: impl Into<String>) -> UrlError {
    UrlError::Invalid(m.into())
}

/// Parses an absolute http(s) URL, decoding the host the way a resolver would and refusing
/// literal non-public addresses at once.
pub fn parse_url(raw: &str) -> Result<Target, UrlError> {
    let url = raw.trim_matches(|c: char| c.is_ascii_whitespace());
    if url.len() > MAX_URL_LEN {
        return Err(invalid(format!("url is longer than {MAX_URL_LEN} bytes")));
    }
    if url.chars().any(|c| c.is_control()) {
        return Err(invalid("url contains control characters"));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("url must be an absolute http:// or https:// URL"))?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        _ => return Err(invalid("only http and https URLs can be fetched")),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(invalid(
            "URLs with a user name or password (user@host) are refused",
        ));
    }
    let (host_part, port_part) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid("unclosed [ in the url's host"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| invalid("junk after the IPv6 address in the url"))?,
            ),
        };
        (HostPart::V6(inside), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (HostPart::Other(h), Some(p)),
            None => (HostPart::Other(authority), None),
        }
    };
    let port = match port_part {
        None | Some("") => {
            if https {
                443
            } else {
                80
            }
        }
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => match p.parse() {
            Ok(port) if port > 0 => port,
            _ => return Err(invalid(format!("bad port {p:?} in the url"))),
        },
        Some(p) => return Err(invalid(format!("bad port {p:?} in the url"))),
    };
    let host = match host_part {
        HostPart::V6(inside) => {
            if inside.contains('%') {
                return Err(invalid("IPv6 zone ids (%…) are not accepted"));
            }
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| invalid(format!("bad IPv6 address [{inside}] in the url")))?;
            Host::Ip(IpAddr::V6(ip))
        }
        HostPart::Other(h) => parse_host(h)?,
    };
    if let Host::Ip(ip) = &host {
        if let Some(reason) = blocked_reason(*ip) {
            return Err(UrlError::Blocked(blocked_message(&format!(
                "{ip} is {reason}"
            ))));
        }
    }
    let without_fragment = tail.split('#').next().unwrap_or("");
    let path = if without_fragment.starts_with('/') {
        encode_path(without_fragment)
    } else {
        format!("/{}", encode_path(without_fragment))
    };
    Ok(Target {
        https,
        host,
        port,
        path,
    })
}

enum HostPart<'a> {
    V6(&'a str),
    Other(&'a str),
}

/// A host that is not in brackets: an IPv4 number form, or a DNS name.
fn parse_host(raw: &str) -> Result<Host, UrlError> {
    if raw.is_empty() {
        return Err(invalid("the url has no host"));
    }
    if !raw.is_ascii() {
        return Err(invalid(
            "internationalised host names must be given in punycode (xn--…)",
        ));
    }
    let host = raw.to_ascii_lowercase();
    if let Some(v4) = parse_ipv4_forms(&host) {
        return v4.map(|ip| Host::Ip(IpAddr::V4(ip)));
    }
    // One trailing dot (fully qualified) means the same name.
    let name = host.strip_suffix('.').unwrap_or(&host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(invalid(format!("bad host name {raw:?} in the url")));
    }
    Ok(Host::Name(name.to_string()))
}

/// IPv4 in any form `inet_aton` and browsers accept: 1 to 4 parts, each decimal, octal
/// (leading 0) or hex (0x); the last part fills the remaining bytes (`127.1`, `2130706433`).
/// `None` when the host is a name (its last label is not a number); `Some(Err)` when it ends in
/// a number but is no valid address (browsers refuse those too).
fn parse_ipv4_forms(host: &str) -> Option<Result<Ipv4Addr, UrlError>> {
    let h = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = h.split('.').collect();
    let last = parts.last()?;
    if !looks_numeric(last) {
        return None;
    }
    let bad = || {
        Some(Err(invalid(format!(
            "bad IPv4 address {host:?} in the url"
        ))))
    };
    if parts.len() > 4 {
        return bad();
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for p in &parts {
        match ipv4_number(p) {
            Some(n) => numbers.push(n),
            None => return bad(),
        }
    }
    let (last, init) = match numbers.split_last() {
        Some(split) => split,
        None => return bad(),
    };
    if init.iter().any(|&n| n > 255) {
        return bad();
    }
    let room = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << room {
        return bad();
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    u32::try_from(value)
        .ok()
        .map(|v| Ok(Ipv4Addr::from(v)))
        .or_else(bad)
}

/// True for a label that a resolver would read as a number (decimal digits, or 0x + hex).
fn looks_numeric(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .map(|d| d.bytes().all(|b| b.is_ascii_hexdigit()));
    !label.is_empty() && (label.bytes().all(|b| b.is_ascii_digit()) || hex == Some(true))
}

/// One part of a numeric IPv4 form; `None` if it is not a valid number.
fn ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if part.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    // Anything past 2^32 is invalid anyway; parsing as u64 from at most 20 digits is exact.
    u64::from_str_radix(digits, radix).ok()
}

/// Percent-encodes the bytes of a path or query that may not appear raw in a request line.
fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves a `Location` value against the URL it came from (RFC 3986 §5.2).
pub fn join_url(base: &Target, location: &str) -> Result<String, UrlError> {
    let loc = location.trim();
    if loc.len() > MAX_URL_LEN {
        return Err(invalid("Location is too long"));
    }
    let has_scheme = loc
        .find(':')
        .map(|i| {
            let scheme = &loc[..i];
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .unwrap_or(false);
    let base_url = base.url();
    let origin = &base_url[..base_url.len() - base.path.len()];
    let scheme = if base.https { "https" } else { "http" };
    let base_path = base.path.split('?').next().unwrap_or("/");
    if has_scheme {
        return Ok(loc.to_string());
    }
    let joined = if let Some(rest) = loc.strip_prefix("//") {
        return Ok(format!("{scheme}://{rest}"));
    } else if loc.starts_with('/') {
        loc.to_string()
    } else if loc.starts_with('?') {
        format!("{base_path}{loc}")
    } else if loc.is_empty() || loc.starts_with('#') {
        base.path.clone()
    } else {
        let dir = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
        format!("{dir}{loc}")
    };
    let (path, query) = match joined.split_once('?') {
        Some((p, q)) => (p.to_string(), format!("?{q}")),
        None => (joined.clone(), String::new()),
    };
    Ok(format!("{origin}{}{query}", remove_dot_segments(&path)))
}

/// RFC 3986 §5.2.4, on a path starting with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::http::Uri;

    fn host_of(url: &str) -> Result<Host, UrlError> {
        parse_url(url).map(|t| t.host)
    }

    #[test]
    fn numeric_host_forms_are_decoded_and_refused() {
        for url in [
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.1/",
            "http://0x7F000001/",
            "http://127.1/",
            "http://127.0.1/",
            "http://017700000001/",
            "http://127.0.0.1./",
            "http://0/",
            "http://0x/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]:8080/",
            "HTTP://127.000.000.001:80/",
        ] {
            assert!(
                matches!(parse_url(url), Err(UrlError::Blocked(_))),
                "{url}: {:?}",
                parse_url(url)
            );
        }
        assert_eq!(
            host_of("http://0x08.0x08.010.8/"),
            Ok(Host::Ip("8.8.8.8".parse().unwrap()))
        );
        assert_eq!(
            host_of("http://134744072/"),
            Ok(Host::Ip("8.8.8.8".parse().unwrap()))
        );
        for bad in [
            "http://256.0.0.1/",
            "http://1.2.3.4.5/",
            "http://08.1.1.1/",
            "http://4294967296/",
            "http://1..2/",
            "http://foo.0x1/",
            "http://1.2.65536/",
            "http://99999999999999999999999/",
        ] {
            assert!(
                matches!(parse_url(bad), Err(UrlError::Invalid(_))),
                "{bad}: {:?}",
                parse_url(bad)
            );
        }
    }

    #[test]
    fn url_parsing() {
        let t = parse_url("https://Example.COM:8443/a b?q=ü#frag").unwrap();
        assert_eq!(t.host, Host::Name("example.com".into()));
        assert_eq!(t.port, 8443);
        assert_eq!(t.url(), "https://example.com:8443/a%20b?q=%C3%BC");
        let t = parse_url("http://[2606:4700::1]:8443").unwrap();
        assert_eq!(t.url(), "http://[2606:4700::1]:8443/");
        assert_eq!(t.host.to_string(), "2606:4700::1");
        assert_eq!(
            parse_url("http://example.com:80?x").unwrap().url(),
            "http://example.com/?x"
        );
        assert_eq!(
            parse_url("https://example.com.").unwrap().url(),
            "https://example.com/"
        );
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com",
            "http://user:pw@example.com/",
            "http://user@example.com/",
            "http:///path",
            "http://exa mple.com/",
            "http://example.com:0/",
            "http://example.com:65536/",
            "http://example.com:8x/",
            "http://[fe80::1%eth0]/",
            "http://[::1/",
            "http://bücher.de/",
            "http://a\\b.com/",
            "http://ex%61mple.com/",
            "http://example.com/a\nb",
            "gopher://example.com/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be refused");
        }
        // Every accepted URL must be one ureq accepts too.
        for ok in [
            "http://example.com/a%zz[]{}|?q=<>\"",
            "http://a_b.example/~x",
        ] {
            let url = parse_url(ok).unwrap().url();
            assert!(url.parse::<Uri>().is_ok(), "{url}");
        }
    }

    #[test]
    fn joining_redirects() {
        let base = parse_url("https://example.com/a/b/c?q=1").unwrap();
        let j = |loc: &str| join_url(&base, loc).unwrap();
        assert_eq!(j("http://other.org/x"), "http://other.org/x");
        assert_eq!(j("//cdn.example.net/y"), "https://cdn.example.net/y");
        assert_eq!(j("/root"), "https://example.com/root");
        assert_eq!(j("d"), "https://example.com/a/b/d");
        assert_eq!(j("../d?z=2"), "https://example.com/a/d?z=2");
        assert_eq!(j("./"), "https://example.com/a/b/");
        assert_eq!(j("../../../../e"), "https://example.com/e");
        assert_eq!(j("?n=3"), "https://example.com/a/b/c?n=3");
        assert_eq!(j(""), "https://example.com/a/b/c?q=1");
        let odd = parse_url("http://example.com:8080/").unwrap();
        assert_eq!(join_url(&odd, "x").unwrap(), "http://example.com:8080/x");
        let v6 = parse_url("http://[2606:4700::1]:81/p/q").unwrap();
        assert_eq!(join_url(&v6, "r").unwrap(), "http://[2606:4700::1]:81/p/r");
        // The joined URL is parsed (and guarded) again.
        let to_private = join_url(&base, "http://10.0.0.1/").unwrap();
        assert!(matches!(parse_url(&to_private), Err(UrlError::Blocked(_))));
        assert!(parse_url(&j("ftp://x/")).is_err());
    }
}
