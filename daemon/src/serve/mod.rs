//! `idsync serve`: the long-running daemon.
//!
//! One loop owns everything that changes: the watcher's events, the files
//! waiting to become stable, the queue, the one import running at a time,
//! signals and the systemd watchdog. Imports run on a blocking thread (they
//! are CPU and disk work); the loop stays responsive meanwhile, so the
//! watchdog, `/healthz` and SIGTERM are answered during a long import.
//!
//! Nothing polls: the loop sleeps until inotify reports something, a waiting
//! file's stability deadline (or a new folder's second look) comes, a
//! signal arrives or the watchdog is due.

pub mod admin;
mod folders;
mod job;
mod replica;
mod retries;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use notify::Watcher;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::infra::auth::Auth;
use crate::infra::metrics::Metrics;
use crate::infra::sd_notify::{self, Notifier};
use crate::sources::inbox::Folder;
use admin::{serve_admin, AdminState};
use folders::{Job, Waiting};
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
    /// Held by whichever import runs: a dropped file's or the console's,
    /// one at a time in the process.
    import_slot: Arc<std::sync::Mutex<()>>,
    queue: VecDeque<Job>,
    queued: HashSet<PathBuf>,
    waiting: HashMap<PathBuf, Waiting>,
    /// Folders made since start-up, each to be scanned once more when its
    /// time comes (see `Daemon::watch_new_folder`).
    rescans: Vec<(Instant, Folder)>,
    /// Entries of the drop folders already logged as passed over (so each
    /// is logged once, not at every event).
    passed_over: HashSet<PathBuf>,
    /// The import job running, which ends with its file when that is
    /// left in `.work/` after an error.
    running: Option<JoinHandle<Option<(Folder, PathBuf)>>>,
    /// Files whose import failed, to be tried again.
    retries: retries::Retries,
    /// The queued path of the running job, forgotten when it ends (so a
    /// new drop under the same name is taken again).
    queued_forget_later: Option<PathBuf>,
    /// On a store replicas share (PostgreSQL): the drop folders' claims
    /// in the store, and the heartbeats that tell a gone replica.
    claims: Option<Arc<crate::sources::inbox_claims::Claims>>,
}

async fn serve(source: ConfigSource, cfg: Config) -> Result<()> {
    // First of all: SIGHUP's default action ends the process, so a reload
    // asked for during start-up must find the handler in place.
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let (mut d, services) = start(cfg).await?;

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |e| {
        let _ = events_tx.send(e);
    })
    .context("starting the file watcher")?;
    d.watch(&mut watcher)?;
    // No import runs yet: what crashed ones left behind can go.
    d.sweep_spools();
    d.recover_and_scan();
    d.metrics.set_ready(true);
    d.metrics.heartbeat();
    tracing::info!(root = %d.root.display(), admin = %d.cfg.admin.listen, "idsync is watching its drop folders");
    d.notify(|n| n.ready());
    d.publish_status();

    // On a store replicas share: heartbeats and gone replicas' files.
    let mut claims_tick = tokio::time::interval(
        d.claims
            .as_ref()
            .map_or(Duration::from_secs(3600), |c| c.beat_every()),
    );
    claims_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let beat_every = sd_notify::watchdog_interval().unwrap_or(HEARTBEAT_WITHOUT_WATCHDOG);
    let mut beat = tokio::time::interval(beat_every);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        d.start_next();
        let deadline = d.next_deadline();
        tokio::select! {
            Some(event) = events.recv() => d.on_event(event),
            () = sleep_until(deadline), if deadline.is_some() => d.on_deadline(),
            left = finished(&mut d.running), if d.running.is_some() => {
                d.running = None;
                d.after_job(left);
            }
            _ = claims_tick.tick(), if d.claims.is_some() => d.on_claims_tick(),
            _ = beat.tick() => {
                if let Ok(took) = d.rec.store().round_trip() {
                    d.metrics.set_store_round_trip(took);
                }
                d.metrics.heartbeat();
                d.notify(|n| n.watchdog());
            }
            _ = sighup.recv() => d.reload(&source, &mut watcher),
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    stop(d, services).await
}

/// What runs beside the loop and stops after it: the connector runners and
/// the listeners.
struct Services {
    connectors: crate::connect::Running,
    /// This process's place among the replicas (the connectors follow it).
    leadership: idsync_store::leadership::Leadership,
    shutdown: watch::Sender<bool>,
    admin: JoinHandle<()>,
    scim: Option<JoinHandle<()>>,
    console: Option<JoinHandle<()>>,
    acme: Option<JoinHandle<()>>,
    scep: Option<JoinHandle<()>>,
    activation: Option<JoinHandle<()>>,
    /// Enrollment's clock: CRLs, registration expiry.
    upkeep: JoinHandle<()>,
}

/// Open the store, start the connectors, the enrollment service and the
/// listeners; the loop's state, not yet watching.
async fn start(cfg: Config) -> Result<(Daemon, Services)> {
    let rec = crate::app::open(&cfg)?;
    let metrics = Arc::new(Metrics::new());
    metrics.set_change_log_head(rec.store().head()?);
    metrics.set_engine(rec.store().engine_name());
    metrics.set_store_round_trip(rec.store().round_trip()?);
    // Connectors follow the change log from their own cursors, woken by the
    // store's head watch; they only read the store, so they never hold up
    // an import.
    let mut peers = crate::connect::build(&cfg.connectors)?;
    if let Some(mail) = &cfg.mail {
        peers.push(crate::connect::build_mail(
            mail,
            &cfg.applications,
            &cfg.tokens,
            &cfg.data_dir,
        )?);
    }
    // The activation page sets passwords through the connectors that keep
    // them (LDAP), beside their runners.
    let page = match cfg.activation.enabled {
        true => Some(crate::sources::activation::page::Page::new(
            &cfg.activation,
            Arc::clone(&rec),
            &peers,
            &cfg.applications,
        )?),
        false => None,
    };
    // Connectors run on the leader of the processes sharing the store:
    // this one at once on an embedded store.
    let leadership = rec
        .store()
        .lead(&cfg.node_name(), cfg.failover())
        .context("taking part in the leader election")?;
    replica::follow(
        &cfg.node_name(),
        leadership.subscribe(),
        Arc::clone(&metrics),
    );
    let connectors = crate::connect::start(peers, &rec, &leadership.subscribe());
    metrics.set_connectors(connectors.connectors.stats());
    let enrollment = crate::sources::enroll::start(cfg.enrollment_settings(), &rec, &metrics)?;
    let auth = Arc::new(Auth::load(&cfg.tokens, &cfg.data_dir).context("loading the API tokens")?);
    let listen: std::net::SocketAddr = cfg.admin.listen.parse().context("admin.listen")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the admin listener on {listen}"))?;
    let import_slot = Arc::new(std::sync::Mutex::new(()));
    let activations = Arc::new(crate::sources::activation::Activations::new(
        Arc::clone(&rec),
        cfg.applications.clone(),
        cfg.mail.is_some(),
    ));
    let console = match cfg.console.enabled {
        true => Some(Arc::new(crate::sources::console::Console::new(
            &cfg.console,
            Arc::clone(&auth),
            Arc::clone(&metrics),
            Arc::clone(&rec),
            Arc::clone(&enrollment),
            crate::sources::console::ImportSetup {
                defaults: [
                    idsync_schema::Kind::User,
                    idsync_schema::Kind::Group,
                    idsync_schema::Kind::Asset,
                ]
                .map(|k| cfg.import_options(k))
                .into(),
                applications: cfg.applications.clone(),
                mail: cfg.mail.is_some(),
                work_dir: cfg.imports_dir(),
                upload_dir: cfg.data_dir.join("console-uploads"),
                slot: Arc::clone(&import_slot),
            },
            Arc::clone(&activations),
        )?)),
        false => None,
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    // With a listener of its own, the console is served there only.
    let (console, console_listener) = match (console, &cfg.console.listen) {
        (Some(console), Some(_)) => {
            let own = crate::sources::console::listener::start(
                &cfg.console,
                console,
                cfg.admin.max_body_bytes,
                cfg.admin.limits(),
                &metrics,
                shutdown_rx.clone(),
            )
            .await?;
            (None, own)
        }
        (console, _) => (console, None),
    };
    let upkeep = tokio::spawn(Arc::clone(&enrollment).upkeep(shutdown_rx.clone()));
    let admin = tokio::spawn(serve_admin(
        listener,
        Arc::new(AdminState {
            metrics: Arc::clone(&metrics),
            auth: Arc::clone(&auth),
            max_body_bytes: cfg.admin.max_body_bytes,
            connectors: Some(Arc::clone(&connectors.connectors)),
            enrollment: Some(Arc::clone(&enrollment)),
            activations: Some(Arc::clone(&activations)),
            console,
            limits: cfg.admin.limits(),
        }),
        shutdown_rx.clone(),
    ));
    let scim = crate::sources::scim::listener::start(
        &cfg.scim,
        Arc::clone(&rec),
        Arc::clone(&metrics),
        Arc::clone(&auth),
        shutdown_rx.clone(),
    )
    .await?;
    let acme = crate::sources::acme::listener::start(
        &cfg.acme,
        Arc::clone(&enrollment),
        &metrics,
        shutdown_rx.clone(),
    )
    .await?;
    let scep = crate::sources::scep::listener::start(
        &cfg.scep,
        Arc::clone(&enrollment),
        &cfg.enrollment_settings().ca_dir,
        &metrics,
        shutdown_rx.clone(),
    )
    .await?;
    let activation = match page {
        Some(page) => Some(
            crate::sources::activation::listener::start(
                &cfg.activation,
                page,
                &metrics,
                shutdown_rx,
            )
            .await?,
        ),
        None => None,
    };
    let claims = rec.store().is_remote().then(|| {
        Arc::new(crate::sources::inbox_claims::Claims::new(
            &cfg.node_name(),
            cfg.failover(),
        ))
    });
    let d = Daemon {
        root: cfg.folders_root(),
        cfg: Arc::new(cfg),
        rec,
        metrics,
        enrollment,
        auth,
        notifier: Notifier::from_env(),
        stop: Arc::new(AtomicBool::new(false)),
        import_slot,
        queue: VecDeque::new(),
        queued: HashSet::new(),
        waiting: HashMap::new(),
        rescans: Vec::new(),
        retries: retries::Retries::default(),
        passed_over: HashSet::new(),
        running: None,
        queued_forget_later: None,
        claims,
    };
    let services = Services {
        connectors,
        leadership,
        shutdown,
        admin,
        scim,
        console: console_listener,
        acme,
        scep,
        activation,
        upkeep,
    };
    Ok((d, services))
}

/// SIGTERM: let the running import commit its batch, stop the connectors
/// and the listeners (requests in flight finish), flush the store.
async fn stop(mut d: Daemon, services: Services) -> Result<()> {
    tracing::info!("stopping: finishing the current batch");
    d.notify(|n| n.stopping());
    d.metrics.set_ready(false);
    d.stop.store(true, Ordering::Relaxed);
    if let Some(job) = d.running.take() {
        let _ = job.await;
    }
    services.connectors.stop().await;
    drop(services.leadership);
    let _ = services.shutdown.send(true);
    let _ = services.admin.await;
    let _ = services.upkeep.await;
    for listener in [
        services.scim,
        services.console,
        services.acme,
        services.scep,
        services.activation,
    ]
    .into_iter()
    .flatten()
    {
        let _ = listener.await;
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

/// The running job's end: its file, when left in `.work/` after an error.
async fn finished(
    job: &mut Option<JoinHandle<Option<(Folder, PathBuf)>>>,
) -> Option<(Folder, PathBuf)> {
    match job {
        // A job that panicked leaves its file for the next start.
        Some(j) => j.await.unwrap_or(None),
        None => None,
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
                    (
                        "admin",
                        serde_json::to_value(&new.admin).ok()
                            != serde_json::to_value(&self.cfg.admin).ok(),
                    ),
                    (
                        "connectors",
                        serde_json::to_value(&new.connectors).ok()
                            != serde_json::to_value(&self.cfg.connectors).ok(),
                    ),
                    ("scim", new.scim != self.cfg.scim),
                    ("console", new.console != self.cfg.console),
                    ("acme", new.acme != self.cfg.acme),
                    ("scep", new.scep != self.cfg.scep),
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
                self.enrollment.set_file_profiles(&new.profiles);
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
