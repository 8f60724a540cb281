//! The record that a task's work was merged into a branch of the user's (`git agent merge`).
//! Written by the merge operation; read by `list`, `status` and `check`. Owns no behaviour.

use serde::{Deserialize, Serialize};

/// How and where a task's promoted work was brought into a branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    /// The branch it was merged into (short name, e.g. `main`).
    pub into: String,
    /// The commit on that branch that brought the work in.
    pub commit: String,
    /// When (seconds since the epoch).
    pub at: i64,
    /// `merge`, `squash` or `rebase`.
    pub how: String,
}
