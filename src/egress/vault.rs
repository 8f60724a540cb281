//! The credential vault: the real model API key never enters the agent's container.
//!
//! The agent gets a per-task stand-in token and an API base URL that points at its task's
//! gateway. The gateway's vault (nginx) accepts only requests carrying that stand-in, swaps
//! in the real key, and forwards to the real API (over TLS, verified against the system CA
//! bundle). The stand-in is random, worthless anywhere but at its own task's vault, which only
//! the task's internal network reaches; the vault goes away with the task's gateway when the
//! task ends.
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

    /// The URL nginx forwards to (with the path prefix, so `/v1/x` becomes `<path>/v1/x`).
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

/// Is `value` safe to write inside a double-quoted nginx string?
fn nginx_safe(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"\"\\$;{}'".contains(&b))
}

/// The vault's nginx configuration. Requests must carry a stand-in as `x-api-key` or as an
/// `Authorization: Bearer` token; it is replaced by the real value and the request forwarded.
/// Anything else gets 401 and never reaches the upstream.
pub fn nginx_config(upstream: &Upstream, secrets: &[Secret], port: u16) -> Result<String> {
    for s in secrets {
        if !nginx_safe(&s.real) {
            return Err(hinted(
                format!(
                    "the value of {} has characters the vault cannot carry (spaces, quotes, '$', ';', braces or backslashes)",
                    s.var
                ),
                format!(
                    "check the key: git agent auth --status; or set {} again",
                    s.var
                ),
            ));
        }
    }
    let mut key_map = String::new();
    let mut auth_map = String::new();
    for s in secrets {
        key_map.push_str(&format!("    \"{}\" \"{}\";\n", s.standin, s.real));
        auth_map.push_str(&format!(
            "    \"Bearer {}\" \"Bearer {}\";\n",
            s.standin, s.real
        ));
    }
    let ssl = if upstream.https {
        "        proxy_ssl_server_name on;\n        proxy_ssl_verify on;\n        proxy_ssl_verify_depth 4;\n        proxy_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;\n"
    } else {
        ""
    };
    Ok(format!(
        r#"# git-agent credential vault. Holds real keys: never logged, never in the agent's reach.
pid /tmp/nginx.pid;
worker_processes 1;
error_log /tmp/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path /tmp/nginx-body;
  proxy_temp_path /tmp/nginx-proxy;
  fastcgi_temp_path /tmp/nginx-fastcgi;
  uwsgi_temp_path /tmp/nginx-uwsgi;
  scgi_temp_path /tmp/nginx-scgi;
  server_tokens off;
  client_max_body_size 256m;
  map_hash_bucket_size 256;
  map $http_x_api_key $git_agent_key {{
    default "";
{key_map}  }}
  map $http_authorization $git_agent_auth {{
    default "";
{auth_map}  }}
  map "$git_agent_key:$git_agent_auth" $git_agent_refused {{
    ":" 1;
    default 0;
  }}
  server {{
    listen {port};
    location / {{
      if ($git_agent_refused) {{
        return 401 "git-agent vault: this request does not carry the task's token\n";
      }}
      proxy_set_header x-api-key $git_agent_key;
      proxy_set_header Authorization $git_agent_auth;
      proxy_set_header Connection "";
      proxy_http_version 1.1;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
      proxy_send_timeout 3600s;
{ssl}      proxy_pass {pass};
    }}
  }}
}}
"#,
        pass = upstream.proxy_pass(),
    ))
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
        let u = Upstream::parse("https://api.example.com").unwrap();
        let c = nginx_config(&u, std::slice::from_ref(&s), 8080).unwrap();
        assert!(c.contains(&format!("\"{}\" \"sk-real-123\";", s.standin)));
        assert!(c.contains(&format!("\"Bearer {}\" \"Bearer sk-real-123\";", s.standin)));
        assert!(c.contains("return 401"));
        assert!(c.contains("proxy_ssl_verify on"));
        assert!(c.contains("access_log off"));
        let evil = Secret {
            real: "k\"; include /etc/passwd; #".into(),
            ..s
        };
        assert!(nginx_config(&u, &[evil], 8080).is_err());
    }
}
