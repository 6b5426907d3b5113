//! The CA checked with the real `openssl` command.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use idsync_schema::cert::{DomainPolicy, KeyType, Usage};

use super::*;

/// Run openssl in `dir`: whether it succeeded, and stdout + stderr.
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, text) = openssl(dir, args);
    assert!(ok, "openssl {args:?} failed:\n{text}");
    text
}

/// A CSR made by `openssl req` with `newkey` (`["-newkey", "rsa:2048"]`)
/// and `-addext` values.
fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], addext: &[&str]) -> Vec<u8> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        "/CN=requested/O=Requester",
        "-out",
        &csr,
    ]);
    for ext in addext {
        args.push("-addext");
        args.push(ext);
    }
    openssl_ok(dir, &args);
    fs::read(dir.join(csr)).unwrap()
}

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
const P384: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"];
const RSA2048: &[&str] = &["-newkey", "rsa:2048"];
const ED25519: &[&str] = &["-newkey", "ed25519"];
const SAN: &str = "subjectAltName=DNS:a.example.org,IP:10.0.0.1";

/// The owned data of an IssueRequest.
struct Req {
    subject: Vec<(String, String)>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    usages: Vec<Usage>,
    policy: DomainPolicy,
    validity_days: u32,
}

impl Req {
    fn new(cn: &str, dns: &[&str], ips: &[&str]) -> Req {
        Req {
            subject: vec![
                ("CN".into(), cn.into()),
                ("O".into(), "Nexus".into()),
                ("C".into(), "SE".into()),
            ],
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            usages: vec![Usage::ServerAuth, Usage::ClientAuth],
            policy: DomainPolicy::default(),
            validity_days: 30,
        }
    }

    fn policy(mut self, names: &[&str], ranges: &[&str]) -> Req {
        self.policy = DomainPolicy {
            names: names.iter().map(|s| s.to_string()).collect(),
            ip_ranges: ranges.iter().map(|s| s.to_string()).collect(),
        };
        self
    }

    fn get(&self) -> IssueRequest<'_> {
        IssueRequest {
            subject: &self.subject,
            dns_names: &self.dns,
            ip_addresses: &self.ips,
            validity_days: self.validity_days,
            usages: &self.usages,
            policy: &self.policy,
            profile: "Server",
        }
    }
}

fn config(dir: &Path) -> LocalCaConfig {
    LocalCaConfig {
        dir: Some(dir.join("ca")),
        ..LocalCaConfig::default()
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The PEM blocks of a chain, one string each.
fn pem_blocks(text: &str) -> Vec<String> {
    pem::parse_many(text)
        .unwrap()
        .iter()
        .map(|p| {
            pem::encode_config(
                p,
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            )
        })
        .collect()
}

/// `openssl verify` of `issued` against the last certificate of its chain
/// (the root), the others as untrusted intermediates.
fn verify(dir: &Path, issued: &Issued) -> (bool, String) {
    let mut blocks = pem_blocks(&issued.chain);
    let root = blocks.pop().expect("a chain");
    fs::write(dir.join("root.pem"), root).unwrap();
    fs::write(dir.join("leaf.pem"), &issued.pem).unwrap();
    let mut args = vec!["verify", "-CAfile", "root.pem"];
    if !blocks.is_empty() {
        fs::write(dir.join("untrusted.pem"), blocks.concat()).unwrap();
        args.extend_from_slice(&["-untrusted", "untrusted.pem"]);
    }
    args.push("leaf.pem");
    openssl(dir, &args)
}

fn assert_verifies(dir: &Path, issued: &Issued) {
    let (ok, text) = verify(dir, issued);
    assert!(
        ok && text.contains("leaf.pem: OK"),
        "openssl verify:\n{text}"
    );
}

fn text_of(dir: &Path, pem: &str) -> String {
    fs::write(dir.join("show.pem"), pem).unwrap();
    openssl_ok(
        dir,
        &["x509", "-in", "show.pem", "-noout", "-text", "-serial"],
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn ca_create_and_reopen() {
    let tmp = tempdir();
    let cfg = config(tmp.path());
    let ca = LocalCa::open(&cfg, Path::new("/nonexistent")).unwrap();
    let dir = tmp.path().join("ca");
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.crt")), 0o644);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(ca.key_type(), KeyType::EcdsaP256);
    let first = fs::read(dir.join("ca.crt")).unwrap();
    let again = LocalCa::open(&cfg, Path::new("/nonexistent")).unwrap();
    assert_eq!(
        fs::read(dir.join("ca.crt")).unwrap(),
        first,
        "reopening rewrote the CA"
    );
    assert_eq!(again.certificate_pem(), ca.certificate_pem());
    assert_eq!(again.chain_pem(), ca.chain_pem());
    let text = text_of(tmp.path(), &ca.certificate_pem());
    assert!(text.contains("CA:TRUE, pathlen:1"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("Subject: CN = idsync local CA"), "{text}");
    // The default dir is used when none is set.
    let default_cfg = LocalCaConfig::default();
    let other = LocalCa::open(&default_cfg, &tmp.path().join("data/ca")).unwrap();
    assert!(tmp.path().join("data/ca/ca.key").exists());
    assert_ne!(other.certificate_pem(), ca.certificate_pem());
}

#[test]
fn ca_key_readable_by_others_is_refused() {
    let tmp = tempdir();
    let cfg = config(tmp.path());
    LocalCa::open(&cfg, tmp.path()).unwrap();
    let key = tmp.path().join("ca/ca.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalCa::open(&cfg, tmp.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, CaError::KeyPermissions { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(
        msg.contains(&key.display().to_string()) && msg.contains("0644"),
        "{msg}"
    );
    assert!(msg.contains("chmod 600"), "{msg}");
}

#[test]
fn ca_key_not_matching_its_certificate_is_refused() {
    let tmp = tempdir();
    let a = LocalCaConfig {
        dir: Some(tmp.path().join("a")),
        ..LocalCaConfig::default()
    };
    let b = LocalCaConfig {
        dir: Some(tmp.path().join("b")),
        ..LocalCaConfig::default()
    };
    LocalCa::open(&a, tmp.path()).unwrap();
    LocalCa::open(&b, tmp.path()).unwrap();
    let mixed = LocalCaConfig {
        dir: Some(tmp.path().join("c")),
        key_file: Some(tmp.path().join("a/ca.key")),
        cert_file: Some(tmp.path().join("b/ca.crt")),
        ..LocalCaConfig::default()
    };
    let err = LocalCa::open(&mixed, tmp.path()).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("a/ca.key"), "{err}");
    // Half a configuration is refused too.
    let half = LocalCaConfig {
        key_file: mixed.key_file.clone(),
        ..LocalCaConfig::default()
    };
    assert!(matches!(
        LocalCa::open(&half, tmp.path()),
        Err(CaError::Config(_))
    ));
}

#[test]
fn ca_config_deserializes_with_defaults() {
    let cfg: LocalCaConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, LocalCaConfig::default());
    assert!(cfg.name_constraints);
    assert_eq!(cfg.validity_days, 3650);
    let cfg: LocalCaConfig = serde_json::from_str(r#"{"key_type":"rsa-3072"}"#).unwrap();
    assert_eq!(cfg.key_type, KeyType::Rsa3072);
    assert!(serde_json::from_str::<LocalCaConfig>(r#"{"nope":1}"#).is_err());
}

#[test]
fn ca_p10_ec_and_rsa_issue_and_verify() {
    let tmp = tempdir();
    let ca = LocalCa::open(&config(tmp.path()), tmp.path()).unwrap();
    for (name, newkey, kind) in [
        ("ec", P256, KeyType::EcdsaP256),
        ("rsa", RSA2048, KeyType::Rsa2048),
    ] {
        let pem = openssl_csr(tmp.path(), name, newkey, &[SAN]);
        let csr = parse_csr(&pem).unwrap();
        assert_eq!(csr.key_type, kind);
        assert_eq!(csr.dns_names, ["a.example.org"]);
        assert_eq!(csr.ip_addresses, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert!(csr.subject.contains("CN=requested"), "{}", csr.subject);
        let req = Req::new(
            "web1.example.org",
            &["a.example.org", "b.example.org"],
            &["10.0.0.1"],
        );
        let issued = ca.issue_blocking(&csr, &req.get()).unwrap();
        assert_eq!(
            issued.chain,
            ca.chain_pem(),
            "no policy: issued by the root"
        );
        assert_verifies(tmp.path(), &issued);
        let text = text_of(tmp.path(), &issued.pem);
        assert!(text.contains("CA:FALSE"), "{text}");
        assert!(
            text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
            "{text}"
        );
        assert!(
            text.contains("DNS:a.example.org, DNS:b.example.org, IP Address:10.0.0.1"),
            "{text}"
        );
        assert!(
            text.contains("Subject: CN = web1.example.org, O = Nexus, C = SE"),
            "{text}"
        );
        assert!(
            !text.contains("requested"),
            "the CSR's subject leaked: {text}"
        );
        assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
        assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
        if kind.is_rsa() {
            assert!(
                text.contains("Digital Signature, Key Encipherment"),
                "{text}"
            );
        } else {
            assert!(text.contains("Digital Signature\n"), "{text}");
        }
        let serial_line = text
            .lines()
            .find_map(|l| l.strip_prefix("serial="))
            .unwrap();
        assert_eq!(serial_line, issued.serial);
        assert!(issued.serial.len() * 4 >= 64, "serial {}", issued.serial);
        assert_eq!(issued.subject, "CN=web1.example.org, O=Nexus, C=SE");
        let days = (issued.not_after - issued.not_before).whole_days();
        assert_eq!(days, 30, "5 minutes of backdating do not make a day");
        assert!(issued.not_before < time::OffsetDateTime::now_utc() - time::Duration::minutes(4));
    }
}

#[test]
fn ca_csr_asking_for_ca_and_odd_extensions_still_issues_a_leaf() {
    let tmp = tempdir();
    let ca = LocalCa::open(&config(tmp.path()), tmp.path()).unwrap();
    let pem = openssl_csr(
        tmp.path(),
        "greedy",
        P256,
        &[
            "basicConstraints=critical,CA:TRUE",
            "1.2.3.4=ASN1:UTF8String:x",
            "nsComment=please",
            "keyUsage=critical,keyCertSign",
        ],
    );
    let csr = parse_csr(&pem).unwrap();
    let req = Req::new("leaf.example.org", &["leaf.example.org"], &[]);
    let issued = ca.issue_blocking(&csr, &req.get()).unwrap();
    assert_verifies(tmp.path(), &issued);
    let text = text_of(tmp.path(), &issued.pem);
    assert!(
        text.contains("CA:FALSE") && !text.contains("CA:TRUE"),
        "{text}"
    );
    assert!(
        !text.contains("1.2.3.4") && !text.contains("please"),
        "{text}"
    );
    assert!(!text.contains("Certificate Sign"), "{text}");
}

#[test]
fn ca_bad_csrs_are_refused_with_what_is_wrong() {
    let tmp = tempdir();
    // A flipped byte in the signature of a DER CSR.
    openssl_csr(tmp.path(), "good", P256, &[SAN]);
    openssl_ok(
        tmp.path(),
        &[
            "req", "-in", "good.csr", "-outform", "DER", "-out", "good.der",
        ],
    );
    let mut der = fs::read(tmp.path().join("good.der")).unwrap();
    assert!(parse_csr(&der).is_ok(), "the DER form parses");
    let last = der.len() - 3;
    der[last] ^= 0x55;
    assert!(
        matches!(parse_csr(&der), Err(CaError::BadSignature)),
        "{:?}",
        parse_csr(&der)
    );
    // Garbage.
    for garbage in [
        &b"hello world"[..],
        b"",
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!!\n-----END CERTIFICATE REQUEST-----\n",
        b"\x30\x03\x02\x01\x00",
    ] {
        match parse_csr(garbage) {
            Err(CaError::BadCsr(msg)) => {
                assert!(
                    msg.starts_with("not a PEM or DER certificate request: "),
                    "{msg}"
                )
            }
            other => panic!("{garbage:?}: {other:?}"),
        }
    }
    // A certificate is not a request.
    let ca = LocalCa::open(&config(tmp.path()), tmp.path()).unwrap();
    let err = parse_csr(ca.certificate_pem().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("\"CERTIFICATE\""), "{err}");
    // Keys idsync does not issue for.
    let small = openssl_csr(tmp.path(), "small", &["-newkey", "rsa:1024"], &[]);
    match parse_csr(&small) {
        Err(CaError::UnsupportedKey(what)) => assert_eq!(what, "RSA 1024"),
        other => panic!("{other:?}"),
    }
    let k1 = openssl_csr(
        tmp.path(),
        "k1",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
        &[],
    );
    let err = parse_csr(&k1).unwrap_err();
    assert!(
        matches!(&err, CaError::UnsupportedKey(w) if w == "EC secp256k1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("EC secp256k1"), "{err}");
    // NEW CERTIFICATE REQUEST is accepted.
    let good = fs::read_to_string(tmp.path().join("good.csr")).unwrap();
    let renamed = good.replace("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST");
    assert_eq!(
        parse_csr(renamed.as_bytes()).unwrap().key_type,
        KeyType::EcdsaP256
    );
}

#[test]
fn ca_name_constraints_catch_a_name_outside_the_policy() {
    let tmp = tempdir();
    let cfg = config(tmp.path());
    let ca = LocalCa::open(&cfg, tmp.path()).unwrap();
    let csr = parse_csr(&openssl_csr(tmp.path(), "nc", P256, &[])).unwrap();
    let good = Req::new("a.example.org", &["a.example.org"], &[]).policy(&["*.example.org"], &[]);
    let issued = ca.issue_blocking(&csr, &good.get()).unwrap();
    assert_verifies(tmp.path(), &issued);
    let chain = pem_blocks(&issued.chain);
    assert_eq!(chain.len(), 2, "sub-CA then root");
    assert_eq!(chain[1], ca.certificate_pem());
    let sub_text = text_of(tmp.path(), &chain[0]);
    assert!(sub_text.contains("CA:TRUE, pathlen:0"), "{sub_text}");
    assert!(
        sub_text.contains("X509v3 Name Constraints: critical"),
        "{sub_text}"
    );
    assert!(sub_text.contains("DNS:example.org"), "{sub_text}");
    // Persisted, key 0600, and reused after a restart.
    let subs: Vec<PathBuf> = fs::read_dir(tmp.path().join("ca/sub"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(subs.len(), 2, "{subs:?}");
    let key = subs
        .iter()
        .find(|p| p.extension().unwrap() == "key")
        .unwrap();
    assert_eq!(mode(key), 0o600);
    assert_eq!(key.file_stem().unwrap().len(), 64, "sha256 hex");
    let reopened = LocalCa::open(&cfg, tmp.path()).unwrap();
    let again = reopened.issue_blocking(&csr, &good.get()).unwrap();
    assert_eq!(again.chain, issued.chain, "the sub-CA is reused");
    // The daemon's check, repeated by the CA.
    let evil = Req::new("evil.com", &["evil.com"], &[]).policy(&["*.example.org"], &[]);
    assert!(matches!(
        ca.issue_blocking(&csr, &evil.get()),
        Err(CaError::OutsidePolicy(_))
    ));
    // Past that check, the name constraints refuse it.
    let crafted = ca.issue_unchecked(&csr, &evil.get()).unwrap();
    assert_eq!(crafted.chain, issued.chain, "same sub-CA");
    let (ok, text) = verify(tmp.path(), &crafted);
    assert!(
        !ok && text.contains("permitted subtree violation"),
        "{text}"
    );
    // No IP range in the policy: IP addresses are excluded.
    let ip = Req::new("a.example.org", &["a.example.org"], &["10.0.0.1"])
        .policy(&["*.example.org"], &[]);
    let crafted = ca.issue_unchecked(&csr, &ip.get()).unwrap();
    let (ok, text) = verify(tmp.path(), &crafted);
    assert!(!ok && text.contains("excluded subtree violation"), "{text}");
    // IP ranges: inside verifies, outside does not.
    let ranged = |ip: &str| {
        Req::new("h.corp.example.org", &["h.corp.example.org"], &[ip])
            .policy(&["*.corp.example.org"], &["10.1.0.0/16", "2001:db8::/32"])
    };
    let inside = ca.issue_blocking(&csr, &ranged("10.1.2.3").get()).unwrap();
    assert_ne!(inside.chain, issued.chain, "another policy, another sub-CA");
    assert_verifies(tmp.path(), &inside);
    assert_verifies(
        tmp.path(),
        &ca.issue_blocking(&csr, &ranged("2001:db8::7").get())
            .unwrap(),
    );
    let outside = ca.issue_unchecked(&csr, &ranged("10.2.0.1").get()).unwrap();
    let (ok, text) = verify(tmp.path(), &outside);
    assert!(
        !ok && text.contains("permitted subtree violation"),
        "{text}"
    );
    // With name_constraints off, the root issues.
    let off = LocalCa::open(
        &LocalCaConfig {
            name_constraints: false,
            ..cfg
        },
        tmp.path(),
    )
    .unwrap();
    assert_eq!(
        off.issue_blocking(&csr, &good.get()).unwrap().chain,
        off.chain_pem()
    );
}

#[test]
fn ca_p12_ec_and_rsa_open_in_openssl_without_legacy() {
    let tmp = tempdir();
    let ca = LocalCa::open(&config(tmp.path()), tmp.path()).unwrap();
    for (name, kind) in [("ec", KeyType::EcdsaP256), ("rsa", KeyType::Rsa2048)] {
        let key = generate_key(kind).unwrap();
        assert_eq!(key.key_type(), kind);
        assert!(!format!("{key:?}").contains("PRIVATE"), "{key:?}");
        let req = Req::new(
            &format!("{name}.p12.example.org"),
            &[&format!("{name}.p12.example.org")],
            &[],
        )
        .policy(&["*.example.org"], &[]);
        let csr = key.csr(&req.subject).unwrap();
        assert_eq!(csr.key_type, kind);
        // The CSR is a real one.
        assert_eq!(parse_csr(&csr.der).unwrap().public_key, csr.public_key);
        let issued = ca.issue_blocking(&csr, &req.get()).unwrap();
        assert_verifies(tmp.path(), &issued);
        let p12 = build_p12(&key, &issued, "s3cret pass", "my alias").unwrap();
        let file = format!("{name}.p12");
        fs::write(tmp.path().join(&file), &p12).unwrap();
        let info = openssl_ok(
            tmp.path(),
            &[
                "pkcs12",
                "-info",
                "-in",
                &file,
                "-passin",
                "pass:s3cret pass",
                "-noout",
            ],
        );
        assert!(info.contains("MAC: sha256, Iteration 2048"), "{info}");
        assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
        let dump = openssl_ok(
            tmp.path(),
            &[
                "pkcs12",
                "-in",
                &file,
                "-passin",
                "pass:s3cret pass",
                "-nodes",
            ],
        );
        assert!(dump.contains("PRIVATE KEY"), "{dump}");
        assert!(
            dump.contains(&format!("CN = {name}.p12.example.org")),
            "{dump}"
        );
        assert!(dump.contains("friendlyName: my alias"), "{dump}");
        assert_eq!(
            dump.matches("BEGIN CERTIFICATE").count(),
            3,
            "leaf, sub-CA, root: {dump}"
        );
        let (ok, text) = openssl(
            tmp.path(),
            &[
                "pkcs12",
                "-info",
                "-in",
                &file,
                "-passin",
                "pass:wrong",
                "-noout",
            ],
        );
        assert!(!ok, "a wrong password opened it: {text}");
        // Another key's certificate is refused.
        let other = generate_key(KeyType::EcdsaP256).unwrap();
        assert!(build_p12(&other, &issued, "x", "a").is_err());
        assert!(build_p12(&key, &issued, "", "a").is_err());
        // A lower iteration count, for long random passwords.
        let fast = build_p12_with_iterations(&key, &issued, "pw", "a", 100).unwrap();
        fs::write(tmp.path().join("fast.p12"), fast).unwrap();
        let info = openssl_ok(
            tmp.path(),
            &[
                "pkcs12", "-info", "-in", "fast.p12", "-passin", "pass:pw", "-noout",
            ],
        );
        assert!(info.contains("Iteration 100"), "{info}");
    }
}

#[test]
fn ca_ed25519_and_p384_issue_and_verify() {
    let tmp = tempdir();
    let ca = LocalCa::open(&config(tmp.path()), tmp.path()).unwrap();
    for (name, newkey, kind) in [
        ("ed", ED25519, KeyType::Ed25519),
        ("p384", P384, KeyType::EcdsaP384),
    ] {
        let csr = parse_csr(&openssl_csr(tmp.path(), name, newkey, &[SAN])).unwrap();
        assert_eq!(csr.key_type, kind);
        let req = Req::new("a.example.org", &["a.example.org"], &[]);
        assert_verifies(tmp.path(), &ca.issue_blocking(&csr, &req.get()).unwrap());
    }
    // CAs of other key types.
    for kind in [KeyType::EcdsaP384, KeyType::Ed25519, KeyType::Rsa2048] {
        let dir = tmp.path().join(kind.as_str());
        let cfg = LocalCaConfig {
            dir: Some(dir.clone()),
            key_type: kind,
            ..LocalCaConfig::default()
        };
        let ca = LocalCa::open(&cfg, tmp.path()).unwrap();
        assert_eq!(ca.key_type(), kind);
        let reopened = LocalCa::open(&cfg, tmp.path()).unwrap();
        assert_eq!(reopened.certificate_pem(), ca.certificate_pem());
        let csr = parse_csr(&openssl_csr(tmp.path(), "leaf", P256, &[])).unwrap();
        let req =
            Req::new("a.example.org", &["a.example.org"], &[]).policy(&["*.example.org"], &[]);
        assert_verifies(tmp.path(), &ca.issue_blocking(&csr, &req.get()).unwrap());
        let plain = Req::new("a.example.org", &["a.example.org"], &[]);
        assert_verifies(
            tmp.path(),
            &reopened.issue_blocking(&csr, &plain.get()).unwrap(),
        );
    }
}

#[test]
fn ca_loaded_intermediate_issues_with_its_chain() {
    let tmp = tempdir();
    let d = tmp.path();
    openssl_ok(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "oproot.crt",
            "-days",
            "30",
            "-subj",
            "/CN=Operator Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl_csr(d, "int", RSA2048, &[]);
    fs::write(d.join("int.ext"), "basicConstraints=critical,CA:TRUE,pathlen:1\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n").unwrap();
    openssl_ok(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "int.csr",
            "-CA",
            "oproot.crt",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-days",
            "20",
            "-extfile",
            "int.ext",
            "-out",
            "int.crt",
        ],
    );
    // openssl writes its keys 0600 already; make sure.
    fs::set_permissions(d.join("int.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = LocalCaConfig {
        dir: Some(d.join("state")),
        key_file: Some(d.join("int.key")),
        cert_file: Some(d.join("int.crt")),
        chain_file: Some(d.join("oproot.crt")),
        ..LocalCaConfig::default()
    };
    let ca = LocalCa::open(&cfg, d).unwrap();
    assert_eq!(ca.key_type(), KeyType::Rsa2048);
    assert_eq!(pem_blocks(&ca.chain_pem()).len(), 2);
    let csr = parse_csr(&openssl_csr(d, "leaf", P256, &[])).unwrap();
    let plain = Req::new("a.example.org", &["a.example.org"], &[]);
    let issued = ca.issue_blocking(&csr, &plain.get()).unwrap();
    assert_eq!(issued.chain, ca.chain_pem());
    assert_verifies(d, &issued);
    // Cut at the issuer's notAfter (20 days), not the requested 30.
    assert!((issued.not_after - issued.not_before).whole_days() <= 20);
    // Its CRL repeats the SHA-1 key identifier openssl gave the
    // intermediate, so openssl finds it and refuses the revoked leaf.
    crl::assert_revoked_by_crl(&ca, d, &issued);
    let constrained =
        Req::new("a.example.org", &["a.example.org"], &[]).policy(&["*.example.org"], &[]);
    let issued = ca.issue_blocking(&csr, &constrained.get()).unwrap();
    assert_eq!(
        pem_blocks(&issued.chain).len(),
        3,
        "sub-CA, intermediate, root"
    );
    assert_verifies(d, &issued);
    assert!(d.join("state/sub").is_dir());
    // A leaf certificate with its own key is not a CA.
    fs::write(d.join("leaf.pem"), &issued.pem).unwrap();
    fs::set_permissions(d.join("leaf.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let leaf_cfg = LocalCaConfig {
        key_file: Some(d.join("leaf.key")),
        cert_file: Some(d.join("leaf.pem")),
        chain_file: None,
        ..cfg
    };
    let err = LocalCa::open(&leaf_cfg, d).unwrap_err();
    assert!(err.to_string().contains("not a CA certificate"), "{err:?}");
}

#[test]
fn ca_backend_trait_issues() {
    let tmp = tempdir();
    let ca = LocalCa::open(&config(tmp.path()), tmp.path()).unwrap();
    let backend: &dyn CaBackend = &ca;
    assert_eq!(backend.name(), "local");
    let csr = parse_csr(&openssl_csr(tmp.path(), "t", P256, &[])).unwrap();
    let req = Req::new("t.example.org", &["t.example.org"], &[]);
    let r = req.get();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let issued = rt.block_on(backend.issue(&csr, &r)).unwrap();
    assert_verifies(tmp.path(), &issued);
}

mod crl;
