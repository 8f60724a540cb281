//! The gateway's connection log: every connection a task asked its gateway for, with the
//! time, host, port and decision. Read from the proxy's own log (tinyproxy, `LogLevel
//! Connect`), which the agent influences (it picks the host names), so everything here is
//! parsed defensively: only lines in the proxy's exact shape count, host names are reduced
//! to a safe alphabet and length, and the number of entries is capped.

use std::collections::BTreeMap;
use std::fmt;

/// Most connections kept with a task.
pub const MAX_ENTRIES: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Decision {
    Allowed,
    Denied,
    /// Allowed by the policy, but the host could not be reached.
    Failed,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Decision> {
        match s {
            "allowed" => Some(Decision::Allowed),
            "denied" => Some(Decision::Denied),
            "failed" => Some(Decision::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub time: String,
    pub host: String,
    pub port: u16,
    pub decision: Decision,
}

/// Reduce an untrusted host name to something safe to store and print.
fn clean_host(h: &str) -> String {
    h.chars()
        .take(253)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']') {
                c.to_ascii_lowercase()
            } else {
                '?'
            }
        })
        .collect()
}

/// The host and port a proxy request names: `CONNECT host:port` or `GET http://host[:port]/`.
fn target(method: &str, url: &str) -> Option<(String, u16)> {
    let (authority, default_port) = if method.eq_ignore_ascii_case("CONNECT") {
        (url, 443)
    } else {
        let rest = url
            .strip_prefix("http://")
            .map(|r| (r, 80))
            .or_else(|| url.strip_prefix("https://").map(|r| (r, 443)))?;
        (rest.0.split(['/', '?', '#']).next().unwrap_or(""), rest.1)
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse().unwrap_or(0)),
        _ => (authority, default_port),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (clean_host(host), port))
}

/// Split a log line (optionally prefixed by the engine's RFC 3339 timestamp) into its time
/// and the proxy's message.
fn split_line(line: &str) -> Option<(String, &str)> {
    let (stamp, rest) = match line.split_once(' ') {
        Some((s, r)) if s.len() >= 20 && s.as_bytes()[4] == b'-' && s.contains('T') => (Some(s), r),
        _ => (None, line),
    };
    let level = rest.split_whitespace().next()?;
    if !matches!(
        level,
        "CONNECT" | "NOTICE" | "INFO" | "WARNING" | "ERROR" | "CRITICAL"
    ) {
        return None;
    }
    let (head, msg) = rest.split_once("]: ")?;
    // The head is "LEVEL  Mon DD HH:MM:SS.mmm [pid": nothing the agent controls.
    if !head.contains('[') || head.len() > 48 {
        return None;
    }
    let time = match stamp {
        Some(s) => s.chars().take(23).collect::<String>() + "Z",
        // Without the engine's stamp: the proxy's own "Mon DD HH:MM:SS.mmm".
        None => head
            .split_once(char::is_whitespace)
            .and_then(|(_, t)| t.trim().split(" [").next())
            .unwrap_or_default()
            .to_string(),
    };
    Some((time, msg))
}

fn quoted<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = msg.strip_prefix(prefix)?.strip_prefix('"')?;
    Some(&rest[..rest.rfind('"')?])
}

/// Parse the proxy's log into connections, in order.
pub fn parse(log: &str) -> Vec<Connection> {
    // Requests waiting for their outcome, by the proxy's file descriptor for the client.
    let mut pending: BTreeMap<String, (usize, Connection)> = BTreeMap::new();
    let mut order = 0usize;
    let mut finished: Vec<(usize, Connection)> = Vec::new();
    for line in log.lines() {
        let Some((time, msg)) = split_line(line) else {
            continue;
        };
        if let Some(rest) = msg.strip_prefix("Request (file descriptor ") {
            let Some((fd, req)) = rest.split_once("): ") else {
                continue;
            };
            let mut words = req.split(' ');
            let (Some(method), Some(url)) = (words.next(), words.next()) else {
                continue;
            };
            let Some((host, port)) = target(method, url) else {
                continue;
            };
            order += 1;
            let c = Connection {
                time,
                host,
                port,
                decision: Decision::Failed,
            };
            if let Some(old) = pending.insert(fd.to_string(), (order, c)) {
                finished.push(old);
            }
        } else if let Some(h) = quoted(msg, "Proxying refused on filtered domain ") {
            settle(
                &mut pending,
                &mut finished,
                &clean_host(h),
                Decision::Denied,
            );
        } else if let Some(h) = quoted(msg, "Established connection to host ") {
            settle(
                &mut pending,
                &mut finished,
                &clean_host(h),
                Decision::Allowed,
            );
        }
    }
    finished.extend(pending.into_values());
    finished.sort_by_key(|(n, _)| *n);
    finished
        .into_iter()
        .map(|(_, c)| c)
        .take(MAX_ENTRIES)
        .collect()
}

/// Give the newest pending request for `host` its decision.
fn settle(
    pending: &mut BTreeMap<String, (usize, Connection)>,
    finished: &mut Vec<(usize, Connection)>,
    host: &str,
    decision: Decision,
) {
    let fd = pending
        .iter()
        .filter(|(_, (_, c))| c.host == host)
        .max_by_key(|(_, (n, _))| *n)
        .map(|(fd, _)| fd.clone());
    if let Some(fd) = fd {
        let (n, mut c) = pending.remove(&fd).expect("found above");
        c.decision = decision;
        finished.push((n, c));
    }
}

/// The stored form: one `time<TAB>host<TAB>port<TAB>decision` line per connection.
pub fn to_tsv(conns: &[Connection]) -> String {
    conns
        .iter()
        .map(|c| format!("{}\t{}\t{}\t{}\n", c.time, c.host, c.port, c.decision))
        .collect()
}

/// Read the stored form back (it lives in the task's state, which only the host writes).
pub fn from_tsv(text: &str) -> Vec<Connection> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Connection {
                time: f.next()?.to_string(),
                host: f.next()?.to_string(),
                port: f.next()?.parse().ok()?,
                decision: Decision::parse(f.next()?)?,
            })
        })
        .collect()
}

/// One row per host, port and decision: how often, first and last time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub host: String,
    pub port: u16,
    pub decision: &'static str,
    pub count: usize,
    pub first: String,
    pub last: String,
}

pub fn summarize(conns: &[Connection]) -> Vec<Summary> {
    let mut rows: BTreeMap<(Decision, String, u16), Summary> = BTreeMap::new();
    for c in conns {
        let row = rows
            .entry((c.decision, c.host.clone(), c.port))
            .or_insert_with(|| Summary {
                host: c.host.clone(),
                port: c.port,
                decision: c.decision.as_str(),
                count: 0,
                first: c.time.clone(),
                last: c.time.clone(),
            });
        row.count += 1;
        row.last = c.time.clone();
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"2026-11-23T12:12:07.997000000Z INFO      Nov 23 12:12:07.997 [1]: Starting main loop. Accepting connections.
2026-11-23T12:12:10.198000000Z CONNECT   Nov 23 12:12:10.198 [1]: Connect (file descriptor 4): 172.18.0.3
2026-11-23T12:12:10.198100000Z CONNECT   Nov 23 12:12:10.198 [1]: Request (file descriptor 4): GET http://allowed.test:8000/x HTTP/1.0
2026-11-23T12:12:10.201000000Z CONNECT   Nov 23 12:12:10.201 [1]: Established connection to host "allowed.test" using file descriptor 5.
2026-11-23T12:12:10.205000000Z CONNECT   Nov 23 12:12:10.205 [1]: Request (file descriptor 4): GET http://Denied.test/ HTTP/1.0
2026-11-23T12:12:10.205100000Z NOTICE    Nov 23 12:12:10.205 [1]: Proxying refused on filtered domain "denied.test"
2026-11-23T12:12:10.209000000Z CONNECT   Nov 23 12:12:10.209 [1]: Request (file descriptor 6): CONNECT allowed.test:443 HTTP/1.1
2026-11-23T12:12:10.211000000Z CONNECT   Nov 23 12:12:10.211 [1]: Established connection to host "allowed.test" using file descriptor 7.
2026-11-23T12:12:10.214000000Z CONNECT   Nov 23 12:12:10.214 [1]: Request (file descriptor 4): CONNECT gone.test:22 HTTP/1.1
2026-11-23T12:12:10.215000000Z CONNECT   Nov 23 12:12:10.215 [1]: Request (file descriptor 8): GET http://x/Proxying refused on filtered domain "allowed.test" HTTP/1.1
fake NOTICE line from elsewhere: Proxying refused on filtered domain "allowed.test"
"#;

    #[test]
    fn requests_get_their_decisions() {
        let c = parse(LOG);
        let got: Vec<(&str, u16, Decision)> = c
            .iter()
            .map(|c| (c.host.as_str(), c.port, c.decision))
            .collect();
        assert_eq!(
            got,
            vec![
                ("allowed.test", 8000, Decision::Allowed),
                ("denied.test", 80, Decision::Denied),
                ("allowed.test", 443, Decision::Allowed),
                ("gone.test", 22, Decision::Failed),
                ("x", 80, Decision::Failed),
            ]
        );
        assert_eq!(c[0].time, "2026-11-23T12:12:10.198Z");
        assert_eq!(from_tsv(&to_tsv(&c)), c);
    }

    #[test]
    fn hostile_host_names_are_neutralised() {
        let line = "CONNECT   Nov 23 12:12:10.198 [1]: Request (file descriptor 4): CONNECT \u{1b}[31mevil\ttab:443 HTTP/1.1\n";
        let c = parse(line);
        assert_eq!(c.len(), 1);
        assert!(
            c[0].host.chars().all(|ch| ch.is_ascii_graphic()),
            "{:?}",
            c[0].host
        );
        assert!(!c[0].host.contains('\t'));
        assert_eq!(c[0].time, "Nov 23 12:12:10.198");
    }

    #[test]
    fn summary_groups_by_host_port_and_decision() {
        let s = summarize(&parse(LOG));
        let allowed: Vec<_> = s.iter().filter(|r| r.decision == "allowed").collect();
        assert_eq!(allowed.len(), 2);
        assert!(s.iter().any(|r| r.host == "denied.test" && r.count == 1));
    }
}
