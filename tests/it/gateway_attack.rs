//! Attacks on the egress gateway, from the attacker's side: a hostile agent (a task whose
//! command probes through its own gateway) and a hostile repository (its
//! `.git-agent/config.toml`). Services on the host (listening on every address and on the
//! engine's bridge address), other tasks' gateways and vaults, and a name that resolves to a
//! private address must get no request, under every profile; the vault forwards only its
//! agent's API routes, with the real key and without forwarding headers or stand-ins.

use crate::common::{Run, TestEnv, base_image};
use crate::fake_anthropic::{FakeAnthropic, Step};
use crate::require_docker;
use crate::servers::{HostService, OuterServer, docker};

/// The agent the tasks run: a perl script with a vault-held key, like a real agent.
const AGENT: &str = r#"description = "test agent with a vault-held key"
install = ""
headless = ["perl", "-"]
version = ["perl", "-v"]
prompt = "stdin"
credentials = ["FAKE_API_KEY"]
base_url_env = "FAKE_BASE_URL"
api_url = "https://api.invalid"
api_methods = ["POST"]
api_paths = ["/v1/messages"]
output = "text"
"#;

/// Perl helpers: `proxy(raw)` sends a raw request to the task's proxy and returns the
/// status line (plus `+LEAK` when anything behind the gateway answered); `vault(raw)` the
/// same at the vault.
const PERL: &str = r#"use IO::Socket::INET;
$| = 1;
sub ask { my ($addr, $raw) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => $addr, Timeout => 5) or return "no connection: $!";
  print $s $raw; my $all = ""; eval { local $SIG{ALRM} = sub { die "t\n" }; alarm 8; $all = join("", <$s>); alarm 0; };
  my ($l) = split(/\r?\n/, $all); $l = "(nothing)" unless defined $l;
  return $all =~ /REACHED|HOST-SERVICE|hello|"id"|standin/ ? "$l +LEAK" : $l; }
sub proxy { ask("git-agent-gateway:3128", $_[0]) }
sub vault { ask("git-agent-gateway:8080", $_[0]) }
"#;

fn results(logs: &str) -> Vec<(String, String)> {
    logs.lines()
        .filter_map(|l| l.split_once(" => "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn use_agent(env: &TestEnv, fake: &FakeAnthropic) {
    env.user_agent("keyed", AGENT, &fake.base_url(crate::common::host_alias()));
}

fn spawn_keyed(env: &TestEnv, key: &str, name: &str, script: &str, extra: &[&str]) -> Run {
    let mut args = vec!["spawn", "--agent", "keyed", "--name", name, "-m", script];
    args.extend_from_slice(extra);
    env.agent_with(&args, |c| {
        c.env("FAKE_API_KEY", key);
    })
}

/// A script that waits until the test touches /tmp/go.
const WAIT: &str = "while (! -e \"/tmp/go\") { select(undef, undef, undef, 0.1) }\n";

#[test]
fn a_hostile_agent_reaches_no_host_private_address_or_other_gateway_under_any_profile() {
    require_docker!();
    let env = TestEnv::new();
    let outer = OuterServer::start(
        "priv",
        &["private.test", "allowed.test"],
        "REACHED-PRIVATE-SERVER",
    );
    let host = HostService::start();
    let key = format!("sk-real-atk-{}", std::process::id());
    let fake = FakeAnthropic::start_requiring_key(vec![Step::text("unused")], &key);
    use_agent(&env, &fake);
    env.git(&["config", "agent.egressNetwork", &outer.network])
        .ok();
    // Every port in play is open, so each refusal below is the address rule's, not the
    // port rule's.
    let mut ports: Vec<String> = host.ports().iter().map(u16::to_string).collect();
    ports.extend(["8000", "8080", "3128", "22"].map(String::from));
    for p in &ports {
        env.git(&["config", "--add", "agent.allowPort", p]).ok();
    }
    let before = env.snapshot();

    // A victim task whose gateway (and vault) stay up while the attackers run.
    spawn_keyed(
        &env,
        &key,
        "victim",
        &format!("{PERL}{WAIT}print \"victim-standin => $ENV{{FAKE_API_KEY}}\\n\";\n"),
        &[],
    )
    .ok();
    let victim_gw = env.names_of("victim").gateway;
    let victim_ip = outer.ip_of(&victim_gw);
    assert!(!victim_ip.is_empty(), "no outer address for {victim_gw}");
    let server_ip = outer.ip_of(&outer.server);

    let hp = host.ports();
    let mut targets: Vec<String> = Vec::new();
    for p in &hp {
        for h in [
            "host.docker.internal",
            "gateway.docker.internal",
            "172.17.0.1",
            "127.0.0.1",
            "localhost",
            "localhost.",
            "2130706433",
            "0x7f000001",
            "0x7f.0.0.1",
            "0177.0.0.1",
            "127.1",
            "0",
            "0.0.0.0",
            "[::1]",
            "[::]",
            "[::ffff:127.0.0.1]",
            "[::ffff:ac11:1]",
            "[::ffff:7f00:1]",
            "[64:ff9b::7f00:1]",
            "[fe80::1]",
            "2886795265",
        ] {
            targets.push(format!("{h}:{p}"));
        }
    }
    for t in [
        "169.254.169.254:80".to_string(),
        "metadata.google.internal:80".to_string(),
        "[fd00:ec2::254]:80".to_string(),
        "100.100.100.200:80".to_string(),
        "private.test:8000".to_string(),
        "private.test:22".to_string(),
        format!("{server_ip}:8000"),
        format!("{victim_ip}:8080"),
        format!("{victim_ip}:3128"),
        format!("{victim_gw}:8080"),
        format!("{victim_gw}:3128"),
    ] {
        targets.push(t);
    }
    let mut script = PERL.to_string();
    for t in &targets {
        script += &format!(
            "print \"GET {t} => \", proxy(\"GET http://{t}/ HTTP/1.1\\r\\nHost: {t}\\r\\n\\r\\n\"), \"\\n\";\n"
        );
        script += &format!(
            "print \"CONNECT {t} => \", proxy(\"CONNECT {t} HTTP/1.1\\r\\nHost: {t}\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n\"), \"\\n\";\n"
        );
    }
    // A Host header naming the host, behind an allowed-looking absolute URI.
    script += "print \"HOSTHDR => \", proxy(\"GET http://private.test:8000/ HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\n\\r\\n\"), \"\\n\";\n";
    script += "print \"attacker-standin => $ENV{FAKE_API_KEY}\\n\";\n";

    let mut attacker_standin = String::new();
    for profile in ["open", "api", "dev"] {
        let name = format!("atk-{profile}");
        let run = spawn_keyed(
            &env,
            &key,
            &name,
            &script,
            &[
                "--network",
                profile,
                "--allow",
                "private.test",
                "--allow",
                "allowed.test",
                "--wait",
            ],
        );
        assert_eq!(run.code, 0, "{run}");
        let logs = env.agent(&["logs", &name]).ok().stdout;
        let r = results(&logs);
        assert_eq!(r.len(), targets.len() * 2 + 2, "{profile}: {logs}");
        for (probe, answer) in &r {
            if probe == "attacker-standin" {
                attacker_standin = answer.clone();
                continue;
            }
            assert!(
                answer.starts_with("HTTP/1.1 403") && !answer.contains("LEAK"),
                "{profile}: {probe} was not refused: {answer}\n{logs}"
            );
        }
        // Every refusal is recorded with the task.
        let st = env.json(&["status", &name, "--json"]);
        let refused = st["network"]["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["decision"] == "denied")
            .map(|c| c["count"].as_u64().unwrap())
            .sum::<u64>();
        assert_eq!(refused as usize, targets.len() * 2 + 1, "{st}");
    }
    host.assert_untouched(&[]);
    assert!(
        fake.requests().is_empty(),
        "an attacker's request reached the model API: {}",
        fake.describe()
    );

    // The victim's vault and proxy listen only on the victim's own network: from the outer
    // network they do not answer at all.
    let from_outer = docker(&[
        "run",
        "--rm",
        "--network",
        &outer.network,
        &base_image(),
        "perl",
        "-e",
        &format!(
            "{PERL}print \"outer-vault => \", ask(\"{victim_ip}:8080\", \"GET / HTTP/1.0\\r\\n\\r\\n\"), \"\\n\"; print \"outer-proxy => \", ask(\"{victim_ip}:3128\", \"CONNECT example.com:443 HTTP/1.1\\r\\n\\r\\n\"), \"\\n\";"
        ),
    ]);
    for (probe, answer) in results(&from_outer.stdout) {
        assert!(
            answer.starts_with("no connection"),
            "{probe}: {answer}\n{from_outer}"
        );
    }
    // An attacker's stand-in is worthless at the victim's vault, even from a container put on
    // the victim's own network.
    assert!(attacker_standin.starts_with("git-agent-standin-"));
    let victim_net = env.names_of("victim").network;
    let cross = docker(&[
        "run",
        "--rm",
        "--network",
        &victim_net,
        &base_image(),
        "perl",
        "-e",
        &format!(
            "{PERL}print \"cross => \", vault(\"POST /v1/messages HTTP/1.1\\r\\nx-api-key: {attacker_standin}\\r\\nAuthorization: Bearer {attacker_standin}\\r\\ncontent-length: 2\\r\\n\\r\\n{{}}\"), \"\\n\";"
        ),
    ]);
    let r = results(&cross.stdout);
    assert!(
        r.first()
            .is_some_and(|(_, a)| a.starts_with("HTTP/1.1 401")),
        "{cross}"
    );
    assert!(fake.requests().is_empty(), "{}", fake.describe());
    env.docker_exec("victim", "touch /tmp/go").ok();
    docker(&["wait", &env.container_of("victim")]).ok();
    host.assert_untouched(&[]);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn connect_goes_to_443_and_plain_http_to_80_unless_the_user_adds_ports() {
    require_docker!();
    let env = TestEnv::new();
    let outer = OuterServer::start(
        "ports",
        &["private.test", "allowed.test"],
        "REACHED-PRIVATE-SERVER",
    );
    env.git(&["config", "agent.egressNetwork", &outer.network])
        .ok();
    let server_ip = outer.ip_of(&outer.server);
    let mut script = PERL.to_string();
    for p in ["22", "80", "8000", "8080", "3128", "25", "6379"] {
        script += &format!(
            "print \"CONNECT {p} => \", proxy(\"CONNECT allowed.test:{p} HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n\"), \"\\n\";\n"
        );
    }
    for p in ["8000", "443", "22"] {
        script += &format!(
            "print \"GET {p} => \", proxy(\"GET http://allowed.test:{p}/ HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n\"), \"\\n\";\n"
        );
    }
    // The address is opened the user's way (a flag), the ports are not.
    let run = env.agent(&[
        "spawn",
        "--name",
        "ports",
        "--allow",
        "allowed.test",
        "--allow-address",
        &server_ip,
        "-m",
        &script,
        "--wait",
        "--",
        "perl",
        "-",
    ]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains(&format!("{server_ip}/32")),
        "spawn did not say which address it opened: {run}"
    );
    let logs = env.agent(&["logs", "ports"]).ok().stdout;
    let r = results(&logs);
    assert_eq!(r.len(), 10, "{logs}");
    for (probe, answer) in &r {
        // 80 is plain HTTP's port, not CONNECT's; the allowed host is refused on every
        // other port (the server listens on 8000 and would answer).
        assert!(
            answer.starts_with("HTTP/1.1 403") && !answer.contains("LEAK"),
            "{probe}: {answer}\n{logs}"
        );
    }
    // A repository cannot open ports or addresses: refused before anything is created.
    for text in [
        "[network]\nports = [8000]\n",
        "[network]\nallow_port = [8000]\n",
        "[network]\naddresses = [\"172.17.0.1\"]\n",
        "[network]\nallow_address = [\"10.0.0.0/8\"]\n",
    ] {
        env.write(".git-agent/config.toml", text);
        let run = env
            .agent(&["spawn", "--name", "loose", "-m", "x", "--", "true"])
            .fails();
        assert!(run.stderr.contains(".git-agent/config.toml"), "{run}");
        assert!(env.task_refs("loose").is_empty());
    }
}

#[test]
fn a_hostile_repository_cannot_allow_suffixes_local_names_or_addresses() {
    require_docker!();
    let env = TestEnv::new();
    let before_objects = env.runtime_objects();
    for entry in [
        "com",
        "*.com",
        "co.uk",
        "github.io",
        "*.github.io",
        "internal",
        "localhost",
        "169.254.169.254",
        "172.17.0.1",
        "2130706433",
        "host.docker.internal",
        "gateway.docker.internal",
        "metadata.google.internal",
        "printer.local",
    ] {
        env.write(
            ".git-agent/config.toml",
            &format!("[network]\nallow = [\"example.org\", \"{entry}\"]\n"),
        );
        let before = env.snapshot();
        let run = env
            .agent(&["spawn", "--name", "hostile", "-m", "x", "--", "true"])
            .fails();
        assert!(
            run.stderr.contains(".git-agent/config.toml") && run.stderr.contains("Hint:"),
            "{entry}: {run}"
        );
        assert!(env.task_refs("hostile").is_empty(), "{entry}");
        assert_eq!(env.runtime_objects(), before_objects, "{entry}");
        assert_eq!(env.snapshot(), before, "{entry}");
        // The same entries are refused from the user too (they open no public host).
        let run = env
            .agent(&[
                "spawn", "--name", "user", "--allow", entry, "-m", "x", "--", "true",
            ])
            .fails();
        assert!(run.stderr.contains("--allow"), "{entry}: {run}");
    }
}

#[test]
fn the_vault_forwards_only_the_agents_api_routes_without_forwarding_headers() {
    require_docker!();
    let env = TestEnv::new();
    let key = format!("sk-real-vault-{}", std::process::id());
    let fake = FakeAnthropic::start_requiring_key(vec![Step::text("done")], &key);
    use_agent(&env, &fake);
    let body = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let post = |path: &str, extra: &str| -> String {
        format!(
            "POST {path} HTTP/1.1\\r\\nHost: x\\r\\nx-api-key: $k\\r\\ncontent-type: application/json\\r\\n{extra}content-length: {}\\r\\n\\r\\n{}",
            body.len(),
            body.replace('"', "\\\"")
        )
    };
    let mut script = format!("{PERL}my $k = $ENV{{FAKE_API_KEY}};\n");
    let mut probe = |name: &str, raw: String| {
        script += &format!("print \"{name} => \", vault(\"{raw}\"), \"\\n\";\n");
    };
    // The one allowed request, wrapped in every header that claims an origin or carries the
    // stand-in somewhere else.
    probe(
        "allowed",
        post(
            "/v1/messages?beta=true",
            "X-Forwarded-For: 6.6.6.6\\r\\nX-Forwarded-Host: evil.test\\r\\nForwarded: for=6.6.6.6\\r\\nX-Real-IP: 6.6.6.6\\r\\nVia: 1.1 evil\\r\\nX-Leak: $k\\r\\nX-Other: Bearer $k\\r\\nConnection: close, X-Keep\\r\\nX-Keep: 1\\r\\n",
        ),
    );
    for (name, path) in [
        ("dotdot", "/v1/messages/../../admin"),
        ("dotdot-enc", "/v1/messages/%2e%2e/%2e%2e/admin"),
        ("slash-enc", "/v1/messages%2f..%2fadmin"),
        ("double-slash", "//v1/messages"),
        ("inner-double-slash", "/v1//messages"),
        ("backslash", "/v1/messages\\\\..\\\\admin"),
        ("dot", "/v1/./messages"),
        ("prefix-only", "/v1/messagesX"),
        ("other", "/v1/files"),
        ("root", "/"),
        ("absolute", "http://evil.test/v1/messages"),
        ("standin-in-query", "/v1/messages?key=$k"),
    ] {
        probe(name, post(path, ""));
    }
    for m in [
        "GET", "DELETE", "PUT", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ] {
        probe(
            &format!("method-{m}"),
            format!("{m} /v1/messages HTTP/1.1\\r\\nHost: x\\r\\nx-api-key: $k\\r\\n\\r\\n"),
        );
    }
    probe(
        "no-token",
        post("/v1/messages", "").replace("x-api-key: $k", "x-api-key: sk-guess"),
    );
    probe(
        "smuggle",
        post("/v1/messages", "Transfer-Encoding: chunked\\r\\n"),
    );
    let run = spawn_keyed(&env, &key, "vaulted", &script, &["--wait"]);
    assert_eq!(run.code, 0, "{run}");
    let logs = env.agent(&["logs", "vaulted"]).ok().stdout;
    let r = results(&logs);
    assert_eq!(r.len(), 22, "{logs}");
    for (name, answer) in &r {
        let want = match name.as_str() {
            "allowed" => "HTTP/1.1 200",
            "no-token" => "HTTP/1.1 401",
            "smuggle" => "HTTP/1.1 400",
            _ => "HTTP/1.1 403",
        };
        assert!(answer.starts_with(want), "{name}: {answer}\n{logs}");
    }
    // The API saw exactly the one allowed request: real key, no forwarding headers, no
    // stand-in anywhere, and the client's hop-by-hop header gone.
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1, "{}", fake.describe());
    let q = &reqs[0];
    assert_eq!(q.method, "POST");
    assert_eq!(q.path, "/v1/messages?beta=true");
    assert_eq!(q.api_key(), Some(key.as_str()));
    for (k, v) in &q.headers {
        assert!(
            !(k.starts_with("x-forwarded")
                || ["forwarded", "x-real-ip", "via", "x-keep"].contains(&k.as_str())),
            "forwarded header {k}: {v}"
        );
        assert!(!v.contains("git-agent-standin-"), "stand-in in {k}: {v}");
        assert!(!v.contains("6.6.6.6"), "{k}: {v}");
    }
}

/// The proxy's address and name rules, run by the proxy's own code inside a live gateway:
/// every non-public range (also inside IPv6 forms that embed IPv4) is refused, public
/// addresses pass, numeric host forms are never names, and allow entries match on label
/// boundaries like `egress::matches`.
#[test]
fn the_gateway_classifies_addresses_names_ports_and_entries() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&[
        "spawn",
        "--name",
        "idle",
        "-m",
        WAIT,
        "--network",
        "none",
        "--",
        "perl",
        "-",
    ])
    .ok();
    let gw = env.names_of("idle").gateway;
    let check = r#"
import importlib.machinery, importlib.util, ipaddress, sys
loader = importlib.machinery.SourceFileLoader("gw", "/usr/local/bin/git-agent-gateway")
spec = importlib.util.spec_from_loader("gw", loader)
gw = importlib.util.module_from_spec(spec)
loader.exec_module(gw)
refused = """0.0.0.0 0.1.2.3 10.0.0.1 100.64.0.1 100.127.255.254 127.0.0.1 127.255.255.254
169.254.169.254 169.254.0.1 172.16.0.1 172.17.0.1 172.31.255.255 192.0.0.1 192.0.2.1
192.168.0.1 198.18.0.1 198.51.100.1 203.0.113.1 224.0.0.1 239.255.255.250 240.0.0.1
255.255.255.255 :: ::1 ::ffff:127.0.0.1 ::ffff:10.0.0.1 ::ffff:169.254.169.254
::ffff:172.17.0.1 ::127.0.0.1 ::10.0.0.1 64:ff9b::a9fe:a9fe 64:ff9b::7f00:1
64:ff9b:1::a00:1 2002:7f00:1::1 2002:a00:1::1 2001:0:4136:e378:8000:63bf:3fff:fdd2
fc00::1 fd00:ec2::254 fd00::1 fe80::1 fec0::1 ff02::1 ff05::2 2001:db8::1 100::1""".split()
public = "1.1.1.1 8.8.8.8 151.101.1.1 2606:4700:4700::1111 ::ffff:8.8.8.8 64:ff9b::808:808".split()
bad = []
for a in refused:
    if gw.public(ipaddress.ip_address(a)):
        bad.append("public: " + a)
for a in public:
    if not gw.public(ipaddress.ip_address(a)):
        bad.append("refused: " + a)
for h in """2130706433 0x7f000001 0x7f.0.0.1 0177.0.0.1 127.1 0 127.0.0.1 127.0.0.1. [::1]
[::ffff:127.0.0.1] ::1 1.2.3.4 localhost localhost. host.docker.internal HOST.DOCKER.INTERNAL.
gateway.docker.internal metadata.google.internal foo.local a.localhost internal com
ex%61mple.com exa_mple..com""".split():
    if gw.check_name(h, set())[0] == "name":
        bad.append("a name: " + h)
if gw.check_name("api.example.com", set()) != ("name", "api.example.com"):
    bad.append("api.example.com not a name")
if gw.check_name("evil.test", {"evil.test"})[0] != "bad":
    bad.append("/etc/hosts names pass")
p = gw.Policy({"allow": ["example.com", "*.sub.test"], "ports": [8443]}, set())
for host, want in [("example.com", True), ("a.example.com", True), ("badexample.com", False),
                   ("example.com.evil.test", False), ("sub.test", False), ("a.sub.test", True)]:
    if p.domain_allowed(host) != want:
        bad.append("allow %s" % host)
for connect, port, want in [(True, 443, True), (True, 80, False), (False, 80, True),
                            (False, 443, False), (True, 22, False), (True, 8443, True)]:
    if p.port_allowed(connect, port) != want:
        bad.append("port %s %s" % (connect, port))
own = ipaddress.ip_address("93.184.216.34")
p = gw.Policy({"addresses": ["10.1.0.0/16"]}, {own})
if p.address_allowed(ipaddress.ip_address("10.1.2.3")) is not None:
    bad.append("user-opened network refused")
if p.address_allowed(ipaddress.ip_address("10.2.0.1")) is None:
    bad.append("network beyond the user's opened")
if p.address_allowed(own) is None:
    bad.append("the gateway's own address")
engine = ipaddress.ip_address("93.184.216.1")
p = gw.Policy({}, set(), {engine})
if p.address_allowed(engine) is None:
    bad.append("the engine's host on a public address")
state = gw.State()
if not state.host or not all(a in state.host for a in gw.routers()):
    bad.append("no route gateway found: %s" % state.host)
if "host.docker.internal" not in state.blocked and "localhost" not in state.blocked:
    bad.append("/etc/hosts not read: %s" % state.blocked)
print("\n".join(bad) if bad else "ok %d" % (len(refused) + len(public)))
sys.exit(1 if bad else 0)
"#;
    let out = docker(&["exec", &gw, "python3", "-IS", "-c", check]);
    env.docker_exec("idle", "touch /tmp/go").ok();
    assert_eq!(out.code, 0, "{out}");
    assert!(out.stdout.starts_with("ok "), "{out}");
}
