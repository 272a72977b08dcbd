//! The address guard: which addresses a page fetch may never reach.
//!
//! A server-side fetch is a classic SSRF door into the host's own network (cloud metadata at
//! 169.254.169.254, admin panels on 127.0.0.1, the LAN). Every address a fetch would connect
//! to, literal or resolved, on every hop, is judged here first; no configuration key can turn
//! this off.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not public, first match wins: (network, prefix length, description).
const V4_BLOCKED: &[(u32, u32, &str)] = &[
    (0x0000_0000, 8, "a \"this network\" address (0.0.0.0/8)"),
    (0x0a00_0000, 8, "a private address (10.0.0.0/8)"),
    (0x6440_0000, 10, "a shared/CGNAT address (100.64.0.0/10)"),
    (0x7f00_0000, 8, "a loopback address (127.0.0.0/8)"),
    (0xa9fe_0000, 16, "a link-local address (169.254.0.0/16)"),
    (0xac10_0000, 12, "a private address (172.16.0.0/12)"),
    (
        0xc000_0000,
        24,
        "an IETF protocol assignment (192.0.0.0/24)",
    ),
    (0xc000_0200, 24, "a documentation address (192.0.2.0/24)"),
    (
        0xc058_6300,
        24,
        "a 6to4 relay anycast address (192.88.99.0/24)",
    ),
    (0xc0a8_0000, 16, "a private address (192.168.0.0/16)"),
    (0xc612_0000, 15, "a benchmarking address (198.18.0.0/15)"),
    (0xc633_6400, 24, "a documentation address (198.51.100.0/24)"),
    (0xcb00_7100, 24, "a documentation address (203.0.113.0/24)"),
    (0xe000_0000, 4, "a multicast address (224.0.0.0/4)"),
    (0xffff_ffff, 32, "the broadcast address"),
    (0xf000_0000, 4, "a reserved address (240.0.0.0/4)"),
];

/// The refusal of a non-public address the caller wrote (a literal in the URL or a
/// `Location`); `what` names it and says why.
pub fn blocked_message(what: &str) -> String {
    format!("blocked address: {what}; /v1/fetch only reaches public addresses")
}

/// The refusal of a name whose DNS answer holds a non-public address. It names neither the
/// address nor its range: the caller did not write them, and saying them would make
/// `/v1/fetch` an oracle for what internal names resolve to.
pub fn blocked_name_message(name: &str) -> String {
    blocked_message(&format!("{name} resolves to a non-public address"))
}

/// Why `ip` must not be fetched from, or `None` when it is a public address.
///
/// IPv6 is allow-listed: only global unicast (2000::/3) passes, minus its special ranges, plus
/// the forms that carry an IPv4 address (IPv4-mapped, NAT64, 6to4), which are judged by that
/// IPv4 address.
pub fn blocked_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_blocked(v4),
        IpAddr::V6(v6) => v6_blocked(v6),
    }
}

fn v4_blocked(ip: Ipv4Addr) -> Option<&'static str> {
    let n = u32::from(ip);
    V4_BLOCKED
        .iter()
        .find(|(net, len, _)| {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            n & mask == *net
        })
        .map(|(_, _, why)| *why)
}

fn v6_blocked(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let n = u128::from(ip);
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if n == 0 {
        return Some("the unspecified address (::)");
    }
    if n == 1 {
        return Some("the loopback address (::1)");
    }
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return v4_blocked(embedded(s[6], s[7]))
            .map(|_| "an IPv4-mapped address (::ffff:0:0/96) of a non-public IPv4 address");
    }
    if s[..6] == [0; 6] {
        return Some("an IPv4-compatible address (::/96, deprecated)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return v4_blocked(embedded(s[6], s[7]))
            .map(|_| "a NAT64 address (64:ff9b::/96) of a non-public IPv4 address");
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some("a local-use NAT64 address (64:ff9b:1::/48)");
    }
    if s[0] & 0xfe00 == 0xfc00 {
        return Some("a unique local address (fc00::/7)");
    }
    if s[0] & 0xffc0 == 0xfe80 {
        return Some("a link-local address (fe80::/10)");
    }
    if s[0] & 0xffc0 == 0xfec0 {
        return Some("a site-local address (fec0::/10)");
    }
    if s[0] & 0xff00 == 0xff00 {
        return Some("a multicast address (ff00::/8)");
    }
    if s[0] & 0xe000 != 0x2000 {
        return Some("not a global unicast address (outside 2000::/3)");
    }
    if s[0] == 0x2001 && s[1] & 0xfe00 == 0 {
        return Some("an IETF protocol assignment (2001::/23: Teredo, benchmarking, ORCHID)");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("a documentation address (2001:db8::/32)");
    }
    if s[0] == 0x3fff && s[1] & 0xf000 == 0 {
        return Some("a documentation address (3fff::/20)");
    }
    if s[0] == 0x2002 {
        return v4_blocked(embedded(s[1], s[2]))
            .map(|_| "a 6to4 address (2002::/16) of a non-public IPv4 address");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        blocked_reason(s.parse().unwrap()).is_some()
    }

    #[test]
    fn blocked_ipv4_ranges() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.55",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "203.0.114.1",
            "223.255.255.255",
        ] {
            assert!(!blocked(ip), "{ip} should be public");
        }
        assert_eq!(
            blocked_reason("255.255.255.255".parse().unwrap()),
            Some("the broadcast address")
        );
    }

    #[test]
    fn blocked_ipv6_ranges() {
        for ip in [
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::8.8.8.8",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "2001:db8::1",
            "2001::1",
            "2001:2::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "5f00::1",
            "1::1",
        ] {
            assert!(blocked(ip), "{ip} should be blocked");
        }
        for ip in [
            "2606:4700::1",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "3fff:1000::1",
        ] {
            assert!(!blocked(ip), "{ip} should be public");
        }
    }
}
