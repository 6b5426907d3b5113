//! "Send E-Mails" of seed 003: queue the activation mail of an
//! application for every user imported for it who was never sent one, in
//! one transaction (one commit, one change event per user queued). The
//! mail connector (`idsync_connectors::mail`) follows those events and
//! sends; what it reports (`sent`, `failed`) comes back through the
//! runner.
//!
//! Why a source: asking for the mails is outside input that changes
//! users' state, like an import or a SCIM request, and goes through the
//! same reconciler.

pub mod config;
pub mod listener;
pub mod page;
pub mod routes;

use std::sync::Arc;

use idsync_schema::{ApplicationSettings, Kind, Source, User};
use idsync_store::reconcile::{never_sent, Reconciler, WriteError};
use idsync_store::{Actor, StoreError};
use serde::Serialize;

/// Why the mails could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no application {0:?} is configured ([[applications]])")]
    UnknownApplication(String),
    #[error("no user {0:?}")]
    UnknownUser(String),
    #[error("{0}")]
    Refused(String),
    #[error("mail is not configured ([mail]): nothing would send the activation mails")]
    NoMail,
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl SendError {
    /// The HTTP status of this failure, for the API and the console alike.
    pub fn status(&self) -> hyper::StatusCode {
        use hyper::StatusCode;
        match self {
            SendError::UnknownApplication(_) | SendError::UnknownUser(_) => StatusCode::NOT_FOUND,
            SendError::NoMail | SendError::Refused(_) => StatusCode::CONFLICT,
            SendError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            SendError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// What a send-activation did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Queued {
    pub application: String,
    /// Users queued now.
    pub queued: usize,
}

/// The applications and the store, as the send-activation needs them.
pub struct Activations {
    rec: Arc<Reconciler>,
    apps: Vec<ApplicationSettings>,
    mail: bool,
}

impl std::fmt::Debug for Activations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activations")
            .field("apps", &self.apps)
            .field("mail", &self.mail)
            .finish()
    }
}

/// What a resend did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Resent {
    pub application: String,
    pub user: uuid::Uuid,
}

/// A nonce naming one sending: 16 random bytes, hex.
fn nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

impl Activations {
    /// `mail`: whether `[mail]` is configured.
    pub fn new(rec: Arc<Reconciler>, apps: Vec<ApplicationSettings>, mail: bool) -> Self {
        Self { rec, apps, mail }
    }

    /// Queue a new activation mail of `app` for the user known by `key`
    /// (mail, loginName or id): a new nonce, so the old link stops working.
    pub async fn resend(&self, app: &str, key: &str, actor: Actor) -> Result<Resent, SendError> {
        self.usable(app)?;
        let rec = Arc::clone(&self.rec);
        let (app, key) = (app.to_owned(), key.to_owned());
        tokio::task::spawn_blocking(move || resend(&rec, &app, &key, actor))
            .await
            .map_err(|e| SendError::Internal(e.to_string()))?
    }

    fn usable(&self, app: &str) -> Result<(), SendError> {
        if !self.apps.iter().any(|a| a.name == app) {
            return Err(SendError::UnknownApplication(app.to_owned()));
        }
        if !self.mail {
            return Err(SendError::NoMail);
        }
        Ok(())
    }

    /// Queue the activation mail of `app` for every user of it never sent
    /// one, in one transaction.
    pub async fn send_activation(&self, app: &str, actor: Actor) -> Result<Queued, SendError> {
        self.usable(app)?;
        let rec = Arc::clone(&self.rec);
        let app = app.to_owned();
        tokio::task::spawn_blocking(move || queue(&rec, &app, actor))
            .await
            .map_err(|e| SendError::Internal(e.to_string()))?
    }
}

/// Queue a new sending of `app`'s activation mail for the user known by
/// `key` (blocking); refused for a user who is not of `app` or activated.
pub fn resend(rec: &Reconciler, app: &str, key: &str, actor: Actor) -> Result<Resent, SendError> {
    let mut tx = rec.begin(Source::Api, actor);
    let user = rec
        .store()
        .find::<User>(Kind::User, key)?
        .ok_or_else(|| SendError::UnknownUser(key.to_owned()))?;
    let activation = idsync_schema::Activation::queued(nonce(), time::OffsetDateTime::now_utc());
    match tx.set_activation(user.id, app, activation) {
        Ok(_) => {}
        Err(WriteError::Store(e)) => return Err(e.into()),
        Err(WriteError::Rejected(v)) => {
            return Err(SendError::Refused(format!(
                "user {key:?}, application {app:?}: {v}"
            )))
        }
    }
    tx.commit()?;
    Ok(Resent {
        application: app.to_owned(),
        user: user.id,
    })
}

/// `send_policy = "on_import"`: after an import for `application`, queue
/// the activation mails of its users never sent one (those the import
/// created among them). `None` when there is nothing to do: no
/// application, a `manual` one, or no `[mail]`.
pub fn on_import(
    rec: &Reconciler,
    apps: &[ApplicationSettings],
    mail: bool,
    application: Option<&str>,
    actor: Actor,
) -> Option<Result<Queued, SendError>> {
    let app = apps.iter().find(|a| Some(a.name.as_str()) == application)?;
    if app.send_policy != idsync_schema::SendPolicy::OnImport || !mail {
        return None;
    }
    Some(queue(rec, &app.name, actor))
}

/// Queue `app`'s activation for its users never sent one (blocking).
pub fn queue(rec: &Reconciler, app: &str, actor: Actor) -> Result<Queued, SendError> {
    // The writer lock first: no write lands between the scan and the
    // queueing, and each user is checked again inside the transaction.
    let mut tx = rec.begin(Source::Api, actor);
    let mut candidates = Vec::new();
    rec.store().for_each::<User>(Kind::User, |u| {
        if never_sent(&u, app) {
            candidates.push(u.id);
        }
        Ok(true)
    })?;
    let queued = match tx.queue_activations(app, &candidates, &mut nonce) {
        Ok(q) => q,
        Err(WriteError::Store(e)) => return Err(e.into()),
        Err(WriteError::Rejected(v)) => return Err(SendError::Internal(v.to_string())),
    };
    tx.commit()?;
    Ok(Queued {
        application: app.to_owned(),
        queued: queued.len(),
    })
}
