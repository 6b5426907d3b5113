//! Recording the activation states the mail connector reports (`sent`,
//! `failed`) as changes through the reconciler.
//!
//! Why in the runner: a connector never writes an object; it reports, and
//! the runner records before the cursor moves past the events reported on
//! (see [`super::deliver`]), so an event delivered again after a crash
//! finds `sent` and mails nobody. The window left is the one between the
//! relay's acceptance and this write (docs/mail.md: at least once).

use std::sync::Arc;

use idsync_connectors::ActivationReport;
use idsync_schema::Source;
use idsync_store::reconcile::{Reconciler, WriteError};
use idsync_store::{Actor, StoreError};

/// Record `reports` in one transaction, off the async threads. A report
/// the state machine refuses (a resend won meanwhile) is logged and left.
pub(super) async fn record(
    rec: &Arc<Reconciler>,
    name: &str,
    reports: Vec<ActivationReport>,
) -> Result<(), String> {
    if reports.is_empty() {
        return Ok(());
    }
    let rec = Arc::clone(rec);
    let actor = Actor {
        kind: "connector".into(),
        name: name.to_owned(),
        digest: None,
        line: None,
    };
    let name = name.to_owned();
    let written = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        let mut tx = rec.begin(Source::Api, actor);
        for r in &reports {
            match tx.record_activation(r.user, &r.application, &r.nonce, r.activation.clone()) {
                Ok(true) => {}
                Ok(false) => tracing::info!(
                    connector = %name, user = %r.user, application = %r.application,
                    "activation outcome not recorded: the sending was replaced or the user deleted"
                ),
                Err(WriteError::Rejected(v)) => tracing::warn!(
                    connector = %name, user = %r.user, application = %r.application,
                    "activation outcome not recorded: {v}"
                ),
                Err(WriteError::Store(e)) => return Err(e),
            }
        }
        tx.commit()?;
        Ok(())
    })
    .await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("recording activation states: {e}")),
        Err(e) => Err(format!("recording activation states: {e}")),
    }
}
