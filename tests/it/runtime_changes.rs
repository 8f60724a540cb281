//! Changes of a running task's runtime (`allow`, gateway reloads, `restart`) are serialised
//! and checked: many `allow`s at once all land in the record AND in the live gateway, a
//! reload that fails is an error with a hint, and `restart` refuses a workspace that lost the
//! task's repository (with `restart --reseed` to bring it back from the synced work).

use std::collections::BTreeMap;

use crate::common::{Run, TestEnv};
use crate::require_docker;
use crate::servers::docker;

/// Spawn a task that keeps running (an exec agent sleeping).
fn running_task(env: &TestEnv, name: &str) {
    env.agent(&["spawn", "--name", name, "-m", "x", "--", "sleep", "600"])
        .ok();
}

/// Ask the task's gateway, from inside the task, about each name: `allowed` when the proxy
/// lets a CONNECT through its policy (the name then fails to resolve: 502), `denied` when the
/// policy refuses it (403), else what happened.
fn gateway_verdicts(env: &TestEnv, task: &str, names: &[String]) -> BTreeMap<String, String> {
    let mut script = String::from(
        r#"use IO::Socket::INET; $| = 1;
sub ask { my ($n) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5) or return "no-proxy";
  print $s "CONNECT $n:443 HTTP/1.1\r\n\r\n"; my $l = <$s>; $l //= "closed";
  return $l =~ / 403 / ? "denied" : $l =~ /\(resolve\)|\(connect\)| 502 / ? "allowed" : "other:$l"; }
"#,
    );
    for n in names {
        script += &format!("print \"{n}=\", ask(\"{n}\"), \"\\n\";\n");
    }
    let run = run_of(
        std::process::Command::new("docker")
            .args(["exec", "-i", &env.container_of(task), "perl", "-e", &script])
            .output()
            .unwrap(),
    );
    run.stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn run_of(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn gateway_running(env: &TestEnv, task: &str) -> bool {
    docker(&[
        "inspect",
        "-f",
        "{{.State.Running}}",
        &env.names_of(task).gateway,
    ])
    .stdout
    .trim()
        == "true"
}

/// 20 `allow`s of different domains at once against a running task: every one succeeds, all
/// 20 are in the record and in the live gateway's policy, and the gateway still runs.
#[test]
fn concurrent_allows_all_land_in_record_and_gateway() {
    require_docker!();
    let env = TestEnv::new();
    running_task(&env, "many");
    let domains: Vec<String> = (0..20).map(|i| format!("d{i}.example.com")).collect();
    let children: Vec<_> = domains
        .iter()
        .map(|d| {
            env.agent_command(&["allow", "many", d])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let runs: Vec<Run> = children
        .into_iter()
        .map(|c| run_of(c.wait_with_output().unwrap()))
        .collect();
    for r in &runs {
        assert_eq!(r.code, 0, "{r}");
    }
    assert!(gateway_running(&env, "many"), "the gateway died");
    let st = env.json(&["status", "--json", "many"]);
    let recorded: Vec<String> = st["network"]["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    for d in &domains {
        assert!(recorded.contains(d), "{d} not recorded: {recorded:?}");
    }
    let mut names = domains.clone();
    names.push("never.example.org".into());
    let v = gateway_verdicts(&env, "many", &names);
    for d in &domains {
        assert_eq!(v.get(d).map(String::as_str), Some("allowed"), "{d}: {v:?}");
    }
    assert_eq!(v["never.example.org"], "denied", "{v:?}");
}
