//! How the engine connects: plain TCP, or TLS (rustls on the ring
//! provider) with the server verified against `store.postgres.ca_file`.

use std::future::Future;
use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, RecyclingMethod};
use tokio_postgres::config::SslMode;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{io_err, EngineError, PostgresOptions};

/// A connection: its client, and the task driving it, which ends when the
/// connection does.
pub(super) type Connection = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

/// How connections are made: plain TCP, or TLS with the server's
/// certificate verified against `store.postgres.ca_file`.
#[derive(Clone)]
pub(super) enum Tls {
    Off,
    Verified(MakeRustlsConnect),
}

impl Tls {
    /// From the options; `config` is told to require TLS when it is on.
    pub(super) fn from_options(
        opts: &PostgresOptions,
        config: &mut tokio_postgres::Config,
    ) -> Result<Self, String> {
        let Some(path) = &opts.ca_file else {
            if config.get_ssl_mode() == SslMode::Require {
                return Err("sslmode=require needs store.postgres.ca_file \
                            (the CA certificate that signed the server's)"
                    .into());
            }
            return Ok(Tls::Off);
        };
        config.ssl_mode(SslMode::Require);
        Ok(Tls::Verified(MakeRustlsConnect::new(client_tls(path)?)))
    }

    /// A pool manager making connections this way.
    pub(super) fn manager(&self, config: tokio_postgres::Config) -> Manager {
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        match self {
            Tls::Off => Manager::from_config(config, NoTls, recycling),
            Tls::Verified(tls) => Manager::from_config(config, tls.clone(), recycling),
        }
    }

    /// One connection made this way, its driver spawned.
    pub(super) async fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<Connection, EngineError> {
        fn drive<F: Future + Send + 'static>(connection: F) -> tokio::task::JoinHandle<()>
        where
            F::Output: Send,
        {
            tokio::spawn(async move {
                let _ = connection.await;
            })
        }
        match self {
            Tls::Off => {
                let (client, connection) = config.connect(NoTls).await.map_err(io_err)?;
                Ok((client, drive(connection)))
            }
            Tls::Verified(tls) => {
                let (client, connection) = config.connect(tls.clone()).await.map_err(io_err)?;
                Ok((client, drive(connection)))
            }
        }
    }
}

impl Tls {
    /// One connection made this way whose notifications (`LISTEN`) are
    /// sent, as their payloads, to `notes`; its driver spawned. `notes`
    /// is dropped when the connection ends.
    pub(super) async fn connect_notified(
        &self,
        config: &tokio_postgres::Config,
        notes: tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<Connection, EngineError> {
        match self {
            Tls::Off => {
                let (client, connection) = config.connect(NoTls).await.map_err(io_err)?;
                Ok((client, drive_notified(connection, notes)))
            }
            Tls::Verified(tls) => {
                let (client, connection) = config.connect(tls.clone()).await.map_err(io_err)?;
                Ok((client, drive_notified(connection, notes)))
            }
        }
    }
}

/// Drive `connection`, handing its notifications to `notes` (awaiting a
/// connection instead drops them).
fn drive_notified<S, T>(
    mut connection: tokio_postgres::Connection<S, T>,
    notes: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::task::JoinHandle<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                if notes.send(n.payload().to_owned()).is_err() {
                    return;
                }
            }
        }
    })
}

/// A rustls client configuration (ring provider) trusting only the CA
/// certificates of `path`.
fn client_tls(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let shown =
        |e: &dyn std::fmt::Display| format!("store.postgres.ca_file {}: {e}", path.display());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| shown(&e))? {
        roots
            .add(cert.map_err(|e| shown(&e))?)
            .map_err(|e| shown(&e))?;
    }
    if roots.is_empty() {
        return Err(shown(&"no certificate in it"));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| shown(&e))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
