//! The connector runner: one task per configured connector, each following
//! the change log from its own durable cursor while this process leads
//! (see [`runner`]), plus what the admin API and the CLI need to look at
//! them and steer them.
//!
//! Why in the daemon and not in `idsync-connectors`: the runner owns the
//! store side (cursor, dead letters, remote ids under `s/conn/NAME/`),
//! and the connectors crate must not know the store. The connectors see
//! events and a read-only [`view::StoreView`].

mod activations;
mod backoff;
mod deliver;
mod error;
mod operate;
pub mod routes;
mod runner;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use idsync_connectors::{Connector, ConnectorConfig};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::infra::connector_stats::ConnectorStats;
pub use error::RunnerError;
use idsync_store::reconcile::Reconciler;
use operate::{Command, Report};
use runner::Runner;

/// How long SIGTERM waits for a connector to finish its batch; an
/// unfinished batch is simply delivered again at the next start.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One configured connector, as the admin API sees it.
pub struct Entry {
    pub connector: Arc<dyn Connector>,
    pub stats: Arc<ConnectorStats>,
    commands: mpsc::Sender<Command>,
}

/// The running connectors.
pub struct Connectors {
    rec: Arc<Reconciler>,
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.connector.name()))
            .finish()
    }
}

/// Build the connectors of the configuration (nothing runs yet).
pub fn build(configs: &[ConnectorConfig]) -> Result<Vec<Arc<dyn Connector>>> {
    configs
        .iter()
        .map(|c| {
            c.build()
                .with_context(|| format!("connector {:?}", c.name()))
        })
        .collect()
}

/// The mail connector of `[mail]` (issue 16), mailing for `apps`, its
/// links derived with the key in `data_dir` (made on first use), and
/// requesters at their tokens' `mail`.
pub fn build_mail(
    mail: &idsync_connectors::mail::MailConfig,
    apps: &[idsync_schema::ApplicationSettings],
    tokens: &[crate::infra::auth::TokenConfig],
    data_dir: &std::path::Path,
) -> Result<Arc<dyn Connector>> {
    use crate::infra::key_file;
    let key = key_file::load_or_create(data_dir, key_file::MAIL).context("the mail key")?;
    let requesters = tokens
        .iter()
        .filter_map(|t| Some((t.name.clone(), t.mail.clone()?)))
        .collect();
    let c = idsync_connectors::mail::MailConnector::new(mail.clone(), apps, key, requesters)
        .context("[mail]")?;
    Ok(Arc::new(c))
}

impl Connectors {
    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.connector.name() == name)
    }

    /// Figures of every connector.
    pub fn stats(&self) -> Vec<Arc<ConnectorStats>> {
        self.entries.iter().map(|e| Arc::clone(&e.stats)).collect()
    }

    /// What a full reconcile of `name` would do; `None` for an unknown name.
    pub async fn plan(
        &self,
        name: &str,
    ) -> Option<Result<idsync_connectors::Plan, idsync_connectors::ConnectorError>> {
        let e = self.entry(name)?;
        let view = view::StoreView {
            store: self.rec.store(),
            name,
        };
        Some(e.connector.plan(&view).await)
    }

    /// Ask the runner of `name` to replay its dead letters.
    pub async fn retry(&self, name: &str) -> Option<Result<String, RunnerError>> {
        let e = self.entry(name)?;
        let (tx, rx) = oneshot::channel();
        if e.commands.send(Command::Retry(tx)).await.is_err() {
            return Some(Err(RunnerError::NotRunning));
        }
        Some(rx.await.unwrap_or(Err(RunnerError::NotRunning)))
    }

    /// Ask the runner of `name` for a full reconcile.
    pub async fn reconcile(&self, name: &str, force: bool) -> Option<Result<Report, RunnerError>> {
        let e = self.entry(name)?;
        let (reply, rx) = oneshot::channel();
        if e.commands
            .send(Command::Reconcile { force, reply })
            .await
            .is_err()
        {
            return Some(Err(RunnerError::NotRunning));
        }
        Some(rx.await.unwrap_or(Err(RunnerError::NotRunning)))
    }
}

/// The runner tasks, to stop them.
pub struct Running {
    pub connectors: Arc<Connectors>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Start one runner task per connector. They deliver while `role` says
/// this process leads, wake when the store's head moves and stop when
/// [`Running::stop`] is called.
pub fn start(
    connectors: Vec<Arc<dyn Connector>>,
    rec: &Arc<Reconciler>,
    role: &watch::Receiver<idsync_store::leadership::Role>,
) -> Running {
    idsync_connectors::install_crypto_provider();
    let (stop, stop_rx) = watch::channel(false);
    let mut entries = Vec::new();
    let mut tasks = Vec::new();
    for connector in connectors {
        let name = connector.name().to_owned();
        let stats = Arc::new(ConnectorStats::new(&name));
        let (commands, rx) = mpsc::channel(16);
        let runner = Runner::new(
            name,
            Arc::clone(&connector),
            Arc::clone(rec),
            Arc::clone(&stats),
        );
        tasks.push(tokio::spawn(runner.run(
            rec.store().subscribe_head(),
            stop_rx.clone(),
            role.clone(),
            rx,
        )));
        entries.push(Entry {
            connector,
            stats,
            commands,
        });
    }
    Running {
        connectors: Arc::new(Connectors {
            rec: Arc::clone(rec),
            entries,
        }),
        stop,
        tasks,
    }
}

impl Running {
    /// Stop every runner after its current batch (at most [`STOP_GRACE`]).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout(STOP_GRACE, t).await.is_err() {
                tracing::warn!("a connector did not stop in time; its batch is delivered again at the next start");
                abort.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// A plan as the admin API answers it and the CLI prints it.
pub fn plan_json(p: &idsync_connectors::Plan) -> serde_json::Value {
    serde_json::json!({
        "text": p.text,
        "creates": p.creates,
        "updates": p.updates,
        "deletions": p.deletions,
        "skipped": p.skipped,
        "refusal": p.refusal,
    })
}
