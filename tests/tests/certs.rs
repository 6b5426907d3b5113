//! Certificate enrollment end to end: the real binary, its admin API over
//! HTTP (ureq), the CLI, and `openssl` checking every certificate and
//! PKCS#12 it hands out (issue 6).

mod pki;

use std::path::Path;
use std::time::Duration;

use idsync_tests::{free_port, Env};
use pki::*;
use serde_json::json;

#[test]
fn p10_certificates_verify_with_openssl() {
    let pki = Pki::start();
    let dir = pki.dir();

    // EC P-256, PEM in JSON, for the asset (its profile has a policy).
    let c = csr(
        dir,
        "web1",
        "ec:P-256",
        "/CN=web1.example.org",
        Some("DNS:web1.example.org,IP:10.1.2.3"),
    );
    let r = pki.p10(
        OPS,
        "web1.example.org",
        &std::fs::read_to_string(&c).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let v = r.json();
    assert_eq!(v["request"]["status"], "issued");
    assert_eq!(v["request"]["requester"], "ops");
    let cert = &v["certificate"];
    let shown = verify(&pki, "web1", &leaf_and_chain(cert));
    assert!(
        shown.contains("CN=web1.example.org") || shown.contains("CN = web1.example.org"),
        "{shown}"
    );
    assert!(
        shown.contains("O=Nexus") || shown.contains("O = Nexus"),
        "the asset fills O: {shown}"
    );
    assert!(
        shown.contains("DNS:web1.example.org") && shown.contains("IP Address:10.1.2.3"),
        "{shown}"
    );
    assert!(shown.contains("CA:FALSE"), "{shown}");
    assert!(shown.contains("TLS Web Server Authentication"), "{shown}");
    // A profile with a domain policy issues through a name-constrained sub-CA.
    assert!(
        cert["chain"]
            .as_str()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count()
            >= 2
    );
    // 90 days, as the profile says.
    let not_before = time::OffsetDateTime::parse(
        cert["notBefore"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let not_after = time::OffsetDateTime::parse(
        cert["notAfter"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (not_after - not_before).whole_days();
    assert!((89..=91).contains(&days), "{days} days");

    // RSA 2048 as raw DER (application/pkcs10), asset named by query.
    let c = csr(
        dir,
        "rsa",
        "rsa:2048",
        "/CN=www.example.org",
        Some("DNS:www.example.org"),
    );
    let der = openssl(&["req", "-in", c.to_str().unwrap(), "-outform", "DER"]).stdout;
    let r = pki.send(
        "POST",
        Some(OPS),
        "/enroll/p10?asset=web1.example.org",
        "application/pkcs10",
        &der,
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let id = r.json()["certificate"]["id"].as_str().unwrap().to_owned();
    let pem = pki.get(OPS, &format!("/certificates/{id}/pem"));
    assert_eq!(pem.status, 200);
    verify(&pki, "rsa", &String::from_utf8(pem.body).unwrap());

    // A CSR asking for CA:TRUE and an odd extension is issued, as a leaf.
    let c = dir.join("greedy.csr");
    let o = openssl(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-keyout",
        dir.join("greedy.key").to_str().unwrap(),
        "-subj",
        "/CN=api.example.org",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "1.2.3.4=ASN1:UTF8String:please",
        "-addext",
        "subjectAltName=DNS:api.example.org",
        "-out",
        c.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r = pki.p10(
        OPS,
        "web1.example.org",
        &std::fs::read_to_string(&c).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let cert = &r.json()["certificate"];
    let shown = verify(&pki, "greedy", &leaf_and_chain(cert));
    assert!(
        shown.contains("CA:FALSE") && !shown.contains("please"),
        "{shown}"
    );

    // The CLI: the same upload, the certificate written to a file.
    let c = csr(
        dir,
        "cli",
        "ec:P-384",
        "/CN=cli.example.org",
        Some("DNS:cli.example.org"),
    );
    let out = dir.join("cli.pem");
    let o = pki.cli(
        OPS,
        &[
            "enroll",
            "p10",
            "--asset",
            "web1.example.org",
            "--csr",
            c.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    verify(&pki, "cli", &std::fs::read_to_string(&out).unwrap());

    // Certificates are kept with the asset.
    let list = pki.get(OPS, "/assets/web1.example.org/certificates").json();
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
    let o = pki.cli(OPS, &["assets", "certificates", "web1.example.org"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        4,
        "{}",
        text(&o)
    );

    // The CA's key is 0600 in DATA_DIR/ca.
    let mut pki = pki;
    pki.stop();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(pki.env.data_dir().join("ca/ca.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Every step is in the change log: per issuance a request created
    // (approved), a certificate, the request issued.
    let changes = pki.env.changes();
    let of = |kind: &str| changes.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(of("certificate"), 4);
    assert_eq!(of("request"), 8);
}

#[test]
fn p10_refusals_say_why() {
    let pki = Pki::start();
    let dir = pki.dir();
    let pem = |p: &Path| std::fs::read_to_string(p).unwrap();

    let outside = csr(
        dir,
        "outside",
        "ec:P-256",
        "/CN=web1.example.org",
        Some("DNS:evil.com"),
    );
    let r = pki.p10(OPS, "web1.example.org", &pem(&outside));
    assert_eq!(r.status, 422);
    assert!(
        r.error()
            .contains("\"evil.com\" is outside the domain policy of profile \"Server P10\""),
        "{}",
        r.error()
    );
    let ip = csr(
        dir,
        "ip",
        "ec:P-256",
        "/CN=web1.example.org",
        Some("IP:192.168.1.1"),
    );
    assert!(pki
        .p10(OPS, "web1.example.org", &pem(&ip))
        .error()
        .contains("192.168.1.1"));
    let cn = csr(dir, "cn", "ec:P-256", "/CN=www.evil.com", None);
    assert!(pki
        .p10(OPS, "web1.example.org", &pem(&cn))
        .error()
        .contains("www.evil.com"));
    let bad_name = csr(
        dir,
        "badname",
        "ec:P-256",
        "/CN=x",
        Some("DNS:under_score.example.org"),
    );
    let r = pki.p10(OPS, "web1.example.org", &pem(&bad_name));
    assert!(r.error().contains("not a valid DNS name"), "{}", r.error());

    let rsa = csr(dir, "rsa", "rsa:2048", "/CN=strict.example.org", None);
    let r = pki.p10(OPS, "strict.example.org", &pem(&rsa));
    assert_eq!(r.status, 422);
    assert!(r.error().contains("key type rsa-2048 is not allowed by certificate profile \"Strict P10\" (allowed: ecdsa-p256)"), "{}", r.error());
    let small = csr(dir, "small", "rsa:1024", "/CN=strict.example.org", None);
    let r = pki.p10(OPS, "strict.example.org", &pem(&small));
    assert!(r.error().contains("RSA 1024"), "{}", r.error());

    // A broken signature: flip a byte of the signature (the DER's end).
    let good = csr(dir, "good", "ec:P-256", "/CN=strict.example.org", None);
    let mut der = openssl(&["req", "-in", good.to_str().unwrap(), "-outform", "DER"]).stdout;
    let last = der.len() - 3;
    der[last] ^= 0x55;
    let r = pki.send(
        "POST",
        Some(OPS),
        "/enroll/p10?asset=strict.example.org",
        "application/pkcs10",
        &der,
    );
    assert_eq!(r.status, 422);
    assert!(r.error().contains("signature"), "{}", r.error());
    let r = pki.p10(
        OPS,
        "strict.example.org",
        "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n",
    );
    assert_eq!(r.status, 422, "{}", r.error());
    let r = pki.p10(OPS, "strict.example.org", "hello");
    assert_eq!(r.status, 422);
    assert!(r.error().contains("not a PEM or DER"), "{}", r.error());

    // A pending asset (its profile does not exist) and an inactive profile.
    let r = pki.p10(OPS, "later.example.org", &pem(&good));
    assert_eq!(r.status, 409);
    assert!(
        r.error().contains("asset \"later.example.org\" is pending"),
        "{}",
        r.error()
    );
    let r = pki.post(
        OPS,
        "/enroll/p10",
        json!({"profile": "Retired", "csr": pem(&good)}),
    );
    assert_eq!(r.status, 409);
    assert!(
        r.error()
            .contains("certificate profile \"Retired\" is inactive"),
        "{}",
        r.error()
    );
    let r = pki.post(
        OPS,
        "/enroll/p10",
        json!({"profile": "Server P12", "csr": pem(&good)}),
    );
    assert!(
        r.error().contains("enrolls with p12, not p10"),
        "{}",
        r.error()
    );

    // Tokens: none, the wrong role.
    assert_eq!(
        pki.send("POST", None, "/enroll/p10", "application/json", b"{}")
            .status,
        401
    );
    assert_eq!(pki.p10(BOSS, "strict.example.org", &pem(&good)).status, 403);
    assert_eq!(
        pki.put(OPS, "/profiles/New", json!({"protocol": "p10"}))
            .status,
        403
    );
    // Nothing was issued by any of that.
    assert_eq!(
        pki.get(OPS, "/requests").json().as_array().unwrap().len(),
        0
    );
}

#[test]
fn p12_files_open_in_openssl_and_secrets_stay_out_of_the_store() {
    let mut pki = Pki::start();
    let dir = pki.dir().to_path_buf();
    let mut secrets: Vec<Vec<u8>> = vec![PASSWORD.as_bytes().to_vec()];

    for (key, name) in [
        ("ecdsa-p256", "app.example.org"),
        ("rsa-2048", "api.example.org"),
    ] {
        let r = pki.p12(
            OPS,
            json!({
                "asset": "app.example.org",
                "data": {"name": name, "dnsNames": ["app.example.org, api.example.org"]},
                "keyType": key,
                "password": PASSWORD,
            }),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.content_type, "application/x-pkcs12");
        let cert_id = r
            .header("idsync-certificate")
            .expect("certificate id")
            .to_owned();
        let file = dir.join(format!("{key}.p12"));
        std::fs::write(&file, &r.body).unwrap();
        let pass = format!("pass:{PASSWORD}");
        let info = openssl(&[
            "pkcs12",
            "-info",
            "-in",
            file.to_str().unwrap(),
            "-passin",
            &pass,
            "-noout",
        ]);
        assert!(
            info.status.success(),
            "OpenSSL 3 reads it without -legacy: {}",
            text(&info)
        );
        let all = text(&info);
        assert!(
            all.contains("PBES2") && all.contains("AES-256-CBC"),
            "{all}"
        );
        let dump = openssl(&[
            "pkcs12",
            "-in",
            file.to_str().unwrap(),
            "-passin",
            &pass,
            "-nodes",
        ]);
        let dumped = text(&dump);
        assert!(
            dump.status.success() && dumped.contains("PRIVATE KEY"),
            "{dumped}"
        );
        assert!(dumped.contains(name), "{dumped}");
        let wrong = openssl(&[
            "pkcs12",
            "-info",
            "-in",
            file.to_str().unwrap(),
            "-passin",
            "pass:wrong-password",
            "-noout",
        ]);
        assert!(!wrong.status.success());
        // The key, to look for it in the data dir later.
        let key_der = openssl(&[
            "pkcs12",
            "-in",
            file.to_str().unwrap(),
            "-passin",
            &pass,
            "-nocerts",
            "-nodes",
        ]);
        let pem_key = String::from_utf8_lossy(&key_der.stdout).to_string();
        let body: String = pem_key
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN"))
            .skip(1)
            .take(1)
            .collect();
        assert!(body.len() >= 40, "{pem_key}");
        secrets.push(body.into_bytes());
        // The certificate chains to the CA and carries both usages.
        let c = pki.get(OPS, &format!("/certificates/{cert_id}/pem"));
        let shown = verify(&pki, key, &String::from_utf8(c.body).unwrap());
        assert!(shown.contains("TLS Web Client Authentication"), "{shown}");
        assert!(
            shown.contains("DNS:api.example.org"),
            "comma-separated names split: {shown}"
        );
        // Confirm installation (seed 002's last step).
        let r = pki.post(
            OPS,
            &format!("/certificates/{cert_id}/installed"),
            json!({}),
        );
        assert_eq!(r.status, 200);
        assert!(r.json()["installed"].is_string());
    }

    // The CLI: password from a file, the .p12 written 0600, never over
    // an existing file.
    let pw = dir.join("pw.txt");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let out = dir.join("cli.p12");
    let o = pki.cli(
        OPS,
        &[
            "enroll",
            "p12",
            "--asset",
            "app.example.org",
            "--out",
            out.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
            "--key-type",
            "ecdsa-p256",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let o = pki.cli(
        OPS,
        &[
            "enroll",
            "p12",
            "--asset",
            "app.example.org",
            "--out",
            out.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert!(
        !o.status.success() && text(&o).contains("exists"),
        "{}",
        text(&o)
    );
    // Refusals: a short password, a key type the profile does not allow,
    // no password at all.
    let r = pki.p12(
        OPS,
        json!({"asset": "app.example.org", "password": "short"}),
    );
    assert!(r.status == 422 && String::from_utf8_lossy(&r.body).contains("at least 8"));
    let r = pki.p12(
        OPS,
        json!({"asset": "app.example.org", "keyType": "ed25519", "password": PASSWORD}),
    );
    assert!(String::from_utf8_lossy(&r.body).contains("key type ed25519 is not allowed"));
    let r = pki.p12(OPS, json!({"asset": "app.example.org"}));
    assert!(String::from_utf8_lossy(&r.body).contains("needs a password"));

    // Neither the password nor a key is in any file of the data dir, nor in
    // the daemon's log (run at debug level to be thorough).
    let log = pki.stop();
    for (path, bytes) in files_under(&pki.env.data_dir()) {
        for s in &secrets {
            assert!(!contains(&bytes, s), "a secret is in {}", path.display());
        }
    }
    for s in &secrets {
        assert!(!contains(log.as_bytes(), s), "a secret is in the log");
    }
}

#[test]
fn approvals_end_to_end() {
    let mut pki = Pki::start();
    let dir = pki.dir().to_path_buf();

    // P12 on a profile that needs approval: only the request is made.
    let r = pki.p12(
        OPS,
        json!({"asset": "vault.example.org", "password": PASSWORD}),
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let request = r.json()["request"].clone();
    assert_eq!(request["status"], "pending_approval");
    let id = request["id"].as_str().unwrap().to_owned();
    let log = pki.daemon.as_ref().unwrap().log();
    assert!(
        log.contains("waits for approval") && log.contains(&id),
        "{log}"
    );

    // Operators do not approve; nobody approves their own request.
    let r = pki.post(OPS, &format!("/requests/{id}/approve"), json!({}));
    assert_eq!(r.status, 403);
    let r = pki.p12(LEAD, json!({"asset": "vault.example.org"}));
    let own = r.json()["request"]["id"].as_str().unwrap().to_owned();
    let r = pki.post(LEAD, &format!("/requests/{own}/approve"), json!({}));
    assert_eq!(r.status, 403);
    assert!(r.error().contains("may not decide on it"), "{}", r.error());
    // Download before approval is refused.
    let r = pki.post(
        OPS,
        &format!("/requests/{id}/p12"),
        json!({"password": PASSWORD}),
    );
    assert_eq!(r.status, 409, "{}", r.error());

    // Another approver says yes, through the CLI.
    let o = pki.cli(
        BOSS,
        &["requests", "approve", &id, "--comment", "ok for the vault"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = pki.get(BOSS, &format!("/requests/{id}")).json();
    assert_eq!(r["status"], "approved");
    assert_eq!(r["decidedBy"], "boss");
    assert_eq!(r["comment"], "ok for the vault");
    // Only the requester downloads; the key and file are made now.
    let r = pki.post(
        OPS2,
        &format!("/requests/{id}/p12"),
        json!({"password": PASSWORD}),
    );
    assert_eq!(r.status, 403, "{}", r.error());
    let out = dir.join("vault.p12");
    let pw = dir.join("pw");
    std::fs::write(&pw, PASSWORD).unwrap();
    let o = pki.cli(
        OPS,
        &[
            "requests",
            "download",
            &id,
            "--out",
            out.to_str().unwrap(),
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let info = openssl(&[
        "pkcs12",
        "-info",
        "-in",
        out.to_str().unwrap(),
        "-passin",
        &format!("pass:{PASSWORD}"),
        "-noout",
    ]);
    assert!(info.status.success(), "{}", text(&info));
    assert_eq!(
        pki.get(OPS, &format!("/requests/{id}")).json()["status"],
        "issued"
    );
    let again = pki.post(
        OPS,
        &format!("/requests/{id}/p12"),
        json!({"password": PASSWORD}),
    );
    assert_eq!(again.status, 409, "the key is not kept: {}", again.error());

    // P10 with approval: one rejected with a comment, one approved and
    // issued at once.
    let c = csr(
        &dir,
        "gate",
        "ec:P-256",
        "/CN=gate.example.org",
        Some("DNS:gate.example.org"),
    );
    let pem = std::fs::read_to_string(&c).unwrap();
    let first = pki.p10(LEAD, "gate.example.org", &pem).json()["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = pki.p10(OPS, "gate.example.org", &pem).json()["request"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = pki.post(
        BOSS,
        &format!("/requests/{first}/reject"),
        json!({"comment": "not this one"}),
    );
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(r.json()["status"], "rejected");
    assert_eq!(
        pki.post(BOSS, &format!("/requests/{first}/approve"), json!({}))
            .status,
        409
    );
    let r = pki.post(
        LEAD,
        &format!("/requests/{second}/approve"),
        json!({"comment": "fine"}),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let v = r.json();
    assert_eq!(v["request"]["status"], "issued");
    verify(&pki, "gate", &leaf_and_chain(&v["certificate"]));

    // A request whose profile is gone by the time it is approved fails,
    // with the reason.
    let r = pki.put(
        ADMIN,
        "/profiles/Temp",
        json!({"protocol": "p10", "requires_approval": true}),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    let r = pki.post(OPS, "/enroll/p10", json!({"profile": "Temp", "csr": pem}));
    assert_eq!(r.status, 202, "{}", r.error());
    let doomed = r.json()["request"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        pki.send("DELETE", Some(ADMIN), "/profiles/Temp", "", b"")
            .status,
        204
    );
    let r = pki.post(BOSS, &format!("/requests/{doomed}/approve"), json!({}));
    assert_eq!(r.status, 409);
    assert!(r.error().contains("failed"), "{}", r.error());
    let failed = pki.get(BOSS, &format!("/requests/{doomed}")).json();
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["reason"].as_str().unwrap().contains("Temp"),
        "{failed}"
    );

    // "Workplace requests": search by status, asset, profile, requester.
    let ids = |q: &str| -> Vec<String> {
        pki.get(BOSS, &format!("/requests{q}"))
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("?status=rejected"), [first.as_str()]);
    assert_eq!(ids("?status=pending_approval"), [own.as_str()]);
    assert_eq!(
        ids("?asset=gate.example.org"),
        [second.clone(), first.clone()],
        "newest first"
    );
    assert_eq!(ids("?profile=approved%20p12&requester=ops"), [id.as_str()]);
    assert_eq!(ids("").len(), 5);
    assert_eq!(ids("?status=failed"), [doomed.as_str()]);
    let o = pki.cli(OPS, &["requests", "list", "--status", "issued"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        2,
        "{}",
        text(&o)
    );

    // Every transition is in the change log, with its actor.
    pki.stop();
    let changes = pki.env.changes();
    let statuses: Vec<(String, String)> = changes
        .iter()
        .filter(|e| e["kind"] == "request" && e["id"] == id.as_str())
        .map(|e| {
            (
                e["actor"]["name"].as_str().unwrap_or("").to_owned(),
                e["changed"].to_string(),
            )
        })
        .collect();
    assert_eq!(statuses.len(), 3, "created, approved, issued: {statuses:?}");
    assert_eq!(statuses[0].0, "ops");
    assert_eq!(statuses[1].0, "boss");
}

#[test]
fn profiles_and_asset_states() {
    let mut pki = Pki::start();
    // The asset naming a profile that does not exist is pending until an
    // admin creates it.
    let r = pki.put(
        ADMIN,
        "/profiles/Later",
        json!({"protocol": "p10", "domain_policy": {"names": ["*.example.org"]}}),
    );
    assert_eq!(r.status, 201, "{}", r.error());
    assert_eq!(r.json()["name"], "Later");
    let c = csr(
        pki.dir(),
        "later",
        "ec:P-256",
        "/CN=later.example.org",
        None,
    );
    let r = pki.p10(
        OPS,
        "later.example.org",
        &std::fs::read_to_string(&c).unwrap(),
    );
    assert_eq!(r.status, 201, "the asset became active: {}", r.error());
    // The same PUT again changes nothing; a change is 200.
    let r = pki.put(
        ADMIN,
        "/profiles/Later",
        json!({"protocol": "p10", "validity_days": 30}),
    );
    assert_eq!(r.status, 200, "{}", r.error());
    // Profiles of the configuration file are changed there, not here.
    let r = pki.put(ADMIN, "/profiles/Server%20P10", json!({"protocol": "p10"}));
    assert_eq!(r.status, 409);
    assert!(r.error().contains("configuration file"), "{}", r.error());
    // Bad settings are refused with the reason.
    let r = pki.put(
        ADMIN,
        "/profiles/Broken",
        json!({"protocol": "p10", "domain_policy": {"names": ["a b"]}}),
    );
    assert_eq!(r.status, 422);
    assert!(r.error().contains("\"a b\""), "{}", r.error());
    let r = pki.put(
        ADMIN,
        "/profiles/Broken",
        json!({"protocol": "p10", "subject": "CN={nope}"}),
    );
    assert!(r.error().contains("nope"), "{}", r.error());
    let r = pki.put(
        ADMIN,
        "/profiles/Broken",
        json!({"protocol": "p10", "colour": "red"}),
    );
    assert!(
        r.status == 422 && r.error().contains("colour"),
        "{}",
        r.error()
    );

    // Deleting the profile sends the asset back to pending; enrollment
    // stops; assigning an active profile (CLI) makes it active again.
    let r = pki.send("DELETE", Some(ADMIN), "/profiles/Later", "", b"");
    assert_eq!(r.status, 204);
    let r = pki.p10(
        OPS,
        "later.example.org",
        &std::fs::read_to_string(&c).unwrap(),
    );
    assert_eq!(r.status, 409, "{}", r.error());
    let o = pki.cli(
        OPS,
        &["assets", "assign-profile", "later.example.org", "Retired"],
    );
    assert!(
        !o.status.success() && text(&o).contains("inactive"),
        "{}",
        text(&o)
    );
    let o = pki.cli(
        OPS,
        &[
            "assets",
            "assign-profile",
            "later.example.org",
            "Strict P10",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("active"), "{}", text(&o));
    let r = pki.p10(
        OPS,
        "later.example.org",
        &std::fs::read_to_string(&c).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.error());

    // The CLI for profiles: put from a TOML file, list.
    let f = pki.env.file("lab.toml", "name = \"Lab\"\nprotocol = \"p12\"\nrequires_approval = true\nkey_types = [\"ecdsa-p256\"]\n");
    let o = pki.cli(ADMIN, &["profiles", "put", f.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let o = pki.cli(OPS, &["profiles", "list"]);
    let listed = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(listed.contains("Lab\tp12\tactive\tapproval"), "{listed}");

    pki.stop();
    let later = pki.env.show("assets", "later.example.org").unwrap();
    assert_eq!(later["state"], "active");
    assert_eq!(later["certificateProfile"], "Strict P10");
}

#[test]
fn a_ca_key_others_can_read_is_refused() {
    let env = Env::new();
    let dir = env.data_dir().join("ca");
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("ca.key");
    let o = openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        dir.join("ca.crt").to_str().unwrap(),
        "-subj",
        "/CN=Test CA",
        "-days",
        "30",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut d = env.serve(&[(
        "IDSYNC_ADMIN__LISTEN",
        &format!("127.0.0.1:{}", free_port()),
    )]);
    let status = d
        .wait(Duration::from_secs(30))
        .expect("the daemon refuses to start");
    assert!(!status.success());
    let log = d.log();
    assert!(log.contains("ca.key") && log.contains("644"), "{log}");
}
