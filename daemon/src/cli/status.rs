//! `idsync status`: `GET /status` from the running daemon, as text for
//! people. Client side only: it knows the JSON of `/status`, not the
//! listener that serves it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::api::ADMIN_TOKEN_FILE;

/// `idsync status` gives up after this long.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/status` answer `idsync status` reads.
const MAX_STATUS_BYTES: usize = 1 << 20;

/// Run `idsync status`: ask the daemon of `cfg` and print its answer.
pub fn run(cfg: &crate::config::Config) -> anyhow::Result<u8> {
    let addr: SocketAddr = cfg
        .admin
        .listen
        .parse()
        .with_context(|| format!("admin.listen `{}`", cfg.admin.listen))?;
    let token = super::client::client_token(std::env::var_os("IDSYNC_TOKEN"), &cfg.data_dir)?;
    // One request: a current-thread runtime is all it takes.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    print!("{}", rt.block_on(status_over_http(addr, &token))?);
    Ok(0)
}

/// `GET /status` from the daemon listening on `addr`, as text for people.
pub async fn status_over_http(addr: SocketAddr, token: &str) -> anyhow::Result<String> {
    let client = crate::cli::client::DaemonClient::with_token(addr, token)?;
    let target = client.target();
    let answer = tokio::time::timeout(
        CLIENT_TIMEOUT,
        client.call(Method::GET, "/status", None, Vec::new()),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "the idsync daemon at {target} did not answer within {}s",
            CLIENT_TIMEOUT.as_secs()
        )
    })??;
    let body = &answer.body;
    if body.len() > MAX_STATUS_BYTES {
        bail!("the answer of {target} is larger than a /status");
    }
    match answer.status {
        StatusCode::OK => {}
        StatusCode::UNAUTHORIZED => bail!(
            "the idsync daemon at {target} refused the token (401): \
             check IDSYNC_TOKEN or DATA_DIR/{ADMIN_TOKEN_FILE}"
        ),
        StatusCode::FORBIDDEN => bail!(
            "the idsync daemon at {target} refused the token (403): it lacks the monitor role"
        ),
        s => bail!(
            "the idsync daemon at {target} answered {s}: {}",
            printable(String::from_utf8_lossy(&body[..body.len().min(200)]).trim())
        ),
    }
    let doc: Value = serde_json::from_slice(body)
        .with_context(|| format!("the answer of {target} is not the JSON of /status"))?;
    Ok(format_status(target, &doc))
}

/// Control characters from the network must not reach the terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The engine, and the database's round trip when there is one.
fn store_line(v: &Value) -> String {
    let engine = printable(
        v.pointer("/store/engine")
            .and_then(Value::as_str)
            .unwrap_or("?"),
    );
    match v.pointer("/store/round_trip_ms").and_then(Value::as_f64) {
        Some(ms) => format!("{engine} (a round trip to the database takes {ms:.3} ms)"),
        None => format!("{engine} (embedded: no database round trip)"),
    }
}

/// This replica's role and the leader (none before an election).
fn role_line(v: &Value) -> Option<String> {
    let r = v.pointer("/replica").filter(|r| r.is_object())?;
    let node = printable(r["node"].as_str().unwrap_or("?"));
    let epoch = r["epoch"]
        .as_u64()
        .map_or_else(|| "none".to_owned(), |n| n.to_string());
    Some(match (r["role"].as_str(), r["leader"].as_str()) {
        (Some("leader"), _) => format!("leader (this node, {node}; epoch {epoch})"),
        (_, Some(leader)) => format!(
            "follower ({node}); the leader is {} (epoch {epoch})",
            printable(leader)
        ),
        _ => format!(
            "follower ({node}); the leader is unknown (no election seen, or the database is away)"
        ),
    })
}

fn format_status(target: SocketAddr, v: &Value) -> String {
    let num = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_u64)
            .map_or_else(|| "?".to_owned(), |n| n.to_string())
    };
    let yes = |p: &str| match v.pointer(p).and_then(Value::as_bool) {
        Some(true) => "yes",
        Some(false) => "no",
        None => "?",
    };
    let text = |p: &str| printable(v.pointer(p).and_then(Value::as_str).unwrap_or("?"));
    let heartbeat = v
        .pointer("/heartbeat_age_seconds")
        .and_then(Value::as_f64)
        .map_or_else(|| "?".to_owned(), |s| format!("{s:.1}s"));
    let uptime = v
        .pointer("/uptime_seconds")
        .and_then(Value::as_u64)
        .map_or_else(
            || "?".to_owned(),
            |s| format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60),
        );
    let mut out = String::new();
    let _ = writeln!(out, "idsync {} at {target}", text("/version"));
    let _ = writeln!(out, "ready:           {}", yes("/ready"));
    let _ = writeln!(
        out,
        "healthy:         {} (last heartbeat {heartbeat} ago)",
        yes("/healthy")
    );
    let _ = writeln!(out, "status:          {}", text("/status"));
    let _ = writeln!(out, "queue depth:     {}", num("/queue_depth"));
    let _ = writeln!(
        out,
        "files:           {} accepted, {} partial, {} rejected",
        num("/files/accepted"),
        num("/files/partial"),
        num("/files/rejected")
    );
    let _ = writeln!(
        out,
        "rows:            {} created, {} updated, {} unchanged, {} rejected",
        num("/rows/created"),
        num("/rows/updated"),
        num("/rows/unchanged"),
        num("/rows/rejected")
    );
    let _ = writeln!(out, "change log head: {}", num("/change_log_head"));
    let _ = writeln!(out, "store:           {}", store_line(v));
    if let Some(role) = role_line(v) {
        let _ = writeln!(out, "role:            {role}");
    }
    for c in v
        .pointer("/connectors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let n = |k: &str| {
            c[k].as_u64()
                .map_or_else(|| "?".to_owned(), |n| n.to_string())
        };
        let _ = writeln!(
            out,
            "connector {}: cursor {}, lag {}, {} delivered, {} failed, {} parked{}",
            printable(c["name"].as_str().unwrap_or("?")),
            n("cursor"),
            n("lag"),
            n("delivered"),
            n("failed"),
            n("parked"),
            match c["last_error"].as_str() {
                Some(e) if !e.is_empty() => format!("; last error: {}", printable(e)),
                _ => String::new(),
            }
        );
    }
    let _ = writeln!(out, "uptime:          {uptime}");
    out
}
