//! The ACME benchmark: orders per second of idsync's ACME server (RFC
//! 8555) and of pebble (Debian's `pebble`, the ACME test CA), side by side
//! in one run, driven by the same client: `instant-acme` 0.8 on an HTTP
//! client of its own with TCP_NODELAY (instant-acme's default client does
//! not set it: ~44 ms per request).
//!
//! `cargo bench -p idsync --bench acme [-- --runs 3 --seconds 10 --concurrency 2 --high 16 --only NAME]`
//!
//! One order, with the account reused (one account per server and
//! variant, made before timing with the external account binding):
//! newOrder → fetch the authorization → answer its http-01 challenge →
//! poll the order until `ready` → finalize with a CSR → poll until `valid`
//! → download the certificate. The CSR is made per order, inside the
//! timing, by rcgen (a fresh P-256 key for the order's names, some tens
//! of µs of client work). The order is polled every 1, 2, 4, … ms (at most
//! 50 ms apart; the servers' `Retry-After` is not waited for), the same
//! for both servers.
//!
//! - idsync: the release `idsync serve` with one asset
//!   (`web1.example.org`, imported with `idsync import assets`), registered
//!   twice over the admin API (`POST /api/v1/enroll/acme`): for a profile
//!   with http-01 (the bench serves the challenge on the port
//!   `[acme.resolve]` sends the validator to) and for a `preauthorized`
//!   one (no challenge: the authorization is valid when the order is
//!   made). Its listener's TLS certificate is from idsync's CA, whose root
//!   (`GET /api/v1/ca`) the client trusts.
//! - pebble: a TLS certificate for 127.0.0.1 from a throwaway CA (the
//!   Debian package has none), external account binding required,
//!   `PEBBLE_VA_ALWAYS_VALID=1` (the challenge is answered but never
//!   fetched), `PEBBLE_VA_NOSLEEP=1`, `PEBBLE_WFE_NONCEREJECT=0` (no
//!   random badNonce), `PEBBLE_AUTHZREUSE=0` (a new authorization per
//!   order, as idsync). It runs at both concurrencies, as idsync: an
//!   earlier note had pebble 2.4.0 hang with 4–8 orders in flight, but it
//!   served 8 and 16 in flight here without an error in six runs
//!   (2026-12-05); a hang would show as failed orders. Missing pebble
//!   binary: a message, and its rows are skipped (nothing is installed
//!   here).
//!
//! Rows: idsync http-01, idsync preauthorized and pebble at
//! `--concurrency` (default 2), then the three at `--high` orders in
//! flight (default 16; 0 leaves them out). Each figure is the
//! median of `--runs` timed runs of `--seconds` after a 2 s warm-up
//! (orders/s: the orders finished within the `--seconds`); p50/p99 are of
//! every order of the timed runs; req/order counts every HTTP request the
//! client sent (directory and nonces included); srv cpu and cli cpu are
//! the CPU milliseconds per order of the server process and of this bench
//! (from /proc), which share the cores; under each row, the mean
//! milliseconds of each step of an order. Last, the ratios idsync/pebble
//! at the same concurrency (orders/s, and server CPU per order).
//! `--only NAME` runs the rows whose name contains NAME (`idsync`,
//! `pebble`, `http-01`, `preauthorized`), and may be repeated. Every order
//! has a 30 s timeout (an order that hits it is an error, with the step it
//! stood in; pebble 2.4.0 did so now and then even at 2 in flight), every
//! run a deadline, and the whole bench a watchdog that stops the servers
//! it started.

mod common;

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use instant_acme::{
    Account, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, ExternalAccountKey,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus,
};

use common::enrollment::{self, admin};
use common::process::{cpu_seconds, finish_run, watchdog, Server};
use common::{free_port, median, Flags};

/// The asset's name, the one name every order asks for.
const NAME: &str = "web1.example.org";
/// The profiles of the two idsync variants.
const PROFILE: &str = "Bench ACME";
const PROFILE_PRE: &str = "Bench ACME preauthorized";
const WARM_UP: Duration = Duration::from_secs(2);
const ORDER_TIMEOUT: Duration = Duration::from_secs(30);
/// A row that saw this many failed orders stops early.
const MAX_ERRORS: usize = 50;

struct Args {
    runs: usize,
    seconds: u64,
    concurrency: usize,
    /// idsync's extra rows; 0: none.
    high: usize,
    /// Only the rows whose name contains one of these.
    only: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        seconds: 10,
        concurrency: 2,
        high: 16,
        only: Vec::new(),
    };
    let mut flags = Flags::new();
    while let Some(flag) = flags.next() {
        match flag.as_str() {
            "--runs" => a.runs = flags.number().max(1),
            "--seconds" => a.seconds = flags.number().max(1) as u64,
            "--concurrency" => a.concurrency = flags.number().max(1),
            "--high" => a.high = flags.number(),
            "--only" => a.only.push(flags.value()),
            _ => {} // cargo bench passes `--bench`
        }
    }
    a
}

// ---------------------------------------------------------------------
// The client: instant-acme on a hyper client with TCP_NODELAY, counting
// requests and keeping the first refusals (request and answer).

type Hyper = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<HttpConnector>,
    BodyWrapper<Bytes>,
>;

#[derive(Default)]
struct Traffic {
    requests: AtomicU64,
    refused: AtomicU64,
    /// The first few non-2xx exchanges, as text.
    refusals: Mutex<Vec<String>>,
}

struct NoDelayClient {
    hyper: Hyper,
    traffic: Arc<Traffic>,
}

/// An HTTPS client that trusts the roots in `root_pem` only, with
/// TCP_NODELAY on its connections, HTTP/1.1, keep-alive.
fn client(root_pem: &[u8], traffic: Arc<Traffic>) -> Box<dyn HttpClient> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem) {
        roots.add(cert.expect("a PEM root")).expect("a root");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.set_nodelay(true);
    tcp.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(tcp);
    Box::new(NoDelayClient {
        hyper: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https),
        traffic,
    })
}

impl HttpClient for NoDelayClient {
    fn request(
        &self,
        req: hyper::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>>
    {
        let hyper = self.hyper.clone();
        let traffic = Arc::clone(&self.traffic);
        Box::pin(async move {
            // The request body is kept to show a refused request.
            let (parts, body) = req.into_parts();
            let sent = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let line = format!("{} {}", parts.method, parts.uri);
            let req = hyper::Request::from_parts(parts, BodyWrapper::from(sent.to_vec()));
            let mut rsp = HttpClient::request(&hyper, req).await?;
            traffic.requests.fetch_add(1, Ordering::Relaxed);
            let status = rsp.parts.status;
            if !status.is_success() && !status.is_redirection() {
                traffic.refused.fetch_add(1, Ordering::Relaxed);
                let answer = rsp
                    .body
                    .into_bytes()
                    .await
                    .map_err(instant_acme::Error::Other)?;
                let mut kept = traffic.refusals.lock().unwrap();
                if kept.len() < 5 {
                    kept.push(format!(
                        "{line}\n      request: {}\n      answer: {status} {}",
                        describe_jws(&sent),
                        String::from_utf8_lossy(&answer)
                    ));
                }
                rsp.body = Box::new(answer);
            }
            Ok(rsp)
        })
    }
}

/// A flattened JWS as `protected` and `payload`, decoded.
fn describe_jws(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return format!("{} bytes", body.len());
    };
    let part = |k: &str| {
        v[k].as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let payload = part("payload");
    let payload = if payload.len() > 300 {
        format!("{}… ({} bytes)", &payload[..300], payload.len())
    } else {
        payload
    };
    format!("protected {} payload {payload:?}", part("protected"))
}

// ---------------------------------------------------------------------
// The http-01 responder: `/.well-known/acme-challenge/{token}` → the key
// authorization, for the tokens of the orders in flight.

type Challenges = Arc<Mutex<HashMap<String, String>>>;

async fn serve_http01(listener: tokio::net::TcpListener, challenges: Challenges) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let challenges = Arc::clone(&challenges);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let token = req
                    .uri()
                    .path()
                    .strip_prefix("/.well-known/acme-challenge/")
                    .unwrap_or("");
                let found = challenges.lock().unwrap().get(token).cloned();
                let rsp = match found {
                    Some(k) => hyper::Response::new(Full::new(Bytes::from(k))),
                    None => {
                        let mut r = hyper::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::NOT_FOUND;
                        r
                    }
                };
                async move { Ok::<_, std::convert::Infallible>(rsp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

// ---------------------------------------------------------------------
// One order.

/// What a row orders with.
struct Job {
    account: Account,
    traffic: Arc<Traffic>,
    challenges: Challenges,
    /// The server's process, for its CPU time.
    server_pid: u32,
}

/// Poll the order until it is `want`; an error at `invalid`.
async fn poll(order: &mut instant_acme::Order, want: OrderStatus) -> Result<(), String> {
    let mut delay = Duration::from_millis(1);
    loop {
        tokio::time::sleep(delay).await;
        let state = order.refresh().await.map_err(|e| format!("poll: {e}"))?;
        if state.status == want {
            return Ok(());
        }
        match state.status {
            OrderStatus::Pending | OrderStatus::Processing | OrderStatus::Ready => {}
            other => {
                return Err(format!(
                    "poll: the order is {other:?}, error {:?}",
                    state.error
                ))
            }
        }
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// The steps of an order, timed one by one.
const STEPS: [&str; 6] = [
    "newOrder",
    "authz+challenge",
    "until ready",
    "finalize",
    "until valid",
    "certificate",
];

/// newOrder → authorization (and its challenge) → ready → finalize →
/// valid → certificate; the milliseconds of each step. `at` is the step
/// under way (to tell where an order that timed out stood).
async fn one_order(job: &Job, at: &AtomicUsize) -> Result<[f64; 6], String> {
    let mut tokens = Vec::new();
    let result = order_steps(job, at, &mut tokens).await;
    let mut c = job.challenges.lock().unwrap();
    for t in &tokens {
        c.remove(t);
    }
    result
}

async fn order_steps(
    job: &Job,
    at: &AtomicUsize,
    tokens: &mut Vec<String>,
) -> Result<[f64; 6], String> {
    let mut took = [0.0; 6];
    let mut t = Instant::now();
    at.store(0, Ordering::Relaxed);
    let mut lap = |i: usize| {
        took[i] = t.elapsed().as_secs_f64() * 1000.0;
        t = Instant::now();
        at.store(i + 1, Ordering::Relaxed);
    };
    let ids = [Identifier::Dns(NAME.to_owned())];
    let mut order = job
        .account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(|e| format!("newOrder: {e}"))?;
    lap(0);
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => return Err(format!("authorization: {other:?}")),
        }
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or("authorization: no http-01 challenge")?;
        let key = challenge.key_authorization().as_str().to_owned();
        let token = challenge.token.clone();
        job.challenges.lock().unwrap().insert(token.clone(), key);
        tokens.push(token);
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("challenge: {e}"))?;
    }
    lap(1);
    if order.state().status != OrderStatus::Ready {
        poll(&mut order, OrderStatus::Ready).await?;
    }
    lap(2);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![NAME.to_owned()]).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    lap(3);
    if order.state().status != OrderStatus::Valid {
        poll(&mut order, OrderStatus::Valid).await?;
    }
    lap(4);
    let pem = order
        .certificate()
        .await
        .map_err(|e| format!("certificate: {e}"))?
        .ok_or("certificate: none")?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(format!("certificate: not a PEM chain: {pem:.200}"));
    }
    lap(5);
    Ok(took)
}

// ---------------------------------------------------------------------
// Runs and rows.

struct RunFigures {
    orders_per_s: f64,
    /// Milliseconds summed per step, over the orders of the run.
    steps_ms: [f64; 6],
    /// CPU seconds of the server and of the bench process in the run.
    server_cpu: f64,
    client_cpu: f64,
    latencies_ms: Vec<f64>,
    requests: u64,
    orders: u64,
    errors: Vec<String>,
    hung: bool,
}

/// `concurrency` order loops for `seconds`; orders/s counts the orders
/// finished within the `seconds` (latencies, CPU and requests count the
/// orders in flight then too, finished after).
async fn run(job: &Arc<Job>, seconds: f64, concurrency: usize) -> RunFigures {
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let steps = Arc::new(Mutex::new([0.0f64; 6]));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let requests_before = job.traffic.requests.load(Ordering::Relaxed);
    let (server_before, client_before) = (cpu_seconds(Some(job.server_pid)), cpu_seconds(None));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let in_time = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (job, stop) = (Arc::clone(job), Arc::clone(&stop));
        let (latencies, errors) = (Arc::clone(&latencies), Arc::clone(&errors));
        let (steps, in_time) = (Arc::clone(&steps), Arc::clone(&in_time));
        tasks.push(tokio::spawn(async move {
            let at = AtomicUsize::new(0);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                match tokio::time::timeout(ORDER_TIMEOUT, one_order(&job, &at)).await {
                    Ok(Ok(took)) => {
                        if Instant::now() <= deadline {
                            in_time.fetch_add(1, Ordering::Relaxed);
                        }
                        latencies
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_secs_f64() * 1000.0);
                        let mut sums = steps.lock().unwrap();
                        for (sum, ms) in sums.iter_mut().zip(took) {
                            *sum += ms;
                        }
                    }
                    Ok(Err(e)) => errors.lock().unwrap().push(e),
                    Err(_) => errors.lock().unwrap().push(format!(
                        "no answer within {ORDER_TIMEOUT:?}, in step {}",
                        STEPS[at.load(Ordering::Relaxed).min(STEPS.len() - 1)]
                    )),
                }
                if errors.lock().unwrap().len() >= MAX_ERRORS {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }));
    }
    let grace = ORDER_TIMEOUT + Duration::from_secs(5);
    let hung = finish_run(tasks, &stop, deadline, Duration::from_millis(20), grace).await;
    let latencies_ms = std::mem::take(&mut *latencies.lock().unwrap());
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    let steps_ms = *steps.lock().unwrap();
    RunFigures {
        orders_per_s: in_time.load(Ordering::Relaxed) as f64 / seconds,
        steps_ms,
        server_cpu: cpu_seconds(Some(job.server_pid)) - server_before,
        client_cpu: cpu_seconds(None) - client_before,
        orders: latencies_ms.len() as u64,
        latencies_ms,
        requests: job.traffic.requests.load(Ordering::Relaxed) - requests_before,
        errors,
        hung,
    }
}

struct Row {
    name: String,
    concurrency: usize,
    median: f64,
    runs: Vec<f64>,
    p50: f64,
    p99: f64,
    requests_per_order: f64,
    /// CPU milliseconds per order: the server's, the bench's.
    server_ms: f64,
    client_ms: f64,
    errors: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Warm up, then `runs` timed runs; the row, printed.
fn measure(
    rt: &tokio::runtime::Runtime,
    name: &str,
    job: &Arc<Job>,
    concurrency: usize,
    a: &Args,
) -> Row {
    let warm = rt.block_on(run(job, WARM_UP.as_secs_f64(), concurrency));
    let mut errors: Vec<String> = warm.errors;
    let mut all = Vec::new();
    let (mut runs, mut requests, mut orders) = (Vec::new(), 0, 0);
    let (mut server_cpu, mut client_cpu) = (0.0, 0.0);
    let mut steps = [0.0f64; 6];
    let mut hung = warm.hung;
    if errors.is_empty() && !hung {
        for _ in 0..a.runs {
            let f = rt.block_on(run(job, a.seconds as f64, concurrency));
            runs.push(f.orders_per_s);
            all.extend(f.latencies_ms);
            requests += f.requests;
            server_cpu += f.server_cpu;
            for (sum, ms) in steps.iter_mut().zip(f.steps_ms) {
                *sum += ms;
            }
            client_cpu += f.client_cpu;
            orders += f.orders;
            errors.extend(f.errors);
            hung |= f.hung;
            if hung || errors.len() >= MAX_ERRORS {
                break;
            }
        }
    }
    all.sort_by(f64::total_cmp);
    let row = Row {
        name: name.to_owned(),
        concurrency,
        median: if runs.is_empty() {
            f64::NAN
        } else {
            median(runs.clone())
        },
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
        requests_per_order: requests as f64 / orders.max(1) as f64,
        server_ms: server_cpu * 1000.0 / orders.max(1) as f64,
        client_ms: client_cpu * 1000.0 / orders.max(1) as f64,
        errors: errors.len(),
        runs,
    };
    println!(
        "{:<26} {:>4} {:>10.1} {:>9.1} {:>9.1} {:>9.1} {:>8.2} {:>8.2} {:>7}   runs: {}",
        row.name,
        row.concurrency,
        row.median,
        row.p50,
        row.p99,
        row.requests_per_order,
        row.server_ms,
        row.client_ms,
        row.errors,
        row.runs
            .iter()
            .map(|r| format!("{r:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if orders > 0 {
        println!(
            "    mean ms per step: {}",
            STEPS
                .iter()
                .zip(steps)
                .map(|(name, ms)| format!("{name} {:.2}", ms / orders as f64))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if hung {
        println!("    orders still unanswered {ORDER_TIMEOUT:?} after the run ended (a hang)");
    }
    let mut distinct: Vec<(String, usize)> = Vec::new();
    for e in &errors {
        match distinct.iter_mut().find(|(m, _)| m == e) {
            Some((_, n)) => *n += 1,
            None => distinct.push((e.clone(), 1)),
        }
    }
    for (e, n) in distinct.iter().take(5) {
        println!("    error ({n}x): {e}");
    }
    let kept = job.traffic.refusals.lock().unwrap();
    if !kept.is_empty() {
        println!(
            "    {} non-2xx answers so far on this account; the first:",
            job.traffic.refused.load(Ordering::Relaxed)
        );
        for k in kept.iter() {
            println!("    - {k}");
        }
    }
    row
}

// ---------------------------------------------------------------------
// idsync.

struct Idsync {
    server: Server,
    acme: u16,
    admin: u16,
    root_pem: Vec<u8>,
}

/// A plain HTTP/1.1 request to the admin API with the bench token:
/// status and body.
fn start_idsync(dir: &Path, http01: u16) -> Idsync {
    let acme = free_port();
    let extra = format!(
        r#"[[profiles]]
name = "{PROFILE}"
protocol = "acme"
preauthorized = false
[[profiles]]
name = "{PROFILE_PRE}"
protocol = "acme"
preauthorized = true
[acme]
enabled = true
listen = "127.0.0.1:{acme}"
# One client on one address is the whole load here.
requests_per_minute_per_peer = 1000000000
[acme.resolve]
"{NAME}" = "127.0.0.1:{http01}"
"#
    );
    let started = enrollment::start(dir, &extra, (NAME, PROFILE, "Bench web server"), acme);
    Idsync {
        server: started.server,
        acme,
        admin: started.admin,
        root_pem: started.root_pem,
    }
}

/// Register the asset for `profile`: the external account binding (key
/// id, HMAC key bytes).
fn register(d: &Idsync, profile: &str) -> (String, Vec<u8>) {
    let body = serde_json::json!({"asset": NAME, "profile": profile}).to_string();
    let (status, answer) =
        admin(d.admin, "POST", "/api/v1/enroll/acme", &body).expect("POST /api/v1/enroll/acme");
    assert_eq!(status, 201, "POST /api/v1/enroll/acme {body}: {answer}");
    let v: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    let kid = v["acme"]["keyId"].as_str().expect("acme.keyId").to_owned();
    let hmac = URL_SAFE_NO_PAD
        .decode(v["acme"]["hmacKey"].as_str().expect("acme.hmacKey"))
        .expect("base64url hmacKey");
    (kid, hmac)
}

/// An account on `directory` bound with (`kid`, `hmac`), on its own
/// client.
fn account(
    rt: &tokio::runtime::Runtime,
    root_pem: &[u8],
    directory: &str,
    kid: &str,
    hmac: &[u8],
    challenges: &Challenges,
    server_pid: u32,
) -> Result<Arc<Job>, String> {
    let traffic = Arc::new(Traffic::default());
    let http = client(root_pem, Arc::clone(&traffic));
    let eab = ExternalAccountKey::new(kid.to_owned(), hmac);
    let create = Account::builder_with_http(http).create(
        &NewAccount {
            contact: &[],
            terms_of_service_agreed: true,
            only_return_existing: false,
        },
        directory.to_owned(),
        Some(&eab),
    );
    let (account, _) = rt
        .block_on(async { tokio::time::timeout(ORDER_TIMEOUT, create).await })
        .map_err(|_| format!("newAccount at {directory}: no answer within {ORDER_TIMEOUT:?}"))?
        .map_err(|e| {
            let kept = traffic.refusals.lock().unwrap();
            format!(
                "newAccount at {directory}: {e}\n    {}",
                kept.join("\n    ")
            )
        })?;
    Ok(Arc::new(Job {
        account,
        traffic,
        challenges: Arc::clone(challenges),
        server_pid,
    }))
}

// ---------------------------------------------------------------------
// pebble.

struct Pebble {
    server: Server,
    directory: String,
    tls_root: Vec<u8>,
    kid: String,
    hmac: Vec<u8>,
}

/// A throwaway CA and a leaf for localhost and 127.0.0.1: the CA's PEM,
/// the leaf's chain and key files.
fn pebble_tls(dir: &Path) -> (String, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "idsync acme bench pebble TLS CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(7);
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(7);
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let (cert_file, key_file) = (dir.join("pebble-cert.pem"), dir.join("pebble-key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (issuer.pem(), cert_file, key_file)
}

/// Start pebble, or say why not.
fn start_pebble(dir: &Path) -> Result<Pebble, String> {
    let binary = ["/usr/bin/pebble", "/usr/local/bin/pebble"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join("pebble"))
                    .find(|p| p.exists())
            })
        })
        .ok_or("no pebble binary: install Debian's package (apt-get install -y pebble) to compare with it")?;
    let (tls_root, cert, key) = pebble_tls(dir);
    let (listen, management) = (free_port(), free_port());
    let mut hmac = [0u8; 32];
    getrandom::fill(&mut hmac).expect("random bytes");
    let kid = "bench".to_owned();
    let config = dir.join("pebble.json");
    std::fs::write(
        &config,
        serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": cert,
            "privateKey": key,
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": true,
            "externalAccountMACKeys": {kid.as_str(): URL_SAFE_NO_PAD.encode(hmac)},
        }})
        .to_string(),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("pebble.log")).unwrap();
    let child = Command::new(&binary)
        .arg("-config")
        .arg(&config)
        .env("PEBBLE_VA_ALWAYS_VALID", "1")
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env("PEBBLE_WFE_NONCEREJECT", "0")
        .env("PEBBLE_AUTHZREUSE", "0")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let mut server = Server::new(child, false);
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", listen)).is_err() {
        if let Some(status) = server.exited() {
            let log = std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
            return Err(format!("pebble exited ({status}): {log}"));
        }
        if Instant::now() > deadline {
            return Err("pebble did not listen within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Pebble {
        server,
        directory: format!("https://127.0.0.1:{listen}/dir"),
        tls_root: tls_root.into_bytes(),
        kid,
        hmac: hmac.to_vec(),
    })
}

fn pebble_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "pebble"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| format!("Debian package {}", String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_else(|| "version unknown".into())
}

// ---------------------------------------------------------------------

fn main() {
    let a = args();
    let chosen = |name: &str| a.only.is_empty() || a.only.iter().any(|o| name.contains(o.as_str()));
    let mut concurrencies = vec![a.concurrency];
    if a.high > 0 && a.high != a.concurrency {
        concurrencies.push(a.high);
    }
    let names_at = |c: usize| {
        [
            ("idsync http-01".to_owned(), c, false),
            ("idsync preauthorized".to_owned(), c, true),
        ]
    };
    let mut idsync_rows: Vec<(String, usize, bool)> =
        concurrencies.iter().flat_map(|c| names_at(*c)).collect();
    idsync_rows.retain(|(n, _, _)| chosen(n));
    let with_pebble = chosen("pebble");
    let rows = idsync_rows.len() + if with_pebble { concurrencies.len() } else { 0 };
    watchdog(
        "acme",
        Duration::from_secs(300 + rows as u64 * (5 + a.runs as u64 * (a.seconds + 40))),
    );

    let tmp = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let challenges: Challenges = Arc::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("the http-01 port");
    let http01 = listener.local_addr().unwrap().port();
    rt.spawn(serve_http01(listener, Arc::clone(&challenges)));

    let csr = || {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![NAME.to_owned()]).unwrap();
        params.serialize_request(&key).unwrap();
    };
    csr();
    let keygen = Instant::now();
    for _ in 0..100 {
        csr();
    }
    let csr_us = keygen.elapsed().as_secs_f64() * 1e6 / 100.0;

    println!(
        "ACME orders (newOrder, authorization + http-01, finalize, poll, download) with instant-acme 0.8 \
         on a TCP_NODELAY HTTP/1.1 client, one reused account per row; CSR per order (rcgen P-256, {csr_us:.0} µs \
         each, inside the timing); {} runs x {} s after a {} s warm-up; orders/s is the median, p50/p99 of all \
         timed orders; {} cores",
        a.runs,
        a.seconds,
        WARM_UP.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "srv cpu / cli cpu: CPU ms per order of the server process and of this bench (client and http-01 \
         responder), both on the same cores; load average at the start: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<26} {:>4} {:>10} {:>9} {:>9} {:>9} {:>8} {:>8} {:>7}",
        "server / variant",
        "conc",
        "orders/s",
        "p50 ms",
        "p99 ms",
        "req/order",
        "srv cpu",
        "cli cpu",
        "errors"
    );

    let mut results: Vec<Row> = Vec::new();
    if !idsync_rows.is_empty() {
        let d = start_idsync(tmp.path(), http01);
        let directory = format!("https://127.0.0.1:{}/acme/directory", d.acme);
        let mut jobs = HashMap::new();
        for (pre, profile) in [(false, PROFILE), (true, PROFILE_PRE)] {
            if !idsync_rows.iter().any(|(_, _, p)| *p == pre) {
                continue;
            }
            let (kid, hmac) = register(&d, profile);
            let pid = d.server.pid();
            match account(&rt, &d.root_pem, &directory, &kid, &hmac, &challenges, pid) {
                Ok(job) => {
                    jobs.insert(pre, job);
                }
                Err(e) => println!("idsync ({profile}): {e}"),
            }
        }
        for (name, c, pre) in &idsync_rows {
            if let Some(job) = jobs.get(pre) {
                results.push(measure(&rt, name, job, *c, &a));
            }
        }
    }
    if with_pebble {
        let dir = tmp.path().join("pebble");
        std::fs::create_dir_all(&dir).unwrap();
        match start_pebble(&dir) {
            Err(e) => println!("pebble: skipped: {e}"),
            Ok(p) => {
                let name = "pebble (VA always valid)";
                let pid = p.server.pid();
                match account(
                    &rt,
                    &p.tls_root,
                    &p.directory,
                    &p.kid,
                    &p.hmac,
                    &challenges,
                    pid,
                ) {
                    Ok(job) => {
                        for c in &concurrencies {
                            let row = measure(&rt, name, &job, *c, &a);
                            if row.errors > 0 {
                                print_log_end(&dir.join("pebble.log"));
                            }
                            results.push(row);
                        }
                    }
                    Err(e) => {
                        let log =
                            std::fs::read_to_string(dir.join("pebble.log")).unwrap_or_default();
                        println!("pebble: {e}\n{log}");
                    }
                }
                println!("pebble: {}", pebble_version());
            }
        }
    }

    let pebbles = results.iter().filter(|r| r.name.starts_with("pebble"));
    for p in pebbles.filter(|p| p.median > 0.0) {
        for r in results
            .iter()
            .filter(|r| r.name.starts_with("idsync") && r.concurrency == p.concurrency)
        {
            println!(
                "ratio {} / pebble at {} in flight: {:.2}x orders/s (target >= 5x); \
                 server CPU per order pebble / idsync: {:.2}x",
                r.name,
                p.concurrency,
                r.median / p.median,
                p.server_ms / r.server_ms
            );
        }
    }
    rt.shutdown_timeout(Duration::from_secs(1));
}

/// The last lines of pebble's log, under a row that saw errors.
fn print_log_end(log: &Path) {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    println!("    the end of pebble's log:");
    for l in &lines[lines.len().saturating_sub(15)..] {
        println!("      {l}");
    }
}
