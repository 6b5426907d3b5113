//! The activation page (issue 16, seed 003): `GET /activate/TOKEN` shows a
//! form, `POST` sets the password in the directory and records the
//! activation.
//!
//! - Opening the link (as mail scanners do) changes nothing; only a POST
//!   with a password that passes the policy uses the link up.
//! - The token is checked against the hash the mail connector stored
//!   (`sent`, same hash, unexpired), compared in constant time. Its first
//!   32 hex digits name the user ([`idsync_connectors::mail::token`]), so
//!   one store read finds it.
//! - The password goes to every connector that keeps passwords (LDAP:
//!   Password Modify, RFC 3062) and nowhere else: not the store, not a log
//!   line, not a change event; it lives in a buffer that is wiped when
//!   dropped. Then `sent` becomes `activated` through the reconciler, only
//!   if that sending is still the current one.
//! - Bounded: requests per peer per minute, password attempts per link per
//!   hour, one attempt per link at a time, a small form body.
//! - Every page is plain HTML in the user's language (minijinja escapes
//!   every value), with a CSP that allows no script and no framing, and
//!   no referrer (the link is a secret).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use idsync_connectors::mail::templates::languages;
use idsync_connectors::mail::token::{same_hash, token_sha256, user_of_token};
use idsync_connectors::{Connector, ConnectorError, Remote};
use idsync_schema::password::{CommonPasswords, PasswordPolicy, PasswordViolation};
use idsync_schema::{ActivationState, ApplicationSettings, Kind, Source, Status, User};
use idsync_store::reconcile::Reconciler;
use idsync_store::Actor;
use minijinja::Environment;
use serde::Serialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::config::ActivationConfig;
use crate::infra::http::percent_decode;
use crate::infra::rate_limit::RateLimit;

/// Largest form body read: two passwords of `max_bytes`, encoded.
pub const MAX_FORM_BYTES: usize = 4096;

/// The built-in pages: (language, template).
const PAGES: &[(&str, &str)] = &[
    ("en", include_str!("templates/page.en.html")),
    ("de", include_str!("templates/page.de.html")),
];

/// Why the page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("activation.password.common_passwords_file {path}: {error}")]
    CommonFile { path: String, error: std::io::Error },
    #[error("activation page template: {0}")]
    Template(#[from] minijinja::Error),
}

/// What the activation page needs, for the life of the listener.
pub struct Page {
    rec: Arc<Reconciler>,
    /// The connectors that keep passwords (LDAP), each told the password.
    keepers: Vec<Arc<dyn Connector>>,
    /// Application name → display name.
    apps: BTreeMap<String, String>,
    policy: PasswordPolicy,
    common: CommonPasswords,
    templates: Environment<'static>,
    per_peer: RateLimit<IpAddr>,
    per_link: RateLimit<String>,
    /// Token hashes whose password is being set now.
    in_flight: Mutex<HashSet<String>>,
}

/// Where a link token leads.
enum Link {
    /// Sent, unexpired: the form.
    Ready {
        user: Box<User>,
        app: String,
        hash: String,
        expires: OffsetDateTime,
    },
    Used(Box<User>, String),
    Expired(Box<User>, String),
    /// No sending matches, but one is on its way: the mail may have left
    /// before its `sent` state was recorded (a moment), so ask to retry
    /// rather than call the link invalid.
    Pending(Box<User>),
    Invalid,
}

/// The values of a page.
#[derive(Debug, Default, Serialize)]
struct Vars {
    page: &'static str,
    application: String,
    name: String,
    login: String,
    expires: String,
    min_length: usize,
    error: Option<&'static str>,
}

impl Page {
    /// The page for `cfg`, setting passwords through `connectors` (those
    /// that keep passwords), for the applications `apps`.
    pub fn new(
        cfg: &ActivationConfig,
        rec: Arc<Reconciler>,
        connectors: &[Arc<dyn Connector>],
        apps: &[ApplicationSettings],
    ) -> Result<Self, PageError> {
        let extra = match &cfg.password.common_passwords_file {
            Some(path) => std::fs::read_to_string(path).map_err(|error| PageError::CommonFile {
                path: path.display().to_string(),
                error,
            })?,
            None => String::new(),
        };
        let mut templates = Environment::new();
        templates.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (lang, source) in PAGES {
            templates.add_template_owned(page_name(lang), *source)?;
        }
        Ok(Self {
            rec,
            keepers: connectors
                .iter()
                .filter(|c| c.keeps_passwords())
                .cloned()
                .collect(),
            apps: apps
                .iter()
                .map(|a| {
                    (
                        a.name.clone(),
                        a.display_name.clone().unwrap_or_else(|| a.name.clone()),
                    )
                })
                .collect(),
            policy: cfg.password.clone(),
            common: CommonPasswords::new(&extra),
            templates,
            per_peer: RateLimit::per_minute(cfg.requests_per_minute_per_peer),
            per_link: RateLimit::new(
                cfg.attempts_per_link_per_hour,
                Duration::from_secs(3600),
                crate::infra::rate_limit::MAX_KEYS,
            ),
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Answer one request from `peer`.
    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        peer: IpAddr,
        accept_language: Option<&str>,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let asked = accept_language.and_then(first_language);
        let Some(token) = path.strip_prefix("/activate/") else {
            return self.page(
                StatusCode::NOT_FOUND,
                asked.as_deref(),
                Vars::only("invalid"),
            );
        };
        if !self.per_peer.allow(&peer) {
            return self.page(
                StatusCode::TOO_MANY_REQUESTS,
                asked.as_deref(),
                Vars::only("busy"),
            );
        }
        let link = match self.lookup(token) {
            Ok(link) => link,
            Err(e) => {
                tracing::error!("activation page: reading the store: {e}");
                return self.page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    asked.as_deref(),
                    Vars::only("unavailable"),
                );
            }
        };
        let (user, app, hash, expires) = match link {
            Link::Ready {
                user,
                app,
                hash,
                expires,
            } => (user, app, hash, expires),
            Link::Used(user, app) => return self.about(StatusCode::GONE, &user, &app, "used"),
            Link::Expired(user, app) => {
                return self.about(StatusCode::GONE, &user, &app, "expired")
            }
            Link::Pending(user) => {
                return self.render(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &user,
                    Vars::only("not_ready"),
                );
            }
            Link::Invalid => {
                return self.page(
                    StatusCode::NOT_FOUND,
                    asked.as_deref(),
                    Vars::only("invalid"),
                )
            }
        };
        let mut vars = self.vars(&user, &app, "form");
        vars.expires = expires
            .format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]"
            ))
            .unwrap_or_default();
        match *method {
            Method::GET | Method::HEAD => self.render(StatusCode::OK, &user, vars),
            Method::POST => self.attempt(&user, &app, &hash, &body, vars).await,
            _ => {
                let mut r = self.render(StatusCode::METHOD_NOT_ALLOWED, &user, vars);
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
                r
            }
        }
    }

    /// A password attempt through a ready link.
    async fn attempt(
        &self,
        user: &User,
        app: &str,
        hash: &str,
        body: &[u8],
        mut vars: Vars,
    ) -> Response<Full<Bytes>> {
        if !self.per_link.allow(&hash.to_owned()) {
            return self.about(StatusCode::TOO_MANY_REQUESTS, user, app, "busy");
        }
        let (password, again) = password_fields(body);
        if let Err(v) = self.policy.check(&password, &again, user, &self.common) {
            vars.error = Some(violation_code(v));
            return self.render(StatusCode::UNPROCESSABLE_ENTITY, user, vars);
        }
        let Some(_guard) = InFlight::take(&self.in_flight, hash) else {
            return self.about(StatusCode::CONFLICT, user, app, "busy");
        };
        if let Some(page) = self.set_everywhere(user, &password).await {
            return self.about(page.0, user, app, page.1);
        }
        drop(password);
        match self.record(user.id, app, hash).await {
            Ok(true) => {
                tracing::info!(user = %user.id, application = %app, "account activated: password set");
                self.about(StatusCode::OK, user, app, "done")
            }
            Ok(false) => self.about(StatusCode::GONE, user, app, "invalid"),
            Err(e) => {
                // The password is set; the link stays usable until the
                // state is recorded (setting it again does no harm).
                tracing::error!(user = %user.id, application = %app, "activation: recording the state: {e}");
                self.about(StatusCode::SERVICE_UNAVAILABLE, user, app, "unavailable")
            }
        }
    }

    /// Tell every connector that keeps passwords; the page to show when
    /// one could not be told.
    async fn set_everywhere(
        &self,
        user: &User,
        password: &str,
    ) -> Option<(StatusCode, &'static str)> {
        if self.keepers.is_empty() {
            tracing::error!(
                "activation page: no connector keeps passwords (add an ldap connector)"
            );
            return Some((StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
        }
        for c in &self.keepers {
            let remote = match self
                .rec
                .store()
                .delivery(c.name())
                .remote::<Remote>(user.id)
            {
                Ok(Some(r)) => r,
                Ok(None) => return Some((StatusCode::SERVICE_UNAVAILABLE, "not_ready")),
                Err(e) => {
                    tracing::error!(connector = c.name(), "activation page: {e}");
                    return Some((StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
                }
            };
            match c.set_password(&remote, password).await {
                Ok(()) => {}
                Err(e @ ConnectorError::Peer(_)) => {
                    tracing::warn!(connector = c.name(), user = %user.id, "activation: the directory refused the password: {e}");
                    return Some((StatusCode::UNPROCESSABLE_ENTITY, "refused"));
                }
                Err(e) => {
                    tracing::warn!(connector = c.name(), user = %user.id, "activation: setting the password: {e}");
                    return Some((StatusCode::SERVICE_UNAVAILABLE, "unavailable"));
                }
            }
        }
        None
    }

    /// Record `activated` (blocking store write off the async threads).
    async fn record(&self, id: uuid::Uuid, app: &str, hash: &str) -> anyhow::Result<bool> {
        let rec = Arc::clone(&self.rec);
        let (app, hash) = (app.to_owned(), hash.to_owned());
        tokio::task::spawn_blocking(move || {
            let mut tx = rec.begin(Source::Api, Actor::activation_link(id));
            let done = tx
                .activate(id, &app, &hash)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            tx.commit()?;
            Ok(done)
        })
        .await?
    }

    /// Where `token` leads.
    fn lookup(&self, token: &str) -> Result<Link, idsync_store::StoreError> {
        let Some(id) = user_of_token(token) else {
            return Ok(Link::Invalid);
        };
        let Some(user) = self.rec.store().object::<User>(Kind::User, id)? else {
            return Ok(Link::Invalid);
        };
        if user.status != Status::Active {
            return Ok(Link::Invalid);
        }
        let hash = token_sha256(token);
        let found = user.activations.iter().find(|(_, a)| {
            a.token_sha256
                .as_deref()
                .is_some_and(|h| same_hash(h, &hash))
        });
        let Some((app, a)) = found else {
            let pending = user
                .activations
                .values()
                .any(|a| a.state == ActivationState::Queued);
            return Ok(match pending {
                true => Link::Pending(Box::new(user)),
                false => Link::Invalid,
            });
        };
        let (app, state, expires) = (app.clone(), a.state, a.expires);
        let user = Box::new(user);
        Ok(match (state, expires) {
            (ActivationState::Activated, _) => Link::Used(user, app),
            (ActivationState::Sent, Some(e)) if e > OffsetDateTime::now_utc() => Link::Ready {
                user,
                app,
                hash,
                expires: e,
            },
            (ActivationState::Sent, _) => Link::Expired(user, app),
            _ => Link::Invalid,
        })
    }

    fn vars(&self, user: &User, app: &str, page: &'static str) -> Vars {
        Vars {
            page,
            application: self
                .apps
                .get(app)
                .cloned()
                .unwrap_or_else(|| app.to_owned()),
            name: user.greeting(),
            login: user
                .login_name
                .clone()
                .or_else(|| user.mail.clone())
                .unwrap_or_default(),
            min_length: self.policy.min_length,
            ..Vars::default()
        }
    }

    /// A page about `user`'s link, without the form.
    fn about(
        &self,
        status: StatusCode,
        user: &User,
        app: &str,
        page: &'static str,
    ) -> Response<Full<Bytes>> {
        self.render(status, user, self.vars(user, app, page))
    }

    fn render(&self, status: StatusCode, user: &User, vars: Vars) -> Response<Full<Bytes>> {
        self.page(status, user.language.as_deref(), vars)
    }

    /// Render `vars` in the first of `language`'s candidates with a page.
    fn page(
        &self,
        status: StatusCode,
        language: Option<&str>,
        vars: Vars,
    ) -> Response<Full<Bytes>> {
        let lang = languages(language)
            .into_iter()
            .find(|l| PAGES.iter().any(|(p, _)| p == l))
            .unwrap_or_else(|| "en".into());
        let html = self
            .templates
            .get_template(&page_name(&lang))
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&vars))));
        match html {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!("activation page: rendering: {e}");
                html_response(StatusCode::INTERNAL_SERVER_ERROR, "error".into())
            }
        }
    }
}

fn page_name(lang: &str) -> String {
    format!("page.{lang}.html")
}

impl Vars {
    /// A page that names no user (the link led nowhere, or too soon).
    fn only(page: &'static str) -> Self {
        Vars {
            page,
            ..Vars::default()
        }
    }
}

/// The first language of an `Accept-Language` header.
fn first_language(header: &str) -> Option<String> {
    let first = header.split(',').next()?.split(';').next()?.trim();
    (!first.is_empty() && first != "*").then(|| first.to_owned())
}

/// `password` and `confirm` of a form body, each in a buffer wiped on drop.
fn password_fields(body: &[u8]) -> (Zeroizing<String>, Zeroizing<String>) {
    let mut password = Zeroizing::new(String::new());
    let mut again = Zeroizing::new(String::new());
    let body = Zeroizing::new(String::from_utf8_lossy(body).into_owned());
    for pair in body.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "password" => *password = percent_decode(value, true),
            "confirm" => *again = percent_decode(value, true),
            _ => {}
        }
    }
    (password, again)
}

fn violation_code(v: PasswordViolation) -> &'static str {
    match v {
        PasswordViolation::TooShort(_) => "too_short",
        PasswordViolation::TooLong(_) => "too_long",
        PasswordViolation::Mismatch => "mismatch",
        PasswordViolation::ControlCharacter => "control_character",
        PasswordViolation::ContainsIdentity => "contains_identity",
        PasswordViolation::Common => "common",
    }
}

/// The headers of every page: no script, no framing, no referrer (the
/// link is a secret), nothing cached.
fn html_response(status: StatusCode, html: String) -> Response<Full<Bytes>> {
    crate::infra::http::html_page(
        status,
        html,
        "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
}

/// A link's attempt in progress; others wait for it to end.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<String>>,
    hash: String,
}

impl<'a> InFlight<'a> {
    fn take(set: &'a Mutex<HashSet<String>>, hash: &str) -> Option<Self> {
        let mut s = set.lock().unwrap_or_else(|e| e.into_inner());
        s.insert(hash.to_owned()).then(|| Self {
            set,
            hash: hash.to_owned(),
        })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut s = self.set.lock().unwrap_or_else(|e| e.into_inner());
        s.remove(&self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded_and_others_ignored() {
        let (p, c) = password_fields(b"x=1&password=a+b%26c%3D&confirm=%C3%A4");
        assert_eq!(p.as_str(), "a b&c=");
        assert_eq!(c.as_str(), "ä");
        let (p, c) = password_fields(b"password");
        assert_eq!((p.as_str(), c.as_str()), ("", ""));
    }

    #[test]
    fn the_first_accepted_language_is_taken() {
        assert_eq!(
            first_language("de-AT,de;q=0.9,en;q=0.5").as_deref(),
            Some("de-AT")
        );
        assert_eq!(first_language("*"), None);
        assert_eq!(first_language(""), None);
    }

    #[test]
    fn pages_forbid_script_framing_and_referrers() {
        let r = html_response(StatusCode::OK, "<p>x</p>".into());
        let h = r.headers();
        assert!(h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        assert_eq!(h[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }
}
