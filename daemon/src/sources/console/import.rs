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
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use idsync_schema::{ApplicationSettings, Kind, Status};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;

use super::screens::Screen;
use super::session::Live;
use super::{guard, views, Call, Console, ConsoleRequest};
use crate::infra::http::{parse_query, BODY_READ_TIMEOUT};
use crate::sources::import::{import_file, FileOutcome, ImportOptions, ReportFiles};

/// The upload form's target.
pub const UPLOAD: &str = "/ui/import";
/// An upload not acted on is forgotten after this long.
const KEEP: Duration = Duration::from_secs(3600);
/// Rows of each table a page shows; the report download has them all.
const SHOWN_ROWS: usize = 200;
/// Form fields other than the file are small.
const FIELD_BYTES: u64 = 4096;

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

/// One uploaded file and what was done with it.
struct Upload {
    owner: [u8; 32],
    file_name: String,
    dir: PathBuf,
    opts: ImportOptions,
    created: Instant,
    preview: Done,
    imported: Option<Done>,
}

/// A finished dry run or import: its outcome and report.
#[derive(Clone)]
struct Done {
    outcome: FileOutcome,
    summary: idsync_schema::report::Summary,
    error: Option<String>,
    warnings: Vec<String>,
    report: ReportFiles,
}

/// The uploads waiting or done, by id.
#[derive(Default)]
pub struct Uploads(Mutex<HashMap<String, Upload>>);

impl Uploads {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget uploads older than [`KEEP`], removing their files.
    fn sweep(&self) {
        let mut t = self.table();
        t.retain(|_, u| {
            let keep = u.created.elapsed() < KEEP;
            if !keep {
                let _ = std::fs::remove_dir_all(&u.dir);
            }
            keep
        });
    }
}

/// Empty the upload folder (uploads do not outlive the process) and make
/// it private.
pub fn prepare_upload_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
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

/// Why an upload is refused: shown on the form's error page.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("{}", .0.message())]
    Refused(guard::Refused),
    #[error("the form is not multipart/form-data")]
    NotMultipart,
    #[error("the form must send its security token before the file")]
    CsrfNotFirst,
    #[error("no file was chosen")]
    NoFile,
    #[error("unknown kind {0:?}")]
    Kind(String),
    #[error("unknown end state {0:?}")]
    EndState(String),
    #[error("the upload stopped: {0}")]
    Form(#[from] multer::Error),
    #[error("the upload stalled for more than {} s", BODY_READ_TIMEOUT.as_secs())]
    Stalled,
    #[error("saving the upload: {0}")]
    Disk(#[from] std::io::Error),
}

/// The form's choices.
#[derive(Default)]
struct Choices {
    kind: Option<String>,
    end_state: Option<String>,
    atomic: bool,
}

/// `POST /ui/import`: save the file, dry-run it, show the preview.
pub async fn upload(c: &Console, req: ConsoleRequest<'_>, live: &Live) -> Response<Full<Bytes>> {
    if !Screen::Import.allowed(live) {
        return c.views.forbidden(live);
    }
    c.uploads.sweep();
    let id = match super::session::random_token() {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "console: no random numbers for an upload");
            return c.views.error(
                Some(live),
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "Try again.",
                UPLOAD,
            );
        }
    };
    let dir = c.import.upload_dir.join(&id);
    let saved = receive(c, req, live, &dir).await;
    let (file, opts) = match saved.and_then(|(file, choices)| Ok((file, options(c, &choices)?))) {
        Ok(ok) => ok,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            let status = match e {
                UploadError::Refused(_) | UploadError::CsrfNotFirst => StatusCode::FORBIDDEN,
                UploadError::Form(
                    multer::Error::StreamSizeExceeded { .. }
                    | multer::Error::FieldSizeExceeded { .. },
                ) => StatusCode::PAYLOAD_TOO_LARGE,
                UploadError::Disk(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            return c
                .views
                .error(Some(live), status, "Not uploaded", &e.to_string(), UPLOAD);
        }
    };
    let mut dry = opts.clone();
    dry.dry_run = true;
    let preview = match run(c, &file, &dry, &dir.join("preview")).await {
        Ok(done) => done,
        Err(message) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return c.views.error(
                Some(live),
                StatusCode::SERVICE_UNAVAILABLE,
                "Not checked",
                &message,
                UPLOAD,
            );
        }
    };
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    c.uploads.table().insert(
        id.clone(),
        Upload {
            owner: *live.identity.digest(),
            file_name,
            dir,
            opts,
            created: Instant::now(),
            preview,
            imported: None,
        },
    );
    views::redirect(&format!("/ui/import/{id}"))
}

/// Read the multipart form: the CSRF token first, then the choices, then
/// the file, streamed to `DIR/NAME`.
async fn receive(
    c: &Console,
    req: ConsoleRequest<'_>,
    live: &Live,
    dir: &Path,
) -> Result<(PathBuf, Choices), UploadError> {
    guard::same_origin(req.headers).map_err(UploadError::Refused)?;
    let boundary = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or(UploadError::NotMultipart)?;
    let body = BodyStream::new(req.body).filter_map(|frame| {
        std::future::ready(match frame {
            Ok(f) => f.into_data().ok().map(Ok),
            Err(e) => Some(Err(e)),
        })
    });
    let limits = multer::SizeLimit::new()
        .whole_stream(max_file_bytes(c) + 64 * 1024)
        .per_field(FIELD_BYTES)
        .for_field("file", max_file_bytes(c));
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["csrf", "kind", "end_state", "atomic", "file"])
        .size_limit(limits);
    let mut form = multer::Multipart::with_constraints(body, boundary, constraints);
    let mut csrf_seen = false;
    let mut choices = Choices::default();
    let mut saved = None;
    while let Some(mut field) = next(form.next_field()).await?? {
        let name = field.name().unwrap_or_default().to_owned();
        if name != "csrf" && !csrf_seen {
            return Err(UploadError::CsrfNotFirst);
        }
        match name.as_str() {
            "csrf" => {
                let sent = next(field.text()).await??;
                if !live.csrf_matches(&sent) {
                    return Err(UploadError::Refused(guard::Refused::Csrf));
                }
                csrf_seen = true;
            }
            "kind" => choices.kind = Some(next(field.text()).await??),
            "end_state" => choices.end_state = Some(next(field.text()).await??),
            "atomic" => choices.atomic = next(field.text()).await?? == "on",
            _ => {
                let name = safe_file_name(field.file_name().unwrap_or_default());
                if name.is_empty() {
                    continue;
                }
                let path = dir.join(name);
                let mut file = create_private(dir, &path).await?;
                while let Some(chunk) = next(field.chunk()).await?? {
                    file.write_all(&chunk).await?;
                }
                file.sync_all().await?;
                saved = Some(path);
            }
        }
    }
    Ok((saved.ok_or(UploadError::NoFile)?, choices))
}

/// `fut` within [`BODY_READ_TIMEOUT`]: a client that stops sending in the
/// middle of an upload does not hold its connection and file for ever.
async fn next<T>(fut: impl std::future::Future<Output = T>) -> Result<T, UploadError> {
    tokio::time::timeout(BODY_READ_TIMEOUT, fut)
        .await
        .map_err(|_| UploadError::Stalled)
}

async fn create_private(dir: &Path, path: &Path) -> std::io::Result<tokio::fs::File> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    })
    .await
    .map_err(std::io::Error::other)??;
    tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
}

/// The browser's name for the file, as a plain name in the upload's own
/// folder: no path, no leading dot, printable; `upload.csv` if nothing
/// is left.
fn safe_file_name(sent: &str) -> String {
    let base = sent.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned();
    if clean.is_empty() {
        "upload.csv".into()
    } else {
        clean
    }
}

/// The import options for the form's choices.
fn options(c: &Console, ch: &Choices) -> Result<ImportOptions, UploadError> {
    let kind_value = ch.kind.as_deref().unwrap_or("users");
    let (kind, application) = match kind_value.split_once(':') {
        Some(("users", app)) if c.import.applications.iter().any(|a| a.name == app) => {
            (Kind::User, Some(app.to_owned()))
        }
        None => match kind_value {
            "users" => (Kind::User, None),
            "groups" => (Kind::Group, None),
            "assets" => (Kind::Asset, None),
            other => return Err(UploadError::Kind(other.to_owned())),
        },
        _ => return Err(UploadError::Kind(kind_value.to_owned())),
    };
    let mut opts = c
        .import
        .defaults
        .iter()
        .find(|o| o.kind == kind)
        .cloned()
        .unwrap_or_else(|| ImportOptions::new(kind));
    opts.application = application;
    match ch.end_state.as_deref().unwrap_or("") {
        "" => {}
        "active" => opts.end_state = Some(Status::Active),
        "inactive" => opts.end_state = Some(Status::Inactive),
        other => return Err(UploadError::EndState(other.to_owned())),
    }
    opts.atomic = opts.atomic || ch.atomic;
    Ok(opts)
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
    let mut r = crate::infra::http::respond(StatusCode::OK, content_type, body);
    // The name is ours (sanitised), but quoted safely all the same.
    let quoted: String = name
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && c.is_ascii() && !c.is_ascii_control())
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{quoted}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploaded_names_stay_in_their_folder() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\Users\\me\\users.csv"), "users.csv");
        assert_eq!(safe_file_name(".hidden"), "hidden");
        assert_eq!(safe_file_name(""), "upload.csv");
        assert_eq!(safe_file_name("a\nb.csv"), "ab.csv");
        assert_eq!(safe_file_name(".."), "upload.csv");
    }
}
