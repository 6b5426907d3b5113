//! The mail connector: sends the activation e-mails of issue 16 through an
//! SMTP relay, as a change-log consumer.
//!
//! Why a connector: the runner already gives a durable cursor, retries
//! with capped backoff, dead letters, metrics and `idsync status`; mail
//! only decides what to send and what the relay's answers mean:
//!
//! - A user event is looked at through the [`View`] (the user as it is
//!   now, not as the event saw it): each application whose activation is
//!   `queued` is mailed once, in the user's language ([`templates`]),
//!   with a link whose token derives from the sending's nonce ([`token`]).
//! - The relay accepted the mail: `sent` (with the token's hash and the
//!   link's expiry); it refused it for good (5xx): `failed` with the
//!   reason; both reported to the runner ([`ActivationReport`]), which
//!   records them through the reconciler before its cursor moves past the
//!   event, so a redelivered event finds `sent` and mails nobody.
//! - The relay is down, times out or answers 4xx: retry, as long as it
//!   takes (the runner backs off); the rest of the batch waits.
//! - Delivery is **at least once**: a crash (or a failed store write)
//!   between the relay's acceptance and the recorded `sent` sends that
//!   mail again after the restart. Both mails carry the same `Message-ID`
//!   (it derives from the sending) and the same working link.
//! - The full reconcile sends what is `queued` and was never delivered
//!   (the runner starts a new connector at the head of the change log).
//! - Certificate requests: a request that waits for approval mails the
//!   approvers, a later move of its status mails the requester
//!   ([`requests`]); same runner, same guarantee.
//! - No secret in a log line or an error: not the SMTP password (read
//!   from its file at start), not a token (only its hash leaves here).

mod config;
mod message;
mod pace;
mod relay;
mod requests;
pub mod templates;
pub mod token;

use std::collections::{BTreeMap, HashSet};

use futures_util::stream::{self, StreamExt as _};

use idsync_schema::{Activation, ActivationState, ApplicationSettings, Kind, User};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::connector::{
    ActivationReport, Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig,
    Outcome, Plan, View,
};
use crate::event::Event;
pub use config::{is_mail_address, MailConfig, TlsMode};
use message::Composer;
use templates::Templates;
use token::KEY_LEN;

/// The connector's name: its delivery state lives under `s/conn/mail/`.
pub const NAME: &str = "mail";

/// The mail connector: its connections to the relay kept for its whole
/// life ([`relay`]).
pub struct MailConnector {
    cfg: MailConfig,
    apps: BTreeMap<String, ApplicationSettings>,
    key: [u8; KEY_LEN],
    /// `mail.max_per_second`, when set.
    pace: Option<pace::Pace>,
    /// `mail.approvers`, parsed.
    approvers: Vec<lettre::message::Mailbox>,
    /// Token name → the mail address of `[[tokens]] mail`: requesters.
    requesters: BTreeMap<String, String>,
    composer: Composer,
    relay: relay::Relay,
}

/// What became of one sending.
enum Sent {
    /// Recorded as `sent` or `failed`.
    Settled(ActivationReport),
    /// Try again later.
    Retry(String),
}

impl MailConnector {
    /// A connector for `cfg`, mailing for `apps`, deriving link tokens
    /// with `key`, mailing requesters at the addresses of `requesters`
    /// (token name → address). Reads the templates and the password file
    /// now. Call it inside a tokio runtime (the connection pool starts its
    /// task).
    pub fn new(
        cfg: MailConfig,
        apps: &[ApplicationSettings],
        key: [u8; KEY_LEN],
        requesters: BTreeMap<String, String>,
    ) -> Result<Self, ConnectorError> {
        cfg.check()?;
        let config_err = |m: String| ConnectorError::Config(format!("mail: {m}"));
        let templates =
            Templates::load(cfg.templates_dir.as_deref()).map_err(|e| config_err(e.to_string()))?;
        let tls = || -> Result<TlsParameters, ConnectorError> {
            let mut p = TlsParameters::builder(cfg.relay.clone());
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| config_err(format!("ca_file {}: {e}", ca.display())))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| config_err(format!("ca_file {}: {e}", ca.display())))?;
                p = p.add_root_certificate(cert);
            }
            p.build_rustls()
                .map_err(|e| config_err(format!("tls: {e}")))
        };
        let tls = match cfg.tls {
            TlsMode::None => None,
            _ => Some(tls()?),
        };
        let credentials = match (&cfg.username, &cfg.password_file) {
            (Some(user), Some(file)) => {
                let password = std::fs::read_to_string(file)
                    .map_err(|e| config_err(format!("password_file {}: {e}", file.display())))?;
                Some(Credentials::new(user.clone(), password.trim().to_owned()))
            }
            _ => None,
        };
        let relay = relay::Relay::new(&cfg, tls, credentials);
        let approvers = cfg
            .approver_mailboxes()
            .map_err(|(key, m)| config_err(format!("{key}: {m}")))?;
        Ok(Self {
            pace: cfg.max_per_second.map(pace::Pace::new),
            approvers,
            requesters,
            composer: Composer::new(&cfg, templates)?,
            apps: apps.iter().map(|a| (a.name.clone(), a.clone())).collect(),
            key,
            relay,
            cfg,
        })
    }

    /// Wait for the next mail's turn under `mail.max_per_second`.
    async fn paced(&self) {
        if let Some(p) = &self.pace {
            p.wait().await;
        }
    }

    fn relay_name(&self) -> String {
        format!("{}:{}", self.cfg.relay, self.cfg.port)
    }

    /// Send `user` the activation mail of `app` for sending `nonce`.
    async fn send(&self, user: &User, app: &str, nonce: &str) -> Sent {
        let now = OffsetDateTime::now_utc();
        let report = |activation: Activation| ActivationReport {
            user: user.id,
            application: app.to_owned(),
            nonce: nonce.to_owned(),
            activation,
        };
        let failed = |reason: String| {
            Sent::Settled(report(Activation {
                state: ActivationState::Failed,
                nonce: Some(nonce.to_owned()),
                token_sha256: None,
                expires: None,
                reason: Some(reason),
                at: now,
            }))
        };
        let Some(settings) = self.apps.get(app) else {
            return failed(format!("application {app:?} is not configured"));
        };
        let expires = now + time::Duration::days(settings.link_lifetime_days.into());
        let token = token::activation_token(&self.key, user.id, app, nonce);
        let link = self.cfg.activation_link(&token);
        let msg = match self
            .composer
            .activation(user, settings, nonce, &link, expires)
        {
            Ok(m) => m,
            Err(e) => return failed(e),
        };
        self.paced().await;
        match self.relay.send(&msg).await {
            Ok(()) => Sent::Settled(report(Activation {
                state: ActivationState::Sent,
                nonce: Some(nonce.to_owned()),
                token_sha256: Some(token::token_sha256(&token)),
                expires: Some(expires),
                reason: None,
                at: now,
            })),
            Err(relay::RelayError::Permanent(e)) => {
                failed(format!("the relay refused the mail: {e}"))
            }
            Err(relay::RelayError::Transient(e)) => {
                Sent::Retry(format!("mail: sending through {}: {e}", self.relay_name()))
            }
        }
    }

    /// The sendings `user` is waiting for: (application, nonce).
    fn queued(user: &User) -> Vec<(String, String)> {
        user.activations
            .iter()
            .filter(|(_, a)| a.state == ActivationState::Queued)
            .filter_map(|(app, a)| Some((app.clone(), a.nonce.clone()?)))
            .collect()
    }

    async fn deliver_batch(&self, batch: &[Event], view: &dyn View) -> Delivery {
        let mut d = Delivery::default();
        // Sendings done in this batch: an event that follows for the same
        // user (its state not recorded yet) must not send again.
        let mut done: HashSet<(Uuid, String, String)> = HashSet::new();
        let mut approvers = None;
        // Request mails sent in this batch: (request, status). An event
        // carries the request as it is now, so two events of one request
        // in a batch (approved, then issued) would say the same twice.
        let mut noticed: HashSet<(Uuid, &'static str)> = HashSet::new();
        let mut at = 0;
        while at < batch.len() {
            let e = &batch[at];
            if e.kind == Kind::Request {
                let outcome = self.notify(e, view, &mut approvers, &mut noticed).await;
                let go_on = outcome == Outcome::Delivered;
                d.outcomes.push(outcome);
                if !go_on {
                    break;
                }
                at += 1;
                continue;
            }
            // The events up to the next request: their mails go out together.
            let end = batch[at..]
                .iter()
                .position(|e| e.kind == Kind::Request)
                .map_or(batch.len(), |p| at + p);
            if !self
                .deliver_users(&batch[at..end], view, &mut done, &mut d)
                .await
            {
                break;
            }
            at = end;
        }
        d
    }

    /// Mail the queued activations of `events` (no request among them):
    /// every user is read first, then the mails go out `max_connections`
    /// at a time (one after another, each waits for the relay's answers:
    /// a few round trips and, with lettre, a delayed ACK). One outcome per
    /// event is pushed, up to the first that is not delivered; false when
    /// the batch stops there. The outcome of every mail sent is reported,
    /// also past that event, so a redelivery does not mail it again.
    async fn deliver_users(
        &self,
        events: &[Event],
        view: &dyn View,
        done: &mut HashSet<(Uuid, String, String)>,
        d: &mut Delivery,
    ) -> bool {
        let mut sendings: Vec<(usize, User, String, String)> = Vec::new();
        let mut stop: Option<(usize, Outcome)> = None;
        for (k, e) in events.iter().enumerate() {
            if e.kind != Kind::User {
                continue;
            }
            let user = match view.object(Kind::User, e.id) {
                Ok(Some(v)) => match serde_json::from_value::<User>(v) {
                    Ok(u) => u,
                    Err(err) => {
                        stop = Some((k, Outcome::Failed(format!("user {}: {err}", e.id))));
                        break;
                    }
                },
                Ok(None) => continue,
                Err(err) => {
                    stop = Some((k, Outcome::Retry(err.to_string())));
                    break;
                }
            };
            for (app, nonce) in Self::queued(&user) {
                if done.insert((user.id, app.clone(), nonce.clone())) {
                    sendings.push((k, user.clone(), app, nonce));
                }
            }
        }
        let at_once = (self.cfg.max_connections as usize).max(1);
        // Made up front: a stream's `map` closure over borrowed sendings
        // trips the compiler's lifetime check for `Send` futures.
        let mails: Vec<_> = sendings
            .iter()
            .map(|(k, user, app, nonce)| async move { (*k, self.send(user, app, nonce).await) })
            .collect();
        let results: Vec<(usize, Sent)> = stream::iter(mails).buffered(at_once).collect().await;
        for (k, sent) in results {
            match sent {
                Sent::Settled(r) => d.activations.push(r),
                Sent::Retry(m) => {
                    if stop.as_ref().is_none_or(|(at, _)| k < *at) {
                        stop = Some((k, Outcome::Retry(m)));
                    }
                }
            }
        }
        for k in 0..events.len() {
            if let Some((at, outcome)) = &stop {
                if k == *at {
                    d.outcomes.push(outcome.clone());
                    return false;
                }
            }
            d.outcomes.push(Outcome::Delivered);
        }
        true
    }
}

impl MailConnector {
    /// Mail what request event `e` calls for; `approvers` is looked up once
    /// per batch, when first needed.
    async fn notify(
        &self,
        e: &Event,
        view: &dyn View,
        approvers: &mut Option<Vec<requests::Recipient>>,
        noticed: &mut HashSet<(Uuid, &'static str)>,
    ) -> Outcome {
        let Some((notice, request)) = requests::notice_of(e) else {
            return Outcome::Delivered;
        };
        if noticed.contains(&(request.id, request.status.as_str())) {
            return Outcome::Delivered;
        }
        let recipients = match notice {
            requests::Notice::ApprovalNeeded => {
                if approvers.is_none() {
                    match requests::approvers(&self.approvers, view) {
                        Ok(a) => *approvers = Some(a),
                        Err(err) => return Outcome::Retry(err.to_string()),
                    }
                }
                approvers.clone().unwrap_or_default()
            }
            requests::Notice::Decided => requests::requester(&self.requesters, &request)
                .into_iter()
                .collect(),
        };
        if recipients.is_empty() {
            tracing::debug!(request = %request.id, notice = notice.kind(), "nobody to mail");
        }
        for rcpt in &recipients {
            let msg = match self.composer.request(notice, &request, rcpt) {
                Ok(m) => m,
                Err(reason) => {
                    tracing::warn!(request = %request.id, to = %rcpt.to.email, "{} mail not sent: {reason}", notice.kind());
                    continue;
                }
            };
            self.paced().await;
            match self.relay.send(&msg).await {
                Ok(()) => {}
                Err(relay::RelayError::Permanent(err)) => {
                    tracing::warn!(request = %request.id, to = %rcpt.to.email, "the relay refused the {} mail: {err}", notice.kind());
                }
                Err(relay::RelayError::Transient(err)) => {
                    return Outcome::Retry(format!(
                        "mail: sending through {}: {err}",
                        self.relay_name()
                    ))
                }
            }
        }
        noticed.insert((request.id, request.status.as_str()));
        Outcome::Delivered
    }
}

impl Connector for MailConnector {
    fn name(&self) -> &str {
        NAME
    }

    fn delivery(&self) -> &DeliveryConfig {
        &self.cfg.delivery
    }

    /// An SMTP session up to `NOOP` (TLS and login as configured).
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            self.relay.check().await.map_err(|e| {
                ConnectorError::Unavailable(format!("mail: {}: {e}", self.relay_name()))
            })
        })
    }

    fn deliver<'a>(&'a self, batch: &'a [Event], view: &'a dyn View) -> BoxFuture<'a, Delivery> {
        Box::pin(self.deliver_batch(batch, view))
    }

    /// Every sending still `queued`: what a new connector (started at the
    /// head of the change log) or a lost event would leave unsent.
    fn plan<'a>(&'a self, view: &'a dyn View) -> BoxFuture<'a, Result<Plan, ConnectorError>> {
        Box::pin(async move {
            let mut plan = Plan::default();
            view.for_each(Kind::User, &mut |v| {
                if let Ok(user) = serde_json::from_value::<User>(v.clone()) {
                    for (app, nonce) in Self::queued(&user) {
                        plan.text.push_str(&format!(
                            "send activation: user {} application {app}\n",
                            user.id
                        ));
                        plan.creates += 1;
                        plan.ops
                            .push(json!({"app": app, "nonce": nonce, "user": v}));
                    }
                }
                true
            })?;
            if plan.text.is_empty() {
                plan.text = "mail: nothing queued\n".into();
            }
            Ok(plan)
        })
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Applied, ConnectorError>> {
        Box::pin(async move {
            let mut applied = Applied {
                text: plan.text.clone(),
                ..Applied::default()
            };
            for op in &plan.ops {
                let (Some(app), Some(nonce)) = (op["app"].as_str(), op["nonce"].as_str()) else {
                    continue;
                };
                let Ok(user) = serde_json::from_value::<User>(op["user"].clone()) else {
                    continue;
                };
                match self.send(&user, app, nonce).await {
                    Sent::Settled(r) => {
                        applied.done += 1;
                        applied.activations.push(r);
                    }
                    Sent::Retry(m) => {
                        // The rest waits for the next reconcile, or for
                        // the user's next event.
                        if applied.done == 0 {
                            return Err(ConnectorError::Unavailable(m));
                        }
                        applied.errors.push(m);
                        return Ok(applied);
                    }
                }
            }
            Ok(applied)
        })
    }
}

#[cfg(test)]
mod tests;
