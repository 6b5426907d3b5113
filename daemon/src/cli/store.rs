//! `idsync store copy` and `idsync store compare`: the configured store
//! (stopped: the daemon holds it while it runs) against another one named
//! on the command line, for moving between redb, sled and PostgreSQL
//! (docs/operations.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use idsync_store::copy::{compare, copy, Comparison};
use idsync_store::{EngineKind, EngineOptions, PostgresOptions, Store};

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the configured store, change log included, into an empty one.
    Copy {
        /// `postgres://user@host/db`, `redb:DIR` or `sled:DIR`.
        #[arg(long)]
        to: String,
        /// The PostgreSQL password's file (first line) for `--to`.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Compare the configured store with another, entry by entry: exit 0
    /// when they are the same, 1 with the first difference.
    Compare {
        /// `postgres://user@host/db`, `redb:DIR` or `sled:DIR`.
        #[arg(long)]
        with: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// The store a command-line name points at.
fn open_named(name: &str, password_file: Option<&Path>) -> Result<Store> {
    let (kind, dir, postgres) =
        if name.starts_with("postgres://") || name.starts_with("postgresql://") {
            let password = password_file
                .map(crate::config::read_password_file)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let pg = PostgresOptions {
                url: name.to_owned(),
                password,
                ..Default::default()
            };
            (EngineKind::Postgres, std::env::temp_dir(), Some(pg))
        } else if let Some(dir) = name.strip_prefix("redb:") {
            (EngineKind::Redb, PathBuf::from(dir), None)
        } else if let Some(dir) = name.strip_prefix("sled:") {
            (EngineKind::Sled, PathBuf::from(dir), None)
        } else {
            bail!("{name:?}: name a store as postgres://…, redb:DIR or sled:DIR");
        };
    let opts = EngineOptions {
        postgres,
        ..EngineOptions::default()
    };
    Store::open(kind, &dir, &opts).with_context(|| format!("opening {name}"))
}

pub fn run(cfg: &Config, command: StoreCommand) -> Result<u8> {
    let ours = crate::app::open_store(cfg)?;
    match command {
        StoreCommand::Copy { to, password_file } => {
            let target = open_named(&to, password_file.as_deref())?;
            let copied = copy(&ours, &target).with_context(|| format!("copying into {to}"))?;
            println!(
                "copied {} entries ({} bytes) from the {} store into {to}",
                copied.entries,
                copied.bytes,
                cfg.store.engine.as_str()
            );
            Ok(0)
        }
        StoreCommand::Compare {
            with,
            password_file,
        } => {
            let other = open_named(&with, password_file.as_deref())?;
            match compare(&ours, &other)? {
                Comparison::Same { entries } => {
                    println!("the same: {entries} entries");
                    Ok(0)
                }
                Comparison::Differ { key, difference } => {
                    println!("they differ at {key}: {difference}");
                    Ok(1)
                }
            }
        }
    }
}
