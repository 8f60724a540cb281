//! Progress you can read: an image build shows one line per step, keeps its whole output in
//! a log file and shows only its end when a step fails; `spawn --wait` shows an agent's
//! transcript as `logs` renders it. Real binary, real engine, real Claude Code.

use crate::claude::use_fake;
use crate::common::TestEnv;
use crate::fake_anthropic::{FakeAnthropic, Step};
use crate::require_docker;

/// A stack of the user's whose one step prints 200 lines, a line that tries to drive the
/// terminal, and fails.
fn noisy_stack(env: &TestEnv) {
    let stacks = env.home.path().join(".config/git-agent/dockerfiles/stacks");
    std::fs::create_dir_all(&stacks).unwrap();
    std::fs::write(
        stacks.join("noisy.dockerfile"),
        "RUN for i in $(seq 1 200); do echo noisy-line-$i; done; printf 'paint-\\033[2J\\033]0;owned\\007-done\\n'; false\n",
    )
    .unwrap();
}

/// The log path a failed build named on stderr.
fn log_path(stderr: &str) -> std::path::PathBuf {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("git-agent: the full build log is in "))
        .map(|p| std::path::PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!("no log path:\n{stderr}"))
}

#[test]
fn a_failing_build_step_shows_its_tail_and_log_not_all_its_output() {
    require_docker!();
    let env = TestEnv::new();
    noisy_stack(&env);
    let before = env.snapshot();
    let r = env
        .agent(&["image", "build", "--agent", "exec", "--stack", "noisy"])
        .fails();
    assert_eq!(r.stdout, "", "{r}");
    assert!(r.stderr.contains("Error: image build failed"), "{r}");
    assert!(r.stderr.contains("Hint: "), "{r}");
    // One plain line per step off a terminal, with the step's instruction.
    assert!(
        r.stderr
            .lines()
            .any(|l| l.starts_with("git-agent: [") && l.contains("] RUN for i in")),
        "{r}"
    );
    assert!(
        !r.stderr.contains("Step 1/"),
        "the builder's own lines are not shown: {r}"
    );
    // The end of the output, not all of it.
    // (The step's own line names `noisy-line-$i` once; output lines are indented.)
    let shown = r.stderr.matches("\n  noisy-line-").count();
    assert!(
        (1..=20).contains(&shown),
        "{shown} output lines shown:\n{r}"
    );
    assert!(r.stderr.contains("noisy-line-200"), "{r}");
    assert!(!r.stderr.contains("noisy-line-100\n"), "{r}");
    assert!(r.stderr.lines().count() < 60, "{r}");
    // What the step printed cannot drive the terminal.
    assert!(r.stderr.contains("paint-\\x1b[2J"), "{r}");
    assert!(!r.stderr.contains(['\x1b', '\x07']), "{r}");
    // The log holds everything, as it came, in the user's cache.
    let log = log_path(&r.stderr);
    assert!(
        log.starts_with(env.home.path().join(".cache/git-agent/builds")),
        "{}",
        log.display()
    );
    let kept = std::fs::read_to_string(&log).unwrap();
    for i in [1, 100, 200] {
        assert!(kept.contains(&format!("noisy-line-{i}\n")), "{kept}");
    }
    assert!(kept.contains("paint-\x1b[2J"), "{kept}");
    assert_eq!(
        before,
        env.snapshot(),
        "a failed build changed the repository"
    );

    // --verbose streams every line (escaped) as it comes.
    let v = env
        .agent(&[
            "image",
            "build",
            "--agent",
            "exec",
            "--stack",
            "noisy",
            "--verbose",
        ])
        .fails();
    assert!(v.stderr.contains("noisy-line-1\n"), "{v}");
    assert!(v.stderr.contains("noisy-line-100\n"), "{v}");
    assert!(!v.stderr.contains(['\x1b', '\x07']), "{v}");
    assert_eq!(log_path(&v.stderr), log);
    assert_eq!(v.stdout, "");
}

/// The transcript `spawn --wait` shows: readable lines by default, the stream-json with --raw.
#[test]
fn spawn_wait_shows_claudes_transcript_readably_and_raw_on_request() {
    require_docker!();
    let env = TestEnv::new();
    let key = "sk-ant-test-key-for-progress";
    let fake = FakeAnthropic::start_requiring_key(vec![Step::text("Readable-answer-one.")], key);
    use_fake(&env, &fake);
    let spawn = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "spawn", "--agent", "claude", "--name", name, "-m", "say hi", "--wait",
        ];
        args.extend_from_slice(extra);
        env.agent_with(&args, |c| {
            c.env("ANTHROPIC_API_KEY", key);
        })
    };
    let shown = spawn("readable", &[]);
    assert_eq!(shown.code, 0, "{shown}\n{}", fake.describe());
    assert_eq!(
        shown.stdout, "readable\n",
        "only the name on stdout: {shown}"
    );
    assert!(shown.stderr.contains("Readable-answer-one."), "{shown}");
    assert!(shown.stderr.contains("■ done"), "{shown}");
    assert!(!shown.stderr.contains("{\"type\""), "{shown}");
    // attach of a headless run follows its output, readable the same way.
    let attached = env.agent(&["attach", "readable"]);
    assert_eq!(attached.code, 0, "{attached}");
    assert!(
        attached.stdout.contains("Readable-answer-one."),
        "{attached}"
    );
    assert!(!attached.stdout.contains("{\"type\""), "{attached}");
    assert!(attached.stderr.contains("runs headless"), "{attached}");
    let raw_attach = env.agent(&["attach", "--raw", "readable"]);
    assert!(raw_attach.stdout.contains("{\"type\":"), "{raw_attach}");

    let fake = FakeAnthropic::start_requiring_key(vec![Step::text("Raw-answer-two.")], key);
    use_fake(&env, &fake);
    let raw = spawn("raw", &["--raw"]);
    assert_eq!(raw.code, 0, "{raw}\n{}", fake.describe());
    assert_eq!(raw.stdout, "raw\n", "{raw}");
    assert!(raw.stderr.contains("{\"type\":"), "{raw}");
    assert!(raw.stderr.contains("Raw-answer-two."), "{raw}");
}

/// A repository large enough that sending its history takes a while: `files` files of
/// `size` incompressible bytes, over a few commits.
fn grow(env: &TestEnv, files: usize, size: usize) {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect::<Vec<u8>>()
    };
    for batch in 0..4 {
        for i in (batch..files).step_by(4) {
            let dir = env.repo.join(format!("data/d{}", i % 50));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("f{i}.bin")), noise(size)).unwrap();
        }
        env.git(&["add", "-A"]).ok();
        env.git(&["commit", "-qm", &format!("batch {batch}")]).ok();
    }
}

/// Spawning a large repository on a terminal shows the history going over with its size and
/// rate on stderr; stdout holds the task's name and nothing else.
#[test]
fn spawning_a_large_repository_shows_progress_on_stderr_only() {
    require_docker!();
    let env = TestEnv::new();
    grow(&env, 3000, 24 * 1024);
    let out = tempfile::NamedTempFile::new().unwrap();
    let run = env
        .pty_command(&format!(
            "spawn --name big --agent exec -m x -- true > '{}'",
            out.path().display()
        ))
        .output()
        .unwrap();
    let terminal = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{terminal}");
    assert_eq!(
        std::fs::read_to_string(out.path()).unwrap(),
        "big\n",
        "stdout holds the name only; the terminal got:\n{terminal}"
    );
    let said = terminal
        .lines()
        .find(|l| l.contains("history to the object cache") && l.contains("done."))
        .unwrap_or_else(|| panic!("no transfer line:\n{terminal}"));
    assert!(said.contains("MiB") && said.contains("/s in "), "{said}");
    // On a terminal the transfer is redrawn in place, not printed line after line.
    assert!(terminal.contains("\x1b[2K"), "{terminal}");
}
