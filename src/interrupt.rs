//! Ctrl-C handling. The first SIGINT only raises a flag; long operations stop at their next
//! safe point (after an engine request has completed, never in the middle of one), undo what
//! they started and return [`Interrupted`]. A second SIGINT exits at once.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tokio::sync::Notify;

use crate::error::Interrupted;

static FLAG: AtomicBool = AtomicBool::new(false);
static NOTIFY: OnceLock<Notify> = OnceLock::new();

fn notify() -> &'static Notify {
    NOTIFY.get_or_init(Notify::new)
}

/// Take over SIGINT. Must be called from inside the async runtime, before any work starts.
pub fn install() -> Result<()> {
    let mut sig = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::spawn(async move {
        while sig.recv().await.is_some() {
            // Wake the waiters before saying anything: a closed stderr must not keep an
            // interrupted command from cleaning up (eprintln! would panic here).
            let again = FLAG.swap(true, Ordering::SeqCst);
            notify().notify_waiters();
            let mut err = std::io::stderr();
            if again {
                let _ = writeln!(err, "git-agent: interrupted again; exiting now");
                std::process::exit(130);
            }
            let _ = writeln!(
                err,
                "git-agent: interrupted; cleaning up (Ctrl-C again to exit at once)"
            );
        }
    });
    Ok(())
}

/// A safe point: fails with [`Interrupted`] once Ctrl-C was pressed.
pub fn checkpoint() -> Result<()> {
    if FLAG.load(Ordering::SeqCst) {
        return Err(anyhow::Error::new(Interrupted));
    }
    Ok(())
}

/// Resolves once Ctrl-C is pressed.
pub async fn interrupted() {
    loop {
        let wait = notify().notified();
        if FLAG.load(Ordering::SeqCst) {
            return;
        }
        wait.await;
    }
}

/// Run `fut` until it finishes or Ctrl-C is pressed; in the latter case `fut` is dropped.
/// Only for work that is safe to abandon anywhere (reads, streams into temp files).
pub async fn abandon_on_interrupt<T>(
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = interrupted() => Err(anyhow::Error::new(Interrupted)),
    }
}
