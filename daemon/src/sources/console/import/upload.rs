//! Receiving an upload: the multipart form read as a stream, its CSRF
//! token before a byte of the file, the file written to disk as it comes,
//! and the import options the form chose.

use super::*;

/// Form fields other than the file are small.
const FIELD_BYTES: u64 = 4096;

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
    let id = match crate::sources::console::session::random_token() {
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
