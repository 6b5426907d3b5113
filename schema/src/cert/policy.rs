//! Which names a certificate may carry: DNS names and IP addresses checked
//! on their own, and against a profile's domain policy. The same policy
//! becomes the issuing CA's X.509 name constraints, so the parsing lives
//! here once for both.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::profile::CertificateProfile;

/// Why a name or a policy entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not a valid DNS name: {1}")]
    BadDnsName(String, &'static str),
    #[error("{0:?} is not an IP address")]
    BadIp(String),
    #[error("{0:?} is not an IP range (address or address/prefix)")]
    BadRange(String),
    #[error("{0:?} is outside the domain policy of profile {1:?}")]
    OutsidePolicy(String, String),
}

/// Check `name` as a DNS name of a certificate: a host name
/// ([`crate::rules::is_hostname`]), optionally behind one leading `*.`
/// label (a wildcard certificate); a `*` anywhere else is refused.
pub fn check_dns_name(name: &str) -> Result<(), NameError> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if crate::rules::is_hostname(rest) && !rest.ends_with('.') {
        Ok(())
    } else {
        Err(NameError::BadDnsName(
            name.to_owned(),
            "labels of letters, digits and inner `-`, 63 characters each, 253 in all (a `*` only as the whole first label)",
        ))
    }
}

/// The DNS names of a comma-separated field (seed 002: "if more than one
/// DNS entry is required, the entries must be comma-separated"), trimmed,
/// lower-cased, empty entries dropped (the seed's asset row has `",,"`).
pub fn split_dns_list(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpRange {
    /// `10.0.0.0/8`, `2001:db8::/32`, or one address.
    pub fn parse(s: &str) -> Result<IpRange, NameError> {
        let bad = || NameError::BadRange(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpRange { addr, prefix })
    }

    /// The address as a 128-bit number and its width in bits (IPv4 uses
    /// the low 32), so both families share one arithmetic.
    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u32::from(a) as u128, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (net, width) = Self::bits(self.addr);
        let (ip, _) = Self::bits(ip);
        let host_bits = u32::from(width - self.prefix);
        let shift = |v: u128| v.checked_shr(host_bits).unwrap_or(0);
        shift(net) == shift(ip)
    }

    /// The network address and mask as bytes (4 or 16 each), the form of an
    /// X.509 name constraint.
    pub fn address_and_mask(&self) -> (Vec<u8>, Vec<u8>) {
        let (net, width) = Self::bits(self.addr);
        let mask: u128 = if self.prefix == 0 {
            0
        } else {
            (!0u128 << (width - self.prefix)) & (!0u128 >> (128 - width))
        };
        let len = usize::from(width / 8);
        let bytes = |v: u128| v.to_be_bytes()[16 - len..].to_vec();
        (bytes(net & mask), bytes(mask))
    }
}

/// Which names a profile's certificates may carry. Empty: no domain policy
/// (any valid host name, any IP address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainPolicy {
    /// Exact names (`www.example.org`) and suffixes (`*.example.org`: any
    /// name below example.org, not example.org itself).
    pub names: Vec<String>,
    /// Allowed IP addresses: `10.1.0.0/16`, `2001:db8::/32`, `192.0.2.7`.
    pub ip_ranges: Vec<String>,
}

impl DomainPolicy {
    /// Whether the policy restricts anything.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ip_ranges.is_empty()
    }

    /// Check every entry.
    pub fn check(&self) -> Result<(), NameError> {
        for n in &self.names {
            check_dns_name(n)?;
        }
        for r in &self.ip_ranges {
            IpRange::parse(r)?;
        }
        Ok(())
    }

    /// Whether the DNS `name` is allowed.
    pub fn allows_dns(&self, name: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            match entry.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => entry == name,
            }
        })
    }

    /// Whether the IP address is allowed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.is_empty() || self.ranges().iter().any(|r| r.contains(ip))
    }

    /// The DNS subtrees of an X.509 name constraint that covers the policy:
    /// `example.org` for `*.example.org` (RFC 5280 subtrees also cover the
    /// name itself, so this is the looser, second line of defence).
    pub fn permitted_dns_subtrees(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .names
            .iter()
            .map(|n| n.strip_prefix("*.").unwrap_or(n).to_ascii_lowercase())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The IP ranges, parsed (entries were checked when the profile was
    /// stored).
    pub fn ranges(&self) -> Vec<IpRange> {
        self.ip_ranges
            .iter()
            .filter_map(|r| IpRange::parse(r).ok())
            .collect()
    }
}

/// Check `dns` and `ips` as names of a certificate of `profile`: each DNS
/// name valid and inside the policy, each IP address parsed and inside it.
pub fn check_names(
    profile: &CertificateProfile,
    dns: &[String],
    ips: &[String],
) -> Result<Vec<IpAddr>, NameError> {
    for name in dns {
        check_dns_name(name)?;
        if !profile.domain_policy.allows_dns(name) {
            return Err(NameError::OutsidePolicy(name.clone(), profile.name.clone()));
        }
    }
    let mut parsed = Vec::with_capacity(ips.len());
    for ip in ips {
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| NameError::BadIp(ip.clone()))?;
        if !profile.domain_policy.allows_ip(addr) {
            return Err(NameError::OutsidePolicy(ip.clone(), profile.name.clone()));
        }
        parsed.push(addr);
    }
    Ok(parsed)
}
