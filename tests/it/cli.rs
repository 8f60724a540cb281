//! Command-line behaviour that needs no engine: help, man pages, usage and user errors.

use std::path::Path;

use crate::common::{BIN, TestEnv};
use crate::require_docker;

#[test]
fn committed_man_pages_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let pages = git_agent::cli::man::pages().unwrap();
    if std::env::var_os("GIT_AGENT_UPDATE_MAN").is_some() {
        git_agent::cli::man::write_all(&dir).unwrap();
    }
    let mut stale = Vec::new();
    for (name, text) in &pages {
        if std::fs::read(dir.join(name)).ok().as_deref() != Some(text.as_slice()) {
            stale.push(name.clone());
        }
    }
    assert!(
        stale.is_empty(),
        "man pages are stale: {stale:?}; regenerate with `GIT_AGENT_UPDATE_MAN=1 cargo test committed_man_pages_are_current`"
    );
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "git-agent.1",
        "git-agent-spawn.1",
        "git-agent-review.1",
        "git-agent-commit-push.1",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
}

#[test]
fn help_opens_the_man_page_installed_next_to_the_binary() {
    let env = TestEnv::new();
    // As the README installs them: beside ~/.cargo/bin, where man finds them from PATH.
    let man1 = env.home.path().join(".cargo/share/man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("man")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), man1.join(entry.file_name())).unwrap();
    }
    if which::which("man").is_err() {
        eprintln!("SKIPPED: `man` is not installed");
        return;
    }
    let help = env.agent_with(&["--help"], |c| {
        c.env("MANPAGER", "cat").env("MANWIDTH", "80");
    });
    assert_eq!(help.code, 0, "{help}");
    assert!(
        help.stdout.contains("GIT-AGENT") || help.stdout.contains("git-agent"),
        "{help}"
    );
    assert!(help.stdout.contains("spawn"), "{help}");

    let short = env.agent(&["-h"]).ok();
    assert!(short.stdout.contains("Usage: git agent"), "{short}");
    assert!(short.stdout.contains("spawn"), "{short}");
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    let r = env.agent(&["frobnicate"]);
    assert_eq!(r.code, 2, "{r}");
    let r = env.agent(&["review"]);
    assert_eq!(r.code, 2, "{r}");
}

#[test]
fn outside_a_repository() {
    let env = TestEnv::new();
    let r = env.agent_with(&["list"], |c| {
        c.current_dir(env.home.path())
            .env("GIT_CEILING_DIRECTORIES", env.home.path().parent().unwrap());
    });
    // git itself may refuse first; run the binary directly as well.
    let direct = std::process::Command::new(BIN)
        .arg("list")
        .current_dir(env.home.path())
        .env("GIT_CEILING_DIRECTORIES", env.home.path().parent().unwrap())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert_eq!(direct.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Error: not a git repository"), "{stderr}");
    assert!(stderr.contains("Hint: "), "{stderr}");
    assert_ne!(r.code, 0);
}

#[test]
fn unknown_task_and_bad_names() {
    let env = TestEnv::new();
    let r = env.agent(&["status", "ghost"]).fails();
    assert!(r.stderr.contains("no task named 'ghost'"), "{r}");
    let before = env.snapshot();
    let r = env
        .agent(&["spawn", "--name", "Bad Name", "-m", "x", "--", "true"])
        .fails();
    assert!(r.stderr.contains("invalid task name"), "{r}");
    let r = env.agent(&["spawn", "--agent", "exec", "-m", "x"]).fails();
    assert!(r.stderr.contains("needs a command"), "{r}");
    let r = env
        .agent(&["spawn", "--base", "no-such-rev", "-m", "x", "--", "true"])
        .fails();
    assert!(r.stderr.contains("not a commit"), "{r}");
    assert_eq!(before, env.snapshot());
    assert!(env.git(&["for-each-ref", "refs/agent/"]).stdout.is_empty());
}

#[test]
fn engine_down_is_a_clear_error_that_changes_nothing() {
    let env = TestEnv::new();
    let before = env.snapshot();
    let r = env
        .agent_with(
            &["spawn", "--name", "nodocker", "-m", "x", "--", "true"],
            |c| {
                c.env("DOCKER_HOST", "unix:///nonexistent/docker.sock");
            },
        )
        .fails();
    assert!(
        r.stderr.contains("cannot reach the container engine"),
        "{r}"
    );
    assert!(r.stderr.contains("DOCKER_HOST"), "{r}");
    assert_eq!(before, env.snapshot());
    assert!(env.task_refs("nodocker").is_empty());
}

#[test]
fn image_dry_run_shows_layers_and_build_failure_shows_the_step() {
    let env = TestEnv::new();
    let dry = env.agent(&["image", "build", "--dry-run"]).ok().stdout;
    assert!(
        dry.contains(&format!("FROM {}", crate::common::base_image())),
        "{dry}"
    );
    assert!(
        dry.contains("# --- layer: base") && dry.contains("# --- layer: final"),
        "{dry}"
    );
    assert!(dry.trim_end().ends_with("WORKDIR /workspace"), "{dry}");

    env.write(
        ".git-agent/dockerfiles/project.dockerfile",
        "RUN echo failing-step-output && exit 7\n",
    );
    let dry = env.agent(&["image", "build", "--dry-run"]).ok().stdout;
    assert!(dry.contains("# --- layer: project"), "{dry}");
    require_docker!();
    let before = env.snapshot();
    let r = env
        .agent(&["spawn", "--name", "badimage", "-m", "x", "--", "true"])
        .fails();
    assert!(r.stderr.contains("image build failed"), "{r}");
    assert!(r.stderr.contains("failing-step-output"), "{r}");
    assert_eq!(before, env.snapshot());
    assert!(env.task_refs("badimage").is_empty());
}

#[test]
fn commands_work_from_a_subdirectory_and_a_linked_worktree() {
    let env = TestEnv::new();
    env.write("src/deep/file.txt", "x\n");
    env.git(&["add", "."]).ok();
    env.git(&["commit", "-q", "-m", "deep"]).ok();
    let sub = env.repo.join("src/deep");
    let r = env.agent_with(&["list", "--json"], |c| {
        c.current_dir(&sub);
    });
    assert_eq!(r.code, 0, "list from a subdirectory:\n{r}");
    let listed: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(listed["tasks"], serde_json::json!([]), "{r}");
    let wt = env.home.path().join("linked wt");
    env.git(&["worktree", "add", "-q", "--detach", wt.to_str().unwrap()])
        .ok();
    let r = env.agent_with(&["status", "ghost"], |c| {
        c.current_dir(wt.join("src"));
    });
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("no task named 'ghost'"), "{r}");
}

/// Every named crash point is driven by some fault-injection test: a point nobody kills at
/// proves nothing. (`TestEnv::agent_crash_at` in turn fails when a point is not reached.)
#[test]
fn every_crash_point_has_a_fault_injection_test() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut sources = String::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            sources += &std::fs::read_to_string(&path).unwrap();
        }
    }
    let untested: Vec<&str> = git_agent::crash::POINTS
        .iter()
        .copied()
        .filter(|p| !sources.contains(&format!("\"{p}\"")))
        .collect();
    assert!(
        untested.is_empty(),
        "crash points no test uses: {untested:?}"
    );
    assert!(git_agent::crash::POINTS.len() >= 20);
}

/// The declared `rust-version` is true of the locked dependencies: none needs a newer Rust.
/// (clippy's `incompatible_msrv`, denied in Cargo.toml, checks our own use of std against
/// it.)
#[test]
fn declared_rust_version_covers_every_locked_dependency() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--offline",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // `1.88` is `1.88.0`: compared as three numbers.
    let version = |v: &str| -> Vec<u32> {
        let mut n: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
        n.resize(3, 0);
        n
    };
    let ours = version(env!("CARGO_PKG_RUST_VERSION"));
    let newer: Vec<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > ours).then(|| format!("{} needs {needs}", p["name"]))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "rust-version {} is false: {newer:?}",
        env!("CARGO_PKG_RUST_VERSION")
    );
}
