//! Orders and authorizations in memory (RFC 8555 §7.1.3, §7.1.4), bounded
//! in number and lifetime. They are the cheap, short-lived part of ACME:
//! a client whose order a restart forgot places a new one. What must
//! outlive a restart does: a finalized order is an enrollment request of
//! the same id in the store (`super::order` rebuilds it from there).

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;
use uuid::Uuid;

use super::problem::Problem;

/// A way to prove control of a name (RFC 8555 §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChallengeKind {
    /// A file served over HTTP on port 80 (§8.3).
    Http01,
    /// A TXT record at `_acme-challenge.{name}` (§8.4).
    Dns01,
}

impl ChallengeKind {
    /// The challenge type as ACME names it (and its URL ends).
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "http-01" => Some(ChallengeKind::Http01),
            "dns-01" => Some(ChallengeKind::Dns01),
            _ => None,
        }
    }
}

/// One challenge an authorization offers.
#[derive(Debug, Clone)]
pub(crate) struct Challenge {
    pub kind: ChallengeKind,
    /// 128 random bits, base64url (RFC 8555 §8.1), one per challenge.
    pub token: String,
}

/// Where an authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthzStatus {
    Pending,
    /// The challenge is being checked.
    Processing,
    Valid,
    Invalid,
}

/// One name to prove control of, with the challenges offered for it.
#[derive(Debug, Clone)]
pub(crate) struct Authz {
    pub id: Uuid,
    /// The registration (= account) that owns it.
    pub account: Uuid,
    pub name: String,
    pub status: AuthzStatus,
    pub expires: OffsetDateTime,
    /// http-01, and dns-01 where a resolver is configured (a wildcard
    /// name: dns-01 only, RFC 8555 §7.1.3).
    pub challenges: Vec<Challenge>,
    /// The challenge the client asked to validate; the others stay
    /// pending (one is enough).
    pub tried: Option<ChallengeKind>,
    pub validated: Option<OffsetDateTime>,
    pub error: Option<Problem>,
}

impl Authz {
    /// The challenge of `kind`, if offered.
    pub fn challenge(&self, kind: ChallengeKind) -> Option<&Challenge> {
        self.challenges.iter().find(|c| c.kind == kind)
    }

    /// The name as its identifier shows it, and whether it is a wildcard
    /// (RFC 8555 §7.1.4: `*.` is left out and `wildcard` set).
    pub fn identifier(&self) -> (&str, bool) {
        match self.name.strip_prefix("*.") {
            Some(base) => (base, true),
            None => (&self.name, false),
        }
    }
}

/// An order before finalization.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub id: Uuid,
    pub account: Uuid,
    pub names: Vec<String>,
    pub authzs: Vec<Uuid>,
    pub expires: OffsetDateTime,
    /// Set once finalize was accepted: the order's state is its
    /// enrollment request's from then on.
    pub finalized: bool,
}

/// Why an order could not be kept.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Server,
    Account,
}

#[derive(Debug, Default)]
struct Inner {
    orders: HashMap<Uuid, Order>,
    authzs: HashMap<Uuid, Authz>,
    /// Unfinalized orders per account, so that a new order is counted
    /// without a scan (recounted only when at the bound: expired orders
    /// leave the map lazily).
    pending: HashMap<Uuid, usize>,
}

/// Every live order and authorization.
#[derive(Debug)]
pub(crate) struct Orders {
    inner: Mutex<Inner>,
    max: usize,
    max_per_account: usize,
}

impl Orders {
    pub fn new(max: usize, max_per_account: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max,
            max_per_account,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep a new order and its authorizations, unless the bounds say no
    /// (expired ones are dropped first).
    pub fn insert(&self, order: Order, authzs: Vec<Authz>) -> Result<(), Full> {
        let mut inner = self.lock();
        let now = OffsetDateTime::now_utc();
        if inner.orders.len() >= self.max {
            inner.orders.retain(|_, o| o.expires > now);
            inner.authzs.retain(|_, a| a.expires > now);
        }
        if inner.orders.len() >= self.max {
            return Err(Full::Server);
        }
        if inner.pending.get(&order.account).copied().unwrap_or(0) >= self.max_per_account {
            let live = inner
                .orders
                .values()
                .filter(|o| o.account == order.account && !o.finalized && o.expires > now)
                .count();
            inner.pending.insert(order.account, live);
            if live >= self.max_per_account {
                return Err(Full::Account);
            }
        }
        *inner.pending.entry(order.account).or_default() += 1;
        for a in authzs {
            inner.authzs.insert(a.id, a);
        }
        inner.orders.insert(order.id, order);
        Ok(())
    }

    pub fn order(&self, id: Uuid) -> Option<Order> {
        self.lock().orders.get(&id).cloned()
    }

    /// The ids of an account's live orders.
    pub fn ids_of(&self, account: Uuid) -> Vec<Uuid> {
        let now = OffsetDateTime::now_utc();
        let mut ids: Vec<Uuid> = self
            .lock()
            .orders
            .values()
            .filter(|o| o.account == account && o.expires > now)
            .map(|o| o.id)
            .collect();
        ids.sort();
        ids
    }

    pub fn authz(&self, id: Uuid) -> Option<Authz> {
        self.lock().authzs.get(&id).cloned()
    }

    /// The authorizations of `order`, in its order.
    pub fn authzs_of(&self, order: &Order) -> Vec<Authz> {
        let inner = self.lock();
        order
            .authzs
            .iter()
            .filter_map(|id| inner.authzs.get(id).cloned())
            .collect()
    }

    /// Change authorization `id` with `f` (under the lock); its new state.
    pub fn update_authz(&self, id: Uuid, f: impl FnOnce(&mut Authz)) -> Option<Authz> {
        let mut inner = self.lock();
        let a = inner.authzs.get_mut(&id)?;
        f(a);
        Some(a.clone())
    }

    /// Mark `id` finalized unless it was already: true for the one caller
    /// that may go on (of two racing finalize requests, one wins).
    pub fn claim_finalize(&self, id: Uuid) -> bool {
        let mut inner = self.lock();
        let account = match inner.orders.get_mut(&id) {
            Some(o) if !o.finalized => {
                o.finalized = true;
                o.account
            }
            _ => return false,
        };
        if let Some(n) = inner.pending.get_mut(&account) {
            *n = n.saturating_sub(1);
        }
        true
    }

    /// Undo [`Orders::claim_finalize`] after a refusal that left nothing
    /// in the store (the client may send a better CSR).
    pub fn release_finalize(&self, id: Uuid) {
        let mut inner = self.lock();
        let Some(o) = inner.orders.get_mut(&id) else {
            return;
        };
        o.finalized = false;
        let account = o.account;
        *inner.pending.entry(account).or_default() += 1;
    }

    /// Drop a finalized order and its authorizations: its enrollment
    /// request in the store answers for it from now on, and memory stays
    /// for orders in progress.
    pub fn forget_finalized(&self, id: Uuid) {
        let mut inner = self.lock();
        if let Some(o) = inner.orders.remove(&id) {
            for a in &o.authzs {
                inner.authzs.remove(a);
            }
        }
    }

    /// Pending orders and authorizations of an account, gone with it
    /// (deactivation): later requests with their URLs find nothing.
    pub fn forget_account(&self, account: Uuid) {
        let mut inner = self.lock();
        inner.orders.retain(|_, o| o.account != account);
        inner.authzs.retain(|_, a| a.account != account);
        inner.pending.remove(&account);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(account: Uuid) -> (Order, Vec<Authz>) {
        let expires = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let authz = Authz {
            id: Uuid::now_v7(),
            account,
            name: "a.example.org".into(),
            status: AuthzStatus::Valid,
            expires,
            challenges: vec![Challenge {
                kind: ChallengeKind::Http01,
                token: "t".into(),
            }],
            tried: None,
            validated: None,
            error: None,
        };
        let o = Order {
            id: Uuid::now_v7(),
            account,
            names: vec!["a.example.org".into()],
            authzs: vec![authz.id],
            expires,
            finalized: false,
        };
        (o, vec![authz])
    }

    #[test]
    fn bounds_count_pending_orders_and_finalized_ones_leave() {
        let orders = Orders::new(10, 2);
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, az) = order(me);
        orders.insert(a.clone(), az).unwrap();
        let (b, bz) = order(me);
        orders.insert(b, bz).unwrap();
        let (c, cz) = order(me);
        assert_eq!(orders.insert(c.clone(), cz.clone()), Err(Full::Account));
        let (d, dz) = order(other);
        orders.insert(d, dz).unwrap();
        // Finalizing one makes room; a refusal of it takes the room back.
        assert!(orders.claim_finalize(a.id));
        assert!(!orders.claim_finalize(a.id), "once");
        orders.release_finalize(a.id);
        assert_eq!(orders.insert(c.clone(), cz.clone()), Err(Full::Account));
        assert!(orders.claim_finalize(a.id));
        orders.forget_finalized(a.id);
        assert!(orders.order(a.id).is_none() && orders.authz(a.authzs[0]).is_none());
        orders.insert(c, cz).unwrap();
        assert_eq!(orders.ids_of(me).len(), 2);
    }
}
