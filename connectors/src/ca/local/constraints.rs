//! A profile's domain policy as X.509 name constraints, carried by the
//! sub-CA that issues for it (a second line of defence behind the daemon's
//! own name checks), and the policy's canonical form, which names that
//! sub-CA: equal forms share one.

use idsync_schema::cert::DomainPolicy;
use rcgen::{CidrSubnet, GeneralSubtree, NameConstraints};

/// The canonical form of a domain policy: what its name constraints are
/// made of, one entry a line, sorted. Equal forms, equal sub-CA.
pub(super) fn canonical_policy(policy: &DomainPolicy) -> String {
    let mut out = String::from("idsync domain policy v1\n");
    for d in policy.permitted_dns_subtrees() {
        out.push_str("dns ");
        out.push_str(&d);
        out.push('\n');
    }
    let mut ips: Vec<String> = policy
        .ranges()
        .iter()
        .map(|r| {
            let (a, m) = r.address_and_mask();
            format!("ip {}/{}\n", hex_lower(&a), hex_lower(&m))
        })
        .collect();
    ips.sort();
    ips.dedup();
    out.extend(ips);
    out
}

pub(super) fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The name constraints of a domain policy: permitted DNS subtrees and IP
/// ranges. A policy with names but no IP range allows no IP address: the
/// constraint then excludes every IPv4 and IPv6 address. (A policy with IP
/// ranges and no name does not exclude DNS names: OpenSSL would then also
/// refuse a host name in the subject's CN.)
pub(super) fn name_constraints(policy: &DomainPolicy) -> NameConstraints {
    let dns = policy.permitted_dns_subtrees();
    let ranges = policy.ranges();
    let mut permitted: Vec<GeneralSubtree> =
        dns.iter().cloned().map(GeneralSubtree::DnsName).collect();
    for r in &ranges {
        let (a, m) = r.address_and_mask();
        let subnet = match (<[u8; 4]>::try_from(&a[..]), <[u8; 4]>::try_from(&m[..])) {
            (Ok(a), Ok(m)) => CidrSubnet::V4(a, m),
            _ => match (<[u8; 16]>::try_from(&a[..]), <[u8; 16]>::try_from(&m[..])) {
                (Ok(a), Ok(m)) => CidrSubnet::V6(a, m),
                _ => continue,
            },
        };
        permitted.push(GeneralSubtree::IpAddress(subnet));
    }
    let mut excluded = Vec::new();
    if ranges.is_empty() {
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])));
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])));
    }
    permitted.sort_by_key(|s| format!("{s:?}"));
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: excluded,
    }
}
