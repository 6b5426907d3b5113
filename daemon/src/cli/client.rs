//! The command line's side of the admin listener: commands that act on the
//! running daemon (it holds the store) send their request through this
//! client, with the token of `IDSYNC_TOKEN` or `DATA_DIR/admin.token`.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::api::ADMIN_TOKEN_FILE;
use crate::config::Config;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Answers are JSON, PEM or a PKCS#12 file: small.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// An answer of the daemon.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON; a body that is not JSON becomes `{"error": text}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(
            |_| serde_json::json!({"error": String::from_utf8_lossy(&self.body).trim().to_owned()}),
        )
    }

    /// The `error` of a JSON answer, or the text of another.
    pub fn error(&self) -> String {
        match self.json().get("error") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => String::from_utf8_lossy(&self.body).trim().to_owned(),
        }
    }
}

/// A client of the daemon's admin listener.
pub struct DaemonClient {
    target: SocketAddr,
    authorization: HeaderValue,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Where to connect to reach a daemon listening on `addr`: a wildcard
/// address is reachable through loopback.
pub fn client_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

impl DaemonClient {
    /// A client of the daemon of `cfg` (its `admin.listen`), with the token
    /// of `IDSYNC_TOKEN` or the first-start token file.
    pub fn new(cfg: &Config) -> anyhow::Result<Self> {
        let addr: SocketAddr = cfg
            .admin
            .listen
            .parse()
            .with_context(|| format!("admin.listen `{}`", cfg.admin.listen))?;
        let token = client_token(std::env::var_os("IDSYNC_TOKEN"), &cfg.data_dir)?;
        Self::with_token(addr, &token)
    }

    /// A client of the daemon listening on `addr`, sending `token`.
    pub fn with_token(addr: SocketAddr, token: &str) -> anyhow::Result<Self> {
        // The error names no value: it would be the token.
        let mut authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow!("the token has characters an HTTP header cannot carry"))?;
        // Keeps it out of hyper's debug output.
        authorization.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        Ok(Self {
            target: client_target(addr),
            authorization,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Where the daemon is reached.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Send one request; a daemon that cannot be reached is an error that
    /// says so (`is_unreachable` tells it apart).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let target = self.target;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{target}{path}"))
            .header(header::AUTHORIZATION, self.authorization.clone());
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .context("building the request")?;
        let resp = self.client.request(req).await.map_err(|e| {
            let what = if e.is_connect() {
                Unreachable(target).to_string()
            } else {
                format!("asking the idsync daemon at {target}")
            };
            anyhow::Error::new(e).context(what)
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer of the idsync daemon at {target}: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// The daemon could not be reached.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach the idsync daemon at {0} (is `idsync serve` running, with this admin.listen?)"
)]
pub struct Unreachable(pub SocketAddr);

/// Whether `e` says the daemon could not be reached.
pub fn is_unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|h| h.is_connect())
    })
}

/// The token `idsync status` sends: `IDSYNC_TOKEN` (pass its value as
/// `from_env`) if set, else the first-start token in `DATA_DIR/admin.token`.
pub fn client_token(from_env: Option<OsString>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(v) = from_env {
        let v = v
            .into_string()
            .map_err(|_| anyhow!("IDSYNC_TOKEN is not valid UTF-8"))?;
        let v = v.trim();
        if v.is_empty() {
            bail!("IDSYNC_TOKEN is set but empty");
        }
        return Ok(v.to_owned());
    }
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
        Ok(_) => bail!(
            "no token: IDSYNC_TOKEN is not set and {} is empty",
            path.display()
        ),
        Err(e) => bail!(
            "no token: IDSYNC_TOKEN is not set and {} cannot be read ({e}); \
             set IDSYNC_TOKEN to a token with the monitor role",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_token_comes_from_the_environment_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = client_token(Some(" idsync_env \n".into()), dir.path()).unwrap();
        assert_eq!(t, "idsync_env");
        let err = client_token(None, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("IDSYNC_TOKEN") && err.contains(ADMIN_TOKEN_FILE),
            "{err}"
        );
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "idsync_file\n").unwrap();
        assert_eq!(client_token(None, dir.path()).unwrap(), "idsync_file");
        assert!(client_token(Some("".into()), dir.path()).is_err());
    }
}
