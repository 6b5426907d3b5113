//! CRLs of the local CA, checked with `openssl verify -crl_check`.

use idsync_schema::cert::RevocationReason;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::ca::{issuer_id_of_chain, CaBackend, CrlSpec, PublishedCrl, RevokedEntry};

/// Publish the CRL of `issuer` with `revoked` in it, and write it as PEM
/// to `dir/<issuer>.crl.pem` for openssl.
fn publish(ca: &LocalCa, dir: &Path, issuer: &str, revoked: &[&Issued]) -> PublishedCrl {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let entries: Vec<RevokedEntry> = revoked
        .iter()
        .map(|i| RevokedEntry {
            serial: i.serial.clone(),
            at: now,
            reason: RevocationReason::KeyCompromise,
        })
        .collect();
    let crl = ca
        .publish_crl(&CrlSpec {
            issuer,
            entries: &entries,
            this_update: now,
            next_update: now + Duration::days(7),
        })
        .unwrap();
    let pem = crate::ca::pem_block("X509 CRL", &crl.der);
    fs::write(dir.join(format!("{issuer}.crl.pem")), pem).unwrap();
    crl
}

/// `openssl verify -crl_check_all` of `issued` with the CRLs of `issuers`.
fn verify_with_crls(dir: &Path, issued: &Issued, issuers: &[&str]) -> (bool, String) {
    let mut blocks = pem_blocks(&issued.chain);
    let root = blocks.pop().expect("a chain");
    fs::write(dir.join("root.pem"), root).unwrap();
    fs::write(dir.join("leaf.pem"), &issued.pem).unwrap();
    let mut args = vec!["verify", "-crl_check_all", "-CAfile", "root.pem"];
    if !blocks.is_empty() {
        fs::write(dir.join("untrusted.pem"), blocks.concat()).unwrap();
        args.extend_from_slice(&["-untrusted", "untrusted.pem"]);
    }
    let files: Vec<String> = issuers.iter().map(|i| format!("{i}.crl.pem")).collect();
    for f in &files {
        args.extend_from_slice(&["-CRLfile", f]);
    }
    args.push("leaf.pem");
    openssl(dir, &args)
}

#[test]
fn crls_name_what_each_issuer_revoked() {
    let tmp = tempdir();
    let mut cfg = config(tmp.path());
    cfg.crl_url = Some("http://pki.example.org/crl/".into());
    let ca = LocalCa::open(&cfg, tmp.path()).unwrap();
    let csr = parse_csr(&openssl_csr(tmp.path(), "crl", P256, &[])).unwrap();
    let plain = Req::new("plain.example.org", &["plain.example.org"], &[]);
    let by_root = ca.issue_blocking(&csr, &plain.get()).unwrap();
    let other = ca.issue_blocking(&csr, &plain.get()).unwrap();
    let policed =
        Req::new("a.example.org", &["a.example.org"], &[]).policy(&["*.example.org"], &[]);
    let by_sub = ca.issue_blocking(&csr, &policed.get()).unwrap();

    let root_id = issuer_id_of_chain(&by_root.chain).unwrap();
    let sub_id = issuer_id_of_chain(&by_sub.chain).unwrap();
    assert_ne!(root_id, sub_id);
    assert_eq!(ca.issuers().unwrap(), vec![root_id.clone(), sub_id.clone()]);
    // Each certificate names its own issuer's CRL.
    let text = text_of(tmp.path(), &by_root.pem);
    let url = format!("URI:http://pki.example.org/crl/{root_id}.crl");
    assert!(
        text.contains("CRL Distribution Points") && text.contains(&url),
        "{text}"
    );
    let text = text_of(tmp.path(), &by_sub.pem);
    assert!(text.contains(&format!("crl/{sub_id}.crl")), "{text}");

    // Nothing revoked: both verify with CRL checking on.
    let first = publish(&ca, tmp.path(), &root_id, &[]);
    publish(&ca, tmp.path(), &sub_id, &[]);
    for issued in [&by_root, &by_sub] {
        let (ok, text) = verify_with_crls(tmp.path(), issued, &[&root_id, &sub_id]);
        assert!(ok && text.contains("leaf.pem: OK"), "{text}");
    }

    // One revoked: refused; its neighbour and the sub-CA's leaf are not.
    let second = publish(&ca, tmp.path(), &root_id, &[&by_root]);
    assert!(second.number > first.number, "{second:?} after {first:?}");
    let (ok, text) = verify_with_crls(tmp.path(), &by_root, &[&root_id, &sub_id]);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    for issued in [&other, &by_sub] {
        let (ok, text) = verify_with_crls(tmp.path(), issued, &[&root_id, &sub_id]);
        assert!(ok, "{text}");
    }
    let shown = openssl_ok(
        tmp.path(),
        &[
            "crl",
            "-in",
            &format!("{root_id}.crl.pem"),
            "-noout",
            "-text",
        ],
    );
    assert!(shown.contains(&by_root.serial), "{shown}");
    assert!(shown.contains("Key Compromise"), "{shown}");

    // The file is the CRL published, and a reopened CA numbers past it.
    let kept = tmp.path().join(format!("ca/crl/{root_id}.crl"));
    assert_eq!(fs::read(&kept).unwrap(), second.der);
    assert_eq!(mode(&kept), 0o644);
    let reopened = LocalCa::open(&cfg, tmp.path()).unwrap();
    let third = publish(&reopened, tmp.path(), &root_id, &[&by_root]);
    assert!(third.number > second.number, "{third:?} after {second:?}");
    // An id that is no issuer of this CA signs nothing.
    let stranger = CrlSpec {
        issuer: "0123456789abcdef",
        entries: &[],
        this_update: OffsetDateTime::now_utc(),
        next_update: OffsetDateTime::now_utc() + Duration::days(1),
    };
    assert!(ca.publish_crl(&stranger).is_err());
}

#[test]
fn a_crl_url_must_be_absolute_http() {
    let tmp = tempdir();
    for bad in [
        "pki.example.org/crl",
        "ftp://x/crl",
        "http://",
        "http://x/crl?a=b",
        "http://x /crl",
    ] {
        let mut cfg = config(tmp.path());
        cfg.crl_url = Some(bad.into());
        let e = LocalCa::open(&cfg, tmp.path()).unwrap_err();
        assert!(e.to_string().contains("crl_url"), "{bad}: {e}");
    }
}

/// Revoke `issued` in its issuer's CRL: `openssl verify -crl_check` (the
/// leaf's CRL only) refuses it.
pub(super) fn assert_revoked_by_crl(ca: &LocalCa, dir: &Path, issued: &Issued) {
    let issuer = issuer_id_of_chain(&issued.chain).unwrap();
    publish(ca, dir, &issuer, &[issued]);
    let mut blocks = pem_blocks(&issued.chain);
    let root = blocks.pop().expect("a chain");
    fs::write(dir.join("root.pem"), root).unwrap();
    fs::write(dir.join("untrusted.pem"), blocks.concat()).unwrap();
    fs::write(dir.join("leaf.pem"), &issued.pem).unwrap();
    let crl = format!("{issuer}.crl.pem");
    let args = [
        "verify",
        "-crl_check",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "untrusted.pem",
        "-CRLfile",
        &crl,
        "leaf.pem",
    ];
    let (ok, text) = openssl(dir, &args);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
}
