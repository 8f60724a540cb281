//! Hostile sandboxes: whatever the task does, the host repository is unchanged and the
//! task's refs do not move.

use crate::common::TestEnv;
use crate::require_docker;

#[test]
fn rewritten_unrelated_history_is_rejected() {
    require_docker!();
    let env = TestEnv::new();
    // The agent replaces its branch with history that does not descend from the base.
    let evil = r#"set -e
git checkout -q --orphan evil
git rm -rq --cached .
echo pwned > pwned.txt
git add pwned.txt
git commit -qm "unrelated history"
git branch -f "$GIT_AGENT_BRANCH" evil
git checkout -q "$GIT_AGENT_BRANCH""#;
    env.agent(&[
        "spawn", "--name", "rewrite", "--wait", "-m", "x", "--", "sh", "-c", evil,
    ])
    .ok();
    let before = env.snapshot();
    let refs_before = env.task_refs("rewrite");
    let objects_before = env.git(&["count-objects", "-v"]).stdout;
    let e = env.agent(&["sync", "rewrite"]).fails();
    assert!(
        e.stderr.contains("does not descend from the task's base"),
        "{e}"
    );
    assert_eq!(before, env.snapshot());
    assert_eq!(refs_before, env.task_refs("rewrite"));
    assert_eq!(
        objects_before,
        env.git(&["count-objects", "-v"]).stdout,
        "quarantined objects stay out"
    );
    // review and commit sync first, so they refuse too.
    env.agent(&["review", "rewrite"]).fails();
    env.agent(&["commit", "rewrite", "-m", "x"]).fails();
    assert_eq!(
        env.git(&["rev-parse", "-q", "--verify", "agent/rewrite"])
            .code,
        1
    );
}

#[test]
fn oversized_bundle_is_rejected() {
    require_docker!();
    let env = TestEnv::new();
    let big = "head -c 3000000 /dev/urandom > blob.bin && git add blob.bin && git commit -qm big";
    env.agent(&[
        "spawn", "--name", "big", "--wait", "-m", "x", "--", "sh", "-c", big,
    ])
    .ok();
    let before = env.snapshot();
    // As `git -c agent.maxBundleSize=1m agent sync big` would set it.
    let e = env.agent_with(&["sync", "big"], |c| {
        c.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "agent.maxBundleSize")
            .env("GIT_CONFIG_VALUE_0", "1m");
    });
    let e = e.fails();
    assert!(
        e.stderr.contains("larger than the 1048576 byte limit"),
        "{e}"
    );
    assert!(e.stderr.contains("agent.maxBundleSize"), "{e}");
    assert_eq!(before, env.snapshot());
    assert!(!env.task_refs("big").contains_key("head"));
    // Within the limit it comes through.
    env.agent(&["sync", "big"]).ok();
    assert!(env.task_refs("big").contains_key("head"));
}

#[test]
fn unexpected_refs_and_garbage_are_rejected() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "sneaky", "-m", "x", "--", "sleep", "300"])
        .ok();
    // Replace the sandbox helper's answer: a bundle carrying an extra ref the host never
    // asked for (the helper lives in a root-owned path, so the agent overrides it through
    // PATH-independent means: it shadows git itself in the workspace and emits by hand).
    let forged = r#"cd /workspace && echo x > x && git add x && git commit -qm x &&
git update-ref refs/heads/main HEAD &&
head=$(git rev-parse HEAD) &&
{ echo "git-agent-sync 1 $head -"; git bundle create -q - refs/heads/main "refs/heads/agent/sneaky" ^HEAD~1; } > /tmp/forged"#;
    env.docker_exec("sneaky", forged).ok();
    // Swap the helper for one that replays the forged answer (as root, simulating an agent
    // that escaped into the helper): the host must still refuse it.
    let swap = std::process::Command::new("docker")
        .args([
            "exec",
            "-u",
            "0",
            &env.container_of("sneaky"),
            "sh",
            "-c",
            "printf '#!/bin/sh\\ncat /tmp/forged\\n' > /usr/local/bin/git-agent-sandbox",
        ])
        .output()
        .unwrap();
    assert!(swap.status.success(), "{swap:?}");
    let before = env.snapshot();
    let e = env.agent(&["sync", "sneaky"]).fails();
    assert!(e.stderr.contains("unexpected ref 'refs/heads/main'"), "{e}");
    assert_eq!(before, env.snapshot());

    // Pure garbage instead of a header.
    std::process::Command::new("docker")
        .args([
            "exec",
            "-u",
            "0",
            &env.container_of("sneaky"),
            "sh",
            "-c",
            "printf '#!/bin/sh\\nhead -c 5000 /dev/urandom\\n' > /usr/local/bin/git-agent-sandbox",
        ])
        .output()
        .unwrap();
    let e = env.agent(&["sync", "sneaky"]);
    assert_eq!(e.code, 1, "{e}");
    assert_eq!(before, env.snapshot());
    assert!(!env.task_refs("sneaky").contains_key("head"));
}

/// The task user is not root, holds no capabilities, cannot gain privileges and cannot see
/// the engine: checked from inside a real task.
#[test]
fn the_task_cannot_become_root_or_reach_the_engine() {
    require_docker!();
    let env = TestEnv::new();
    let probe = r#"echo "uid=$(id -u)"
grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs):' /proc/self/status
for s in /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock; do test -e "$s" && echo "socket=$s"; done
su -c true root </dev/null >/dev/null 2>&1 && echo su=yes || echo su=no
echo pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max 2>/dev/null)
true"#;
    let run = env
        .agent(&[
            "spawn", "--name", "probe", "--wait", "-m", "x", "--", "sh", "-c", probe,
        ])
        .ok();
    let out = run.stderr;
    assert!(out.contains("uid=1000"), "{out}");
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(cap))
            .unwrap_or_else(|| panic!("{cap}: {out}"));
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    assert!(
        out.lines()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "{out}"
    );
    assert!(!out.contains("socket="), "{out}");
    assert!(out.contains("su=no"), "{out}");
    assert!(out.contains("pids=512"), "{out}");
}

/// With a read-only root the task can write only its workspace, home, /tmp and the helper's
/// state; the work still comes home, and a restart of the container (sync of a finished
/// task) still finds the helper's state.
#[test]
fn a_read_only_root_leaves_only_the_workspace_writable() {
    require_docker!();
    let env = TestEnv::new();
    let probe = r#"for d in /usr/local/bin /etc /home/agent /workspace /tmp /opt/git-agent; do
  if touch "$d/probe" 2>/dev/null; then echo "$d=writable"; rm -f "$d/probe"; else echo "$d=read-only"; fi
done
echo done > result.txt"#;
    let run = env
        .agent(&[
            "spawn",
            "--name",
            "ro",
            "--read-only",
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            probe,
        ])
        .ok();
    let out = run.stderr;
    for d in ["/usr/local/bin", "/etc", "/home/agent"] {
        assert!(out.contains(&format!("{d}=read-only")), "{d}: {out}");
    }
    for d in ["/workspace", "/tmp", "/opt/git-agent"] {
        assert!(out.contains(&format!("{d}=writable")), "{d}: {out}");
    }
    let st = env.json(&["status", "ro", "--json"]);
    assert_eq!(st["read_only"], true, "{st}");
    // The container is started again for the sync; the helper's state survived in its volume.
    env.agent(&["sync", "ro"]).ok();
    let tip = env.task_refs("ro")["wip"].clone();
    assert_eq!(
        env.git(&["show", &format!("{tip}:result.txt")]).ok().stdout,
        "done\n"
    );
    // Without the flag, git config asks for it too; a bad value is an error with a hint.
    env.git(&["config", "agent.readOnlyRoot", "maybe"]).ok();
    env.agent(&["spawn", "--name", "bad", "-m", "x", "--", "true"])
        .fails();
    assert!(env.task_refs("bad").is_empty());
    env.agent(&["purge", "ro"]).ok();
    let (containers, volumes, _) = env.runtime_objects();
    assert!(
        containers.is_empty() && volumes.is_empty(),
        "{containers:?} {volumes:?}"
    );
}

/// A finished agent that rigs its container to run again on the next start (the helper's
/// `go` pipe replaced by a file, its `started` mark removed) gets no second run: syncing a
/// finished task reads its workspace from a fresh container that only sleeps.
#[test]
fn a_finished_agent_cannot_arrange_to_run_again() {
    require_docker!();
    let env = TestEnv::new();
    let rig = "echo run >> runs.txt; rm -f /opt/git-agent/started /opt/git-agent/go; echo go > /opt/git-agent/go";
    env.agent(&[
        "spawn", "--name", "again", "--wait", "-m", "x", "--", "sh", "-c", rig,
    ])
    .ok();
    for _ in 0..2 {
        env.agent(&["sync", "again"]).ok();
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let tip = env.task_refs("again")["wip"].clone();
    assert_eq!(
        env.git(&["show", &format!("{tip}:runs.txt")]).ok().stdout,
        "run\n",
        "the agent's command ran again"
    );
    let state = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Status}}",
            &env.container_of("again"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "exited");
    let (containers, _, _) = env.runtime_objects();
    assert_eq!(
        containers,
        vec![env.container_of("again")],
        "reader left behind"
    );
}

/// `review` flags changes that can run code elsewhere or hide from a quick look.
#[test]
fn review_flags_sensitive_changes() {
    require_docker!();
    let env = TestEnv::new();
    let work = r#"set -e
mkdir -p .github/workflows && echo 'on: push' > .github/workflows/x.yml
printf '#!/bin/sh\n' > run.sh && chmod +x run.sh
ln -s /etc/passwd passwd-link
head -c 1100000 /dev/zero > blob.bin
echo fine > notes.txt
git add -A && git commit -qm sensitive"#;
    env.agent(&[
        "spawn", "--name", "sens", "--wait", "-m", "x", "--", "sh", "-c", work,
    ])
    .ok();
    let review = env.agent(&["review", "sens"]).ok().stdout;
    assert!(review.contains("attention"), "{review}");
    for (path, why) in [
        (".github/workflows/x.yml", "CI configuration"),
        ("run.sh", "made executable"),
        ("passwd-link", "symbolic link"),
        ("blob.bin", "large file"),
    ] {
        assert!(
            review
                .lines()
                .any(|l| l.contains(&format!("! {path}: {why}"))),
            "{path}:\n{review}"
        );
    }
    assert!(!review.contains("! notes.txt"), "{review}");
    let json = env.json(&["review", "sens", "--json"]);
    assert_eq!(json["sensitive"].as_array().unwrap().len(), 4, "{json}");
}
