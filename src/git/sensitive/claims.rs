//! Commit messages and identities that claim people.
//!
//! `git agent commit` re-creates each agent commit as the user, keeping its message. A message
//! that says `Signed-off-by: <someone>` or `Reviewed-by: <someone>` would then go out under the
//! user's name claiming that someone certified or reviewed it. Such lines are flagged wherever
//! they are in the message (git parses trailers only in the last paragraph, but other tools and
//! readers are less strict), also in disguise: leading spaces, other separators, letters from
//! other scripts that look like Latin ones, full-width forms, invisible characters.
//!
//! The agent's author and committer fields are not kept on the re-created commits (they are
//! the user's); an identity other than the sandbox's own is flagged and recorded in the
//! provenance note, so the claim is visible without being promoted.

use serde::Serialize;

/// Trailer keys that claim a person did something.
pub const PEOPLE_KEYS: &[&str] = &[
    "signed-off-by",
    "reviewed-by",
    "co-authored-by",
    "acked-by",
    "tested-by",
    "reported-by",
    "suggested-by",
    "helped-by",
];

/// The identity git inside the sandbox commits with (dockerfiles/final.dockerfile).
pub const SANDBOX_IDENT: &str = "git-agent sandbox <agent@sandbox.invalid>";

/// A line of a message that claims a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claim {
    /// 1-based line number in the message.
    pub line: usize,
    /// The line as written (escape it before printing).
    pub text: String,
    pub why: String,
}

/// Map a character to the ASCII character it imitates, if it is a well-known look-alike.
fn fold(c: char) -> Option<char> {
    let a = match c {
        'а' | 'А' | 'α' | 'Α' => 'a',
        'В' | 'Β' | 'Ь' => 'b',
        'с' | 'С' | 'ϲ' | 'Ϲ' => 'c',
        'ԁ' => 'd',
        'е' | 'Е' | 'ε' | 'Ε' | 'ё' => 'e',
        'ɡ' => 'g',
        'һ' | 'Н' | 'Η' => 'h',
        'і' | 'І' | 'ι' | 'Ι' | 'ı' | 'ӏ' | 'Ӏ' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'ℓ' => 'l',
        'М' | 'Μ' => 'm',
        'Ν' => 'n',
        'о' | 'О' | 'ο' | 'Ο' | 'σ' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' | 'Ѕ' | 'ſ' => 's',
        'Т' | 'Τ' | 'τ' => 't',
        'υ' => 'u',
        'ν' | 'ѵ' => 'v',
        'ԝ' => 'w',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'у' | 'У' | 'Υ' | 'ү' => 'y',
        'Ζ' => 'z',
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{fe58}' | '\u{fe63}' | '\u{ff0d}' | '_' => '-',
        '\u{ff1a}' | '\u{2236}' | '\u{a789}' | '\u{02d0}' | '\u{02f8}' | '\u{fe13}'
        | '\u{fe55}' | '\u{0589}' | '\u{05c3}' | '\u{0703}' | '\u{0704}' | '\u{16ec}'
        | '\u{1803}' | '\u{205a}' => ':',
        // Full-width ASCII.
        '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0)?,
        _ => return None,
    };
    Some(a)
}

/// Invisible characters that change nothing a reader sees.
fn invisible(c: char) -> bool {
    matches!(c, '\u{00ad}' | '\u{034f}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fe00}'..='\u{fe0f}' | '\u{e0000}'..='\u{e0fff}')
}

/// What a line looks like to a reader: look-alikes folded to ASCII, invisible characters
/// dropped, lower case, every run of spaces/dashes/underscores one `-`, no leading space.
pub fn skeleton(line: &str) -> String {
    let mut out = String::new();
    for c in line.chars() {
        if invisible(c) {
            continue;
        }
        let c = fold(c).unwrap_or(c);
        let c = if c.is_whitespace() || c == '-' {
            '-'
        } else {
            c.to_ascii_lowercase()
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out
}

/// The lines of `message` that claim people.
pub fn message_claims(message: &str) -> Vec<Claim> {
    let mut out = Vec::new();
    for (i, line) in message.lines().enumerate() {
        let skel = skeleton(line);
        // `:` is git's trailer separator; `=` is another common one (`trailer.separators`).
        let Some((key, rest)) = skel.split_once(':').or_else(|| skel.split_once('=')) else {
            continue;
        };
        let key = key.trim_end_matches('-');
        let plain = |k: &str| k.replace('-', "");
        let known = PEOPLE_KEYS.iter().find(|k| plain(k) == plain(key));
        let why = match known {
            Some(k) => {
                let exact = line
                    .get(..k.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(k))
                    && line[k.len()..].starts_with(':');
                if exact {
                    format!("{k} claims a person")
                } else {
                    format!("disguised {k} (look-alike characters, spacing or separator)")
                }
            }
            None if key.ends_with("-by")
                && key.len() <= 40
                && (rest.contains('@') || rest.contains('<')) =>
            {
                format!("{key} names a person")
            }
            None => continue,
        };
        out.push(Claim {
            line: i + 1,
            text: line.to_string(),
            why,
        });
    }
    out
}

/// Is `ident` (`Name <email>`) someone other than the sandbox's own git identity?
pub fn foreign_identity(ident: &str) -> bool {
    ident.trim() != SANDBOX_IDENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_disguised_trailers_are_found() {
        let msg = "fix typo\n\nSigned-off-by: Linus <torvalds@example.org>\n";
        let c = message_claims(msg);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].line, 3);
        assert!(c[0].why.starts_with("signed-off-by claims"), "{c:?}");
        for disguised in [
            "  Reviewed-by: A <a@b>",
            "reviewed-BY: A <a@b>",
            "Co-authored-by：A <a@b>",
            "Ѕigned-off-by: A <a@b>",
            "Signed\u{200b}-off-by: A <a@b>",
            "Signed off by: A <a@b>",
            "Signed‐off‐by: A <a@b>",
            "Ａcked-by: A",
            "Tested_by: A",
            "Helped-by : A",
            "Suggested-by = A <a@b>",
        ] {
            let c = message_claims(&format!("subject\n\n{disguised}\n"));
            assert_eq!(c.len(), 1, "{disguised}: {c:?}");
        }
        assert_eq!(
            message_claims("Approved-by: Boss <boss@corp>")[0].why,
            "approved-by names a person"
        );
        for harmless in [
            "fix signing",
            "Reviewed the code by hand",
            "Note: by default",
            "https://example.org/by:x",
        ] {
            assert!(message_claims(harmless).is_empty(), "{harmless}");
        }
    }

    #[test]
    fn only_the_sandbox_identity_is_its_own() {
        assert!(!foreign_identity(SANDBOX_IDENT));
        assert!(foreign_identity("Linus Torvalds <torvalds@example.org>"));
    }
}
