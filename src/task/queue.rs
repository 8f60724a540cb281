//! What a queued task keeps in its record until a server starts it, and who claimed it.
//!
//! A task added with `git agent add` is recorded with status `queued`, its base pinned and
//! its prompt rendered, plus the spawn options that are decided only when it starts
//! ([`QueuedSpawn`]). A server claims it with one compare-and-swap state change (queued →
//! creating, with a [`Claim`]) while holding the task's lease (see [`super::lock::Lease`]);
//! the kernel releases the lease when the claimer dies, so a claim whose lease is free and
//! whose sandbox was never created is a dead claim, put back in the queue ([`dead_claim`]).
//! Owns these record parts only; it must not start anything.

use serde::{Deserialize, Serialize};

use super::{Status, TaskRecord};

/// Spawn options of a queued task that are applied when it starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueuedSpawn {
    /// `--network`.
    #[serde(default)]
    pub profile: Option<String>,
    /// `--allow`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// `--allow-address`.
    #[serde(default)]
    pub allow_address: Vec<String>,
    /// `--read-only`.
    #[serde(default)]
    pub read_only: bool,
    /// `--git-readonly` / `--no-git-readonly`.
    #[serde(default)]
    pub git_readonly: Option<bool>,
    /// `--stack`.
    #[serde(default)]
    pub stack: Option<String>,
    /// `--oci-runtime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_runtime: Option<String>,
    /// The description the prompt was rendered from (kept for the template vars).
    #[serde(default)]
    pub description: String,
    /// `--engine`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// Who claimed a queued task to start it: the server (host, pid, when it started) and the
/// worker process doing the start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub host: String,
    /// The server's process id.
    pub server_pid: u32,
    /// When the server started (seconds since the epoch).
    pub server_started: i64,
    /// The process that claimed and starts the task.
    pub worker_pid: u32,
    /// When it was claimed.
    pub at: i64,
}

impl Claim {
    /// `host pid N (since T)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "server pid {} on {} (worker pid {})",
            self.server_pid, self.host, self.worker_pid
        )
    }
}

/// Is this record a claim whose claimer is gone before it created anything? `lease_held`
/// says whether a live process holds the task's lease.
pub fn dead_claim(record: &TaskRecord, lease_held: bool) -> bool {
    record.status == Status::Creating
        && record.claim.is_some()
        && record.sandbox.container.is_none()
        && !lease_held
}

/// Put a dead claim back in the queue (in memory; the caller records it).
pub fn requeue(record: &mut TaskRecord) {
    record.status = Status::Queued;
    record.claim = None;
}

/// This machine's name, for claims.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into our buffer; the result is checked.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_claim_without_a_sandbox_and_without_a_live_lease_is_dead() {
        let mut r = TaskRecord {
            status: Status::Creating,
            claim: Some(Claim::default()),
            ..Default::default()
        };
        assert!(dead_claim(&r, false));
        assert!(!dead_claim(&r, true), "a live claimer keeps it");
        r.sandbox.container = Some("c".into());
        assert!(
            !dead_claim(&r, false),
            "a created sandbox is recovery's to settle"
        );
        r.sandbox.container = None;
        r.claim = None;
        assert!(!dead_claim(&r, false), "a plain spawn is not a claim");
        let mut q = TaskRecord {
            status: Status::Creating,
            claim: Some(Claim::default()),
            ..Default::default()
        };
        requeue(&mut q);
        assert_eq!((q.status, q.claim), (Status::Queued, None));
    }

    #[test]
    fn host_name_is_not_empty() {
        assert!(!host_name().is_empty());
    }
}
