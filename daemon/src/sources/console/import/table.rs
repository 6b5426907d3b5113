//! The uploads the console holds between the dry run and the import:
//! whose each is, what was done with it, and when it goes.

use super::*;

/// An upload not acted on is forgotten after this long.
const KEEP: Duration = Duration::from_secs(3600);

/// One uploaded file and what was done with it.
pub(super) struct Upload {
    pub(super) owner: [u8; 32],
    pub(super) file_name: String,
    pub(super) dir: PathBuf,
    pub(super) opts: ImportOptions,
    pub(super) created: Instant,
    pub(super) preview: Done,
    pub(super) imported: Option<Done>,
}

/// A finished dry run or import: its outcome and report.
#[derive(Clone)]
pub(super) struct Done {
    pub(super) outcome: FileOutcome,
    pub(super) summary: idsync_schema::report::Summary,
    pub(super) error: Option<String>,
    pub(super) warnings: Vec<String>,
    pub(super) report: ReportFiles,
}

/// The uploads waiting or done, by id.
#[derive(Default)]
pub struct Uploads(Mutex<HashMap<String, Upload>>);

impl Uploads {
    pub(super) fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget uploads older than [`KEEP`], removing their files.
    pub(super) fn sweep(&self) {
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
