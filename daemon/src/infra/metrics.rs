//! What the running daemon knows about itself, shared by the watcher (which
//! updates it), the HTTP listeners (their connection counts), the admin listener (`/metrics`, `/readyz`), the systemd
//! notifier (`STATUS=`, `WATCHDOG=1`) and `idsync status`.
//!
//! Plain atomics: updates happen once per file or per loop turn, readers
//! never block writers, and nothing here needs a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::infra::conn_limit::ListenerStats;
use crate::infra::connector_stats::ConnectorStats;
pub use crate::infra::recent_files::FinishedFile;
use idsync_schema::report::FileOutcome;

/// Upper bounds (seconds) of the import-duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0];

/// `/healthz` fails when the main loop has not turned for this long.
pub const HEARTBEAT_MAX_AGE: Duration = Duration::from_secs(60);

/// The daemon's live figures.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    ready: AtomicBool,
    /// Unix milliseconds of the last turn of a healthy loop.
    heartbeat_ms: AtomicU64,
    files_accepted: AtomicU64,
    files_partial: AtomicU64,
    files_rejected: AtomicU64,
    rows_created: AtomicU64,
    rows_updated: AtomicU64,
    rows_unchanged: AtomicU64,
    rows_rejected: AtomicU64,
    queue_depth: AtomicU64,
    change_log_head: AtomicU64,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`], then +Inf.
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    duration_sum_us: AtomicU64,
    /// Each connector's figures, set once at start (its runner updates them).
    connectors:
        std::sync::OnceLock<Vec<std::sync::Arc<crate::infra::connector_stats::ConnectorStats>>>,
    /// Each HTTP listener's connection figures, added as it starts.
    listeners: std::sync::Mutex<Vec<std::sync::Arc<ListenerStats>>>,
    /// The store's engine, set once the store is open.
    engine: std::sync::OnceLock<&'static str>,
    /// The last measured round trip to the database, in microseconds
    /// ([`NOT_MEASURED`] for an embedded store: there is none).
    store_round_trip_us: AtomicU64,
    /// This process's role among the replicas.
    pub replica: crate::infra::replica_stats::ReplicaStats,
    /// The last files finished.
    recent_files: crate::infra::recent_files::RecentFiles,
}

/// `store_round_trip_us` of an embedded store: no database to reach.
const NOT_MEASURED: u64 = u64::MAX;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Metrics {
    /// Fresh figures: not ready, nothing counted.
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            ready: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(now_ms()),
            files_accepted: AtomicU64::new(0),
            files_partial: AtomicU64::new(0),
            files_rejected: AtomicU64::new(0),
            rows_created: AtomicU64::new(0),
            rows_updated: AtomicU64::new(0),
            rows_unchanged: AtomicU64::new(0),
            rows_rejected: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            engine: std::sync::OnceLock::new(),
            store_round_trip_us: AtomicU64::new(NOT_MEASURED),
            replica: Default::default(),
            recent_files: Default::default(),
            change_log_head: AtomicU64::new(0),
            duration_buckets: Default::default(),
            duration_sum_us: AtomicU64::new(0),
            connectors: std::sync::OnceLock::new(),
            listeners: std::sync::Mutex::default(),
        }
    }

    /// The store is open and every folder is watched.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Relaxed);
    }

    /// Whether the daemon is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    /// The main loop is alive.
    pub fn heartbeat(&self) {
        self.heartbeat_ms.store(now_ms(), Relaxed);
    }

    /// Time since the last heartbeat.
    pub fn since_heartbeat(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.heartbeat_ms.load(Relaxed)))
    }

    /// Files waiting in the inboxes or being imported.
    pub fn set_queue_depth(&self, n: u64) {
        self.queue_depth.store(n, Relaxed);
    }

    /// The change log's last sequence number.
    /// The store's engine (once, at start).
    pub fn set_engine(&self, name: &'static str) {
        let _ = self.engine.set(name);
    }

    /// A round trip to the database, as just measured (`None`: an
    /// embedded store, which has no database to reach).
    pub fn set_store_round_trip(&self, took: Option<Duration>) {
        let us = took.map_or(NOT_MEASURED, |t| {
            (t.as_micros() as u64).min(NOT_MEASURED - 1)
        });
        self.store_round_trip_us.store(us, Relaxed);
    }

    /// The last round trip, if there is one to measure.
    fn store_round_trip(&self) -> Option<Duration> {
        match self.store_round_trip_us.load(Relaxed) {
            NOT_MEASURED => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The engine and the last round trip (`null` for an embedded
    /// engine), for `/status`.
    pub fn store_json(&self) -> serde_json::Value {
        let round_trip = self.store_round_trip();
        serde_json::json!({
            "engine": self.engine.get().copied().unwrap_or("unknown"),
            "remote": round_trip.is_some(),
            "round_trip_ms": round_trip.map(|t| t.as_secs_f64() * 1000.0),
        })
    }

    pub fn set_change_log_head(&self, seq: u64) {
        self.change_log_head.store(seq, Relaxed);
    }

    /// The connectors' figures, shown from now on (set once at start).
    pub fn set_connectors(&self, stats: Vec<std::sync::Arc<ConnectorStats>>) {
        let _ = self.connectors.set(stats);
    }

    /// The connection figures of the listener `name` (`admin`, `scim`),
    /// shown from now on.
    pub fn listener_stats(&self, name: &'static str) -> std::sync::Arc<ListenerStats> {
        let mut all = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = all.iter().find(|s| s.name == name) {
            return std::sync::Arc::clone(s);
        }
        let s = std::sync::Arc::new(ListenerStats::new(name));
        all.push(std::sync::Arc::clone(&s));
        s
    }

    /// Each connector's figures for `/status`.
    pub fn connectors_json(&self) -> serde_json::Value {
        self.connectors
            .get()
            .map(|c| c.iter().map(|s| s.json()).collect())
            .unwrap_or_default()
    }

    /// Count one finished file, and keep it among the recent ones.
    pub fn record_file(&self, finished: FinishedFile, took: Duration) {
        let (outcome, summary) = (finished.outcome, &finished.summary);
        match outcome {
            FileOutcome::Accepted => &self.files_accepted,
            FileOutcome::Partial => &self.files_partial,
            FileOutcome::Rejected => &self.files_rejected,
        }
        .fetch_add(1, Relaxed);
        self.rows_created.fetch_add(summary.created, Relaxed);
        self.rows_updated.fetch_add(summary.updated, Relaxed);
        self.rows_unchanged.fetch_add(summary.unchanged, Relaxed);
        self.rows_rejected.fetch_add(summary.rejected, Relaxed);
        let secs = took.as_secs_f64();
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.duration_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.duration_buckets[DURATION_BUCKETS.len()].fetch_add(1, Relaxed);
        self.duration_sum_us
            .fetch_add(took.as_micros() as u64, Relaxed);
        self.recent_files.push(finished);
    }

    /// A one-line summary for people (`STATUS=`, `idsync status`).
    pub fn status_line(&self) -> String {
        format!(
            "{}; queue {}; files {} ok, {} partial, {} rejected; change log at {}",
            if self.is_ready() {
                "watching"
            } else {
                "starting"
            },
            self.queue_depth.load(Relaxed),
            self.files_accepted.load(Relaxed),
            self.files_partial.load(Relaxed),
            self.files_rejected.load(Relaxed),
            self.change_log_head.load(Relaxed),
        )
    }
    /// The `/status` document (also the console's overview).
    pub fn status_document(&self) -> serde_json::Value {
        let m = self;
        // `Metrics` exposes its counters only through the Prometheus text, whose
        // metric names are a public interface anyway: read them back from it.
        let text = m.render_prometheus();
        let samples: std::collections::HashMap<&str, &str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .collect();
        let n = |key: &str| samples.get(key).and_then(|v| v.parse::<u64>().ok());
        let files = |o: &str| n(&format!("idsync_files_total{{outcome=\"{o}\"}}"));
        let rows = |o: &str| n(&format!("idsync_rows_total{{outcome=\"{o}\"}}"));
        let age = m.since_heartbeat();
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "ready": m.is_ready(),
            "healthy": age < HEARTBEAT_MAX_AGE,
            "heartbeat_age_seconds": age.as_secs_f64(),
            "status": m.status_line(),
            "queue_depth": n("idsync_queue_depth"),
            "change_log_head": n("idsync_change_log_head"),
            "uptime_seconds": n("idsync_uptime_seconds"),
            "files": {
                "accepted": files("accepted"),
                "partial": files("partial"),
                "rejected": files("rejected"),
            },
            "rows": {
                "created": rows("created"),
                "updated": rows("updated"),
                "unchanged": rows("unchanged"),
                "rejected": rows("rejected"),
            },
            "recent_files": m.recent_files.json(),
            "connectors": m.connectors_json(),
            "store": m.store_json(),
            "replica": m.replica.json(),
        })
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        self.write_daemon_metrics(&mut out);
        self.write_connector_metrics(&mut out);
        self.write_listener_metrics(&mut out);
        self.write_import_histogram(&mut out);
        out
    }

    /// Files, rows, the change log, the queue, readiness, uptime.
    fn write_daemon_metrics(&self, out: &mut String) {
        let l = |a: &AtomicU64| a.load(Relaxed);
        metric(
            out,
            "idsync_files_total",
            "counter",
            "Imported files by outcome.",
            &[
                ("{outcome=\"accepted\"}", l(&self.files_accepted)),
                ("{outcome=\"partial\"}", l(&self.files_partial)),
                ("{outcome=\"rejected\"}", l(&self.files_rejected)),
            ],
        );
        metric(
            out,
            "idsync_rows_total",
            "counter",
            "Imported rows by outcome.",
            &[
                ("{outcome=\"created\"}", l(&self.rows_created)),
                ("{outcome=\"updated\"}", l(&self.rows_updated)),
                ("{outcome=\"unchanged\"}", l(&self.rows_unchanged)),
                ("{outcome=\"rejected\"}", l(&self.rows_rejected)),
            ],
        );
        for (name, kind, help, value) in [
            (
                "idsync_change_log_head",
                "gauge",
                "Sequence number of the last change.",
                l(&self.change_log_head),
            ),
            (
                "idsync_queue_depth",
                "gauge",
                "Files waiting or being imported.",
                l(&self.queue_depth),
            ),
            (
                "idsync_ready",
                "gauge",
                "1 when the store is open and folders are watched.",
                u64::from(self.is_ready()),
            ),
            (
                "idsync_uptime_seconds",
                "gauge",
                "Seconds since start.",
                self.started.elapsed().as_secs(),
            ),
        ] {
            metric(out, name, kind, help, &[("", value)]);
        }
        let engine = self.engine.get().copied().unwrap_or("unknown");
        metric(
            out,
            "idsync_store_info",
            "gauge",
            "The store's engine.",
            &[(&format!("{{engine=\"{engine}\"}}"), 1)],
        );
        if let Some(took) = self.store_round_trip() {
            let _ = writeln!(
                out,
                "# HELP idsync_store_round_trip_seconds The last measured round trip to the database (SELECT 1).\n\
                 # TYPE idsync_store_round_trip_seconds gauge\n\
                 idsync_store_round_trip_seconds {}",
                took.as_secs_f64()
            );
        }
        self.replica.write_prometheus(out);
    }

    /// Each connector's lag, deliveries, failures and dead letters.
    fn write_connector_metrics(&self, out: &mut String) {
        let conns = self.connectors.get().map(Vec::as_slice).unwrap_or_default();
        let per = |f: &dyn Fn(&ConnectorStats) -> u64| -> Vec<(String, u64)> {
            conns
                .iter()
                .map(|c| (format!("{{connector=\"{}\"}}", c.name), f(c)))
                .collect()
        };
        for (name, kind, help, samples) in [
            (
                "idsync_connector_lag",
                "gauge",
                "Changes not yet delivered to the connector.",
                per(&|c| c.lag()),
            ),
            (
                "idsync_connector_delivered_total",
                "counter",
                "Changes delivered by the connector since start.",
                per(&|c| c.delivered.load(Relaxed)),
            ),
            (
                "idsync_connector_failed_total",
                "counter",
                "Failed delivery attempts since start.",
                per(&|c| c.failed.load(Relaxed)),
            ),
            (
                "idsync_connector_parked",
                "gauge",
                "Changes in the connector's dead-letter list.",
                per(&|c| c.parked.load(Relaxed)),
            ),
        ] {
            let samples: Vec<(&str, u64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
            metric(out, name, kind, help, &samples);
        }
    }

    /// Each HTTP listener's open, refused and closed connections.
    fn write_listener_metrics(&self, out: &mut String) {
        let all = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let l = |a: &AtomicU64| a.load(Relaxed);
        let per = |reasons: &[(&str, Field)]| -> Vec<(String, u64)> {
            let mut samples = Vec::new();
            for s in &all {
                for (reason, field) in reasons {
                    let labels = if reason.is_empty() {
                        format!("{{listener=\"{}\"}}", s.name)
                    } else {
                        format!("{{listener=\"{}\",reason=\"{reason}\"}}", s.name)
                    };
                    samples.push((labels, l(field(s))));
                }
            }
            samples
        };
        for (name, kind, help, samples) in [
            (
                "idsync_listener_connections",
                "gauge",
                "Open connections of the HTTP listener.",
                per(&[("", |s| &s.open)]),
            ),
            (
                "idsync_listener_connections_refused_total",
                "counter",
                "Connections refused at once: the cap reached and every connection in the way busy.",
                per(&[
                    ("max_connections", |s| &s.refused_max_connections),
                    ("max_connections_per_peer", |s| &s.refused_per_peer),
                ]),
            ),
            (
                "idsync_listener_connections_closed_total",
                "counter",
                "Connections closed by the listener: idle ones to make room (evicted), new ones silent past the first-byte timeout.",
                per(&[
                    ("evicted", |s| &s.evicted),
                    ("first_byte_timeout", |s| &s.first_byte_timeout),
                ]),
            ),
        ] {
            let samples: Vec<(&str, u64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
            metric(out, name, kind, help, &samples);
        }
    }

    /// The histogram of import durations.
    fn write_import_histogram(&self, out: &mut String) {
        let l = |a: &AtomicU64| a.load(Relaxed);
        let name = "idsync_import_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to import one file.\n# TYPE {name} histogram"
        );
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                l(&self.duration_buckets[i])
            );
        }
        let count = l(&self.duration_buckets[DURATION_BUCKETS.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", l(&self.duration_sum_us) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// One figure of a listener's [`ListenerStats`].
type Field = fn(&ListenerStats) -> &AtomicU64;

/// One metric in the text exposition format: HELP, TYPE, its samples.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use idsync_schema::report::Summary;

    /// A file of the `users` folder that ended with `outcome`.
    pub(crate) fn file(outcome: FileOutcome, summary: Summary) -> FinishedFile {
        FinishedFile {
            folder: "users".into(),
            file: "people.csv".into(),
            outcome,
            summary,
            at: time::OffsetDateTime::now_utc(),
        }
    }

    #[test]
    fn files_rows_and_durations_are_counted() {
        let m = Metrics::new();
        let s = Summary {
            created: 2,
            updated: 1,
            unchanged: 0,
            rejected: 1,
        };
        m.record_file(file(FileOutcome::Partial, s), Duration::from_millis(30));
        m.record_file(
            file(FileOutcome::Accepted, Summary::default()),
            Duration::from_secs(2),
        );
        let text = m.render_prometheus();
        assert!(
            text.contains("idsync_files_total{outcome=\"partial\"} 1"),
            "{text}"
        );
        assert!(text.contains("idsync_rows_total{outcome=\"created\"} 2"));
        assert!(text.contains("idsync_import_duration_seconds_bucket{le=\"0.05\"} 1"));
        assert!(text.contains("idsync_import_duration_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("idsync_import_duration_seconds_count 2"));
        assert!(m.status_line().contains("1 partial"));
    }

    #[test]
    fn listener_connections_are_shown_per_listener() {
        let m = Metrics::new();
        let admin = m.listener_stats("admin");
        admin.evicted.fetch_add(3, Relaxed);
        assert!(std::sync::Arc::ptr_eq(&admin, &m.listener_stats("admin")));
        m.listener_stats("scim")
            .refused_per_peer
            .fetch_add(2, Relaxed);
        let text = m.render_prometheus();
        for line in [
            "idsync_listener_connections{listener=\"admin\"} 0",
            "idsync_listener_connections_closed_total{listener=\"admin\",reason=\"evicted\"} 3",
            "idsync_listener_connections_refused_total{listener=\"scim\",reason=\"max_connections_per_peer\"} 2",
            "idsync_listener_connections_closed_total{listener=\"scim\",reason=\"first_byte_timeout\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }
}
