//! Task names: valid as a ref component and as a container, volume and network name.

use std::fmt;

use anyhow::Result;

use crate::error::hinted;

/// A validated task name: lowercase ASCII letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit, at most 48 characters. Lowercase only, so two tasks never differ only by
/// case (refs may live on a case-insensitive file system).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskName(String);

const MAX_LEN: usize = 48;

impl TaskName {
    pub fn parse(name: &str) -> Result<TaskName> {
        let why = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_LEN {
            Some("it is longer than 48 characters")
        } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
            Some("it must start with a lowercase letter or a digit")
        } else if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        {
            Some("it may only contain a-z, 0-9, '-', '_' and '.'")
        } else if name.contains("..") || name.ends_with('.') || name.ends_with(".lock") {
            Some("it may not contain '..' or end with '.' or '.lock'")
        } else {
            None
        };
        match why {
            Some(why) => Err(hinted(
                format!("invalid task name '{name}': {why}"),
                "pick a name like `fix-login` (lowercase letters, digits, '-', '_', '.')",
            )),
            None => Ok(TaskName(name.to_string())),
        }
    }

    /// A short readable name from the first words of the prompt plus a random suffix, e.g.
    /// `fix-the-login-3fa2`.
    pub fn generate(prompt: &str, random: u16) -> TaskName {
        let mut slug = String::new();
        for word in prompt
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(3)
        {
            if slug.len() + word.len() > 24 {
                break;
            }
            if !slug.is_empty() {
                slug.push('-');
            }
            slug.push_str(&word.to_ascii_lowercase());
        }
        if slug.is_empty() {
            slug.push_str("task");
        }
        TaskName(format!("{slug}-{random:04x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Select the one task whose name equals `query` or starts with it.
pub fn select<'a>(names: &'a [String], query: &str) -> Result<&'a str> {
    if let Some(exact) = names.iter().find(|n| n.as_str() == query) {
        return Ok(exact);
    }
    let matches: Vec<&String> = names.iter().filter(|n| n.starts_with(query)).collect();
    match matches.as_slice() {
        [one] => Ok(one.as_str()),
        [] => Err(hinted(
            format!("no task named '{query}'"),
            "see the tasks of this repository with `git agent list`",
        )),
        many => Err(hinted(
            format!(
                "'{query}' matches {} tasks: {}",
                many.len(),
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "type more of the name so it matches only one task",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["fix-login", "a", "0day", "t.1_x", "x".repeat(48).as_str()] {
            assert!(TaskName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_names_that_break_refs_or_containers() {
        for bad in [
            "",
            "-x",
            ".x",
            "Fix",
            "a b",
            "a/b",
            "a..b",
            "x.",
            "x.lock",
            "é",
            "a:b",
            "a~1",
            &"x".repeat(49),
        ] {
            let err = TaskName::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("invalid task name"), "{bad}");
        }
    }

    #[test]
    fn generated_names_are_valid_and_readable() {
        let n = TaskName::generate("Fix the login bug, please!", 0x3fa2);
        assert_eq!(n.as_str(), "fix-the-login-3fa2");
        assert!(TaskName::parse(n.as_str()).is_ok());
        assert_eq!(TaskName::generate("", 1).as_str(), "task-0001");
        assert_eq!(TaskName::generate("ÜBER café", 2).as_str(), "ber-caf-0002");
        let long = TaskName::generate(&"abcdefghij ".repeat(10), 3);
        assert!(TaskName::parse(long.as_str()).is_ok());
    }

    #[test]
    fn prefixes_select_one_task() {
        let names = vec!["fix-a".to_string(), "fix-b".to_string(), "doc".to_string()];
        assert_eq!(select(&names, "d").unwrap(), "doc");
        assert_eq!(select(&names, "fix-b").unwrap(), "fix-b");
        assert!(
            select(&names, "fix")
                .unwrap_err()
                .to_string()
                .contains("matches 2")
        );
        assert!(
            select(&names, "zzz")
                .unwrap_err()
                .to_string()
                .contains("no task")
        );
    }
}
