//! Challenge validation in the background: a POST to a challenge starts
//! it, the outcome lands in the authorization (`super::orders`), the
//! client polls. The checks themselves are `super::http01` and
//! `super::dns01`; what they share is here: the key authorization
//! (`token.thumbprint`, RFC 8555 §8.1), a bound on validations running at
//! once, `validation_timeout_secs` for each, and the audit line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::sync::Semaphore;

use super::orders::{Authz, AuthzStatus, ChallengeKind, Orders};
use super::problem::Problem;
use super::{dns01, http01, AcmeConfig};

/// Validations running at once; more wait for a place.
const AT_ONCE: usize = 16;

#[derive(Debug)]
pub(crate) struct Validator {
    port: u16,
    timeout: Duration,
    resolve: BTreeMap<String, SocketAddr>,
    /// The resolver dns-01 asks; none: dns-01 is not offered.
    dns: Option<Arc<TokioResolver>>,
    places: Arc<Semaphore>,
}

impl Validator {
    pub fn new(cfg: &AcmeConfig) -> Self {
        let timeout = Duration::from_secs(cfg.validation_timeout_secs);
        Self {
            port: cfg.http01_port,
            timeout,
            // Checked by `AcmeConfig::check`.
            resolve: cfg
                .resolve
                .iter()
                .filter_map(|(n, a)| Some((n.to_ascii_lowercase(), a.parse().ok()?)))
                .collect(),
            dns: cfg
                .dns_resolver
                .as_deref()
                .and_then(|a| a.parse().ok())
                .map(|addr| Arc::new(dns01::resolver(addr, timeout))),
            places: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }

    /// Whether dns-01 challenges are offered.
    pub fn offers_dns01(&self) -> bool {
        self.dns.is_some()
    }

    /// Validate `authz`'s challenge of `kind` in the background and record
    /// the outcome in `orders`. `thumbprint` is the account key's. The
    /// receiver hears when the outcome is recorded.
    pub fn start(
        &self,
        authz: &Authz,
        kind: ChallengeKind,
        thumbprint: &str,
        orders: Arc<Orders>,
    ) -> tokio::sync::oneshot::Receiver<()> {
        let (done, recorded) = tokio::sync::oneshot::channel();
        let Some(challenge) = authz.challenge(kind) else {
            return recorded;
        };
        let key_authorization = format!("{}.{thumbprint}", challenge.token);
        let token = challenge.token.clone();
        let (id, name) = (authz.id, authz.name.clone());
        let target = self.resolve.get(&name).copied();
        let (port, timeout, places) = (self.port, self.timeout, Arc::clone(&self.places));
        let dns = self.dns.clone();
        tokio::spawn(async move {
            let _place = places.acquire_owned().await;
            let check = async {
                match (kind, dns) {
                    (ChallengeKind::Http01, _) => {
                        http01::check(&name, target, port, &token, &key_authorization).await
                    }
                    (ChallengeKind::Dns01, Some(dns)) => {
                        dns01::check(&dns, &name, &key_authorization).await
                    }
                    (ChallengeKind::Dns01, None) => Err(Problem::server_internal(
                        "dns-01 is not offered without a resolver",
                    )),
                }
            };
            let outcome = tokio::time::timeout(timeout, check)
                .await
                .unwrap_or_else(|_| {
                    Err(Problem::new(
                        "connection",
                        400,
                        format!(
                            "checking the {} challenge of {name} took longer than {timeout:?}",
                            kind.as_str()
                        ),
                    ))
                });
            record(&orders, id, &name, kind, outcome);
            let _ = done.send(());
        });
        recorded
    }
}

/// Put the outcome of a validation into the authorization, and log it.
fn record(
    orders: &Orders,
    id: uuid::Uuid,
    name: &str,
    kind: ChallengeKind,
    outcome: Result<(), Problem>,
) {
    let now = time::OffsetDateTime::now_utc();
    orders.update_authz(id, |a| match &outcome {
        Ok(()) => {
            a.status = AuthzStatus::Valid;
            a.validated = Some(now);
        }
        Err(p) => {
            a.status = AuthzStatus::Invalid;
            a.error = Some(p.clone());
        }
    });
    let challenge = kind.as_str();
    match outcome {
        Ok(()) => tracing::info!(authz = %id, ?name, challenge, "ACME challenge valid"),
        Err(p) => {
            tracing::info!(authz = %id, ?name, challenge, reason = ?p.detail, "ACME challenge invalid")
        }
    }
}
