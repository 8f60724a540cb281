//! Errors against a real engine and real git: typed engine failures (unreachable, 409s on
//! concurrent creation of one name), ref updates that fail for a reason other than a lost
//! race (reported at once), and Ctrl-C (exit 130, nothing half-done).
//!
//! Address-pool exhaustion is not made here: it would take every network range of the
//! shared engine from every other test. The classifier is unit-tested on the engines' own
//! answers instead (`runtime::docker::tests`).

use std::io::BufRead;
use std::time::{Duration, Instant};

use git_agent::runtime::docker::DockerRuntime;
use git_agent::runtime::{EngineErrorKind, Runtime, StepSpec, engine_kind};

use crate::common::{TestEnv, base_image};
use crate::require_docker;
use crate::servers::docker;

/// No line of an error report ends in a colon with nothing after it, and none is empty.
#[track_caller]
fn assert_no_empty_cause(stderr: &str) {
    for line in stderr.lines() {
        let l = line.trim_end();
        assert!(!l.ends_with(':'), "dangling colon in {line:?}:\n{stderr}");
        assert!(
            !matches!(l, "Error:" | "Caused by:" | "Hint:"),
            "empty line in:\n{stderr}"
        );
    }
}

#[test]
fn an_unreachable_engine_is_said_with_its_cause_and_how_to_fix_it() {
    let env = TestEnv::new();
    let host = "tcp://127.0.0.1:1";
    let run = env.agent_with(&["image", "build", "--agent", "exec"], |c| {
        c.env("DOCKER_HOST", host);
    });
    let run = run.fails();
    assert!(
        run.stderr.contains("cannot reach the container engine"),
        "the kind is said:\n{run}"
    );
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "the cause under the client's wrapper is shown:\n{run}"
    );
    assert!(
        run.stderr.contains(&format!("DOCKER_HOST={host}")) && run.stderr.contains("doctor"),
        "the hint says where and what to run:\n{run}"
    );
    assert_no_empty_cause(&run.stderr);
}

/// Creations of a name that is taken, through the engine: exactly one wins, the other gets
/// a typed conflict saying what happened (never the engine's raw 409), and a network name is
/// never held by two networks (engines before API 1.44 allow that, and every later request
/// by that name then fails as ambiguous). Concurrent removals both succeed.
#[test]
fn concurrent_creations_of_one_name_conflict_cleanly() {
    require_docker!();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = DockerRuntime::connect().await.unwrap();
        let tag = format!("ga-errtest-{}", std::process::id());
        let labels =
            std::collections::HashMap::from([("git-agent.errtest".to_string(), tag.clone())]);
        // A network name already taken: the second creation is a typed conflict and the
        // name keeps one network (engines before API 1.44 made a second one).
        let net = format!("{tag}-net");
        let first = engine
            .create_network(&net, &labels, true, None)
            .await
            .unwrap();
        let lost = engine
            .create_network(&net, &labels, true, None)
            .await
            .unwrap_err();
        let same: Vec<_> = docker(&["network", "ls", "-q", "--filter", &format!("name=^{net}$")])
            .stdout
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(same.len(), 1, "one network of the name: {same:?}");
        assert!(first.starts_with(&same[0]), "{same:?} {first}");
        assert_eq!(
            engine_kind(&lost),
            Some(EngineErrorKind::Conflict),
            "{lost:#}"
        );
        assert!(
            git_agent::error::find_hint(&lost).is_some(),
            "a conflict says what to do: {lost:#}"
        );
        engine.remove_network(&net).await.unwrap();
        assert!(!engine.network_exists(&net).await.unwrap());

        let net = format!("{tag}-steps");
        engine
            .create_network(&net, &labels, true, None)
            .await
            .unwrap();
        let spec = StepSpec {
            name: format!("{tag}-step"),
            image: base_image(),
            labels: labels.clone(),
            network: net.clone(),
            hosts: vec![],
            address: None,
            hardening: git_agent::image::project::step_hardening(
                &git_agent::sandbox::spawn::Limits {
                    pids: 16,
                    memory: 64 << 20,
                    nano_cpus: 500_000_000,
                    disk: 0,
                },
            ),
        };
        let (a, b) = tokio::join!(
            engine.create_step_container(&spec),
            engine.create_step_container(&spec)
        );
        let lost = match (a, b) {
            (Ok(_), Err(l)) | (Err(l), Ok(_)) => l,
            other => panic!("exactly one creation wins: {other:?}"),
        };
        assert_eq!(
            engine_kind(&lost),
            Some(EngineErrorKind::Conflict),
            "{lost:#}"
        );
        let shown = format!("{lost:#}");
        assert!(shown.contains("already exists"), "{shown}");
        // Removing the same container twice at once: both succeed (one waits for the
        // other's removal to finish), and a create of the name right after works.
        let (a, b) = tokio::join!(
            engine.remove_container(&spec.name),
            engine.remove_container(&spec.name)
        );
        a.unwrap();
        b.unwrap();
        let id = engine.create_step_container(&spec).await.unwrap();
        // Running a command in a container that is not running: said so, typed.
        let err = engine
            .exec_step(&id, &["true".into()], &[], "/", &mut |_| {})
            .await
            .unwrap_err();
        assert_eq!(
            engine_kind(&err),
            Some(EngineErrorKind::Conflict),
            "{err:#}"
        );
        assert!(format!("{err:#}").contains("is not running"), "{err:#}");
        // A network a running container is attached to: typed, said as such, with a hint.
        engine.start(&id).await.unwrap();
        let err = engine.remove_network(&net).await.unwrap_err();
        assert_eq!(
            engine_kind(&err),
            Some(EngineErrorKind::Conflict),
            "{err:#}"
        );
        assert!(format!("{err}").contains("still uses it"), "{err:#}");
        assert!(git_agent::error::find_hint(&err).is_some());
        engine.remove_container(&spec.name).await.unwrap();
        engine.remove_network(&net).await.unwrap();
    });
}

/// A ref update that fails for a reason other than a lost race is reported at once with
/// git's reason (it used to be retried 50 times, then called "changed too often").
#[test]
fn a_ref_update_git_refuses_fails_at_once_with_gits_reason() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn", "--name", "refs", "--wait", "-m", "x", "--", "sh", "-c", "true",
    ])
    .ok();
    let refs_before = env.task_refs("refs");
    let user_before = env.user_snapshot();
    let dir = env.repo.join(".git/refs/agent/refs");
    let root = unsafe { libc::geteuid() } == 0;
    use std::os::unix::fs::PermissionsExt;
    // Root ignores file modes: run the command as an unprivileged user that owns the
    // repository, with the task's refs directory read-only to it.
    if root {
        let owner = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(env.home.path())
            .status()
            .unwrap();
        assert!(owner.success());
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let started = Instant::now();
    let run = if root {
        let cmd = env.agent_command(&["allow", "refs", "example.org"]);
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = cmd
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
            .collect();
        let mut wrapped = std::process::Command::new("setpriv");
        wrapped
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(program)
            .args(args)
            .env_clear()
            .envs(envs)
            .current_dir(&env.repo)
            .stdin(std::process::Stdio::null());
        let out = wrapped.output().unwrap();
        crate::common::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    } else {
        let out = env
            .agent_command(&["allow", "refs", "example.org"])
            .output()
            .unwrap();
        crate::common::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let took = started.elapsed();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if root {
        std::process::Command::new("chown")
            .args(["-R", "0:0"])
            .arg(env.home.path())
            .status()
            .unwrap();
    }
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("Permission denied"),
        "git's reason:\n{run}"
    );
    assert!(!run.stderr.contains("too often"), "not retried:\n{run}");
    assert_no_empty_cause(&run.stderr);
    assert!(
        took < Duration::from_millis(1000),
        "fails at once, took {took:?}:\n{run}"
    );
    eprintln!("refused ref update reported in {took:?}");
    assert_eq!(refs_before, env.task_refs("refs"), "task refs unchanged");
    assert_eq!(
        user_before,
        env.user_snapshot(),
        "user's repository unchanged"
    );
    // Once git may write again, the same command works.
    env.agent(&["allow", "refs", "example.org"]).ok();

    env.agent(&["purge", "--refs", "refs"]).ok();
}

/// Ctrl-C during an image build (the engine's builder running a slow trusted layer): exit
/// 130 at once, and no image under the tag.
#[test]
fn ctrl_c_during_an_image_build_exits_130_and_tags_nothing() {
    require_docker!();
    let env = TestEnv::new();
    let stacks = env.home.path().join(".config/git-agent/dockerfiles/stacks");
    std::fs::create_dir_all(&stacks).unwrap();
    std::fs::write(
        stacks.join("slowerr.dockerfile"),
        format!("RUN echo slow-layer-{} && sleep 120\n", std::process::id()),
    )
    .unwrap();
    let before = env.user_snapshot();
    let mut child = env
        .agent_command(&[
            "image",
            "build",
            "--agent",
            "exec",
            "--stack",
            "slowerr",
            "--force",
            "--verbose",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            all.push_str(&line);
            all.push('\n');
            if line.contains("slow-layer-") && !line.contains("RUN") {
                tx.send(all.clone()).ok();
            }
        }
        tx.send(all).ok();
    });
    let seen = rx
        .recv_timeout(Duration::from_secs(300))
        .expect("the slow layer started");
    let tag = seen
        .lines()
        .find_map(|l| l.strip_prefix("git-agent: building image "))
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| panic!("tag in {seen}"));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = Instant::now();
    let status = child.wait().unwrap();
    let rest = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped at once, not after the layer: {:?}",
        started.elapsed()
    );
    eprintln!("image build interrupted in {:?}", started.elapsed());
    assert_eq!(
        docker(&["image", "inspect", &tag]).code,
        1,
        "no image {tag}"
    );
    assert_eq!(before, env.user_snapshot());
}

/// Ctrl-C while `auth` waits for the value (a pipe that stays open): exit 130 at once, and
/// nothing stored.
#[test]
fn ctrl_c_while_auth_waits_exits_130_and_stores_nothing() {
    let env = TestEnv::new();
    let mut child = env
        .agent_command(&["auth", "claude"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    use std::io::Write;
    stdin.write_all(b"sk-half-typed").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("auth kept waiting after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert_eq!(status.code(), Some(130));
    let store = env.home.path().join(".config/git-agent/credentials.toml");
    assert!(!store.exists(), "nothing stored");
}
