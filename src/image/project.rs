//! Applying the repository's project snippet without trusting it.
//!
//! The engine's builder runs `RUN` steps as root with the default bridge network (it reached
//! a service on the host) and lets a Dockerfile set how containers start. So the untrusted
//! snippet never goes to the builder. Instead:
//!
//! 1. the trusted layers (base, stack, agent) are built as usual into a stage image;
//! 2. a step container is made from it: no mounts, root with only [`STEP_CAPS`],
//!    `no-new-privileges`, the task limits, on a fresh internal network whose only member
//!    besides it is a gateway with the `build` network profile (package registries only; no
//!    host, no other task, no metadata address). Each parsed step ([`super::snippet`]) runs
//!    as an exec with the proxy in its environment, under one time limit
//!    (`agent.buildTimeout`);
//! 3. the container is killed and committed with an explicit configuration (task user,
//!    `/workspace`, the stage's environment plus the snippet's checked `ENV`s);
//! 4. the built-in final layer (helper, guards, user, empty entrypoint) is applied on top by
//!    the builder with COPY/ENV/USER/WORKDIR only, so nothing the project step planted runs
//!    during it, and nothing it wrote replaces the helper or the guards.
//!
//! The network, the gateway and the step container are removed afterwards, also after a
//! failure, the time limit or Ctrl-C.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::snippet::{self, Instr};
use crate::egress::NetworkPolicy;
use crate::error::{Interrupted, hinted, sanitize};
use crate::runtime::{CommitSpec, Hardening, ResourceLimits, Runtime, StepSpec, UserId};
use crate::sandbox::RepoId;
use crate::sandbox::gateway::{self, AgentAccess, GatewayPlan};
use crate::sandbox::spawn::Limits;

/// Capabilities a project step keeps: what `apt-get install` and `npm install -g` need as
/// root (file ownership and modes, writing into directories owned by `_apt`, and apt's
/// switch to its `_apt` user). Measured: without CHOWN or FOWNER apt warns and cannot
/// sandbox its downloads, without DAC_OVERRIDE or SETUID/SETGID it fails. FSETID, KILL,
/// MKNOD, NET_RAW, SETFCAP, SYS_CHROOT and the rest of Docker's default set are dropped
/// (setgid bits on packaged files may be lost; under `no-new-privileges` they do nothing).
pub const STEP_CAPS: &[&str] = &["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID"];

/// A step container's confinement: root with only [`STEP_CAPS`], no new privileges, the task
/// limits and an init. Its root stays writable: writing it is what a step is for.
pub fn step_hardening(limits: &Limits) -> Hardening {
    Hardening {
        user: UserId::ROOT,
        keep_caps: STEP_CAPS.iter().map(|c| c.to_string()).collect(),
        no_new_privileges: true,
        read_only_root: false,
        tmpfs: vec![],
        limits: ResourceLimits {
            pids: limits.pids,
            memory: limits.memory,
            nano_cpus: Some(limits.nano_cpus),
            log: None,
        },
        init: true,
    }
}

/// Label on step containers and on the images they commit.
pub const LABEL_BUILD: &str = "git-agent.build";

/// Default for `agent.buildTimeout`.
pub const DEFAULT_TIMEOUT: u64 = 30 * 60;

/// Everything needed to apply a project snippet.
#[derive(Debug, Clone)]
pub struct ProjectBuild {
    /// The snippet's file, for errors (`file:line`).
    pub origin: String,
    pub text: String,
    /// Steps as parsed when planning (variables expanded without the stage's environment);
    /// parsed again against the stage image before running.
    pub steps: Vec<snippet::Step>,
    /// Variable names the snippet may not set (the agents' own).
    pub reserved: Vec<String>,
    /// The `build` network profile, resolved.
    pub policy: NetworkPolicy,
    pub outer_network: String,
    pub limits: Limits,
    /// Seconds all steps together may take.
    pub timeout: u64,
    /// The repository's path (labels of the build's network and gateway).
    pub repo_path: String,
    /// Where the build's network takes its subnet from (`agent.subnets`).
    pub subnets: crate::sandbox::network::SubnetRange,
}

/// The engine objects of one project build. `repo` id `build` cannot be a repository's
/// (those are hex), so these names never meet a task's.
fn objects(tag: &str, repo_path: &str) -> (RepoId, String) {
    let hex = tag.rsplit(':').next().unwrap_or(tag);
    let repo = RepoId {
        id: "build".into(),
        path: repo_path.to_string(),
    };
    (repo, format!("{hex}-{}", std::process::id()))
}

/// What the project steps report while they run, kept apart so that a step's output can
/// never pass for git-agent's own word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report<'a> {
    /// Something git-agent says about the build (a line).
    Note(&'a str),
    /// A step begins: its file, line and instruction, escaped.
    Step(&'a str),
    /// Output of the running step, as it came (chunks, not always whole lines).
    Output(&'a str),
}

/// Run the project steps on `stage` and commit the result; returns the committed image's id.
pub async fn apply<R: Runtime>(
    rt: &R,
    p: &ProjectBuild,
    stage: &str,
    tag: &str,
    gateway_image: &str,
    progress: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String> {
    let (repo, task) = objects(tag, &p.repo_path);
    let names = repo.object_names(&task);
    let result = run(rt, p, stage, tag, gateway_image, &repo, &task, progress).await;
    let cleanup = async {
        rt.remove_container(&names.container).await?;
        rt.remove_container(&names.gateway).await?;
        rt.remove_network(&names.network).await
    }
    .await;
    if let Err(e) = cleanup {
        // Said where the build's progress goes (nothing below the operations layer prints);
        // `git agent doctor --fix` removes what is left once this builder has exited.
        progress(Report::Note(&format!(
            "warning: could not remove the project build's objects ({}, {}, {}): {e:#}; `git agent doctor --fix` removes them",
            names.container, names.gateway, names.network
        )));
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run<R: Runtime>(
    rt: &R,
    p: &ProjectBuild,
    stage: &str,
    tag: &str,
    gateway_image: &str,
    repo: &RepoId,
    task: &str,
    progress: &mut (dyn FnMut(Report<'_>) + Send),
) -> Result<String> {
    let names = repo.object_names(task);
    crate::interrupt::checkpoint()?;
    let subnet =
        crate::sandbox::network::create(rt, &p.subnets, &names.network, &repo.labels(task)).await?;
    crate::interrupt::checkpoint()?;
    let plan = GatewayPlan::new(p.policy.clone(), &AgentAccess::default())?;
    let spec = StepSpec {
        name: names.container.clone(),
        image: stage.to_string(),
        // The repository's labels too, so that `doctor` in another repository never takes
        // this step for its own.
        labels: {
            let mut l = repo.labels(task);
            l.insert(LABEL_BUILD.to_string(), tag.to_string());
            l
        },
        network: names.network.clone(),
        hardening: step_hardening(&p.limits),
        hosts: gateway::hosts(subnet.as_ref()),
        address: subnet.as_ref().map(crate::sandbox::network::task_address),
    };
    // Both are created side by side; the gateway joins the network first (it takes its fixed
    // address there), then the step container and the gateway start.
    let (id, gw) = tokio::join!(
        rt.create_step_container(&spec),
        gateway::create(
            rt,
            repo,
            task,
            gateway_image,
            &p.outer_network,
            &plan,
            subnet
                .as_ref()
                .map(crate::sandbox::network::gateway_address),
        ),
    );
    let (id, gw) = (id?, gw?);
    gateway::attach(rt, &gw, subnet.as_ref()).await?;
    let (started, ready) = tokio::join!(rt.start(&id), gateway::start_ready(rt, &gw));
    started?;
    ready?;
    let stage_config = rt.image_config(stage).await?;
    let steps = snippet::parse(&p.text, &p.origin, &stage_config.env, &p.reserved)?;
    progress(Report::Note(&format!(
        "running {} project step(s) from {} in a sandboxed build container (network profile {})",
        steps.len(),
        p.origin,
        p.policy.profile
    )));
    let deadline = Instant::now() + Duration::from_secs(p.timeout);
    let mut env: Vec<String> = Vec::new();
    let mut workdir = "/".to_string();
    for step in &steps {
        crate::interrupt::checkpoint()?;
        progress(Report::Step(&format!(
            "{}:{}: {}",
            p.origin,
            step.line,
            sanitize(&step.describe())
        )));
        let cmd: Vec<String> = match &step.instr {
            Instr::Env(kv) => {
                for (k, v) in kv {
                    set(&mut env, k, v);
                }
                continue;
            }
            Instr::Workdir(d) => {
                workdir = d.clone();
                vec!["mkdir".into(), "-p".into(), "--".into(), d.clone()]
            }
            Instr::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            Instr::Exec(argv) => argv.clone(),
        };
        let mut step_env = env.clone();
        step_env.extend(plan.env.iter().cloned());
        let dir = if matches!(step.instr, Instr::Workdir(_)) {
            "/"
        } else {
            workdir.as_str()
        };
        let mut out = |bytes: &[u8]| {
            progress(Report::Output(&String::from_utf8_lossy(bytes)));
        };
        let exec = rt.exec_step(&id, &cmd, &step_env, dir, &mut out);
        let code = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), exec) => match r {
                Ok(code) => code?,
                Err(_) => {
                    return Err(hinted(
                        format!(
                            "image build failed: the project steps of {} did not finish within {}s (stopped at line {})",
                            p.origin, p.timeout, step.line
                        ),
                        format!(
                            "make the step faster, or allow more time: git config agent.buildTimeout {}",
                            p.timeout * 2
                        ),
                    ));
                }
            },
            _ = crate::interrupt::interrupted() => return Err(anyhow::Error::new(Interrupted)),
        };
        if code != 0 {
            let mut msg = format!(
                "image build failed: {}:{}: the step exited with {code}",
                p.origin, step.line
            );
            if let Some(meaning) = crate::error::exit_meaning(code) {
                msg.push_str(&format!(" ({meaning})"));
            }
            return Err(hinted(
                msg,
                format!(
                    "fix the step (it runs as root with only the `{}` network profile; `git agent image build --dry-run` shows every layer), then run `git agent image build`",
                    p.policy.profile
                ),
            ));
        }
    }
    crate::interrupt::checkpoint()?;
    // Nothing the steps left running may write while the image is taken.
    rt.stop(&id, 0).await?;
    let mut image_env = stage_config.env.clone();
    for e in &env {
        if let Some((k, v)) = e.split_once('=') {
            set(&mut image_env, k, v);
        }
    }
    rt.commit(&CommitSpec {
        container: id.clone(),
        env: image_env,
        user: format!("{}:{}", super::TASK_UID, super::TASK_UID),
        working_dir: "/workspace".into(),
        labels: HashMap::from([(LABEL_BUILD.to_string(), tag.to_string())]),
    })
    .await
}

/// Set `k=v` in a `KEY=value` list, replacing an earlier value.
fn set(env: &mut Vec<String>, k: &str, v: &str) {
    let prefix = format!("{k}=");
    env.retain(|e| !e.starts_with(&prefix));
    env.push(format!("{k}={v}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_replace_earlier_ones() {
        let mut env = vec!["A=1".to_string(), "AB=2".to_string()];
        set(&mut env, "A", "3");
        assert_eq!(env, ["AB=2", "A=3"]);
    }

    #[test]
    fn build_objects_cannot_be_a_tasks() {
        let (repo, task) = objects("git-agent:0123456789ab", "/r");
        assert_eq!(repo.id, "build");
        assert!(task.starts_with("0123456789ab-"));
        let names = repo.object_names(&task);
        assert!(names.network.contains("build") && names.network.contains(&task));
        assert_eq!(repo.labels(&task)["git-agent.repo"], "build");
    }
}
