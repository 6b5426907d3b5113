//! Setting a user's password in the directory: the activation page's last
//! step (issue 16), with the Password Modify extended operation (RFC 3062).
//!
//! Why the extended operation and not a modify of `userPassword`: the
//! server hashes the password by its own policy (slapd's
//! `password-hash`, AD-like servers refuse clear text in a modify), and
//! applies its password policy overlay if it has one. The entry is found by
//! the `entryUUID` the connector recorded, so a renamed entry still gets
//! its password. The password is only borrowed: it is neither logged nor
//! put in an error (a refusal quotes the server's result code and text).

use super::conn::OpError;
use super::Inner;
use crate::connector::{ConnectorError, Remote};

impl Inner {
    /// Set the password of the entry recorded as `remote`.
    pub(super) async fn set_password(
        &self,
        remote: &Remote,
        password: &str,
    ) -> Result<(), ConnectorError> {
        let dn = match self.find_uuid(&remote.entry_uuid, &[]).await {
            Ok(Some(entry)) => entry.dn,
            Ok(None) => {
                return Err(ConnectorError::Peer(format!(
                    "no entry with entryUUID {} (last seen at {})",
                    remote.entry_uuid, remote.dn
                )))
            }
            Err(e) => return Err(op_error(e)),
        };
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn
            .password_modify(&dn, password)
            .await
            .map_err(op_error)
    }
}

fn op_error(e: OpError) -> ConnectorError {
    match e {
        OpError::Transient(m) => ConnectorError::Unavailable(m),
        OpError::Refused(m) => ConnectorError::Peer(m),
    }
}
