//! Agents are data: each is a TOML definition (how to install it into the image, how to run
//! it headless, interactively and to resume, which credentials and API base URL variable it
//! uses, and how to read its output). Built in: `claude`, `codex`, `opencode`, `gemini`, `exec`; users
//! add or override them in their own config. A definition says where a credential goes and
//! which host values are read, so a repository's `.git-agent/agents/*.toml` is refused unless
//! the user trusted that exact file (see [`crate::data`] and [`crate::trust`]).

pub mod claude;
pub mod codex;
pub mod credentials;
pub mod gemini;
pub mod opencode;
pub mod prices;

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Deserialize;

use crate::data::{AGENTS, Found, Origin, Search};
use crate::error::hinted;

/// How the prompt reaches a headless agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptVia {
    /// On standard input.
    Stdin,
    /// As the `{prompt}` (or `{prompt_file}`) word of the command.
    Arg,
}

/// How an agent's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OutputFormat {
    #[serde(rename = "claude-stream-json")]
    ClaudeStreamJson,
    /// `codex exec --json` events.
    #[serde(rename = "codex-json")]
    CodexJson,
    #[serde(rename = "opencode-json")]
    OpencodeJson,
    #[serde(rename = "gemini-stream-json")]
    GeminiStreamJson,
    #[serde(rename = "text")]
    Text,
}

impl OutputFormat {
    /// A transcript of JSON events that [`OutputFormat::render_line`] makes readable.
    pub fn is_structured(self) -> bool {
        self != OutputFormat::Text
    }

    /// What a run reported about itself (tokens, cost, final message), if it did.
    pub fn stats(self, transcript: &str) -> Option<claude::RunStats> {
        match self {
            OutputFormat::ClaudeStreamJson => claude::stats(transcript),
            OutputFormat::CodexJson => codex::stats(transcript),
            OutputFormat::OpencodeJson => opencode::stats(transcript),
            OutputFormat::GeminiStreamJson => gemini::stats(transcript),
            OutputFormat::Text => None,
        }
    }

    /// One line of output, readable; `None` for events not worth showing.
    pub fn render_line(self, line: &str) -> Option<String> {
        match self {
            OutputFormat::ClaudeStreamJson => claude::render_line(line),
            OutputFormat::CodexJson => codex::render_line(line),
            OutputFormat::OpencodeJson => opencode::render_line(line),
            OutputFormat::GeminiStreamJson => gemini::render_line(line),
            OutputFormat::Text => Some(crate::error::sanitize(line)),
        }
    }
}

/// An agent definition as written in its TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDef {
    pub description: String,
    /// The version `{{ version }}` stands for in `install` unless `agent.<name>.version` is set.
    pub default_version: Option<String>,
    #[serde(default)]
    pub install: String,
    pub headless: Vec<String>,
    #[serde(default)]
    pub interactive: Vec<String>,
    #[serde(default)]
    pub resume: Vec<String>,
    /// Continue the previous conversation without a terminal (prompt on stdin).
    #[serde(default)]
    pub resume_headless: Vec<String>,
    #[serde(default)]
    pub version: Vec<String>,
    pub prompt: PromptVia,
    #[serde(default)]
    pub credentials: Vec<String>,
    pub base_url_env: Option<String>,
    /// The model API's base URL, where the credential vault forwards to (unless
    /// `agent.<name>.baseUrl` or the host's `base_url_env` variable says otherwise).
    #[serde(default)]
    pub api_url: Option<String>,
    /// Hosts the agent reaches directly for its API when the vault cannot stand in for it
    /// (no `base_url_env`); the `api` network profile allows them.
    #[serde(default)]
    pub api_domains: Vec<String>,
    /// HTTP methods the credential vault forwards (default GET and POST); anything else gets
    /// 403 at the vault and never reaches the API.
    #[serde(default)]
    pub api_methods: Vec<String>,
    /// Path prefixes, relative to `api_url`, the vault forwards (default `/`: every path);
    /// each covers itself and what lies below it on a `/` boundary.
    #[serde(default)]
    pub api_paths: Vec<String>,
    pub output: OutputFormat,
    #[serde(default)]
    pub state_dirs: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A loaded agent: its name, definition and where that came from.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub def: AgentDef,
    pub origin: Origin,
}

impl Agent {
    pub fn is_exec(&self) -> bool {
        self.name == "exec"
    }
}

/// What a run reported about itself when its agent's definition (and so its output format)
/// is no longer known: Claude's stream-json or Codex's JSON events, whichever it is (the
/// formats share no event type). `None` for a transcript that reports nothing.
pub fn run_stats(transcript: &str) -> Option<claude::RunStats> {
    claude::stats(transcript).or_else(|| codex::stats(transcript))
}

/// Parse and check one definition; errors name the file and the field.
pub fn parse(found: &Found) -> Result<Agent> {
    let where_ = match &found.origin {
        Origin::BuiltIn => format!("built-in agent '{}'", found.name),
        Origin::Repository(p) | Origin::User(p) => p.display().to_string(),
    };
    let def: AgentDef = toml::from_str(&found.text).map_err(|e| {
        hinted(
            format!("bad agent definition {where_}: {}", e.message()),
            format!(
                "fix the file{}; see `git agent agents` for the built-in definitions",
                e.span()
                    .map(|s| format!(
                        " near line {}",
                        found.text[..s.start].matches('\n').count() + 1
                    ))
                    .unwrap_or_default()
            ),
        )
    })?;
    let bad = |field: &str, why: &str| {
        hinted(
            format!("bad agent definition {where_}: field `{field}` {why}"),
            "fix the file; see `git agent agents` for the built-in definitions",
        )
    };
    if def.headless.is_empty() && found.name != "exec" {
        return Err(bad("headless", "must name a command"));
    }
    let uses_prompt = def
        .headless
        .iter()
        .any(|w| w == "{prompt}" || w == "{prompt_file}");
    if def.prompt == PromptVia::Arg && !uses_prompt {
        return Err(bad(
            "headless",
            "must contain \"{prompt}\" or \"{prompt_file}\" when prompt = \"arg\"",
        ));
    }
    for var in def
        .credentials
        .iter()
        .chain(def.base_url_env.iter())
        .chain(def.env.keys())
    {
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(
                "credentials/env",
                &format!("has an invalid variable name '{var}'"),
            ));
        }
    }
    for m in &def.api_methods {
        crate::egress::vault::check_method(m).map_err(|e| bad("api_methods", &e))?;
    }
    for p in &def.api_paths {
        crate::egress::vault::check_path(p).map_err(|e| bad("api_paths", &e))?;
    }
    for dir in &def.state_dirs {
        if !dir.starts_with("/home/agent/") || dir.contains("..") {
            return Err(bad(
                "state_dirs",
                &format!("entry '{dir}' must be under /home/agent/"),
            ));
        }
    }
    Ok(Agent {
        name: found.name.clone(),
        def,
        origin: found.origin.clone(),
    })
}

/// Load the agent `name`.
pub fn load(search: &Search, name: &str) -> Result<Agent> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(hinted(
            format!("invalid agent name '{name}'"),
            "see the available agents with `git agent agents`",
        ));
    }
    match search.find(AGENTS, name)? {
        Some(f) => parse(&f),
        None => Err(hinted(
            format!("unknown agent '{name}'"),
            "see the available agents with `git agent agents`, or add one in ~/.config/git-agent/agents/",
        )),
    }
}

/// Every agent by name: its file and definition, or why it cannot be used (a refused
/// repository file, a parse error).
pub fn list(search: &Search) -> Vec<(String, Result<(Found, Agent)>)> {
    search
        .list(AGENTS)
        .into_iter()
        .map(|(name, found)| {
            let a = found.and_then(|f| parse(&f).map(|a| (f, a)));
            (name, a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, text: &str) -> Found {
        Found {
            name: name.into(),
            origin: Origin::User("/u/agents/x.toml".into()),
            text: text.into(),
        }
    }

    #[test]
    fn builtins_parse() {
        for (name, text) in AGENTS.builtin {
            let a = parse(&Found {
                name: name.to_string(),
                origin: Origin::BuiltIn,
                text: text.to_string(),
            })
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(a.name, *name);
        }
    }

    /// Codex's provider (given on its command lines) points at its task's vault and streams
    /// the Responses API over HTTP, in every command that talks to the model.
    #[test]
    fn codex_commands_use_the_vault_over_http() {
        use crate::sandbox::gateway::{ALIAS, VAULT_PORT};
        let (_, text) = AGENTS.builtin.iter().find(|(n, _)| *n == "codex").unwrap();
        let a = parse(&Found {
            name: "codex".into(),
            origin: Origin::BuiltIn,
            text: text.to_string(),
        })
        .unwrap();
        let url = crate::egress::vault::local_url(ALIAS, VAULT_PORT);
        for cmd in [
            &a.def.headless,
            &a.def.interactive,
            &a.def.resume,
            &a.def.resume_headless,
        ] {
            let at = cmd.iter().position(|w| w == "model_provider=\"git-agent\"");
            assert!(at.is_some_and(|i| cmd[i - 1] == "-c"), "{cmd:?}");
            let provider = cmd
                .iter()
                .find(|w| w.starts_with("model_providers.git-agent="))
                .unwrap_or_else(|| panic!("{cmd:?}"));
            let table: toml::Table =
                toml::from_str(&provider.replacen("model_providers.git-agent=", "p=", 1)).unwrap();
            assert_eq!(table["p"]["base_url"].as_str(), Some(url.as_str()));
            assert_eq!(table["p"]["wire_api"].as_str(), Some("responses"));
            assert_eq!(table["p"]["env_key"].as_str(), Some("OPENAI_API_KEY"));
        }
        assert!(a.def.headless.contains(&"--json".to_string()));
        assert_eq!(a.def.output, OutputFormat::CodexJson);
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse(&found("x", "description = 1\n")).unwrap_err();
        assert!(e.to_string().contains("/u/agents/x.toml"), "{e}");
        let e = parse(&found(
            "x",
            "description = \"d\"\nheadless = [\"a\"]\nprompt = \"stdin\"\noutput = \"text\"\nbogus = 1\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = parse(&found(
            "x",
            "description = \"d\"\nheadless = [\"a\"]\nprompt = \"arg\"\noutput = \"text\"\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("field `headless`"), "{e}");
        let e = parse(&found(
            "x",
            "description = \"d\"\nheadless = []\nprompt = \"stdin\"\noutput = \"text\"\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("must name a command"), "{e}");
        let e = parse(&found(
            "x",
            "description = \"d\"\nheadless = [\"a\"]\nprompt = \"mail\"\noutput = \"text\"\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("mail"), "{e}");
        let e = parse(&found(
            "x",
            "description = \"d\"\nheadless = [\"a\"]\nprompt = \"stdin\"\noutput = \"text\"\nstate_dirs = [\"/etc\"]\n",
        ))
        .unwrap_err();
        assert!(e.to_string().contains("state_dirs"), "{e}");
    }
}
