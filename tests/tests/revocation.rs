//! Revocation end to end: the real daemon revokes through the CLI and the
//! admin API, publishes each issuer's CRL over HTTP and in its data dir,
//! and `openssl verify -crl_check_all` refuses what it revoked and only
//! that (issue 15).

mod pki;

use std::path::{Path, PathBuf};

use pki::*;
use serde_json::json;

const CRL_BASE: &str = "http://pki.example.org/crl";

/// The CRL distribution point URL of a PEM certificate (openssl's view).
fn crl_url_of(dir: &Path, name: &str, pem: &str) -> String {
    let file = dir.join(format!("{name}.cdp.pem"));
    std::fs::write(&file, pem).unwrap();
    let shown = text(&openssl(&[
        "x509",
        "-in",
        file.to_str().unwrap(),
        "-noout",
        "-text",
    ]));
    let url = shown
        .lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .unwrap_or_else(|| panic!("no CRL distribution point in {name}: {shown}"));
    assert!(url.starts_with(CRL_BASE), "{url}");
    url.to_owned()
}

/// Fetch the CRL a distribution point names from the admin listener,
/// without a token, as a relying party would; written as PEM for openssl.
fn fetch_crl(pki: &Pki, url: &str, out: &str) -> PathBuf {
    let path = url.strip_prefix(CRL_BASE).unwrap();
    let admin = pki.base.strip_suffix("/api/v1").unwrap();
    let r = pki
        .agent
        .get(&format!("{admin}/crl{path}"))
        .call()
        .expect("the CRL is served without a token");
    assert_eq!(r.content_type(), "application/pkix-crl");
    let mut der = Vec::new();
    std::io::Read::read_to_end(&mut r.into_reader(), &mut der).unwrap();
    let der_file = pki.dir().join(format!("{out}.der"));
    std::fs::write(&der_file, &der).unwrap();
    let pem_file = pki.dir().join(format!("{out}.pem"));
    let o = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        der_file.to_str().unwrap(),
        "-out",
        pem_file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "openssl crl: {}", text(&o));
    pem_file
}

/// `openssl verify -crl_check_all` of a certificate answer with the CRLs
/// its chain names, fetched now.
fn verify_with_crls(pki: &Pki, name: &str, cert: &serde_json::Value) -> (bool, String) {
    let dir = pki.dir();
    let pem = leaf_and_chain(cert);
    let blocks: Vec<&str> = pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
    let root = pki.get(OPS, "/ca");
    let root_file = dir.join("root.pem");
    std::fs::write(&root_file, &root.body).unwrap();
    let leaf = dir.join(format!("{name}.leaf.pem"));
    std::fs::write(&leaf, blocks[0]).unwrap();
    let untrusted = dir.join(format!("{name}.untrusted.pem"));
    std::fs::write(&untrusted, blocks[1..].concat()).unwrap();
    let mut args: Vec<String> = vec![
        "verify".into(),
        "-crl_check_all".into(),
        "-CAfile".into(),
        root_file.display().to_string(),
        "-untrusted".into(),
        untrusted.display().to_string(),
    ];
    // The leaf's and every CA's below the root: each names its issuer's.
    for (i, block) in blocks[..blocks.len() - 1].iter().enumerate() {
        let url = crl_url_of(dir, &format!("{name}{i}"), block);
        let crl = fetch_crl(pki, &url, &format!("{name}{i}.crl"));
        args.extend(["-CRLfile".into(), crl.display().to_string()]);
    }
    args.push(leaf.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = openssl(&refs);
    (o.status.success(), text(&o))
}

fn enroll(pki: &Pki, name: &str, asset: &str, san: &str) -> serde_json::Value {
    let c = csr(
        pki.dir(),
        name,
        "ec:P-256",
        &format!("/CN={asset}"),
        Some(san),
    );
    let r = pki.p10(OPS, asset, &std::fs::read_to_string(&c).unwrap());
    assert_eq!(r.status, 201, "{}", r.error());
    r.json()["certificate"].clone()
}

#[test]
fn revoked_certificates_fail_openssl_crl_checks() {
    let mut pki = Pki::start_with(&format!("[ca]\ncrl_url = \"{CRL_BASE}\"\n"));
    // Through a policy sub-CA, and straight from the CA.
    let web = enroll(&pki, "web1", "web1.example.org", "DNS:web1.example.org");
    let www = enroll(&pki, "www", "web1.example.org", "DNS:www.example.org");
    let strict = enroll(
        &pki,
        "strict",
        "strict.example.org",
        "DNS:strict.example.org",
    );
    for (name, cert) in [("web", &web), ("www", &www), ("strict", &strict)] {
        let (ok, out) = verify_with_crls(&pki, name, cert);
        assert!(ok, "{name} before any revocation: {out}");
    }

    // Refusals: the reason is one RFC 5280 names, the certificate exists,
    // the caller may revoke.
    let id = web["id"].as_str().unwrap();
    let revoke = format!("/certificates/{id}/revoke");
    let r = pki.post(OPS, &revoke, json!({"reason": "certificate-hold"}));
    assert_eq!(r.status, 422, "{}", r.error());
    assert!(r.error().contains("key-compromise"), "{}", r.error());
    let r = pki.post(BOSS, &revoke, json!({}));
    assert_eq!(r.status, 403, "an approver may not revoke");
    let r = pki.send("POST", None, &revoke, "application/json", b"{}");
    assert_eq!(r.status, 401);
    let r = pki.post(
        OPS,
        "/certificates/00000000-0000-0000-0000-000000000000/revoke",
        json!({}),
    );
    assert_eq!(r.status, 404, "{}", r.error());
    assert!(pki.get(OPS, &format!("/certificates/{id}")).json()["revoked"].is_null());

    // Revoked with the CLI: openssl refuses it; the others still verify.
    let o = pki.cli(
        OPS,
        &["certificates", "revoke", id, "--reason", "key-compromise"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (ok, out) = verify_with_crls(&pki, "web", &web);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    for (name, cert) in [("www", &www), ("strict", &strict)] {
        let (ok, out) = verify_with_crls(&pki, name, cert);
        assert!(ok, "{name} after web1's revocation: {out}");
    }
    let record = pki.get(OPS, &format!("/certificates/{id}")).json();
    assert_eq!(record["revoked"]["reason"], "key-compromise", "{record}");
    assert_eq!(record["revoked"]["by"], "ops", "{record}");
    let crl_pem = pki.dir().join("web0.crl.pem");
    let shown = text(&openssl(&[
        "crl",
        "-in",
        crl_pem.to_str().unwrap(),
        "-noout",
        "-text",
    ]));
    let serial = web["serial"].as_str().unwrap();
    assert!(
        shown.contains(serial) && shown.contains("Key Compromise"),
        "{shown}"
    );

    // Final: a second revocation is a conflict and changes nothing.
    let r = pki.post(OPS, &revoke, json!({"reason": "superseded"}));
    assert_eq!(r.status, 409, "{}", r.error());
    let again = pki.get(OPS, &format!("/certificates/{id}")).json();
    assert_eq!(again["revoked"], record["revoked"]);

    // The API too, for a root-issued certificate.
    let sid = strict["id"].as_str().unwrap();
    let r = pki.post(
        OPS,
        &format!("/certificates/{sid}/revoke"),
        json!({"reason": "superseded"}),
    );
    assert_eq!(r.status, 200, "{}", r.error());
    let (ok, out) = verify_with_crls(&pki, "strict", &strict);
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    // The CRL served is the one kept in the data dir, and a restarted
    // daemon publishes a higher-numbered one that still lists both.
    let url = crl_url_of(pki.dir(), "web-again", web["pem"].as_str().unwrap());
    let file = url.rsplit('/').next().unwrap();
    let kept = pki.env.data_dir().join("ca/crl").join(file);
    fetch_crl(&pki, &url, "web-now.crl");
    let served = std::fs::read(pki.dir().join("web-now.crl.der")).unwrap();
    assert_eq!(std::fs::read(&kept).unwrap(), served);
    let number = |pem: &Path| {
        let t = text(&openssl(&[
            "crl",
            "-in",
            pem.to_str().unwrap(),
            "-noout",
            "-crlnumber",
        ]));
        let hex = t
            .trim()
            .strip_prefix("crlNumber=0x")
            .unwrap_or_else(|| panic!("{t}"));
        u64::from_str_radix(hex, 16).unwrap()
    };
    let before = number(&pki.dir().join("web-now.crl.pem"));
    pki.stop();
    let events: Vec<_> = pki
        .env
        .changes()
        .into_iter()
        .filter(|e| e["kind"] == "certificate" && e["id"] == id)
        .collect();
    assert_eq!(events.len(), 2, "issued, then revoked: {events:?}");
    assert_eq!(events[1]["actor"]["name"], "ops", "{events:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let pki = pki.restart();
    // At once, the CRLs kept from before the restart are served; the
    // daemon then signs new ones.
    let (ok, out) = verify_with_crls(&pki, "web", &web);
    assert!(
        !ok && out.contains("certificate revoked"),
        "after a restart: {out}"
    );
    idsync_tests::wait_until(
        "a CRL signed after the restart",
        std::time::Duration::from_secs(30),
        || {
            fetch_crl(&pki, &url, "web-restarted.crl");
            number(&pki.dir().join("web-restarted.crl.pem")) > before
        },
    );
    let (ok, out) = verify_with_crls(&pki, "web", &web);
    assert!(!ok && out.contains("certificate revoked"), "{out}");
}
