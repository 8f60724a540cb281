//! The sandbox image: a Dockerfile composed from layers, rendered with minijinja, built from
//! an in-memory context that never contains the repository, and tagged by a hash of what
//! goes into it so an unchanged image is never rebuilt.
//!
//! Layers, in order, each with a known origin:
//! - `base`: built in (`dockerfiles/base.dockerfile`): `FROM agent.baseImage`, git, extra CA
//!   certificates (`agent.extraCaCerts`) and the task user;
//! - `stack`: the language stack's snippet (`dockerfiles/stacks/<stack>.dockerfile`, looked
//!   up in the user's config, then built in; never in the repository), detected from the
//!   repository or set with `--stack` or `agent.stack`;
//! - `agent`: the agent definition's `install` snippet;
//! - `project`: the repository's `.git-agent/dockerfiles/project.dockerfile`, if any;
//! - `final`: built in; adds the sandbox helper and the agent-side guards of `hooks/` (see
//!   [`crate::guard`]), the task user and an empty entrypoint.
//!
//! Base, stack and agent come from git-agent or the user and go to the engine's builder. The
//! project layer comes from the repository, so it is untrusted: it is parsed
//! ([`snippet`]: only RUN, ENV and WORKDIR) and applied in a sandboxed container
//! ([`project`]), never by the builder. The final layer is applied after it with COPY, ENV,
//! USER and WORKDIR only (no RUN), so nothing the project planted runs during the build and
//! nothing it wrote replaces the helper or the guards. Task containers set their own
//! entrypoint, command, numeric user and working directory anyway (see
//! [`crate::runtime::SandboxSpec`]).
//!
//! Because earlier layers render to the same text, the engine's build cache reuses them:
//! changing only the project layer reruns only the project steps and the final layer.

pub mod project;
pub mod snippet;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use minijinja::Environment;
use sha2::{Digest, Sha256};

use crate::agent::Agent;
use crate::data::{AGENTS, Found, Origin, STACKS, Search};
use crate::egress::NetworkPolicy;
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
        "git-readonly-claude.js",
        include_str!("../hooks/git-readonly-claude.js"),
        0o644,
    ),
    (
        "claude-wait.js",
        include_str!("../hooks/claude-wait.js"),
        0o644,
    ),
    (
        "claude-first-run.js",
        include_str!("../hooks/claude-first-run.js"),
        0o644,
    ),
    (
        "codex-readonly-git.rules",
        include_str!("../hooks/codex-readonly-git.rules"),
        0o644,
    ),
];
/// Keeps the read-only git wrapper first on PATH in login shells (whose /etc/profile resets
/// PATH); copied to /etc/profile.d/ by the final layer.
const PROFILE_SNIPPET: &str = "if [ \"${GIT_AGENT_GIT_READONLY:-}\" = 1 ]; then case \":$PATH:\" in *:/usr/local/lib/git-agent/readonly-bin:*) ;; *) PATH=\"/usr/local/lib/git-agent/readonly-bin:$PATH\" ;; esac; fi\n";
/// The task user's git identity inside the sandbox (the final layer's `.gitconfig`).
const SANDBOX_GITCONFIG: &str = "[user]\n\tname = git-agent sandbox\n\temail = agent@sandbox.invalid\n[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n";

/// The default base image for users; tests and air-gapped machines set `agent.baseImage`.
pub const DEFAULT_BASE_IMAGE: &str = "debian:bookworm-slim";
/// The task user inside the sandbox.
pub const TASK_USER: &str = "agent";
pub const TASK_UID: u32 = 1000;
/// Label on built images, so `image` commands can find them.
pub const LABEL_IMAGE: &str = "git-agent.image";
/// The network profile project steps build with.
pub const BUILD_PROFILE: &str = "build";

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
    /// Every layer with its origin (what `image build --dry-run` prints). Without a project
    /// layer this is exactly what the builder gets.
    pub dockerfile: String,
    pub tag: String,
    pub stack: String,
    extra_ca: Option<Vec<u8>>,
    /// The helper script copied into the image: (file name, text).
    helper: (&'static str, &'static str),
    /// With a project layer: how the build is split around it.
    pub project: Option<Box<Split>>,
}

/// A build split around the untrusted project layer.
#[derive(Debug, Clone)]
pub struct Split {
    /// The trusted layers (base, stack, agent): the builder's Dockerfile for the stage image.
    pub stage_dockerfile: String,
    pub stage_tag: String,
    /// The final layer, applied by the builder `FROM` the committed project image.
    pub final_layer: String,
    pub build: project::ProjectBuild,
    /// The gateway image the project steps reach their registries through.
    pub gateway: ImagePlan,
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
    let stack_file = find_stack(req.search, &stack)?;
    let version = config
        .get(&format!("agent.{}.version", req.agent.name))
        .or(req.agent.def.default_version.as_deref())
        .unwrap_or("latest");
    let vars = minijinja::context! {
        base_image => base_image,
        user => TASK_USER,
        uid => TASK_UID,
        extra_ca => extra_ca.is_some(),
        version => version,
        agent => req.agent.name.as_str(),
        stack => stack.as_str(),
    };
    // Bounded like prompt templates; the repository's project layer renders isolated.
    let render_as = |name: &str, text: &str, isolate: bool| -> Result<String> {
        crate::template::render_bounded(text, vars.clone(), isolate).map_err(|e| {
            hinted(
                format!("cannot render the {name} dockerfile layer: {e}"),
                "fix the snippet; it may use base_image, user, uid, extra_ca, version, agent and stack",
            )
        })
    };
    let render = |name: &str, text: &str| render_as(name, text, false);
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
    let trusted = compose(&layers);
    let final_layer = Layer {
        name: "final",
        origin: "built-in dockerfiles/final.dockerfile".into(),
        text: render("final", FINAL_LAYER)?,
    };
    let final_text = compose(std::slice::from_ref(&final_layer));
    let project_file = req.root.join(".git-agent/dockerfiles/project.dockerfile");
    let project_text =
        crate::data::read_repo_file(req.root, ".git-agent/dockerfiles/project.dockerfile")?;
    let project = if let Some(text) = project_text {
        let origin = project_file.display().to_string();
        // Untrusted text: read without following links (see `read_repo_file`), never
        // rendered as a template, parsed, then run sandboxed.
        let reserved = reserved_names(req.agent);
        let steps = snippet::parse(&text, &origin, &[], &reserved)?;
        layers.push(Layer {
            name: "project",
            origin: format!(
                "{origin}; {} step(s), run sandboxed, not by the builder",
                steps.len()
            ),
            text: text.clone(),
        });
        Some(project::ProjectBuild {
            origin,
            text,
            steps,
            reserved,
            policy: build_policy(req.search, config)?,
            outer_network: crate::sandbox::gateway::outer_network(config),
            limits: crate::sandbox::spawn::Limits::from_config(config)?,
            timeout: build_timeout(config)?,
            repo_path: req.root.display().to_string(),
            subnets: crate::sandbox::network::SubnetRange::from_config(config)?,
        })
    } else {
        None
    };
    layers.push(final_layer);
    let dockerfile = compose(&layers);

    let mut hash = Sha256::new();
    hash.update(dockerfile.as_bytes());
    hash.update(SANDBOX_HELPER.as_bytes());
    for (name, text, mode) in HOOKS {
        hash.update(format!("{name} {mode:o} {}\n", text.len()).as_bytes());
        hash.update(text.as_bytes());
    }
    hash.update(PROFILE_SNIPPET.as_bytes());
    hash.update(SANDBOX_GITCONFIG.as_bytes());
    if let Some(ca) = &extra_ca {
        hash.update(ca);
    }
    if let Some(p) = &project {
        // How the project layer is built is part of what the image is.
        hash.update(format!("build profile {:?}\n", p.policy).as_bytes());
    }
    let digest = hash.finalize();
    let hex = short_hex(&digest);
    let gateway = gateway_plan(config)?;
    let split = project.map(|build| {
        let stage_hex = short_hex(&Sha256::digest(
            [trusted.as_bytes(), extra_ca.as_deref().unwrap_or_default()].concat(),
        ));
        Box::new(Split {
            stage_dockerfile: trusted.clone(),
            stage_tag: format!("git-agent-stage:{stage_hex}"),
            final_layer: final_text.clone(),
            build,
            gateway,
        })
    });
    Ok(ImagePlan {
        layers,
        dockerfile,
        tag: format!("git-agent:{hex}"),
        stack,
        extra_ca,
        helper: ("git-agent-sandbox", SANDBOX_HELPER),
        project: split,
    })
}

fn short_hex(digest: &[u8]) -> String {
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Layers as one Dockerfile, each under a comment naming it and its origin.
fn compose(layers: &[Layer]) -> String {
    let mut dockerfile = String::new();
    for l in layers {
        dockerfile.push_str(&format!("# --- layer: {} ({})\n", l.name, l.origin));
        let body = l.text.trim();
        if !body.is_empty() {
            dockerfile.push_str(body);
            dockerfile.push('\n');
        }
    }
    dockerfile
}

/// A stack layer from the user's config or built in. A repository's stack file would run
/// with the builder's full reach, so one for the chosen stack is refused, not used.
fn find_stack(search: &Search, stack: &str) -> Result<Found> {
    // A repository's stack file runs in the builder with its full network, so it is used
    // only once the user has trusted that exact file (`git agent trust`); `Search::find`
    // refuses it otherwise, naming the file.
    search.find(STACKS, stack)?.ok_or_else(|| {
        hinted(
            format!("unknown stack '{stack}'"),
            "use one of default, rust, go, node, python, java, or add ~/.config/git-agent/dockerfiles/stacks/<name>.dockerfile",
        )
    })
}

/// Variables a project snippet may not set: what the built-in agents and this task's agent
/// read (credentials, base-URL variables, settings).
fn reserved_names(agent: &Agent) -> Vec<String> {
    let mut names = Vec::new();
    let mut add = |a: &crate::agent::AgentDef| {
        names.extend(a.credentials.iter().cloned());
        names.extend(a.base_url_env.iter().cloned());
        names.extend(a.env.keys().cloned());
    };
    for (name, text) in AGENTS.builtin {
        let found = Found {
            name: name.to_string(),
            origin: Origin::BuiltIn,
            text: text.to_string(),
        };
        if let Ok(a) = crate::agent::parse(&found) {
            add(&a.def);
        }
    }
    add(&agent.def);
    names.sort();
    names.dedup();
    names
}

/// The `build` profile (the user's copy, else the built-in one; never the repository's)
/// plus `agent.buildAllow`, and the non-public addresses the user opened with
/// `agent.allowAddress` (say a registry mirror on the company network). Repository domains
/// are for tasks, not for builds.
fn build_policy(search: &Search, config: &Config) -> Result<NetworkPolicy> {
    let profile = crate::egress::load_profile(search, BUILD_PROFILE)?;
    let mut allow = Vec::new();
    for entry in profile
        .allow
        .iter()
        .chain(&config.get_all("agent.buildAllow"))
    {
        for d in entry.split([',', ' ']).filter(|d| !d.is_empty()) {
            allow.push(crate::egress::domain::allow_entry(d).map_err(|e| {
                hinted(
                    format!("bad domain '{d}' in the build profile or agent.buildAllow: {e}"),
                    "write a registrable domain or a name below one, such as deb.debian.org",
                )
            })?);
        }
    }
    allow.sort();
    allow.dedup();
    let mut addresses = Vec::new();
    for entry in config.get_all("agent.allowAddress") {
        for a in entry.split([',', ' ']).filter(|a| !a.is_empty()) {
            addresses.push(crate::egress::address::address_entry(a).map_err(|e| {
                hinted(
                    format!("bad address '{a}' in agent.allowAddress: {e}"),
                    "write an address or network such as 10.1.2.3 or 10.1.0.0/16",
                )
            })?);
        }
    }
    addresses.sort();
    addresses.dedup();
    Ok(NetworkPolicy {
        profile: BUILD_PROFILE.into(),
        open: profile.open,
        api: false,
        allow,
        ports: vec![],
        addresses,
    })
}

/// `agent.buildTimeout`: how long the project steps may take together (default 30m).
fn build_timeout(config: &Config) -> Result<u64> {
    crate::duration::config_secs(config, "agent.buildTimeout", project::DEFAULT_TIMEOUT)
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
        project: None,
        extra_ca,
        helper: ("git-agent-gateway", GATEWAY_HELPER),
    })
}

/// A trusted snippet (stack, agent) may add packages and files, never a second base: that
/// would replace what the built-in layers guarantee.
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
    /// The in-memory build context of the whole image (no project layer): the Dockerfile,
    /// the helper and, for the sandbox image, the final layer's files; nothing else.
    pub fn context(&self) -> Result<Vec<u8>> {
        self.context_for(&self.dockerfile, true)
    }

    /// The stage image's context: the trusted layers before the project layer.
    pub fn stage_context(&self, split: &Split) -> Result<Vec<u8>> {
        self.context_for(&split.stage_dockerfile, false)
    }

    /// The final layer's context, `FROM` the committed project image.
    pub fn final_context(&self, split: &Split, from: &str) -> Result<Vec<u8>> {
        let dockerfile = format!("FROM {from}\n{}", split.final_layer);
        self.context_for(&dockerfile, true)
    }

    fn context_for(&self, dockerfile: &str, with_final: bool) -> Result<Vec<u8>> {
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
        add("Dockerfile", dockerfile.as_bytes(), 0o644)?;
        if with_final {
            add(self.helper.0, self.helper.1.as_bytes(), 0o755)?;
        }
        if with_final && self.helper.0 == "git-agent-sandbox" {
            add("hooks/", b"", 0o755)?;
            for (name, text, mode) in HOOKS {
                add(&format!("hooks/{name}"), text.as_bytes(), *mode)?;
            }
            add("readonly-bin/", b"", 0o755)?;
            add("profile.d/", b"", 0o755)?;
            add(
                "profile.d/git-agent-readonly.sh",
                PROFILE_SNIPPET.as_bytes(),
                0o644,
            )?;
            add("gitconfig", SANDBOX_GITCONFIG.as_bytes(), 0o644)?;
        }
        if let Some(ca) = &self.extra_ca {
            add("extra-ca.crt", ca, 0o644)?;
        }
        let mut tar = tar;
        if with_final && self.helper.0 == "git-agent-sandbox" {
            // readonly-bin/git -> ../hooks/git-readonly: the wrapper is the guard itself.
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            header.set_mode(0o777);
            header.set_mtime(0);
            tar.append_link(&mut header, "readonly-bin/git", "../hooks/git-readonly")?;
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
            "RUN echo project {{ user }}\n",
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
        // The repository's text is not a template: it is shown and run as written.
        assert!(pos("@anthropic-ai/claude-code") < pos("RUN echo project {{ user }}"));
        assert!(pos("RUN echo project") < p.dockerfile.rfind("USER 1000:1000").unwrap());
        assert!(
            p.dockerfile
                .contains("# --- layer: agent (claude: built-in)"),
            "{}",
            p.dockerfile
        );
        assert!(p.dockerfile.contains("run sandboxed, not by the builder"));
        // The split: the builder gets the trusted layers, then only the final layer.
        let split = p
            .project
            .as_ref()
            .expect("a project layer splits the build");
        assert!(split.stage_dockerfile.contains("cargo rustc"));
        assert!(!split.stage_dockerfile.contains("echo project"));
        assert!(!split.final_layer.contains("echo project"));
        assert!(
            !split
                .final_layer
                .lines()
                .any(|l| l.trim_start().to_ascii_uppercase().starts_with("RUN")),
            "the final layer runs nothing in the image:\n{}",
            split.final_layer
        );
        for want in [
            "ENTRYPOINT []",
            "CMD []",
            "USER 1000:1000",
            "WORKDIR /workspace",
        ] {
            assert!(split.final_layer.contains(want), "{want}");
        }
        assert_eq!(
            split.build.steps[0].instr,
            snippet::Instr::Shell("echo project {{ user }}".into())
        );
        assert_eq!(split.build.policy.profile, "build");
        assert!(
            split
                .build
                .policy
                .allow
                .iter()
                .any(|d| d == "deb.debian.org")
        );
        assert!(!split.build.policy.api && !split.build.policy.open);
        // Without a project layer the build is one Dockerfile, as before.
        let plain = plan_in(
            tempfile::tempdir().unwrap().path(),
            &config(&[]),
            "exec",
            None,
        )
        .unwrap();
        assert!(plain.project.is_none());
    }

    #[test]
    fn the_tag_follows_the_build_profile_and_the_snippet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git-agent/dockerfiles")).unwrap();
        std::fs::write(
            dir.path().join(".git-agent/dockerfiles/project.dockerfile"),
            "RUN true\n",
        )
        .unwrap();
        let a = plan_in(dir.path(), &config(&[]), "exec", None).unwrap();
        let b = plan_in(
            dir.path(),
            &config(&[("agent.buildallow", "example.org")]),
            "exec",
            None,
        )
        .unwrap();
        assert_ne!(a.tag, b.tag);
        assert!(
            b.project
                .as_ref()
                .unwrap()
                .build
                .policy
                .allow
                .iter()
                .any(|d| d == "example.org")
        );
        assert_eq!(
            a.project.as_ref().unwrap().stage_tag,
            b.project.as_ref().unwrap().stage_tag,
            "the trusted stage does not depend on the build profile"
        );
        let bad = plan_in(
            dir.path(),
            &config(&[("agent.buildtimeout", "soon")]),
            "exec",
            None,
        )
        .unwrap_err();
        assert!(bad.to_string().contains("agent.buildTimeout"), "{bad}");
    }

    #[test]
    fn a_repository_cannot_define_a_stack() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(dir.path().join(".git-agent/dockerfiles/stacks")).unwrap();
        std::fs::write(
            dir.path()
                .join(".git-agent/dockerfiles/stacks/rust.dockerfile"),
            "RUN curl http://172.17.0.1/\n",
        )
        .unwrap();
        let e = plan_in(dir.path(), &config(&[]), "exec", None).unwrap_err();
        assert!(e.to_string().contains("stacks/rust.dockerfile"), "{e}");
        assert!(e.to_string().contains("is not trusted"), "{e}");
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
        assert!(
            err.to_string()
                .contains("project.dockerfile:1: from is not allowed"),
            "{err}"
        );
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
                "hooks/git-readonly-claude.js",
                "hooks/claude-wait.js",
                "hooks/claude-first-run.js",
                "hooks/codex-readonly-git.rules",
                "readonly-bin/",
                "profile.d/",
                "profile.d/git-agent-readonly.sh",
                "gitconfig",
                "extra-ca.crt",
                "readonly-bin/git"
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
                "hooks/git-readonly-claude.js",
                "hooks/claude-wait.js",
                "hooks/claude-first-run.js",
                "hooks/codex-readonly-git.rules",
                "readonly-bin/",
                "profile.d/",
                "profile.d/git-agent-readonly.sh",
                "gitconfig",
                "readonly-bin/git"
            ]
        );
        assert!(
            p.dockerfile
                .contains("COPY hooks/ /usr/local/lib/git-agent/hooks/")
        );
    }
}
