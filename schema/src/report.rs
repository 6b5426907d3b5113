//! What an import says of a file as a whole: its outcome and its row
//! counts. The CSV import writes them in its reports, the daemon's metrics
//! count them, the CLI picks its exit status from them: one definition,
//! pure, that none of those has to import from another.

use serde::{Deserialize, Serialize};

/// Counts of a whole import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

impl Summary {
    /// Rows decided so far.
    pub fn rows(&self) -> u64 {
        self.created + self.updated + self.unchanged + self.rejected
    }
}

/// How the file as a whole ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOutcome {
    /// Every row accepted.
    Accepted,
    /// Some rows rejected, the others applied.
    Partial,
    /// Nothing applied: the file itself was refused, or an atomic import
    /// had a rejected row.
    Rejected,
}
