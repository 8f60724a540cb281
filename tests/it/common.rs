//! A hermetic test environment: temp HOME, a repository at a path with spaces and non-ASCII
//! characters, fixed dates, no system git config, and the built binary reachable as
//! `git agent`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_git-agent");

pub fn base_image() -> String {
    std::env::var("GIT_AGENT_TEST_BASE_IMAGE").unwrap_or_else(|_| "git-agent-base:bookworm".into())
}

/// Whether the tests run on rootless Podman (`GIT_AGENT_TEST_ENGINE=podman`, with
/// `DOCKER_HOST` at its socket: see scripts/setup-podman.sh and scripts/test.sh).
pub fn podman() -> bool {
    std::env::var("GIT_AGENT_TEST_ENGINE").as_deref() == Ok("podman")
}

/// The name a container gives the engine's host: Podman 4.3 has no `host-gateway`, and
/// names the host `host.containers.internal` in every container.
pub fn host_alias() -> &'static str {
    if podman() {
        "host.containers.internal"
    } else {
        "host.docker.internal"
    }
}

/// True when a Docker engine answers and the base image is there. Without one, tests that
/// need it are skipped, except under `GIT_AGENT_REQUIRE_DOCKER=1`, where that is a failure.
/// Under `GIT_AGENT_TEST_ENGINE=podman` the engine must be Podman, or the test fails.
pub fn docker_ready() -> bool {
    if podman() {
        let out = Command::new("docker")
            .args(["version", "--format", "{{json .Server.Components}}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        assert!(
            out.contains("Podman Engine"),
            "GIT_AGENT_TEST_ENGINE=podman but DOCKER_HOST={:?} is no Podman engine (run scripts/setup-podman.sh): {out}",
            std::env::var("DOCKER_HOST").unwrap_or_default()
        );
    }
    let ok = Command::new("docker")
        .args(["image", "inspect", &base_image()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok && std::env::var_os("GIT_AGENT_REQUIRE_DOCKER").is_some() {
        panic!(
            "GIT_AGENT_REQUIRE_DOCKER is set but no Docker engine with image {} answers",
            base_image()
        );
    }
    ok
}

#[macro_export]
macro_rules! require_docker {
    () => {
        if !$crate::common::docker_ready() {
            eprintln!("SKIPPED: no Docker engine / base image (set GIT_AGENT_REQUIRE_DOCKER=1 to fail instead)");
            return;
        }
    };
}

/// The result of running a command.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// How long one command of a test may run before the test fails instead of hanging the whole
/// run: `GIT_AGENT_TEST_COMMAND_TIMEOUT` seconds, 300 by default.
fn command_limit() -> std::time::Duration {
    let secs = std::env::var("GIT_AGENT_TEST_COMMAND_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    std::time::Duration::from_secs(secs)
}

/// `cmd.output()`, bounded by [`command_limit`]: past it, the command's whole process group
/// is killed and the test panics with what the command had printed so far.
#[track_caller]
pub fn bounded_output(cmd: &mut Command) -> Output {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let limit = command_limit();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    drop(child.stdin.take());
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the command") {
            break status;
        }
        if start.elapsed() > limit {
            // The group: `git agent` runs git-agent as its child.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
            let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
            panic!(
                "{cmd:?} ran longer than {}s (GIT_AGENT_TEST_COMMAND_TIMEOUT) and was killed\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                limit.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed:\n{self}");
        self
    }

    #[track_caller]
    pub fn fails(self) -> Run {
        assert_eq!(self.code, 1, "expected exit 1:\n{self}");
        assert!(self.stderr.contains("Error: "), "no Error: line:\n{self}");
        assert!(self.stderr.contains("Hint: "), "no Hint: line:\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub struct TestEnv {
    pub home: tempfile::TempDir,
    pub repo: PathBuf,
    pub bin_dir: PathBuf,
    /// The local runtime's directory, when commands run on it instead of Docker (see
    /// [`TestEnv::local`]).
    pub local_runtime: Option<PathBuf>,
    /// The directory holding it (outside `home`, see [`TestEnv::local`]).
    _local_dir: Option<tempfile::TempDir>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        // Tasks are not followed (see tests/it/follow.rs): most tests assert what their own
        // `sync` brought home, which a follower would have brought first.
        let home = tempfile::Builder::new()
            .prefix("git-agent-test-")
            .tempdir()
            .expect("temp home");
        let bin_dir = home.path().join(".cargo/bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::os::unix::fs::symlink(BIN, bin_dir.join("git-agent")).unwrap();
        std::fs::write(
            home.path().join(".gitconfig"),
            format!(
                "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[agent]\n\tbaseImage = {}\n\tfollow = false\n{}",
                base_image(),
                // The Podman pass runs on a machine whose rootless Podman cannot enforce limits
                // (cgroups v1), which spawn refuses (see `podman::`).
                if podman() { "\tallowUnenforcedLimits = true\n" } else { "" }
            ),
        )
        .unwrap();
        let repo = home.path().join("my repo ü");
        std::fs::create_dir_all(&repo).unwrap();
        let env = TestEnv {
            home,
            repo,
            bin_dir,
            local_runtime: None,
            _local_dir: None,
        };
        env.git(&["init", "-q"]).ok();
        std::fs::write(env.repo.join("README.md"), "# demo\n").unwrap();
        std::fs::write(env.repo.join(".gitignore"), "ignored.log\n").unwrap();
        env.git(&["add", "."]).ok();
        env.git(&["commit", "-q", "-m", "initial"]).ok();
        env
    }

    fn base_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .current_dir(&self.repo)
            .env("HOME", self.home.path())
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.bin_dir.display()),
            )
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("LC_ALL", "C")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .stdin(Stdio::null());
        for var in ["DOCKER_HOST", "TMPDIR"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        if let Some(dir) = &self.local_runtime {
            cmd.env("GIT_AGENT_RUNTIME", "local")
                .env("GIT_AGENT_LOCAL_RUNTIME_DIR", dir);
        }
        cmd
    }

    /// Spawn an exec task that commits `file` and exits, wait for it, and sync it.
    pub fn finished_task(&self, name: &str, file: &str) {
        self.agent(&[
            "spawn",
            "--name",
            name,
            "--wait",
            "-m",
            "x",
            "--",
            "sh",
            "-c",
            &format!("echo {name} > {file} && git add {file} && git commit -qm 'add {file}'"),
        ])
        .ok();
        self.agent(&["sync", name]).ok();
    }

    /// `git <args>` in the repository.
    pub fn git(&self, args: &[&str]) -> Run {
        Run::from(bounded_output(self.base_command("git").args(args)))
    }

    /// `git agent <args>` in the repository.
    pub fn agent(&self, args: &[&str]) -> Run {
        self.agent_with(args, |_| {})
    }

    pub fn agent_with(&self, args: &[&str], f: impl FnOnce(&mut Command)) -> Run {
        let mut cmd = self.base_command("git");
        cmd.arg("agent").args(args);
        f(&mut cmd);
        Run::from(bounded_output(&mut cmd))
    }

    /// The binary itself (not through git), for signalling it.
    pub fn agent_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.base_command(BIN);
        cmd.args(args);
        cmd
    }

    /// `git agent <args>` (a `--json` command) parsed as JSON; the command must succeed.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let run = self.agent(args).ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}:\n{run}"))
    }

    /// `git-agent <args>` on a pseudo-terminal (util-linux `script`), in the repository with
    /// this environment's HOME.
    pub fn pty_command(&self, args: &str) -> Command {
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &format!("{BIN} {args}"), "/dev/null"])
            .current_dir(&self.repo)
            .env("HOME", self.home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1");
        cmd
    }

    /// Install agent `name` (its TOML definition) in the user's config, talking to the API at
    /// `base_url` (`agent.<name>.baseUrl`), as a user adds their own agent.
    pub fn user_agent(&self, name: &str, definition: &str, base_url: &str) {
        let agents = self.home.path().join(".config/git-agent/agents");
        std::fs::create_dir_all(&agents).unwrap();
        std::fs::write(agents.join(format!("{name}.toml")), definition).unwrap();
        self.git(&["config", &format!("agent.{name}.baseUrl"), base_url])
            .ok();
    }

    pub fn write(&self, path: &str, text: &str) {
        let p = self.repo.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Everything about the user's repository that a failed or hostile operation must not
    /// change: refs outside refs/agent, HEAD, index, config, hooks and work tree status.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut s = BTreeMap::new();
        let refs = self
            .git(&["for-each-ref", "--format=%(refname) %(objectname)"])
            .stdout;
        s.insert(
            "refs".into(),
            refs.lines()
                .filter(|l| !l.starts_with("refs/agent/"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        s.insert("HEAD".into(), self.git(&["rev-parse", "HEAD"]).stdout);
        // No opportunistic index refresh: the snapshot itself must not change the index.
        let status = Run::from(
            self.base_command("git")
                .env("GIT_OPTIONAL_LOCKS", "0")
                .args(["status", "--porcelain=v1", "--ignored"])
                .output()
                .expect("git status runs"),
        );
        s.insert("status".into(), status.stdout);
        let gitdir = self.repo.join(".git");
        for f in ["index", "config", "HEAD"] {
            s.insert(
                f.into(),
                hex(&std::fs::read(gitdir.join(f)).unwrap_or_default()),
            );
        }
        let mut hooks: Vec<String> = std::fs::read_dir(gitdir.join("hooks"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        hooks.sort();
        s.insert("hooks".into(), hooks.join(","));
        s
    }

    /// [`snapshot`](Self::snapshot) without anything git-agent itself may write (task
    /// branches `agent/*`, `refs/notes/agent`): what a crash of any git-agent command must
    /// leave exactly as it was.
    pub fn user_snapshot(&self) -> BTreeMap<String, String> {
        let mut s = self.snapshot();
        let refs = s["refs"]
            .lines()
            .filter(|l| !l.starts_with("refs/heads/agent/") && !l.starts_with("refs/notes/agent "))
            .collect::<Vec<_>>()
            .join("\n");
        s.insert("refs".into(), refs);
        s
    }

    /// `git agent <args>` killed (SIGKILL, no cleanup) at crash point `point` (see
    /// `git_agent::crash`). Panics if the command got past the point without dying, so a test
    /// never passes on a point that is no longer reached.
    #[track_caller]
    pub fn agent_crash_at(&self, point: &str, args: &[&str]) -> Run {
        let run = self.agent_with(args, |c| {
            c.env(git_agent::crash::ENV, point);
        });
        assert!(
            run.code == -1 || run.code == 137,
            "git agent {args:?} did not die at crash point {point}:\n{run}"
        );
        run
    }

    /// The task refs of `task` as `leaf -> oid`.
    pub fn task_refs(&self, task: &str) -> BTreeMap<String, String> {
        let prefix = format!("refs/agent/{task}/");
        self.git(&["for-each-ref", "--format=%(refname) %(objectname)", &prefix])
            .stdout
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(r, o)| (r.trim_start_matches(&prefix).to_string(), o.to_string()))
            .collect()
    }

    /// The engine-side id of this repository (label value on its runtime objects).
    pub fn repo_id(&self) -> String {
        let git = git_agent::git::Git::discover(&self.repo).unwrap();
        git_agent::sandbox::RepoId::of(&git).id
    }

    /// Names of runtime objects of this repository: (containers, volumes, networks).
    pub fn runtime_objects(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        #[cfg(feature = "local-runtime")]
        if self.local_runtime.is_some() {
            return self.local_objects();
        }
        let filter = format!("label=git-agent.repo={}", self.repo_id());
        let list = |args: &[&str]| -> Vec<String> {
            let out = Command::new("docker").args(args).output().unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        };
        (
            list(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]),
            list(&["volume", "ls", "--filter", &filter, "--format", "{{.Name}}"]),
            list(&[
                "network",
                "ls",
                "--filter",
                &filter,
                "--format",
                "{{.Name}}",
            ]),
        )
    }

    /// The network a task's record names (its own, or the spare's it claimed), if any.
    pub fn network_of(&self, task: &str) -> Option<String> {
        let toml = self
            .git(&["show", &format!("refs/agent/{task}/state:task.toml")])
            .ok()
            .stdout;
        let record: toml::Table = toml::from_str(&toml).unwrap();
        record["sandbox"]
            .get("network")
            .and_then(|s| s.as_str())
            .map(str::to_string)
    }

    pub fn container_of(&self, task: &str) -> String {
        self.names_of(task).container
    }

    /// The engine object names of `task` (container, gateway, volumes, network...).
    pub fn names_of(&self, task: &str) -> git_agent::sandbox::ObjectNames {
        let git = git_agent::git::Git::discover(&self.repo).unwrap();
        git_agent::sandbox::RepoId::of(&git).object_names(task)
    }

    /// `sh -c <script>` in a task's container, on whichever runtime this environment's
    /// commands use (test-side tampering and looking).
    pub fn sandbox_exec(&self, task: &str, script: &str) -> Run {
        #[cfg(feature = "local-runtime")]
        if self.local_runtime.is_some() {
            use git_agent::runtime::Runtime;
            let rt = self.local_runtime();
            let cmd = ["sh".to_string(), "-c".into(), script.into()];
            let mut out = Vec::new();
            let done = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(rt.exec(
                    &self.container_of(task),
                    &cmd,
                    None::<&[u8]>,
                    &mut out,
                    1 << 24,
                ));
            return match done {
                Ok(o) => Run {
                    code: o.exit_code as i32,
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
                },
                Err(e) => Run {
                    code: -1,
                    stdout: String::new(),
                    stderr: format!("{e:#}"),
                },
            };
        }
        self.docker_exec(task, script)
    }

    /// Run `script` over a finished task's mounts (workspace, home, anything else its
    /// container has) in a throwaway container of its image with no network, as the task user:
    /// a finished task's own container cannot start again once its network is given back.
    pub fn finished_exec(&self, task: &str, script: &str) -> Run {
        let c = self.container_of(task);
        let image = Command::new("docker")
            .args(["inspect", "-f", "{{.Image}}", &c])
            .output()
            .unwrap();
        let image = String::from_utf8_lossy(&image.stdout).trim().to_string();
        Run::from(
            Command::new("docker")
                .args(["run", "--rm", "--network", "none", "--volumes-from", &c])
                .args([
                    "--user",
                    "1000:1000",
                    "--entrypoint",
                    "sh",
                    &image,
                    "-c",
                    script,
                ])
                .output()
                .unwrap(),
        )
    }

    /// `docker exec` into a task's container as the task user (test-side tampering).
    pub fn docker_exec(&self, task: &str, script: &str) -> Run {
        Run::from(bounded_output(Command::new("docker").args([
            "exec",
            &self.container_of(task),
            "sh",
            "-c",
            script,
        ])))
    }
}

#[cfg(feature = "local-runtime")]
impl TestEnv {
    /// A [`TestEnv`] whose `git agent` commands run on the local runtime (host processes
    /// against directories under the temp home, no engine; see `git_agent::runtime::local`).
    pub fn local() -> TestEnv {
        let mut env = TestEnv::new();
        let dir = traversable_tempdir();
        env.local_runtime = Some(dir.path().join("local-runtime"));
        env._local_dir = Some(dir);
        env
    }

    /// The local runtime of a [`TestEnv::local`], for looking at its objects directly.
    pub fn local_runtime(&self) -> git_agent::runtime::local::LocalRuntime {
        let dir = self.local_runtime.clone().expect("a TestEnv::local");
        git_agent::runtime::local::LocalRuntime::at(dir).expect("local runtime")
    }

    /// Names of this repository's objects on the local runtime: (containers, volumes,
    /// networks), as [`runtime_objects`](Self::runtime_objects) lists Docker's.
    pub fn local_objects(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        use git_agent::runtime::{ObjectKind, Runtime};
        let rt = self.local_runtime();
        let repo = self.repo_id();
        let list = |kind| {
            let found = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                // No object name has a `/`: only the label selects.
                .block_on(rt.list_objects(kind, "/", Some(("git-agent.repo", &repo))))
                .unwrap();
            let mut names: Vec<String> = found.into_iter().map(|o| o.name).collect();
            names.sort();
            names
        };
        (
            list(ObjectKind::Container),
            list(ObjectKind::Volume),
            list(ObjectKind::Network),
        )
    }
}

/// A temporary directory every user may pass through (mode 0711): a local runtime in it can
/// run its processes as the task user, who cannot enter the test's home (0700).
#[cfg(feature = "local-runtime")]
pub fn traversable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("git-agent-local-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        #[cfg(feature = "local-runtime")]
        if let Some(dir) = &self.local_runtime {
            // Container processes outlive the commands that started them.
            git_agent::runtime::local::LocalRuntime::kill_all(dir);
            return;
        }
        if !Command::new("docker")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return;
        }
        // A background git-agent process of the test (a follower's last sync) may make a
        // container after the listing: what is still there is asked again, twice.
        for round in 0..3 {
            let (containers, volumes, networks) = self.runtime_objects();
            if round > 0 {
                if containers.is_empty() && volumes.is_empty() && networks.is_empty() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            for c in containers {
                let _ = Command::new("docker").args(["rm", "-f", &c]).output();
            }
            for v in volumes {
                let _ = Command::new("docker")
                    .args(["volume", "rm", "-f", &v])
                    .output();
            }
            for n in networks {
                let _ = Command::new("docker").args(["network", "rm", &n]).output();
            }
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    // A cheap fingerprint: length plus FNV-1a, enough to see any change.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let mut s = String::new();
    let _ = write!(s, "{}:{h:016x}", bytes.len());
    s
}
