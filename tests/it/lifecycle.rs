//! Task lifecycle against a real engine: list, status, logs, stop, rm, purge, and
//! interrupted spawns.

use std::time::Duration;

use crate::common::TestEnv;
use crate::require_docker;

#[test]
fn list_status_logs_stop_rm_purge() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "long",
        "-m",
        "wait a while",
        "--",
        "sh",
        "-c",
        "echo started-up; printf '\\033[2Jcleared\\n'; sleep 300",
    ])
    .ok();
    let short = env.agent(&[
        "spawn",
        "--name",
        "short",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo hi > f; exit 3",
    ]);
    assert_eq!(
        short.code, 3,
        "spawn --wait exits with the task's status:\n{short}"
    );
    assert_eq!(short.stdout.trim(), "short");

    // logs -f follows until the task ends.
    env.agent(&[
        "spawn",
        "--name",
        "follow",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo one; sleep 2; printf two",
    ])
    .ok();
    let followed = env.agent(&["logs", "-f", "follow"]).ok();
    // The last line has no newline: it must not be lost when the stream ends.
    assert_eq!(followed.stdout, "one\ntwo", "{followed}");
    env.agent(&["purge", "--refs", "follow"]).ok();

    let list = env.agent(&["list"]).ok().stdout;
    let line = |name: &str| {
        list.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{list}"))
            .to_string()
    };
    assert!(line("long").contains("running"), "{list}");
    assert!(line("short").contains("exited (3)"), "{list}");
    assert!(list.lines().next().unwrap().contains("NAME"));
    let json = env.json(&["list", "--json"])["tasks"].clone();
    assert_eq!(json.as_array().unwrap().len(), 2);

    // A prefix selects; an ambiguous or unknown one is a clear error.
    let st = env.agent(&["status", "lo"]).ok().stdout;
    assert!(
        st.contains("task:      long") && st.contains("wait a while"),
        "{st}"
    );
    assert!(
        st.contains("history:") && st.contains("running") && st.contains("create long"),
        "{st}"
    );
    env.agent(&["spawn", "--name", "longer", "-m", "x", "--", "true"])
        .ok();
    let amb = env.agent(&["status", "lon"]).fails();
    assert!(amb.stderr.contains("matches 2 tasks"), "{amb}");
    let unknown = env.agent(&["logs", "nope"]).fails();
    assert!(unknown.stderr.contains("no task named 'nope'"), "{unknown}");

    // logs: the output as emitted when piped.
    let mut logs = String::new();
    for _ in 0..50 {
        logs = env.agent(&["logs", "long"]).ok().stdout;
        if logs.contains("cleared") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        logs.contains("started-up") && logs.contains("cleared"),
        "{logs}"
    );

    env.agent(&["stop", "long", "--timeout", "1"]).ok();
    let st = env.json(&["status", "long", "--json"]);
    assert_eq!(st["status"], "stopped");
    // Work is still reachable after a stop: sync starts the container just long enough.
    env.docker_exec("long", "true"); // container is stopped, so this fails; that's fine
    let sync = env.agent(&["sync", "long"]).ok();
    assert!(sync.stderr.contains("nothing new"), "{sync}");

    env.agent(&["rm", "short"]).ok();
    let (containers, volumes, _) = env.runtime_objects();
    assert!(
        !containers.contains(&env.container_of("short")),
        "{containers:?}"
    );
    assert!(
        volumes.contains(&env.names_of("short").volume),
        "rm keeps the workspace: {volumes:?}"
    );
    let logs = env.agent(&["logs", "short"]).fails();
    assert!(logs.stderr.contains("no container"), "{logs}");

    env.agent(&["purge", "short"]).ok();
    let (_, volumes, networks) = env.runtime_objects();
    assert!(
        !volumes.contains(&env.names_of("short").volume),
        "{volumes:?}"
    );
    assert!(
        !networks.contains(&env.names_of("short").network),
        "{networks:?}"
    );
    assert!(
        env.task_refs("short").contains_key("state"),
        "purge without --refs keeps the task"
    );
    env.agent(&["purge", "--refs", "short"]).ok();
    assert!(env.task_refs("short").is_empty());

    env.agent(&["purge", "--refs", "--all", "--yes"]).ok();
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
    assert!(env.git(&["for-each-ref", "refs/agent/"]).stdout.is_empty());
}

/// Ctrl-C at any moment of a spawn leaves either a complete task or nothing at all: no
/// half-written refs and no orphaned runtime objects.
#[test]
fn interrupted_spawn_leaves_nothing_half_done() {
    require_docker!();
    let env = TestEnv::new();
    // Build the image first so the spawns below are quick and the signal lands mid-way.
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    let mut interrupted = 0;
    for (i, delay_ms) in [50u64, 150, 300, 450, 600, 800, 1100, 1500, 3000]
        .into_iter()
        .enumerate()
    {
        let name = format!("int{i}");
        let child = env
            .agent_command(&["spawn", "--name", &name, "-m", "x", "--", "sleep", "300"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let out = child.wait_with_output().unwrap();
        let refs = env.task_refs(&name);
        let (containers, volumes, networks) = env.runtime_objects();
        let mine = |v: &Vec<String>| v.iter().any(|n| n.contains(&format!("-{name}")));
        match out.status.code() {
            Some(0) => {
                assert!(refs.contains_key("state") && refs.contains_key("base"));
                let st = env.json(&["status", &name, "--json"]);
                assert_eq!(st["status"], "running");
            }
            code => {
                interrupted += 1;
                assert!(
                    refs.is_empty(),
                    "delay {delay_ms}ms exit {code:?}: refs left {refs:?}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(
                    !mine(&containers) && !mine(&volumes) && !mine(&networks),
                    "delay {delay_ms}ms: orphans {containers:?} {volumes:?} {networks:?}"
                );
            }
        }
    }
    eprintln!("interrupted {interrupted} of 9 spawns");
}

/// Ctrl-C at any moment of a sync leaves the task's refs either as they were or fully
/// updated, no temp files, and the (finished) task's container stopped again.
#[test]
fn interrupted_sync_leaves_refs_whole_and_no_temp_files() {
    require_docker!();
    let env = TestEnv::new();
    let tmp = env.home.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let big = "head -c 20000000 /dev/urandom > big.bin && git add big.bin && git commit -qm big";
    env.agent(&[
        "spawn", "--name", "bigsync", "--wait", "-m", "x", "--", "sh", "-c", big,
    ])
    .ok();
    let mut interrupted = 0;
    for delay_ms in [30u64, 150, 300, 600, 1000, 4000] {
        env.git(&["update-ref", "-d", "refs/agent/bigsync/head"])
            .ok();
        let before = env.task_refs("bigsync");
        let child = env
            .agent_command(&["sync", "bigsync"])
            .env("TMPDIR", &tmp)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        unsafe {
            libc::kill(child.id() as i32, libc::SIGINT);
        }
        let out = child.wait_with_output().unwrap();
        let after = env.task_refs("bigsync");
        match out.status.code() {
            Some(0) => assert!(after.contains_key("head"), "{after:?}"),
            code => {
                interrupted += 1;
                assert_eq!(code, Some(130), "{}", String::from_utf8_lossy(&out.stderr));
                assert_eq!(before, after, "delay {delay_ms}ms moved refs");
            }
        }
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
        assert!(
            left.is_empty(),
            "delay {delay_ms}ms left temp files: {left:?}"
        );
        let state = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.Running}}",
                &env.container_of("bigsync"),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&state.stdout).trim(),
            "false",
            "delay {delay_ms}ms"
        );
    }
    eprintln!("interrupted {interrupted} of 6 syncs");
}

/// `shell` through a real pseudo-terminal (util-linux `script`).
#[test]
fn shell_opens_in_the_workspace_as_the_task_user() {
    require_docker!();
    if which::which("script").is_err() {
        eprintln!("SKIPPED: util-linux `script` is not installed");
        return;
    }
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "sh1",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo hi > hi.txt",
    ])
    .ok();
    let mut script = env.pty_command("shell sh1");
    script
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = script.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"echo inside-$((40+2)) $(id -un) $(pwd) $(cat hi.txt)\nexit 5\n")
            .unwrap();
        std::thread::sleep(Duration::from_secs(3));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inside-42 agent /workspace hi"), "{text}");
    assert_eq!(out.status.code(), Some(5), "{text}");
    // The finished task's container was started only for the shell, and stopped after.
    let state = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.State.Running}}",
            &env.container_of("sh1"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "false");
}

/// Interactive sessions through a real terminal (tmux): `spawn -i` attaches, Ctrl-P Ctrl-Q
/// detaches and leaves the task running, `attach` reconnects to the same session.
#[test]
fn interactive_attach_detach_reattach() {
    require_docker!();
    if which::which("tmux").is_err() {
        eprintln!("SKIPPED: tmux is not installed");
        return;
    }
    let env = TestEnv::new();
    env.git(&["config", "agent.follow", "true"]).ok();
    env.git(&["config", "agent.followInterval", "1s"]).ok();
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    let sock = env.home.path().join("tmux.sock");
    let tmux = |args: &[&str]| {
        let out = std::process::Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Each session gets a name of its own: a second session under the name of one just
    // killed can race the server's shutdown and never appear.
    let session = std::cell::Cell::new("t");
    let screen_has = |needle: &str| {
        for _ in 0..300 {
            if tmux(&["capture-pane", "-p", "-t", session.get()]).contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    };
    let cmd = |args: &str| {
        format!(
            "cd '{}' && HOME='{}' GIT_CONFIG_NOSYSTEM=1 {} {args}; echo EXITED-$?; sleep 60",
            env.repo.display(),
            env.home.path().display(),
            crate::common::BIN
        )
    };
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "120",
        "-y",
        "30",
        &cmd("spawn -i --name tty -m x -- sh"),
    ]);
    assert!(
        screen_has("$"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "t"])
    );
    tmux(&[
        "send-keys",
        "-t",
        "t",
        "echo inside-$((6*7)) $(tty)",
        "Enter",
    ]);
    assert!(
        screen_has("inside-42 /dev/pts"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "t"])
    );
    // An interactive task is followed too: what the user commits in the session comes home
    // while they are still attached, with no sync.
    tmux(&[
        "send-keys",
        "-t",
        "t",
        "echo by-hand > hand.txt && git add hand.txt && git commit -qm by-hand && echo COMMITTED",
        "Enter",
    ]);
    assert!(screen_has("COMMITTED"));
    let came_home = (0..120).any(|_| {
        std::thread::sleep(Duration::from_millis(250));
        env.task_refs("tty").get("head").is_some_and(|head| {
            env.git(&["log", "-1", "--format=%s", head])
                .ok()
                .stdout
                .trim()
                == "by-hand"
        })
    });
    assert!(came_home, "the follower did not bring the commit home");
    tmux(&["send-keys", "-t", "t", "C-p", "C-q"]);
    assert!(
        screen_has("detached from tty"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "t"])
    );
    assert!(screen_has("EXITED-0"));
    let st = env.json(&["status", "tty", "--json"]);
    assert_eq!(st["status"], "running", "detaching leaves the task running");

    session.set("r");
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "r",
        "-x",
        "120",
        "-y",
        "30",
        &cmd("attach tty"),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    tmux(&[
        "send-keys",
        "-t",
        "r",
        "echo back-$((40+2)); exit 7",
        "Enter",
    ]);
    assert!(
        screen_has("back-42"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "r"])
    );
    assert!(
        screen_has("ended (status 7)"),
        "{}",
        tmux(&["capture-pane", "-p", "-t", "r"])
    );
    assert!(screen_has("EXITED-7"));
    tmux(&["kill-server"]);
    let st = env.json(&["status", "tty", "--json"]);
    assert_eq!(st["status"], "exited");
    assert_eq!(st["exit_code"], 7);
    // A headless task has no session to join: attach follows its output to its end.
    env.agent(&[
        "spawn",
        "--name",
        "bg",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo first-line; sleep 3; echo last-line",
    ])
    .ok();
    let followed = env.agent(&["attach", "bg"]).ok();
    assert!(followed.stderr.contains("runs headless"), "{followed}");
    assert!(
        followed.stdout.contains("first-line\n") && followed.stdout.contains("last-line\n"),
        "{followed}"
    );
}

/// `doctor` finds what is wrong and says how to fix it; `panic` cuts networks and stops
/// task containers at once, keeping workspaces and refs.
#[test]
fn doctor_and_panic() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "p1", "-m", "x", "--", "sleep", "300"])
        .ok();
    env.agent(&[
        "spawn",
        "--name",
        "p2",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo work > w.txt; sleep 300",
    ])
    .ok();
    let healthy = env.agent(&["doctor"]).ok().stdout;
    assert!(
        healthy.contains("ok    engine")
            && healthy.contains("ok    tasks")
            && healthy.contains("ok    gateway")
            && healthy.contains("ok    network"),
        "{healthy}"
    );

    // The spare made for the next spawn (see `sandbox::spare`) is stopped with the rest.
    let spare_prefix = format!("git-agent-{}.spare.", env.repo_id());
    let spares: Vec<String> = env
        .runtime_objects()
        .0
        .into_iter()
        .filter(|c| c.starts_with(&spare_prefix))
        .collect();
    assert_eq!(spares.len(), 1, "{spares:?}");
    // Only this repository's tasks: other tests share the engine.
    let panic = env.agent(&["panic", "--this-repo"]).ok();
    let mut stopped: Vec<&str> = panic.stdout.lines().collect();
    stopped.sort();
    let mut all = [
        env.container_of("p1"),
        env.names_of("p1").gateway,
        env.container_of("p2"),
        env.names_of("p2").gateway,
    ];
    // Their disk wardens (no network of their own) are stopped too.
    let mut listed: Vec<String> = all
        .iter()
        .cloned()
        .chain([env.names_of("p1").warden, env.names_of("p2").warden])
        .chain(spares)
        .collect();
    listed.sort();
    all.sort();
    assert_eq!(stopped, listed, "{panic}");
    for t in &all {
        let state = std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{.State.Running}} {{len .NetworkSettings.Networks}}",
                t,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&state.stdout).trim(),
            "false 0",
            "{t}: network cut, stopped"
        );
    }
    // Their records still say running, and doctor notices the gateways are down.
    let after = env.agent(&["doctor"]);
    assert!(
        after.stdout.contains("task p1's gateway is not running")
            && after.stdout.contains("git agent restart p1"),
        "{after}"
    );
    // Nothing lost: the work is still there and comes home.
    env.agent(&["sync", "p2"]).ok();
    let wip = env.task_refs("p2")["wip"].clone();
    assert_eq!(
        env.git(&["show", &format!("{wip}:w.txt")]).ok().stdout,
        "work\n"
    );

    // A container that vanished behind git-agent's back is reported with its fix.
    std::process::Command::new("docker")
        .args(["rm", "-f", &env.container_of("p1")])
        .output()
        .unwrap();
    env.git(&["update-ref", "-d", "refs/agent/p2/state"]).ok();
    let sick = env.agent(&["doctor"]);
    assert_eq!(sick.code, 1, "{sick}");
    assert!(
        sick.stdout.contains("orphan") && sick.stdout.contains("git agent purge p2"),
        "{sick}"
    );
    let down = env.agent_with(&["doctor"], |c| {
        c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
    });
    assert_eq!(down.code, 1, "{down}");
    assert!(down.stdout.contains("FAIL  engine"), "{down}");
}

/// Everything a read-only command could change: every ref (task refs, notes, branches), the
/// engine's objects of this repository with their state, and sync scratch files.
fn state_of(env: &TestEnv) -> String {
    let refs = env
        .git(&["for-each-ref", "--format=%(refname) %(objectname)"])
        .stdout;
    let filter = format!("label=git-agent.repo={}", env.repo_id());
    let docker = |args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines.join("\n")
    };
    let containers = docker(&[
        "ps",
        "-a",
        "--filter",
        &filter,
        "--format",
        "{{.Names}} {{.State}}",
    ]);
    let volumes = docker(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]);
    let networks = docker(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]);
    let scratch: Vec<String> = std::fs::read_dir(env.repo.join(".git/git-agent/tmp/sync"))
        .map(|d| {
            let mut v: Vec<String> = d
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    format!(
        "refs:\n{refs}\ncontainers:\n{containers}\nvolumes:\n{volumes}\nnetworks:\n{networks}\nscratch: {scratch:?}"
    )
}

/// `list`, `status`, `logs` and `review --no-sync` change nothing, whatever state the tasks
/// are in: a running task, one whose container exited since the last command, a dead spawn,
/// and one with a killed sync's reader and scratch files. They show the effective status
/// (`exited`, `failed`); the commands that change a task record it and clean up after it.
#[test]
fn read_only_commands_leave_refs_and_engine_objects_alone() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "live", "-m", "x", "--", "sleep", "300"])
        .ok();
    env.agent(&[
        "spawn",
        "--name",
        "ended",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo 1 > f; git add f; git commit -qm one; echo bye; exit 3",
    ])
    .ok();
    env.agent(&[
        "spawn",
        "--name",
        "synced",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "echo 2 > g; git add g; git commit -qm two",
    ])
    .ok();
    env.agent_crash_at(
        "spawn.after-refs",
        &["spawn", "--name", "dead", "-m", "x", "--", "true"],
    );
    // `synced`: a sync killed after starting its reader leaves the reader and scratch files.
    env.git(&["update-ref", "-d", "refs/agent/synced/head"])
        .ok();
    env.agent_crash_at("sync.after-reader", &["sync", "synced"]);
    let reader = env.names_of("synced").reader;
    // `ended`: its container exits with no git-agent command watching.
    let wait = std::process::Command::new("docker")
        .args(["wait", &env.container_of("ended")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&wait.stdout).trim(), "3");
    let recorded = |task: &str| env.json(&["status", task, "--json"]);
    let before = state_of(&env);
    assert!(before.contains(&format!("{reader} ")), "{before}");
    assert!(before.contains("scratch: [\"synced\"]"), "{before}");

    let mut runs = vec![env.agent(&["list"]), env.agent(&["list", "--json"])];
    for task in ["live", "ended", "synced", "dead"] {
        runs.push(env.agent(&["status", task]));
        runs.push(env.agent(&["status", "--json", task]));
        runs.push(env.agent(&["logs", task]));
        runs.push(env.agent(&["review", "--no-sync", task]));
        runs.push(env.agent(&["review", "--no-sync", "--json", task]));
    }
    for run in &runs {
        assert_eq!(
            state_of(&env),
            before,
            "changed by a read-only command:\n{run}"
        );
    }
    // What they show is the effective status all the same.
    let list = &runs[0];
    let row = |t: &str| {
        list.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(t))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("live").contains("running"), "{list}");
    assert!(row("ended").contains("exited (3)"), "{list}");
    assert!(row("dead").contains("failed"), "{list}");
    let st = recorded("ended");
    assert_eq!(st["status"], "exited", "{st}");
    assert_eq!(st["exit_code"], 3, "{st}");
    assert_eq!(recorded("dead")["reason"], "spawn interrupted");
    assert_eq!(state_of(&env), before);
    // The refs still hold the last recorded state: nothing was written.
    let refs = |t: &str| env.task_refs(t);
    let ended_state = refs("ended")["state"].clone();

    // `doctor` reports the run that ended unrecorded, and changes nothing either.
    let doctor = env.agent(&["doctor"]);
    assert!(
        doctor
            .stdout
            .contains("task ended's command ended (exit 3); not recorded yet"),
        "{doctor}"
    );
    assert_eq!(state_of(&env), before, "{doctor}");
    // The commands that change a task record what the views showed, and clean up: `doctor
    // --fix` records the ended run and the dead spawn and removes the killed sync's reader and
    // scratch files; `stop` records the stop.
    let fix = env.agent(&["doctor", "--fix"]);
    assert_ne!(
        refs("ended")["state"],
        ended_state,
        "doctor --fix recorded nothing:\n{fix}"
    );
    let st = recorded("ended");
    assert_eq!(st["status"], "exited", "{st}");
    assert_eq!(st["sandbox"]["gateway"], serde_json::Value::Null, "{st}");
    let after = state_of(&env);
    assert!(
        !after.contains(&reader),
        "doctor --fix left the reader:\n{after}"
    );
    assert!(
        !after.contains(".gw.ended"),
        "doctor --fix left the gateway:\n{after}"
    );
    assert!(after.contains("scratch: []"), "{after}");
    assert_eq!(recorded("dead")["status"], "failed");
    let logs = env.agent(&["logs", "ended"]).ok();
    assert!(logs.stdout.contains("bye"), "{logs}");
    let live_state = refs("live")["state"].clone();
    env.agent(&["stop", "live"]).ok();
    assert_ne!(refs("live")["state"], live_state, "stop recorded nothing");
    assert_eq!(recorded("live")["status"], "stopped");
    for task in ["live", "ended", "synced", "dead"] {
        env.agent(&["purge", "--refs", task]).ok();
    }
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
}
