//! Opening what every entry point needs: the store and the reconciler over
//! it, from a loaded configuration. `serve`, the one-shot commands and the
//! tests all start here, so there is one way to open a data dir.

use std::sync::Arc;

use anyhow::{Context, Result};
use idsync_schema::Source;
use idsync_store::reconcile::Reconciler;
use idsync_store::{Actor, Store};

use crate::config::Config;

/// Open the store of `cfg`, for reading. Writes nothing: an offline look
/// (`connectors plan`, `list`, `changes`) leaves the data dir as it was.
pub fn open_store(cfg: &Config) -> Result<Arc<Store>> {
    let dir = cfg.store_dir();
    let opts = cfg.engine_options()?;
    let store = Store::open(cfg.store.engine, &dir, &opts).with_context(|| {
        format!(
            "opening the store in {} (is `idsync serve` running?)",
            dir.display()
        )
    })?;
    Ok(Arc::new(store))
}

/// Open the store and the reconciler for writing, and bring the configured
/// certificate profiles into the store (imports, enrollment and the daemon
/// check new objects against them).
pub fn open(cfg: &Config) -> Result<Arc<Reconciler>> {
    let rec = Arc::new(Reconciler::new(open_store(cfg)?, cfg.settings())?);
    sync_profiles(&rec, cfg)?;
    Ok(rec)
}

/// Bring the configuration's certificate profiles into the store (at start
/// and on every reload).
pub fn sync_profiles(rec: &Reconciler, cfg: &Config) -> Result<()> {
    let mut tx = rec.begin(Source::Api, Actor::config("config"));
    for p in &cfg.profiles {
        tx.upsert_profile(p)
            .with_context(|| format!("certificate profile {:?} of the configuration", p.name))?;
    }
    tx.commit()?;
    Ok(())
}
