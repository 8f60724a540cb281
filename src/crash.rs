//! Named crash points for fault-injection tests.
//!
//! `GIT_AGENT_CRASH_AT=<point>[,<point>...]` makes the process kill itself with SIGKILL when
//! it reaches one of the named points: no destructor, no cleanup, exactly what `kill -9` at
//! that instant would do. The integration tests use it to prove that every command leaves the
//! user's repository unchanged and its task recoverable from any point. Without the variable
//! a point costs one environment lookup.
//!
//! Point names are `<command>.<moment>`, e.g. `commit.before-refs`; [`POINTS`] lists them all
//! so a test can check that each one is reached.

/// Every crash point in the program.
pub const POINTS: &[&str] = &[
    // spawn
    "spawn.after-refs",
    "spawn.after-network",
    "spawn.after-volume",
    "spawn.after-container",
    "spawn.after-start",
    "spawn.after-deliver",
    "spawn.after-gateway",
    "spawn.after-go",
    "spawn.after-running",
    // sync
    "sync.after-reader",
    "sync.after-bundle",
    "sync.after-admit",
    "sync.after-refs",
    // commit
    "commit.quarantine-written",
    "commit.objects-moved",
    "commit.before-refs",
    "commit.after-refs",
    // push
    "push.before-upstream",
    // purge
    "purge.after-objects",
    "purge.before-refs",
    // allow
    "allow.after-upload",
    "allow.after-reload",
    "allow.after-record",
    // restart
    "restart.after-remove",
    "restart.after-volume",
    "restart.after-deliver",
    "restart.after-create",
    // stop / rm
    // queue
    "queue.after-claim",
];

/// The environment variable naming the points to crash at.
pub const ENV: &str = "GIT_AGENT_CRASH_AT";

/// Die at once, as with kill -9, when `name` is one of the points in `GIT_AGENT_CRASH_AT`.
pub fn point(name: &str) {
    debug_assert!(
        POINTS.contains(&name),
        "crash point {name} is not listed in crash::POINTS"
    );
    let Some(wanted) = std::env::var_os(ENV) else {
        return;
    };
    if wanted
        .to_string_lossy()
        .split(',')
        .any(|p| p.trim() == name)
    {
        // SAFETY: sending a signal to our own process; SIGKILL cannot be caught.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
