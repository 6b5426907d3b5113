//! The console's Import screen (seeds 000, 001, 003): choose what the file
//! holds and the options, upload it, look at a dry run's created, updated
//! and rejected rows, then import it, or not.
//!
//! - The upload is streamed to disk as it arrives (never whole in memory),
//!   bounded by `import.max_file_bytes`, its CSRF token checked before a
//!   byte of the file is written.
//! - The dry run and the import are [`import_file`] on the saved file,
//!   the path every drop folder takes, one import at a time in the process
//!   (the `slot` shared with the drop folders), the changes recorded with
//!   the signed-in token as actor. An import for an application queues
//!   its activation mails as a dropped file does.
//! - An upload belongs to the token that sent it; it is forgotten (and
//!   its files removed) once imported or cancelled and viewed, or after
//!   [`KEEP`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyStream, Full};
use hyper::header;
use hyper::{Method, Response, StatusCode};
use idsync_schema::{ApplicationSettings, Kind, Status};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

use super::screens::Screen;
use super::session::Live;
use super::{guard, views, Call, Console, ConsoleRequest};
use crate::infra::http::{parse_query, BODY_READ_TIMEOUT};
use crate::sources::import::{import_file, FileOutcome, ImportOptions, ReportFiles};

mod table;
mod upload;

pub use table::{prepare_upload_dir, Uploads};
use table::{Done, Upload};
pub use upload::upload;

/// The upload form's target.
pub const UPLOAD: &str = "/ui/import";
/// Rows of each table a page shows; the report download has them all.
const SHOWN_ROWS: usize = 200;

/// What importing from the console needs from the configuration.
pub struct ImportSetup {
    /// `[import]` options per kind (users, groups, assets).
    pub defaults: Vec<ImportOptions>,
    pub applications: Vec<ApplicationSettings>,
    /// Whether `[mail]` is configured (activation mails on import).
    pub mail: bool,
    /// Where imports keep their spools (`DATA_DIR/imports`).
    pub work_dir: PathBuf,
    /// Where uploads wait (`DATA_DIR/console-uploads`), emptied at start.
    pub upload_dir: PathBuf,
    /// Held while a file is imported; the drop folders hold it too.
    pub slot: Arc<Mutex<()>>,
}

/// `GET /ui/import`: the form.
pub fn form(c: &Console) -> Value {
    let apps: Vec<Value> = c
        .import
        .applications
        .iter()
        .map(|a| json!({ "value": format!("users:{}", a.name), "label": format!("Users for {}", a.display_name.as_deref().unwrap_or(&a.name)) }))
        .collect();
    json!({ "applications": apps, "max_mib": max_file_bytes(c) >> 20 })
}

fn max_file_bytes(c: &Console) -> u64 {
    c.import
        .defaults
        .first()
        .map_or(2 << 30, |o| o.max_file_bytes)
}

/// Import `file` with `opts` on a blocking thread, holding the import
/// slot; the report goes to `BASE.report.json` / `.csv`.
async fn run(c: &Console, file: &Path, opts: &ImportOptions, base: &Path) -> Result<Done, String> {
    let (rec, slot, work) = (
        Arc::clone(&c.rec),
        Arc::clone(&c.import.slot),
        c.import.work_dir.clone(),
    );
    let (file, opts) = (file.to_owned(), opts.clone());
    let report = ReportFiles::beside(base);
    let done = tokio::task::spawn_blocking(move || {
        let _slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        import_file(&rec, &file, &opts, &work, &report, &mut |_| {}).map(|r| Done {
            outcome: r.outcome,
            summary: r.summary,
            error: r.error,
            warnings: r.warnings,
            report,
        })
    })
    .await;
    match done {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "console: an import failed");
            Err(format!("The import stopped: {e}."))
        }
        Err(e) => {
            tracing::error!(error = %e, "console: an import panicked");
            Err("The import stopped unexpectedly.".into())
        }
    }
}

/// `/ui/import/ID…`: the preview or result, the decision, the reports.
pub async fn route(
    c: &Console,
    call: &Call<'_>,
    live: &Live,
    rest: &[&str],
) -> Response<Full<Bytes>> {
    let Some((id, rest)) = rest.split_first() else {
        return c.views.not_found(live);
    };
    let owned = c
        .uploads
        .table()
        .get(*id)
        .is_some_and(|u| u.owner == *live.identity.digest());
    if !owned {
        return c.views.not_found(live);
    }
    match (call.method, rest) {
        (&Method::GET | &Method::HEAD, []) => show(c, live, id),
        (&Method::POST, []) => decide(c, call, live, id).await,
        (&Method::GET | &Method::HEAD, ["report.csv"]) => download(c, live, id, false),
        (&Method::GET | &Method::HEAD, ["report.json"]) => download(c, live, id, true),
        _ => c.views.not_found(live),
    }
}

fn show(c: &Console, live: &Live, id: &str) -> Response<Full<Bytes>> {
    let (file_name, opts, done, imported) = {
        let t = c.uploads.table();
        let Some(u) = t.get(id) else {
            return c.views.not_found(live);
        };
        let done = u.imported.clone().unwrap_or_else(|| u.preview.clone());
        (
            u.file_name.clone(),
            u.opts.clone(),
            done,
            u.imported.is_some(),
        )
    };
    let tables = match report_tables(&done.report.csv) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "console: reading an import report failed");
            json!({})
        }
    };
    let vars = json!({
        "id": id,
        "file": file_name,
        "kind": opts.kind.plural(),
        "application": opts.application,
        "end_state": opts.end_state.map(Status::as_str),
        "atomic": opts.atomic,
        "imported": imported,
        "outcome": done.outcome,
        "summary": done.summary,
        "error": done.error,
        "warnings": done.warnings,
        "tables": tables,
        "shown_rows": SHOWN_ROWS,
        "importable": !imported && done.outcome != FileOutcome::Rejected,
    });
    c.views.page(
        "import_result.html",
        StatusCode::OK,
        Some(live),
        Some(Screen::Import),
        vars,
    )
}

/// The first [`SHOWN_ROWS`] rows of each outcome in a report's CSV,
/// read as a stream (a report can be as long as its file).
fn report_tables(csv_path: &Path) -> Result<Value, csv::Error> {
    let mut reader = csv::Reader::from_path(csv_path)?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (outcome, line, key, changed, column, attribute, value, rule, message) = (
        col("outcome"),
        col("line"),
        col("key"),
        col("changed"),
        col("column"),
        col("attribute"),
        col("value"),
        col("rule"),
        col("message"),
    );
    let mut tables: HashMap<String, Vec<Value>> = HashMap::new();
    for record in reader.records() {
        let record = record?;
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or_default();
        let rows = tables.entry(get(outcome).to_owned()).or_default();
        if rows.len() < SHOWN_ROWS {
            rows.push(json!({
                "line": get(line), "key": get(key), "changed": get(changed),
                "column": get(column), "attribute": get(attribute), "value": get(value),
                "rule": get(rule), "message": get(message),
            }));
        }
    }
    Ok(serde_json::to_value(tables).unwrap_or_default())
}

/// `POST /ui/import/ID`: `action=import` or `cancel` (the CSRF token was
/// checked before).
async fn decide(c: &Console, call: &Call<'_>, live: &Live, id: &str) -> Response<Full<Bytes>> {
    let form = parse_query(std::str::from_utf8(&call.body).ok());
    match form.get("action").map(String::as_str) {
        Some("cancel") => {
            let gone = c.uploads.table().remove(id);
            if let Some(u) = gone {
                let _ = tokio::fs::remove_dir_all(&u.dir).await;
            }
            views::redirect(UPLOAD)
        }
        Some("import") => import(c, live, id).await,
        _ => c.views.error(
            Some(live),
            StatusCode::BAD_REQUEST,
            "Not done",
            "Choose Import or Cancel.",
            UPLOAD,
        ),
    }
}

async fn import(c: &Console, live: &Live, id: &str) -> Response<Full<Bytes>> {
    let (file, mut opts, dir) = {
        let t = c.uploads.table();
        let Some(u) = t.get(id) else {
            return c.views.not_found(live);
        };
        if u.imported.is_some() {
            // Imported already (a second click, a reload): show the result.
            return views::redirect(&format!("/ui/import/{id}"));
        }
        (u.dir.join(&u.file_name), u.opts.clone(), u.dir.clone())
    };
    let token = live.identity.token.as_str().to_owned();
    opts.uploaded_by = Some(token.clone());
    let done = match run(c, &file, &opts, &dir.join("import")).await {
        Ok(done) => done,
        Err(message) => {
            return c.views.error(
                Some(live),
                StatusCode::SERVICE_UNAVAILABLE,
                "Not imported",
                &message,
                &format!("/ui/import/{id}"),
            );
        }
    };
    tracing::info!(token = %token, file = %file.display(), outcome = ?done.outcome, "console: file imported");
    if done.outcome != FileOutcome::Rejected {
        queue_activation_mails(c, &opts, &token).await;
    }
    // The file has served; the reports stay for the result page.
    let _ = tokio::fs::remove_file(&file).await;
    if let Some(u) = c.uploads.table().get_mut(id) {
        u.imported = Some(done);
    }
    views::redirect(&format!("/ui/import/{id}"))
}

/// `send_policy = "on_import"`: as after a dropped file.
async fn queue_activation_mails(c: &Console, opts: &ImportOptions, token: &str) {
    let (rec, apps, mail) = (
        Arc::clone(&c.rec),
        c.import.applications.clone(),
        c.import.mail,
    );
    let (app, actor) = (opts.application.clone(), idsync_store::Actor::token(token));
    let queued = tokio::task::spawn_blocking(move || {
        crate::sources::activation::on_import(&rec, &apps, mail, app.as_deref(), actor)
    })
    .await;
    match queued {
        Ok(Some(Ok(q))) => {
            tracing::info!(application = %q.application, queued = q.queued, "activation mails queued on import")
        }
        Ok(Some(Err(e))) => tracing::error!("queueing activation mails: {e}"),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "queueing activation mails panicked"),
    }
}

fn download(c: &Console, live: &Live, id: &str, json: bool) -> Response<Full<Bytes>> {
    let (path, name) = {
        let t = c.uploads.table();
        let Some(u) = t.get(id) else {
            return c.views.not_found(live);
        };
        let done = u.imported.as_ref().unwrap_or(&u.preview);
        let path = if json {
            &done.report.json
        } else {
            &done.report.csv
        };
        let stage = if u.imported.is_some() {
            "import"
        } else {
            "preview"
        };
        let ext = if json { "json" } else { "csv" };
        (
            path.clone(),
            format!("{}.{stage}.report.{ext}", u.file_name),
        )
    };
    let Ok(body) = std::fs::read(&path) else {
        return c.views.not_found(live);
    };
    let content_type = if json {
        "application/json"
    } else {
        "text/csv; charset=utf-8"
    };
    views::attachment(body, content_type, &name)
}
