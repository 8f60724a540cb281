//! Starting a process that outlives the command that starts it: a session of its own (no
//! terminal, no signals of the user's shell), a grandchild (no zombie waits for the caller),
//! stdin closed, stdout and stderr appended to a log file. Used for work a git hook or an
//! event must not wait for (`agent.hooks.postCommit`, `agent.onFinish`, ...), and a task's
//! follower (see [`crate::ops::follow`]).
//!
//! It must not decide what runs: callers build the command (argv only, never a shell
//! string made from data) and choose the log.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

/// A log is started again when it grew beyond this.
const LOG_LIMIT: u64 = 1 << 20;

/// Start `cmd` detached, its output appended to `log`, and return once it was started.
pub fn spawn(mut cmd: Command, log: &Path) -> Result<()> {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if std::fs::metadata(log).is_ok_and(|m| m.len() > LOG_LIMIT) {
        let _ = std::fs::remove_file(log);
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: only async-signal-safe calls (setsid, fork, _exit) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    child
        .wait()
        .with_context(|| format!("cannot start {program}"))?;
    Ok(())
}
