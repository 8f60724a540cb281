//! User-facing errors: what went wrong, and what to do about it.
//!
//! Library code returns `anyhow::Error`s with context; where the user can act on a failure it
//! attaches a [`Hint`]. Only the CLI layer renders errors (see `cli::report`).

use std::fmt;

/// An error the user can fix, with the next step to take.
#[derive(Debug)]
pub struct Hint {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hint {}

/// Build an error carrying a hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hint {
        message: message.into(),
        hint: hint.into(),
    })
}

/// Find the first hint anywhere in an error chain.
pub fn find_hint(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|e| e.downcast_ref::<Hint>())
        .map(|h| h.hint.as_str())
}

/// Raised when the user interrupts a command (Ctrl-C) after cleanup has run.
#[derive(Debug)]
pub struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Make text from a sandbox safe to print on a terminal: control characters and escape
/// sequences become visible `\xNN` escapes, so a hostile task cannot drive the user's terminal,
/// and bidirectional-text controls become `\u{NNNN}`, so it cannot make a name read as another.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            '\u{061c}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_is_found_through_context() {
        let err = hinted("no engine", "start dockerd").context("spawn failed");
        assert_eq!(find_hint(&err), Some("start dockerd"));
        assert_eq!(err.to_string(), "spawn failed");
    }

    #[test]
    fn sanitize_escapes_terminal_controls() {
        assert_eq!(sanitize("ok\n\x1b[2Jx\r"), "ok\n\\x1b[2Jx\\x0d");
        assert_eq!(sanitize("tab\there"), "tab\there");
        assert_eq!(sanitize("evil\u{202e}hs.txt é"), "evil\\u{202e}hs.txt é");
    }
}
