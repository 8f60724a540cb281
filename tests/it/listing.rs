//! `list` and `status` are a ref scan: refs, records and change summaries are read in
//! process, so the git processes they start do not grow with the number of tasks; the
//! summary a sync records equals `git diff --shortstat`; hostile records are refused or
//! shown safely. Runs on the local runtime (no engine needed).

#![cfg(feature = "local-runtime")]

use std::path::Path;

use git_agent::git::Git;
use git_agent::task::store::{TaskStore, render_record};
use git_agent::task::{Changes, Status, TaskName, TaskRecord};

use crate::common::{Run, TestEnv};

fn record(name: &str, base: &str, changes: Option<Changes>) -> TaskRecord {
    TaskRecord {
        name: name.into(),
        agent: "exec".into(),
        command: vec!["true".into()],
        base: base.into(),
        base_branch: Some("main".into()),
        status: Status::Exited,
        exit_code: Some(0),
        changes,
        prompt: "listed".into(),
        ..Default::default()
    }
}

/// A commit on top of `parent` (not on any branch) that writes `files`.
fn work(env: &TestEnv, parent: &str, files: &[(&str, &str)]) -> String {
    let index = env.home.path().join("work-index");
    let git = |args: &[&str], input: Option<&str>| {
        let mut cmd = std::process::Command::new("git");
        cmd.current_dir(&env.repo)
            .env("GIT_INDEX_FILE", &index)
            .args(["-c", "user.name=t", "-c", "user.email=t@e"])
            .args(args);
        let out = if let Some(text) = input {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        } else {
            cmd.output().unwrap()
        };
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["read-tree", parent], None);
    for (path, text) in files {
        let blob = git(&["hash-object", "-w", "--stdin"], Some(text));
        git(
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("100644,{blob},{path}"),
            ],
            None,
        );
    }
    let tree = git(&["write-tree"], None);
    git(
        &["commit-tree", tree.as_str(), "-p", parent, "-m", "work"],
        None,
    )
}

/// `git diff --shortstat base tip` as (files, insertions, deletions).
fn shortstat(env: &TestEnv, base: &str, tip: &str) -> (u64, u64, u64) {
    let out = env.git(&["diff", "--shortstat", base, tip]).ok().stdout;
    git_agent::git::parse_shortstat(&out)
}

/// Create tasks `<prefix>-0..n` straight in the store (no sandbox): every third has no work,
/// the others a `head` (and every fourth a `wip`); half of those with work carry the summary
/// a sync records, the others none (records from before summaries were recorded).
fn plant(env: &TestEnv, prefix: &str, n: usize, tips: &[String]) {
    let git = Git::discover(&env.repo).unwrap();
    let base = git.resolve_commit("HEAD").unwrap();
    let store = TaskStore::open(&git).unwrap();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        store
            .create(
                &TaskName::parse(&name).unwrap(),
                &record(&name, &base, None),
            )
            .unwrap();
        if i % 3 == 0 {
            continue;
        }
        let head = tips[i % tips.len()].clone();
        let wip = (i % 4 == 0).then(|| tips[(i + 1) % tips.len()].clone());
        let tip = wip.clone().unwrap_or_else(|| head.clone());
        let (files, insertions, deletions) = shortstat(env, &base, &tip);
        let recorded = (i % 2 == 0).then_some(Changes {
            tip,
            files,
            insertions,
            deletions,
        });
        store
            .update(&name, "sync", |r, _| {
                r.changes = recorded.clone();
                Ok(vec![
                    ("head".to_string(), Some(head.clone())),
                    ("wip".to_string(), wip.clone()),
                ])
            })
            .unwrap();
    }
}

/// A `git` first on PATH that logs each call, for one git-agent command: how many git
/// processes it started.
fn git_calls(env: &TestEnv, args: &[&str]) -> (Run, usize) {
    let wrap = env.home.path().join("wrap");
    std::fs::create_dir_all(&wrap).unwrap();
    let log = env.home.path().join("git-calls.log");
    let real = which::which("git").unwrap();
    let script = wrap.join("git");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_file(&log);
    let mut cmd = env.agent_command(args);
    cmd.env(
        "PATH",
        format!("{}:{}:/usr/bin:/bin", wrap.display(), env.bin_dir.display()),
    );
    let out = cmd.output().expect("git-agent runs");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    (run, calls.lines().count())
}

fn rows(run: &Run) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&run.stdout).unwrap_or_else(|e| panic!("{e}:\n{run}"))
        ["tasks"]
        .as_array()
        .unwrap()
        .clone()
}

/// Every row's summary equals `git diff --shortstat` of its base and tip.
fn assert_summaries(env: &TestEnv, rows: &[serde_json::Value]) {
    for row in rows {
        let name = row["task"].as_str().unwrap();
        let refs = env.task_refs(name);
        let base = row["base"].as_str().unwrap();
        let tip = refs.get("wip").or(refs.get("head")).map_or(base, |s| s);
        let want = shortstat(env, base, tip);
        let got = (
            row["files_changed"].as_u64().unwrap(),
            row["insertions"].as_u64().unwrap(),
            row["deletions"].as_u64().unwrap(),
        );
        assert_eq!(got, want, "{name}: {row}");
        assert_eq!(row["uncommitted"].as_bool(), Some(refs.contains_key("wip")));
    }
}

#[test]
fn list_and_status_start_no_process_per_task() {
    let env = TestEnv::local();
    let base = env
        .git(&["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let a = work(&env, &base, &[("a.txt", "1\n2\n3\n")]);
    let b = work(&env, &a, &[("a.txt", "1\n3\n"), ("b.txt", "x\n")]);
    let tips = [a, b];

    plant(&env, "few", 6, &tips);
    let (few, few_calls) = git_calls(&env, &["list", "--json"]);
    let few_rows = rows(&few.ok());
    assert_eq!(few_rows.len(), 6);
    assert_summaries(&env, &few_rows);
    let (status, few_status_calls) = git_calls(&env, &["status", "--json", "few-1"]);
    status.ok();

    plant(&env, "many", 60, &tips);
    let (many, many_calls) = git_calls(&env, &["list", "--json"]);
    let many_rows = rows(&many.ok());
    assert_eq!(many_rows.len(), 66);
    assert_summaries(&env, &many_rows);
    assert_eq!(
        many_calls, few_calls,
        "list started {few_calls} git processes over 6 tasks and {many_calls} over 66"
    );
    let (status, many_status_calls) = git_calls(&env, &["status", "--json", "many-1"]);
    status.ok();
    assert_eq!(many_status_calls, few_status_calls);

    // With every summary recorded, list starts no git process for summaries at all: one
    // fewer than when some had to be computed.
    let git = Git::discover(&env.repo).unwrap();
    let store = TaskStore::open(&git).unwrap();
    for l in store.all().unwrap() {
        let tip = l.tip().to_string();
        if tip == l.record.base || l.record.changes.is_some() {
            continue;
        }
        let (files, insertions, deletions) = shortstat(&env, &l.record.base, &tip);
        store
            .update(&l.record.name, "sync", |r, _| {
                r.changes = Some(Changes {
                    tip: tip.clone(),
                    files,
                    insertions,
                    deletions,
                });
                Ok(vec![])
            })
            .unwrap();
    }
    let (all_recorded, calls) = git_calls(&env, &["list", "--json"]);
    assert_summaries(&env, &rows(&all_recorded.ok()));
    assert_eq!(
        calls + 1,
        many_calls,
        "no diff process once all are recorded"
    );
}

/// A real sync (local runtime) records the summary with the tip it is for, equal to what
/// `git diff --shortstat` says; `list` shows it.
#[test]
fn a_sync_records_the_change_summary() {
    let env = TestEnv::local();
    env.write("keep.txt", "1\n2\n3\n4\n");
    env.git(&["add", "."]).ok();
    env.git(&["commit", "-qm", "keep"]).ok();
    env.agent(&[
        "spawn",
        "--name",
        "summed",
        "--wait",
        "-m",
        "x",
        "--",
        "sh",
        "-c",
        "printf 'a\\nb\\n' > new.txt && printf '1\\n4\\n' > keep.txt && git add -A && git commit -qm work && echo loose > wip.txt",
    ])
    .ok();
    env.agent(&["sync", "summed"]).ok();
    let status = env.json(&["status", "--json", "summed"]);
    let refs = env.task_refs("summed");
    let tip = refs.get("wip").expect("uncommitted work came home");
    let (files, ins, del) = shortstat(&env, &refs["base"], tip);
    assert_eq!(
        (files, ins, del),
        (3, 3, 2),
        "a new file, a changed one, wip"
    );
    assert_eq!(
        status["changes"],
        serde_json::json!({"tip": tip, "files": files, "insertions": ins, "deletions": del}),
        "{status}"
    );
    let listed = env.json(&["list", "--json"])["tasks"].clone();
    assert_summaries(&env, listed.as_array().unwrap());
    let (_, calls) = git_calls(&env, &["list", "--json"]);
    let (_, calls_again) = git_calls(&env, &["list", "--json"]);
    assert_eq!(calls, calls_again);
}

/// A state commit for task `name` whose `task.toml` is `toml` (written with plumbing, as
/// anyone with access to the repository could).
fn plant_raw(env: &TestEnv, name: &str, toml: &[u8]) {
    let git = Git::discover(&env.repo).unwrap();
    let base = git.resolve_commit("HEAD").unwrap();
    let dir = env.home.path().join(format!("raw-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("task.toml");
    std::fs::write(&file, toml).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let blob = git
        .run(["hash-object", "-w", "--no-filters", &path(&file)])
        .unwrap();
    let tree = git
        .run_with_input(
            ["mktree"],
            format!("100644 blob {blob}\ttask.toml\n").as_bytes(),
        )
        .unwrap();
    let commit = git
        .run([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "commit-tree",
            &tree,
            "-m",
            "planted",
        ])
        .unwrap();
    env.git(&["update-ref", &format!("refs/agent/{name}/state"), &commit])
        .ok();
    env.git(&["update-ref", &format!("refs/agent/{name}/base"), &base])
        .ok();
}

fn rendered(env: &TestEnv, name: &str) -> (String, String) {
    let base = env
        .git(&["rev-parse", "HEAD"])
        .ok()
        .stdout
        .trim()
        .to_string();
    (render_record(&record(name, &base, None)).unwrap(), base)
}

/// A summary that is not one (bad types, negative counts, a tip that is no id) is ignored and
/// computed again; huge counts for the current tip are shown as numbers; a record with an
/// integer beyond what TOML holds, or a record of 100 MB, is refused (with a hint for the
/// latter) before anything is shown.
#[test]
fn hostile_records_are_refused_or_shown_safely() {
    let env = TestEnv::local();
    let (text, base) = rendered(&env, "typed");
    let tip = work(&env, &base, &[("x.txt", "1\n2\n")]);
    for (name, table) in [
        (
            "typed",
            format!("tip = \"{tip}\"\nfiles = \"many\"\ninsertions = 1\ndeletions = 1\n"),
        ),
        (
            "negative",
            format!("tip = \"{tip}\"\nfiles = -1\ninsertions = 1\ndeletions = 1\n"),
        ),
        (
            "notid",
            "tip = \"HEAD\"\nfiles = 9\ninsertions = 9\ndeletions = 9\n".to_string(),
        ),
        (
            "nested",
            format!("tip = \"{tip}\"\nfiles = {{ a = 1 }}\ninsertions = 1\ndeletions = 1\n"),
        ),
    ] {
        let text = text.replace("name = \"typed\"", &format!("name = \"{name}\""));
        plant_raw(&env, name, format!("{text}\n[changes]\n{table}").as_bytes());
        env.git(&["update-ref", &format!("refs/agent/{name}/head"), &tip])
            .ok();
    }
    let listed = env.json(&["list", "--json"])["tasks"].clone();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_summaries(&env, listed);
    assert!(listed.iter().all(|r| r["files_changed"] == 1), "{listed:?}");

    // Huge but valid counts are the record's word, shown as they are.
    let big = i64::MAX;
    let huge = text.replace("name = \"typed\"", "name = \"huge\"");
    plant_raw(
        &env,
        "huge",
        format!(
            "{huge}\n[changes]\ntip = \"{tip}\"\nfiles = {big}\ninsertions = {big}\ndeletions = 0\n"
        )
        .as_bytes(),
    );
    env.git(&["update-ref", "refs/agent/huge/head", &tip]).ok();
    let listed = env.json(&["list", "--json"])["tasks"].clone();
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["task"] == "huge")
        .unwrap()
        .clone();
    assert_eq!(row["files_changed"].as_u64(), Some(big as u64), "{row}");
    let table = env.agent(&["list"]).ok();
    assert!(
        table.stdout.contains(&format!("{big} files +{big} -0")),
        "{table}"
    );

    // Beyond TOML's integers: the record does not read, and list says so.
    let over = text.replace("name = \"typed\"", "name = \"over\"");
    plant_raw(
        &env,
        "over",
        format!("{over}\n[changes]\ntip = \"{tip}\"\nfiles = 99999999999999999999\ninsertions = 1\ndeletions = 1\n")
            .as_bytes(),
    );
    let refused = env.agent(&["list"]);
    assert_eq!(refused.code, 1, "{refused}");
    assert!(refused.stderr.contains("unreadable"), "{refused}");
    env.git(&["update-ref", "-d", "refs/agent/over/state"]).ok();

    // A record of 100 MB is refused from its size, with the way out.
    let mut huge_record = text
        .replace("name = \"typed\"", "name = \"bloated\"")
        .into_bytes();
    huge_record.extend(std::iter::repeat_n(b'#', 100 << 20));
    plant_raw(&env, "bloated", &huge_record);
    let refused = env.agent(&["list"]).fails();
    assert!(refused.stderr.contains("task 'bloated'"), "{refused}");
    assert!(refused.stderr.contains("more than the"), "{refused}");
    assert!(
        refused
            .stderr
            .contains("refs/agent/bloated/ | git update-ref --stdin"),
        "{refused}"
    );
    let refused = env.agent(&["status", "bloated"]).fails();
    assert!(refused.stderr.contains("task 'bloated'"), "{refused}");
    // The way out the hint names works.
    let _ = std::process::Command::new("sh")
        .current_dir(&env.repo)
        .args([
            "-c",
            "git for-each-ref --format='delete %(refname)' refs/agent/bloated/ | git update-ref --stdin",
        ])
        .status()
        .unwrap();
    assert_eq!(
        env.json(&["list", "--json"])["tasks"]
            .clone()
            .as_array()
            .unwrap()
            .len(),
        5
    );
}
