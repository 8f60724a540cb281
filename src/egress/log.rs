//! The gateway's connection log: every connection a task asked its gateway for, with the
//! time, host, port and decision. Read from the proxy's own output (dockerfiles/
//! git-agent-gateway), one line per decision:
//!
//! ```text
//! git-agent-gateway 2026-11-23T12:12:10.198Z allowed CONNECT example.com 443 ok
//! ```
//!
//! The agent influences these lines (it picks the host names; the proxy already reduces
//! them to a safe alphabet), so everything here is parsed defensively: only lines of exactly
//! that shape count, each field is checked, host names are reduced again, and the number of
//! entries is capped. Lines of the vault (`git-agent-vault ...`) and the proxy's own events
//! are not connections.

use std::collections::BTreeMap;
use std::fmt;

/// Most connections kept with a task.
pub const MAX_ENTRIES: usize = 20_000;

/// The first word of a connection line.
const TAG: &str = "git-agent-gateway";

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

/// Is `t` a UTC time as the proxy writes it (`2026-11-23T12:12:10.198Z`)?
fn is_time(t: &str) -> bool {
    t.len() == 24
        && t.ends_with('Z')
        && t.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'.',
            23 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// One connection line, without or with the engine's timestamp in front.
fn parse_line(line: &str) -> Option<Connection> {
    let mut words: Vec<&str> = line.split(' ').collect();
    if words.first() != Some(&TAG) {
        // The engine's RFC 3339 stamp, then the line.
        words.remove(0);
    }
    let [tag, time, decision, method, host, port, _reason] = words[..] else {
        return None;
    };
    if tag != TAG || !is_time(time) {
        return None;
    }
    let decision = Decision::parse(decision)?;
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    if matches!(method, "START" | "RELOAD") || host == "-" || host.is_empty() {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    Some(Connection {
        time: time.to_string(),
        host: clean_host(host),
        port,
        decision,
    })
}

/// Parse the proxy's log into connections, in order.
pub fn parse(log: &str) -> Vec<Connection> {
    log.lines()
        .filter_map(parse_line)
        .take(MAX_ENTRIES)
        .collect()
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

    const LOG: &str = "2026-11-23T12:12:07.997000000Z git-agent-gateway 2026-11-23T12:12:07.997Z allowed START api 3128 serving
2026-11-23T12:12:10.198000000Z git-agent-gateway 2026-11-23T12:12:10.198Z allowed GET allowed.test 8000 ok
2026-11-23T12:12:10.205000000Z git-agent-gateway 2026-11-23T12:12:10.205Z denied GET denied.test 80 not-allowed
2026-11-23T12:12:10.209000000Z git-agent-gateway 2026-11-23T12:12:10.209Z allowed CONNECT allowed.test 443 ok
2026-11-23T12:12:10.214000000Z git-agent-gateway 2026-11-23T12:12:10.214Z failed CONNECT gone.test 443 resolve
2026-11-23T12:12:10.215000000Z git-agent-vault 2026-11-23T12:12:10.215Z denied DELETE api.example.com 443 method
2026-11-23T12:12:10.216000000Z git-agent-gateway 2026-11-23T12:12:10.216Z denied - - 0 bad-request-line
git-agent-gateway 2026-11-23T12:12:10.217Z denied CONNECT host.docker.internal 22 blocked-name
git-agent-gateway 2026-11-23T12:12:10.218Z allowed GET evil.test 80 ok extra-word
fake line: git-agent-gateway 2026-11-23T12:12:10.219Z allowed GET forged.test 80 ok
git-agent-gateway 2026-11-23T12:12:10.219Z maybe GET forged.test 80 ok
git-agent-gateway yesterday allowed GET forged.test 80 ok
git-agent-gateway 2026-11-23T12:12:10.220Z allowed GET forged.test 99999 ok
";

    #[test]
    fn lines_of_the_proxys_shape_become_connections() {
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
                ("gone.test", 443, Decision::Failed),
                ("host.docker.internal", 22, Decision::Denied),
            ]
        );
        assert_eq!(c[0].time, "2026-11-23T12:12:10.198Z");
        assert_eq!(from_tsv(&to_tsv(&c)), c);
    }

    #[test]
    fn hostile_host_names_are_neutralised() {
        let line = "git-agent-gateway 2026-11-23T12:12:10.198Z denied CONNECT \u{1b}[31mevil\u{7}\u{9b}x 443 ok\n";
        let c = parse(line);
        assert_eq!(c.len(), 1);
        assert!(
            c[0].host.chars().all(|ch| ch.is_ascii_graphic()),
            "{:?}",
            c[0].host
        );
        assert!(!c[0].host.contains('\u{1b}'));
        let many = "git-agent-gateway 2026-11-23T12:12:10.198Z denied GET x.test 80 ok\n"
            .repeat(MAX_ENTRIES + 5);
        assert_eq!(parse(&many).len(), MAX_ENTRIES);
    }

    #[test]
    fn summary_groups_by_host_port_and_decision() {
        let s = summarize(&parse(LOG));
        let allowed: Vec<_> = s.iter().filter(|r| r.decision == "allowed").collect();
        assert_eq!(allowed.len(), 2);
        assert!(s.iter().any(|r| r.host == "denied.test" && r.count == 1));
    }
}
