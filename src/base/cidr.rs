//! IP address ranges written as CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses
//! (`127.0.0.1`, `::1`): parsing, printing and membership. `trusted_proxies` is a list of them.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack listener reports for an
//! IPv4 peer) is the same host as its IPv4 form, so both the ranges and the addresses tested
//! against them are compared in canonical form: a mapped range is stored as its IPv4 one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One range: a network address (host bits zero) and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` (either family; a mapped IPv6 address counts as IPv4) is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

/// Whether any range in `list` holds `ip`.
pub fn any_contains(list: &[Cidr], ip: IpAddr) -> bool {
    list.iter().any(|c| c.contains(ip))
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = String;

    /// `ADDRESS` (a range of one) or `ADDRESS/PREFIX`. Host bits set below the prefix
    /// (`10.0.0.1/8`) are refused rather than silently cleared: such an entry is usually a typo
    /// for a single address or for a narrower range, and guessing would trust the wrong hosts.
    fn from_str(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
        let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let ip = ip.to_canonical();
        let width: u8 = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => {
                let n: u32 = p
                    .parse()
                    .ok()
                    .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("prefix length {p:?} is not a number"))?;
                let written_width = if mapped { 128 } else { u32::from(width) };
                if n > written_width {
                    return Err(format!("prefix length /{n} is longer than {written_width}"));
                }
                // A mapped range counts its prefix over 128 bits; its IPv4 form over 32.
                let n = if mapped { n.checked_sub(96) } else { Some(n) }.ok_or_else(|| {
                    format!("prefix length /{n} is shorter than /96 for an IPv4-mapped address")
                })?;
                n as u8
            }
        };
        let cidr = Cidr { net: ip, prefix };
        let host_bits_clear = match ip {
            IpAddr::V4(v4) => u32::from(v4) & !mask32(prefix) == 0,
            IpAddr::V6(v6) => u128::from(v6) & !mask128(prefix) == 0,
        };
        if !host_bits_clear {
            return Err(format!(
                "{s} has bits set below its /{prefix} prefix (write the network address, or the \
                 single address without a prefix)"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = if self.net.is_ipv4() { 32 } else { 128 };
        if self.prefix == width {
            write!(f, "{}", self.net)
        } else {
            write!(f, "{}/{}", self.net, self.prefix)
        }
    }
}

/// Printed as written in the config (`config.example.json` is the defaults serialized).
impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_hold_what_they_should() {
        let ten = cidr("10.0.0.0/8");
        assert!(ten.contains(ip("10.0.0.0")));
        assert!(ten.contains(ip("10.255.255.255")));
        assert!(!ten.contains(ip("11.0.0.0")));
        assert!(!ten.contains(ip("9.255.255.255")));
        assert!(ten.contains(ip("::ffff:10.1.2.3")), "mapped counts as IPv4");
        assert!(
            !ten.contains(ip("::a00:1")),
            "an IPv6 address is not in an IPv4 range"
        );

        let one = cidr("127.0.0.1");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        assert!(cidr("::1").contains(ip("::1")));
        assert!(!cidr("::1").contains(ip("127.0.0.1")));

        let all4 = cidr("0.0.0.0/0");
        assert!(all4.contains(ip("1.2.3.4")) && all4.contains(ip("255.255.255.255")));
        assert!(!all4.contains(ip("::1")));
        let all6 = cidr("::/0");
        assert!(all6.contains(ip("2001:db8::1")) && !all6.contains(ip("1.2.3.4")));

        let ula = cidr("fd00::/8");
        assert!(ula.contains(ip("fd12:3456::1")));
        assert!(!ula.contains(ip("fe80::1")));
        let odd = cidr("192.168.4.0/22");
        assert!(odd.contains(ip("192.168.7.255")));
        assert!(!odd.contains(ip("192.168.8.0")));
        let tailnet = cidr("100.64.0.0/10");
        assert!(tailnet.contains(ip("100.127.255.255")));
        assert!(!tailnet.contains(ip("100.128.0.0")));
    }

    #[test]
    fn mapped_ranges_are_stored_as_ipv4() {
        assert_eq!(cidr("::ffff:10.0.0.0/104"), cidr("10.0.0.0/8"));
        assert_eq!(cidr("::ffff:127.0.0.1"), cidr("127.0.0.1"));
        assert!(cidr("::ffff:10.0.0.0/104").contains(ip("10.9.9.9")));
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (bad, says) in [
            ("", "not an IPv4 or IPv6 address"),
            ("localhost", "not an IPv4 or IPv6 address"),
            ("10.0.0", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/", "not a number"),
            ("10.0.0.0/+8", "not a number"),
            ("10.0.0.0/x", "not a number"),
            ("10.0.0.0/33", "longer than 32"),
            ("::/129", "longer than 128"),
            ("10.0.0.0/300", "longer than 32"),
            ("10.0.0.1/8", "bits set below"),
            ("fd00::1/8", "bits set below"),
            ("::ffff:10.0.0.0/95", "shorter than /96"),
            ("10.0.0.0/8/8", "not a number"),
            ("[::1]", "not an IPv4 or IPv6 address"),
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn prints_as_written() {
        for s in [
            "10.0.0.0/8",
            "127.0.0.1",
            "::1",
            "fd00::/8",
            "0.0.0.0/0",
            "::/0",
        ] {
            assert_eq!(cidr(s).to_string(), s);
        }
        assert_eq!(cidr(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("10.0.0.0/32").to_string(), "10.0.0.0");
        assert_eq!(
            serde_json::to_string(&[cidr("10.0.0.0/8")]).unwrap(),
            r#"["10.0.0.0/8"]"#
        );
    }

    #[test]
    fn any_contains_checks_every_range() {
        let list = [cidr("10.0.0.0/8"), cidr("::1")];
        assert!(any_contains(&list, ip("10.1.1.1")));
        assert!(any_contains(&list, ip("::1")));
        assert!(!any_contains(&list, ip("127.0.0.1")));
        assert!(!any_contains(&[], ip("127.0.0.1")));
    }
}
