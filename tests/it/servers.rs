//! The servers attack tests aim at: a service on the host that must never hear from a task or
//! a build, and a web server on an outer network (a gateway's way out), reached by name.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Run, base_image};

/// `docker <args>`, whatever its exit status.
pub fn docker(args: &[&str]) -> Run {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A service on the host: on every address, and on the engine's bridge address (172.17.0.1,
/// where host services typically listen for containers) where this host has one. It counts
/// every connection, keeps every byte it receives and answers `200 ok`.
pub struct HostService {
    pub any_port: u16,
    pub bridge_port: Option<u16>,
    hits: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<u8>>>,
}

impl HostService {
    pub fn start() -> HostService {
        let hits = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let listen = |l: TcpListener| {
            let port = l.local_addr().expect("bound").port();
            let (hits, received) = (Arc::clone(&hits), Arc::clone(&received));
            std::thread::spawn(move || {
                for conn in l.incoming() {
                    let Ok(mut conn) = conn else { continue };
                    hits.fetch_add(1, Ordering::SeqCst);
                    let received = Arc::clone(&received);
                    std::thread::spawn(move || {
                        conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
                        let mut buf = [0u8; 4096];
                        while let Ok(n) = conn.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            received.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                    });
                }
            });
            port
        };
        let any_port = listen(TcpListener::bind("0.0.0.0:0").expect("bind"));
        let bridge_port = TcpListener::bind("172.17.0.1:0").ok().map(listen);
        HostService {
            any_port,
            bridge_port,
            hits,
            received,
        }
    }

    /// Every port it listens on.
    pub fn ports(&self) -> Vec<u16> {
        std::iter::once(self.any_port)
            .chain(self.bridge_port)
            .collect()
    }

    /// Its URL on the engine's bridge address.
    pub fn url(&self) -> String {
        format!(
            "http://172.17.0.1:{}",
            self.bridge_port.unwrap_or(self.any_port)
        )
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<u8> {
        self.received.lock().unwrap().clone()
    }

    /// Nobody connected, and none of `secrets` arrived.
    #[track_caller]
    pub fn assert_untouched(&self, secrets: &[String]) {
        let got = self.received();
        for s in secrets {
            assert!(
                !got.windows(s.len()).any(|w| w == s.as_bytes()),
                "the host service received a secret"
            );
        }
        assert_eq!(
            self.hits(),
            0,
            "the host service was reached: {}",
            String::from_utf8_lossy(&got)
        );
    }
}

/// A user-defined network (the gateways' way out, `agent.egressNetwork`) with a web server on
/// port 8000 under the given names. The server answers every request with `body` and logs
/// its request line as `REQUEST <line>` (see [`OuterServer::log`]).
pub struct OuterServer {
    pub network: String,
    pub server: String,
}

impl OuterServer {
    pub fn start(tag: &str, aliases: &[&str], body: &str) -> OuterServer {
        let network = format!("ga-test-outer-{tag}-{}", std::process::id());
        let server = format!("ga-test-server-{tag}-{}", std::process::id());
        docker(&["network", "create", &network]).ok();
        let serve = format!(
            r#"use IO::Socket::INET; $| = 1;
my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 16, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) {{
  my $first = <$c>; print "REQUEST $first";
  while (my $h = <$c>) {{ last if $h =~ /^\r?\n$/ }}
  print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n{body}\n"; close $c;
}}"#
        );
        let mut args = vec!["run", "-d", "--name", &server, "--network", &network];
        for a in aliases {
            args.extend(["--network-alias", a]);
        }
        let image = base_image();
        args.extend(["--user", "65534", &image, "perl", "-e", &serve]);
        docker(&args).ok();
        OuterServer { network, server }
    }

    /// The server's address on the outer network.
    pub fn ip(&self) -> String {
        self.ip_of(&self.server)
    }

    /// `container`'s address on the outer network.
    pub fn ip_of(&self, container: &str) -> String {
        let f = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.network
        );
        docker(&["inspect", "-f", &f, container])
            .ok()
            .stdout
            .trim()
            .to_string()
    }

    /// What the server logged: one `REQUEST <line>` per request it got.
    pub fn log(&self) -> String {
        docker(&["logs", &self.server]).stdout
    }
}

impl Drop for OuterServer {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.server]);
        // Gateways of tasks may still be attached (a TestEnv declared earlier is dropped
        // later): cut them off, or the network and its address pool would outlive the test.
        for _ in 0..20 {
            let attached = docker(&[
                "network",
                "inspect",
                "-f",
                "{{range .Containers}}{{.Name}} {{end}}",
                &self.network,
            ]);
            for c in attached.stdout.split_whitespace() {
                let _ = docker(&["network", "disconnect", "-f", &self.network, c]);
            }
            if docker(&["network", "rm", &self.network]).code == 0 || attached.code != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A perl probe of a task's way out (the base image has no curl): for each `(label, host)`,
/// a plain HTTP request through the gateway's proxy to `host:8000`, printed as
/// `label: <status line>` (with ` +body` when [`OuterServer`]'s body came back); then, with
/// `direct`, a TCP connection to `direct:8000` around the gateway (`direct: CONNECTED` or
/// `direct: failed`).
pub fn proxy_probe(hosts: &[(&str, &str)], direct: Option<&str>) -> String {
    let mut script = r#"use IO::Socket::INET; $| = 1;
sub proxy { my ($h) = @_;
  my $s = IO::Socket::INET->new(PeerAddr => "git-agent-gateway:3128", Timeout => 5) or return "no proxy: $!";
  print $s "GET http://$h:8000/ HTTP/1.0\r\nHost: $h\r\n\r\n"; my $all = join("", <$s>); my ($l) = split(/\r?\n/, $all);
  return $all =~ /hello from the outside/ ? "$l +body" : $l; }
"#
    .to_string();
    if let Some(ip) = direct {
        script.push_str(&format!(
            "my $d = IO::Socket::INET->new(PeerAddr => \"{ip}:8000\", Timeout => 3);\n"
        ));
    }
    for (label, host) in hosts {
        script.push_str(&format!(
            "print \"{label}: \", proxy(\"{host}\"), \"\\n\";\n"
        ));
    }
    if direct.is_some() {
        script.push_str("print \"direct: \", ($d ? \"CONNECTED\" : \"failed\"), \"\\n\";\n");
    }
    script
}
