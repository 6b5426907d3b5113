//! `idsync connectors retry|reconcile|plan NAME`: the admin routes that
//! serve them in the daemon (which holds the store lock) and the client the
//! CLI uses. `plan` also works without a daemon: it then opens the store
//! itself, read-only in effect.
//!
//! Routes (all need the `admin` role):
//! - `POST /connectors/NAME/retry`: replay the dead letters;
//! - `POST /connectors/NAME/reconcile` (`?force=true` ignores the deletion
//!   threshold): run a full reconcile, answer with what it did;
//! - `GET /connectors/NAME/plan`: what a reconcile would do, changing nothing.

use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::Subcommand;
use http_body_util::Full;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::Connectors;
use crate::client::DaemonClient;
use crate::config::Config;

/// Exit status: the reconcile stopped at the deletion threshold.
pub const EXIT_THRESHOLD: u8 = 5;
/// The answer of a reconcile carries this when the threshold stopped it.
const REFUSED: &str = "reconcile refused: ";
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

fn answer(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    crate::admin::respond_json(status, &body)
}

/// Whether `path` is one of these routes (they need the admin role).
pub fn is_connector_route(path: &str) -> bool {
    path == "/connectors" || path.starts_with("/connectors/")
}

/// Serve a `/connectors/…` request.
pub async fn route(
    connectors: Option<&Connectors>,
    method: &Method,
    path: &str,
    query: Option<&str>,
) -> Response<Full<Bytes>> {
    let not_found = || answer(StatusCode::NOT_FOUND, json!({"error": "no such connector"}));
    let Some(connectors) = connectors else {
        return not_found();
    };
    let rest = path.trim_start_matches("/connectors").trim_matches('/');
    if rest.is_empty() && method == Method::GET {
        let list: Vec<_> = connectors.stats().iter().map(|s| s.json()).collect();
        return answer(StatusCode::OK, json!(list));
    }
    let Some((name, action)) = rest.split_once('/') else {
        return not_found();
    };
    let force = query.is_some_and(|q| q.split('&').any(|p| p == "force=true" || p == "force=1"));
    match (method.clone(), action) {
        (Method::POST, "retry") => match connectors.retry(name).await {
            None => not_found(),
            Some(Ok(m)) => answer(StatusCode::OK, json!({"message": m})),
            Some(Err(e)) => answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e})),
        },
        (Method::POST, "reconcile") => match connectors.reconcile(name, force).await {
            None => not_found(),
            Some(Ok(report)) => answer(StatusCode::OK, json!(report)),
            Some(Err(e)) if e.starts_with(REFUSED) => {
                answer(StatusCode::CONFLICT, json!({"error": e}))
            }
            Some(Err(e)) => answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": e})),
        },
        (Method::GET, "plan") => match connectors.plan(name).await {
            None => not_found(),
            Some(Ok(plan)) => answer(StatusCode::OK, plan_json(&plan)),
            Some(Err(e)) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": e.to_string()}),
            ),
        },
        (_, "retry" | "reconcile" | "plan") => answer(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "POST retry and reconcile, GET plan"}),
        ),
        _ => not_found(),
    }
}

fn plan_json(p: &idsync_connectors::Plan) -> serde_json::Value {
    json!({
        "text": p.text,
        "creates": p.creates,
        "updates": p.updates,
        "deletions": p.deletions,
        "skipped": p.skipped,
        "refusal": p.refusal,
    })
}

/// Send one request to the daemon; the status and the JSON answer.
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
                Ok(Err(e)) if crate::client::is_unreachable(&e) => None,
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
                Ok(c) => return Err(crate::client::Unreachable(c.target()).into()),
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
    let rec = crate::cli::open(cfg)?;
    let view = super::state::StoreView {
        store: rec.store(),
        name,
    };
    let plan = c.plan(&view).await?;
    print_ops(&plan_json(&plan), "plan");
    if let Some(r) = &plan.refusal {
        eprintln!("a reconcile would stop here: {r}");
    }
    Ok(0)
}
