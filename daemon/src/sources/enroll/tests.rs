//! The enrollment service against a real store and CA: the races the
//! compare-and-set transitions exist for.

use std::sync::Arc;

use idsync_schema::{Certificate, CertificateData, Kind, ProfileSettings, Protocol, RequestStatus};
use uuid::Uuid;

use super::*;
use crate::config::Config;

/// A service over a fresh store with one P12 profile that needs
/// approval, and a runtime to drive it.
fn service(dir: &std::path::Path) -> (Arc<Enrollment>, tokio::runtime::Runtime) {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    let mut p = ProfileSettings::new("Vault", Protocol::P12);
    p.requires_approval = true;
    cfg.profiles = vec![p];
    let rec = crate::app::open(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let svc = rt.block_on(async {
        start(
            cfg.enrollment_settings(),
            &rec,
            &Arc::new(crate::infra::metrics::Metrics::new()),
        )
        .unwrap()
    });
    (svc, rt)
}

fn password() -> Password {
    Password::new("a-long-enough-password".into()).unwrap()
}

/// Two downloads of one approved P12 request racing each other: one
/// file is made, the other is refused, one certificate is stored.
#[test]
fn racing_downloads_make_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, rt) = service(dir.path());
    rt.block_on(async {
        let target = Target {
            asset: None,
            profile: Some("Vault".into()),
        };
        let data = CertificateData {
            name: Some("vault.example.org".into()),
            ..Default::default()
        };
        let made = svc
            .enroll_p12("ops", &target, data, None, None)
            .await
            .unwrap();
        let id = made.request.id;
        assert_eq!(made.request.status, RequestStatus::PendingApproval);
        assert!(matches!(
            svc.approve("ops", id, None).await,
            Err(EnrollError::Forbidden(_))
        ));
        svc.approve("boss", id, None).await.unwrap();
        let (a, b) = tokio::join!(
            svc.download_p12("ops", false, id, password()),
            svc.download_p12("ops", false, id, password())
        );
        let lost = the_loser(a, b);
        assert!(matches!(lost, Err(EnrollError::Conflict(_))), "{lost:?}");
        let stored = svc.request(id).unwrap();
        assert_eq!(stored.status, RequestStatus::Issued);
        assert_eq!(stored.decided_by.as_deref(), Some("boss"));
        let mut certs = 0;
        svc.store()
            .for_each::<Certificate>(Kind::Certificate, |_| {
                certs += 1;
                Ok(true)
            })
            .unwrap();
        assert_eq!(certs, 1);
    });
}

/// A registration of `status` expiring at `expires`, stored directly.
fn stored_registration(
    svc: &Enrollment,
    rt: &tokio::runtime::Runtime,
    status: idsync_schema::RegistrationStatus,
    expires: time::OffsetDateTime,
) -> Uuid {
    let id = Uuid::now_v7();
    let r = idsync_schema::Registration {
        id,
        protocol: Protocol::Scep,
        asset: Uuid::now_v7(),
        profile: "Vault".into(),
        dns_names: vec!["a.example.org".into()],
        expires,
        status,
        requester: "ops".into(),
        decided_by: None,
        comment: None,
        // One challenge names one registration.
        challenge_sha256: Some(registrations::challenge_sha256(&id.to_string())),
        account: None,
        meta: idsync_schema::Meta::new(time::OffsetDateTime::now_utc()),
    };
    rt.block_on(svc.write("ops", move |tx| {
        tx.put_registration(r.clone())?;
        Ok(())
    }))
    .unwrap();
    id
}

/// Registrations past their expiry become `expired` (once), the others
/// and the final ones stay as they are.
#[test]
fn registrations_expire_once() {
    use idsync_schema::RegistrationStatus::*;
    let dir = tempfile::tempdir().unwrap();
    let (svc, rt) = service(dir.path());
    let past = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let future = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let due = stored_registration(&svc, &rt, Active, past);
    let used = stored_registration(&svc, &rt, Used, past);
    let later = stored_registration(&svc, &rt, PendingApproval, future);
    let done = stored_registration(&svc, &rt, Rejected, past);
    assert_eq!(rt.block_on(svc.expire_registrations()).unwrap(), 2);
    assert_eq!(rt.block_on(svc.expire_registrations()).unwrap(), 0);
    let status = |id| svc.registration(id).unwrap().status;
    assert_eq!(status(due), Expired);
    assert_eq!(status(used), Expired);
    assert_eq!(status(later), PendingApproval);
    assert_eq!(status(done), Rejected);
    // Final: not revived by a decision.
    let again = rt.block_on(svc.approve_registration("boss", due, None));
    assert!(matches!(again, Err(EnrollError::Conflict(_))), "{again:?}");
}

/// Of two racing outcomes `a` and `b`, exactly one is a success: the
/// other, returned.
fn the_loser<T: std::fmt::Debug>(
    a: Result<T, EnrollError>,
    b: Result<T, EnrollError>,
) -> Result<T, EnrollError> {
    assert_eq!(
        [&a, &b].iter().filter(|r| r.is_ok()).count(),
        1,
        "{a:?} {b:?}"
    );
    if a.is_err() {
        a
    } else {
        b
    }
}

/// A registration of `status` that expires tomorrow.
fn live_registration(
    svc: &Enrollment,
    rt: &tokio::runtime::Runtime,
    status: idsync_schema::RegistrationStatus,
) -> Uuid {
    let tomorrow = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    stored_registration(svc, rt, status, tomorrow)
}

/// An approval and a rejection racing: one wins, the other is told.
#[test]
fn racing_registration_decisions_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, rt) = service(dir.path());
    let id = live_registration(
        &svc,
        &rt,
        idsync_schema::RegistrationStatus::PendingApproval,
    );
    let (a, b) = rt.block_on(async {
        tokio::join!(
            svc.approve_registration("boss", id, None),
            svc.reject_registration("lead", id, None)
        )
    });
    let lost = the_loser(a, b);
    assert!(matches!(lost, Err(EnrollError::Conflict(_))), "{lost:?}");
}

/// Two requests spending one SCEP challenge in their own commits: the
/// first to commit uses it up, the other is refused and writes nothing.
#[test]
fn one_challenge_is_spent_once() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, rt) = service(dir.path());
    let id = live_registration(&svc, &rt, idsync_schema::RegistrationStatus::Active);
    let r = svc.registration(id).unwrap();
    let head = svc.store().head().unwrap();
    let (a, b) = rt.block_on(async {
        let (r1, r2) = (r.clone(), r.clone());
        tokio::join!(
            svc.write("scep", move |tx| registrations::spend(tx, r1.clone())),
            svc.write("scep", move |tx| registrations::spend(tx, r2.clone()))
        )
    });
    let lost = the_loser(a, b);
    assert!(matches!(lost, Err(EnrollError::Invalid(_))), "{lost:?}");
    assert_eq!(
        svc.registration(id).unwrap().status,
        idsync_schema::RegistrationStatus::Used
    );
    assert_eq!(svc.store().head().unwrap(), head + 1, "one change: used");
}
