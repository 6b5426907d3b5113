//! The mail connector's connections to its SMTP relay: at most
//! `mail.max_connections` kept open between mails, each lettre's SMTP
//! client (`AsyncSmtpConnection`) on a TCP socket with `TCP_NODELAY`.
//!
//! Why not lettre's own pool: it opens its sockets itself, with Nagle's
//! algorithm on, and lettre writes a message's body and its final `.` in
//! two writes; a relay that delays its ACK then holds every mail about
//! 40 ms (measured against the tests' sink: 22 against 204 messages/s on
//! one connection, docs/mail.md). Here the socket is ours: plain and
//! STARTTLS connections (the relay's certificate checked as lettre checks
//! it, STARTTLS required unless `starttls_optional`) start on it. Implicit
//! TLS (port 465) still lets lettre open the socket: it has no way to start
//! on a TLS stream of ours.

use std::sync::Mutex;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::Message;

use super::config::{MailConfig, TlsMode};
use crate::connector::error_chain;

/// Why a mail did not reach the relay. Never carries a password.
#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    /// The relay refused for good (5xx).
    #[error("{0}")]
    Permanent(String),
    /// Down, timed out, 4xx, or no TLS where it is required: try again.
    #[error("{0}")]
    Transient(String),
}

impl RelayError {
    fn of(e: lettre::transport::smtp::Error) -> Self {
        if e.is_permanent() {
            RelayError::Permanent(error_chain(&e))
        } else {
            RelayError::Transient(error_chain(&e))
        }
    }
}

/// How to reach the relay, and the connections kept open.
pub(super) struct Relay {
    host: String,
    port: u16,
    timeout: Duration,
    mode: TlsMode,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<AsyncSmtpConnection>>,
    max_idle: usize,
}

impl Relay {
    /// The relay of `cfg`; `tls` is required for every mode but `none`.
    pub(super) fn new(
        cfg: &MailConfig,
        tls: Option<TlsParameters>,
        credentials: Option<Credentials>,
    ) -> Self {
        Self {
            host: cfg.relay.clone(),
            port: cfg.port,
            timeout: Duration::from_millis(cfg.timeout_ms),
            mode: cfg.tls,
            tls,
            credentials,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            max_idle: cfg.max_connections as usize,
        }
    }

    /// Send `msg` on a kept connection, or a new one; a connection that
    /// sent it is kept for the next mail.
    pub(super) async fn send(&self, msg: &Message) -> Result<(), RelayError> {
        let kept = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match kept {
            Some(c) => c,
            None => self.connect().await?,
        };
        let envelope = msg.envelope().clone();
        let bytes = msg.formatted();
        let sent = tokio::time::timeout(self.timeout, conn.send(&envelope, &bytes)).await;
        match sent {
            Ok(Ok(_)) => {
                self.keep(conn);
                Ok(())
            }
            Ok(Err(e)) => {
                // A refused mail leaves the session usable; a broken one
                // is dropped.
                if !conn.has_broken() && e.is_permanent() {
                    self.keep(conn);
                }
                Err(RelayError::of(e))
            }
            Err(_) => Err(RelayError::Transient(format!(
                "no answer from the relay within {} ms",
                self.timeout.as_millis()
            ))),
        }
    }

    /// A session up to `NOOP` on a new connection (the healthcheck).
    pub(super) async fn check(&self) -> Result<(), RelayError> {
        let mut conn = self.connect().await?;
        let ok = tokio::time::timeout(self.timeout, conn.test_connected())
            .await
            .unwrap_or(false);
        let _ = tokio::time::timeout(self.timeout, conn.quit()).await;
        match ok {
            true => Ok(()),
            false => Err(RelayError::Transient(
                "the relay did not answer NOOP".into(),
            )),
        }
    }

    fn keep(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// A new session: greeting, TLS as configured, login.
    async fn connect(&self) -> Result<AsyncSmtpConnection, RelayError> {
        let mut conn = tokio::time::timeout(self.timeout, self.open())
            .await
            .map_err(|_| {
                RelayError::Transient(format!(
                    "connecting to {}:{} took longer than {} ms",
                    self.host,
                    self.port,
                    self.timeout.as_millis()
                ))
            })??;
        if let Some(c) = &self.credentials {
            tokio::time::timeout(self.timeout, conn.auth(DEFAULT_MECHANISMS, c))
                .await
                .map_err(|_| RelayError::Transient("the login timed out".into()))?
                .map_err(RelayError::of)?;
        }
        Ok(conn)
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, RelayError> {
        let unreachable = |e: std::io::Error| {
            RelayError::Transient(format!("connecting to {}:{}: {e}", self.host, self.port))
        };
        if self.mode == TlsMode::Implicit {
            return AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(self.timeout),
                &self.hello,
                self.tls.clone(),
                None,
            )
            .await
            .map_err(RelayError::of);
        }
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(unreachable)?;
        tcp.set_nodelay(true).map_err(unreachable)?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
            .await
            .map_err(RelayError::of)?;
        let tls = match (self.mode, &self.tls) {
            (TlsMode::None, _) | (_, None) => return Ok(conn),
            (_, Some(tls)) => tls.clone(),
        };
        let offered = conn.can_starttls();
        if !offered && self.mode == TlsMode::StarttlsOptional {
            return Ok(conn);
        }
        // Required and not offered: lettre's own words, never plain text.
        conn.starttls(tls, &self.hello)
            .await
            .map_err(|e| RelayError::Transient(error_chain(&e)))?;
        Ok(conn)
    }
}
