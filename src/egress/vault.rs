//! The credential vault: the real model API key never enters the agent's container.
//!
//! The agent gets a per-task stand-in token and an API base URL that points at its task's
//! gateway. The gateway's vault (in dockerfiles/git-agent-gateway) accepts only requests
//! carrying that stand-in, and only the methods and path prefixes of the agent's API (from its
//! built-in or user definition: `api_methods`, `api_paths`, relative to `api_url`); it swaps
//! in the real key, drops forwarding/identity headers and any other header carrying a
//! stand-in, and forwards to the real API (over TLS, verified against the system CA bundle).
//! Paths are matched on segment boundaries and must be canonical: dot segments, `//`, `%`
//! escapes and backslashes are refused rather than normalised, so what was checked is exactly
//! what is forwarded. The stand-in is random, worthless anywhere but at its own task's vault,
//! which listens only on the task's internal network; the vault goes away with the task's
//! gateway when the task ends.
//!
//! The real key reaches the gateway as a file uploaded through the engine API before the
//! gateway starts: not in its environment, not on any command line, not in an image.

use anyhow::Result;

use crate::error::hinted;

/// Where the agent's API requests go: the gateway's vault port, by its alias.
pub fn local_url(alias: &str, port: u16) -> String {
    format!("http://{alias}:{port}")
}

/// A parsed upstream API base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub https: bool,
    pub host: String,
    pub port: Option<u16>,
    /// Path prefix, without a trailing slash ("" for none).
    pub path: String,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Upstream> {
        let bad = |why: &str| {
            hinted(
                format!("bad API base URL '{url}': {why}"),
                "use http(s)://host[:port][/path], e.g. https://api.anthropic.com",
            )
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("it must start with http:// or https://"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?,
                ),
            ),
            None => (authority, None),
        };
        let host = crate::egress::normalize_domain(host).map_err(|e| bad(&e))?;
        if host.starts_with("*.") {
            return Err(bad("a wildcard is not a host"));
        }
        let path_ok = path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
        if !path_ok {
            return Err(bad("the path may only hold letters, digits and /-._~"));
        }
        Ok(Upstream {
            https,
            host,
            port,
            path: path.to_string(),
        })
    }

    /// The base URL the vault forwards to (with the path prefix, so `/v1/x` becomes
    /// `<path>/v1/x`).
    pub fn proxy_pass(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}://{}{port}{}/", self.host, self.path)
    }
}

/// One credential held by the vault.
#[derive(Debug, Clone)]
pub struct Secret {
    /// The agent's environment variable (e.g. ANTHROPIC_API_KEY).
    pub var: String,
    pub real: String,
    pub standin: String,
}

/// A fresh random stand-in token.
pub fn standin() -> Result<String> {
    use std::io::Read;
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| anyhow::anyhow!("cannot read /dev/urandom for a stand-in token: {e}"))?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("git-agent-standin-{hex}"))
}

/// What the vault lets through to the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// HTTP methods, upper case.
    pub methods: Vec<String>,
    /// Path prefixes relative to the upstream's base URL (`/v1/messages` covers itself and
    /// `/v1/messages/...`, not `/v1/messagesX`); `/` covers every path.
    pub paths: Vec<String>,
}

impl Default for Routes {
    /// For a definition that names none: reads and requests, any path under its `api_url`.
    fn default() -> Routes {
        Routes {
            methods: vec!["GET".into(), "POST".into()],
            paths: vec!["/".into()],
        }
    }
}

/// Check one method name (an HTTP token in upper case).
pub fn check_method(m: &str) -> Result<(), String> {
    if !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(format!(
            "'{m}' is not an HTTP method in upper case (GET, POST, ...)"
        ))
    }
}

/// Check one path prefix: absolute, canonical, plain characters. A segment may start with
/// `*` followed by a suffix (`*:generateContent`): it stands for one segment that is a name
/// (letters, digits, `-._`) followed by exactly that suffix, e.g. the model in
/// `/v1beta/models/gemini-2.5-pro:generateContent`.
pub fn check_path(p: &str) -> Result<(), String> {
    let plain = p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~:".contains(&b) || b == b'*');
    let wildcards_ok = p.split('/').all(|s| match s.strip_prefix('*') {
        Some(suffix) => !suffix.is_empty() && !suffix.contains('*'),
        None => !s.contains('*'),
    });
    let canonical = p.starts_with('/')
        && (p == "/" || !p.ends_with('/'))
        && !p.contains("//")
        && !p.split('/').any(|s| s == "." || s == "..");
    if plain && wildcards_ok && canonical {
        Ok(())
    } else {
        Err(format!(
            "'{p}' is not a path prefix like /v1/messages or /v1beta/models/*:generateContent (letters, digits, /-._~:, `*` only to start a segment and followed by a suffix, no dot segments or trailing slash)"
        ))
    }
}

/// The vault's configuration (`vault.json`, mode 0600, read by dockerfiles/git-agent-gateway).
/// Real values are checked to be plain header text: a line break would add headers.
pub fn vault_config(upstream: &Upstream, secrets: &[Secret], routes: &Routes) -> Result<String> {
    for s in secrets {
        if s.real.is_empty() || !s.real.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(hinted(
                format!(
                    "the value of {} has characters the vault cannot carry (spaces, line breaks or other control characters)",
                    s.var
                ),
                format!(
                    "check the key: git agent auth --status; or set {} again",
                    s.var
                ),
            ));
        }
    }
    for m in &routes.methods {
        check_method(m).map_err(|e| hinted(e, "fix api_methods in the agent's definition"))?;
    }
    for p in &routes.paths {
        check_path(p).map_err(|e| hinted(e, "fix api_paths in the agent's definition"))?;
    }
    let secrets: Vec<_> = secrets
        .iter()
        .map(|s| serde_json::json!({"var": s.var, "real": s.real, "standin": s.standin}))
        .collect();
    Ok(serde_json::json!({
        "upstream": {
            "https": upstream.https,
            "host": upstream.host,
            "port": upstream.port,
            "path": upstream.path,
        },
        "secrets": secrets,
        "methods": routes.methods,
        "paths": routes.paths,
    })
    .to_string()
        + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_parse() {
        let u = Upstream::parse("https://api.anthropic.com").unwrap();
        assert_eq!(u.proxy_pass(), "https://api.anthropic.com/");
        let u = Upstream::parse("http://host.docker.internal:4100/proxy/").unwrap();
        assert_eq!(u.proxy_pass(), "http://host.docker.internal:4100/proxy/");
        assert!(!u.https);
        for bad in [
            "ftp://x",
            "https://user:pw@x",
            "http://x:port",
            "http://x/$y",
            "http://a b",
            "https://*.x",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn config_swaps_only_the_standin() {
        let s = Secret {
            var: "ANTHROPIC_API_KEY".into(),
            real: "sk-real-123".into(),
            standin: standin().unwrap(),
        };
        assert!(s.standin.starts_with("git-agent-standin-") && s.standin.len() > 40);
        assert_ne!(s.standin, standin().unwrap());
        let u = Upstream::parse("https://api.example.com/base").unwrap();
        let routes = Routes {
            methods: vec!["POST".into()],
            paths: vec!["/v1/messages".into()],
        };
        let c = vault_config(&u, std::slice::from_ref(&s), &routes).unwrap();
        let v: serde_json::Value = serde_json::from_str(&c).unwrap();
        assert_eq!(v["secrets"][0]["standin"], s.standin.as_str());
        assert_eq!(v["secrets"][0]["real"], "sk-real-123");
        assert_eq!(v["upstream"]["host"], "api.example.com");
        assert_eq!(v["upstream"]["https"], true);
        assert_eq!(v["upstream"]["path"], "/base");
        assert_eq!(v["methods"], serde_json::json!(["POST"]));
        assert_eq!(v["paths"], serde_json::json!(["/v1/messages"]));
        for real in ["k\r\nX-Evil: 1", "k v", ""] {
            let evil = Secret {
                real: real.into(),
                ..s.clone()
            };
            assert!(vault_config(&u, &[evil], &routes).is_err(), "{real:?}");
        }
        for bad in [
            Routes {
                methods: vec!["post".into()],
                ..Routes::default()
            },
            Routes {
                paths: vec!["/v1/../admin".into()],
                ..Routes::default()
            },
        ] {
            assert!(vault_config(&u, std::slice::from_ref(&s), &bad).is_err());
        }
    }

    #[test]
    fn path_prefixes_must_be_canonical() {
        for ok in [
            "/",
            "/v1beta/models/*:generateContent",
            "/v1/*.json",
            "/v1/messages",
            "/v1/models",
            "/responses",
            "/api/hello",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "v1", "/v1/", "//v1", "/v1/../x", "/./v1", "/v1%2fx", "/v1\\x", "/v1?x", "/v 1",
            "/v1/*", "/v1/a*b", "/v1/**:x", "/v1/*:x*", "/*",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        for bad in ["", "get", "GE T", "X-Y"] {
            assert!(check_method(bad).is_err(), "{bad:?} accepted");
        }
    }
}
