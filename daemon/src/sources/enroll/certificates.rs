//! Issued certificates: reading them (one, or an asset's), the last step
//! of an enrollment (confirming the installation) and revoking them.

use idsync_schema::cert::{Revocation, RevocationReason};
use idsync_schema::{Certificate, Kind};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{EnrollError, Enrollment};

impl Enrollment {
    /// One certificate.
    pub(crate) fn certificate(&self, id: Uuid) -> Result<Certificate, EnrollError> {
        self.store()
            .object::<Certificate>(Kind::Certificate, id)?
            .ok_or_else(|| EnrollError::NotFound(format!("no certificate {id}")))
    }

    /// The certificates issued for an asset (by name or id), oldest first.
    pub(crate) fn certificates_of(&self, asset: &str) -> Result<Vec<Certificate>, EnrollError> {
        let asset = self.asset(asset)?;
        let mut ids = Vec::new();
        self.store().scan(
            &idsync_store::keys::certificates_of_asset_prefix(asset.id),
            |k, _| {
                ids.extend(idsync_store::keys::trailing_id(k));
                Ok(true)
            },
        )?;
        ids.into_iter().map(|id| self.certificate(id)).collect()
    }

    /// The unrevoked certificates that expire from `from` to `until`,
    /// soonest first, at most `limit`: a walk of the expiry index from
    /// `from`, so its cost is the certificates shown, not those stored.
    pub(crate) fn expiring(
        &self,
        from: time::OffsetDateTime,
        until: time::OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Certificate>, EnrollError> {
        use idsync_store::keys;
        let start = keys::certificate_expiry(from.unix_timestamp() - 1, uuid::Uuid::max());
        let page = self
            .store()
            .scan_page(keys::CERTIFICATES_BY_EXPIRY, Some(&start), limit)?;
        page.iter()
            .filter_map(|(k, _)| keys::expiry_of(k))
            .take_while(|(at, _)| *at <= until.unix_timestamp())
            .map(|(_, id)| self.certificate(id))
            .collect()
    }

    /// The "confirm installation" step of a P12 enrollment (seed 002).
    pub(crate) async fn confirm_installed(
        &self,
        who: &str,
        id: Uuid,
    ) -> Result<Certificate, EnrollError> {
        let mut cert = self.certificate(id)?;
        if cert.installed.is_some() {
            return Ok(cert);
        }
        cert.installed = Some(OffsetDateTime::now_utc());
        let c = cert.clone();
        self.write(who, move |tx| {
            tx.put_certificate(c.clone())?;
            Ok(())
        })
        .await?;
        tracing::info!(target: "idsync::audit", certificate = %id, by = who, "certificate installation confirmed");
        Ok(cert)
    }

    /// Revoke a certificate (final), then publish its issuer's CRL. The
    /// revocation is answered once it is durable; a CRL that could not be
    /// published yet is an error the caller sees, and is published within
    /// a minute by [`Enrollment::upkeep`].
    pub(crate) async fn revoke(
        &self,
        who: &str,
        id: Uuid,
        reason: RevocationReason,
    ) -> Result<Certificate, EnrollError> {
        let revocation = Revocation {
            at: OffsetDateTime::now_utc(),
            reason,
            by: who.to_owned(),
        };
        let cert = self
            .write(who, move |tx| {
                let mut cert = tx
                    .certificate(id)?
                    .ok_or_else(|| EnrollError::NotFound(format!("no certificate {id}")))?;
                if let Some(done) = &cert.revoked {
                    return Err(EnrollError::Conflict(format!(
                        "certificate {id} was revoked already, at {} ({})",
                        done.at, done.reason
                    )));
                }
                cert.revoked = Some(revocation.clone());
                tx.put_certificate(cert.clone())?;
                Ok(cert)
            })
            .await?;
        tracing::info!(
            target: "idsync::audit",
            certificate = %id,
            serial = %cert.serial,
            reason = %reason,
            by = who,
            "certificate revoked"
        );
        self.publish_crls().await.map_err(|e| {
            EnrollError::Internal(format!(
                "certificate {id} is revoked, but its CRL could not be published yet ({e}); it is tried again within a minute"
            ))
        })?;
        Ok(cert)
    }
}
