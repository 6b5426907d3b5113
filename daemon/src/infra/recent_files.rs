//! The last files the drop folders finished, with their outcome: what an
//! operator looks at first when a feed goes wrong (the console's overview,
//! `/status`). Bounded, newest first, kept in memory only: the reports in
//! `processed/` and `rejected/` are the record.

use std::collections::VecDeque;
use std::sync::Mutex;

use idsync_schema::report::{FileOutcome, Summary};
use serde::Serialize;
use time::OffsetDateTime;

/// Files kept.
const KEPT: usize = 20;

/// One finished file.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedFile {
    /// The drop folder (`users`, `users/crm`, `assets`, …).
    pub folder: String,
    /// The file's name where it ended (`processed/` or `rejected/`).
    pub file: String,
    pub outcome: FileOutcome,
    pub summary: Summary,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The last [`KEPT`] finished files.
#[derive(Debug, Default)]
pub struct RecentFiles(Mutex<VecDeque<FinishedFile>>);

impl RecentFiles {
    pub fn push(&self, file: FinishedFile) {
        let mut files = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if files.len() == KEPT {
            files.pop_back();
        }
        files.push_front(file);
    }

    /// Newest first.
    pub fn json(&self) -> serde_json::Value {
        let files = self.0.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::to_value(&*files).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_few() {
        let recent = RecentFiles::default();
        for n in 0..KEPT + 5 {
            recent.push(FinishedFile {
                folder: "users".into(),
                file: format!("f{n}.csv"),
                outcome: FileOutcome::Accepted,
                summary: Summary::default(),
                at: OffsetDateTime::UNIX_EPOCH,
            });
        }
        let json = recent.json();
        let files = json.as_array().unwrap();
        assert_eq!(files.len(), KEPT);
        assert_eq!(files[0]["file"], format!("f{}.csv", KEPT + 4));
        assert_eq!(files[0]["outcome"], "accepted");
    }
}
