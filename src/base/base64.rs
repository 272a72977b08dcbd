//! Base64 (RFC 4648): the standard alphabet with padding, for the Responses door's
//! `encrypted_content`, and the URL-safe alphabet without padding, for OAuth PKCE. Small
//! enough that a crate would cost more than it saves.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard base64 with `=` padding (RFC 4648 §4).
pub fn encode(bytes: &[u8]) -> String {
    encode_with(bytes, STANDARD, true)
}

/// URL-safe base64 without padding (RFC 4648 §5), as PKCE (RFC 7636) and JWTs use it.
pub fn encode_url(bytes: &[u8]) -> String {
    encode_with(bytes, URL_SAFE, false)
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // 1 input byte gives 2 output characters, 2 give 3, 3 give 4.
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Marks a byte outside the standard alphabet in [`DECODE`].
const INVALID: u8 = 0xff;

/// Each byte's value in the standard alphabet, built from [`STANDARD`]: a table, not a search
/// of the alphabet per character, because a Responses history carries megabytes of
/// `encrypted_content` back on every turn.
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        table[STANDARD[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes standard base64 (padding optional); `None` for any character outside the alphabet.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=').as_bytes();
    // Four characters make three bytes; the last one to three characters, fewer (6 bits each).
    let (quads, tail) = s.as_chunks::<4>();
    // Written by index into a buffer of the final size: in the size-optimised build a push or
    // an `extend_from_slice` per quad is a call (and a `memcpy`) for every three bytes, which
    // made decoding cost three times what the table lookups do.
    let mut out = vec![0u8; quads.len() * 3 + tail.len() * 6 / 8];
    let (triples, rest) = out.as_chunks_mut::<3>();
    for (q, o) in quads.iter().zip(triples) {
        let sextet = |i: usize| DECODE[usize::from(q[i])];
        let (a, b, c, d) = (sextet(0), sextet(1), sextet(2), sextet(3));
        // A sextet is below 64; [`INVALID`] has the top bits set, so one test covers all four.
        if (a | b | c | d) >= 64 {
            return None;
        }
        let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        *o = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
    }
    let (mut acc, mut bits, mut at) = (0u32, 0, 0);
    for &c in tail {
        let v = DECODE[usize::from(c)];
        if v >= 64 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *rest.get_mut(at)? = (acc >> bits) as u8;
            at += 1;
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors of RFC 4648 §10, both alphabets.
    #[test]
    fn rfc4648_vectors() {
        for (input, std, url) in [
            ("", "", ""),
            ("f", "Zg==", "Zg"),
            ("fo", "Zm8=", "Zm8"),
            ("foo", "Zm9v", "Zm9v"),
            ("foob", "Zm9vYg==", "Zm9vYg"),
            ("fooba", "Zm9vYmE=", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(input.as_bytes()), std, "{input:?}");
            assert_eq!(encode_url(input.as_bytes()), url, "{input:?}");
            assert_eq!(decode(std).as_deref(), Some(input.as_bytes()), "{std}");
        }
        // The alphabets differ only in their last two characters.
        assert_eq!(encode(&[0xfb, 0xff]), "+/8=");
        assert_eq!(encode_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(encode_url(&[0xff; 3]), "____");
        assert_eq!(decode("not base64!"), None);
        // A character outside the alphabet in a full quad, and in the tail.
        assert_eq!(decode("Zm9v!m9v"), None);
        assert_eq!(decode("Zm9vZ!"), None);
        assert_eq!(decode("Zm9vYmFyZg").as_deref(), Some(&b"foobarf"[..]));
        let text = "thinking ✓ with unicode";
        assert_eq!(
            decode(&encode(text.as_bytes())).as_deref(),
            Some(text.as_bytes())
        );
    }
}
