//! Saying on stderr that the engine could not be asked, for the commands that can do without
//! it (`list`, `status`, `review`, `logs`). What they show is computed, without changing
//! anything, by [`crate::ops::inspect`].

use super::engine_for_reading;
use crate::runtime::docker::DockerRuntime;

/// Say once, on stderr, that the engine could not be asked.
pub fn warn_unreachable(e: impl std::fmt::Display) {
    eprintln!("git-agent: {e}; runtime status unknown");
}

/// Connect to the engine, or warn that runtime status is unknown and go on without it.
pub async fn engine_or_warn() -> Option<DockerRuntime> {
    match engine_for_reading().await {
        Ok(rt) => Some(rt),
        Err(e) => {
            warn_unreachable(&e);
            None
        }
    }
}
