//! Making agent-written text visible instead of letting the terminal interpret it.
//!
//! Everything `review` prints from the task (file contents in the diff, paths, commit
//! messages, identities) passes through [`escape`]: C0/C1 controls (ESC sequences, OSC 8
//! hyperlinks, CR overstrike, backspace), bidirectional overrides and isolates, zero-width and
//! other invisible characters, and bytes that are not UTF-8 are shown as `\xNN` / `\u{NNNN}`.
//! git is run without colour and the diff is coloured here, so the only escape sequences on
//! the terminal are the ones this module writes.

/// Characters that are not controls but change or hide what a reader sees.
pub fn is_deceptive(c: char) -> bool {
    matches!(c,
        '\u{00ad}'                      // soft hyphen
        | '\u{034f}'                    // combining grapheme joiner
        | '\u{061c}'                    // Arabic letter mark
        | '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' // Hangul fillers
        | '\u{17b4}' | '\u{17b5}'
        | '\u{180b}'..='\u{180f}'       // Mongolian free variation selectors, vowel separator
        | '\u{200b}'..='\u{200f}'       // zero-width space/joiners, LRM, RLM
        | '\u{2028}' | '\u{2029}'       // line / paragraph separators
        | '\u{202a}'..='\u{202e}'       // bidi embeddings and overrides
        | '\u{2060}'..='\u{206f}'       // word joiner, invisible operators, bidi isolates
        | '\u{fe00}'..='\u{fe0f}'       // variation selectors
        | '\u{feff}'                    // zero-width no-break space
        | '\u{fff9}'..='\u{fffb}'       // interlinear annotations
        | '\u{1d173}'..='\u{1d17a}'     // musical formatting
        | '\u{e0000}'..='\u{e0fff}'     // tags, variation selectors supplement
    )
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || is_deceptive(c)
}

/// `text` with everything a terminal would interpret made visible (newlines kept).
pub fn escape(text: &str) -> String {
    escape_bytes(text.as_bytes())
}

/// [`escape`] for bytes that may not be UTF-8 (invalid bytes become `\xNN`).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, None);
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// One character, escaped if needed; `mark` is (start, end) colour codes around escapes.
fn push_char(out: &mut String, c: char, mark: Option<(&str, &str)>) {
    if c == '\n' || !needs_escape(c) {
        out.push(c);
        return;
    }
    let shown = if (c as u32) < 0x100 {
        format!("\\x{:02x}", c as u32)
    } else {
        format!("\\u{{{:04x}}}", c as u32)
    };
    match mark {
        Some((on, off)) => {
            out.push_str(on);
            out.push_str(&shown);
            out.push_str(off);
        }
        None => out.push_str(&shown),
    }
}

/// One line (no newline) escaped, with escapes highlighted when colouring.
fn escape_line(line: &[u8], color: Option<(&str, &str)>) -> String {
    let mut out = String::with_capacity(line.len());
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c, color);
        }
        for b in chunk.invalid() {
            let shown = format!("\\x{b:02x}");
            match color {
                Some((on, off)) => out.push_str(&format!("{on}{shown}{off}")),
                None => out.push_str(&shown),
            }
        }
    }
    out
}

/// Colours for the diff, from the user's `color.diff.*` settings.
#[derive(Debug, Clone, Default)]
pub struct Palette {
    pub meta: String,
    pub frag: String,
    pub func: String,
    pub old: String,
    pub new: String,
    pub reset: String,
}

impl Palette {
    pub fn from_git(git: &crate::git::Git) -> Palette {
        let get = |slot: &str, default: &str| {
            git.run([
                "config",
                "--get-color",
                &format!("color.diff.{slot}"),
                default,
            ])
            .unwrap_or_default()
        };
        Palette {
            meta: get("meta", "bold"),
            frag: get("frag", "cyan"),
            func: get("func", ""),
            old: get("old", "red"),
            new: get("new", "green"),
            reset: "\x1b[m".into(),
        }
    }
}

/// Render `git diff --no-color` output: every line escaped, then coloured (when a palette
/// is given) by its role, which is tracked through hunk headers so a content line that
/// looks like a header is still content.
pub fn render_diff(diff: &[u8], palette: Option<&Palette>) -> String {
    let mut out = String::with_capacity(diff.len() + diff.len() / 8);
    let (mut old_left, mut new_left) = (0u64, 0u64);
    let mark = palette.map(|_| ("\x1b[7m", "\x1b[27m"));
    for raw in diff.split_inclusive(|b| *b == b'\n') {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let in_hunk = old_left > 0 || new_left > 0;
        let role = if in_hunk {
            match line.first() {
                Some(b'+') => {
                    new_left = new_left.saturating_sub(1);
                    Role::New
                }
                Some(b'-') => {
                    old_left = old_left.saturating_sub(1);
                    Role::Old
                }
                Some(b'\\') => Role::Plain,
                _ => {
                    old_left = old_left.saturating_sub(1);
                    new_left = new_left.saturating_sub(1);
                    Role::Plain
                }
            }
        } else if line.starts_with(b"@@") {
            if let Some((o, n)) = crate::ops::review::hunk_counts(line) {
                old_left = o;
                new_left = n;
            }
            Role::Frag
        } else if line.starts_with(b"commit ")
            || line.starts_with(b"diff ")
            || line.starts_with(b"index ")
            || line.starts_with(b"--- ")
            || line.starts_with(b"+++ ")
            || line.starts_with(b"new file")
            || line.starts_with(b"deleted file")
            || line.starts_with(b"old mode")
            || line.starts_with(b"new mode")
            || line.starts_with(b"similarity")
            || line.starts_with(b"rename ")
            || line.starts_with(b"Binary files")
        {
            Role::Meta
        } else {
            Role::Plain
        };
        let text = escape_line(line, mark);
        match (palette, role) {
            (Some(p), Role::Meta) => out.push_str(&paint(&p.meta, &text, &p.reset)),
            (Some(p), Role::Old) => out.push_str(&paint(&p.old, &text, &p.reset)),
            (Some(p), Role::New) => out.push_str(&paint(&p.new, &text, &p.reset)),
            (Some(p), Role::Frag) => {
                // "@@ -a,b +c,d @@ context": the context is the function-name slot.
                match text.get(2..).and_then(|t| t.find("@@")) {
                    Some(end) => {
                        let (head, rest) = text.split_at(end + 4);
                        out.push_str(&paint(&p.frag, head, &p.reset));
                        out.push_str(&paint(&p.func, rest, &p.reset));
                    }
                    None => out.push_str(&paint(&p.frag, &text, &p.reset)),
                }
            }
            _ => out.push_str(&text),
        }
        if raw.ends_with(b"\n") {
            out.push('\n');
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Role {
    Meta,
    Frag,
    Old,
    New,
    Plain,
}

fn paint(color: &str, text: &str, reset: &str) -> String {
    if color.is_empty() || text.is_empty() {
        return text.to_string();
    }
    // Re-apply the line's colour after each highlighted escape.
    let text = text.replace("\x1b[27m", &format!("\x1b[27m{color}"));
    format!("{color}{text}{reset}")
}

/// Serialized JSON with the deceptive characters (which JSON allows raw) written as
/// `\uXXXX` escapes: the same value for a parser, nothing for a terminal to act on.
pub fn json_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if is_deceptive(c) || (c.is_control() && c != '\n' && c != ' ') {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisibles_are_shown() {
        assert_eq!(escape("a\x1b[2Jb\r\x08"), "a\\x1b[2Jb\\x0d\\x08");
        assert_eq!(
            escape("\x1b]8;;http://evil\x07x\x1b]8;;\x07"),
            "\\x1b]8;;http://evil\\x07x\\x1b]8;;\\x07"
        );
        assert_eq!(
            escape("a\u{202e}b\u{200b}c\u{2066}"),
            "a\\u{202e}b\\u{200b}c\\u{2066}"
        );
        assert_eq!(escape("tab\tnaïve\n"), "tab\tnaïve\n");
        assert_eq!(escape_bytes(b"\xff\xfeok"), "\\xff\\xfeok");
        assert_eq!(escape("\u{9b}"), "\\x9b");
        assert_eq!(escape("\u{e0041}"), "\\u{e0041}");
    }

    #[test]
    fn diff_is_coloured_by_role_and_content_is_escaped() {
        let diff = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@ fn f\n--- old\n++++ new \x1b[31mred\n ctx\n";
        let plain = render_diff(diff, None);
        assert!(plain.contains("++++ new \\x1b[31mred"), "{plain}");
        assert!(!plain.contains('\x1b'));
        let p = Palette {
            meta: "<M>".into(),
            frag: "<F>".into(),
            func: String::new(),
            old: "<O>".into(),
            new: "<N>".into(),
            reset: "<R>".into(),
        };
        let c = render_diff(diff, Some(&p));
        assert!(c.contains("<M>+++ b/x<R>"), "{c}");
        assert!(c.contains("<O>--- old<R>"), "content line is content: {c}");
        assert!(
            c.contains("<N>++++ new \x1b[7m\\x1b\x1b[27m<N>[31mred<R>"),
            "{c:?}"
        );
        assert!(c.contains("<F>@@ -1,2 +1,2 @@<R> fn f"), "{c}");
        assert!(c.contains("\n ctx\n"), "{c}");
    }

    #[test]
    fn json_keeps_its_value_but_not_raw_deceptive_characters() {
        let j = serde_json::to_string(&"a\u{202e}b\u{e0041}\x1b").unwrap();
        let safe = json_safe(&j);
        assert!(!safe.contains('\u{202e}') && !safe.contains('\x1b'));
        let back: String = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, "a\u{202e}b\u{e0041}\x1b");
    }
}
