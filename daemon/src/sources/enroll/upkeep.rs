//! What enrollment does on a clock, once a minute: sign the CRLs when
//! they are due, and move registrations past their expiry to `expired`
//! (a change event each, so connectors and auditors see it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Enrollment;

/// How often the upkeep runs.
const EVERY: Duration = Duration::from_secs(60);

impl Enrollment {
    /// Run the upkeep at once, then every minute, until `shutdown`.
    pub(crate) async fn upkeep(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.publish_crls_if_due().await;
            match self.expire_registrations().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(registrations = n, "registrations expired"),
                Err(e) => tracing::error!(error = %e, "could not expire registrations"),
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
