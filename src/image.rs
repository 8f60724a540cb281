//! The sandbox image: a Dockerfile composed from layers, rendered with minijinja, built from
//! an in-memory context that never contains the repository, and tagged by a hash of what
//! goes into it so an unchanged image is never rebuilt.
//!
//! Layers, in order, each a dockerfile snippet with a known origin:
//! - `base`: built in (`dockerfiles/base.dockerfile`): `FROM agent.baseImage`, git, extra CA
//!   certificates (`agent.extraCaCerts`) and the task user;
//! - `stack`: the language stack's snippet (`dockerfiles/stacks/<stack>.dockerfile`, looked
//!   up repository, user, built-in), detected from the repository or set with `--stack` or
//!   `agent.stack`;
//! - `agent`: the agent definition's `install` snippet;
//! - `project`: the repository's `.git-agent/dockerfiles/project.dockerfile`, if any;
//! - `final`: built in; adds the sandbox helper and the agent-side guards of `hooks/` (see
//!   [`crate::guard`]) and switches to the task user, so no earlier layer can leave the
//!   task running as root.
//!
//! Because earlier layers render to the same text, the engine's build cache reuses them:
//! changing only the project layer rebuilds only from there.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use minijinja::Environment;
use sha2::{Digest, Sha256};

use crate::agent::Agent;
use crate::data::{STACKS, Search};
use crate::error::hinted;
use crate::git::Config;

const BASE_LAYER: &str = include_str!("../dockerfiles/base.dockerfile");
const FINAL_LAYER: &str = include_str!("../dockerfiles/final.dockerfile");
const SANDBOX_HELPER: &str = include_str!("../dockerfiles/git-agent-sandbox");
const GATEWAY_LAYER: &str = include_str!("../dockerfiles/gateway.dockerfile");
const GATEWAY_HELPER: &str = include_str!("../dockerfiles/git-agent-gateway");
/// The agent-side guards, copied to `/usr/local/lib/git-agent/hooks/` by the final layer:
/// (file name, content, mode).
const HOOKS: &[(&str, &str, u32)] = &[
    ("git-readonly", include_str!("../hooks/git-readonly"), 0o755),
    (
        "codex-readonly-git.rules",
        include_str!("../hooks/codex-readonly-git.rules"),
        0o644,
    ),
];

/// The default base image for users; tests and air-gapped machines set `agent.baseImage`.
pub const DEFAULT_BASE_IMAGE: &str = "debian:bookworm-slim";
/// The task user inside the sandbox.
pub const TASK_USER: &str = "agent";
pub const TASK_UID: u32 = 1000;
/// Label on built images, so `image` commands can find them.
pub const LABEL_IMAGE: &str = "git-agent.image";

/// Where a layer's text came from.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: &'static str,
    pub origin: String,
    pub text: String,
}

/// A fully composed image: its Dockerfile, extra context files, and content-derived tag.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    pub layers: Vec<Layer>,
    pub dockerfile: String,
    pub tag: String,
    pub stack: String,
    extra_ca: Option<Vec<u8>>,
    /// The helper script copied into the image: (file name, text).
    helper: (&'static str, &'static str),
}

/// What an image is composed for.
pub struct ImageRequest<'a> {
    /// The repository's work tree.
    pub root: &'a Path,
    pub config: &'a Config,
    pub search: &'a Search,
    pub agent: &'a Agent,
    /// `--stack`, overriding `agent.stack` and detection.
    pub stack: Option<&'a str>,
}

/// Compose the image for a task.
pub fn plan(req: &ImageRequest<'_>) -> Result<ImagePlan> {
    let config = req.config;
    let base_image = config.get("agent.baseImage").unwrap_or(DEFAULT_BASE_IMAGE);
    let extra_ca = extra_ca(config)?;
    let stack = match req.stack.or(config.get("agent.stack")) {
        Some(s) => s.to_string(),
        None => crate::stack::detect(req.root).to_string(),
    };
    let stack_file = req.search.find(STACKS, &stack)?.ok_or_else(|| {
        hinted(
            format!("unknown stack '{stack}'"),
            "use one of default, rust, go, node, python, java, or add .git-agent/dockerfiles/stacks/<name>.dockerfile",
        )
    })?;
    let version = config
        .get(&format!("agent.{}.version", req.agent.name))
        .or(req.agent.def.default_version.as_deref())
        .unwrap_or("latest");
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let vars = minijinja::context! {
        base_image => base_image,
        user => TASK_USER,
        uid => TASK_UID,
        extra_ca => extra_ca.is_some(),
        version => version,
        agent => req.agent.name.as_str(),
        stack => stack.as_str(),
    };
    let render = |name: &str, text: &str| -> Result<String> {
        env.render_str(text, &vars)
            .with_context(|| format!("cannot render the {name} dockerfile layer"))
    };
    let mut layers = vec![Layer {
        name: "base",
        origin: "built-in dockerfiles/base.dockerfile".into(),
        text: render("base", BASE_LAYER)?,
    }];
    check_snippet(&stack_file.text, &stack_file.origin.to_string())?;
    layers.push(Layer {
        name: "stack",
        origin: format!("{stack}: {}", stack_file.origin),
        text: render("stack", &stack_file.text)?,
    });
    if !req.agent.def.install.trim().is_empty() {
        check_snippet(&req.agent.def.install, &req.agent.origin.to_string())?;
        layers.push(Layer {
            name: "agent",
            origin: format!("{}: {}", req.agent.name, req.agent.origin),
            text: render("agent", &req.agent.def.install)?,
        });
    }
    let project = req.root.join(".git-agent/dockerfiles/project.dockerfile");
    if project.is_file() {
        let text = std::fs::read_to_string(&project)
            .with_context(|| format!("cannot read {}", project.display()))?;
        check_snippet(&text, &project.display().to_string())?;
        layers.push(Layer {
            name: "project",
            origin: project.display().to_string(),
            text: render("project", &text)?,
        });
    }
    layers.push(Layer {
        name: "final",
        origin: "built-in dockerfiles/final.dockerfile".into(),
        text: render("final", FINAL_LAYER)?,
    });
    let mut dockerfile = String::new();
    for l in &layers {
        dockerfile.push_str(&format!("# --- layer: {} ({})\n", l.name, l.origin));
        let body = l.text.trim();
        if !body.is_empty() {
            dockerfile.push_str(body);
            dockerfile.push('\n');
        }
    }
    let mut hash = Sha256::new();
    hash.update(dockerfile.as_bytes());
    hash.update(SANDBOX_HELPER.as_bytes());
    for (name, text, mode) in HOOKS {
        hash.update(format!("{name} {mode:o} {}\n", text.len()).as_bytes());
        hash.update(text.as_bytes());
    }
    if let Some(ca) = &extra_ca {
        hash.update(ca);
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Ok(ImagePlan {
        layers,
        dockerfile,
        tag: format!("git-agent:{hex}"),
        stack,
        extra_ca,
        helper: ("git-agent-sandbox", SANDBOX_HELPER),
    })
}

/// `agent.extraCaCerts`: extra CA certificates the images trust (TLS-inspecting proxies).
fn extra_ca(config: &Config) -> Result<Option<Vec<u8>>> {
    match config.get("agent.extraCaCerts") {
        None | Some("") => Ok(None),
        Some(path) => Ok(Some(std::fs::read(path).map_err(|e| {
            hinted(
                format!("cannot read agent.extraCaCerts file {path}: {e}"),
                "point agent.extraCaCerts at a PEM file of CA certificates (e.g. /etc/ssl/certs/ca-certificates.crt)",
            )
        })?)),
    }
}

/// The egress gateway's image: the base image plus Debian's python3 and git-agent's own
/// proxy and vault (dockerfiles/git-agent-gateway, its helper).
pub fn gateway_plan(config: &Config) -> Result<ImagePlan> {
    let base_image = config.get("agent.baseImage").unwrap_or(DEFAULT_BASE_IMAGE);
    let extra_ca = extra_ca(config)?;
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let text = env
        .render_str(
            GATEWAY_LAYER,
            minijinja::context! { base_image => base_image, extra_ca => extra_ca.is_some() },
        )
        .context("cannot render the gateway dockerfile")?;
    let dockerfile = format!(
        "# --- layer: gateway (built-in dockerfiles/gateway.dockerfile)\n{}\n",
        text.trim()
    );
    let mut hash = Sha256::new();
    hash.update(dockerfile.as_bytes());
    hash.update(GATEWAY_HELPER.as_bytes());
    if let Some(ca) = &extra_ca {
        hash.update(ca);
    }
    let hex: String = hash
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(ImagePlan {
        layers: vec![Layer {
            name: "gateway",
            origin: "built-in dockerfiles/gateway.dockerfile".into(),
            text,
        }],
        dockerfile,
        tag: format!("git-agent-gateway:{hex}"),
        stack: String::new(),
        extra_ca,
        helper: ("git-agent-gateway", GATEWAY_HELPER),
    })
}

/// A snippet may add packages and files, never a second base: that would replace what the
/// built-in layers guarantee. (A `USER` switch is harmless: the final layer switches back.)
fn check_snippet(text: &str, origin: &str) -> Result<()> {
    for (i, line) in text.lines().enumerate() {
        let word = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if word == "FROM" {
            return Err(hinted(
                format!("{origin}:{}: a dockerfile layer may not use FROM", i + 1),
                "set the base image with `git config agent.baseImage <image>` instead",
            ));
        }
    }
    Ok(())
}

impl ImagePlan {
    /// The in-memory build context: the Dockerfile, the sandbox helper and the guards in
    /// `hooks/`, nothing else.
    pub fn context(&self) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], mode: u32| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
            }
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, name, data)?;
            Ok(())
        };
        add("Dockerfile", self.dockerfile.as_bytes(), 0o644)?;
        add(self.helper.0, self.helper.1.as_bytes(), 0o755)?;
        if self.helper.0 == "git-agent-sandbox" {
            add("hooks/", b"", 0o755)?;
            for (name, text, mode) in HOOKS {
                add(&format!("hooks/{name}"), text.as_bytes(), *mode)?;
            }
        }
        if let Some(ca) = &self.extra_ca {
            add("extra-ca.crt", ca, 0o644)?;
        }
        Ok(tar.into_inner()?)
    }

    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(LABEL_IMAGE.to_string(), self.tag.clone())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{AGENTS, Found, Origin};

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs)
    }

    fn agent(name: &str) -> Agent {
        let text = AGENTS.builtin.iter().find(|(n, _)| *n == name).unwrap().1;
        crate::agent::parse(&Found {
            name: name.into(),
            origin: Origin::BuiltIn,
            text: text.into(),
        })
        .unwrap()
    }

    fn context_names(p: &ImagePlan) -> Vec<String> {
        let bytes = p.context().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    fn plan_in(
        root: &Path,
        cfg: &Config,
        agent_name: &str,
        stack: Option<&str>,
    ) -> Result<ImagePlan> {
        let search = Search {
            repo: Some(root.join(".git-agent")),
            user: None,
        };
        let agent = agent(agent_name);
        plan(&ImageRequest {
            root,
            config: cfg,
            search: &search,
            agent: &agent,
            stack,
        })
    }

    #[test]
    fn base_image_comes_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan_in(
            dir.path(),
            &config(&[("agent.baseimage", "local:1")]),
            "exec",
            None,
        )
        .unwrap();
        assert!(p.dockerfile.contains("FROM local:1\n"), "{}", p.dockerfile);
        let d = plan_in(dir.path(), &config(&[]), "exec", None).unwrap();
        assert!(d.dockerfile.contains("FROM debian:bookworm-slim\n"));
        assert_ne!(p.tag, d.tag, "the tag follows the content");
        assert_eq!(
            d.tag,
            plan_in(dir.path(), &config(&[]), "exec", None).unwrap().tag
        );
    }

    #[test]
    fn layers_come_in_order_and_the_task_user_is_set_last() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(dir.path().join(".git-agent/dockerfiles")).unwrap();
        std::fs::write(
            dir.path().join(".git-agent/dockerfiles/project.dockerfile"),
            "USER root\nRUN echo project\n",
        )
        .unwrap();
        let p = plan_in(
            dir.path(),
            &config(&[("agent.claude.version", "1.2.3")]),
            "claude",
            None,
        )
        .unwrap();
        assert_eq!(p.stack, "rust");
        assert_eq!(
            p.layers.iter().map(|l| l.name).collect::<Vec<_>>(),
            ["base", "stack", "agent", "project", "final"]
        );
        let pos = |needle: &str| {
            p.dockerfile
                .find(needle)
                .unwrap_or_else(|| panic!("{needle} in {}", p.dockerfile))
        };
        assert!(pos("cargo rustc") < pos("@anthropic-ai/claude-code@1.2.3"));
        let d = plan_in(dir.path(), &config(&[]), "claude", None).unwrap();
        assert!(d.dockerfile.contains("@anthropic-ai/claude-code@2.1.330"));
        assert!(pos("@anthropic-ai/claude-code") < pos("RUN echo project"));
        assert!(pos("RUN echo project") < p.dockerfile.rfind("USER agent").unwrap());
        assert!(
            p.dockerfile
                .contains("# --- layer: agent (claude: built-in)"),
            "{}",
            p.dockerfile
        );
    }

    #[test]
    fn stack_can_be_chosen_and_unknown_stacks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan_in(dir.path(), &config(&[]), "exec", Some("python")).unwrap();
        assert!(p.dockerfile.contains("python3-venv"));
        let p = plan_in(dir.path(), &config(&[("agent.stack", "go")]), "exec", None).unwrap();
        assert!(p.dockerfile.contains("golang-go"));
        let e = plan_in(dir.path(), &config(&[]), "exec", Some("cobol")).unwrap_err();
        assert!(e.to_string().contains("unknown stack 'cobol'"), "{e}");
    }

    #[test]
    fn only_the_project_layer_differs_when_only_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let a = plan_in(dir.path(), &config(&[]), "exec", None).unwrap();
        std::fs::create_dir_all(dir.path().join(".git-agent/dockerfiles")).unwrap();
        std::fs::write(
            dir.path().join(".git-agent/dockerfiles/project.dockerfile"),
            "RUN true\n",
        )
        .unwrap();
        let b = plan_in(dir.path(), &config(&[]), "exec", None).unwrap();
        let prefix = b.dockerfile.find("# --- layer: project").unwrap();
        assert_eq!(
            a.dockerfile[..prefix],
            b.dockerfile[..prefix],
            "earlier layers render identically"
        );
        assert_ne!(a.tag, b.tag);
    }

    #[test]
    fn snippets_cannot_replace_the_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git-agent/dockerfiles")).unwrap();
        std::fs::write(
            dir.path().join(".git-agent/dockerfiles/project.dockerfile"),
            "from evil:latest\n",
        )
        .unwrap();
        let err = plan_in(dir.path(), &config(&[]), "exec", None).unwrap_err();
        assert!(err.to_string().contains("may not use FROM"), "{err}");
    }

    #[test]
    fn extra_ca_certificates_go_into_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let cfg = config(&[("agent.extracacerts", ca.to_str().unwrap())]);
        let p = plan_in(dir.path(), &cfg, "exec", None).unwrap();
        assert!(p.dockerfile.contains("COPY extra-ca.crt"));
        assert!(p.dockerfile.contains("update-ca-certificates"));
        let names = context_names(&p);
        assert_eq!(
            names,
            [
                "Dockerfile",
                "git-agent-sandbox",
                "hooks/",
                "hooks/git-readonly",
                "hooks/codex-readonly-git.rules",
                "extra-ca.crt"
            ]
        );
        let missing = config(&[("agent.extracacerts", "/nonexistent.pem")]);
        assert!(
            plan_in(dir.path(), &missing, "exec", None)
                .unwrap_err()
                .to_string()
                .contains("agent.extraCaCerts")
        );
    }

    #[test]
    fn context_holds_only_dockerfile_helper_and_guards() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret.txt"), "repository content").unwrap();
        let p = plan_in(dir.path(), &config(&[]), "exec", None).unwrap();
        let names = context_names(&p);
        assert_eq!(
            names,
            [
                "Dockerfile",
                "git-agent-sandbox",
                "hooks/",
                "hooks/git-readonly",
                "hooks/codex-readonly-git.rules"
            ]
        );
        assert!(
            p.dockerfile
                .contains("COPY hooks/ /usr/local/lib/git-agent/hooks/")
        );
    }
}
