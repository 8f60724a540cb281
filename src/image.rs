//! The sandbox image: a Dockerfile composed from layers, rendered with minijinja, built from
//! an in-memory context that never contains the repository, and tagged by a hash of what
//! goes into it so an unchanged image is never rebuilt.
//!
//! Layers, in order: `base` (built in, from `dockerfiles/base.dockerfile`), `project` (the
//! repository's `.git-agent/dockerfiles/project.dockerfile`, when present) and `final`
//! (built in; switches to the unprivileged task user, so no earlier layer can leave the task
//! running as root).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use minijinja::Environment;
use sha2::{Digest, Sha256};

use crate::error::hinted;
use crate::git::Config;

const BASE_LAYER: &str = include_str!("../dockerfiles/base.dockerfile");
const FINAL_LAYER: &str = include_str!("../dockerfiles/final.dockerfile");
const SANDBOX_HELPER: &str = include_str!("../dockerfiles/git-agent-sandbox");

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
}

/// Compose the image for a repository whose work tree is `root`.
pub fn plan(root: &Path, config: &Config) -> Result<ImagePlan> {
    let base_image = config.get("agent.baseImage").unwrap_or(DEFAULT_BASE_IMAGE);
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let vars = minijinja::context! {
        base_image => base_image,
        user => TASK_USER,
        uid => TASK_UID,
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
    let project = root.join(".git-agent/dockerfiles/project.dockerfile");
    if project.is_file() {
        let text = std::fs::read_to_string(&project)
            .with_context(|| format!("cannot read {}", project.display()))?;
        check_project_layer(&text, &project)?;
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
        dockerfile.push_str(l.text.trim_end());
        dockerfile.push('\n');
    }
    let mut hash = Sha256::new();
    hash.update(dockerfile.as_bytes());
    hash.update(SANDBOX_HELPER.as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    Ok(ImagePlan {
        layers,
        dockerfile,
        tag: format!("git-agent:{hex}"),
    })
}

/// A project layer may add packages and files, never a second base or a different user:
/// those would replace what the built-in layers guarantee.
fn check_project_layer(text: &str, path: &Path) -> Result<()> {
    for (i, line) in text.lines().enumerate() {
        let word = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if word == "FROM" {
            return Err(hinted(
                format!(
                    "{}:{}: a project layer may not use FROM",
                    path.display(),
                    i + 1
                ),
                "set the base image with `git config agent.baseImage <image>` instead",
            ));
        }
    }
    Ok(())
}

impl ImagePlan {
    /// The in-memory build context: the Dockerfile and the sandbox helper, nothing else.
    pub fn context(&self) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8], mode: u32| -> Result<()> {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, name, data)?;
            Ok(())
        };
        add("Dockerfile", self.dockerfile.as_bytes(), 0o644)?;
        add("git-agent-sandbox", SANDBOX_HELPER.as_bytes(), 0o755)?;
        Ok(tar.into_inner()?)
    }

    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(LABEL_IMAGE.to_string(), self.tag.clone())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs)
    }

    #[test]
    fn base_image_comes_from_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path(), &config(&[("agent.baseimage", "local:1")])).unwrap();
        assert!(p.dockerfile.contains("FROM local:1\n"), "{}", p.dockerfile);
        let d = plan(dir.path(), &config(&[])).unwrap();
        assert!(d.dockerfile.contains("FROM debian:bookworm-slim\n"));
        assert_ne!(p.tag, d.tag, "the tag follows the content");
    }

    #[test]
    fn task_user_is_set_last() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git-agent/dockerfiles")).unwrap();
        std::fs::write(
            dir.path().join(".git-agent/dockerfiles/project.dockerfile"),
            "USER root\nRUN echo project\n",
        )
        .unwrap();
        let p = plan(dir.path(), &config(&[])).unwrap();
        let project = p.dockerfile.find("RUN echo project").unwrap();
        let user = p.dockerfile.rfind("USER agent").unwrap();
        assert!(user > project, "{}", p.dockerfile);
        assert_eq!(
            p.layers.iter().map(|l| l.name).collect::<Vec<_>>(),
            ["base", "project", "final"]
        );
    }

    #[test]
    fn project_layer_cannot_replace_the_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".git-agent/dockerfiles")).unwrap();
        std::fs::write(
            dir.path().join(".git-agent/dockerfiles/project.dockerfile"),
            "from evil:latest\n",
        )
        .unwrap();
        let err = plan(dir.path(), &config(&[])).unwrap_err();
        assert!(err.to_string().contains("may not use FROM"), "{err}");
    }

    #[test]
    fn context_holds_only_dockerfile_and_helper() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path(), &config(&[])).unwrap();
        let bytes = p.context().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["Dockerfile", "git-agent-sandbox"]);
    }
}
