//! The LDAP connector: users as `inetOrgPerson`, groups as `groupOfNames`,
//! assets as `device` (all configurable), over `ldap3`.
//!
//! Delivery coalesces a batch per object (an event carries the whole object,
//! so the last one wins), reads each entry and writes only the difference,
//! several operations in flight on one connection. Memberships live on
//! users in idsync and on groups in LDAP: they are gathered per group and
//! written as one modify per group per batch, with the Permissive Modify
//! control so a replay is harmless. Entries idsync manages are recorded by
//! `entryUUID` (through the runner), so renames on either side keep
//! ownership, and an entry idsync does not own is never rewritten or
//! deleted unless `adopt_existing` says so.
//!
//! The modules, from the outside in: [`config`] (the `[[connectors]]`
//! entry), `deliver` (change events, then group memberships), `reconcile`
//! (reads both sides, then applies a plan), `plan` (the reconcile's diff, a
//! pure function of what the store and the directory hold), [`mapping`]
//! (object → entry), [`ops`] (entry → writes), `ldif` (writes as text) and
//! [`conn`] (the connection); `password` sets a user's password for the
//! activation page. This module holds what they share: the
//! connector, its connection and the lookups of one entry.

pub mod config;
pub mod conn;
mod deliver;
mod ldif;
pub mod mapping;
pub mod ops;
mod password;
mod plan;
mod reconcile;

use std::sync::Arc;

use idsync_schema::Kind;
use ldap3::Scope;
use tokio::sync::Semaphore;

pub use config::LdapConfig;
use conn::{Conn, Exec, OpError};
use mapping::{split_dn, Desired};
use ops::{Current, Op};

use crate::connector::{
    Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig, Plan, Remote, View,
};
use crate::event::Event;

/// The LDAP connector.
pub struct LdapConnector {
    inner: Arc<Inner>,
}

/// What the connector's tasks share: delivery and `apply` run operations
/// side by side, each task holding an `Arc` of this.
struct Inner {
    cfg: Arc<LdapConfig>,
    conn: Conn,
    /// Bounds the operations in flight on the connection.
    slots: Semaphore,
}

impl LdapConnector {
    /// A connector for `cfg` (it connects on first use).
    pub fn new(cfg: LdapConfig) -> Result<Self, ConnectorError> {
        cfg.check()?;
        let cfg = Arc::new(cfg.resolved());
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Conn::new(Arc::clone(&cfg)),
                slots: Semaphore::new(cfg.concurrency),
                cfg,
            }),
        })
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Inner {
    fn read_attrs(&self, kind: Kind) -> Vec<String> {
        mapping::managed(&self.cfg, kind).into_iter().collect()
    }

    /// Where a reconcile looks for entries of `kind`.
    fn search_base(&self, kind: Kind) -> Option<String> {
        let k = mapping::kind_config(&self.cfg, kind)?;
        Some(match &k.search_base {
            Some(b) => b.replace("{base_dn}", &self.cfg.base_dn),
            None => split_dn(&k.dn).1.replace("{base_dn}", &self.cfg.base_dn),
        })
    }

    async fn exec(&self, op: &Op, permissive: bool) -> Result<Exec, OpError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn.exec(op, permissive, None).await
    }

    async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<Vec<Current>, OpError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn.search(base, Scope::Subtree, filter, attrs).await
    }

    /// The entry with `entryUUID` `uuid`, wherever it is under the base DN.
    async fn find_uuid(&self, uuid: &str, attrs: &[String]) -> Result<Option<Current>, OpError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn.find_uuid(&self.cfg.base_dn, uuid, attrs).await
    }

    /// The entry of `remote` (by its `entryUUID`: `true`, idsync's), else
    /// the one at `dn` (`false`: found by place, maybe not idsync's).
    async fn locate(
        &self,
        kind: Kind,
        remote: Option<&Remote>,
        dn: Option<&str>,
    ) -> Result<(Option<Current>, bool), OpError> {
        let attrs = self.read_attrs(kind);
        if let Some(r) = remote {
            if let Some(c) = self.find_uuid(&r.entry_uuid, &attrs).await? {
                return Ok((Some(c), true));
            }
        }
        if let Some(dn) = dn {
            let _slot = self.slots.acquire().await.expect("never closed");
            return Ok((self.conn.read(dn, &attrs).await?, false));
        }
        Ok((None, false))
    }

    /// The `entryUUID` of the entry at `dn`, read back after a write that
    /// did not return it.
    async fn uuid_of(&self, kind: Kind, dn: &str) -> Result<String, OpError> {
        let (cur, _) = self.locate(kind, None, Some(dn)).await?;
        cur.and_then(|c| c.entry_uuid)
            .ok_or_else(|| OpError::Transient(format!("{dn}: no entryUUID read back")))
    }

    fn remote(&self, d: &Desired, uuid: String) -> Remote {
        Remote {
            kind: d.kind,
            dn: d.dn.clone(),
            entry_uuid: uuid,
            disabled_at: None,
        }
    }
}

impl Connector for LdapConnector {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn delivery(&self) -> &DeliveryConfig {
        &self.inner.cfg.delivery
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let r = inner.conn.read(&inner.cfg.base_dn, &[]).await;
            match r {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(ConnectorError::Peer(format!(
                    "base DN {} not found",
                    inner.cfg.base_dn
                ))),
                Err(e) => Err(ConnectorError::Unavailable(e.to_string())),
            }
        })
    }

    fn deliver<'a>(&'a self, batch: &'a [Event], view: &'a dyn View) -> BoxFuture<'a, Delivery> {
        Box::pin(deliver::deliver_batch(&self.inner, batch, view))
    }

    /// Users' passwords live in the directory (the activation page).
    fn keeps_passwords(&self) -> bool {
        true
    }

    fn set_password<'a>(
        &'a self,
        remote: &'a Remote,
        password: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(self.inner.set_password(remote, password))
    }

    fn plan<'a>(&'a self, view: &'a dyn View) -> BoxFuture<'a, Result<Plan, ConnectorError>> {
        Box::pin(reconcile::make_plan(&self.inner, view))
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Applied, ConnectorError>> {
        Box::pin(reconcile::apply_plan(&self.inner, plan))
    }
}
