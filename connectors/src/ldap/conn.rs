//! One LDAP connection, shared by every operation in flight (ldap3
//! multiplexes them), re-made after it drops: ldap3 has no reconnect of its
//! own. Also the few operations the connector runs, with LDAP result codes
//! sorted into "retry later" and "refused".

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::{PostRead, RawControl, ReadEntryResp};
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Mod, Scope, SearchEntry, StdStream,
};

use super::config::LdapConfig;
use super::ops::{Current, ModAction, ModSpec, Op};

/// Permissive Modify (Active Directory's OID, honoured by OpenLDAP): adding a
/// value that is there or deleting one that is not succeeds, which keeps a
/// replayed membership change harmless.
const PERMISSIVE_MODIFY: &str = "1.2.840.113556.1.4.1413";
const POST_READ: &str = "1.3.6.1.1.13.2";
/// Relax Rules (draft-zeilenga-ldap-relax; OpenLDAP): lets an add set the
/// `entryUUID` that is otherwise the server's to assign. Schema checks
/// still apply.
const RELAX_RULES: &str = "1.3.6.1.4.1.4203.666.5.12";

/// Why an operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Transport, timeout, or busy/unavailable/unwilling: try again later.
    #[error("{0}")]
    Transient(String),
    /// The server refused the operation.
    #[error("{0}")]
    Refused(String),
}

/// Result codes that mean "not now" rather than "no".
fn transient_rc(rc: u32) -> bool {
    matches!(rc, 3 | 51 | 52 | 53)
}

fn refused(what: &str, dn: &str, r: &LdapResult) -> OpError {
    let msg = format!("{what} {dn}: LDAP result {} {}", r.rc, r.text);
    if transient_rc(r.rc) {
        OpError::Transient(msg)
    } else {
        OpError::Refused(msg)
    }
}

fn transport(what: &str, e: impl std::fmt::Display) -> OpError {
    OpError::Transient(format!("{what}: {e}"))
}

/// The shared connection.
pub struct Conn {
    cfg: Arc<LdapConfig>,
    /// The connection and its generation: an operation that failed on
    /// generation N only drops N, never the connection another task made
    /// since.
    ldap: tokio::sync::Mutex<(u64, Option<Ldap>)>,
    /// New entries get their `entryUUID` from idsync
    /// ([`LdapConfig::assign_entry_uuid`]) until the server refuses it.
    assign_uuid: AtomicBool,
}

impl Conn {
    pub fn new(cfg: Arc<LdapConfig>) -> Self {
        Self {
            assign_uuid: AtomicBool::new(cfg.assign_entry_uuid),
            cfg,
            ldap: tokio::sync::Mutex::new((0, None)),
        }
    }

    /// The open connection and its generation, connecting and binding
    /// first if needed.
    pub async fn get(&self) -> Result<(u64, Ldap), OpError> {
        let mut slot = self.ldap.lock().await;
        let generation = slot.0;
        if let Some(l) = slot.1.as_mut() {
            if !l.is_closed() {
                return Ok((generation, l.clone()));
            }
        }
        let ldap = self.connect().await?;
        slot.0 += 1;
        slot.1 = Some(ldap.clone());
        Ok((slot.0, ldap))
    }

    /// Forget connection `generation` after a transport error on it: the
    /// next `get` connects again.
    pub async fn reset(&self, generation: u64) {
        let mut slot = self.ldap.lock().await;
        if slot.0 == generation {
            if let Some(mut l) = slot.1.take() {
                let _ = tokio::time::timeout(Duration::from_millis(100), l.unbind()).await;
            }
        }
    }

    /// Map an ldap3 error (the connection failed) and drop that connection.
    async fn lost(&self, generation: u64, what: &str, e: ldap3::LdapError) -> OpError {
        self.reset(generation).await;
        transport(what, e)
    }

    /// `r`, or, when the request failed on the connection, that connection
    /// dropped and the error mapped (`what` names the request).
    async fn answered<T>(
        &self,
        generation: u64,
        what: impl FnOnce() -> String,
        r: Result<T, ldap3::LdapError>,
    ) -> Result<T, OpError> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => Err(self.lost(generation, &what(), e).await),
        }
    }

    async fn connect(&self) -> Result<Ldap, OpError> {
        let timeout = Duration::from_millis(self.cfg.timeout_ms);
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(ca) = &self.cfg.tls_ca_file {
            settings = settings.set_config(Arc::new(tls_config(ca)?));
        }
        // ldap3 never sets TCP_NODELAY: with several requests in flight,
        // Nagle's algorithm would hold each small request back until the
        // previous one is acknowledged. Connect ourselves and hand it over.
        let target = host_port(&self.cfg.url);
        let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&target))
            .await
            .map_err(|_| OpError::Transient(format!("connecting to {target}: timed out")))?
            .map_err(|e| transport(&format!("connecting to {target}"), e))?;
        tcp.set_nodelay(true)
            .and_then(|()| tcp.into_std())
            .map(|std| settings = settings.clone().set_std_stream(StdStream::Tcp(std)))
            .map_err(|e| transport(&format!("connecting to {target}"), e))?;
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(|e| {
                // rustls says which check failed ("UnknownIssuer", "NotValidForName");
                // the operator also needs to know which key fixes it.
                let text = e.to_string();
                let hint = if !text.contains("invalid peer certificate") {
                    String::new()
                } else if text.contains("NotValidForName") {
                    " (the server's certificate does not name the host of url in its subjectAltName)".into()
                } else {
                    match &self.cfg.tls_ca_file {
                        Some(ca) => format!(
                            " (the server's certificate is not trusted by the CAs of tls_ca_file {})",
                            ca.display()
                        ),
                        None => " (the server's certificate is not trusted by the system's CAs: set tls_ca_file to the PEM of its CA)".into(),
                    }
                };
                transport(&format!("connecting to {}", self.cfg.url), format!("{e}{hint}"))
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!("LDAP connection ended: {e}");
            }
        });
        let password = match &self.cfg.password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| OpError::Refused(format!("reading {}: {e}", p.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            None => String::new(),
        };
        let r = ldap
            .with_timeout(timeout)
            .simple_bind(&self.cfg.bind_dn, &password)
            .await
            .map_err(|e| transport("binding", e))?;
        if r.rc != 0 {
            return Err(refused("bind as", &self.cfg.bind_dn, &r));
        }
        Ok(ldap)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.timeout_ms)
    }

    /// Run one write. Returns the entry's `entryUUID` after an add: given by
    /// idsync (`add_uuid`, else a fresh one), or read back with the
    /// Post-Read control. An add that finds the entry, or a
    /// modify/rename/delete that finds none, is reported as
    /// [`Exec::Exists`] / [`Exec::Missing`] for the caller to decide.
    pub async fn exec(
        &self,
        op: &Op,
        permissive: bool,
        add_uuid: Option<uuid::Uuid>,
    ) -> Result<Exec, OpError> {
        let (generation, mut ldap) = self.get().await?;
        let t = self.timeout();
        match op {
            Op::Add { dn, attrs } => self.exec_add(generation, &ldap, dn, attrs, add_uuid).await,
            Op::Modify { dn, mods } => {
                self.exec_modify(generation, ldap, dn, mods, permissive)
                    .await
            }
            Op::Rename {
                dn,
                new_rdn,
                new_superior,
            } => {
                let r = ldap
                    .with_timeout(t)
                    .modifydn(dn, new_rdn, true, new_superior.as_deref())
                    .await;
                let r = self
                    .answered(generation, || format!("rename {dn}"), r)
                    .await?;
                match r.rc {
                    0 => Ok(Exec::Done(None)),
                    32 => Ok(Exec::Missing),
                    68 => Ok(Exec::Exists),
                    _ => Err(refused("rename", dn, &r)),
                }
            }
            Op::Delete { dn } => {
                let r = ldap.with_timeout(t).delete(dn).await;
                let r = self
                    .answered(generation, || format!("delete {dn}"), r)
                    .await?;
                match r.rc {
                    0 => Ok(Exec::Done(None)),
                    32 => Ok(Exec::Missing),
                    _ => Err(refused("delete", dn, &r)),
                }
            }
        }
    }

    /// An add, giving the entry `add_uuid` (else a fresh one) while the
    /// server takes an `entryUUID` from idsync, else reading the server's
    /// back.
    async fn exec_add(
        &self,
        generation: u64,
        ldap: &Ldap,
        dn: &str,
        attrs: &[(String, Vec<String>)],
        add_uuid: Option<uuid::Uuid>,
    ) -> Result<Exec, OpError> {
        if self.assign_uuid.load(Ordering::Relaxed) {
            let uuid = add_uuid.unwrap_or_else(uuid::Uuid::now_v7).to_string();
            let r = self.add(generation, ldap, dn, attrs, Some(&uuid)).await?;
            match r.rc {
                0 => return Ok(Exec::Done(Some(uuid))),
                68 => return Ok(Exec::Exists),
                rc if transient_rc(rc) => return Err(refused("add", dn, &r)),
                // Refused: for the entry, or for the relaxed rule?
                // The portable add below tells.
                _ => {
                    let done = self.add_reading_uuid(generation, ldap, dn, attrs).await;
                    // Several adds may find out at once: one says so.
                    if matches!(done, Ok(Exec::Done(_)))
                        && self.assign_uuid.swap(false, Ordering::Relaxed)
                    {
                        tracing::warn!(
                            "{}: the server will not take an entryUUID from idsync ({}); new entries' entryUUIDs are read back with the Post-Read control from now on",
                            self.cfg.url,
                            refused("add", dn, &r)
                        );
                    }
                    return done;
                }
            }
        }
        self.add_reading_uuid(generation, ldap, dn, attrs).await
    }

    /// A modify; `permissive`: with the Permissive Modify control.
    async fn exec_modify(
        &self,
        generation: u64,
        mut ldap: Ldap,
        dn: &str,
        mods: &[ModSpec],
        permissive: bool,
    ) -> Result<Exec, OpError> {
        let mods: Vec<Mod<&str>> = mods
            .iter()
            .map(|m| {
                let v: HashSet<&str> = m.values.iter().map(String::as_str).collect();
                match m.action {
                    ModAction::Add => Mod::Add(m.attr.as_str(), v),
                    ModAction::Delete => Mod::Delete(m.attr.as_str(), v),
                    ModAction::Replace => Mod::Replace(m.attr.as_str(), v),
                }
            })
            .collect();
        if permissive {
            ldap.with_controls(RawControl {
                ctype: PERMISSIVE_MODIFY.into(),
                crit: false,
                val: None,
            });
        }
        let r = ldap.with_timeout(self.timeout()).modify(dn, mods).await;
        let r = self
            .answered(generation, || format!("modify {dn}"), r)
            .await?;
        match r.rc {
            0 => Ok(Exec::Done(None)),
            32 => Ok(Exec::Missing),
            _ => Err(refused("modify", dn, &r)),
        }
    }

    /// One add; with `uuid`, the entry gets that `entryUUID` (Relax Rules),
    /// else it asks for the one the server gives (Post-Read).
    async fn add(
        &self,
        generation: u64,
        ldap: &Ldap,
        dn: &str,
        attrs: &[(String, Vec<String>)],
        uuid: Option<&str>,
    ) -> Result<LdapResult, OpError> {
        let mut attrs: Vec<(&str, HashSet<&str>)> = attrs
            .iter()
            .map(|(a, v)| (a.as_str(), v.iter().map(String::as_str).collect()))
            .collect();
        let mut ldap = ldap.clone();
        match uuid {
            Some(u) => {
                attrs.push(("entryUUID", HashSet::from([u])));
                ldap.with_controls(RawControl {
                    ctype: RELAX_RULES.into(),
                    crit: true,
                    val: None,
                });
            }
            None => {
                ldap.with_controls(PostRead::new(vec!["entryUUID"]));
            }
        }
        let r = ldap.with_timeout(self.timeout()).add(dn, attrs).await;
        self.answered(generation, || format!("add {dn}"), r).await
    }

    /// An add with the Post-Read control: the `entryUUID` the server gave.
    async fn add_reading_uuid(
        &self,
        generation: u64,
        ldap: &Ldap,
        dn: &str,
        attrs: &[(String, Vec<String>)],
    ) -> Result<Exec, OpError> {
        let r = self.add(generation, ldap, dn, attrs, None).await?;
        match r.rc {
            0 => {
                let uuid = r
                    .ctrls
                    .iter()
                    .find(|c| c.1.ctype == POST_READ && c.1.val.is_some())
                    .and_then(|c| {
                        c.1.parse::<ReadEntryResp>()
                            .attrs
                            .into_iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("entryUUID"))
                            .and_then(|(_, v)| v.into_iter().next())
                    });
                Ok(Exec::Done(uuid))
            }
            68 => Ok(Exec::Exists),
            _ => Err(refused("add", dn, &r)),
        }
    }

    /// Set the password of the entry at `dn` with the Password Modify
    /// extended operation (RFC 3062). The password is in no error.
    pub async fn password_modify(&self, dn: &str, password: &str) -> Result<(), OpError> {
        let (generation, mut ldap) = self.get().await?;
        let exop = ldap3::exop::PasswordModify {
            user_id: Some(dn),
            old_pass: None,
            new_pass: Some(password),
        };
        let r = ldap.with_timeout(self.timeout()).extended(exop).await;
        let r = self
            .answered(generation, || format!("password modify {dn}"), r)
            .await?;
        match r.1.rc {
            0 => Ok(()),
            _ => Err(refused("password modify", dn, &r.1)),
        }
    }

    /// One search; rc 32 (no such base) is an empty answer.
    pub async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
    ) -> Result<Vec<Current>, OpError> {
        let (generation, mut ldap) = self.get().await?;
        let mut attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        attrs.push("entryUUID");
        let r = ldap
            .with_timeout(self.timeout())
            .search(base, scope, filter, attrs)
            .await;
        let r = self
            .answered(generation, || format!("search {base}"), r)
            .await?;
        match r.1.rc {
            0 => Ok(r
                .0
                .into_iter()
                .map(|e| Current::from_entry(SearchEntry::construct(e)))
                .collect()),
            32 => Ok(Vec::new()),
            _ => Err(refused("search", base, &r.1)),
        }
    }

    /// The entry at `dn`, if any.
    pub async fn read(&self, dn: &str, attrs: &[String]) -> Result<Option<Current>, OpError> {
        Ok(self
            .search(dn, Scope::Base, "(objectClass=*)", attrs)
            .await?
            .into_iter()
            .next())
    }

    /// The entry with `entryUUID` `uuid` under `base`, if any.
    pub async fn find_uuid(
        &self,
        base: &str,
        uuid: &str,
        attrs: &[String],
    ) -> Result<Option<Current>, OpError> {
        let filter = format!("(entryUUID={})", ldap3::ldap_escape(uuid));
        Ok(self
            .search(base, Scope::Subtree, &filter, attrs)
            .await?
            .into_iter()
            .next())
    }

    /// A paged subtree search, every page (for the reconcile).
    pub async fn search_paged(
        &self,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<Vec<Current>, OpError> {
        let (generation, mut ldap) = self.get().await?;
        let mut attrs: Vec<String> = attrs.to_vec();
        attrs.push("entryUUID".into());
        let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.cfg.page_size)),
        ];
        let stream = ldap
            .with_timeout(self.timeout())
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs)
            .await;
        let mut stream = self
            .answered(generation, || format!("search {base}"), stream)
            .await?;
        let mut out = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(e)) => out.push(Current::from_entry(SearchEntry::construct(e))),
                Ok(None) => break,
                Err(e) => return Err(self.lost(generation, &format!("search {base}"), e).await),
            }
        }
        let r = stream.finish().await;
        match r.rc {
            0 => Ok(out),
            32 => Ok(Vec::new()),
            _ => Err(refused("search", base, &r)),
        }
    }
}

/// What a write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exec {
    /// Done; the `entryUUID` of an added entry when the server said it.
    Done(Option<String>),
    /// An add (or rename) found the target DN taken.
    Exists,
    /// The entry to change is not there.
    Missing,
}

/// `host:port` of an `ldap://` or `ldaps://` URL (default ports 389, 636).
fn host_port(url: &str) -> String {
    let (rest, port) = match url.strip_prefix("ldaps://") {
        Some(r) => (r, 636),
        None => (url.trim_start_matches("ldap://"), 389),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = if authority.is_empty() {
        "localhost"
    } else {
        authority
    };
    // A port is after the last colon, outside an IPv6 literal's brackets.
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => authority.to_owned(),
        _ => format!("{authority}:{port}"),
    }
}

/// A rustls client config trusting the CAs of `path` only.
fn tls_config(path: &std::path::Path) -> Result<rustls::ClientConfig, OpError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| OpError::Refused(format!("reading {}: {e}", path.display())))?;
    for cert in certs {
        let cert =
            cert.map_err(|e| OpError::Refused(format!("reading {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| OpError::Refused(format!("{}: {e}", path.display())))?;
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(host_port("ldap://127.0.0.1:3890/"), "127.0.0.1:3890");
        assert_eq!(
            host_port("ldaps://ldap.example.org"),
            "ldap.example.org:636"
        );
        assert_eq!(host_port("ldap://[::1]"), "[::1]:389");
        assert_eq!(host_port("ldap://[::1]:1389"), "[::1]:1389");
    }
}
