//! `image list` and `image prune` against the real engine: what uses an image, what prune may
//! remove, and images that only look like git-agent's.
//!
//! Other test runs share this engine and its images, so every prune that removes anything
//! names the images this test built, and `--all` runs only with `--dry-run`; assertions are
//! about this test's own images only.

use std::process::{Command, Stdio};

use crate::common::*;
use crate::require_docker;

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn image_exists(image: &str) -> bool {
    docker(&["image", "inspect", image]).status.success()
}

/// A unique word for this run.
fn unique() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}{t}", std::process::id())
}

/// Build this repository's image with a stack only this test has (so its tag is this test's
/// own); returns the tag.
fn build_own(env: &TestEnv, word: &str) -> String {
    let dir = env.home.path().join(".config/git-agent/dockerfiles/stacks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("imgtest.dockerfile"),
        format!("ENV GIT_AGENT_IMAGE_TEST={word}\n"),
    )
    .unwrap();
    let run = env.agent(&["image", "build"]).ok();
    run.stdout.split_whitespace().next().unwrap().to_string()
}

/// Build an image git-agent did not make, from a Dockerfile anyone could write.
fn build_foreign(tag: &str, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {}\nLABEL git-agent.image=\"{label}\"\n", base_image()),
    )
    .unwrap();
    let out = docker(&["build", "-q", "-t", tag, dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn entry<'a>(doc: &'a serde_json::Value, key: &str, tag: &str) -> Option<&'a serde_json::Value> {
    doc[key]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tag"] == tag)
}

#[test]
fn list_and_prune_only_touch_unused_git_agent_images() {
    require_docker!();
    // Declared first, dropped last: after the environment removed its containers.
    let mut made = Made(Vec::new());
    let env = TestEnv::new();
    env.git(&["config", "agent.defaultAgent", "exec"]).ok();
    env.git(&["config", "agent.stack", "imgtest"]).ok();
    let run_id = unique();

    // T1: a task ran in it and its container was removed (the task still names it).
    let t1 = build_own(&env, &format!("{run_id}-1"));
    env.finished_task("gone", "gone.txt");
    env.agent(&["rm", "gone"]).ok();
    // T2: a task ran in it and its stopped container is still there.
    let t2 = build_own(&env, &format!("{run_id}-2"));
    env.finished_task("held", "held.txt");
    // T3: nothing uses it.
    let t3 = build_own(&env, &format!("{run_id}-3"));
    // T4: the repository's current image.
    let t4 = build_own(&env, &format!("{run_id}-4"));
    made.0.extend([&t1, &t2, &t3, &t4].map(|t| t.to_string()));
    let ours = [&t1, &t2, &t3, &t4];
    for t in ours {
        assert!(t.starts_with("git-agent:"), "{t}");
    }
    assert_eq!(
        ours.iter().collect::<std::collections::BTreeSet<_>>().len(),
        4
    );

    // Images that only look like git-agent's: another name with our label, our name with no
    // label, our label naming one of our tags on a foreign name.
    let evil = [
        format!("git-agent-evil-{run_id}:x"),
        format!("evil-{run_id}:latest"),
        format!(
            "git-agent:{}",
            sha2_like(run_id.as_bytes())
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
    ];
    made.0.extend(evil.iter().cloned());
    build_foreign(&evil[0], &evil[0]);
    build_foreign(&evil[1], &t3);
    build_foreign(&evil[2], "someone else");

    let list = env.json(&["image", "list", "--json"]);
    assert_eq!(list["schema"], 1);
    let e1 = entry(&list, "images", &t1).expect("T1 listed");
    assert_eq!(e1["tasks"], serde_json::json!(["gone"]), "{e1}");
    assert_eq!(e1["containers"], 0, "{e1}");
    assert_eq!(e1["current"], false);
    assert_eq!(e1["in_use"], true);
    assert_eq!(e1["kind"], "sandbox");
    assert!(e1["size"].as_u64().unwrap() > 0);
    let e2 = entry(&list, "images", &t2).expect("T2 listed");
    assert_eq!(e2["tasks"], serde_json::json!(["held"]), "{e2}");
    assert!(e2["containers"].as_u64().unwrap() >= 1, "{e2}");
    let e3 = entry(&list, "images", &t3).expect("T3 listed");
    assert_eq!(e3["in_use"], false, "{e3}");
    assert_eq!(e3["containers"], 0);
    let e4 = entry(&list, "images", &t4).expect("T4 listed");
    assert_eq!(e4["current"], true, "{e4}");
    for bad in &evil {
        assert!(
            entry(&list, "images", bad).is_none(),
            "{bad} listed: {list}"
        );
    }
    let text = env.agent(&["image", "list"]).ok().stdout;
    assert!(text.contains(&t3) && text.contains("unused"), "{text}");
    assert!(text.contains("tasks: held"), "{text}");

    // Dry runs: without --all only the unused one goes; with --all also those tasks or the
    // plan name, never one a container is made from.
    let dry = env.json(&["image", "prune", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert!(entry(&dry, "removed", &t3).is_some(), "{dry}");
    for kept in [&t1, &t2, &t4] {
        assert!(entry(&dry, "removed", kept).is_none(), "{kept}: {dry}");
        assert!(entry(&dry, "kept", kept).is_some(), "{kept}: {dry}");
    }
    let all = env.json(&["image", "prune", "--all", "--dry-run", "--json"]);
    assert_eq!(all["all"], true);
    for gone in [&t1, &t3, &t4] {
        assert!(entry(&all, "removed", gone).is_some(), "{gone}: {all}");
    }
    assert!(entry(&all, "removed", &t2).is_none(), "{all}");
    assert!(
        entry(&all, "kept", &t2).unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("container"),
        "{all}"
    );
    for bad in &evil {
        assert!(entry(&all, "removed", bad).is_none(), "{bad}: {all}");
    }
    for t in ours.iter().copied().chain(evil.iter()) {
        assert!(image_exists(t), "a dry run removed {t}");
    }

    // An image git-agent did not make cannot be named to prune.
    for bad in &evil {
        let refused = env.agent(&["image", "prune", bad]).fails();
        assert!(
            refused.stderr.contains("Error:") && refused.stderr.contains("Hint:"),
            "{refused}"
        );
        assert!(image_exists(bad), "{bad} was removed");
    }

    // The real prune, limited to this test's images: only the unused one goes.
    let pruned = env.json(&["image", "prune", "--json", &t1, &t2, &t3, &t4]);
    assert_eq!(pruned["dry_run"], false);
    let removed: Vec<&str> = pruned["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["tag"].as_str().unwrap())
        .collect();
    assert_eq!(removed, [t3.as_str()], "{pruned}");
    assert!(pruned["freed"].as_u64().unwrap() > 0, "{pruned}");
    assert!(!image_exists(&t3));
    for t in [&t1, &t2, &t4] {
        assert!(image_exists(t), "{t} was removed");
    }
    for bad in &evil {
        assert!(image_exists(bad), "{bad} was removed");
    }
    // Even named and with --all, the image of a stopped container stays.
    let held = env.agent(&["image", "prune", "--all", &t2]).ok();
    assert!(held.stderr.contains(&format!("kept {t2}")), "{held}");
    assert!(image_exists(&t2));
    // Text output: what went and the space freed.
    let text = env.agent(&["image", "prune", "--all", &t1]).ok();
    assert!(text.stdout.contains(&format!("removed {t1}")), "{text}");
    assert!(text.stderr.contains("freed"), "{text}");
    assert!(!image_exists(&t1));

    // Clean up what this test made (the task's container first, then the images as `made`
    // is dropped).
    env.agent(&["purge", "held", "gone"]).ok();
}

/// Images this test made, removed (by their tags, never forced) when it ends, however.
struct Made(Vec<String>);

impl Drop for Made {
    fn drop(&mut self) {
        for t in &self.0 {
            let _ = Command::new("docker").args(["rmi", t]).output();
        }
    }
}

/// A deterministic scramble of `bytes` (enough for a tag nobody else uses).
fn sha2_like(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

#[test]
fn prune_names_an_unknown_image_with_a_hint() {
    require_docker!();
    let env = TestEnv::new();
    let run = env
        .agent(&["image", "prune", "--dry-run", "no-such-image:x"])
        .fails();
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("Error:"), "{run}");
    assert!(run.stderr.contains("git agent image list"), "{run}");
}

#[cfg(feature = "local-runtime")]
#[test]
fn list_and_prune_on_the_local_runtime() {
    let env = TestEnv::local();
    env.git(&["config", "agent.defaultAgent", "exec"]).ok();
    env.finished_task("one", "one.txt");
    let list = env.json(&["image", "list", "--json"]);
    let images = list["images"].as_array().unwrap();
    let sandbox: Vec<&serde_json::Value> =
        images.iter().filter(|e| e["kind"] == "sandbox").collect();
    assert_eq!(sandbox.len(), 1, "{list}");
    assert_eq!(sandbox[0]["current"], true);
    assert_eq!(sandbox[0]["tasks"], serde_json::json!(["one"]));
    let dry = env.json(&["image", "prune", "--all", "--dry-run", "--json"]);
    assert!(
        entry(&dry, "kept", sandbox[0]["tag"].as_str().unwrap()).is_some(),
        "{dry}"
    );
    env.agent(&["rm", "one"]).ok();
    let tag = sandbox[0]["tag"].as_str().unwrap();
    let pruned = env.json(&["image", "prune", "--all", "--json", tag]);
    assert!(entry(&pruned, "removed", tag).is_some(), "{pruned}");
    let after = env.json(&["image", "list", "--json"]);
    assert!(entry(&after, "images", tag).is_none(), "{after}");
}
