//! Node addresses: other hosts connect to a node at its address, and the
//! address ends up in link rules and router backends, so it is held to an
//! IPv4 or IPv6 address or a DNS name.

use std::net::IpAddr;

/// Longest DNS name (RFC 1035, without the trailing dot).
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Why a string is not a node address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The address is empty.
    #[error("must not be empty")]
    Empty,
    /// An IP address no other host can connect to (`0.0.0.0`, `::`,
    /// multicast).
    #[error("{0} is not an address other hosts can connect to")]
    Unreachable(IpAddr),
    /// Neither an IP address nor a DNS name.
    #[error("{0:?} is not an IPv4 or IPv6 address or a DNS name")]
    Malformed(String),
}

/// Checks that `address` is an IPv4 or IPv6 address other hosts can connect
/// to, or a DNS name: dot-separated labels of letters, digits and '-' (1 to
/// 63 characters, not starting or ending with '-'), at most 253 characters,
/// whose last label is not all digits (so `10.0.0.256` is refused rather
/// than taken for a name).
pub fn validate_node_address(address: &str) -> Result<(), AddressError> {
    if address.is_empty() {
        return Err(AddressError::Empty);
    }
    if let Ok(ip) = address.parse::<IpAddr>() {
        return if ip.is_unspecified() || ip.is_multicast() {
            Err(AddressError::Unreachable(ip))
        } else {
            Ok(())
        };
    }
    let malformed = || AddressError::Malformed(address.to_owned());
    if address.len() > MAX_DNS_NAME_LEN {
        return Err(malformed());
    }
    let labels: Vec<&str> = address.split('.').collect();
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let last_numeric = labels
        .last()
        .is_some_and(|last| last.chars().all(|c| c.is_ascii_digit()));
    if labels.iter().all(|l| label_ok(l)) && !last_numeric {
        Ok(())
    } else {
        Err(malformed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ip_addresses_and_dns_names() {
        for ok in [
            "10.0.0.1",
            "192.168.7.20",
            "fd00::1",
            "::1",
            "h1",
            "h1.lab",
            "node-3.example.com",
            "Host7",
            &format!("{}.b", "a".repeat(63)),
        ] {
            assert_eq!(validate_node_address(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_junk() {
        for bad in [
            "__main__",
            "h1 ",
            "h1;rm",
            "-h1",
            "h1-",
            "a..b",
            ".h1",
            "h1.",
            "10.0.0.256",
            "10.0.0",
            "[fd00::1]",
            "h1:7443",
            "h\n1",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(125)),
        ] {
            assert!(
                matches!(validate_node_address(bad), Err(AddressError::Malformed(_))),
                "{bad:?} was accepted"
            );
        }
        assert_eq!(validate_node_address(""), Err(AddressError::Empty));
        assert!(matches!(
            validate_node_address("0.0.0.0"),
            Err(AddressError::Unreachable(_))
        ));
        assert!(matches!(
            validate_node_address("::"),
            Err(AddressError::Unreachable(_))
        ));
        assert!(matches!(
            validate_node_address("224.0.0.1"),
            Err(AddressError::Unreachable(_))
        ));
    }
}
