//! Orchestration on the engine-less local runtime (`git_agent::runtime::local`): the core
//! loop, Ctrl-C on `spawn --wait`, and kill -9 at every crash point of spawn, sync, commit,
//! purge and restart. The crash tests are the Docker ones (`recovery`, `sync_races`,
//! `promotion`, `purge`, `runtime_changes`), each written once over a `TestEnv` and run here
//! on the local runtime, in seconds. The runtime contract the local runtime passes is in
//! `conformance.rs`. Also the rule that the local runtime runs only in a `local-runtime`
//! build AND when asked for.
//!
//! Everything but the default-build rule needs a binary built with `--features local-runtime`
//! (scripts/test.sh builds the tests so).

#[cfg(not(feature = "local-runtime"))]
use crate::common::TestEnv;

/// A bogus engine address: a command that reaches for Docker fails at once, and says where.
const NO_ENGINE: &str = "unix:///nonexistent/git-agent-test/docker.sock";

/// A default build does not know the local runtime: asked for it, it still talks to Docker
/// (here: to no engine at all), so nobody can run agents unsandboxed by setting a variable.
#[cfg(not(feature = "local-runtime"))]
#[test]
fn a_default_build_ignores_a_request_for_the_local_runtime() {
    let env = TestEnv::new();
    let dir = env.home.path().join("local-runtime");
    let run = env.agent_with(&["image", "build", "--agent", "exec"], |c| {
        c.env("GIT_AGENT_RUNTIME", "local")
            .env("GIT_AGENT_LOCAL_RUNTIME_DIR", &dir)
            .env("DOCKER_HOST", NO_ENGINE);
    });
    let run = run.fails();
    assert!(
        run.stderr.contains("cannot reach the container engine") && run.stderr.contains(NO_ENGINE),
        "{run}"
    );
    assert!(!dir.exists(), "the local runtime was used:\n{run}");
}

#[cfg(feature = "local-runtime")]
mod local {
    use std::time::{Duration, Instant};

    use git_agent::runtime::{ContainerState, Runtime};

    use super::NO_ENGINE;
    use crate::common::TestEnv;

    /// The agent's work: two commits (one file with spaces and non-ASCII in its name, the
    /// prompt it read on stdin), then an uncommitted edit and an untracked file.
    const WORK: &str = r#"set -e
cat > "prompt copy.txt"
printf 'agent line\n' > "naïve file.txt"
mkdir -p src && printf 'fn main() {}\n' > src/main.rs
git add -A && git commit -q -m "agent: add files" -m "Body from the agent."
printf 'more\n' >> README.md
printf 'new\n' > untracked.txt
echo finished-work"#;

    fn rev(env: &TestEnv, r: &str) -> Option<String> {
        let run = env.git(&["rev-parse", "-q", "--verify", r]);
        (run.code == 0).then(|| run.stdout.trim().to_string())
    }

    fn no_objects() -> (Vec<String>, Vec<String>, Vec<String>) {
        (vec![], vec![], vec![])
    }

    /// `name`'s runtime objects on the local runtime, as one list.
    fn objects_of(env: &TestEnv, task: &str) -> Vec<String> {
        let names = env.names_of(task);
        let all = names.all();
        let (c, v, n) = env.local_objects();
        c.into_iter()
            .chain(v)
            .chain(n)
            .filter(|o| all.iter().any(|(_, name)| name == o))
            .collect()
    }

    /// The local runtime is what runs: no engine is reachable, and the task still works.
    #[test]
    fn the_core_loop_runs_on_the_local_runtime() {
        let started = Instant::now();
        let env = TestEnv::local();
        let before = env.snapshot();
        let spawn = env
            .agent_with(
                &[
                    "spawn",
                    "--name",
                    "loop",
                    "-m",
                    "make the files",
                    "--wait",
                    "--",
                    "sh",
                    "-c",
                    WORK,
                ],
                |c| {
                    c.env("DOCKER_HOST", NO_ENGINE);
                },
            )
            .ok();
        assert_eq!(spawn.stdout.trim(), "loop");
        assert!(spawn.stderr.contains("finished-work"), "{spawn}");
        assert!(!env.task_refs("loop").contains_key("head"));

        let sync = env.agent(&["sync", "lo"]).ok();
        assert!(sync.stderr.contains("1 new commit"), "{sync}");
        assert!(sync.stderr.contains("uncommitted changes"), "{sync}");
        let refs = env.task_refs("loop");
        let head = refs["head"].clone();
        let wip = refs["wip"].clone();
        assert_eq!(rev(&env, &format!("{wip}^")), Some(head.clone()));
        let again = env.agent(&["sync", "loop"]).ok();
        assert!(again.stderr.contains("nothing new"), "{again}");

        // The prompt reached the command on stdin.
        let prompt = env
            .git(&["show", &format!("{head}:prompt copy.txt")])
            .ok()
            .stdout;
        assert_eq!(prompt, "make the files");

        let json = env.json(&["review", "loop", "--json"]);
        assert_eq!(json["exit_code"], 0, "{json}");
        let files = json["files"].as_array().unwrap();
        assert_eq!(files.len(), 5, "{json}");
        assert!(
            files.iter().any(|f| f["path"] == "naïve file.txt"),
            "{json}"
        );

        let commit = env
            .agent(&["commit", "loop", "-m", "Finish the agent's edits"])
            .ok();
        assert_eq!(commit.stdout.trim(), "agent/loop");
        let log = env
            .git(&["log", "--format=%an <%ae>|%s", "agent/loop", "^main"])
            .ok()
            .stdout;
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            [
                "Test User <test@example.com>|Finish the agent's edits",
                "Test User <test@example.com>|agent: add files",
            ]
        );
        assert_eq!(
            rev(&env, "agent/loop^{tree}"),
            rev(&env, &format!("{wip}^{{tree}}"))
        );
        let again = env.agent(&["commit", "loop", "-m", "x"]).fails();
        assert!(again.stderr.contains("nothing new to commit"), "{again}");

        // Purge removes the task's refs and every object it had on the runtime.
        assert!(!objects_of(&env, "loop").is_empty());
        env.agent(&["purge", "--refs", "loop"]).ok();
        assert!(env.task_refs("loop").is_empty());
        assert_eq!(env.local_objects(), no_objects());

        let mut after = env.snapshot();
        let mut before = before;
        for s in [&mut before, &mut after] {
            s.remove("refs");
            s.remove("config");
        }
        assert_eq!(before, after, "the user's repository was touched");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the core loop took {:?}",
            started.elapsed()
        );
    }

    /// kill -9 at every step of a spawn: the same matrix as on Docker (see
    /// `recovery::spawn_crash_matrix`), here in seconds.
    #[test]
    fn a_spawn_killed_at_any_step_is_reported_and_recoverable() {
        crate::recovery::spawn_crash_matrix(&TestEnv::local());
    }

    /// Ctrl-C on `spawn --wait` exits 130 and the task keeps running: its processes are the
    /// container's, not the command's (the local runtime gives them a process group of their
    /// own, as an engine gives them a container).
    #[test]
    fn ctrl_c_on_spawn_wait_exits_130_and_the_task_runs_on() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        use std::process::Stdio;
        let env = TestEnv::local();
        let mut cmd = env.agent_command(&[
            "spawn",
            "--name",
            "int",
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            "sleep 300",
        ]);
        // A job in a terminal: its own process group, SIGINT not ignored.
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let st = env.agent(&["status", "int", "--json"]);
            if st.code == 0 && st.stdout.contains("\"status\": \"running\"") {
                break;
            }
            assert!(Instant::now() < deadline, "the task never ran:\n{st}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Ctrl-C reaches the terminal's whole foreground process group.
        // SAFETY: a signal to the child's process group.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGINT);
        }
        let status = child.wait().unwrap();
        let code = status.code().or(status.signal().map(|s| 128 + s)).unwrap();
        assert_eq!(code, 130, "{status:?}");
        assert_eq!(env.json(&["status", "int", "--json"])["status"], "running");
        let container = env.names_of("int").container;
        let rt = env.local_runtime();
        assert_eq!(
            block_on(rt.state(&container)).unwrap(),
            ContainerState::Running
        );
        env.agent(&["purge", "--refs", "int"]).ok();
        assert_eq!(
            block_on(rt.state(&container)).unwrap(),
            ContainerState::Missing
        );
        assert_eq!(env.local_objects(), no_objects());
    }

    /// kill -9 at every point of `commit` (see `promotion::commit_crash_matrix`).
    #[test]
    fn a_commit_killed_at_any_point_leaves_old_or_new_and_reruns() {
        crate::promotion::commit_crash_matrix(&TestEnv::local());
    }

    /// kill -9 at every point of a sync of a finished task (see
    /// `sync_races::sync_crash_matrix`; its two halves run in parallel here).
    #[test]
    fn a_killed_sync_of_a_finished_task_leaves_nothing_once_the_next_command_runs() {
        crate::sync_races::sync_crash_matrix(&TestEnv::local(), &[crate::sync_races::FINISHED]);
    }

    /// kill -9 at every point of a sync of a running task.
    #[test]
    fn a_killed_sync_of_a_running_task_leaves_nothing_once_the_next_command_runs() {
        crate::sync_races::sync_crash_matrix(&TestEnv::local(), &[crate::sync_races::RUNNING]);
    }

    /// kill -9 at every point of `purge` (see `purge::purge_crash_matrix`).
    #[test]
    fn a_killed_purge_completes_when_run_again() {
        crate::purge::purge_crash_matrix(&TestEnv::local());
    }

    /// kill -9 at every point of `restart` (see `runtime_changes::restart_crash_matrix`).
    #[test]
    fn a_restart_killed_at_any_point_is_completed_by_the_command_it_names() {
        let env = TestEnv::local();
        crate::runtime_changes::worker_task(&env, "ws");
        crate::runtime_changes::restart_crash_matrix(&env, "ws");
    }

    /// A `local-runtime` build still talks to Docker unless `GIT_AGENT_RUNTIME=local` asks
    /// for the local runtime: its directory alone, or another value, selects nothing.
    #[test]
    fn a_local_runtime_build_uses_it_only_when_asked() {
        let env = TestEnv::new();
        let dir = env.home.path().join("local-runtime");
        for runtime in [None, Some("docker"), Some("locally")] {
            let run = env.agent_with(&["image", "build", "--agent", "exec"], |c| {
                c.env("GIT_AGENT_LOCAL_RUNTIME_DIR", &dir)
                    .env("DOCKER_HOST", NO_ENGINE);
                if let Some(r) = runtime {
                    c.env("GIT_AGENT_RUNTIME", r);
                }
            });
            let run = run.fails();
            assert!(
                run.stderr.contains("cannot reach the container engine")
                    && run.stderr.contains(NO_ENGINE),
                "{runtime:?}: {run}"
            );
            assert!(
                !dir.exists(),
                "{runtime:?}: the local runtime was used:\n{run}"
            );
        }
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }
}
