//! Saying on stderr that the engine could not be asked, for the commands that can do without
//! it (`list`, `status`, `review`, `logs`). What they show is computed, without changing
//! anything, by [`crate::ops::inspect`].

/// Say once, on stderr, that the engine could not be asked.
pub fn warn_unreachable(e: impl std::fmt::Display) {
    eprintln!("git-agent: {e}; runtime status unknown");
}
