//! Keeping secrets out of text that came from elsewhere (a server's error body, the CLI's
//! output, a file) before it reaches a log line or an error message.

/// Replaces anything token-like with `[redacted]`: an Anthropic token (`sk-ant-…`, shown as
/// `sk-ant-[redacted]` so the reader knows what was there), the word after `Bearer`, and any
/// run of token characters with a part of 16+ characters mixing letters and digits (or any
/// part of 32+). Ordinary words, model ids, addresses and paths are kept.
pub fn redact(text: &str) -> String {
    let is_tok = |c: char| c.is_ascii_alphanumeric() || "-_+/=.~".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut after_bearer = false;
    let mut rest = text;
    while let Some(start) = rest.find(is_tok) {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let len = tail.find(|c: char| !is_tok(c)).unwrap_or(tail.len());
        let run = &tail[..len];
        if run.contains("sk-ant-") {
            out.push_str("sk-ant-[redacted]");
        } else if after_bearer || looks_random(run) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        after_bearer = run.eq_ignore_ascii_case("bearer");
        rest = &tail[len..];
        // `Bearer` and its token are separated by exactly the whitespace we skip here.
        if after_bearer {
            let ws = rest.len() - rest.trim_start_matches([' ', '\t']).len();
            out.push_str(&rest[..ws]);
            rest = &rest[ws..];
        }
    }
    out.push_str(rest);
    out
}

/// A random-looking run: some part (between `-_./+=~`) is long and mixes letters and digits.
fn looks_random(run: &str) -> bool {
    run.split(['-', '_', '.', '/', '+', '=', '~']).any(|part| {
        let letters = part.chars().any(|c| c.is_ascii_alphabetic());
        let digits = part.chars().any(|c| c.is_ascii_digit());
        part.len() >= 32 || (part.len() >= 16 && letters && digits)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_and_ordinary_text_stays() {
        assert_eq!(
            redact("a sk-ant-oat01-xyz_1.2 b sk-ant-"),
            "a sk-ant-[redacted] b sk-ant-[redacted]"
        );
        assert_eq!(redact("key sk-ant-api03-x_y-z."), "key sk-ant-[redacted]");
        assert_eq!(
            redact("Authorization: Bearer abc.def"),
            "Authorization: Bearer [redacted]"
        );
        assert_eq!(
            redact("tok ghp_0123456789abcdefABCDEF0123"),
            "tok [redacted]"
        );
        for kept in [
            "nothing here",
            "model claude-3-5-haiku-20241022 at 127.0.0.1:8080 session 0b6c6c1e-6f1a-4c3e-9f0a-2d4b8e1f7a90",
            "/tmp/claudegate-cli-0a1b/work",
            "invalid_grant: refresh token expired",
        ] {
            assert_eq!(redact(kept), kept);
        }
    }
}
