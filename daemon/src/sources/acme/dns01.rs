//! dns-01 validation (RFC 8555 §8.4): among the TXT records of
//! `_acme-challenge.{name}` (a wildcard's base name), one must be the
//! base64url SHA-256 of the key authorization.
//!
//! Asked of the one server `[acme] dns_resolver` names (a recursive
//! resolver, or the zone's authoritative server), over UDP with TCP when
//! an answer is truncated, with no cache: a record the client placed a
//! moment ago must be seen, and a miss must not be remembered for the
//! client's retry. The name is looked up fully qualified, so no search
//! domain is ever appended.

use std::net::SocketAddr;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hickory_resolver::config::{NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use sha2::{Digest as _, Sha256};

use super::problem::Problem;

/// A resolver that asks `server` only, each question within `timeout`.
pub(super) fn resolver(server: SocketAddr, timeout: Duration) -> TokioResolver {
    let servers = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
    let config = ResolverConfig::from_parts(None, Vec::new(), servers);
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.timeout = timeout;
    opts.attempts = 2;
    opts.ndots = 0;
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

/// The TXT value that proves `key_authorization` (RFC 8555 §8.4).
pub(super) fn txt_value(key_authorization: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(key_authorization.as_bytes()))
}

/// Look up `_acme-challenge.{name}` and find the record of
/// `key_authorization`.
pub(super) async fn check(
    resolver: &TokioResolver,
    name: &str,
    key_authorization: &str,
) -> Result<(), Problem> {
    let base = name.strip_prefix("*.").unwrap_or(name);
    let query = format!("_acme-challenge.{}.", base.trim_end_matches('.'));
    let expected = txt_value(key_authorization);
    let found = resolver.txt_lookup(query.as_str()).await.map_err(|e| {
        Problem::new(
            "dns",
            400,
            format!("looking up the TXT records of {query}: {e}"),
        )
    })?;
    let values: Vec<String> = found
        .iter()
        .map(|txt| {
            txt.txt_data()
                .iter()
                .map(|part| String::from_utf8_lossy(part))
                .collect::<String>()
        })
        .collect();
    if values.iter().any(|v| v == &expected) {
        return Ok(());
    }
    Err(Problem::new(
        "incorrectResponse",
        403,
        format!(
            "none of the {} TXT record(s) of {query} is the key authorization's digest",
            values.len()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key authorization of RFC 8555 §8.4's token and RFC 7638 §3.1's
    /// thumbprint; the value computed apart with `openssl dgst -sha256
    /// -binary | basenc --base64url`.
    #[test]
    fn the_txt_value_is_the_base64url_digest_of_the_key_authorization() {
        let ka = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
        assert_eq!(txt_value(ka), "ZTRx1Ckl1-tM05o5zaizTTA0yUy5AGereMgSNWC6Ll8");
    }
}
