//! CORS for browser pages served from this machine: the grant on answers and the preflight.

use tiny_http::Request;

use super::{header, Reply};

/// Browser pages served from this machine may call us; others get no CORS grant. The origin
/// must be exactly `http(s)://localhost`, `127.0.0.1` or `[::1]`, with an optional port.
pub fn local_origin(origin: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    let Some(rest) = rest else { return false };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && h != "[" && !p.contains(']') => (h, Some(p)),
        _ => (rest, None),
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Headers granting CORS to a local origin; empty for any other origin or none.
pub fn cors_grant(rq: &Request) -> Vec<(&'static str, String)> {
    match header(rq, "Origin") {
        Some(origin) if local_origin(origin) => vec![
            ("Access-Control-Allow-Origin", origin.to_string()),
            ("Vary", "Origin".into()),
            (
                "Access-Control-Expose-Headers",
                "Retry-After, request-id, x-request-id".into(),
            ),
        ],
        _ => vec![],
    }
}

/// The answer to a CORS preflight (`OPTIONS`): 204, with the grant only for local origins.
pub fn preflight(rq: &Request) -> (Reply, Vec<(&'static str, String)>) {
    let mut cors = cors_grant(rq);
    if !cors.is_empty() {
        cors.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()));
        // Echo the requested headers when they are plain header names: SDKs send many
        // (anthropic-*, x-stainless-*), and the origin is already known to be local.
        let asked = header(rq, "Access-Control-Request-Headers").unwrap_or("");
        let names_ok = asked.len() <= 2048
            && asked
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b));
        let allowed = if names_ok && !asked.trim().is_empty() {
            asked.to_string()
        } else {
            "authorization, x-api-key, content-type, anthropic-version, anthropic-beta".into()
        };
        cors.push(("Access-Control-Allow-Headers", allowed));
        cors.push(("Access-Control-Max-Age", "600".into()));
    }
    (Reply::empty(204), cors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_origins_only() {
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "https://127.0.0.1:8443",
            "http://[::1]:5173",
            "http://[::1]",
        ] {
            assert!(local_origin(ok), "{ok}");
        }
        for bad in [
            "http://localhost.evil.com",
            "http://evil.com",
            "null",
            "http://127.0.0.1.nip.io",
            "http://localhost:abc",
            "ftp://localhost",
            "http://localhost:123456",
            "http://user@localhost",
        ] {
            assert!(!local_origin(bad), "{bad}");
        }
    }
}
