//! `idsync serve`: the long-running daemon.
//!
//! One loop owns everything that changes: the watcher's events, the files
//! waiting to become stable, the queue, the one import running at a time,
//! signals and the systemd watchdog. Imports run on a blocking thread (they
//! are CPU and disk work); the loop stays responsive meanwhile, so the
//! watchdog, `/healthz` and SIGTERM are answered during a long import.
//!
//! Nothing polls: the loop sleeps until inotify reports something, a waiting
//! file's stability deadline comes, a signal arrives or the watchdog is due.

pub mod admin;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::infra::auth::Auth;
use crate::infra::metrics::Metrics;
use crate::infra::sd_notify::{self, Notifier};
use crate::sources::import::{self, FileOutcome, ImportError, ReportFiles};
use crate::sources::inbox::{self, Folder, Recovery};
use admin::{serve_admin, AdminState};
use idsync_store::reconcile::Reconciler;

/// How often the loop proves it is alive when systemd does not ask for a
/// watchdog (it feeds `/healthz`).
const HEARTBEAT_WITHOUT_WATCHDOG: Duration = Duration::from_secs(30);

/// Where the configuration comes from, to read it again on SIGHUP.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

impl ConfigSource {
    /// Load (or reload) the configuration.
    pub fn load(&self) -> Result<Config> {
        let mut cfg = Config::load(self.file.as_deref())?;
        cfg.resolve_data_dir(self.data_dir.as_deref())?;
        Ok(cfg)
    }
}

/// Run the daemon until SIGTERM or SIGINT.
pub fn run(source: ConfigSource, cfg: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("idsync")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(source, cfg))
}

/// A unit of work for the import thread.
#[derive(Debug)]
enum Job {
    /// A file that became ready in an inbox.
    Dropped { folder: Folder, path: PathBuf },
    /// A file found in `.work/` at start-up.
    Recovered { folder: Folder, recovery: Recovery },
}

/// A file seen in an inbox, not yet stable.
#[derive(Debug)]
struct Waiting {
    folder: Folder,
    size: u64,
    modified: Option<SystemTime>,
    since: Instant,
}

struct Daemon {
    cfg: Arc<Config>,
    root: PathBuf,
    rec: Arc<Reconciler>,
    metrics: Arc<Metrics>,
    enrollment: Arc<crate::sources::enroll::Enrollment>,
    /// The admin and SCIM listeners' tokens, read again on SIGHUP.
    auth: Arc<Auth>,
    notifier: Option<Notifier>,
    stop: Arc<AtomicBool>,
    queue: VecDeque<Job>,
    queued: HashSet<PathBuf>,
    waiting: HashMap<PathBuf, Waiting>,
    running: Option<JoinHandle<()>>,
    /// The queued path of the running job, forgotten when it ends (so a
    /// new drop under the same name is taken again).
    queued_forget_later: Option<PathBuf>,
}

async fn serve(source: ConfigSource, cfg: Config) -> Result<()> {
    // First of all: SIGHUP's default action ends the process, so a reload
    // asked for during start-up must find the handler in place.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let rec = crate::app::open(&cfg)?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_change_log_head(rec.store().head()?);
    // Connectors follow the change log from their own cursors, woken by the
    // store's head watch; they only read the store, so they never hold up
    // an import.
    let connectors = crate::connect::start(crate::connect::build(&cfg.connectors)?, &rec);
    metrics.set_connectors(connectors.connectors.stats());
    let enrollment = crate::sources::enroll::start(&cfg, &rec, &metrics)?;
    let auth = Arc::new(Auth::load(&cfg.tokens, &cfg.data_dir).context("loading the API tokens")?);
    let listen: std::net::SocketAddr = cfg.admin.listen.parse().context("admin.listen")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the admin listener on {listen}"))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let admin = tokio::spawn(serve_admin(
        listener,
        Arc::new(AdminState {
            metrics: Arc::clone(&metrics),
            auth: Arc::clone(&auth),
            max_body_bytes: cfg.admin.max_body_bytes,
            connectors: Some(Arc::clone(&connectors.connectors)),
            enrollment: Some(Arc::clone(&enrollment)),
        }),
        shutdown_rx.clone(),
    ));
    let scim = crate::sources::scim::listener::start(
        &cfg.scim,
        Arc::clone(&rec),
        Arc::clone(&metrics),
        Arc::clone(&auth),
        shutdown_rx,
    )
    .await?;

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |e| {
        let _ = events_tx.send(e);
    })
    .context("starting the file watcher")?;

    let mut d = Daemon {
        root: cfg.folders_root(),
        cfg: Arc::new(cfg),
        rec,
        metrics,
        enrollment,
        auth,
        notifier: Notifier::from_env(),
        stop: Arc::new(AtomicBool::new(false)),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        waiting: HashMap::new(),
        running: None,
        queued_forget_later: None,
    };
    d.watch(&mut watcher)?;
    d.recover_and_scan();
    d.metrics.set_ready(true);
    d.metrics.heartbeat();
    tracing::info!(root = %d.root.display(), admin = %listen, "idsync is watching its drop folders");
    d.notify(|n| n.ready());
    d.publish_status();

    let beat_every = sd_notify::watchdog_interval().unwrap_or(HEARTBEAT_WITHOUT_WATCHDOG);
    let mut beat = tokio::time::interval(beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        d.start_next();
        let deadline = d.next_stability_deadline();
        tokio::select! {
            Some(event) = events.recv() => d.on_event(event),
            () = sleep_until(deadline), if deadline.is_some() => d.check_waiting(),
            () = finished(&mut d.running), if d.running.is_some() => {
                d.running = None;
                d.after_job();
            }
            _ = beat.tick() => {
                d.metrics.heartbeat();
                d.notify(|n| n.watchdog());
            }
            _ = sighup.recv() => d.reload(&source, &mut watcher),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    tracing::info!("stopping: finishing the current batch");
    d.notify(|n| n.stopping());
    d.metrics.set_ready(false);
    d.stop.store(true, Ordering::Relaxed);
    if let Some(job) = d.running.take() {
        let _ = job.await;
    }
    connectors.stop().await;
    let _ = shutdown_tx.send(true);
    let _ = admin.await;
    if let Some(scim) = scim {
        let _ = scim.await;
    }
    d.rec.store().flush()?;
    tracing::info!("stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at.into()).await;
    }
}

async fn finished(job: &mut Option<JoinHandle<()>>) {
    if let Some(j) = job {
        let _ = j.await;
    }
}

impl Daemon {
    fn notify(&self, f: impl FnOnce(&Notifier) -> std::io::Result<()>) {
        if let Some(n) = &self.notifier {
            if let Err(e) = f(n) {
                tracing::warn!("cannot notify systemd: {e}");
            }
        }
    }

    fn publish_status(&self) {
        let depth = self.queue.len() + self.waiting.len() + usize::from(self.running.is_some());
        self.metrics.set_queue_depth(depth as u64);
        let line = self.metrics.status_line();
        self.notify(|n| n.status(&line));
    }

    /// Create the kind folders and watch the whole tree: application
    /// folders made later are picked up by the recursive watch.
    fn watch(&self, watcher: &mut notify::RecommendedWatcher) -> Result<()> {
        for folder in Folder::kinds() {
            inbox::prepare(&self.root, &folder)
                .with_context(|| format!("creating {}", folder.dir(&self.root).display()))?;
        }
        watcher
            .watch(&self.root, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", self.root.display()))?;
        Ok(())
    }

    /// At start-up (and after a lost event queue): finish what a crash left
    /// in `.work/`, then queue what waits in the inboxes.
    fn recover_and_scan(&mut self) {
        for folder in inbox::folders(&self.root) {
            if let Err(e) = inbox::prepare(&self.root, &folder) {
                tracing::error!(folder = %folder.name, "cannot prepare the folder: {e}");
                continue;
            }
            match inbox::recover(&self.root, &folder) {
                Ok(plan) => {
                    for recovery in plan {
                        let path = match &recovery {
                            Recovery::Import(p) | Recovery::Finish { claimed: p, .. } => p.clone(),
                        };
                        if self.queued.insert(path) {
                            self.queue.push_back(Job::Recovered {
                                folder: folder.clone(),
                                recovery,
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(folder = %folder.name, "cannot read the work folder: {e}")
                }
            }
            self.scan_inbox(&folder);
        }
        self.publish_status();
    }

    fn scan_inbox(&mut self, folder: &Folder) {
        for path in inbox::waiting(&self.root, folder) {
            self.saw(folder.clone(), path, false);
        }
    }

    /// A file appeared or changed: queue it at once when it arrived by
    /// rename (its writer is done), otherwise wait for it to be stable.
    fn saw(&mut self, folder: Folder, path: PathBuf, renamed_in: bool) {
        if self.queued.contains(&path) {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            self.waiting.remove(&path);
            return;
        };
        let (size, modified) = (meta.len(), meta.modified().ok());
        // Already unchanged for the stability window (a file found at
        // start-up, say): it keeps its place in the order at once.
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        let settled = modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= stable);
        if renamed_in || settled || meta.file_type().is_symlink() {
            self.waiting.remove(&path);
            self.enqueue(folder, path);
            return;
        }
        let entry = self.waiting.entry(path).or_insert(Waiting {
            folder,
            size,
            modified,
            since: Instant::now(),
        });
        if entry.size != size || entry.modified != modified {
            entry.size = size;
            entry.modified = modified;
        }
        entry.since = Instant::now();
    }

    fn enqueue(&mut self, folder: Folder, path: PathBuf) {
        if self.queued.insert(path.clone()) {
            self.queue.push_back(Job::Dropped { folder, path });
        }
    }

    fn next_stability_deadline(&self) -> Option<Instant> {
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        self.waiting.values().map(|w| w.since + stable).min()
    }

    /// Queue every waiting file whose size and time stayed put.
    fn check_waiting(&mut self) {
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .waiting
            .iter()
            .filter(|(_, w)| now >= w.since + stable)
            .map(|(p, _)| p.clone())
            .collect();
        let mut ready = Vec::new();
        for path in due {
            let w = self.waiting.get_mut(&path).expect("listed above");
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.len() == w.size && m.modified().ok() == w.modified => {
                    let w = self.waiting.remove(&path).expect("listed above");
                    ready.push((w.modified, path, w.folder));
                }
                Ok(m) => {
                    w.size = m.len();
                    w.modified = m.modified().ok();
                    w.since = now;
                }
                Err(_) => {
                    self.waiting.remove(&path);
                }
            }
        }
        ready.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, path, folder) in ready {
            self.enqueue(folder, path);
        }
        self.publish_status();
    }

    fn on_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("file watcher: {e}; rescanning the folders");
                self.recover_and_scan();
                return;
            }
        };
        if event.need_rescan() {
            tracing::warn!("file watcher lost events; rescanning the folders");
            self.recover_and_scan();
            return;
        }
        let paths: Vec<PathBuf> = match event.kind {
            // A rename within the tree reports (from, to): only `to` matters.
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                event.paths.get(1).cloned().into_iter().collect()
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                for p in &event.paths {
                    self.waiting.remove(p);
                }
                return;
            }
            EventKind::Access(_) | EventKind::Other => return,
            _ => event.paths.clone(),
        };
        let renamed_in = matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        for path in paths {
            if path.is_dir() {
                // A new application folder (made, or moved in with files).
                if let Some(folder) = inbox::folder_of(&self.root, &path.join("x")) {
                    if let Err(e) = inbox::prepare(&self.root, &folder) {
                        tracing::error!(folder = %folder.name, "cannot prepare the folder: {e}");
                    }
                    tracing::info!(folder = %folder.name, "watching a new folder");
                    self.scan_inbox(&folder);
                }
                continue;
            }
            let Some(folder) = inbox::folder_of(&self.root, &path) else {
                continue;
            };
            let ignored = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(inbox::is_ignored);
            if !ignored {
                self.saw(folder, path, renamed_in);
            }
        }
        self.publish_status();
    }

    /// Start the next queued job when none runs.
    fn start_next(&mut self) {
        if self.running.is_some() || self.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(job) = self.queue.pop_front() else {
            return;
        };
        let ctx = JobContext {
            cfg: Arc::clone(&self.cfg),
            root: self.root.clone(),
            rec: Arc::clone(&self.rec),
            metrics: Arc::clone(&self.metrics),
            stop: Arc::clone(&self.stop),
        };
        let key = match &job {
            Job::Dropped { path, .. } => path.clone(),
            Job::Recovered {
                recovery: Recovery::Import(p) | Recovery::Finish { claimed: p, .. },
                ..
            } => p.clone(),
        };
        let shown = key.display().to_string();
        self.running = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = ctx.run(job) {
                tracing::error!(file = %shown, "{e:#}");
            }
        }));
        self.queued_forget_later = Some(key);
        self.publish_status();
    }

    fn after_job(&mut self) {
        if let Some(key) = self.queued_forget_later.take() {
            self.queued.remove(&key);
        }
        if let Ok(head) = self.rec.store().head() {
            self.metrics.set_change_log_head(head);
        }
        self.publish_status();
    }

    /// SIGHUP: read the configuration again. A broken one is refused and
    /// the running one stays; queued work is kept either way.
    fn reload(&mut self, source: &ConfigSource, watcher: &mut notify::RecommendedWatcher) {
        self.notify(|n| n.reloading());
        match source.load() {
            Err(e) => {
                tracing::error!("configuration reload refused, keeping the running one: {e:#}")
            }
            Ok(new) => {
                for (what, changed) in [
                    ("data_dir", new.data_dir != self.cfg.data_dir),
                    (
                        "store",
                        new.store.engine != self.cfg.store.engine
                            || new.store.cache_mb != self.cfg.store.cache_mb,
                    ),
                    ("admin", new.admin.listen != self.cfg.admin.listen),
                    (
                        "connectors",
                        serde_json::to_value(&new.connectors).ok()
                            != serde_json::to_value(&self.cfg.connectors).ok(),
                    ),
                    ("scim", new.scim != self.cfg.scim),
                    (
                        "ca",
                        serde_json::to_value(&new.ca).ok()
                            != serde_json::to_value(&self.cfg.ca).ok(),
                    ),
                ] {
                    if changed {
                        tracing::warn!(
                            "configuration reload: `{what}` changes take effect at the next start"
                        );
                    }
                }
                if let Err(e) = self.auth.reload(&new.tokens, &new.data_dir) {
                    tracing::error!("configuration reload: tokens: {e}; the tokens in force stay");
                }
                self.rec.set_settings(new.settings());
                if let Err(e) = crate::app::sync_profiles(&self.rec, &new) {
                    tracing::error!("configuration reload: certificate profiles: {e:#}");
                }
                self.enrollment.set_file_profiles(&new);
                let new_root = new.folders_root();
                if new_root != self.root {
                    let _ = watcher.unwatch(&self.root);
                    self.root = new_root;
                    if let Err(e) = self.watch(watcher) {
                        tracing::error!("configuration reload: {e:#}");
                    }
                    self.recover_and_scan();
                }
                self.cfg = Arc::new(new);
                tracing::info!("configuration reloaded");
            }
        }
        self.notify(|n| n.ready());
        self.publish_status();
    }
}

/// What an import job needs, owned, for the blocking thread.
struct JobContext {
    cfg: Arc<Config>,
    root: PathBuf,
    rec: Arc<Reconciler>,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
}

impl JobContext {
    fn run(&self, job: Job) -> Result<()> {
        match job {
            Job::Dropped { folder, path } => {
                if !path.exists() && std::fs::symlink_metadata(&path).is_err() {
                    return Ok(()); // gone before its turn
                }
                let refusal = inbox::refusal(&path);
                let claimed = inbox::claim(&self.root, &folder, &path)
                    .with_context(|| format!("claiming {}", path.display()))?;
                match refusal {
                    Some(reason) => self.refuse(&folder, &claimed, reason),
                    None => self.import(&folder, &claimed),
                }
            }
            Job::Recovered {
                folder,
                recovery: Recovery::Import(claimed),
            } => self.import(&folder, &claimed),
            Job::Recovered {
                folder,
                recovery:
                    Recovery::Finish {
                        claimed,
                        rejected,
                        digest,
                    },
            } => {
                if let Some(digest) = digest {
                    import::forget_progress(&self.rec, &digest)?;
                }
                inbox::finish(&self.root, &folder, &claimed, rejected)?;
                tracing::info!(file = %claimed.display(), "finished a file interrupted after its import");
                Ok(())
            }
        }
    }

    fn refuse(&self, folder: &Folder, claimed: &Path, reason: String) -> Result<()> {
        let opts = self.cfg.folder_import_options(folder.kind, &folder.name);
        let report = ReportFiles::beside(claimed);
        let started = Instant::now();
        let result = import::refuse(
            claimed,
            &opts,
            reason.clone(),
            &self.cfg.imports_dir(),
            &report,
        )?;
        let dest = inbox::finish(&self.root, folder, claimed, true)?;
        self.metrics
            .record_file(FileOutcome::Rejected, &result.summary, started.elapsed());
        tracing::warn!(file = %dest.display(), folder = %folder.name, "file refused: {reason}");
        Ok(())
    }

    fn import(&self, folder: &Folder, claimed: &Path) -> Result<()> {
        let mut opts = self.cfg.folder_import_options(folder.kind, &folder.name);
        opts.application = folder.application.clone();
        opts.stop = Some(Arc::clone(&self.stop));
        let report = ReportFiles::beside(claimed);
        let started = Instant::now();
        match import::import_file(
            &self.rec,
            claimed,
            &opts,
            &self.cfg.imports_dir(),
            &report,
            &mut |_| {},
        ) {
            Ok(result) => {
                let rejected = result.outcome == FileOutcome::Rejected;
                let dest = inbox::finish(&self.root, folder, claimed, rejected)?;
                let took = started.elapsed();
                self.metrics
                    .record_file(result.outcome, &result.summary, took);
                let s = result.summary;
                tracing::info!(
                    file = %dest.display(),
                    folder = %folder.name,
                    outcome = ?result.outcome,
                    created = s.created,
                    updated = s.updated,
                    unchanged = s.unchanged,
                    rejected = s.rejected,
                    ms = took.as_millis() as u64,
                    error = result.error.as_deref().unwrap_or(""),
                    "imported"
                );
                Ok(())
            }
            Err(ImportError::Interrupted(line)) => {
                tracing::info!(file = %claimed.display(), line, "import interrupted; it resumes at the next start");
                Ok(())
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "importing {}; the file stays in .work and is retried at the next start",
                    claimed.display()
                )
            }),
        }
    }
}
