//! Many commands at once on one running task while its agent commits: 10 processes x 50
//! operations mixing `sync`, `status`, `allow` and `commit`. Every one must succeed (a
//! commit may find nothing new, and must say so), with no engine conflict or empty message
//! reaching the user, and the task, its gateway and its refs must be whole afterwards.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::common::{Run, TestEnv};
use crate::require_docker;
use crate::sync_races::{BUSY_AGENT, check_snapshot};

const PROCS: usize = 10;
const OPS: usize = 50;

/// The operation a process runs at step `i`. Commands that change the task (sync, commit,
/// allow) run one at a time under its lock, so they are the rarer ones; `status` fills the
/// rest, which keeps the run within its time budget on two busy cores.
fn op(proc_no: usize, i: usize) -> &'static str {
    // Each process runs every kind at different steps (7 is prime to 50: a permutation).
    match (proc_no * 13 + i * 7) % OPS {
        0 | 25 => "sync",
        12 => "commit",
        6 | 37 => "allow",
        _ => "status",
    }
}

/// What is wrong with one run's output, if anything.
fn problem(kind: &str, run: &Run) -> Option<String> {
    let err = &run.stderr;
    for bad in ["Conflict", "panicked", "RUST_BACKTRACE"] {
        if err.contains(bad) {
            return Some(format!("{kind}: stderr mentions {bad:?}"));
        }
    }
    // The engine's status as a word of its own (a commit id may well contain "409").
    if err
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| w == "409")
    {
        return Some(format!("{kind}: stderr mentions HTTP 409"));
    }
    for line in err.lines() {
        let l = line.trim_end();
        if (l.starts_with("Error:") || l.starts_with("Hint:")) && (l.ends_with(':') || l.len() < 8)
        {
            return Some(format!("{kind}: empty cause in {l:?}"));
        }
    }
    match (kind, run.code) {
        (_, 0) => None,
        ("commit", 1)
            if err.contains("Error: task 'race' has nothing new to commit")
                && err.contains("Hint: ") =>
        {
            None
        }
        _ => Some(format!("{kind} exited {}", run.code)),
    }
}

#[test]
fn ten_processes_of_fifty_operations_on_one_working_task() {
    require_docker!();
    let env = TestEnv::new();
    let user = env.user_snapshot();
    env.agent(&[
        "spawn", "--name", "race", "-m", "x", "--", "sh", "-c", BUSY_AGENT,
    ])
    .ok();

    let started = Instant::now();
    let results: Vec<(&str, Run, std::time::Duration)> = std::thread::scope(|s| {
        let env = &env;
        let handles: Vec<_> = (0..PROCS)
            .map(|p| {
                s.spawn(move || {
                    (0..OPS)
                        .map(|i| {
                            let kind = op(p, i);
                            let t = Instant::now();
                            let run = match kind {
                                "sync" => env.agent(&["sync", "race"]),
                                "status" => env.agent(&["status", "race"]),
                                "allow" => {
                                    env.agent(&["allow", "race", &format!("d{p}-{i}.example.com")])
                                }
                                _ => env.agent(&["commit", "race", "-m", &format!("wip {p}-{i}")]),
                            };
                            (kind, run, t.elapsed())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let wall = started.elapsed();

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut secs: BTreeMap<&str, f64> = BTreeMap::new();
    let mut problems = Vec::new();
    for (kind, run, took) in &results {
        *secs.entry(kind).or_default() += took.as_secs_f64();
        let outcome = match problem(kind, run) {
            None if run.code == 0 => "ok",
            None => "nothing-new",
            Some(p) => {
                problems.push(format!("{p}\n{run}"));
                "FAILED"
            }
        };
        *counts.entry(format!("{kind} {outcome}")).or_default() += 1;
    }
    eprintln!(
        "races: {} operations in {:.1}s: {counts:?}; seconds spent per kind: {secs:.1?}",
        results.len(),
        wall.as_secs_f64()
    );
    assert_eq!(results.len(), PROCS * OPS);
    assert!(
        problems.is_empty(),
        "{} of {} operations failed; the first ones:\n{}",
        problems.len(),
        results.len(),
        problems
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n=====\n")
    );

    // The task still runs, and so does its gateway.
    let status = env.agent(&["status", "race"]).ok();
    assert!(status.stdout.contains("running"), "{status}");
    let names = env.names_of("race");
    let gw = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Running}}", &names.gateway])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&gw.stdout).trim(), "true");

    // Every commit on agent/race is the user's.
    let authors = env
        .git(&["log", "--format=%an <%ae> %cn <%ce>", "agent/race"])
        .ok()
        .stdout;
    for line in authors.lines() {
        assert_eq!(
            line, "Test User <test@example.com> Test User <test@example.com>",
            "a commit on agent/race is not the user's"
        );
    }

    // The task's refs are whole: head a consistent agent commit, wip its child, and the
    // repository clean.
    let refs = env.task_refs("race");
    let head = refs.get("head").expect("head").clone();
    check_snapshot(&env, &head, refs.get("wip").map(String::as_str));
    env.git(&["merge-base", "--is-ancestor", &refs["base"], &head])
        .ok();
    env.git(&["fsck", "--no-progress"]).ok();
    assert_eq!(env.user_snapshot(), user);
}
