//! The LDAP connector against the ceiling a user would compare it with:
//! `ldapadd` of the same entries over one connection, on the same slapd.
//!
//! Per run (median of `RUNS`, default 3): a throwaway slapd (NoSync, as
//! both sides get the same), `ldapadd -f` of N/2 `inetOrgPerson` entries
//! into `ou=ceiling`, then `idsync serve` with an LDAP connector and a
//! dropped CSV of N users, timed from the drop until the connector's lag is
//! 0 and every entry is in LDAP, then `ldapadd -f` of the other N/2 (the
//! two halves timed together); then one-row files dropped one at a time,
//! timed until their entry is in LDAP (drop-to-LDAP latency).
//!
//! `cargo bench -p idsync-tests --bench ldap` (N = 100,000; set
//! `LDAP_BENCH_USERS` and `LDAP_BENCH_RUNS` for shorter runs).

use std::time::{Duration, Instant};

use idsync_tests::ldap::{Slapd, BASE};
use idsync_tests::{free_port, wait_until, Env};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The connector's lag is 0, read from `/metrics` over one kept-alive
/// connection: polling with `idsync status` would start a process per
/// look, CPU that the machine's two cores owe slapd while it is timed.
fn lag_zero(agent: &ureq::Agent, port: u16, token: &str) -> bool {
    agent
        .get(&format!("http://127.0.0.1:{port}/metrics"))
        .set("Authorization", &format!("Bearer {token}"))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .is_some_and(|m| m.contains("idsync_connector_lag{connector=\"ldap\"} 0\n"))
}

/// Connector settings other than the defaults, to compare
/// (`LDAP_BENCH_CONCURRENCY`, `LDAP_BENCH_ASSIGN_UUID`, `LDAP_BENCH_BATCH`).
fn tuning() -> String {
    let mut t = String::new();
    if let Ok(c) = std::env::var("LDAP_BENCH_CONCURRENCY") {
        t.push_str(&format!("concurrency = {c}\n"));
    }
    if let Ok(a) = std::env::var("LDAP_BENCH_ASSIGN_UUID") {
        t.push_str(&format!("assign_entry_uuid = {a}\n"));
    }
    if let Ok(b) = std::env::var("LDAP_BENCH_BATCH") {
        t.push_str(&format!("[connectors.delivery]\nbatch_size = {b}\n"));
    }
    t
}

struct Run {
    ldapadd_per_s: f64,
    idsync_per_s: f64,
    p50_ms: f64,
}

fn one_run(n: usize, latency_samples: usize) -> Run {
    let slapd = Slapd::start(false);
    slapd.add(&format!(
        "dn: ou=ceiling,{BASE}\nobjectClass: organizationalUnit\nou: ceiling\n"
    ));

    // The ceiling: the same entries idsync writes, one connection. Half
    // before idsync's turn and half after, so that both sides see the same
    // database size on average and the same drift of a shared machine.
    let ldapadd_half = |range: std::ops::Range<usize>| {
        let mut ldif = String::with_capacity(range.len() * 260);
        for i in range.clone() {
            ldif.push_str(&format!(
                "dn: uid=user{i},ou=ceiling,{BASE}\nobjectClass: inetOrgPerson\nobjectClass: organizationalPerson\n\
                 objectClass: person\nobjectClass: top\ncn: Last{i}\nsn: Last{i}\nmail: user{i}@example.org\nuid: user{i}\n\n"
            ));
        }
        let file = slapd
            .dir
            .path()
            .join(format!("ceiling-{}.ldif", range.start));
        std::fs::write(&file, ldif).unwrap();
        slapd.ldapadd_file(&file)
    };
    let mut ldapadd_s = ldapadd_half(0..n / 2);

    let port = free_port();
    let env = Env::with_config(&format!(
        "[admin]\nlisten = \"127.0.0.1:{port}\"\n[import]\nbatch_rows = 1000\n{}{}",
        slapd.connector_toml("ldap"),
        tuning()
    ));
    let mut d = env.serve(&[]);
    let agent = ureq::Agent::new();
    let token = env.admin_token();
    let lag_zero = || lag_zero(&agent, port, &token);
    wait_until("ready", Duration::from_secs(60), || {
        env.inbox().join("users/processed").exists() && lag_zero()
    });
    let mut csv = String::with_capacity(n * 60);
    csv.push_str("status,loginName,mail,lastName\n");
    for i in 0..n {
        csv.push_str(&format!("active,user{i},user{i}@example.org,Last{i}\n"));
    }
    let started = Instant::now();
    env.drop_file("users", "bulk.csv", csv);
    // Lag 0 only counts once the import is done. Polled gently: each
    // look is a process of its own and the machine is shared with slapd.
    let poll = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(1200);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    poll("imported", &|| {
        !env.finished("users", "processed").is_empty()
    });
    let import_s = started.elapsed().as_secs_f64();
    poll("delivered", &lag_zero);
    let idsync_s = started.elapsed().as_secs_f64();
    println!("  (import done after {import_s:.1} s, last entry in LDAP after {idsync_s:.1} s)");
    let people = format!("ou=people,{BASE}");
    assert_eq!(slapd.count(&people, "(uid=user*)"), n, "every user in LDAP");
    ldapadd_s += ldapadd_half(n / 2..n);

    let mut lat = Vec::new();
    for j in 0..latency_samples {
        let dn = format!("uid=one{j},ou=people,{BASE}");
        let t = Instant::now();
        env.drop_file(
            "users",
            &format!("one{j}.csv"),
            format!("status,loginName,mail,lastName\nactive,one{j},one{j}@example.org,One\n"),
        );
        wait_until("the one-row file in LDAP", Duration::from_secs(30), || {
            slapd.entry(&dn).is_some()
        });
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    d.signal("TERM");
    d.wait(Duration::from_secs(60));
    Run {
        ldapadd_per_s: n as f64 / ldapadd_s,
        idsync_per_s: n as f64 / idsync_s,
        p50_ms: median(&mut lat),
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let n = env_usize("LDAP_BENCH_USERS", 100_000);
    let runs = env_usize("LDAP_BENCH_RUNS", 3);
    let samples = env_usize("LDAP_BENCH_LATENCY_SAMPLES", 15);
    println!("ldap bench: {n} users, {runs} runs, slapd mdb with olcDbNoSync, median of runs");
    let mut results = Vec::new();
    for r in 0..runs {
        let run = one_run(n, samples);
        println!(
            "run {}: ldapadd {:.0} entries/s, idsync {:.0} entries/s, ratio {:.2}, drop-to-LDAP p50 {:.1} ms",
            r + 1,
            run.ldapadd_per_s,
            run.idsync_per_s,
            run.idsync_per_s / run.ldapadd_per_s,
            run.p50_ms
        );
        results.push(run);
    }
    let ldapadd = median(&mut results.iter().map(|r| r.ldapadd_per_s).collect::<Vec<_>>());
    let idsync = median(&mut results.iter().map(|r| r.idsync_per_s).collect::<Vec<_>>());
    let ratio = median(
        &mut results
            .iter()
            .map(|r| r.idsync_per_s / r.ldapadd_per_s)
            .collect::<Vec<_>>(),
    );
    let p50 = median(&mut results.iter().map(|r| r.p50_ms).collect::<Vec<_>>());
    println!(
        "median: idsync pushing {n} users: {idsync:.0} entries/s (drop to last entry in LDAP)"
    );
    println!("median: ldapadd, one connection:  {ldapadd:.0} entries/s");
    println!("median: ratio idsync/ldapadd:     {ratio:.2} (target >= 1.0)");
    println!("median: drop-to-LDAP p50, one-row file: {p50:.1} ms (target < 300 ms)");
}
