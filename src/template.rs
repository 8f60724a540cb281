//! Prompt templates: markdown with a small front matter (`key: value` lines between `---`
//! markers), rendered by minijinja with strict undefined variables so a typo is an error,
//! not an empty string.
//!
//! Variables: `description` (the user's -m/-F text), `repository` (its directory name),
//! `base` (commit id), `base_branch` (may be empty), `branch` (`agent/<task>`), `task`.

use std::collections::BTreeMap;

use anyhow::Result;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::data::{Found, Origin};
use crate::error::hinted;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct PromptTemplate {
    pub name: String,
    pub origin: Origin,
    pub meta: BTreeMap<String, String>,
    pub body: String,
}

impl PromptTemplate {
    pub fn description(&self) -> &str {
        self.meta
            .get("description")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// The values a template can use.
#[derive(Debug, Clone, Serialize)]
pub struct PromptVars {
    pub description: String,
    pub repository: String,
    pub base: String,
    pub base_branch: String,
    pub branch: String,
    pub task: String,
}

fn where_(found: &Found) -> String {
    match &found.origin {
        Origin::BuiltIn => format!("built-in template '{}'", found.name),
        Origin::Repository(p) | Origin::User(p) => p.display().to_string(),
    }
}

/// Split off and parse the front matter.
pub fn parse(found: &Found) -> Result<PromptTemplate> {
    let text = found.text.replace("\r\n", "\n");
    let mut meta = BTreeMap::new();
    let body = if let Some(rest) = text.strip_prefix("---\n") {
        let end = rest
            .find("\n---\n")
            .or_else(|| rest.strip_suffix("\n---").map(|r| r.len()));
        let Some(end) = end else {
            return Err(hinted(
                format!("{}: front matter is not closed", where_(found)),
                "end the front matter with a line `---`",
            ));
        };
        for (i, line) in rest[..end].lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                return Err(hinted(
                    format!(
                        "{}: line {} of the front matter is not `key: value`",
                        where_(found),
                        i + 2
                    ),
                    "write front matter lines as `description: what this template is for`",
                ));
            };
            meta.insert(k.trim().to_string(), v.trim().to_string());
        }
        rest[end..]
            .trim_start_matches("\n---")
            .trim_start_matches('\n')
            .to_string()
    } else {
        text
    };
    Ok(PromptTemplate {
        name: found.name.clone(),
        origin: found.origin.clone(),
        meta,
        body,
    })
}

/// Render a template; an unknown variable or a syntax error is an error naming the template.
pub fn render(t: &PromptTemplate, vars: &PromptVars) -> Result<String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.render_str(&t.body, minijinja::value::Serde(vars))
        .map_err(|e| {
            hinted(
                format!("cannot render template '{}' ({}): {e}", t.name, t.origin),
                "templates may use description, repository, base, base_branch, branch and task",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::PROMPTS;

    fn vars() -> PromptVars {
        PromptVars {
            description: "the login page crashes".into(),
            repository: "shop".into(),
            base: "abc123".into(),
            base_branch: "main".into(),
            branch: "agent/fix-1".into(),
            task: "fix-1".into(),
        }
    }

    fn found(text: &str) -> Found {
        Found {
            name: "t".into(),
            origin: Origin::User("/u/templates/t.md".into()),
            text: text.into(),
        }
    }

    #[test]
    fn every_builtin_renders() {
        for (name, text) in PROMPTS.builtin {
            let t = parse(&Found {
                name: name.to_string(),
                origin: Origin::BuiltIn,
                text: text.to_string(),
            })
            .unwrap();
            assert!(!t.description().is_empty(), "{name} has a description");
            let out = render(&t, &vars()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(out.contains("the login page crashes"), "{name}: {out}");
            assert!(!out.starts_with("---"), "{name}");
        }
    }

    #[test]
    fn fix_template_fills_in_the_documented_variables() {
        let text = PROMPTS.builtin.iter().find(|(n, _)| *n == "fix").unwrap().1;
        let t = parse(&Found {
            name: "fix".into(),
            origin: Origin::BuiltIn,
            text: text.into(),
        })
        .unwrap();
        let out = render(&t, &vars()).unwrap();
        assert!(out.contains("`shop`") && out.contains("`agent/fix-1`") && out.contains("abc123"));
        assert!(out.contains("branch `main`"), "{out}");
    }

    #[test]
    fn undefined_variables_and_bad_front_matter_are_errors() {
        let t = parse(&found("---\ndescription: d\n---\nHello {{ descripton }}")).unwrap();
        let e = render(&t, &vars()).unwrap_err();
        assert!(e.to_string().contains("template 't'"), "{e}");
        assert!(parse(&found("---\ndescription: d\nno end")).is_err());
        let e = parse(&found("---\njust words\n---\nbody")).unwrap_err();
        assert!(e.to_string().contains("/u/templates/t.md"), "{e}");
        let e = render(&parse(&found("{% if %}")).unwrap(), &vars()).unwrap_err();
        assert!(e.to_string().contains("cannot render"), "{e}");
    }

    #[test]
    fn templates_without_front_matter_are_all_body() {
        let t = parse(&found("Do {{ description }}")).unwrap();
        assert!(t.meta.is_empty());
        assert_eq!(render(&t, &vars()).unwrap(), "Do the login page crashes");
    }
}
