//! The server's steps in process, against a real store and CA, with JWSs
//! made here: what the real clients (tests/tests/acme.rs) never send — a
//! reused nonce, a wrong url, the wrong kind of signer, keyChange,
//! deactivation, revokeCert by the certificate's key — and a finalized
//! order read back by a server that restarted (a new `Acme` over the same
//! store).

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use idsync_schema::{AssetInput, Field, ProfileSettings, Protocol, Source};
use idsync_store::Actor;

use super::server::{Acme, Reply, ReplyBody};
use super::tests::{b64, binding, TestKey};
use super::AcmeConfig;
use crate::config::Config;
use crate::sources::enroll::{self, Enrollment, Target};

const ASSET: &str = "web1.example.org";

struct Setup {
    _dir: tempfile::TempDir,
    svc: Arc<Enrollment>,
    acme: Acme,
    rt: tokio::runtime::Runtime,
    kid: String,
    hmac: Vec<u8>,
}

/// A store with a preauthorized ACME profile, an asset and its
/// registration; the server in front of it.
fn setup() -> Setup {
    setup_with(true, AcmeConfig::default())
}

/// [`setup`] with the profile's `preauthorized` and the server's `acme`
/// configuration (its public URL set).
fn setup_with(preauthorized: bool, acme: AcmeConfig) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let mut p = ProfileSettings::new("Device", Protocol::Acme);
    p.preauthorized = preauthorized;
    cfg.profiles = vec![p];
    let rec = crate::app::open(&cfg).unwrap();
    let mut tx = rec.begin(Source::Api, Actor::default());
    let mut a = AssetInput::new(ASSET);
    a.certificate_profile = Field::Set("Device".into());
    a.dns_names = Field::Set(vec![ASSET.into(), "www.example.org".into()]);
    tx.upsert_asset(a).unwrap();
    tx.commit().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(crate::infra::metrics::Metrics::new());
    let svc =
        rt.block_on(async { enroll::start(cfg.enrollment_settings(), &rec, &metrics).unwrap() });
    let target = Target {
        asset: Some(ASSET.into()),
        profile: Some("Device".into()),
    };
    let registered = rt
        .block_on(svc.register("ops", Protocol::Acme, &target, None))
        .unwrap();
    let hmac = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        registered.eab_hmac_key.as_deref().unwrap().as_bytes(),
    )
    .unwrap();
    let acme = Acme::new(
        &AcmeConfig {
            public_url: Some("https://acme.test".into()),
            ..acme
        },
        Arc::clone(&svc),
    );
    Setup {
        _dir: dir,
        kid: registered.registration.id.to_string(),
        hmac,
        svc,
        acme,
        rt,
    }
}

fn server(svc: &Arc<Enrollment>) -> Acme {
    let cfg = AcmeConfig {
        public_url: Some("https://acme.test".into()),
        ..AcmeConfig::default()
    };
    Acme::new(&cfg, Arc::clone(svc))
}

/// What a step answered, as JSON (a problem's type and detail included).
struct Answer {
    status: u16,
    body: Value,
    location: Option<String>,
    retry_after: Option<u64>,
}

impl Answer {
    fn problem(&self) -> &str {
        self.body["type"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("urn:ietf:params:acme:error:")
    }
}

fn answer(r: Reply) -> Answer {
    let body = match r.body {
        ReplyBody::Json(v) => v,
        ReplyBody::Problem(p) => p.to_json(),
        ReplyBody::Pem(p) => Value::String(p),
        ReplyBody::Empty => Value::Null,
    };
    Answer {
        status: r.status,
        body,
        location: r.location,
        retry_after: r.retry_after,
    }
}

impl Setup {
    /// POST `payload` (None: POST-as-GET) to `path`, signed by `key` with
    /// `kid` or, without one, with the key as `jwk`.
    fn post(&self, key: &TestKey, kid: Option<&str>, path: &str, payload: Option<Value>) -> Answer {
        let nonce = self.acme.new_nonce();
        self.post_with(key, kid, path, payload, &nonce, &self.acme.url(path))
    }

    fn post_with(
        &self,
        key: &TestKey,
        kid: Option<&str>,
        path: &str,
        payload: Option<Value>,
        nonce: &str,
        url: &str,
    ) -> Answer {
        let mut header = json!({"nonce": nonce, "url": url});
        match kid {
            Some(k) => header["kid"] = json!(k),
            None => header["jwk"] = key.jwk(),
        }
        let bytes = payload
            .map(|p| p.to_string().into_bytes())
            .unwrap_or_default();
        let body = key.jws(header, &bytes).to_string();
        self.send(path, "application/jose+json", body)
    }

    fn send(&self, path: &str, content_type: &str, body: String) -> Answer {
        answer(self.rt.block_on(self.acme.handle(
            &hyper::Method::POST,
            path,
            Some(content_type),
            Bytes::from(body),
        )))
    }

    /// newAccount for `key` with the registration's binding: the account URL.
    fn new_account(&self, key: &TestKey) -> Answer {
        let url = self.acme.url("/new-account");
        let eab = binding(key, &self.kid, &url, &self.hmac, false);
        self.post(
            key,
            None,
            "/new-account",
            Some(json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab})),
        )
    }
}

/// A CSR for `names` and its key.
fn csr(names: &[&str]) -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    (der, key)
}

fn path_of(acme: &Acme, url: &str) -> String {
    url.strip_prefix(&acme.url("")).unwrap().to_owned()
}

#[test]
fn the_gate_refuses_before_any_payload_is_read() {
    let s = setup();
    let key = TestKey::p256();
    // Not a JOSE body.
    let a = s.send("/new-account", "application/json", "{}".into());
    assert_eq!((a.status, a.problem()), (415, "malformed"));
    // A nonce never issued, then one used twice.
    let url = s.acme.url("/new-account");
    let a = s.post_with(&key, None, "/new-account", Some(json!({})), "made-up", &url);
    assert_eq!((a.status, a.problem()), (400, "badNonce"));
    let nonce = s.acme.new_nonce();
    let first = s.post_with(&key, None, "/new-account", Some(json!({})), &nonce, &url);
    assert_eq!(first.problem(), "externalAccountRequired");
    let again = s.post_with(&key, None, "/new-account", Some(json!({})), &nonce, &url);
    assert_eq!(again.problem(), "badNonce");
    // A url other than the one the request was sent to.
    let nonce = s.acme.new_nonce();
    let other = s.acme.url("/new-order");
    let a = s.post_with(&key, None, "/new-account", Some(json!({})), &nonce, &other);
    assert_eq!((a.status, a.problem()), (403, "unauthorized"));
    // jwk where an account must sign, kid where the new key must.
    let a = s.post(&key, None, "/new-order", Some(json!({})));
    assert_eq!(a.problem(), "malformed", "{}", a.body);
    let a = s.post(
        &key,
        Some("https://acme.test/acme/acct/x"),
        "/new-account",
        Some(json!({})),
    );
    assert_eq!(a.problem(), "malformed", "{}", a.body);
    // A kid that is no account.
    let kid = s.acme.url(&format!("/acct/{}", uuid::Uuid::now_v7()));
    let a = s.post(&key, Some(&kid), "/new-order", Some(json!({})));
    assert_eq!(a.problem(), "accountDoesNotExist", "{}", a.body);
    // The binding's MAC with another key: unauthorized, registration unused.
    let bad = binding(&key, &s.kid, &url, &[7u8; 32], false);
    let a = s.post(
        &key,
        None,
        "/new-account",
        Some(json!({"externalAccountBinding": bad})),
    );
    assert_eq!((a.status, a.problem()), (403, "unauthorized"), "{}", a.body);
    let id = s.kid.parse().unwrap();
    assert_eq!(
        s.svc.registration(id).unwrap().status,
        idsync_schema::RegistrationStatus::Active
    );
}

#[test]
fn an_account_orders_finalizes_downloads_and_its_order_outlives_a_restart() {
    let s = setup();
    let key = TestKey::p256();
    let made = s.new_account(&key);
    assert_eq!(made.status, 201, "{}", made.body);
    let account = made.location.clone().unwrap();
    // The same key again: the same account, 200.
    let again = s.post(
        &key,
        None,
        "/new-account",
        Some(json!({"onlyReturnExisting": true})),
    );
    assert_eq!(
        (again.status, again.location.as_deref()),
        (200, Some(account.as_str()))
    );
    // Another key, only if it exists: it does not.
    let a = s.post(
        &TestKey::ed(),
        None,
        "/new-account",
        Some(json!({"onlyReturnExisting": true})),
    );
    assert_eq!(a.problem(), "accountDoesNotExist");
    // The binding was used.
    let a = s.new_account(&TestKey::p256());
    assert_eq!(a.problem(), "unauthorized", "{}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains("used"),
        "{}",
        a.body
    );

    // A name outside the registration; then the registration's names.
    let ids = |names: &[&str]| json!({"identifiers": names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>()});
    let a = s.post(
        &key,
        Some(&account),
        "/new-order",
        Some(ids(&["evil.example.com"])),
    );
    assert_eq!(a.problem(), "rejectedIdentifier", "{}", a.body);
    let order = s.post(&key, Some(&account), "/new-order", Some(ids(&[ASSET])));
    assert_eq!(order.status, 201, "{}", order.body);
    // The profile pre-authorizes: ready at once.
    assert_eq!(order.body["status"], "ready", "{}", order.body);
    let order_path = path_of(&s.acme, order.location.as_deref().unwrap());
    let finalize = path_of(&s.acme, order.body["finalize"].as_str().unwrap());
    let authz = path_of(&s.acme, order.body["authorizations"][0].as_str().unwrap());
    let a = s.post(&key, Some(&account), &authz, None);
    assert_eq!(a.body["status"], "valid", "{}", a.body);
    // A CSR with other names: badCSR, and the order stays ready.
    let (wrong, _) = csr(&[ASSET, "www.example.org"]);
    let a = s.post(
        &key,
        Some(&account),
        &finalize,
        Some(json!({"csr": b64(&wrong)})),
    );
    assert_eq!(a.problem(), "badCSR", "{}", a.body);
    assert_eq!(
        s.post(&key, Some(&account), &order_path, None).body["status"],
        "ready"
    );
    let (good, cert_key) = csr(&[ASSET]);
    let a = s.post(
        &key,
        Some(&account),
        &finalize,
        Some(json!({"csr": b64(&good)})),
    );
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("valid")),
        "{}",
        a.body
    );
    // Finalize twice: not ready any more.
    let a = s.post(
        &key,
        Some(&account),
        &finalize,
        Some(json!({"csr": b64(&good)})),
    );
    assert_eq!(a.problem(), "orderNotReady", "{}", a.body);
    let cert = s.post(&key, Some(&account), &order_path, None).body["certificate"]
        .as_str()
        .unwrap()
        .to_owned();
    let pem = s.post(&key, Some(&account), &path_of(&s.acme, &cert), None);
    let pem = pem.body.as_str().unwrap().to_owned();
    assert!(
        pem.matches("BEGIN CERTIFICATE").count() >= 2,
        "leaf and chain: {pem}"
    );

    // A restarted server (a new Acme over the same store) still knows the
    // finalized order and the account.
    let restarted = Setup {
        acme: server(&s.svc),
        ..s
    };
    let a = restarted.post(&key, Some(&account), &order_path, None);
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("valid")),
        "{}",
        a.body
    );
    assert_eq!(a.body["certificate"].as_str(), Some(cert.as_str()));

    // revokeCert signed with the certificate's own key (jwk).
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
        .map(|d: rustls::pki_types::CertificateDer<'_>| d.to_vec())
        .unwrap();
    let cert_signer = TestKey::p256_from_pkcs8(&cert_key.serialize_der());
    let a = restarted.post(
        &cert_signer,
        None,
        "/revoke-cert",
        Some(json!({"certificate": b64(&der), "reason": 1})),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let a = restarted.post(
        &key,
        Some(&account),
        "/revoke-cert",
        Some(json!({"certificate": b64(&der)})),
    );
    assert_eq!(a.problem(), "alreadyRevoked", "{}", a.body);
    // Another key may not revoke.
    let a = restarted.post(
        &TestKey::p256(),
        None,
        "/revoke-cert",
        Some(json!({"certificate": b64(&der)})),
    );
    assert!(
        matches!(a.problem(), "unauthorized" | "alreadyRevoked"),
        "{}",
        a.body
    );
}

#[test]
fn key_change_and_deactivation() {
    let s = setup();
    let old = TestKey::p256();
    let account = s.new_account(&old).location.unwrap();
    let new = TestKey::p256();
    let url = s.acme.url("/key-change");
    let inner = new.jws(
        json!({"jwk": new.jwk(), "url": url}),
        json!({"account": account, "oldKey": old.jwk()})
            .to_string()
            .as_bytes(),
    );
    // The inner JWS naming another old key is refused.
    let wrong_inner = new.jws(
        json!({"jwk": new.jwk(), "url": url}),
        json!({"account": account, "oldKey": TestKey::p256().jwk()})
            .to_string()
            .as_bytes(),
    );
    let a = s.post(&old, Some(&account), "/key-change", Some(wrong_inner));
    assert_eq!(a.problem(), "unauthorized", "{}", a.body);
    let a = s.post(&old, Some(&account), "/key-change", Some(inner));
    assert_eq!(a.status, 200, "{}", a.body);
    // The old key signs nothing any more; the new one does.
    let a = s.post(&old, Some(&account), &path_of(&s.acme, &account), None);
    assert_eq!(a.problem(), "malformed", "{}", a.body);
    let a = s.post(&new, Some(&account), &path_of(&s.acme, &account), None);
    assert_eq!(
        (a.status, a.body["status"].as_str()),
        (200, Some("valid")),
        "{}",
        a.body
    );
    // Deactivated: every later request is unauthorized.
    let a = s.post(
        &new,
        Some(&account),
        &path_of(&s.acme, &account),
        Some(json!({"status": "deactivated"})),
    );
    assert_eq!(a.body["status"], "deactivated", "{}", a.body);
    let a = s.post(
        &new,
        Some(&account),
        "/new-order",
        Some(json!({"identifiers": [{"type": "dns", "value": ASSET}]})),
    );
    assert_eq!((a.status, a.problem()), (403, "unauthorized"), "{}", a.body);
    let _ = a.retry_after;
}

/// A POST to an http-01 challenge answers with the validation's outcome
/// when it comes at once (the client skips a poll): `valid` for the key
/// authorization, `invalid` with `incorrectResponse` for anything else.
#[test]
fn a_challenge_post_answers_with_the_outcome() {
    for right in [true, false] {
        let key = TestKey::p256();
        let thumbprint = super::jwk::Jwk::from_json(&key.jwk()).unwrap().thumbprint();
        // The token is only known once the order is made: the responder
        // answers whatever it is asked with what it is given.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let body = rx.recv().unwrap();
            for mut stream in listener.incoming().flatten() {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let mut cfg = AcmeConfig::default();
        cfg.resolve.insert(ASSET.into(), addr.to_string());
        let s = setup_with(false, cfg);
        let account = s.new_account(&key).location.unwrap();
        let ids = json!({"identifiers": [{"type": "dns", "value": ASSET}]});
        let order = s.post(&key, Some(&account), "/new-order", Some(ids));
        assert_eq!(order.body["status"], "pending", "{}", order.body);
        let authz = path_of(&s.acme, order.body["authorizations"][0].as_str().unwrap());
        let a = s.post(&key, Some(&account), &authz, None);
        let http01 = a.body["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "http-01")
            .cloned()
            .unwrap();
        let token = http01["token"].as_str().unwrap();
        let served = match right {
            true => format!("{token}.{thumbprint}"),
            false => format!("{token}.someone-else"),
        };
        tx.send(served).unwrap();
        let chall = path_of(&s.acme, http01["url"].as_str().unwrap());
        let answered = s.post(&key, Some(&account), &chall, Some(json!({})));
        assert_eq!(answered.status, 200, "{}", answered.body);
        if right {
            assert_eq!(answered.body["status"], "valid", "{}", answered.body);
            assert_eq!(answered.retry_after, None);
        } else {
            assert_eq!(answered.body["status"], "invalid", "{}", answered.body);
            let error = &answered.body["error"]["type"];
            assert_eq!(error, "urn:ietf:params:acme:error:incorrectResponse");
        }
        let a = s.post(&key, Some(&account), &authz, None);
        assert_eq!(a.body["status"], answered.body["status"], "{}", a.body);
    }
}
