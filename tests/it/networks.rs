//! Task networks at scale: each task's network gets a small subnet from git-agent's own range
//! (`agent.subnets`), so the engine's default address pools never run out; a run that has
//! ended gives its network and gateway back (workspace and refs stay) and `restart` makes
//! them anew; fifty tasks start at once; the range comes only from the user's git config.

use std::process::Command;

use git_agent::runtime::Runtime;
use git_agent::runtime::docker::DockerRuntime;
use git_agent::runtime::subnet::Ipv4Net;
use git_agent::sandbox::network::{self, SubnetRange};

use crate::common::{Run, TestEnv};
use crate::require_docker;
use crate::servers::OuterServer;

fn run_of(out: std::process::Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn docker(args: &[&str]) -> Run {
    run_of(Command::new("docker").args(args).output().unwrap())
}

/// The IPv4 subnet the engine gave network `name` (empty when there is no such network).
fn engine_subnet(name: &str) -> String {
    docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
        name,
    ])
    .stdout
    .trim()
    .to_string()
}

/// The subnet in a task's record (`None` when it records none).
fn recorded_subnet(env: &TestEnv, task: &str) -> Option<String> {
    let toml = env
        .git(&["show", &format!("refs/agent/{task}/state:task.toml")])
        .ok()
        .stdout;
    let record: toml::Table = toml::from_str(&toml).unwrap();
    record["sandbox"]
        .get("subnet")
        .and_then(|s| s.as_str())
        .map(str::to_string)
}

fn in_range(range: &str, subnet: &str) -> bool {
    let range = Ipv4Net::parse(range).unwrap();
    Ipv4Net::parse(subnet).is_some_and(|s| range.contains(&s) && s.prefix() == 28)
}

/// The probe of the way out: through the gateway to an allowed and a denied host, and
/// around it.
fn probe(server_ip: &str) -> String {
    crate::servers::proxy_probe(
        &[("allowed", "allowed.test"), ("denied", "denied.test")],
        Some(server_ip),
    )
}

/// Wait (bounded) for a container to exit.
fn wait_exited(container: &str) {
    let out = Command::new("timeout")
        .args(["120", "docker", "wait", container])
        .output()
        .unwrap();
    assert!(out.status.success(), "{container} did not end");
}

/// A task's run ends by itself: its gateway and network are gone (workspace, container and
/// refs stay) and `list`/`status` see nothing wrong. `restart` gives it a new network with a
/// subnet from the range, recorded, and a gateway that lets it reach exactly what its policy
/// allows; once that run ends, the next command that notices gives both back again.
#[test]
fn a_finished_task_gives_back_its_network_and_restart_makes_a_new_one() {
    require_docker!();
    let env = TestEnv::new();
    let outside = OuterServer::start(
        "netrel",
        &["allowed.test", "denied.test"],
        "hello from the outside",
    );
    env.git(&["config", "agent.egressNetwork", &outside.network])
        .ok();
    env.git(&["config", "agent.allowAddress", &outside.ip()])
        .ok();
    env.git(&["config", "agent.allowPort", "8000"]).ok();
    let script = probe(&outside.ip());
    let run = env.agent(&[
        "spawn",
        "--name",
        "rel",
        "--allow",
        "allowed.test",
        "-m",
        "probe",
        "--wait",
        "--",
        "perl",
        "-e",
        &script,
    ]);
    assert_eq!(run.code, 0, "{run}");
    let logs = env.agent(&["logs", "rel"]).ok().stdout;
    assert!(logs.contains("allowed: HTTP/1.0 200 OK +body"), "{logs}");
    assert!(logs.contains("denied: HTTP/1.1 403"), "{logs}");
    assert!(logs.contains("direct: failed"), "{logs}");

    let names = env.names_of("rel");
    let (containers, volumes, networks) = env.runtime_objects();
    assert!(networks.is_empty(), "network kept: {networks:?}");
    assert!(!containers.contains(&names.gateway), "{containers:?}");
    assert!(containers.contains(&names.container), "{containers:?}");
    assert!(volumes.contains(&names.volume), "{volumes:?}");
    assert!(env.task_refs("rel").contains_key("state"));
    assert_eq!(env.network_of("rel"), None);
    assert_eq!(recorded_subnet(&env, "rel"), None);
    // A finished task without a network is normal.
    let list = env.json(&["list", "--json"])["tasks"].clone();
    assert_eq!(list[0]["problems"], serde_json::json!([]), "{list}");
    let status = env.agent(&["status", "rel"]).ok().stdout;
    assert!(status.contains("status:    exited (exit 0)"), "{status}");
    assert!(status.contains("network:   -"), "{status}");

    // restart: a new network, in the range, recorded; the way out works as before.
    let restart = env.agent(&["restart", "rel"]);
    assert_eq!(restart.code, 0, "{restart}");
    let subnet = engine_subnet(&names.network);
    assert!(
        in_range(network::DEFAULT_RANGE, &subnet),
        "subnet {subnet:?}"
    );
    assert_eq!(
        recorded_subnet(&env, "rel").as_deref(),
        Some(subnet.as_str())
    );
    assert_eq!(
        env.network_of("rel").as_deref(),
        Some(names.network.as_str())
    );
    wait_exited(&names.container);
    let logs = env.agent(&["logs", "rel"]).ok().stdout;
    assert!(logs.contains("allowed: HTTP/1.0 200 OK +body"), "{logs}");
    assert!(logs.contains("denied: HTTP/1.1 403"), "{logs}");
    assert!(logs.contains("direct: failed"), "{logs}");
    // Read-only commands record nothing and remove nothing...
    let (_, _, networks) = env.runtime_objects();
    assert_eq!(networks, vec![names.network.clone()]);
    // ...the next command that changes the task gives the network back.
    env.agent(&["sync", "rel"]).ok();
    let (containers, _, networks) = env.runtime_objects();
    assert!(networks.is_empty(), "network kept: {networks:?}");
    assert!(!containers.contains(&names.gateway), "{containers:?}");
    assert_eq!(recorded_subnet(&env, "rel"), None);

    // stop gives it back too (a run that did not end by itself).
    env.agent(&["restart", "rel"]).ok();
    let (_, _, networks) = env.runtime_objects();
    assert_eq!(networks, vec![names.network.clone()]);
    env.agent(&["stop", "--timeout", "1", "rel"]).ok();
    let (containers, _, networks) = env.runtime_objects();
    assert!(networks.is_empty(), "network kept: {networks:?}");
    assert!(!containers.contains(&names.gateway), "{containers:?}");
}

/// Fifty tasks spawned at once (ten `spawn` processes at a time), on a range of 128 subnets
/// so that concurrent spawns do meet: all start, each on its own subnet inside the range;
/// once stopped, none holds a network or a gateway.
#[test]
fn fifty_tasks_start_at_once_and_finished_ones_hold_no_networks() {
    require_docker!();
    const TASKS: usize = 50;
    const AT_ONCE: usize = 10;
    let range = "10.243.8.0/21";
    let env = TestEnv::new();
    env.git(&["config", "agent.subnets", range]).ok();
    // The image is built once, before the crowd.
    env.agent(&["spawn", "--name", "warm", "--wait", "-m", "x", "--", "true"])
        .ok();
    let names: Vec<String> = (0..TASKS).map(|i| format!("crowd-{i:02}")).collect();
    let spawn_all = |args: &dyn Fn(&str) -> Vec<String>| -> Vec<(String, Run)> {
        let mut results = Vec::new();
        for chunk in names.chunks(AT_ONCE) {
            let children: Vec<_> = chunk
                .iter()
                .map(|n| {
                    let a = args(n);
                    let a: Vec<&str> = a.iter().map(String::as_str).collect();
                    let mut c = env.agent_command(&a);
                    c.stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped());
                    (n.clone(), c.spawn().unwrap())
                })
                .collect();
            for (n, c) in children {
                results.push((n, run_of(c.wait_with_output().unwrap())));
            }
        }
        results
    };
    let started = std::time::Instant::now();
    let spawned = spawn_all(&|n| {
        ["spawn", "--name", n, "-m", "idle", "--", "sleep", "600"]
            .map(str::to_string)
            .to_vec()
    });
    eprintln!(
        "{TASKS} spawns, {AT_ONCE} at a time: {:?}",
        started.elapsed()
    );
    let failed: Vec<_> = spawned.iter().filter(|(_, r)| r.code != 0).collect();
    assert!(failed.is_empty(), "failed spawns: {failed:#?}");

    let list = env.json(&["list", "--json"])["tasks"].clone();
    let mut subnets = std::collections::BTreeSet::new();
    for n in &names {
        let row = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["task"] == n.as_str())
            .unwrap_or_else(|| panic!("{n} not listed: {list}"));
        assert_eq!(row["status"], "running", "{row}");
        assert_eq!(row["problems"], serde_json::json!([]), "{row}");
        // Its own network, or the spare's it claimed (see `sandbox::spare`).
        let subnet = engine_subnet(&env.network_of(n).unwrap());
        assert!(in_range(range, &subnet), "{n}: {subnet:?}");
        assert_eq!(recorded_subnet(&env, n).as_deref(), Some(subnet.as_str()));
        assert!(subnets.insert(subnet.clone()), "{subnet} given twice");
    }

    let stopped = spawn_all(&|n| ["stop", "--timeout", "1", n].map(str::to_string).to_vec());
    let failed: Vec<_> = stopped.iter().filter(|(_, r)| r.code != 0).collect();
    assert!(failed.is_empty(), "failed stops: {failed:#?}");
    let (containers, volumes, networks) = env.runtime_objects();
    assert!(
        networks.is_empty(),
        "finished tasks hold networks: {networks:?}"
    );
    assert!(
        !containers.iter().any(|c| c.contains(".gw.")),
        "gateways left: {containers:?}"
    );
    // Their workspaces stay.
    assert!(volumes.len() > TASKS, "{}", volumes.len());
}

/// Many creations at once from one small range, through the engine: each gets its own
/// subnet (a creation that loses its subnet to another picks again); a full range is an
/// error saying what to do.
#[test]
fn concurrent_creations_pick_distinct_subnets() {
    require_docker!();
    let tag = format!("ga-nettest-{}", std::process::id());
    // 16 subnets, 12 creators.
    let range = SubnetRange::parse("10.244.77.0/24").unwrap();
    let made: Vec<anyhow::Result<Ipv4Net>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let tag = &tag;
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let engine = DockerRuntime::connect().await?;
                        let labels = std::collections::HashMap::from([(
                            "git-agent.nettest".to_string(),
                            tag.clone(),
                        )]);
                        let made = network::create(&engine, &range, &format!("{tag}-{i}"), &labels)
                            .await?;
                        // Docker takes fixed addresses: every network has a subnet.
                        made.ok_or_else(|| anyhow::anyhow!("no subnet from Docker"))
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let cleanup = || {
        for i in 0..16 {
            docker(&["network", "rm", &format!("{tag}-{i}")]);
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for m in &made {
        match m {
            Ok(s) => {
                assert!(range.net().contains(s), "{s}");
                assert!(seen.insert(*s), "{s} given twice");
            }
            Err(e) => {
                cleanup();
                panic!("a creation failed: {e:#}");
            }
        }
    }
    // The four left fill the range; the next is refused with a hint.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let full = rt.block_on(async {
        let engine = DockerRuntime::connect().await.unwrap();
        let labels =
            std::collections::HashMap::from([("git-agent.nettest".to_string(), tag.clone())]);
        for i in 12..16 {
            network::create(&engine, &range, &format!("{tag}-{i}"), &labels)
                .await
                .unwrap();
        }
        let e = network::create(&engine, &range, &format!("{tag}-x"), &labels)
            .await
            .unwrap_err();
        assert!(!engine.network_exists(&format!("{tag}-x")).await.unwrap());
        e
    });
    cleanup();
    let shown = git_agent::error::render(&full);
    assert!(
        shown[0].starts_with("Error: no free subnet left in agent.subnets (10.244.77.0/24)"),
        "{shown:?}"
    );
    assert!(shown[1].contains("git config agent.subnets"), "{shown:?}");
}

/// `agent.subnets` that is not a private range of /24 or more is refused before anything is
/// made, saying what is wrong and how to fix it.
#[cfg(feature = "local-runtime")]
#[test]
fn bad_subnet_ranges_are_refused_with_a_hint() {
    let env = TestEnv::local();
    for (value, why) in [
        ("garbage", "not an IPv4 network"),
        ("8.8.0.0/16", "not a private range"),
        ("10.242.0.0/26", "too small"),
    ] {
        env.git(&["config", "agent.subnets", value]).ok();
        let run = env.agent(&["spawn", "--name", "bad", "-m", "x", "--", "true"]);
        assert_ne!(run.code, 0, "{run}");
        assert!(
            run.stderr.contains(&format!(
                "Error: bad value '{value}' for agent.subnets: {why}"
            )),
            "{run}"
        );
        assert!(
            run.stderr
                .contains("Hint: set a private IPv4 range of /24 or larger"),
            "{run}"
        );
        assert!(env.task_refs("bad").is_empty(), "{run}");
        let (c, v, n) = env.local_objects();
        assert!(
            c.is_empty() && v.is_empty() && n.is_empty(),
            "{c:?} {v:?} {n:?}"
        );
    }
}

/// Attack: a repository's own files try to choose the addresses of the user's task networks
/// (a range overlapping the engine's default bridge). None of them is read: git config comes
/// from the user, and `.git-agent/config.toml` refuses settings it does not know.
#[cfg(feature = "local-runtime")]
#[test]
fn a_repository_cannot_set_the_subnet_range() {
    let env = TestEnv::local();
    let evil = "[agent]\n\tsubnets = 172.17.0.0/16\n";
    env.write(".gitconfig", evil);
    env.write(".git-agent/config", evil);
    env.write(".git-agent/gitconfig", evil);
    env.write(".git-agent/agent.subnets", "172.17.0.0/16\n");
    env.git(&["add", "."]).ok();
    env.git(&["commit", "-qm", "choose the user's addresses"])
        .ok();
    env.agent(&["spawn", "--name", "t", "--wait", "-m", "x", "--", "true"])
        .ok();
    // Its network was made from the default range (and given back once it ended).
    let subnet = env
        .git(&["log", "--format=%H", "refs/agent/t/state"])
        .ok()
        .stdout
        .lines()
        .filter_map(|c| {
            let toml = env.git(&["show", &format!("{c}:task.toml")]).stdout;
            let record: toml::Table = toml::from_str(&toml).ok()?;
            record["sandbox"]
                .get("subnet")?
                .as_str()
                .map(str::to_string)
        })
        .next()
        .expect("a recorded subnet");
    assert!(in_range(network::DEFAULT_RANGE, &subnet), "{subnet}");
    assert!(env.local_objects().2.is_empty());

    // The repository's settings file may only add domains: a range there is refused.
    env.write(
        ".git-agent/config.toml",
        "[network]\nsubnets = \"172.17.0.0/16\"\n",
    );
    let run = env.agent(&["spawn", "--name", "t2", "-m", "x", "--", "true"]);
    assert_ne!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains("unknown setting 'network.subnets'"),
        "{run}"
    );
    assert!(env.task_refs("t2").is_empty());
}
