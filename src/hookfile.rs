//! git-agent's block inside one git hook file: adding it next to what the user already has,
//! finding it, and taking it out again so the file is restored byte for byte.
//!
//! A block is a run of lines between two marker lines:
//!
//! ```text
//! # >>> git-agent pre-push v0.1.0 (created, newline) >>>
//! ...the hook body...
//! # <<< git-agent pre-push <<<
//! ```
//!
//! The flags in the begin marker record what installing changed besides appending the block:
//! `created` (the file did not exist: git-agent wrote `#!/bin/sh` and the mode), `newline`
//! (the file did not end with a newline: one was added before the block). Removing the block
//! undoes exactly that, so the user's bytes (CRLF line ends, a missing final newline) come back
//! as they were. The block is appended: the user's own hook runs first (an `exit` in it ends the
//! hook before git-agent's block runs).
//!
//! This module works on bytes only: it must not touch the file system, read config or run git
//! (see `ops::hooks` for that).

/// The first line of a hook file git-agent creates.
pub const SHEBANG: &str = "#!/bin/sh\n";

const BEGIN: &str = "# >>> git-agent ";
const END: &str = "# <<< git-agent ";

/// What a file says about git-agent's block for one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The git-agent version that wrote it.
    pub version: String,
    /// git-agent created the file.
    pub created: bool,
    /// git-agent added a newline before the block.
    pub newline: bool,
    /// Byte range of the block (begin marker to the end marker's newline).
    range: std::ops::Range<usize>,
}

/// What to do with a hook file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// It is already as wanted.
    Unchanged,
    /// Write these bytes (creating the file, mode 0755, when it did not exist).
    Write(Vec<u8>),
    /// Remove the file (git-agent created it and nothing else is in it).
    Remove,
}

/// Why a block cannot go into a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The file is a script in another language (its `#!` line, as written).
    NotShell(String),
}

/// The interpreter line of a hook that is not a shell script, if it is not one. A file with
/// no `#!` line is run by `sh` (git falls back to it), so it is a shell script.
pub fn not_shell(content: &[u8]) -> Option<String> {
    let first = content.split(|b| *b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let first = first.trim_end_matches('\r');
    let rest = first.strip_prefix("#!")?;
    let mut words = rest.split_whitespace();
    let prog = words.next().unwrap_or_default();
    let base = |p: &str| p.rsplit('/').next().unwrap_or_default().to_string();
    let mut name = base(prog);
    if name == "env" {
        name = words
            .find(|w| !w.starts_with('-'))
            .map(base)
            .unwrap_or_default();
    }
    const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "posh"];
    (!SHELLS.contains(&name.as_str())).then(|| first.to_string())
}

/// git-agent's block for `hook` in `content`, if there is one.
pub fn find(content: &[u8], hook: &str) -> Option<Found> {
    let begin_prefix = format!("{BEGIN}{hook} v");
    let end_line = format!("{END}{hook} <<<");
    let mut pos = 0;
    let mut begin: Option<(usize, String, bool, bool)> = None;
    for line in content.split_inclusive(|b| *b == b'\n') {
        let start = pos;
        pos += line.len();
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\n').trim_end_matches('\r');
        match &begin {
            None => {
                if let Some(rest) = text.strip_prefix(&begin_prefix)
                    && let Some(rest) = rest.strip_suffix(" >>>")
                {
                    let (version, flags) = match rest.split_once(" (") {
                        Some((v, f)) => (v, f.trim_end_matches(')')),
                        None => (rest, ""),
                    };
                    let flags: Vec<&str> = flags.split(", ").collect();
                    begin = Some((
                        start,
                        version.to_string(),
                        flags.contains(&"created"),
                        flags.contains(&"newline"),
                    ));
                }
            }
            Some((b, version, created, newline)) => {
                if text == end_line {
                    return Some(Found {
                        version: version.clone(),
                        created: *created,
                        newline: *newline,
                        range: *b..pos,
                    });
                }
            }
        }
    }
    None
}

/// The block for `hook` with `body`, as written by git-agent `version`.
fn block(hook: &str, version: &str, body: &str, created: bool, newline: bool) -> Vec<u8> {
    let flags: Vec<&str> = [("created", created), ("newline", newline)]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(f, _)| *f)
        .collect();
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!(" ({})", flags.join(", "))
    };
    let mut out = format!("{BEGIN}{hook} v{version}{flags} >>>\n");
    out.push_str(body);
    if !body.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{END}{hook} <<<\n"));
    out.into_bytes()
}

/// Whether a hook body could be mistaken for a block's end: a body line that is a marker.
pub fn body_is_valid(body: &str) -> bool {
    !body
        .lines()
        .any(|l| l.starts_with(BEGIN.trim_end()) || l.starts_with(END.trim_end()))
}

/// The file without git-agent's block for `hook`: `None` when git-agent created it and only
/// its `#!/bin/sh` line remains (remove the file), `Some(bytes)` otherwise.
fn strip(content: &[u8], found: &Found) -> Option<Vec<u8>> {
    let mut start = found.range.start;
    if found.newline && start > 0 && content[start - 1] == b'\n' {
        start -= 1;
    }
    let mut out = content[..start].to_vec();
    out.extend_from_slice(&content[found.range.end..]);
    (!(found.created && out == SHEBANG.as_bytes())).then_some(out)
}

/// Put git-agent's block for `hook` into a hook file (`None`: it does not exist): appended
/// after the user's content, or replacing an older block in place of it. Idempotent.
pub fn install(
    existing: Option<&[u8]>,
    hook: &str,
    body: &str,
    version: &str,
) -> Result<Edit, Refusal> {
    let Some(content) = existing else {
        let mut out = SHEBANG.as_bytes().to_vec();
        out.extend(block(hook, version, body, true, false));
        return Ok(Edit::Write(out));
    };
    if let Some(line) = not_shell(content) {
        return Err(Refusal::NotShell(line));
    }
    let (base, created) = match find(content, hook) {
        Some(found) => match strip(content, &found) {
            Some(rest) => (rest, found.created),
            None => (SHEBANG.as_bytes().to_vec(), true),
        },
        None => (content.to_vec(), false),
    };
    let newline = !base.is_empty() && !base.ends_with(b"\n");
    let mut out = base;
    if newline {
        out.push(b'\n');
    }
    out.extend(block(hook, version, body, created, newline));
    Ok(if out == content {
        Edit::Unchanged
    } else {
        Edit::Write(out)
    })
}

/// Take git-agent's block for `hook` out of a hook file, restoring what was there before.
pub fn uninstall(content: &[u8], hook: &str) -> Edit {
    match find(content, hook) {
        None => Edit::Unchanged,
        Some(found) => match strip(content, &found) {
            Some(rest) => Edit::Write(rest),
            None => Edit::Remove,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "git agent hook-run pre-push \"$@\"\n";

    fn round_trip(original: &[u8]) {
        let Edit::Write(installed) = install(Some(original), "pre-push", BODY, "1.0").unwrap()
        else {
            panic!("install changed nothing")
        };
        assert!(installed.starts_with(original));
        assert_eq!(
            install(Some(&installed), "pre-push", BODY, "1.0").unwrap(),
            Edit::Unchanged
        );
        // A newer version replaces the block in place.
        let Edit::Write(newer) = install(Some(&installed), "pre-push", BODY, "2.0").unwrap() else {
            panic!("upgrade changed nothing")
        };
        assert_eq!(find(&newer, "pre-push").unwrap().version, "2.0");
        assert_eq!(
            uninstall(&newer, "pre-push"),
            Edit::Write(original.to_vec())
        );
        assert_eq!(
            uninstall(&installed, "pre-push"),
            Edit::Write(original.to_vec())
        );
    }

    #[test]
    fn blocks_come_out_byte_for_byte() {
        round_trip(b"#!/bin/sh\necho mine\n");
        round_trip(b"#!/bin/sh\necho no final newline");
        round_trip(b"#!/bin/bash\r\necho crlf\r\n");
        round_trip(b"#!/bin/sh\r\necho crlf without newline");
        round_trip(b"echo no shebang\n");
        round_trip(b"");
        round_trip(b"#!/usr/bin/env bash\n\n\n");
    }

    #[test]
    fn a_created_file_is_removed_and_kept_when_the_user_added_to_it() {
        let Edit::Write(created) = install(None, "post-commit", BODY, "1.0").unwrap() else {
            panic!()
        };
        assert!(created.starts_with(SHEBANG.as_bytes()));
        assert!(find(&created, "post-commit").unwrap().created);
        assert_eq!(uninstall(&created, "post-commit"), Edit::Remove);
        let mut edited = created.clone();
        edited.extend_from_slice(b"echo added later\n");
        assert_eq!(
            uninstall(&edited, "post-commit"),
            Edit::Write(b"#!/bin/sh\necho added later\n".to_vec())
        );
        // Reinstalling a created file keeps it marked as created.
        let Edit::Write(again) = install(Some(&created), "post-commit", BODY, "2.0").unwrap()
        else {
            panic!()
        };
        assert_eq!(uninstall(&again, "post-commit"), Edit::Remove);
    }

    #[test]
    fn blocks_of_other_hooks_are_left_alone() {
        let Edit::Write(one) = install(Some(b"#!/bin/sh\n"), "pre-push", BODY, "1").unwrap() else {
            panic!()
        };
        assert_eq!(uninstall(&one, "post-commit"), Edit::Unchanged);
        assert!(find(&one, "post-commit").is_none());
    }

    #[test]
    fn other_languages_are_refused() {
        for line in [
            "#!/usr/bin/env python3",
            "#!/usr/bin/perl -w",
            "#!/usr/bin/env -S node --flag",
        ] {
            let content = format!("{line}\nprint(1)\n");
            assert_eq!(
                install(Some(content.as_bytes()), "pre-push", BODY, "1"),
                Err(Refusal::NotShell(line.to_string()))
            );
        }
        for ok in [
            "#!/bin/sh",
            "#!/bin/bash -e",
            "#!/usr/bin/env bash",
            "#! /bin/dash",
        ] {
            assert_eq!(not_shell(format!("{ok}\n").as_bytes()), None, "{ok}");
        }
    }

    #[test]
    fn a_body_cannot_hold_a_marker() {
        assert!(body_is_valid(BODY));
        assert!(!body_is_valid("x\n# <<< git-agent pre-push <<<\n"));
    }
}
