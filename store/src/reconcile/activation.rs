//! The activation e-mail's state per user and application (issue 16), as
//! changes like any other: a move of the state is a new version of the
//! user and one change event, which the mail connector follows.
//!
//! Why on the user and through the reconciler: the state is what an admin
//! asks about ("who was never sent one?"), it must survive restarts and be
//! audited in the change log, and the mail connector learns what to send
//! from the events, so there is no second queue to keep consistent.

use idsync_schema::{Activation, ActivationState, Rule, User, Violation};
use uuid::Uuid;

use super::{Outcome, Tx, WriteError};

impl Tx<'_> {
    /// Move user `id`'s activation for `app` to `new`; refused when the
    /// state machine does not allow it ([`ActivationState::may_become`]) or
    /// the user does not belong to `app`.
    pub fn set_activation(
        &mut self,
        id: Uuid,
        app: &str,
        new: Activation,
    ) -> Result<Outcome, WriteError> {
        let Some(old) = self.load::<User>(id)? else {
            return Err(Violation::new("id", &id.to_string(), Rule::NotFound).into());
        };
        if !old.applications.iter().any(|a| a == app) {
            return Err(Violation::new("applications", app, Rule::NotFound).into());
        }
        let from = old
            .activations
            .get(app)
            .map_or(ActivationState::NotSent, |a| a.state);
        if !from.may_become(new.state) {
            return Err(Violation::new(
                "activations",
                new.state.as_str(),
                Rule::Transition {
                    from: from.as_str().to_owned(),
                },
            )
            .into());
        }
        let mut user = old.clone();
        user.activations.insert(app.to_owned(), new);
        Ok(self.write(Some(&old), user)?)
    }

    /// Record what became of sending `nonce` (`sent` or `failed`), only
    /// while `id`'s activation for `app` is still `queued` with that nonce:
    /// a resend (a new nonce) or a deletion in between wins. False when
    /// nothing was recorded.
    pub fn record_activation(
        &mut self,
        id: Uuid,
        app: &str,
        nonce: &str,
        new: Activation,
    ) -> Result<bool, WriteError> {
        let Some(user) = self.load::<User>(id)? else {
            return Ok(false);
        };
        let current = user.activations.get(app);
        if !current.is_some_and(|a| {
            a.state == ActivationState::Queued && a.nonce.as_deref() == Some(nonce)
        }) {
            return Ok(false);
        }
        self.set_activation(id, app, new)?;
        Ok(true)
    }

    /// Record that the password was set through the link whose token
    /// hashes to `token_sha256`: `sent` becomes `activated` only while the
    /// stored state is still that sending's (a resend in between voided
    /// the link). False when nothing was recorded.
    pub fn activate(
        &mut self,
        id: Uuid,
        app: &str,
        token_sha256: &str,
    ) -> Result<bool, WriteError> {
        let Some(user) = self.load::<User>(id)? else {
            return Ok(false);
        };
        let Some(current) = user.activations.get(app) else {
            return Ok(false);
        };
        if current.state != ActivationState::Sent
            || current.token_sha256.as_deref() != Some(token_sha256)
        {
            return Ok(false);
        }
        let activated = Activation {
            state: ActivationState::Activated,
            at: self.now,
            ..current.clone()
        };
        self.set_activation(id, app, activated)?;
        Ok(true)
    }

    /// Queue the activation mail of `app` for those of `candidates` that
    /// belong to `app` and were never sent one (checked again here, under
    /// the writer lock); `nonce` names each sending. Returns the users
    /// queued.
    pub fn queue_activations(
        &mut self,
        app: &str,
        candidates: &[Uuid],
        nonce: &mut dyn FnMut() -> String,
    ) -> Result<Vec<Uuid>, WriteError> {
        let mut queued = Vec::new();
        for &id in candidates {
            let Some(user) = self.load::<User>(id)? else {
                continue;
            };
            if !never_sent(&user, app) {
                continue;
            }
            self.set_activation(id, app, Activation::queued(nonce(), self.now))?;
            queued.push(id);
        }
        Ok(queued)
    }
}

/// Whether `user` belongs to `app` and was never sent its activation mail.
pub fn never_sent(user: &User, app: &str) -> bool {
    user.applications.iter().any(|a| a == app)
        && user
            .activations
            .get(app)
            .is_none_or(|a| a.state == ActivationState::NotSent)
}
