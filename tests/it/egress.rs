//! Attacks on the network boundary from inside real tasks: the only way out is the task's
//! gateway, which allows hosts by domain, records every decision, and holds the agent's real
//! API key in its vault. The test servers live on the gateway's outer network, reached by
//! name, as a real API or registry would be.

use std::net::TcpListener;
use std::process::Command;

use crate::common::{Run, TestEnv, base_image, bounded_output};
use crate::fake_anthropic::{FakeAnthropic, Step};
use crate::require_docker;
use crate::servers::OuterServer;

/// An outer network with a plain HTTP server answering as `allowed.test` and `denied.test`.
fn outside(tag: &str) -> OuterServer {
    OuterServer::start(
        tag,
        &["allowed.test", "denied.test"],
        "hello from the outside",
    )
}

/// Open the test server the user's way: its address (a private one on the outer network) and
/// its port, in the user's git config. Without this the gateway refuses it.
fn open_for(env: &TestEnv, outside: &OuterServer) {
    env.git(&["config", "agent.allowAddress", &outside.ip()])
        .ok();
    env.git(&["config", "agent.allowPort", "8000"]).ok();
}

/// A perl probe (the base image has perl, no curl) run as the task: each line it prints is
/// `name: result`.
fn probe(direct: &[(&str, String)], names: &[&str]) -> String {
    let mut p = String::from(
        r#"use IO::Socket::INET;
$| = 1;
sub proxy { my ($raw) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5) or return "no proxy: $!";
  print $s $raw; my $all = join("", <$s>); my ($l) = split(/\r?\n/, $all);
  return $all =~ /hello from the outside/ ? "$l +body" : $l; }
sub direct { my ($addr) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => $addr, Timeout => 3);
  return $s ? "CONNECTED" : "failed"; }
print "get-allowed: ", proxy("GET http://allowed.test:8000/ HTTP/1.0\r\nHost: allowed.test\r\n\r\n"), "\n";
print "get-denied: ", proxy("GET http://denied.test:8000/ HTTP/1.0\r\nHost: denied.test\r\n\r\n"), "\n";
print "connect-allowed: ", proxy("CONNECT allowed.test:8000 HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\n\r\n"), "\n";
print "connect-denied: ", proxy("CONNECT denied.test:8000 HTTP/1.1\r\n\r\nGET / HTTP/1.0\r\n\r\n"), "\n";
"#,
    );
    for (name, addr) in direct {
        p += &format!("print \"direct-{name}: \", direct(\"{addr}\"), \"\\n\";\n");
    }
    for n in names {
        p += &format!(
            "print \"dns-{n}: \", (gethostbyname(\"{n}\") ? \"RESOLVED\" : \"failed\"), \"\\n\";\n"
        );
    }
    p
}

fn results(logs: &str) -> std::collections::BTreeMap<String, String> {
    logs.lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn conn_rows(st: &serde_json::Value) -> Vec<(String, u64, String, u64)> {
    st["network"]["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["host"].as_str().unwrap_or("").to_string(),
                c["port"].as_u64().unwrap_or(0),
                c["decision"].as_str().unwrap_or("").to_string(),
                c["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn the_only_way_out_is_the_gateway_and_it_records_every_decision() {
    require_docker!();
    let env = TestEnv::new();
    let outside = outside("deny");
    env.git(&["config", "agent.egressNetwork", &outside.network])
        .ok();
    open_for(&env, &outside);
    // A service on the host, listening on every address: a task must not reach it.
    let host_service = TcpListener::bind("0.0.0.0:0").unwrap();
    host_service.set_nonblocking(true).unwrap();
    let port = host_service.local_addr().unwrap().port();
    // A name the host itself resolves (if it resolves any): the sandbox must not.
    let host_resolves = std::net::ToSocketAddrs::to_socket_addrs(&("deb.debian.org", 80)).is_ok();
    let before = env.snapshot();

    let script = probe(
        &[
            ("host", format!("172.17.0.1:{port}")),
            ("server", format!("{}:8000", outside.ip())),
        ],
        &["allowed.test", "deb.debian.org", "host.docker.internal"],
    );
    let run = env.agent(&[
        "spawn",
        "--name",
        "egress",
        "--allow",
        "allowed.test",
        "-m",
        &script,
        "--wait",
        "--",
        "perl",
        "-",
    ]);
    assert_eq!(run.code, 0, "{run}");
    // spawn says which non-public address the user opened.
    assert!(
        run.stderr.contains(&format!("{}/32", outside.ip())),
        "{run}"
    );
    let logs = env.agent(&["logs", "egress"]).ok().stdout;
    let r = results(&logs);
    let get = |k: &str| {
        r.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("no {k} in:\n{logs}"))
    };
    // Through the gateway: the allowed domain answers (plain HTTP and CONNECT), the other
    // is refused by the proxy.
    assert_eq!(get("get-allowed"), "HTTP/1.0 200 OK +body", "{logs}");
    assert!(get("get-denied").contains("403"), "{logs}");
    assert!(
        get("connect-allowed").contains("200") && get("connect-allowed").ends_with("+body"),
        "{logs}"
    );
    assert!(get("connect-denied").contains("403"), "{logs}");
    // Around the gateway: nothing.
    assert_eq!(get("direct-host"), "failed", "{logs}");
    assert_eq!(get("direct-server"), "failed", "{logs}");
    assert!(
        matches!(
            host_service.accept(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ),
        "the host service was reached from the sandbox"
    );
    for n in ["allowed.test", "deb.debian.org", "host.docker.internal"] {
        assert_eq!(get(&format!("dns-{n}")), "failed", "{n} resolved:\n{logs}");
    }
    if !host_resolves {
        eprintln!(
            "note: this host resolves no public names; the DNS check shows only that test names fail"
        );
    }

    // Every decision is in the task's record, and review names the hosts.
    let st = env.json(&["status", "egress", "--json"]);
    let rows = conn_rows(&st);
    assert!(
        rows.contains(&("allowed.test".into(), 8000, "allowed".into(), 2)),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("denied.test".into(), 8000, "denied".into(), 2)),
        "{rows:?}"
    );
    assert_eq!(st["network"]["profile"], "api");
    let review = env.agent(&["review", "egress", "--no-sync"]).ok().stdout;
    assert!(
        review.contains("reached allowed.test:8000 x2")
            && review.contains("refused denied.test:8000 x2"),
        "{review}"
    );
    // The log is kept in the task's state (the gateway is gone once the run ended).
    let kept = env
        .git(&["show", "refs/agent/egress/state:connections"])
        .ok()
        .stdout;
    assert_eq!(kept.lines().count(), 4, "{kept}");
    assert!(kept.contains("\tdenied.test\t8000\tdenied"), "{kept}");
    let (containers, _, _) = env.runtime_objects();
    assert!(
        !containers.iter().any(|c| c.contains(".gw.")),
        "gateway left running: {containers:?}"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn profiles_and_allow_change_what_a_task_reaches() {
    require_docker!();
    let env = TestEnv::new();
    let outside = outside("profiles");
    env.git(&["config", "agent.egressNetwork", &outside.network])
        .ok();
    open_for(&env, &outside);
    let script = probe(&[], &[]);
    let spawn = |name: &str, extra: &[&str]| -> Run {
        let mut args = vec!["spawn", "--name", name, "-m", &script, "--wait"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "perl", "-"]);
        env.agent(&args)
    };
    // `open` reaches everything (and still records it); `none` nothing, even by config.
    spawn("open", &["--network", "open"]).ok();
    let r = results(&env.agent(&["logs", "open"]).ok().stdout);
    assert!(r["get-denied"].contains("200"), "{r:?}");
    env.git(&["config", "agent.network", "none"]).ok();
    spawn("none", &[]).ok();
    let r = results(&env.agent(&["logs", "none"]).ok().stdout);
    assert!(r["get-allowed"].contains("403"), "{r:?}");
    let st = env.json(&["status", "none", "--json"]);
    assert_eq!(st["network"]["profile"], "none");
    let rows = conn_rows(&env.json(&["status", "open", "--json"]));
    assert!(
        rows.contains(&("denied.test".into(), 8000, "allowed".into(), 2)),
        "{rows:?}"
    );
    env.git(&["config", "--unset", "agent.network"]).ok();

    // A repository may add a domain...
    env.write(
        ".git-agent/config.toml",
        "[network]\nallow = [\"allowed.test\"]\n",
    );
    spawn("repo", &[]).ok();
    let r = results(&env.agent(&["logs", "repo"]).ok().stdout);
    assert!(r["get-allowed"].contains("200"), "{r:?}");
    assert!(r["get-denied"].contains("403"), "{r:?}");
    // ...but never loosen the sandbox: refused before anything is created.
    for text in [
        "privileged = true\n",
        "mounts = [\"/:/host\"]\n",
        "[network]\nprofile = \"open\"\n",
    ] {
        env.write(".git-agent/config.toml", text);
        let run = spawn("loose", &[]).fails();
        assert!(run.stderr.contains("loosen the sandbox"), "{run}");
        assert!(env.task_refs("loose").is_empty());
    }
    std::fs::remove_file(env.repo.join(".git-agent/config.toml")).unwrap();

    // `git agent allow` opens a domain for a running task.
    let wait_then_probe = format!(
        "{script}\nopen(my $f, '>', '/tmp/probed'); close $f;\nwhile (! -e \"/tmp/go\") {{ select(undef, undef, undef, 0.1) }}\nprint \"after-allow: \", proxy(\"GET http://denied.test:8000/ HTTP/1.0\\r\\n\\r\\n\"), \"\\n\";\n"
    );
    env.agent(&[
        "spawn",
        "--name",
        "later",
        "-m",
        &wait_then_probe,
        "--",
        "perl",
        "-",
    ])
    .ok();
    // Its first requests are answered under the policy it started with.
    let probed = std::time::Instant::now();
    while env.docker_exec("later", "test -e /tmp/probed").code != 0 {
        assert!(probed.elapsed().as_secs() < 60, "the task never probed");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let allow = env.agent(&["allow", "later", "Denied.Test"]).ok();
    assert_eq!(allow.stdout.trim(), "denied.test", "{allow}");
    env.agent(&["allow", "later", "bad/domain"]).fails();
    env.docker_exec("later", "touch /tmp/go").ok();
    let code = bounded_output(Command::new("docker").args(["wait", &env.container_of("later")]));
    assert!(code.status.success());
    let logs = env.agent(&["logs", "later"]).ok().stdout;
    let r = results(&logs);
    assert!(r["get-denied"].contains("403"), "{logs}");
    assert!(r["after-allow"].contains("200"), "{logs}");
    let st = env.json(&["status", "later", "--json"]);
    assert_eq!(st["network"]["allow"], serde_json::json!(["denied.test"]));
}

/// A custom agent whose "CLI" is a perl script calling its model API with its key, the way
/// a real agent does: base URL and key from the environment.
const API_AGENT: &str = r#"description = "test agent calling its API"
install = ""
headless = ["perl", "-"]
version = ["perl", "-v"]
prompt = "stdin"
credentials = ["FAKE_API_KEY"]
base_url_env = "FAKE_BASE_URL"
api_url = "https://api.invalid"
output = "text"
"#;

const API_CALL: &str = r#"use IO::Socket::INET;
$| = 1;
sub call { my ($key) = @_;
  my ($host, $port) = $ENV{FAKE_BASE_URL} =~ m{^http://([^:/]+):(\d+)} or return "bad base url $ENV{FAKE_BASE_URL}";
  my $s = IO::Socket::INET->new(PeerAddr => "$host:$port", Timeout => 5) or return "no vault: $!";
  my $body = '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}';
  print $s "POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: $key\r\ncontent-type: application/json\r\ncontent-length: " . length($body) . "\r\nconnection: close\r\n\r\n$body";
  my ($l) = split(/\r?\n/, join("", <$s>)); return $l; }
print "with-standin: ", call($ENV{FAKE_API_KEY}), "\n";
print "with-guess: ", call("sk-guess"), "\n";
print "env-key: $ENV{FAKE_API_KEY}\n";
"#;

#[test]
fn the_vault_holds_the_real_key_and_the_standin_dies_with_the_task() {
    require_docker!();
    let env = TestEnv::new();
    let key = format!("sk-real-{}", std::process::id());
    let fake = FakeAnthropic::start_requiring_key(vec![Step::text("unused")], &key);
    env.user_agent(
        "apicaller",
        API_AGENT,
        &fake.base_url(crate::common::host_alias()),
    );
    let run = env.agent_with(
        &[
            "spawn",
            "--agent",
            "apicaller",
            "--name",
            "vault",
            "-m",
            API_CALL,
            "--wait",
        ],
        |c| {
            c.env("FAKE_API_KEY", &key);
        },
    );
    assert_eq!(run.code, 0, "{run}\n{}", fake.describe());
    let logs = env.agent(&["logs", "vault"]).ok().stdout;
    let r = results(&logs);
    // The agent's request, with its stand-in, reached the API with the real key.
    assert_eq!(
        r["with-standin"],
        "HTTP/1.1 200 OK",
        "{logs}\n{}",
        fake.describe()
    );
    let at_api: Vec<_> = fake
        .requests()
        .iter()
        .map(|q| q.api_key().map(str::to_string))
        .collect();
    assert_eq!(at_api, vec![Some(key.clone())], "{}", fake.describe());
    // A request with any other token stops at the vault.
    assert!(r["with-guess"].contains("401"), "{logs}");
    // Inside, only the stand-in: in the environment, and nowhere in the container.
    let standin = r["env-key"].clone();
    assert!(standin.starts_with("git-agent-standin-"), "{logs}");
    let container = env.container_of("vault");
    let inspect = Command::new("docker")
        .args(["inspect", &container])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.contains(&standin));
    assert!(
        !inspect.contains(&key),
        "the real key is in the container's config"
    );
    let export = Command::new("docker")
        .args(["export", &container])
        .output()
        .unwrap();
    assert!(export.status.success());
    assert!(
        !export
            .stdout
            .windows(key.len())
            .any(|w| w == key.as_bytes()),
        "the real key is in the container's file system"
    );

    // The run is over: its gateway, vault and network are gone, so the stand-in opens
    // nothing, even from a container put on the task's own network (the engine has no such
    // network any more) or on the outer network the gateway used.
    env.agent(&["status", "vault"]).ok();
    let network = env.names_of("vault").network;
    let gone = Command::new("docker")
        .args(["network", "inspect", &network])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "the task's network outlived its run"
    );
    let reuse = Command::new("docker")
        .args(["run", "--rm", "--network", &network, &base_image(), "true"])
        .output()
        .unwrap();
    assert!(
        !reuse.status.success(),
        "a container joined a released network"
    );
    let reuse = Command::new("docker")
        .args([
            "run",
            "--rm",
            "-e",
            &format!("FAKE_API_KEY={standin}"),
            "-e",
            "FAKE_BASE_URL=http://git-agent-gateway:8080",
            &base_image(),
            "perl",
            "-e",
            API_CALL,
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&reuse.stdout);
    assert!(out.contains("with-standin: no vault"), "{out}");
    assert_eq!(fake.requests().len(), 1, "{}", fake.describe());
}

/// Streams pass through the proxy as they come (server-sent events are not held back), and
/// the proxy caps how many clients it serves at once.
#[test]
fn streams_pass_unbuffered_and_clients_are_capped() {
    require_docker!();
    let env = TestEnv::new();
    let network = format!("ga-test-outer-sse-{}", std::process::id());
    let server = format!("ga-test-server-sse-{}", std::process::id());
    let docker = |args: &[&str]| {
        let out = Command::new("docker").args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    docker(&["network", "create", &network]);
    let serve = r#"use IO::Socket::INET; $| = 1;
my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 16, ReuseAddr => 1) or die;
while (my $c = $s->accept) {
  while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
  print $c "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: one\n\n";
  sleep 3; print $c "data: two\n\n"; close $c;
}"#;
    docker(&[
        "run",
        "-d",
        "--name",
        &server,
        "--network",
        &network,
        "--network-alias",
        "sse.test",
        "--user",
        "65534",
        &base_image(),
        "perl",
        "-e",
        serve,
    ]);
    let ip = docker(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &server,
    ]);
    env.git(&["config", "agent.egressNetwork", &network]).ok();
    env.git(&["config", "agent.allowPort", "8000"]).ok();
    let script = r#"use IO::Socket::INET; use Time::HiRes qw(time); $| = 1;
my $s = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128") or die;
print $s "GET http://sse.test:8000/ HTTP/1.1\r\nHost: sse.test\r\n\r\n";
my $t0 = time; my ($all, $first) = ("", undef);
while (sysread($s, my $buf, 4096)) { $all .= $buf; $first //= time - $t0 if $all =~ /data: one/; }
printf "first-event: %.2f\n", $first // -1; printf "whole: %.2f\n", time - $t0;
print "two: ", ($all =~ /data: two/ ? "yes" : "no"), "\n";
my @idle = map { IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128") } 1..260;
my $last = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5);
print $last "GET http://sse.test:8000/ HTTP/1.1\r\nHost: sse.test\r\n\r\n";
my ($l) = split /\r?\n/, join("", <$last>); print "over-cap: $l\n";
"#;
    let run = env.agent(&[
        "spawn",
        "--name",
        "sse",
        "--allow",
        "sse.test",
        "--allow-address",
        &ip,
        "-m",
        script,
        "--wait",
        "--",
        "perl",
        "-",
    ]);
    let logs = env.agent(&["logs", "sse"]).stdout;
    let _ = Command::new("docker").args(["rm", "-f", &server]).output();
    drop(env);
    let _ = Command::new("docker")
        .args(["network", "rm", &network])
        .output();
    assert_eq!(run.code, 0, "{run}");
    let r = results(&logs);
    let first: f64 = r["first-event"].parse().unwrap();
    let whole: f64 = r["whole"].parse().unwrap();
    assert!(
        (0.0..1.5).contains(&first) && whole >= 2.5,
        "the first event waited for the stream to end: {logs}"
    );
    assert_eq!(r["two"], "yes", "{logs}");
    assert!(r["over-cap"].contains("503"), "{logs}");
}
