//! `idsync connectors retry|reconcile|plan NAME`: the CLI's side of the
//! admin routes in `crate::connect::routes`. `plan` also works without a
//! daemon: it then opens the store itself, read-only.

use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use hyper::{Method, StatusCode};

use crate::cli::client::DaemonClient;
use crate::config::Config;
use crate::connect::plan_json;

/// Exit status: the reconcile stopped at the deletion threshold.
pub const EXIT_THRESHOLD: u8 = 5;
/// A reconcile of a large directory takes a while.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3600);

/// `idsync connectors …`
#[derive(Debug, Subcommand)]
pub enum ConnectorsCommand {
    /// Deliver the parked changes (the dead-letter list) again.
    Retry { name: String },
    /// Run a full reconcile now and print the operations it ran.
    Reconcile {
        name: String,
        /// Run even past the deletion threshold.
        #[arg(long)]
        force: bool,
    },
    /// Print the operations a full reconcile would run (LDIF), changing
    /// nothing.
    Plan { name: String },
}

/// Print a plan or a reconcile: the LDIF on stdout, the counts on stderr.
fn print_ops(v: &serde_json::Value, what: &str) {
    print!("{}", v["text"].as_str().unwrap_or(""));
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    eprintln!(
        "{what}: {} creates, {} updates, {} deletions, {} entries left alone",
        n("creates"),
        n("updates"),
        n("deletions"),
        n("skipped")
    );
    for e in v["errors"].as_array().into_iter().flatten() {
        eprintln!("error: {}", e.as_str().unwrap_or(""));
    }
}

/// Run `idsync connectors …`; the exit status.
pub fn run(cfg: &Config, cmd: ConnectorsCommand) -> anyhow::Result<u8> {
    let name = match &cmd {
        ConnectorsCommand::Retry { name }
        | ConnectorsCommand::Reconcile { name, .. }
        | ConnectorsCommand::Plan { name } => name.clone(),
    };
    if !cfg.connectors.iter().any(|c| c.name() == name) {
        bail!("no connector named {name:?} in the configuration");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let client = DaemonClient::new(cfg);
        let (method, path) = match &cmd {
            ConnectorsCommand::Retry { name } => (Method::POST, format!("/connectors/{name}/retry")),
            ConnectorsCommand::Reconcile { name, force } => (
                Method::POST,
                format!("/connectors/{name}/reconcile{}", if *force { "?force=true" } else { "" }),
            ),
            ConnectorsCommand::Plan { name } => (Method::GET, format!("/connectors/{name}/plan")),
        };
        let answer = match &client {
            Ok(c) => match tokio::time::timeout(CLIENT_TIMEOUT, c.call(method, &path, None, Vec::new())).await {
                Ok(Ok(a)) => Some(a),
                Ok(Err(e)) if crate::cli::client::is_unreachable(&e) => None,
                Ok(Err(e)) => return Err(e),
                Err(_) => bail!("the idsync daemon at {} did not answer in time", c.target()),
            },
            Err(_) => None,
        };
        let Some(answer) = answer else {
            // No daemon: a plan can be made from the store directly.
            if let ConnectorsCommand::Plan { name } = &cmd {
                return plan_offline(cfg, name).await;
            }
            match client {
                Err(e) => return Err(e),
                Ok(c) => return Err(crate::cli::client::Unreachable(c.target()).into()),
            }
        };
        let (status, v) = (answer.status, answer.json());
        let error = v["error"].as_str().unwrap_or("").to_owned();
        match (status, &cmd) {
            (StatusCode::OK, ConnectorsCommand::Retry { .. }) => {
                println!("{}", v["message"].as_str().unwrap_or(""));
                Ok(0)
            }
            (StatusCode::OK, ConnectorsCommand::Reconcile { .. }) => {
                print_ops(&v, "reconcile");
                Ok(if v["errors"].as_array().is_some_and(|e| !e.is_empty()) { 1 } else { 0 })
            }
            (StatusCode::OK, ConnectorsCommand::Plan { .. }) => {
                print_ops(&v, "plan");
                if let Some(r) = v["refusal"].as_str() {
                    eprintln!("a reconcile would stop here: {r}");
                }
                Ok(0)
            }
            (StatusCode::CONFLICT, _) => {
                eprintln!("idsync: {error}");
                Ok(EXIT_THRESHOLD)
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
                bail!("the idsync daemon refused the token ({status}): these commands need the admin role")
            }
            (s, _) => bail!("the idsync daemon answered {s}: {error}"),
        }
    })
}

async fn plan_offline(cfg: &Config, name: &str) -> anyhow::Result<u8> {
    idsync_connectors::install_crypto_provider();
    let c = cfg
        .connectors
        .iter()
        .find(|c| c.name() == name)
        .expect("checked by the caller")
        .build()?;
    let store = crate::app::open_store(cfg)?;
    let view = crate::connect::view::StoreView {
        store: &store,
        name,
    };
    let plan = c.plan(&view).await?;
    print_ops(&plan_json(&plan), "plan");
    if let Some(r) = &plan.refusal {
        eprintln!("a reconcile would stop here: {r}");
    }
    Ok(0)
}
