//! Snapshot tests of the human output: what a user reads from the core commands, whole, so
//! that a change to wording, order or layout shows up in review as a diff of the snapshot
//! (`tests/it/snapshots/`; run with `INSTA_UPDATE=always` to accept a deliberate change).
//! Commit ids, the repository's id and path, times and sizes vary between runs and are
//! replaced by placeholders; everything else is compared as it is.

use crate::common::{Run, TestEnv};
use crate::require_docker;

/// The agent commits one file, leaves one edit uncommitted, and says it finished.
const WORK: &str = r#"set -e
printf 'hello\n' > greeting.txt
git add greeting.txt && git commit -q -m "agent: greet" -m "Adds a greeting."
printf 'more\n' >> README.md
echo finished"#;

fn filters(env: &TestEnv) -> Vec<(String, String)> {
    vec![
        (
            regex_escape(&env.repo.display().to_string()),
            "[repo]".into(),
        ),
        (
            regex_escape(&env.home.path().display().to_string()),
            "[home]".into(),
        ),
        (env.repo_id(), "[repo-id]".into()),
        (r"\b[0-9a-f]{7,64}\b".into(), "[id]".into()),
        (
            r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?( ?[+-]\d\d:?\d\d|Z)?".into(),
            "[time]".into(),
        ),
        // Right-aligned ages: the padding goes with the number.
        (r" *\b\d+(ms|s|m|h|d) ago\b".into(), " [ago]".into()),
        (
            r"\b\d+(\.\d+)? ?(B|KiB|MiB|GiB|kB|MB|GB)\b".into(),
            "[size]".into(),
        ),
        (r"\b\d+(\.\d+)?(ms|s|m|h|d)\b".into(), "[duration]".into()),
    ]
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Stdout and stderr of one run with its exit code, as the user sees them.
fn shown(run: &Run) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.code, run.stdout, run.stderr
    )
}

#[test]
fn the_core_commands_read_as_before() {
    require_docker!();
    let env = TestEnv::new();
    let filters = filters(&env);
    let check = |name: &str, run: Run| {
        let mut settings = insta::Settings::clone_current();
        for (from, to) in &filters {
            settings.add_filter(from, to.as_str());
        }
        if name == "list" {
            // Column widths follow the age ("9s", "10s"): compare the cells, not the padding.
            settings.add_filter(r" {2,}", "  ");
        }
        settings.set_prepend_module_to_snapshot(false);
        settings.bind(|| insta::assert_snapshot!(name, shown(&run)));
    };

    env.agent(&[
        "spawn",
        "--name",
        "greet",
        "-m",
        "say hello",
        "--wait",
        "--",
        "sh",
        "-c",
        WORK,
    ])
    .ok();
    check("sync", env.agent(&["sync", "greet"]));
    check("sync_again", env.agent(&["sync", "greet"]));
    check("review_stat", env.agent(&["review", "greet", "--stat"]));
    check("status", env.agent(&["status", "greet"]));
    check("list", env.agent(&["list"]));
    check("purge_dry_run", env.agent(&["purge", "--all", "--dry-run"]));
    check("status_unknown_task", env.agent(&["status", "nope"]));
    check(
        "spawn_bad_duration",
        env.agent(&["spawn", "--timeout", "soon", "-m", "x", "--", "true"]),
    );
    env.agent(&["purge", "--refs", "greet"]).ok();
}
