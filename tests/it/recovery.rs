//! Recovery is one documented command: spawns killed at every step, leftovers of every kind,
//! engine failures during a spawn, Ctrl-C on `spawn --wait` (issue 9, "What must work" 5).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TestEnv;
use crate::require_docker;

/// Every crash point of a spawn, in the order a spawn reaches them.
const SPAWN_POINTS: &[&str] = &[
    "spawn.after-refs",
    "spawn.after-network",
    "spawn.after-volume",
    "spawn.after-container",
    "spawn.after-start",
    "spawn.after-deliver",
    "spawn.after-gateway",
    "spawn.after-go",
    "spawn.after-running",
];

fn git_of(env: &TestEnv) -> git_agent::git::Git {
    git_agent::git::Git::discover(&env.repo).unwrap()
}

/// Runtime objects of `task` (by label) as one list of names.
fn objects_of(env: &TestEnv, task: &str) -> Vec<String> {
    let names = env.names_of(task);
    let all = names.all();
    let (c, v, n) = env.runtime_objects();
    c.into_iter()
        .chain(v)
        .chain(n)
        .filter(|o| all.iter().any(|(_, name)| name == o))
        .collect()
}

fn docker(args: &[&str]) -> crate::common::Run {
    let out = Command::new("docker").args(args).output().unwrap();
    crate::common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn exists(kind: &str, name: &str) -> bool {
    docker(&[kind, "inspect", name]).code == 0
}

/// A pid that belonged to a process that has ended.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// kill -9 at every step of a spawn: the user's repository is unchanged, `status` and `list`
/// say the spawn was interrupted (never `creating` forever), `doctor` names the task and the
/// fix, `doctor --fix` then `purge --refs` complete, and nothing is left by label.
#[test]
fn a_spawn_killed_at_any_step_is_reported_and_recoverable() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    spawn_crash_matrix(&env);
}

/// The body of [`a_spawn_killed_at_any_step_is_reported_and_recoverable`], for any runtime
/// (`orchestration.rs` runs it on the engine-less one).
pub fn spawn_crash_matrix(env: &TestEnv) {
    for src in git_agent::crash::POINTS
        .iter()
        .filter(|p| p.starts_with("spawn."))
    {
        assert!(SPAWN_POINTS.contains(src), "{src} is not tested");
    }
    let before = env.user_snapshot();
    let task = |i: usize| format!("k{i}");
    let finished = |point: &str| point == "spawn.after-running";
    for (i, point) in SPAWN_POINTS.iter().enumerate() {
        env.agent_crash_at(
            point,
            &["spawn", "--name", &task(i), "-m", "x", "--", "sleep", "300"],
        );
        assert_eq!(
            env.user_snapshot(),
            before,
            "{point} changed the repository"
        );
        assert!(
            env.task_refs(&task(i)).contains_key("state"),
            "{point}: no task refs"
        );
    }
    // doctor sees each dead spawn before anything else has looked at it.
    let doctor = env.agent(&["doctor"]);
    assert_eq!(doctor.code, 1, "{doctor}");
    for (i, point) in SPAWN_POINTS.iter().enumerate() {
        let t = task(i);
        let report = doctor
            .stdout
            .lines()
            .skip_while(|l| !(l.starts_with("FAIL") && l.contains(&format!("task {t}'s"))))
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        if finished(point) {
            assert!(report.is_empty(), "{point}:\n{doctor}");
            continue;
        }
        assert!(report.contains("spawn died"), "{point}:\n{doctor}");
        assert!(
            report.contains("git agent doctor --fix"),
            "{point}:\n{doctor}"
        );
        assert!(
            report.contains(&format!("git agent purge --refs {t}")),
            "{point}:\n{doctor}"
        );
    }
    // list and status tell the truth: interrupted, not `creating` forever (list first:
    // nothing else has looked at the records yet).
    let list = env.json(&["list", "--json"])["tasks"].clone();
    for (i, point) in SPAWN_POINTS.iter().enumerate() {
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["task"] == task(i).as_str())
            .unwrap_or_else(|| panic!("{point}: not listed: {list}"));
        let want = if finished(point) { "running" } else { "failed" };
        assert_eq!(row["status"], want, "{point}");
    }
    for (i, point) in SPAWN_POINTS.iter().enumerate() {
        let st = env.json(&["status", &task(i), "--json"]);
        if finished(point) {
            assert_eq!(st["status"], "running", "{point}: {st}");
        } else {
            assert_eq!(st["status"], "failed", "{point}: {st}");
            assert_eq!(st["reason"], "spawn interrupted", "{point}: {st}");
        }
    }
    // list and status recorded nothing: doctor still finds every dead spawn as it was, and
    // their containers keep running until doctor --fix stops them.
    let again = env.agent(&["doctor"]);
    assert_eq!(again.code, 1, "{again}");
    assert_eq!(
        again
            .stdout
            .lines()
            .filter(|l| l.contains("spawn died"))
            .count(),
        doctor
            .stdout
            .lines()
            .filter(|l| l.contains("spawn died"))
            .count(),
        "{again}"
    );
    assert!(!again.stdout.contains("spawn was interrupted"), "{again}");
    let fixed = env.agent(&["doctor", "--fix"]);
    assert_eq!(fixed.code, 0, "{fixed}");
    assert_eq!(env.user_snapshot(), before);
    for (i, point) in SPAWN_POINTS.iter().enumerate() {
        let t = task(i);
        if finished(point) {
            continue;
        }
        // Nothing of a dead spawn runs any more; its workspace (if any) waits for purge.
        let names = env.names_of(&t);
        let left = objects_of(env, &t);
        assert!(
            left.iter()
                .all(|o| [&names.volume, &names.home_volume, &names.state_volume].contains(&o)),
            "{point}: doctor --fix left {left:?}"
        );
        assert!(
            fixed
                .stdout
                .contains(&format!("`git agent purge --refs {t}` removes it")),
            "{point}:\n{fixed}"
        );
    }
    // The documented recovery completes and leaves nothing behind.
    for (i, point) in SPAWN_POINTS.iter().enumerate() {
        let t = task(i);
        env.agent(&["purge", "--refs", &t]).ok();
        assert!(env.task_refs(&t).is_empty(), "{point}");
        assert_eq!(objects_of(env, &t), Vec::<String>::new(), "{point}");
    }
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
}

/// 25 spawns killed right after writing their refs: `doctor` names all 25 and exits 1,
/// `doctor --fix` records each as failed and exits 0, and every one can be purged. A spawn
/// still in progress (its lease held) is not reported and keeps its record.
#[test]
fn doctor_fixes_many_dead_spawns_and_leaves_a_live_one_alone() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    let dead: Vec<String> = (0..25).map(|i| format!("dead{i:02}")).collect();
    for task in dead.iter().map(String::as_str).chain(["live"]) {
        env.agent_crash_at(
            "spawn.after-refs",
            &["spawn", "--name", task, "-m", "x", "--", "true"],
        );
    }
    // The test plays the spawn still setting up `live`.
    let git = git_of(&env);
    let lease = git_agent::task::lock::Lease::take(&git, "live").unwrap();

    let doctor = env.agent(&["doctor"]);
    assert_eq!(doctor.code, 1, "{doctor}");
    for task in &dead {
        assert!(
            doctor
                .stdout
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains(&format!("task {task}'s spawn died"))),
            "{task} not reported:\n{doctor}"
        );
    }
    assert!(!doctor.stdout.contains("live"), "{doctor}");
    let fix = env.agent(&["doctor", "--json", "--fix"]);
    let json: serde_json::Value = serde_json::from_str(&fix.stdout).expect("doctor --json");
    let failed: Vec<_> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "FAIL")
        .collect();
    assert!(failed.is_empty() && json["ok"] == true, "{failed:#?}");
    assert_eq!(fix.code, 0, "{}", fix.stderr);
    let fixed = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "fixed" && c["check"] == "spawn")
        .count();
    assert_eq!(fixed, 25, "{json}");
    env.agent(&["doctor"]).ok();

    for task in &dead {
        let st = env.json(&["status", task, "--json"]);
        assert_eq!(st["status"], "failed", "{st}");
        assert_eq!(st["reason"], "spawn interrupted", "{st}");
    }
    // The live spawn's record is not touched, by doctor or by status.
    let st = env.json(&["status", "live", "--json"]);
    assert_eq!(st["status"], "creating", "{st}");
    drop(lease);
    let st = env.json(&["status", "live", "--json"]);
    assert_eq!(st["status"], "failed", "{st}");

    for task in dead.iter().map(String::as_str).chain(["live"]) {
        env.agent(&["purge", "--refs", task]).ok();
    }
    assert!(env.git(&["for-each-ref", "refs/agent/"]).stdout.is_empty());
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
}

/// Leftovers of every kind are found with their fix and removed by `doctor --fix`; objects
/// that are not provably this repository's are neither reported nor touched, nor is a
/// reader container while a command holds its task.
#[test]
fn doctor_finds_and_removes_leftovers_and_nothing_else() {
    require_docker!();
    let env = TestEnv::new();
    let id = env.repo_id();
    let image = crate::common::base_image();
    let repo_label = format!("git-agent.repo={id}");
    // A task with refs, for its reader: a spawn killed once it ran.
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    env.agent_crash_at(
        "spawn.after-running",
        &["spawn", "--name", "owner", "-m", "x", "--", "sleep", "300"],
    );
    let reader = env.names_of("owner").reader;
    docker(&[
        "create",
        "--name",
        &reader,
        "--label",
        &repo_label,
        "--label",
        "git-agent.task=owner",
        &image,
        "sleep",
        "300",
    ])
    .ok_docker();
    // Orphans: a task without refs left a volume and a network.
    let ghost = env.names_of("ghost");
    for kind in ["volume", "network"] {
        let name = if kind == "volume" {
            &ghost.volume
        } else {
            &ghost.network
        };
        docker(&[
            kind,
            "create",
            "--label",
            &repo_label,
            "--label",
            "git-agent.task=ghost",
            name,
        ])
        .ok_docker();
    }
    // Named like ours but without labels: left half-made.
    let half = env.names_of("half").volume;
    docker(&["volume", "create", &half]).ok_docker();
    // Not provably ours: another repository's labels, or a name outside the pattern.
    let foreign = env.names_of("foreign").volume;
    docker(&[
        "volume",
        "create",
        "--label",
        "git-agent.repo=ffffffff",
        &foreign,
    ])
    .ok_docker();
    let other = format!("git-agent-{id}-not-ours");
    docker(&["volume", "create", &other]).ok_docker();
    // A build whose builder died, for this repository.
    let pid = dead_pid();
    let build_net = format!("git-agent-build.net.feedbeef-{pid}");
    let build_step = format!("git-agent-build.task.feedbeef-{pid}");
    let repo_path = format!("git-agent.repo-path={}", env.repo.display());
    docker(&[
        "network",
        "create",
        "--internal",
        "--label",
        "git-agent.repo=build",
        "--label",
        &repo_path,
        &build_net,
    ])
    .ok_docker();
    docker(&[
        "create",
        "--name",
        &build_step,
        "--label",
        "git-agent.build=x:feedbeef",
        "--label",
        "git-agent.repo=build",
        "--label",
        &repo_path,
        &image,
        "true",
    ])
    .ok_docker();
    // The probe network of a doctor that was killed in this repository.
    let probe = format!("git-agent-doctor-{}", dead_pid());
    docker(&[
        "network",
        "create",
        "--internal",
        "--label",
        "git-agent.repo=doctor",
        "--label",
        &repo_path,
        &probe,
    ])
    .ok_docker();
    // Those of another repository's dead doctor and dead build, or unlabelled ones: that
    // repository's doctor may be reporting or removing them right now.
    let elsewhere = "git-agent.repo-path=/elsewhere/.git";
    let foreign_probe = format!("git-agent-doctor-{}", dead_pid());
    let foreign_step = format!("git-agent-build.task.feedbeef-{}", dead_pid());
    let bare_probe = format!("git-agent-doctor-{}", dead_pid());
    for (name, labels) in [
        (&foreign_probe, vec!["git-agent.repo=doctor", elsewhere]),
        (&bare_probe, vec![]),
    ] {
        let mut args = vec!["network", "create", "--internal"];
        for l in labels {
            args.extend(["--label", l]);
        }
        args.push(name);
        docker(&args).ok_docker();
    }
    docker(&[
        "create",
        "--name",
        &foreign_step,
        "--label",
        "git-agent.build=x:feedbeef",
        &image,
        "true",
    ])
    .ok_docker();
    // Sync scratch files of a task that no longer exists.
    let git = git_of(&env);
    let scratch = git_agent::sandbox::sync::scratch_dir(&git, "gone");
    std::fs::create_dir_all(&scratch).unwrap();
    std::fs::write(scratch.join("bundle"), "x").unwrap();

    let doctor = env.agent(&["doctor"]);
    assert_eq!(doctor.code, 1, "{doctor}");
    for (check, what) in [
        ("sync", reader.as_str()),
        ("orphan", ghost.volume.as_str()),
        ("orphan", ghost.network.as_str()),
        ("leftover", half.as_str()),
        ("build", build_net.as_str()),
        ("build", build_step.as_str()),
        ("sync", "gone"),
        ("leftover", probe.as_str()),
    ] {
        assert!(
            doctor
                .stdout
                .lines()
                .any(|l| l.starts_with("FAIL") && l.contains(check) && l.contains(what)),
            "{what} not reported as {check}:\n{doctor}"
        );
    }
    for not_ours in [&foreign, &other, &foreign_probe, &foreign_step, &bare_probe] {
        assert!(!doctor.stdout.contains(not_ours.as_str()), "{doctor}");
    }
    assert_eq!(doctor.stdout.matches("fix: ").count(), 6, "{doctor}");

    // While a command holds the task, its reader is in use: not reported, not removed.
    let lock = git_agent::task::lock::TaskLock::try_acquire(&git, "owner", "sync")
        .unwrap()
        .unwrap();
    let fix = env.agent(&["doctor", "--fix"]);
    assert_eq!(fix.code, 0, "{fix}");
    assert!(exists("container", &reader), "{fix}");
    drop(lock);
    env.agent(&["doctor", "--fix"]).ok();
    assert!(!exists("container", &reader));
    for (kind, name) in [
        ("volume", &ghost.volume),
        ("network", &ghost.network),
        ("volume", &half),
        ("network", &build_net),
        ("container", &build_step),
        ("network", &probe),
    ] {
        assert!(!exists(kind, name), "{kind} {name} is still there");
    }
    assert!(!scratch.exists());
    assert!(exists("volume", &foreign) && exists("volume", &other));
    for net in [&foreign_probe, &bare_probe] {
        assert!(exists("network", net), "{net} was removed");
    }
    assert!(exists("container", &foreign_step));
    docker(&["network", "rm", &foreign_probe, &bare_probe]);
    docker(&["rm", "-f", &foreign_step]);
    let again = env.agent(&["doctor"]).ok();
    assert!(
        again.stdout.contains("records and runtime agree"),
        "{again}"
    );
    // The task itself was never touched.
    assert_eq!(
        env.json(&["status", "owner", "--json"])["status"],
        "running"
    );
    docker(&["volume", "rm", "-f", &foreign, &other]);
    env.agent(&["purge", "--refs", "owner"]).ok();
}

/// A spawn the engine refuses midway (here: a memory limit it will not take) keeps nothing
/// and says what to run. One whose object names are taken by objects that are not the
/// task's (a network, a volume holding files: the engine would hand both over) refuses
/// before creating anything and leaves them alone; `doctor --fix` clears the way and the
/// next spawn works.
#[test]
fn an_engine_failure_during_spawn_keeps_nothing_and_names_the_fix() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    let names = env.names_of("clash");

    env.git(&["config", "agent.memory", "1m"]).ok();
    let before = env.user_snapshot();
    let run = env
        .agent(&["spawn", "--name", "clash", "-m", "x", "--", "true"])
        .fails();
    assert!(run.stderr.contains("git agent doctor"), "{run}");
    assert_eq!(env.user_snapshot(), before);
    assert!(env.task_refs("clash").is_empty(), "{run}");
    assert_eq!(objects_of(&env, "clash"), Vec::<String>::new(), "{run}");
    env.git(&["config", "--unset", "agent.memory"]).ok();

    docker(&["network", "create", "--internal", &names.network]).ok_docker();
    docker(&["volume", "create", &names.volume]).ok_docker();
    docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/v", names.volume),
        &crate::common::base_image(),
        "sh",
        "-c",
        "echo planted > /v/file",
    ])
    .ok_docker();
    let before = env.user_snapshot();
    let run = env
        .agent(&["spawn", "--name", "clash", "-m", "x", "--", "true"])
        .fails();
    assert!(run.stderr.contains("git agent doctor --fix"), "{run}");
    assert_eq!(env.user_snapshot(), before);
    assert!(env.task_refs("clash").is_empty(), "{run}");
    assert_eq!(objects_of(&env, "clash"), Vec::<String>::new(), "{run}");
    assert!(exists("network", &names.network) && exists("volume", &names.volume));
    let doctor = env.agent(&["doctor"]);
    assert_eq!(doctor.code, 1, "{doctor}");
    for name in [&names.network, &names.volume] {
        assert!(
            doctor.stdout.lines().any(|l| l.starts_with("FAIL")
                && l.contains("leftover")
                && l.contains(name.as_str())),
            "{doctor}"
        );
    }
    env.agent(&["doctor", "--fix"]).ok();
    assert!(!exists("network", &names.network) && !exists("volume", &names.volume));
    env.agent(&[
        "spawn",
        "--name",
        "clash",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "! test -e file",
    ])
    .ok();
    env.agent(&["purge", "--refs", "clash"]).ok();
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
}

/// Ctrl-C on `spawn --wait` exits 130, whether the binary gets the signal alone or, run as
/// `git agent`, with git in the terminal's process group; the task keeps running.
#[test]
fn ctrl_c_on_spawn_wait_exits_130() {
    require_docker!();
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let env = TestEnv::new();
    env.agent(&["image", "build", "--agent", "exec"]).ok();
    let script = "echo started >&2; sleep 300";
    for (task, through_git) in [("int-direct", false), ("int-git", true)] {
        let args = [
            "spawn", "--name", task, "--wait", "-m", "x", "--", "sh", "-c", script,
        ];
        let direct = env.agent_command(&args);
        let mut cmd = if through_git {
            // The same environment, run as `git agent ...`.
            let mut g = Command::new("git");
            g.env_clear();
            for (k, v) in direct.get_envs() {
                if let Some(v) = v {
                    g.env(k, v);
                }
            }
            g.current_dir(&env.repo).arg("agent").args(args);
            g
        } else {
            direct
        };
        // A job in a terminal: its own process group, SIGINT not ignored (whatever this
        // test process inherited).
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut seen = Vec::new();
            let _ = stderr.read_to_end(&mut seen);
            String::from_utf8_lossy(&seen).into_owned()
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = env.agent(&["status", task, "--json"]);
            if st.code == 0 && st.stdout.contains("\"status\": \"running\"") {
                break;
            }
            assert!(Instant::now() < deadline, "{task} never ran:\n{st}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // Ctrl-C reaches the terminal's whole foreground process group.
        unsafe {
            libc::kill(-(child.id() as i32), libc::SIGINT);
        }
        let status = child.wait().unwrap();
        let err = reader.join().unwrap();
        let code = status.code().or(status.signal().map(|s| 128 + s)).unwrap();
        assert_eq!(code, 130, "{task}: {status:?}\n{err}");
        assert_eq!(env.json(&["status", task, "--json"])["status"], "running");
        env.agent(&["purge", "--refs", task]).ok();
    }
}

trait OkDocker {
    fn ok_docker(self) -> Self;
}

impl OkDocker for crate::common::Run {
    #[track_caller]
    fn ok_docker(self) -> Self {
        assert_eq!(self.code, 0, "docker failed:\n{self}");
        self
    }
}

/// A task that lost its gateway, its container or its workspace is reported with the one
/// command that fixes it: `restart` for a dead gateway or a lost container (after `doctor
/// --fix` has recorded the latter), `purge --refs` for a lost workspace.
#[test]
fn doctor_names_the_fix_for_a_task_missing_its_objects() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "hurt", "-m", "x", "--", "sleep", "300"])
        .ok();
    let names = env.names_of("hurt");
    let fail_line = |doctor: &crate::common::Run, what: &str| -> String {
        let lines: Vec<&str> = doctor.stdout.lines().collect();
        let i = lines
            .iter()
            .position(|l| l.starts_with("FAIL") && l.contains("task hurt") && l.contains(what))
            .unwrap_or_else(|| panic!("no FAIL for {what}:\n{doctor}"));
        format!("{}\n{}", lines[i], lines.get(i + 1).unwrap_or(&""))
    };

    docker(&["rm", "-f", &names.gateway]).ok_docker();
    let doctor = env.agent(&["doctor"]);
    assert_eq!(doctor.code, 1, "{doctor}");
    assert!(
        fail_line(&doctor, "gateway is not running").contains("`git agent restart hurt`"),
        "{doctor}"
    );
    // --fix cannot give it a gateway: it says what can, and fails.
    let fix = env.agent(&["doctor", "--fix"]);
    assert_eq!(fix.code, 1, "{fix}");
    assert!(fix.stdout.contains("`git agent restart hurt`"), "{fix}");
    env.agent(&["restart", "hurt"]).ok();
    env.agent(&["doctor"]).ok();

    docker(&["rm", "-f", &names.container]).ok_docker();
    let doctor = env.agent(&["doctor"]);
    assert_eq!(doctor.code, 1, "{doctor}");
    let line = fail_line(&doctor, "container is missing");
    assert!(line.contains("git agent doctor --fix"), "{line}");
    assert!(line.contains("`git agent restart hurt`"), "{line}");
    env.agent(&["doctor", "--fix"]).ok();
    assert_eq!(env.json(&["status", "hurt", "--json"])["status"], "failed");
    env.agent(&["restart", "hurt"]).ok();
    assert_eq!(env.json(&["status", "hurt", "--json"])["status"], "running");

    env.agent(&["stop", "--timeout", "0", "hurt"]).ok();
    env.agent(&["rm", "hurt"]).ok();
    // (`rm` leaves the exited disk warden, which still holds the volume.)
    docker(&["rm", "-f", &names.warden]).ok_docker();
    docker(&["volume", "rm", "-f", &names.volume]).ok_docker();
    let doctor = env.agent(&["doctor"]);
    assert_eq!(doctor.code, 1, "{doctor}");
    assert!(
        fail_line(&doctor, "workspace volume is missing").contains("`git agent purge --refs hurt`"),
        "{doctor}"
    );
    env.agent(&["purge", "--refs", "hurt"]).ok();
    env.agent(&["doctor"]).ok();
    assert_eq!(env.runtime_objects(), (vec![], vec![], vec![]));
}
