//! The SCEP benchmark: enrollments per second of idsync's SCEP server (RFC
//! 8894) and of micromdm's `scepserver` (Debian package `scep`), side by
//! side in one run, driven by the same in-process client: the SCEP layer's
//! own test client (`idsync::sources::scep::testclient`, built outside the
//! tests by the `scep-client` feature) on a hyper HTTP/1.1 connection per
//! enrollment loop (kept alive, TCP_NODELAY).
//!
//! `cargo bench -p idsync --bench scep --features scep-client [-- --runs 3 --seconds 10 --high 4 --only NAME --challenge-encoding auto]`
//!
//! Once per server: GetCACaps (the client sends AES-128-CBC and SHA-256
//! when listed, else DES3 and SHA-1) and GetCACert: idsync answers a
//! degenerate PKCS#7 (the RA certificate, then the CA), whose RA the
//! client encrypts to; scepserver answers its CA certificate alone (DER),
//! the recipient then. One enrollment, timed: build the PKIOperation (a
//! fresh transactionID and senderNonce; the CSR enveloped to the
//! recipient, signed with the transient certificate) → POST it
//! (`application/x-pki-message`) → read the CertRep: its signature by the
//! recipient certificate, messageType 3, pkiStatus SUCCESS, the
//! transactionID and recipientNonce, the envelope decrypted with the
//! client key, and a certificate for the client's key among its
//! certificates. Only enrollments that pass all of that are counted.
//!
//! Made before timing: eight RSA-2048 keys with a transient self-signed
//! certificate each (made once; the enrollments use them in turn, as
//! eight devices re-enrolling), and, before each run for that run, one
//! CSR per enrollment (CN and DNS SAN `web1.example.org`, with the
//! challengePassword): for idsync one registration per enrollment over
//! the admin API (`POST /api/v1/enroll/scep`; challenges are single
//! use), for scepserver its one static challenge. A run ends after
//! `--seconds` or when its CSRs run out (1.15 times what the row's last
//! rate needs, plus 20; the row says so), whichever is first; the
//! registrations a run did not use stay active (few: the pool is sized
//! tight so as not to grow idsync's store for nothing). For idsync each
//! run says what its store held as it started (registrations made,
//! enrollments issued), since both grow over the bench.
//!
//! The challengePassword is a PrintableString when the challenge fits
//! one, else a UTF8String, as Go's encoding/asn1 (scepclient) chooses
//! (idsync's challenges are hex, so they always fit;
//! `--challenge-encoding printable` forces a PrintableString anyway,
//! `utf8` a UTF8String; the errors say which).
//! `IDSYNC_LOG__LEVEL=info` in the environment logs idsync's refusals.
//!
//! - idsync: the release `idsync serve` with an RSA-2048 CA, a `scep`
//!   profile and one asset (`web1.example.org`, imported with `idsync
//!   import assets`).
//! - scepserver: `scepserver ca -init` (RSA-2048) and `scepserver -depot
//!   DIR -port PORT -capass P -challenge SECRET -allowrenew 0 -crtvalid
//!   30`; it listens on all interfaces, the bench sends to 127.0.0.1 only.
//!   Its file depot races under parallel load: with four in flight its
//!   warm-up broke the depot and every later request, at one in flight
//!   too, got failInfo badRequest (2026-12-05). It runs one enrollment at
//!   a time. Its log (one line a request) goes to a file.
//!
//! Rows: idsync and scepserver with one enrollment in flight, then idsync
//! with `--high` in flight (default 4; 0 leaves it out). The rows' runs
//! are interleaved (run 1 of every row, then run 2, …) so that background
//! load falls on all of them alike. Each figure is the median of `--runs`
//! timed runs of `--seconds` (default 10) after a 2 s warm-up; p50/p99 are
//! of every enrollment of the timed runs; srv cpu and cli cpu are CPU
//! milliseconds per enrollment of the server process and of this bench
//! (from /proc), which share the cores; under each row, the mean
//! milliseconds of the steps of an enrollment. Last, the ratio
//! idsync/scepserver at one in flight. `--only NAME` runs the rows whose
//! name contains NAME (`idsync`, `scepserver`), and may be repeated. Every
//! enrollment has a 30 s timeout, and the whole bench a watchdog that
//! stops the servers it started.

mod common;

use std::collections::VecDeque;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use idsync::sources::scep::ber;
use idsync::sources::scep::message::{Cipher, DigestAlg};
use idsync::sources::scep::testclient::{certs_only, Client, Request};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use common::enrollment::{self, admin};
use common::process::{cpu_seconds, finish_run, watchdog, Server};
use common::{free_port, median, Flags};

/// The asset's name: the CN and the DNS SAN of every CSR.
const NAME: &str = "web1.example.org";
const PROFILE: &str = "Bench SCEP";
/// The requester keys (RSA-2048), used in turn.
const KEYS: usize = 8;
const WARM_UP: f64 = 2.0;
/// CSRs for a warm-up, per enrollment in flight (it ends early when they
/// run out).
const WARM_UP_POOL: usize = 100;
const ENROLL_TIMEOUT: Duration = Duration::from_secs(30);
/// A run that saw this many failed enrollments stops early.
const MAX_ERRORS: usize = 20;
/// scepserver's static challenge and CA key password.
const SCEPSERVER_CHALLENGE: &str = "bench-scep-secret";
const SCEPSERVER_CAPASS: &str = "bench-ca-pass";

struct Args {
    runs: usize,
    seconds: u64,
    /// idsync's extra row; 0: none.
    high: usize,
    /// Only the rows whose name contains one of these.
    only: Vec<String>,
    encoding: Encoding,
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        seconds: 10,
        high: 4,
        only: Vec::new(),
        encoding: Encoding::Auto,
    };
    let mut flags = Flags::new();
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--runs" => a.runs = flags.number().max(1),
            "--seconds" => a.seconds = flags.number().max(1) as u64,
            "--high" => a.high = flags.number(),
            "--only" => a.only.push(flags.value()),
            "--challenge-encoding" => {
                a.encoding = match flags.value().as_str() {
                    "auto" => Encoding::Auto,
                    "printable" => Encoding::Printable,
                    "utf8" => Encoding::Utf8,
                    other => panic!("--challenge-encoding {other:?}: auto, printable or utf8"),
                }
            }
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

// ---------------------------------------------------------------------
// HTTP: one HTTP/1.1 connection per enrollment loop, kept alive.

/// A connection to a server, made again after an error.
struct Conn {
    port: u16,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// An answer: status, Content-Type, body.
struct Answer {
    status: u16,
    content_type: String,
    body: Bytes,
}

impl Conn {
    fn new(port: u16) -> Conn {
        Conn { port, sender: None }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected"))
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let host = format!("127.0.0.1:{}", self.port);
        let result = async {
            let sender = self.connect().await?;
            sender
                .ready()
                .await
                .map_err(|e| format!("connection: {e}"))?;
            let mut req = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, host);
            if body.is_some() {
                req = req.header(hyper::header::CONTENT_TYPE, "application/x-pki-message");
            }
            let req = req
                .body(Full::new(Bytes::from(body.unwrap_or_default())))
                .map_err(|e| e.to_string())?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = res.status().as_u16();
            let content_type = res
                .headers()
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                content_type,
                body,
            })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

// ---------------------------------------------------------------------
// The client side of a server: what GetCACaps and GetCACert said.

/// A SCEP server as the client knows it.
struct Target {
    name: &'static str,
    port: u16,
    /// The certificate requests are encrypted to and replies signed by:
    /// idsync's RA, scepserver's CA.
    recipient_der: Vec<u8>,
    cipher: Cipher,
    digest: DigestAlg,
    /// The server's process, for its CPU time.
    pid: u32,
    /// What GetCACert answered, for the header.
    ca_cert_answer: String,
    caps: String,
    /// Over all rows: registrations made on the server, and enrollments
    /// that succeeded (warm-ups included): what its store holds.
    registered: AtomicUsize,
    issued: AtomicUsize,
    /// The digest and content cipher of the replies (the first SUCCESS).
    replies: Mutex<Option<String>>,
}

/// GetCACaps and GetCACert of the server on `port`.
async fn discover(name: &'static str, port: u16, pid: u32) -> Result<Target, String> {
    let mut conn = Conn::new(port);
    let caps = conn.send("GET", "/scep?operation=GetCACaps", None).await?;
    let caps = String::from_utf8_lossy(&caps.body).into_owned();
    let listed = |c: &str| caps.lines().any(|l| l.trim().eq_ignore_ascii_case(c));
    let (cipher, digest) = match (listed("AES"), listed("SHA-256")) {
        (true, true) => (Cipher::Aes128Cbc, DigestAlg::Sha256),
        (true, false) => (Cipher::Aes128Cbc, DigestAlg::Sha1),
        (false, true) => (Cipher::DesEde3Cbc, DigestAlg::Sha256),
        (false, false) => (Cipher::DesEde3Cbc, DigestAlg::Sha1),
    };
    let ca = conn.send("GET", "/scep?operation=GetCACert", None).await?;
    if ca.status != 200 {
        return Err(format!("GetCACert: HTTP {}", ca.status));
    }
    let (recipient_der, ca_cert_answer) = if ca.content_type.contains("x-x509-ca-ra-cert") {
        // A degenerate certs-only SignedData: the RA is the certificate
        // that is not a CA.
        let der = ber::to_der(&ca.body).map_err(|e| format!("GetCACert: {e}"))?;
        let certs = certs_only(&der).map_err(|e| format!("GetCACert: {e}"))?;
        let ra = certs
            .iter()
            .find(|c| X509Certificate::from_der(c).is_ok_and(|(_, c)| !c.is_ca()))
            .cloned()
            .ok_or("GetCACert: no RA certificate among the certificates")?;
        let what = format!(
            "{}, PKCS#7 of {} certificates: RA {}",
            ca.content_type,
            certs.len(),
            subject(&ra)
        );
        (ra, what)
    } else {
        let what = format!(
            "{}, one certificate: {}",
            ca.content_type,
            subject(&ca.body)
        );
        (ca.body.to_vec(), what)
    };
    X509Certificate::from_der(&recipient_der).map_err(|e| format!("GetCACert: {e}"))?;
    Ok(Target {
        name,
        port,
        recipient_der,
        cipher,
        digest,
        pid,
        ca_cert_answer,
        caps: caps.lines().collect::<Vec<_>>().join(" "),
        registered: AtomicUsize::new(0),
        issued: AtomicUsize::new(0),
        replies: Mutex::new(None),
    })
}

fn subject(der: &[u8]) -> String {
    X509Certificate::from_der(der).map_or_else(
        |e| format!("unreadable ({e})"),
        |(_, c)| c.subject().to_string(),
    )
}

// ---------------------------------------------------------------------
// The requesters and their CSRs (made before timing).

/// A requester: its key (PKCS#8) and the client with its transient
/// certificate, and the key's SubjectPublicKeyInfo.
struct Requester {
    key_pkcs8: Vec<u8>,
    client: Client,
    spki: Vec<u8>,
}

fn requesters() -> Vec<Requester> {
    (0..KEYS)
        .map(|i| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("an RSA key");
            let key_pkcs8 = key.serialize_der();
            let client = Client::transient(&key_pkcs8, &format!("bench requester {i}"));
            let spki = X509Certificate::from_der(&client.cert_der)
                .map(|(_, c)| c.public_key().raw.to_vec())
                .expect("the transient certificate");
            Requester {
                key_pkcs8,
                client,
                spki,
            }
        })
        .collect()
}

/// One enrollment to make: which requester, its CSR.
struct Prepared {
    requester: usize,
    csr: Vec<u8>,
    /// Added to its errors: how the challenge was encoded when that is
    /// not what `auto` would have chosen.
    note: &'static str,
}

/// How a CSR's challengePassword is encoded (`--challenge-encoding`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// PrintableString when the challenge fits one, else UTF8String, as
    /// Go's encoding/asn1 (micromdm's scepclient) chooses.
    Auto,
    /// Always PrintableString, fitting or not.
    Printable,
    /// Always UTF8String.
    Utf8,
}

/// Whether `s` fits a PrintableString (X.680 §41.4).
fn printable(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || " '()+,-./:=?".contains(c))
}

/// A CSR for each challenge, the requesters in turn (on two threads).
fn csrs(
    requesters: &[Requester],
    challenges: Vec<String>,
    first: usize,
    encoding: Encoding,
) -> Vec<Prepared> {
    let numbered: Vec<(usize, String)> = challenges.into_iter().enumerate().collect();
    let half = numbered.len().div_ceil(2);
    let make = |part: &[(usize, String)]| -> Vec<Prepared> {
        part.iter()
            .map(|(i, challenge)| {
                let r = (first + i) % requesters.len();
                let fits = printable(challenge);
                let utf8 = match encoding {
                    Encoding::Auto => !fits,
                    Encoding::Printable => false,
                    Encoding::Utf8 => true,
                };
                let note = match (utf8, fits) {
                    (false, false) => {
                        " [challenge in a PrintableString, with characters outside its set]"
                    }
                    (true, true) => " [challenge in a UTF8String]",
                    _ => "",
                };
                Prepared {
                    requester: r,
                    csr: Client::csr(
                        &requesters[r].key_pkcs8,
                        NAME,
                        &[NAME],
                        Some((challenge.as_str(), utf8)),
                    ),
                    note,
                }
            })
            .collect()
    };
    std::thread::scope(|s| {
        let (a, b) = numbered.split_at(half.min(numbered.len()));
        let first_half = s.spawn(|| make(a));
        let mut second = make(b);
        let mut all = first_half.join().expect("CSR thread");
        all.append(&mut second);
        all
    })
}

// ---------------------------------------------------------------------
// One enrollment.

/// The steps of an enrollment, timed.
const STEPS: [&str; 3] = ["build", "round trip", "read"];

fn random(len: usize) -> Vec<u8> {
    let mut b = vec![0; len];
    aws_lc_rs::rand::fill(&mut b).expect("randomness");
    b
}

/// PKCSReq → CertRep SUCCESS → the certificate; the ms of each step.
async fn enroll(
    target: &Target,
    conn: &mut Conn,
    requester: &Requester,
    csr: &[u8],
) -> Result<[f64; 3], String> {
    let t = Instant::now();
    let transaction_id = hex::encode_upper(random(20));
    let sender_nonce = random(16);
    let body = requester.client.request(&Request {
        message_type: "19",
        transaction_id: &transaction_id,
        sender_nonce: &sender_nonce,
        content: csr,
        cipher: target.cipher,
        digest: target.digest,
        ra_cert_der: &target.recipient_der,
    });
    let built = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    let answer = conn
        .send("POST", "/scep?operation=PKIOperation", Some(body))
        .await?;
    let round_trip = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    if answer.status != 200 {
        return Err(format!(
            "HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body).trim()
        ));
    }
    if answer.content_type != "application/x-pki-message" {
        return Err(format!("Content-Type {:?}", answer.content_type));
    }
    let reply = requester
        .client
        .read_reply(&answer.body)
        .map_err(|e| format!("the CertRep: {e}"))?;
    let a = &reply.attrs;
    if a.message_type.as_deref() != Some("3") {
        return Err(format!("messageType {:?}, not CertRep", a.message_type));
    }
    if a.pki_status.as_deref() != Some("0") {
        return Err(format!(
            "pkiStatus {:?}, failInfo {:?}",
            a.pki_status, a.fail_info
        ));
    }
    if a.transaction_id.as_deref() != Some(transaction_id.as_str()) {
        return Err("the CertRep's transactionID is not the request's".into());
    }
    if a.recipient_nonce.as_deref() != Some(sender_nonce.as_slice()) {
        return Err("the CertRep's recipientNonce is not the senderNonce".into());
    }
    if reply.signer_cert_der != target.recipient_der {
        return Err(format!(
            "the CertRep is signed by {}, not by the GetCACert certificate",
            subject(&reply.signer_cert_der)
        ));
    }
    let certs = reply.certs.unwrap_or_default();
    let ours = certs.iter().any(|c| {
        X509Certificate::from_der(c)
            .is_ok_and(|(_, c)| c.public_key().raw == requester.spki.as_slice())
    });
    if !ours {
        return Err(format!(
            "none of the CertRep's {} certificates is for the client's key",
            certs.len()
        ));
    }
    let read = t.elapsed().as_secs_f64() * 1000.0;
    target.replies.lock().unwrap().get_or_insert_with(|| {
        format!(
            "{} + {}",
            reply.cipher.map_or("?", Cipher::name),
            reply.digest.name()
        )
    });
    Ok([built, round_trip, read])
}

// ---------------------------------------------------------------------
// Runs and rows.

/// What a run enrolls with.
struct Job {
    target: Arc<Target>,
    requesters: Arc<Vec<Requester>>,
    pool: Vec<Prepared>,
    next: AtomicUsize,
}

struct RunFigures {
    per_s: f64,
    seconds: f64,
    steps_ms: [f64; 3],
    server_cpu: f64,
    client_cpu: f64,
    latencies_ms: Vec<f64>,
    errors: Vec<String>,
    /// The CSRs ran out before the time was up.
    dry: bool,
    hung: bool,
}

/// `concurrency` enrollment loops for `seconds` (or until the CSRs run
/// out); enrollments/s counts those that succeeded over the whole time,
/// the drain of those in flight included.
async fn run(job: Arc<Job>, seconds: f64, concurrency: usize) -> RunFigures {
    let stop = Arc::new(AtomicBool::new(false));
    let dry = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let steps = Arc::new(Mutex::new([0.0f64; 3]));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let (server_before, client_before) = (cpu_seconds(Some(job.target.pid)), cpu_seconds(None));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (job, stop, dry) = (Arc::clone(&job), Arc::clone(&stop), Arc::clone(&dry));
        let (latencies, errors, steps) = (
            Arc::clone(&latencies),
            Arc::clone(&errors),
            Arc::clone(&steps),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(job.target.port);
            while !stop.load(Ordering::Relaxed) {
                let Some(p) = job.pool.get(job.next.fetch_add(1, Ordering::Relaxed)) else {
                    dry.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                    break;
                };
                let requester = &job.requesters[p.requester];
                let t = Instant::now();
                let one = enroll(&job.target, &mut conn, requester, &p.csr);
                match tokio::time::timeout(ENROLL_TIMEOUT, one).await {
                    Ok(Ok(took)) => {
                        job.target.issued.fetch_add(1, Ordering::Relaxed);
                        latencies
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_secs_f64() * 1000.0);
                        let mut sums = steps.lock().unwrap();
                        for (sum, ms) in sums.iter_mut().zip(took) {
                            *sum += ms;
                        }
                    }
                    Ok(Err(e)) => errors.lock().unwrap().push(format!("{e}{}", p.note)),
                    Err(_) => {
                        conn = Conn::new(job.target.port);
                        errors
                            .lock()
                            .unwrap()
                            .push(format!("no answer within {ENROLL_TIMEOUT:?}"));
                    }
                }
                if errors.lock().unwrap().len() >= MAX_ERRORS {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }));
    }
    let deadline = started + Duration::from_secs_f64(seconds);
    let grace = ENROLL_TIMEOUT + Duration::from_secs(5);
    let hung = finish_run(tasks, &stop, deadline, Duration::from_millis(5), grace).await;
    let elapsed = started.elapsed().as_secs_f64();
    let latencies_ms = std::mem::take(&mut *latencies.lock().unwrap());
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    let steps_ms = *steps.lock().unwrap();
    RunFigures {
        per_s: latencies_ms.len() as f64 / elapsed,
        seconds: elapsed,
        steps_ms,
        server_cpu: cpu_seconds(Some(job.target.pid)) - server_before,
        client_cpu: cpu_seconds(None) - client_before,
        latencies_ms,
        errors,
        dry: dry.load(Ordering::Relaxed),
        hung,
    }
}

/// Where a row's challenges come from.
enum Challenges {
    /// One registration per enrollment on idsync's admin port.
    Registrations(u16),
    /// scepserver's one secret.
    Static(&'static str),
}

/// A row: a server at a concurrency, its runs so far.
struct Row {
    name: String,
    concurrency: usize,
    target: Arc<Target>,
    challenges: Challenges,
    /// The last rate seen, to size the next pool.
    rate: f64,
    runs: Vec<f64>,
    run_notes: Vec<String>,
    latencies: Vec<f64>,
    steps_ms: [f64; 3],
    server_cpu: f64,
    client_cpu: f64,
    enrollments: usize,
    errors: Vec<String>,
    hung: bool,
    /// Untimed preparation: registrations and CSRs made, seconds spent.
    registrations: usize,
    prep_seconds: f64,
    encoding: Encoding,
}

impl Row {
    /// The CSRs of a run of `seconds` (or `n` of them).
    fn pool(&mut self, requesters: &[Requester], n: Option<usize>, seconds: f64) -> Vec<Prepared> {
        let n = n.unwrap_or_else(|| (self.rate * seconds * 1.15) as usize + 20);
        let t = Instant::now();
        let challenges = match self.challenges {
            Challenges::Registrations(admin) => {
                self.registrations += n;
                self.target.registered.fetch_add(n, Ordering::Relaxed);
                register_many(admin, n)
            }
            Challenges::Static(secret) => vec![secret.to_owned(); n],
        };
        let pool = csrs(requesters, challenges, self.enrollments, self.encoding);
        self.prep_seconds += t.elapsed().as_secs_f64();
        pool
    }

    fn job(&self, requesters: &Arc<Vec<Requester>>, pool: Vec<Prepared>) -> Arc<Job> {
        Arc::new(Job {
            target: Arc::clone(&self.target),
            requesters: Arc::clone(requesters),
            pool,
            next: AtomicUsize::new(0),
        })
    }

    fn warm_up(&mut self, rt: &tokio::runtime::Runtime, requesters: &Arc<Vec<Requester>>) {
        let pool = self.pool(requesters, Some(WARM_UP_POOL * self.concurrency), WARM_UP);
        let f = rt.block_on(run(self.job(requesters, pool), WARM_UP, self.concurrency));
        self.rate = f.per_s;
        self.errors.extend(f.errors);
        self.hung |= f.hung;
    }

    fn failed(&self) -> bool {
        self.hung || self.errors.len() >= MAX_ERRORS
    }

    fn timed_run(
        &mut self,
        rt: &tokio::runtime::Runtime,
        requesters: &Arc<Vec<Requester>>,
        seconds: f64,
    ) {
        let pool = self.pool(requesters, None, seconds);
        // What the server's store holds as the run starts (idsync).
        let store = match self.challenges {
            Challenges::Registrations(_) => format!(
                " [{} SCEP registrations, {} issued before]",
                self.target.registered.load(Ordering::Relaxed),
                self.target.issued.load(Ordering::Relaxed)
            ),
            Challenges::Static(_) => String::new(),
        };
        let f = rt.block_on(run(self.job(requesters, pool), seconds, self.concurrency));
        self.rate = f.per_s;
        self.runs.push(f.per_s);
        self.run_notes.push(if f.dry {
            format!(
                "{:.1} (CSRs ran out after {:.1} s){store}",
                f.per_s, f.seconds
            )
        } else {
            format!("{:.1}{store}", f.per_s)
        });
        self.enrollments += f.latencies_ms.len();
        self.latencies.extend(f.latencies_ms);
        for (sum, ms) in self.steps_ms.iter_mut().zip(f.steps_ms) {
            *sum += ms;
        }
        self.server_cpu += f.server_cpu;
        self.client_cpu += f.client_cpu;
        self.errors.extend(f.errors);
        self.hung |= f.hung;
    }

    fn median(&self) -> f64 {
        if self.runs.is_empty() {
            f64::NAN
        } else {
            median(self.runs.clone())
        }
    }

    fn server_ms(&self) -> f64 {
        self.server_cpu * 1000.0 / self.enrollments.max(1) as f64
    }

    fn print(&mut self) {
        self.latencies.sort_by(f64::total_cmp);
        println!(
            "{:<12} {:>4} {:>12.1} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>7}   runs: {}",
            self.name,
            self.concurrency,
            self.median(),
            percentile(&self.latencies, 0.50),
            percentile(&self.latencies, 0.99),
            self.server_ms(),
            self.client_cpu * 1000.0 / self.enrollments.max(1) as f64,
            self.errors.len(),
            self.run_notes.join(", ")
        );
        let n = self.enrollments.max(1) as f64;
        println!(
            "    mean ms per step: {}; {} enrollments timed; untimed preparation: {}{:.1} s",
            STEPS
                .iter()
                .zip(self.steps_ms)
                .map(|(name, ms)| format!("{name} {:.2}", ms / n))
                .collect::<Vec<_>>()
                .join(", "),
            self.enrollments,
            if self.registrations > 0 {
                format!("{} registrations + CSRs, ", self.registrations)
            } else {
                "CSRs, ".to_owned()
            },
            self.prep_seconds
        );
        if self.hung {
            println!(
                "    enrollments still unanswered {ENROLL_TIMEOUT:?} after the run ended (a hang)"
            );
        }
        let mut distinct: Vec<(String, usize)> = Vec::new();
        for e in &self.errors {
            match distinct.iter_mut().find(|(m, _)| m == e) {
                Some((_, n)) => *n += 1,
                None => distinct.push((e.clone(), 1)),
            }
        }
        for (e, n) in distinct.iter().take(5) {
            println!("    error ({n}x): {e}");
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

// ---------------------------------------------------------------------
// idsync.

/// A plain HTTP/1.1 request to the admin API with the bench token:
/// status and body.
/// A registration of the asset for the SCEP profile: its challenge.
fn register(admin_port: u16) -> String {
    let body = serde_json::json!({"asset": NAME, "profile": PROFILE}).to_string();
    let (status, answer) =
        admin(admin_port, "POST", "/api/v1/enroll/scep", &body).expect("POST /api/v1/enroll/scep");
    assert_eq!(status, 201, "POST /api/v1/enroll/scep {body}: {answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    v["scep"]["challenge"]
        .as_str()
        .expect("scep.challenge")
        .to_owned()
}

/// `n` registrations, four at a time.
fn register_many(admin_port: u16, n: usize) -> Vec<String> {
    let left = Mutex::new(n);
    let out = Mutex::new(VecDeque::with_capacity(n));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                {
                    let mut l = left.lock().unwrap();
                    if *l == 0 {
                        return;
                    }
                    *l -= 1;
                }
                let c = register(admin_port);
                out.lock().unwrap().push_back(c);
            });
        }
    });
    out.into_inner().unwrap().into()
}

struct Idsync {
    server: Server,
    scep: u16,
    admin: u16,
}

fn start_idsync(dir: &Path) -> Idsync {
    let scep = free_port();
    let extra = format!(
        r#"[ca]
key_type = "rsa-2048"
[[profiles]]
name = "{PROFILE}"
protocol = "scep"
[scep]
enabled = true
listen = "127.0.0.1:{scep}"
# One client on one address is the whole load here.
requests_per_minute_per_peer = 1000000000
"#
    );
    let started = enrollment::start(dir, &extra, (NAME, PROFILE, ""), scep);
    Idsync {
        server: started.server,
        scep,
        admin: started.admin,
    }
}

// ---------------------------------------------------------------------
// scepserver.

fn start_scepserver(dir: &Path) -> Result<(Server, u16), String> {
    let depot = dir.join("depot");
    let init = Command::new("scepserver")
        .args(["ca", "-init", "-depot"])
        .arg(&depot)
        .args([
            "-key-password",
            SCEPSERVER_CAPASS,
            "-keySize",
            "2048",
            "-organization",
            "Bench",
            "-years",
            "5",
        ])
        .output()
        .map_err(|e| format!("scepserver (Debian package `scep`): {e}"))?;
    if !init.status.success() {
        return Err(format!(
            "scepserver ca -init: {}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    let port = free_port();
    let log = std::fs::File::create(dir.join("scepserver.log")).map_err(|e| e.to_string())?;
    let child = Command::new("scepserver")
        .arg("-depot")
        .arg(&depot)
        .args(["-port", &port.to_string()])
        .args(["-capass", SCEPSERVER_CAPASS])
        .args(["-challenge", SCEPSERVER_CHALLENGE])
        .args(["-allowrenew", "0", "-crtvalid", "30"])
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("scepserver: {e}"))?;
    let mut server = Server::new(child, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.exited() {
            return Err(format!("scepserver exited: {status}"));
        }
        if Instant::now() > deadline {
            return Err("scepserver did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, port))
}

fn scepserver_version() -> String {
    let version = Command::new("scepserver")
        .arg("-version")
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
            .trim()
            .replace('\n', " ")
        })
        .unwrap_or_default();
    let package = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "scep"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|| "?".into());
    format!("{version} (Debian package scep {package})")
}

// ---------------------------------------------------------------------

fn main() {
    let a = args();
    let chosen = |name: &str| a.only.is_empty() || a.only.iter().any(|o| name.contains(o.as_str()));
    let mut wanted: Vec<(&'static str, usize)> = vec![("idsync", 1), ("scepserver", 1)];
    if a.high > 1 {
        wanted.push(("idsync", a.high));
    }
    wanted.retain(|(n, _)| chosen(n));
    watchdog(
        "scep",
        Duration::from_secs(300 + wanted.len() as u64 * (10 + a.runs as u64 * (a.seconds + 60))),
    );

    let tmp = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let t = Instant::now();
    let requesters = Arc::new(requesters());
    let keys_s = t.elapsed().as_secs_f64();
    let csr_ms = {
        let t = Instant::now();
        for i in 0..20 {
            Client::csr(
                &requesters[i % KEYS].key_pkcs8,
                NAME,
                &[NAME],
                Some(("x", false)),
            );
        }
        t.elapsed().as_secs_f64() * 1000.0 / 20.0
    };

    println!(
        "SCEP enrollments (PKCSReq → CertRep SUCCESS → decrypt → certificate) with idsync's SCEP test client \
         on one kept-alive TCP_NODELAY HTTP/1.1 connection per enrollment loop; {KEYS} RSA-2048 requester keys \
         with transient certificates made before timing ({keys_s:.1} s), one CSR per enrollment made before each \
         run ({csr_ms:.1} ms each, untimed); {} runs x {} s after a {WARM_UP} s warm-up, runs interleaved across \
         rows; enroll/s is the median, p50/p99 of all timed enrollments; {} cores",
        a.runs,
        a.seconds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "srv cpu / cli cpu: CPU ms per enrollment of the server process and of this bench (the client), both \
         on the same cores; load average at the start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    let mut _servers = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    if wanted.iter().any(|(n, _)| *n == "idsync") {
        let dir = tmp.path().join("idsync");
        std::fs::create_dir_all(&dir).unwrap();
        let d = start_idsync(&dir);
        let target = rt
            .block_on(discover("idsync", d.scep, d.server.pid()))
            .unwrap_or_else(|e| panic!("idsync: {e}"));
        let target = Arc::new(target);
        for (_, c) in wanted.iter().filter(|(n, _)| *n == "idsync") {
            rows.push(new_row(
                "idsync",
                *c,
                &target,
                Challenges::Registrations(d.admin),
                a.encoding,
            ));
        }
        _servers.push(d.server);
    }
    if wanted.iter().any(|(n, _)| *n == "scepserver") {
        let dir = tmp.path().join("scepserver");
        std::fs::create_dir_all(&dir).unwrap();
        match start_scepserver(&dir) {
            Err(e) => println!("scepserver: skipped: {e}"),
            Ok((server, port)) => match rt.block_on(discover("scepserver", port, server.pid())) {
                Err(e) => println!("scepserver: skipped: {e}"),
                Ok(target) => {
                    let target = Arc::new(target);
                    rows.push(new_row(
                        "scepserver",
                        1,
                        &target,
                        Challenges::Static(SCEPSERVER_CHALLENGE),
                        a.encoding,
                    ));
                    _servers.push(server);
                }
            },
        }
    }
    let mut shown: Vec<&str> = Vec::new();
    for r in &rows {
        if !shown.contains(&r.target.name) {
            shown.push(r.target.name);
            let t = &r.target;
            println!(
                "{}: GetCACaps {:?}; GetCACert {}; the client sends {} + {}",
                t.name,
                t.caps,
                t.ca_cert_answer,
                t.cipher.name(),
                t.digest.name()
            );
        }
    }

    // Warm-ups, then the timed runs, interleaved.
    for row in &mut rows {
        row.warm_up(&rt, &requesters);
    }
    for _ in 0..a.runs {
        for row in rows.iter_mut().filter(|r| !r.failed()) {
            row.timed_run(&rt, &requesters, a.seconds as f64);
        }
    }

    println!(
        "{:<12} {:>4} {:>12} {:>9} {:>9} {:>8} {:>8} {:>7}",
        "server", "conc", "enroll/s", "p50 ms", "p99 ms", "srv cpu", "cli cpu", "errors"
    );
    for row in &mut rows {
        row.print();
    }
    let mut shown: Vec<&str> = Vec::new();
    for r in &rows {
        if !shown.contains(&r.target.name) {
            shown.push(r.target.name);
            if let Some(replies) = r.target.replies.lock().unwrap().as_ref() {
                println!("{}: its CertReps came in {replies}", r.target.name);
            }
        }
    }
    if rows.iter().any(|r| r.name == "scepserver") {
        println!("scepserver: {}", scepserver_version());
    }
    let scepserver = rows.iter().find(|r| r.name == "scepserver");
    let idsync = rows
        .iter()
        .find(|r| r.name == "idsync" && r.concurrency == 1);
    if let (Some(s), Some(i)) = (scepserver, idsync) {
        if s.median() > 0.0 {
            println!(
                "ratio idsync / scepserver at 1 in flight: {:.2}x enrollments/s (target >= 2x: {}); \
                 server CPU per enrollment scepserver / idsync: {:.2}x",
                i.median() / s.median(),
                if i.median() >= 2.0 * s.median() { "met" } else { "missed" },
                s.server_ms() / i.server_ms()
            );
        }
    }
    // scepserver's file depot breaks with more than one enrollment in
    // flight (every later request is refused), so its rate at one is the
    // most it serves: the other figure that counts is each server's most.
    let idsync_most = rows
        .iter()
        .filter(|r| r.name == "idsync")
        .max_by(|a, b| a.median().total_cmp(&b.median()));
    if let (Some(s), Some(i)) = (scepserver, idsync_most) {
        if s.median() > 0.0 && i.concurrency > 1 {
            println!(
                "ratio of the most each serves, idsync at {} in flight / scepserver at 1: {:.2}x enrollments/s",
                i.concurrency,
                i.median() / s.median()
            );
        }
    }
    drop(_servers);
    rt.shutdown_timeout(Duration::from_secs(1));
}

fn new_row(
    name: &str,
    concurrency: usize,
    target: &Arc<Target>,
    challenges: Challenges,
    encoding: Encoding,
) -> Row {
    Row {
        name: name.to_owned(),
        concurrency,
        target: Arc::clone(target),
        challenges,
        rate: 0.0,
        runs: Vec::new(),
        run_notes: Vec::new(),
        latencies: Vec::new(),
        steps_ms: [0.0; 3],
        server_cpu: 0.0,
        client_cpu: 0.0,
        enrollments: 0,
        errors: Vec::new(),
        hung: false,
        registrations: 0,
        prep_seconds: 0.0,
        encoding,
    }
}
