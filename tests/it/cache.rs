//! The object cache (see `git_agent::sandbox::cache`): tasks on one repository share one copy
//! of its history on the engine, no task can write that copy, and a cache that was deleted
//! or damaged is found and rebuilt.

use std::io::Read;
use std::process::Command;

use crate::common::{TestEnv, base_image};
use crate::require_docker;

/// `n` random bytes as hex (incompressible history).
fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A repository whose history holds a file of `kib` KiB of hex (half of it entropy, so
/// about `kib / 2` KiB packed) that its checkout does not (the file is added, then removed).
fn repo_with_history(kib: usize) -> TestEnv {
    let env = TestEnv::new();
    std::fs::write(env.repo.join("blob.bin"), random_hex(kib * 512)).unwrap();
    env.git(&["add", "blob.bin"]).ok();
    env.git(&["commit", "-qm", "big"]).ok();
    env.git(&["rm", "-q", "blob.bin"]).ok();
    env.git(&["commit", "-qm", "gone"]).ok();
    env
}

fn cache_volume(env: &TestEnv) -> String {
    format!("git-agent-cache-{}", env.repo_id())
}

/// Run `script` as root in a throw-away container with `volume` at /v.
fn on_volume(volume: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "0",
            "-v",
            &format!("{volume}:/v"),
            &base_image(),
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// KiB a volume holds, measured on the engine.
fn volume_kib(volume: &str) -> u64 {
    on_volume(volume, "du -sk /v | cut -f1").parse().unwrap()
}

fn volume_exists(volume: &str) -> bool {
    Command::new("docker")
        .args(["volume", "inspect", volume])
        .output()
        .unwrap()
        .status
        .success()
}

/// Spawn an exec task that commits `file`, wait for it and sync it.
fn committing_task(env: &TestEnv, name: &str, file: &str) -> crate::common::Run {
    let run = env
        .agent(&[
            "spawn",
            "--name",
            name,
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            &format!(
                "test ! -e blob.bin && git log --oneline | grep -q big && echo {name} > {file} && git add {file} && git commit -qm 'add {file}'"
            ),
        ])
        .ok();
    env.agent(&["sync", name]).ok();
    let shown = env
        .git(&["show", &format!("refs/agent/{name}/head:{file}")])
        .ok();
    assert_eq!(shown.stdout.trim(), name);
    run
}

/// Tasks share history: the second task on a repository adds a work tree and its own new
/// objects to the engine's disk, not another copy of the history.
#[test]
fn tasks_share_one_copy_of_history() {
    require_docker!();
    let env = repo_with_history(3 * 1024);
    committing_task(&env, "one", "a.txt");
    let cache = cache_volume(&env);
    let history = volume_kib(&cache);
    assert!(
        history >= 1400,
        "the cache holds the history: {history} KiB"
    );
    committing_task(&env, "two", "b.txt");
    assert_eq!(
        volume_kib(&cache),
        history,
        "the second task added nothing to the cache"
    );
    for task in ["one", "two"] {
        let ws = volume_kib(&env.names_of(task).volume);
        assert!(
            ws < 256,
            "task {task}'s workspace holds no history: {ws} KiB (history {history} KiB)"
        );
        let alternates = on_volume(
            &env.names_of(task).volume,
            "cat /v/.git/objects/info/alternates",
        );
        assert_eq!(alternates, "/opt/git-agent-cache/repo.git/objects");
    }
    // The work came home whole: the host has every object of both tasks.
    env.git(&["fsck", "--connectivity-only", "--no-dangling"])
        .ok();
    // The last task purged takes the cache with it.
    env.agent(&["purge", "one"]).ok();
    assert!(volume_exists(&cache));
    env.agent(&["purge", "two"]).ok();
    assert!(!volume_exists(&cache), "the unused cache is removed");
}

/// With `agent.objectCache=false` a task gets its own copy of history, as before.
#[test]
fn the_cache_can_be_turned_off() {
    require_docker!();
    let env = repo_with_history(1024);
    env.git(&["config", "agent.objectCache", "false"]).ok();
    committing_task(&env, "own", "a.txt");
    assert!(!volume_exists(&cache_volume(&env)));
    let ws = volume_kib(&env.names_of("own").volume);
    assert!(ws >= 450, "the workspace holds its own history: {ws} KiB");
}

/// An agent attacks the cache from inside its task: it cannot write, chmod, delete or plant
/// anything in it, and what it does to its own alternates touches no other task and brings
/// nothing from outside its repository to the host.
#[test]
fn the_cache_is_never_writable_from_a_task() {
    require_docker!();
    let env = repo_with_history(256);
    env.agent(&["spawn", "--name", "evil", "-m", "x", "--", "sleep", "300"])
        .ok();
    let cache = cache_volume(&env);
    let fingerprint = || {
        on_volume(
            &cache,
            "cd /v && find . -path ./in.bundle -prune -o -print | sort | while read -r f; do \
             if [ -f \"$f\" ]; then echo \"$f $(stat -c %a:%u \"$f\") $(md5sum < \"$f\")\"; \
             else echo \"$f $(stat -c %a:%u \"$f\")\"; fi; done",
        )
    };
    let before = fingerprint();
    let c = "/opt/git-agent-cache";
    for attack in [
        format!("touch {c}/planted"),
        format!("echo x > {c}/repo.git/objects/planted"),
        format!("chmod -R a+w {c}"),
        format!("rm -rf {c}/repo.git/objects/pack"),
        format!("echo /tmp > {c}/repo.git/objects/info/alternates"),
        format!("mkdir -p {c}/repo.git/objects/ab && echo x > {c}/repo.git/objects/ab/cd"),
        format!("git --git-dir={c}/repo.git update-ref refs/tips/x HEAD"),
        format!("mv {c}/repo.git {c}/moved"),
    ] {
        let run = env.docker_exec("evil", &attack);
        assert_ne!(run.code, 0, "{attack} succeeded:\n{run}");
    }
    // Its own alternates pointed elsewhere, with an object planted there that its commit
    // needs: the sync reads the workspace through a private git that never follows them.
    let planted = env.docker_exec(
        "evil",
        "set -e; mkdir -p /tmp/elsewhere && cd /workspace && \
         blob=$(echo secret | GIT_OBJECT_DIRECTORY=/tmp/elsewhere git hash-object -w --stdin) && \
         echo /tmp/elsewhere >> .git/objects/info/alternates && \
         git update-index --add --cacheinfo 100644,$blob,elsewhere.txt && \
         git commit -qm elsewhere && echo $blob",
    );
    assert_eq!(planted.code, 0, "{planted}");
    let sync = env.agent(&["sync", "evil"]);
    // Either refused or without that object: the host stays whole either way.
    if sync.code == 0 {
        let blob = planted.stdout.trim();
        env.git(&["cat-file", "-e", blob]).ok();
    }
    env.git(&["fsck", "--connectivity-only", "--no-dangling"])
        .ok();
    assert_eq!(
        fingerprint(),
        before,
        "the cache changed under a task's attacks"
    );
    // Another task still checks out the same history, untouched.
    committing_task(&env, "next", "n.txt");
}

/// A cache volume deleted behind git-agent's back is rebuilt by the next spawn (with a
/// warning), and a task whose workspace borrows from it still syncs.
#[test]
fn a_deleted_cache_is_rebuilt() {
    require_docker!();
    let env = repo_with_history(512);
    committing_task(&env, "first", "a.txt");
    env.agent(&["rm", "first"]).ok();
    let cache = cache_volume(&env);
    let out = Command::new("docker")
        .args(["volume", "rm", &cache])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = committing_task(&env, "second", "b.txt");
    assert!(
        run.stderr.contains("is gone from this engine"),
        "the rebuild is said:\n{run}"
    );
    assert!(volume_exists(&cache));
}

/// A damaged cache (a pack cut short) is found when a task cannot check its base out of
/// it, rebuilt, and the spawn goes on.
#[test]
fn a_damaged_cache_is_detected_and_rebuilt() {
    require_docker!();
    let env = repo_with_history(512);
    committing_task(&env, "first", "a.txt");
    env.agent(&["rm", "first"]).ok();
    let cache = cache_volume(&env);
    on_volume(
        &cache,
        "for p in /v/repo.git/objects/pack/*.pack; do truncate -s 100 \"$p\"; done",
    );
    let run = committing_task(&env, "second", "b.txt");
    assert!(
        run.stderr.contains("rebuilding the cache"),
        "the rebuild is said:\n{run}"
    );
    // The rebuilt cache is whole again: the task removed first still syncs from it.
    on_volume(
        &cache,
        "for p in /v/repo.git/objects/pack/*.pack; do test $(stat -c %s \"$p\") -gt 100; done",
    );
}

/// `gc` cuts the cache down to the history of the tasks that borrow from it (a purged
/// task's history goes), and removes it once no task borrows from it.
#[test]
fn gc_keeps_only_what_tasks_borrow() {
    require_docker!();
    let env = repo_with_history(3 * 1024);
    // A second, unrelated history: a task on it needs none of the big one.
    env.git(&["checkout", "-q", "--orphan", "small"]).ok();
    env.git(&["commit", "-qm", "small root"]).ok();
    let spawn = |name: &str, base: &str| {
        env.agent(&[
            "spawn", "--name", name, "--base", base, "--wait", "-m", "x", "--", "true",
        ])
        .ok();
    };
    spawn("big", "main");
    spawn("small", "small");
    let cache = cache_volume(&env);
    let before = volume_kib(&cache);
    assert!(before >= 1400, "{before} KiB");
    env.agent(&["purge", "big"]).ok();
    let gc = env.agent(&["gc"]).ok();
    assert!(gc.stdout.contains("it keeps the history of 1 task"), "{gc}");
    let after = volume_kib(&cache);
    assert!(
        after < 512,
        "the purged task's history went: {after} KiB (was {before})"
    );
    // The task left still syncs through the collected cache.
    env.agent(&["sync", "small"]).ok();
    env.agent(&["rm", "small"]).ok();
    env.agent(&["purge", "--refs", "small"]).ok();
    assert!(!volume_exists(&cache));
    let json = env.agent(&["gc", "--json"]).ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json, serde_json::json!({"schema": 1, "cache": "none"}));
}

/// The output a task's container printed so far.
fn container_output(env: &TestEnv, task: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["logs", &env.container_of(task)])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A headless task checked out from the cache starts its command by itself as soon as its
/// gateway answers, with no word from the host on the way: a spawn killed right before it
/// would say `go` still has its command running. With the cache off the command waits for
/// the host, so the same kill leaves it waiting (and `doctor --fix` cleans both up).
#[test]
fn a_cached_task_starts_by_itself_once_its_gateway_answers() {
    require_docker!();
    let env = TestEnv::new();
    let script = "echo started-by-itself; exec sleep 300";
    env.agent_crash_at(
        "spawn.after-gateway",
        &[
            "spawn", "--name", "auto", "-m", "x", "--", "sh", "-c", script,
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !container_output(&env, "auto").contains("started-by-itself") {
        assert!(
            std::time::Instant::now() < deadline,
            "the command never started by itself: {}",
            container_output(&env, "auto")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    env.git(&["config", "agent.objectCache", "false"]).ok();
    env.agent_crash_at(
        "spawn.after-gateway",
        &[
            "spawn", "--name", "held", "-m", "x", "--", "sh", "-c", script,
        ],
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(
        !container_output(&env, "held").contains("started-by-itself"),
        "a task without the cache started before the host said go"
    );

    env.agent(&["doctor", "--fix"]);
    for t in ["auto", "held"] {
        env.agent(&["purge", "--refs", t]).ok();
    }
    let (containers, _, _) = env.runtime_objects();
    assert!(containers.is_empty(), "left running: {containers:?}");
}
