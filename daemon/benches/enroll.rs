//! The enrollment benchmark: P10 signings/s and P12 issuances/s, ECDSA
//! P-256 and RSA-2048, through the whole enrollment path of the daemon:
//! asset and profile look-up, CSR parse and signature check, policy checks,
//! issuance by the local CA, and the durable group-commit write of the
//! request, its certificate and their change events to the store (redb).
//! P12 adds key generation (RSA on the bounded blocking pool) and the
//! PKCS#12 file (PBKDF2 at `enrollment.p12_iterations`, 2048 by default).
//!
//! `cargo bench -p idsync --bench enroll [-- --runs 3 --seconds 5 --concurrency 64 --only p12 --p12-iterations 2048]`
//!
//! Each figure is the median of `--runs` timed runs, each after a short
//! warm-up, with `--concurrency` enrollments in flight (as many HTTP
//! clients would have) on a 2-worker runtime, the daemon's shape. The CSRs
//! are made before timing (a client's work, not the daemon's).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idsync::config::Config;
use idsync::infra::metrics::Metrics;
use idsync::sources::enroll::{Enrollment, Password, Target};
use idsync_connectors::ca;
use idsync_schema::{
    AssetInput, CertificateData, Field, KeyType, ProfileSettings, Protocol, Source,
};
use idsync_store::Actor;

/// The allocator of the `idsync` binary (daemon/src/main.rs), so the
/// figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    runs: usize,
    seconds: u64,
    concurrency: usize,
    /// Only the figures whose name contains this (`p10`, `p12 rsa`, …).
    only: Option<String>,
    /// `enrollment.p12_iterations` (default 2048).
    p12_iterations: u32,
}

fn args() -> Args {
    let mut a = Args {
        runs: 3,
        seconds: 5,
        concurrency: 64,
        only: None,
        p12_iterations: idsync_connectors::ca::P12_KDF_ITERATIONS,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let number = || {
            argv.get(i + 1)
                .and_then(|v| v.parse::<usize>().ok())
                .expect("a number after the flag")
        };
        match argv[i].as_str() {
            "--runs" => a.runs = number(),
            "--seconds" => a.seconds = number() as u64,
            "--concurrency" => a.concurrency = number(),
            "--only" => a.only = argv.get(i + 1).map(|v| v.to_lowercase()),
            "--p12-iterations" => a.p12_iterations = number() as u32,
            _ => {} // cargo bench passes `--bench`
        }
        i += 1;
    }
    a
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

const ASSET: &str = "bench.example.org";

/// A data dir with the two profiles and one asset per profile.
fn setup(dir: &std::path::Path, p12_iterations: u32) -> (Arc<Enrollment>, tokio::runtime::Runtime) {
    let mut cfg = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    cfg.enrollment.p12_iterations = p12_iterations;
    let mut p10 = ProfileSettings::new("P10", Protocol::P10);
    p10.domain_policy.names = vec!["*.example.org".into()];
    cfg.profiles = vec![p10, ProfileSettings::new("P12", Protocol::P12)];
    let rec = idsync::app::open(&cfg).expect("open the store");
    let mut tx = rec.begin(Source::Api, Actor::default());
    for (name, profile) in [(ASSET, "P10"), ("p12.example.org", "P12")] {
        let mut a = AssetInput::new(name);
        a.certificate_profile = Field::Set(profile.into());
        a.dns_names = Field::Set(vec![name.into()]);
        tx.upsert_asset(a).expect("asset");
    }
    tx.commit().expect("commit");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let enrollment = runtime.block_on(async {
        idsync::sources::enroll::start(cfg.enrollment_settings(), &rec, &Arc::new(Metrics::new()))
            .expect("enrollment")
    });
    (enrollment, runtime)
}

/// CSRs (DER) for `key_type`: RSA keys are slow to make, so a few keys
/// sign many CSRs.
fn csrs(key_type: KeyType, n: usize) -> Vec<Vec<u8>> {
    let keys: Vec<ca::GeneratedKey> = (0..n.min(if key_type.is_rsa() { 4 } else { n }))
        .map(|_| ca::generate_key(key_type).expect("key"))
        .collect();
    (0..n)
        .map(|i| {
            let subject = [("CN".to_owned(), format!("host{i}.example.org"))];
            keys[i % keys.len()].csr(&subject).expect("csr").der
        })
        .collect()
}

/// Run `one` with `concurrency` in flight for `seconds`; completions/s.
fn rate<F, Fut>(rt: &tokio::runtime::Runtime, seconds: f64, concurrency: usize, one: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let one = Arc::new(one);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let (one, done, stop) = (one.clone(), done.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = w as u64;
                while !stop.load(Ordering::Relaxed) {
                    one(i).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    i += concurrency as u64;
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.expect("task");
        }
    });
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let (svc, rt) = setup(dir.path(), a.p12_iterations);
    println!(
        "enrollment through the daemon's code path (store: redb, durable group commits); {} runs x {} s, {} in flight, P12 at {} PBKDF2 iterations; medians",
        a.runs, a.seconds, a.concurrency, a.p12_iterations
    );
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "figure", "per second", "target", "verdict"
    );
    let report = |name: &str, figures: Vec<f64>, target: Option<f64>| {
        let m = median(figures.clone());
        let (t, verdict) = match target {
            Some(t) => (format!("{t:.0}"), if m >= t { "PASS" } else { "MISS" }),
            None => ("-".into(), ""),
        };
        let runs: Vec<String> = figures.iter().map(|f| format!("{f:.0}")).collect();
        println!(
            "{name:<28} {m:>12.0} {t:>10} {verdict:>10}   runs: {}",
            runs.join(", ")
        );
    };

    let wanted = |name: &str| {
        a.only
            .as_ref()
            .is_none_or(|o| name.to_lowercase().contains(o))
    };
    for key_type in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        let name = format!("P10 {key_type} signings");
        if !wanted(&name) {
            continue;
        }
        let pool = Arc::new(csrs(key_type, 4096));
        let mut figures = Vec::new();
        for run in 0..=a.runs {
            let (svc, pool) = (svc.clone(), pool.clone());
            let seconds = if run == 0 { 1.0 } else { a.seconds as f64 };
            let r = rate(&rt, seconds, a.concurrency, move |i| {
                let (svc, pool) = (svc.clone(), pool.clone());
                async move {
                    let target = Target {
                        asset: Some(ASSET.into()),
                        profile: None,
                    };
                    let csr = &pool[i as usize % pool.len()];
                    svc.enroll_p10("bench", &target, csr)
                        .await
                        .expect("P10 issued");
                }
            });
            if run > 0 {
                figures.push(r);
            }
        }
        let target = (key_type == KeyType::EcdsaP256).then_some(5000.0);
        report(&name, figures, target);
    }

    for key_type in [KeyType::EcdsaP256, KeyType::Rsa2048] {
        let name = format!("P12 {key_type} issuances");
        if !wanted(&name) {
            continue;
        }
        let mut figures = Vec::new();
        // RSA key generation takes 0.1 s a key: give it time for a figure.
        let seconds = if key_type.is_rsa() {
            a.seconds.max(10) as f64
        } else {
            a.seconds as f64
        };
        for run in 0..=a.runs {
            let svc = svc.clone();
            let r = rate(
                &rt,
                if run == 0 { 1.0 } else { seconds },
                a.concurrency,
                move |_| {
                    let svc = svc.clone();
                    async move {
                        let target = Target {
                            asset: Some("p12.example.org".into()),
                            profile: None,
                        };
                        let password = Password::new("bench-password-1".into()).expect("password");
                        let done = svc
                            .enroll_p12(
                                "bench",
                                &target,
                                CertificateData::default(),
                                Some(key_type),
                                Some(password),
                            )
                            .await
                            .expect("P12 issued");
                        assert!(done.p12.is_some());
                    }
                },
            );
            if run > 0 {
                figures.push(r);
            }
        }
        let target = (key_type == KeyType::EcdsaP256).then_some(2000.0);
        report(&name, figures, target);
    }
}
