//! Random identifiers and hex: key secrets, UUIDs for session and request ids, device ids.

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `N` bytes from the OS random source. The OS source failing is not something a request can
/// recover from, so callers that cannot report an error fall back to a time-based value.
pub fn random<const N: usize>() -> Result<[u8; N], String> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(b)
}

/// A random number below `bound` (for jitter; not for secrets).
pub fn jitter(bound: u64) -> u64 {
    let b = random::<8>().unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        u64::from(nanos).to_le_bytes()
    });
    u64::from_le_bytes(b) % bound.max(1)
}

/// A random (version 4) UUID, e.g. `0b6c6c1e-6f1a-4c3e-9f0a-2d4b8e1f7a90`.
pub fn uuid_v4() -> String {
    let mut b = random::<16>().unwrap_or_else(|_| {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&jitter(u64::MAX).to_le_bytes());
        b
    });
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_shape() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, uuid_v4());
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert!(jitter(10) < 10);
    }
}
