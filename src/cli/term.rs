//! Terminal helpers: raw mode for interactive sessions, window size, tty checks.

use std::io::IsTerminal;

use anyhow::Result;

/// Puts the terminal in raw mode while alive; restores it on drop. Does nothing when stdin
/// is not a terminal.
pub struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    pub fn enable() -> Result<RawMode> {
        if !std::io::stdin().is_terminal() {
            return Ok(RawMode { saved: None });
        }
        // SAFETY: termios is plain data; tcgetattr fills it for fd 0, which is a terminal.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Ok(RawMode { saved: None });
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Ok(RawMode { saved: Some(saved) })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restoring the attributes read in `enable` on the same descriptor.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}

/// The terminal's (columns, rows), if stdout is a terminal.
pub fn size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize struct; we check the return value.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_col > 0)
            .then_some((ws.ws_col, ws.ws_row))
    }
}

pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Turns terminal echo off while alive (for secrets); does nothing without a terminal.
pub struct NoEcho {
    saved: Option<libc::termios>,
}

impl NoEcho {
    pub fn enable() -> NoEcho {
        if !std::io::stdin().is_terminal() {
            return NoEcho { saved: None };
        }
        // SAFETY: as in RawMode::enable.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return NoEcho { saved: None };
            }
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            NoEcho { saved: Some(saved) }
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(saved) = self.saved {
            // SAFETY: restoring attributes read in `enable`.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &saved);
            }
        }
    }
}

/// Open `text` in the user's editor (git's GIT_EDITOR / core.editor) and return what they
/// saved. `failed` is the error to give when the editor exits unsuccessfully.
pub fn edit_in_editor(
    git: &crate::git::Git,
    text: &str,
    prefix: &str,
    suffix: &str,
    failed: impl FnOnce() -> anyhow::Error,
) -> Result<String> {
    use anyhow::Context;
    let file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile()?;
    std::fs::write(file.path(), text)?;
    let editor = git.run(["var", "GIT_EDITOR"])?;
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("{editor} \"$@\""), "editor"])
        .arg(file.path())
        .status()
        .context("cannot start the editor")?;
    if !status.success() {
        return Err(failed());
    }
    Ok(String::from_utf8_lossy(&std::fs::read(file.path())?).into_owned())
}

/// The terminal for an interactive session ([`crate::runtime::Terminal`]): raw mode while the
/// returned guard lives, what the user types (read on a plain thread, so a blocked read never
/// holds up the end of the session), output to stdout, and the window size, sent again
/// whenever the window changes. Needs a Tokio runtime.
pub fn session() -> Result<(RawMode, crate::runtime::Terminal)> {
    let raw = RawMode::enable()?;
    let (tx, input) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 1024];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let (sizes, size) = tokio::sync::watch::channel(self::size());
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = sizes.closed() => break,
                _ = winch.recv() => {
                    // Every change is passed on, even to the same size: the window may
                    // have been resized and back between two signals.
                    sizes.send_replace(self::size());
                }
            }
        }
    });
    let terminal = crate::runtime::Terminal {
        input,
        output: Box::new(tokio::io::stdout()),
        size,
    };
    Ok((raw, terminal))
}
