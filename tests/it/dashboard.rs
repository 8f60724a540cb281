//! `git agent dashboard` driven as a person would: the real binary in an 80x24 tmux pane
//! (`send-keys`, `capture-pane`) against real tasks on the real engine, and against an
//! engine that is not there.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{BIN, TestEnv};
use crate::require_docker;

/// A tmux server of its own (its own socket), killed when dropped.
struct Pane {
    socket: String,
}

impl Pane {
    /// Start `git-agent dashboard` in `env`'s repository in a detached 80x24 session, with
    /// `docker_host` as the engine's address (the test's own when `None`). When the
    /// dashboard ends, the pane says `dashboard exited <code>`.
    fn start(env: &TestEnv, docker_host: Option<&str>) -> Pane {
        Pane::start_with(env, docker_host, "")
    }

    /// [`Pane::start`] with more words for `dashboard` (`--all`).
    fn start_with(env: &TestEnv, docker_host: Option<&str>, args: &str) -> Pane {
        // A server of its own each time: one just killed may still be going away.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let socket = format!(
            "git-agent-dash-{}-{}-{}",
            std::process::id(),
            env.home.path().file_name().unwrap().to_string_lossy(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let host = docker_host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok());
        let mut vars = vec![
            format!("HOME={}", env.home.path().display()),
            format!(
                "PATH={}:/usr/local/bin:/usr/bin:/bin",
                env.bin_dir.display()
            ),
            "GIT_CONFIG_NOSYSTEM=1".to_string(),
            "LC_ALL=C.UTF-8".to_string(),
            "TERM=xterm".to_string(),
        ];
        vars.extend(host.map(|h| format!("DOCKER_HOST={h}")));
        let vars: Vec<String> = vars.iter().map(|v| quote(v)).collect();
        let script = env.home.path().join("dashboard.sh");
        std::fs::write(
            &script,
            format!(
                "cd {repo} || exit 1\nexec env -i {vars} sh -c '{exe} dashboard {args}; echo \"dashboard exited $?\"; sleep 600'\n",
                repo = quote(&env.repo.display().to_string()),
                vars = vars.join(" "),
                exe = BIN,
            ),
        )
        .unwrap();
        let pane = Pane { socket };
        let run = pane
            .tmux()
            .args(["new-session", "-d", "-x", "80", "-y", "24", "sh"])
            .arg(&script)
            .output()
            .expect("tmux runs");
        assert!(run.status.success(), "{run:?}");
        pane
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p"])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let run = self
            .tmux()
            .arg("send-keys")
            .args(keys)
            .output()
            .expect("send-keys");
        assert!(run.status.success(), "{run:?}");
    }

    /// The screen once `done` holds for it; panics with the last screen after `limit`.
    #[track_caller]
    fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if done(&s) {
                return s;
            }
            if start.elapsed() > limit {
                panic!("the dashboard never showed {what}; last screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").output();
    }
}

/// `s` as one word for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// tmux is there, or (under GIT_AGENT_REQUIRE_DOCKER, as in CI) the test fails.
fn tmux_ready() -> bool {
    let ok = Command::new("tmux").arg("-V").output().is_ok();
    if !ok && std::env::var_os("GIT_AGENT_REQUIRE_DOCKER").is_some() {
        panic!("tmux is needed for the dashboard tests");
    }
    if !ok {
        eprintln!("SKIPPED: no tmux");
    }
    ok
}

/// A running exec task that prints terminal controls, asks its gateway for a domain nobody
/// allowed, says what it got, and stays up.
const PROBE: &str = r#"use IO::Socket::INET;
$| = 1;
print "probe started\n";
print "hostile \e[2J\e]0;owned\a\e[31mred\n";
my $s = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5);
if ($s) { print $s "GET http://forbidden.test/ HTTP/1.0\r\nHost: forbidden.test\r\n\r\n";
  my ($l) = split(/\r?\n/, join("", <$s>)); print "probe answer: $l\n"; }
else { print "probe: no gateway\n"; }
sleep 600;
"#;

#[test]
fn the_dashboard_shows_live_tasks_their_output_and_refused_connections() {
    require_docker!();
    if !tmux_ready() {
        return;
    }
    let env = TestEnv::new();
    env.finished_task("finished", "done.txt");
    env.agent(&["spawn", "--name", "prober", "-m", PROBE, "--", "perl", "-"])
        .ok();
    let pane = Pane::start(&env, None);
    // Both tasks, with their statuses; the running one's refused connection in the
    // network pane, as the gateway decided it.
    let s = pane.wait_for(Duration::from_secs(60), "the tasks and the refusal", |s| {
        s.contains("finished") && s.contains("prober") && s.contains("forbidden.test:80")
    });
    assert!(s.contains("engine ok"), "{s}");
    assert!(
        s.lines()
            .any(|l| l.contains("prober") && l.contains("running")),
        "{s}"
    );
    assert!(
        s.lines()
            .any(|l| l.contains("finished") && l.contains("exited")),
        "{s}"
    );
    assert!(
        s.lines().any(|l| l.starts_with("!!")
            && l.contains("prober")
            && l.contains("denied")
            && l.contains("forbidden.test:80")),
        "{s}"
    );
    assert!(!s.contains("-- output"), "{s}");
    assert!(s.lines().count() <= 24 && s.lines().all(|l| l.chars().count() <= 80));
    // Select the running task (tasks are listed by name: finished, prober) and open the
    // output pane: its latest output, live from its container.
    pane.keys(&["j"]);
    pane.keys(&["Enter"]);
    let s = pane.wait_for(Duration::from_secs(30), "the output pane", |s| {
        s.contains("-- output of prober") && s.contains("probe answer")
    });
    assert!(s.contains("probe started"), "{s}");
    assert!(s.contains("403"), "{s}");
    // What the task printed to drive the terminal is shown, escaped, not obeyed.
    assert!(
        s.contains("hostile \\x1b[2J\\x1b]0;owned\\x07\\x1b[31mred"),
        "{s}"
    );
    // x asks first; y stops the task, through `git agent stop` in the background.
    pane.keys(&["x"]);
    pane.wait_for(Duration::from_secs(10), "the question", |s| {
        s.contains("stop prober? (y/N)")
    });
    pane.keys(&["y"]);
    // (The next refresh may show the task stopped before the command has said it is done.)
    pane.wait_for(
        Duration::from_secs(60),
        "the stopped task and the command's end",
        |s| {
            s.lines()
                .any(|l| l.contains("prober") && l.contains("stopped"))
                && s.contains("git agent stop prober: done")
        },
    );
    assert_eq!(
        env.json(&["status", "prober", "--json"])["status"],
        "stopped",
        "{s}"
    );
    // l steps aside for `git agent logs` on the selected task, then comes back.
    pane.keys(&["l"]);
    pane.wait_for(Duration::from_secs(30), "the logs", |s| {
        s.contains("probe started") && s.contains("press Enter to return to the dashboard")
    });
    pane.keys(&["Enter"]);
    let s = pane.wait_for(Duration::from_secs(30), "the dashboard again", |s| {
        s.contains("engine ok") && s.contains("git agent logs prober: done")
    });
    assert!(!s.contains("press Enter to return"), "{s}");
    // q quits and gives the terminal back.
    pane.keys(&["q"]);
    pane.wait_for(Duration::from_secs(10), "its exit", |s| {
        s.contains("dashboard exited 0")
    });
}

#[test]
fn the_dashboard_draws_and_says_so_when_the_engine_is_unreachable() {
    require_docker!();
    if !tmux_ready() {
        return;
    }
    let env = TestEnv::new();
    env.finished_task("kept", "kept.txt");
    let dead = env.home.path().join("no-engine.sock");
    let pane = Pane::start(&env, Some(&format!("unix://{}", dead.display())));
    let s = pane.wait_for(Duration::from_secs(20), "the unreachable engine", |s| {
        s.contains("engine unreachable")
    });
    // The task as its refs say, and the keys still answer.
    assert!(
        s.lines()
            .any(|l| l.contains("kept") && l.contains("exited")),
        "{s}"
    );
    pane.keys(&["Enter"]);
    let s = pane.wait_for(Duration::from_secs(20), "the output pane", |s| {
        s.contains("-- output of kept")
    });
    assert!(s.contains("engine unreachable"), "{s}");
    pane.keys(&["q"]);
    pane.wait_for(Duration::from_secs(10), "its exit", |s| {
        s.contains("dashboard exited 0")
    });
}

/// `--all`: the tasks of every repository that registered itself with `add`, each name with
/// its repository's, queued ones with their place in the queue; without `--all` only the
/// repository the dashboard runs in.
#[test]
fn the_dashboard_with_all_shows_every_registered_repository() {
    require_docker!();
    if !tmux_ready() {
        return;
    }
    let env = TestEnv::new();
    let other = crate::queue::second_repo(&env);
    crate::queue::add(&env, &env.repo, "here-one", "true", &[]);
    crate::queue::add(&env, &other, "there-one", "true", &[]);
    crate::queue::add(&env, &other, "there-two", "true", &[]);
    let here = env.repo.file_name().unwrap().to_string_lossy().into_owned();

    let all = Pane::start_with(&env, None, "--all");
    let s = all.wait_for(Duration::from_secs(30), "both repositories", |s| {
        s.contains("here-one") && s.contains("there-one") && s.contains("there-two")
    });
    let row = |name: &str| {
        s.lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("no {name}:\n{s}"))
            .to_string()
    };
    assert!(row("here-one").contains(&format!("{here}:here-one")), "{s}");
    assert!(row("there-one").contains("second repo:there-one"), "{s}");
    assert!(row("there-two").contains("queued"), "{s}");
    assert!(
        row("there-one").contains('1') && row("there-two").contains('2'),
        "queue places:\n{s}"
    );
    all.keys(&["q"]);
    all.wait_for(Duration::from_secs(10), "its exit", |s| {
        s.contains("dashboard exited 0")
    });
    drop(all);

    let one = Pane::start(&env, None);
    let s = one.wait_for(Duration::from_secs(30), "this repository's task", |s| {
        s.contains("here-one")
    });
    assert!(!s.contains("there-one"), "{s}");
}
