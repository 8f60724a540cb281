//! Orchestration on the engine-less local runtime (`git_agent::runtime::local`): the core
//! loop, and kill -9 at every crash point of spawn, sync, commit and purge, with the same
//! recoverability the Docker tests demand. No engine is needed, so these run everywhere and in
//! seconds. Also the runtime contract, checked on the local runtime directly, and the rule
//! that only a `local-runtime` build can be asked for it.
//!
//! Everything but the last rule needs a binary built with `--features local-runtime`
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
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use git_agent::runtime::local::LocalRuntime;
    use git_agent::runtime::{
        ContainerState, EngineErrorKind, ObjectKind, OutputTooLarge, Runtime, SandboxSpec,
        engine_kind,
    };

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

    /// The commit points of a promotion, in the order they are reached.
    const COMMIT_POINTS: &[&str] = &[
        "commit.quarantine-written",
        "commit.objects-moved",
        "commit.before-refs",
        "commit.after-refs",
    ];

    /// kill -9 at every point of `commit`: the user's repository is untouched, the branch
    /// exists exactly when the point is after the refs, and `commit` again completes with
    /// the task's tree (or says there is nothing new).
    #[test]
    fn a_commit_killed_at_any_point_leaves_old_or_new_and_reruns() {
        let env = TestEnv::local();
        env.agent(&[
            "spawn",
            "--name",
            "tx",
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            "echo one > one && git add one && git commit -qm 'agent one'; echo dirty >> README.md",
        ])
        .ok();
        env.agent(&["sync", "tx"]).ok();
        env.agent(&["rm", "tx"]).ok();
        let old_state = env.task_refs("tx")["state"].clone();
        let wip = env.task_refs("tx")["wip"].clone();
        let wip_tree = rev(&env, &format!("{wip}^{{tree}}")).unwrap();
        for point in COMMIT_POINTS {
            env.git(&["update-ref", "refs/agent/tx/state", &old_state])
                .ok();
            env.git(&["update-ref", "-d", "refs/heads/agent/tx"]).ok();
            let before = env.user_snapshot();
            let msg = format!("work at {point}");
            env.agent_crash_at(point, &["commit", "tx", "-m", &msg]);
            assert_eq!(before, env.user_snapshot(), "{point}: user's repository");
            let applied = *point == "commit.after-refs";
            assert_eq!(
                rev(&env, "refs/heads/agent/tx").is_some(),
                applied,
                "{point}"
            );
            let again = env.agent(&["commit", "tx", "-m", &msg]);
            if applied {
                assert!(again.fails().stderr.contains("nothing new"), "{point}");
            } else {
                again.ok();
            }
            let tip = rev(&env, "refs/heads/agent/tx").unwrap();
            assert_eq!(
                rev(&env, &format!("{tip}^{{tree}}")),
                Some(wip_tree.clone())
            );
            env.git(&["fsck", "--no-progress", "--no-dangling"]).ok();
        }
    }

    /// kill -9 at every point of a sync of a finished task: refs old or new, never half; the
    /// reader container it left is removed by the next sync, which completes.
    #[test]
    fn a_killed_sync_leaves_nothing_once_the_next_sync_runs() {
        let env = TestEnv::local();
        env.agent(&[
            "spawn",
            "--name",
            "done",
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            "for i in 1 2 3; do echo $i > f$i; git add -A; git commit -qm c$i; done; echo wip > w",
        ])
        .ok();
        let user = env.user_snapshot();
        let reader = env.names_of("done").reader;
        let has_reader = || env.local_objects().0.contains(&reader);
        let scratch = env.repo.join(".git/git-agent/tmp/sync/done");
        for point in [
            "sync.after-reader",
            "sync.after-bundle",
            "sync.after-admit",
            "sync.after-refs",
        ] {
            for leaf in ["head", "wip"] {
                env.git(&["update-ref", "-d", &format!("refs/agent/done/{leaf}")])
                    .ok();
            }
            let before = env.task_refs("done");
            env.agent_crash_at(point, &["sync", "done"]);
            assert_eq!(env.user_snapshot(), user, "{point}");
            let after = env.task_refs("done");
            if point == "sync.after-refs" {
                assert!(after.contains_key("head"), "{point}: {after:?}");
            } else {
                assert_eq!(after, before, "{point} moved refs");
            }
            assert!(has_reader(), "{point}: no reader left");
            assert!(scratch.exists(), "{point}: no scratch left");
            let sync = env.agent(&["sync", "done"]);
            assert_eq!(sync.code, 0, "{point}: the next sync failed:\n{sync}");
            let head = env.task_refs("done")["head"].clone();
            assert_eq!(
                env.git(&["log", "--format=%s", "-1", &head]).stdout.trim(),
                "c3",
                "{point}"
            );
            assert!(!has_reader(), "{point}: the reader was left");
            assert!(!scratch.exists(), "{point}: temp files were left");
            assert_eq!(env.user_snapshot(), user, "{point}");
        }
    }

    /// A purge killed at any point leaves the user's repository alone, and running it again
    /// completes it with nothing left behind; `--undo` brings the refs back.
    #[test]
    fn a_killed_purge_completes_when_run_again() {
        let env = TestEnv::local();
        for (i, point) in ["purge.after-objects", "purge.before-refs"]
            .iter()
            .enumerate()
        {
            let name = format!("p{i}");
            env.finished_task(&name, "f.txt");
            let user = env.user_snapshot();
            env.agent_crash_at(point, &["purge", "--refs", &name]);
            assert_eq!(env.user_snapshot(), user, "{point}");
            let st = env.json(&["status", &name, "--json"]);
            assert_eq!(st["name"], name.as_str(), "{point}");
            env.agent(&["purge", "--refs", &name]).ok();
            assert!(env.task_refs(&name).is_empty(), "{point}");
            assert_eq!(env.local_objects(), no_objects(), "{point}");
            env.agent(&["purge", "--undo", &name]).ok();
            assert!(env.task_refs(&name).contains_key("head"), "{point}");
            assert_eq!(env.user_snapshot(), user, "{point}");
        }
    }

    // The runtime contract, on the local runtime itself.

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        root: std::path::PathBuf,
        rt: LocalRuntime,
        image: String,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            LocalRuntime::kill_all(&self.root);
        }
    }

    /// A local runtime with one image built from a context holding `sh` scripts only.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rt");
        let rt = LocalRuntime::at(root.clone()).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        let text = b"FROM scratch\n";
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "Dockerfile", &text[..])
            .unwrap();
        let context = tar.into_inner().unwrap();
        let mut said = String::new();
        let image = block_on(
            rt.build_image(context, "test:1", &HashMap::new(), &mut |t| {
                said.push_str(t)
            }),
        )
        .unwrap();
        assert!(said.contains("nothing is built"), "{said}");
        Fixture {
            _dir: dir,
            root,
            rt,
            image,
        }
    }

    fn spec(f: &Fixture, name: &str, cmd: &[&str]) -> SandboxSpec {
        SandboxSpec {
            name: name.into(),
            image: f.image.clone(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec!["GREETING=hello".into()],
            labels: HashMap::from([
                ("git-agent.task".to_string(), name.to_string()),
                ("git-agent.repo".to_string(), "r1".to_string()),
            ]),
            mounts: vec![git_agent::runtime::VolumeMount::new(
                format!("{name}-ws"),
                "/workspace",
            )],
            working_dir: "/workspace".into(),
            network: None,
            tty: false,
            hardening: git_agent::sandbox::task_hardening(
                &git_agent::sandbox::spawn::Limits {
                    pids: 64,
                    memory: 1 << 28,
                    nano_cpus: 1_000_000_000,
                    disk: 0,
                },
                false,
            ),
        }
    }

    fn words(cmd: &[&str]) -> Vec<String> {
        cmd.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn images_are_names_and_containers_are_records_with_processes() {
        let f = fixture();
        let rt = &f.rt;
        block_on(async {
            assert_eq!(rt.image_id("test:1").await.unwrap(), Some(f.image.clone()));
            assert_eq!(rt.image_id(&f.image).await.unwrap(), Some(f.image.clone()));
            assert_eq!(rt.image_id("other:1").await.unwrap(), None);
            assert_eq!(rt.state("nothing").await.unwrap(), ContainerState::Missing);

            // A container's command runs in the workspace with its environment; its output
            // is its log; it ends with its exit code.
            let s = spec(&f, "c1", &["sh", "-c", "echo $GREETING; pwd; exit 3"]);
            let id = rt.create_container(&s).await.unwrap();
            assert_eq!(rt.state(&id).await.unwrap(), ContainerState::Created);
            let taken = rt.create_container(&s).await.unwrap_err();
            assert_eq!(engine_kind(&taken), Some(EngineErrorKind::Conflict));
            rt.start(&id).await.unwrap();
            assert_eq!(rt.wait("c1").await.unwrap(), 3);
            assert_eq!(rt.state(&id).await.unwrap(), ContainerState::Exited(3));
            let mut log = Vec::new();
            rt.logs(&id, false, None, &mut log).await.unwrap();
            let log = String::from_utf8(log).unwrap();
            let ws = f.root.join("volumes/c1-ws/data");
            assert_eq!(log, format!("hello\n{}\n", ws.display()));
            let mut tail = Vec::new();
            rt.logs(&id, false, Some(1), &mut tail).await.unwrap();
            assert_eq!(
                String::from_utf8(tail).unwrap(),
                format!("{}\n", ws.display())
            );

            // Exec needs a running container.
            let mut out = Vec::new();
            let e = rt
                .exec(&id, &words(&["true"]), None::<&[u8]>, &mut out, 10)
                .await
                .unwrap_err();
            assert_eq!(engine_kind(&e), Some(EngineErrorKind::Conflict));

            // A running container: stdin in, stdout out, stderr kept, exit codes back, and
            // container paths mapped to its directories.
            let s = spec(&f, "c2", &["sleep", "300"]);
            let id = rt.create_container(&s).await.unwrap();
            rt.start(&id).await.unwrap();
            assert_eq!(rt.state("c2").await.unwrap(), ContainerState::Running);
            let mut out = Vec::new();
            let run = rt
                .exec_env(
                    "c2",
                    &words(&[
                        "sh",
                        "-c",
                        "cat > /workspace/in; tr a-z A-Z < /workspace/in; echo oops >&2; exit 7",
                    ]),
                    &["EXTRA=1".to_string()],
                    Some(&b"some input"[..]),
                    &mut out,
                    1 << 20,
                )
                .await
                .unwrap();
            assert_eq!(run.exit_code, 7);
            assert_eq!(out, b"SOME INPUT");
            assert_eq!(run.stdout_len, 10);
            assert_eq!(run.stderr, b"oops\n");
            assert_eq!(
                std::fs::read(f.root.join("volumes/c2-ws/data/in")).unwrap(),
                b"some input"
            );
            // Output beyond the limit is an error of its own.
            let mut out = Vec::new();
            let e = rt
                .exec(
                    "c2",
                    &words(&["sh", "-c", "yes | head -c 100000"]),
                    None::<&[u8]>,
                    &mut out,
                    1000,
                )
                .await
                .unwrap_err();
            assert!(e.downcast_ref::<OutputTooLarge>().is_some(), "{e:#}");
            // A command that is not there: 127, as an engine says.
            let run = rt
                .exec(
                    "c2",
                    &words(&["/nonexistent/cmd"]),
                    None::<&[u8]>,
                    &mut out,
                    10,
                )
                .await
                .unwrap();
            assert_eq!(run.exit_code, 127);

            // Stop ends the whole container; the volume it uses cannot go while it exists.
            rt.stop("c2", 5).await.unwrap();
            assert!(matches!(
                rt.state("c2").await.unwrap(),
                ContainerState::Exited(143 | 137)
            ));
            let e = rt.remove_volume("c2-ws").await.unwrap_err();
            assert_eq!(engine_kind(&e), Some(EngineErrorKind::Conflict));
            rt.remove_container("c2").await.unwrap();
            rt.remove_container("c2").await.unwrap();
            rt.remove_volume("c2-ws").await.unwrap();
            assert_eq!(
                rt.labels_of(ObjectKind::Volume, "c2-ws").await.unwrap(),
                None
            );
        });
    }

    #[test]
    fn objects_are_found_by_label_and_name() {
        let f = fixture();
        let rt = &f.rt;
        block_on(async {
            let labels = HashMap::from([
                ("git-agent.task".to_string(), "t".to_string()),
                ("git-agent.repo".to_string(), "r1".to_string()),
            ]);
            rt.create_network("net-t", &labels, true, None)
                .await
                .unwrap();
            let e = rt
                .create_network("net-t", &labels, true, None)
                .await
                .unwrap_err();
            assert_eq!(engine_kind(&e), Some(EngineErrorKind::Conflict));
            assert!(rt.network_exists("net-t").await.unwrap());
            rt.create_volume("vol-t", &labels).await.unwrap();
            let mut s = spec(&f, "ctr-t", &["sleep", "300"]);
            s.network = Some("net-t".into());
            s.labels = labels.clone();
            let id = rt.create_container(&s).await.unwrap();
            rt.start(&id).await.unwrap();
            // A container on an unknown network is refused.
            let mut bad = spec(&f, "ctr-bad", &["true"]);
            bad.network = Some("no-such-net".into());
            let e = rt.create_container(&bad).await.unwrap_err();
            assert_eq!(engine_kind(&e), Some(EngineErrorKind::NotFound));

            assert_eq!(
                rt.labels_of(ObjectKind::Container, "ctr-t").await.unwrap(),
                Some(labels.clone())
            );
            assert_eq!(
                rt.labels_of(ObjectKind::Container, &id).await.unwrap(),
                Some(labels.clone())
            );
            assert_eq!(
                rt.labels_of(ObjectKind::Network, "net-t").await.unwrap(),
                Some(labels.clone())
            );
            let owned = rt
                .containers_with(&[("git-agent.task", "t")])
                .await
                .unwrap();
            assert_eq!(owned.len(), 1);
            assert_eq!(owned[0].task, "t");
            assert_eq!(owned[0].state, ContainerState::Running);
            let inv = rt.inventory(&[("git-agent.repo", "r1")]).await.unwrap();
            assert_eq!(inv.container("ctr-t"), ContainerState::Running);
            assert_eq!(inv.container(&id), ContainerState::Running);
            assert!(inv.networks.contains("net-t") && inv.volumes.contains("vol-t"));
            let listed = rt
                .list_objects(ObjectKind::Volume, "vol-", None)
                .await
                .unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].name, "vol-t");

            let e = rt.remove_network("net-t").await.unwrap_err();
            assert_eq!(engine_kind(&e), Some(EngineErrorKind::Conflict));
            let stopped = rt
                .panic_stop_all(Some(("git-agent.repo", "r1")))
                .await
                .unwrap();
            assert_eq!(stopped, vec!["ctr-t".to_string()]);
            assert!(matches!(
                rt.state("ctr-t").await.unwrap(),
                ContainerState::Exited(_)
            ));
            rt.remove_container("ctr-t").await.unwrap();
            rt.remove_network("net-t").await.unwrap();
            rt.remove_volume("vol-t").await.unwrap();
            let inv = rt.inventory(&[("git-agent.repo", "r1")]).await.unwrap();
            assert!(inv.containers.is_empty() && inv.networks.is_empty());
        });
    }
}
