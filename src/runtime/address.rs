//! Where the container engine is, and how to reach it: a local socket (`unix://`), a TCP
//! address with mutual TLS (`tcp://` with a CA, a client certificate and its key), plain TCP,
//! or an SSH login (`ssh://user@host[:port]`, through the system `ssh` client and the remote
//! `docker system dial-stdio`).
//!
//! [`EngineAddress::from_env`] reads it the way the docker CLI does: `DOCKER_HOST` (with
//! `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`), else the Docker context named by
//! `DOCKER_CONTEXT`, else the `currentContext` of the CLI's `config.json` (in `DOCKER_CONFIG`,
//! default `~/.docker`), else the local socket. [`EngineAddress::new`] takes the same values
//! from a caller that read them elsewhere (git config).
//!
//! Owns: parsing and checking an address, finding a context's files, and the words of a
//! connection failure (what was tried, and the fix for that kind of address). Must not:
//! connect (that is [`super::docker::DockerRuntime::connect_at`]), or read anything from a
//! repository: only the user's environment and files say where the engine is.
//!
//! A TLS engine is always verified: a context with `SkipTLSVerify` is refused rather than
//! trusted blindly.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::Digest;

use crate::error::hinted;

/// The local socket, when nothing says otherwise.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// The files of a mutual-TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the engine's certificate.
    pub ca: PathBuf,
    /// The client's certificate, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir` (the docker CLI's names).
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// Every file must be there and readable; the error names the ones that are not.
    fn check(&self, url: &str) -> Result<()> {
        let missing: Vec<String> = [&self.ca, &self.cert, &self.key]
            .into_iter()
            .filter(|p| std::fs::File::open(p).is_err())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let dir = self
            .ca
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        Err(hinted(
            format!(
                "the TLS files for the engine at {url} cannot be read: {}",
                missing.join(", ")
            ),
            format!(
                "put the engine's CA (ca.pem), your client certificate (cert.pem) and its key \
                 (key.pem) in {dir}, or point DOCKER_CERT_PATH at the directory that holds them"
            ),
        ))
    }
}

/// The kinds of address there are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Unix,
    Tcp,
    Ssh,
}

/// Where the engine is: its URL, and for a `tcp://` engine with TLS, the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineAddress {
    pub url: String,
    pub tls: Option<TlsFiles>,
}

impl fmt::Display for EngineAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

impl Default for EngineAddress {
    fn default() -> Self {
        EngineAddress {
            url: DEFAULT_SOCKET.into(),
            tls: None,
        }
    }
}

impl EngineAddress {
    /// An address from values read elsewhere (git config): `url` is `unix://`, `tcp://` or
    /// `ssh://`; with `verify`, a `tcp://` engine is reached over mutual TLS with the files
    /// in `tls_dir` (default: the docker CLI's directory, `$DOCKER_CONFIG` or `~/.docker`).
    /// TLS files without `verify` are refused: git-agent never talks TLS unverified, and an
    /// engine reached in plain text because of a typo would be worse.
    pub fn new(url: &str, tls_dir: Option<&Path>, verify: bool) -> Result<EngineAddress> {
        let scheme = parse(url)?;
        if !verify {
            if let Some(dir) = tls_dir {
                return Err(hinted(
                    format!(
                        "TLS files are given for the engine at {url} ({}) but verification is off",
                        dir.display()
                    ),
                    "turn verification on (git-agent talks TLS only verified), or remove the \
                     certificate directory to use plain TCP",
                ));
            }
            return Ok(EngineAddress {
                url: url.to_string(),
                tls: None,
            });
        }
        let tls = match scheme {
            Scheme::Tcp => {
                let dir = match tls_dir {
                    Some(d) => d.to_path_buf(),
                    None => config_dir(&env)?,
                };
                let files = TlsFiles::in_dir(&dir);
                files.check(url)?;
                Some(files)
            }
            // The docker CLI uses no TLS for these either.
            Scheme::Unix | Scheme::Ssh => None,
        };
        Ok(EngineAddress {
            url: url.to_string(),
            tls,
        })
    }

    /// The address the environment names, with the docker CLI's precedence: `DOCKER_HOST`,
    /// then `DOCKER_CONTEXT`, then the CLI's current context, then the local socket.
    pub fn from_env() -> Result<EngineAddress> {
        Self::from_vars(&env)
    }

    /// [`from_env`](Self::from_env) with the variables read through `var`.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<EngineAddress> {
        if let Some(host) = var("DOCKER_HOST").filter(|h| !h.trim().is_empty()) {
            let host = host.trim();
            // As the docker CLI: any non-empty DOCKER_TLS_VERIFY turns verification on.
            let verify = var("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty());
            let certs = var("DOCKER_CERT_PATH")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from);
            if !verify {
                parse(host)?;
                if var("DOCKER_TLS").is_some_and(|v| !v.is_empty()) && parse(host)? == Scheme::Tcp {
                    return Err(unverified(&format!("DOCKER_TLS is set for {host}")));
                }
                return Ok(EngineAddress {
                    url: host.to_string(),
                    tls: None,
                });
            }
            let dir = match certs {
                Some(d) => d,
                None => config_dir(var)?,
            };
            return EngineAddress::new(host, Some(&dir), true);
        }
        let context = match var("DOCKER_CONTEXT").filter(|c| !c.trim().is_empty()) {
            Some(c) => Some(c.trim().to_string()),
            None => current_context(&config_dir(var)?)?,
        };
        match context {
            Some(name) if name != "default" => context_address(&config_dir(var)?, &name),
            _ => Ok(EngineAddress::default()),
        }
    }

    pub fn scheme(&self) -> Scheme {
        parse(&self.url).unwrap_or(Scheme::Tcp)
    }

    /// The engine's host as the URL names it (`None` for a local socket): `10.0.0.5` of
    /// `tcp://10.0.0.5:2376`, `build` of `ssh://me@build:2222`.
    pub fn host(&self) -> Option<&str> {
        let rest = match self.scheme() {
            Scheme::Unix => return None,
            Scheme::Tcp => self.url.split_once("://")?.1,
            Scheme::Ssh => self.url.split_once("://")?.1,
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if let Some(v6) = authority.strip_prefix('[') {
            return v6.split_once(']').map(|(h, _)| h);
        }
        Some(authority.split_once(':').map_or(authority, |(h, _)| h))
    }

    /// Whether the engine runs on another machine (or at least not behind a local socket):
    /// its published ports are on that machine, and `host.docker.internal` is that machine.
    pub fn is_remote(&self) -> bool {
        self.scheme() != Scheme::Unix
    }

    /// What to do when the engine at this address cannot be reached.
    pub fn unreachable_hint(&self) -> String {
        let from_env = env("DOCKER_HOST").is_some_and(|h| h.trim() == self.url);
        self.hint(from_env)
    }

    /// The hint, naming `DOCKER_HOST` when that is where the address came from (so the
    /// user sees what to change or unset).
    fn hint(&self, from_env: bool) -> String {
        let at = if from_env {
            format!("DOCKER_HOST={}", self.url)
        } else {
            self.url.clone()
        };
        let other = if from_env {
            ", or unset DOCKER_HOST to use the local socket"
        } else {
            ""
        };
        match self.scheme() {
            Scheme::Unix if self.url == DEFAULT_SOCKET => {
                "start the Docker engine (`sudo systemctl start docker`, or `sudo dockerd &` \
                 where there is no systemd), or point DOCKER_HOST at one; `git agent doctor` \
                 checks the connection"
                    .into()
            }
            Scheme::Unix => format!(
                "check that an engine listens on {at}{other}; `git agent doctor` checks the \
                 connection"
            ),
            Scheme::Tcp => match &self.tls {
                Some(tls) => format!(
                    "check that the engine at {at} is running and listening with TLS, and that \
                     its certificate is signed by {} and accepts your client certificate {}{other}; \
                     `docker version` (with the same DOCKER_* settings) and `git agent doctor` \
                     check the connection",
                    tls.ca.display(),
                    tls.cert.display()
                ),
                None => format!(
                    "check that the engine at {at} is running and listening on that port (an \
                     engine with TLS needs DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH){other}; \
                     `git agent doctor` checks the connection"
                ),
            },
            Scheme::Ssh => format!(
                "check the SSH login and the engine behind it with `{}`: it must print the \
                 server's version without asking for a password (use a key or ssh-agent; the \
                 host key must already be known){other}; `git agent doctor` checks the \
                 connection",
                self.ssh_check()
            ),
        }
    }

    /// The command that checks an `ssh://` engine by hand.
    fn ssh_check(&self) -> String {
        let rest = self.url.trim_start_matches("ssh://");
        let rest = rest.trim_end_matches('/');
        match rest.rsplit_once(':') {
            Some((login, port)) if !login.ends_with(']') && port.parse::<u16>().is_ok() => {
                format!("ssh -p {port} {login} docker version")
            }
            _ => format!("ssh {rest} docker version"),
        }
    }
}

/// Where a port the engine publishes is bound, and the host a client puts in its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The engine host's address the port is bound to (never all of them).
    pub bind_ip: String,
    /// The host as the client reaches it (the engine URL's host, or 127.0.0.1).
    pub url_host: String,
}

impl Published {
    /// A local engine's: its host's loopback, which is this machine's.
    pub fn loopback() -> Published {
        Published {
            bind_ip: "127.0.0.1".into(),
            url_host: "127.0.0.1".into(),
        }
    }

    /// `http://host:port/`.
    pub fn url(&self, port: u16) -> String {
        if self.url_host.contains(':') {
            format!("http://[{}]:{port}/", self.url_host)
        } else {
            format!("http://{}:{port}/", self.url_host)
        }
    }
}

impl EngineAddress {
    /// Where this engine publishes a port for the user to open (a preview): a local engine
    /// on its host's loopback, which is the user's; a remote one on the one address of its
    /// host that the user reaches it by (the URL's host, resolved here), so the URL names
    /// that host. Never on all the host's addresses.
    pub fn published(&self) -> Result<Published> {
        let Some(host) = self.host() else {
            return Ok(Published::loopback());
        };
        let ip = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                use std::net::ToSocketAddrs;
                let found: Vec<std::net::IpAddr> = (host, 0)
                    .to_socket_addrs()
                    .map(|a| a.map(|a| a.ip()).collect())
                    .unwrap_or_default();
                *found
                    .iter()
                    .find(|ip| ip.is_ipv4())
                    .or(found.first())
                    .ok_or_else(|| {
                        hinted(
                            format!("cannot resolve the engine's host '{host}' (of {self})"),
                            "check the name, or give the engine by its IP address",
                        )
                    })?
            }
        };
        Ok(Published {
            bind_ip: ip.to_string(),
            url_host: host.to_string(),
        })
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The scheme of an engine URL, after checking the rest of it has the right shape.
fn parse(url: &str) -> Result<Scheme> {
    let bad = |why: &str| {
        hinted(
            format!("bad engine address '{url}': {why}"),
            "use unix:///path/to/docker.sock, tcp://host:port (with DOCKER_TLS_VERIFY=1 and \
             DOCKER_CERT_PATH for TLS) or ssh://user@host[:port]",
        )
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("it has no scheme"));
    };
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    match scheme {
        "unix" => {
            if !rest.starts_with('/') {
                return Err(bad("a socket path must be absolute"));
            }
            Ok(Scheme::Unix)
        }
        "tcp" => {
            let authority = rest.trim_end_matches('/');
            if authority.contains('/') || authority.contains('@') {
                return Err(bad("a tcp:// address is host:port only"));
            }
            let (host, port) = split_port(authority).ok_or_else(|| bad("it has no port"))?;
            if host.is_empty() {
                return Err(bad("it has no host"));
            }
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
            Ok(Scheme::Tcp)
        }
        "ssh" => {
            let authority = rest.trim_end_matches('/');
            if authority.contains('/') {
                return Err(bad("an ssh:// address has no path"));
            }
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            // `-` first would be read as an option by ssh.
            if host.is_empty() || host.starts_with('-') || authority.starts_with('-') {
                return Err(bad("it has no host"));
            }
            if let Some((_, port)) = split_port(host)
                && port.parse::<u16>().ok().filter(|p| *p != 0).is_none()
            {
                return Err(bad("the port is not a number from 1 to 65535"));
            }
            Ok(Scheme::Ssh)
        }
        "http" | "https" => Err(bad(
            "the docker CLI's schemes are tcp:// (TLS through DOCKER_TLS_VERIFY), unix:// and ssh://",
        )),
        "npipe" | "fd" => Err(bad("this kind of address is not supported here")),
        _ => Err(bad("unknown scheme")),
    }
}

/// `host` and `port` of `host:port` or `[v6]:port`.
fn split_port(authority: &str) -> Option<(&str, &str)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, rest) = v6.split_once(']')?;
        return Some((host, rest.strip_prefix(':')?));
    }
    authority.rsplit_once(':')
}

fn unverified(what: &str) -> anyhow::Error {
    hinted(
        format!("{what}: TLS without verifying the engine's certificate is not supported"),
        "give the engine's CA with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (ca.pem, cert.pem, \
         key.pem), or a context with TLS files and skip-tls-verify=false",
    )
}

/// The docker CLI's configuration directory: `DOCKER_CONFIG`, else `~/.docker`.
fn config_dir(var: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf> {
    if let Some(dir) = var("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = var("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
        hinted(
            "HOME is not set, so the docker CLI's directory (~/.docker) cannot be found",
            "set HOME, or DOCKER_CONFIG to the directory, or DOCKER_HOST to the engine",
        )
    })?;
    Ok(Path::new(&home).join(".docker"))
}

/// The `currentContext` of the CLI's `config.json`, if it names one.
fn current_context(config: &Path) -> Result<Option<String>> {
    let path = config.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        hinted(
            format!("{} is not valid JSON: {e}", path.display()),
            "fix the file (the docker CLI reads it too), or set DOCKER_HOST to the engine",
        )
    })?;
    Ok(value
        .get("currentContext")
        .and_then(|c| c.as_str())
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string))
}

/// The directory name of a context's files: the SHA-256 of its name, in hex.
pub fn context_id(name: &str) -> String {
    sha2::Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The engine of a Docker context: `contexts/meta/<id>/meta.json` under the CLI's
/// directory, and its TLS files in `contexts/tls/<id>/docker/`.
fn context_address(config: &Path, name: &str) -> Result<EngineAddress> {
    let id = context_id(name);
    let meta = config.join("contexts/meta").join(&id).join("meta.json");
    let text = match std::fs::read_to_string(&meta) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(hinted(
                format!(
                    "Docker context '{name}' does not exist (no {})",
                    meta.display()
                ),
                "list the contexts with `docker context ls`; choose one with DOCKER_CONTEXT or \
                 `docker context use`, or set DOCKER_HOST to the engine",
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", meta.display())),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        hinted(
            format!(
                "Docker context '{name}': {} is not valid JSON: {e}",
                meta.display()
            ),
            format!("recreate it with `docker context rm {name}` and `docker context create`"),
        )
    })?;
    let endpoint = value.pointer("/Endpoints/docker");
    let host = endpoint
        .and_then(|e| e.get("Host"))
        .and_then(|h| h.as_str())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            hinted(
                format!("Docker context '{name}' names no docker endpoint host"),
                format!("set one with `docker context update {name} --docker host=...`"),
            )
        })?;
    let skip = endpoint
        .and_then(|e| e.get("SkipTLSVerify"))
        .and_then(|s| s.as_bool())
        .unwrap_or(false);
    let scheme = parse(host).map_err(|e| {
        let hint = format!("fix it with `docker context update {name} --docker host=...`");
        hinted(format!("Docker context '{name}': {e}"), hint)
    })?;
    let tls_dir = config.join("contexts/tls").join(&id).join("docker");
    let has_tls = tls_dir.is_dir();
    if scheme != Scheme::Tcp {
        return Ok(EngineAddress {
            url: host.to_string(),
            tls: None,
        });
    }
    if skip {
        return Err(unverified(&format!(
            "Docker context '{name}' sets SkipTLSVerify"
        )));
    }
    if !has_tls {
        return Ok(EngineAddress {
            url: host.to_string(),
            tls: None,
        });
    }
    EngineAddress::new(host, Some(&tls_dir), true)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::error::find_hint;

    fn vars(list: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn certs(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
    }

    fn context(config: &Path, name: &str, meta: &str) -> PathBuf {
        let id = context_id(name);
        let dir = config.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("meta.json"), meta).unwrap();
        config.join("contexts/tls").join(&id).join("docker")
    }

    #[test]
    fn nothing_set_is_the_local_socket() {
        let home = tempfile::tempdir().unwrap();
        let h = home.path().to_str().unwrap();
        let a = EngineAddress::from_vars(&vars(&[("HOME", h)])).unwrap();
        assert_eq!(a, EngineAddress::default());
        assert_eq!(a.to_string(), DEFAULT_SOCKET);
        assert!(!a.is_remote());
        assert_eq!(a.host(), None);
    }

    #[test]
    fn docker_host_with_tls_takes_the_cert_path() {
        let dir = tempfile::tempdir().unwrap();
        certs(dir.path());
        let d = dir.path().to_str().unwrap();
        let a = EngineAddress::from_vars(&vars(&[
            ("DOCKER_HOST", "tcp://10.0.0.5:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", d),
        ]))
        .unwrap();
        assert_eq!(a.url, "tcp://10.0.0.5:2376");
        assert_eq!(a.tls, Some(TlsFiles::in_dir(dir.path())));
        assert_eq!(a.host(), Some("10.0.0.5"));
        assert!(a.is_remote());
        // Without DOCKER_CERT_PATH: the CLI's directory (DOCKER_CONFIG here).
        let a = EngineAddress::from_vars(&vars(&[
            ("DOCKER_HOST", "tcp://e:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CONFIG", d),
        ]))
        .unwrap();
        assert_eq!(a.tls.unwrap().ca, dir.path().join("ca.pem"));
    }

    #[test]
    fn missing_tls_files_are_named_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let d = dir.path().to_str().unwrap();
        let e = EngineAddress::from_vars(&vars(&[
            ("DOCKER_HOST", "tcp://10.0.0.5:2376"),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", d),
        ]))
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("cert.pem") && text.contains("key.pem"),
            "{text}"
        );
        assert!(!text.contains("ca.pem"), "{text}");
        assert!(find_hint(&e).unwrap().contains("DOCKER_CERT_PATH"));
    }

    #[test]
    fn docker_host_wins_over_contexts() {
        let config = tempfile::tempdir().unwrap();
        let c = config.path().to_str().unwrap();
        context(
            config.path(),
            "far",
            r#"{"Name":"far","Endpoints":{"docker":{"Host":"ssh://me@far"}}}"#,
        );
        std::fs::write(
            config.path().join("config.json"),
            r#"{"currentContext":"far"}"#,
        )
        .unwrap();
        let a = EngineAddress::from_vars(&vars(&[
            ("DOCKER_CONFIG", c),
            ("DOCKER_HOST", "unix:///run/other.sock"),
            ("DOCKER_CONTEXT", "nope"),
        ]))
        .unwrap();
        assert_eq!(a.url, "unix:///run/other.sock");
        // DOCKER_CONTEXT over the current context.
        let e =
            EngineAddress::from_vars(&vars(&[("DOCKER_CONFIG", c), ("DOCKER_CONTEXT", "nope")]))
                .unwrap_err();
        assert!(
            e.to_string().contains("context 'nope' does not exist"),
            "{e}"
        );
        assert!(find_hint(&e).unwrap().contains("docker context ls"));
        // The current context.
        let a = EngineAddress::from_vars(&vars(&[("DOCKER_CONFIG", c)])).unwrap();
        assert_eq!(a.url, "ssh://me@far");
        assert_eq!(a.host(), Some("far"));
        // "default" is the local socket.
        let a = EngineAddress::from_vars(&vars(&[
            ("DOCKER_CONFIG", c),
            ("DOCKER_CONTEXT", "default"),
        ]))
        .unwrap();
        assert_eq!(a, EngineAddress::default());
    }

    #[test]
    fn a_context_with_tls_files_uses_them_and_skip_verify_is_refused() {
        let config = tempfile::tempdir().unwrap();
        let c = config.path().to_str().unwrap();
        let tls = context(
            config.path(),
            "secure",
            r#"{"Name":"secure","Endpoints":{"docker":{"Host":"tcp://e.example:2376","SkipTLSVerify":false}}}"#,
        );
        // Its directory is the SHA-256 of its name, as the docker CLI writes it.
        assert_eq!(
            context_id("secure"),
            "6a934b45144e3758911efa29ed68fb2d420fa7bd568739cdcda9251fa9609b1e"
        );
        // TLS files named in the context but missing: an error.
        std::fs::create_dir_all(&tls).unwrap();
        let e =
            EngineAddress::from_vars(&vars(&[("DOCKER_CONFIG", c), ("DOCKER_CONTEXT", "secure")]))
                .unwrap_err();
        assert!(e.to_string().contains("cannot be read"), "{e}");
        certs(&tls);
        let a =
            EngineAddress::from_vars(&vars(&[("DOCKER_CONFIG", c), ("DOCKER_CONTEXT", "secure")]))
                .unwrap();
        assert_eq!(a.url, "tcp://e.example:2376");
        assert_eq!(a.tls, Some(TlsFiles::in_dir(&tls)));
        context(
            config.path(),
            "lax",
            r#"{"Name":"lax","Endpoints":{"docker":{"Host":"tcp://e.example:2376","SkipTLSVerify":true}}}"#,
        );
        let e = EngineAddress::from_vars(&vars(&[("DOCKER_CONFIG", c), ("DOCKER_CONTEXT", "lax")]))
            .unwrap_err();
        assert!(e.to_string().contains("SkipTLSVerify"), "{e}");
    }

    #[test]
    fn bad_addresses_are_refused_with_the_forms_that_work() {
        for url in [
            "docker.example:2376",
            "tcp://host",
            "tcp://host:99999",
            "tcp://:2376",
            "tcp://h:1/path",
            "unix://relative.sock",
            "ssh://-oProxyCommand=x",
            "ssh://me@host/path",
            "https://host:2376",
            "gopher://host",
            "tcp://h ost:1",
        ] {
            let e = EngineAddress::new(url, None, false).unwrap_err();
            assert!(e.to_string().contains("bad engine address"), "{url}: {e}");
            assert!(find_hint(&e).unwrap().contains("ssh://user@host"), "{url}");
        }
        for url in [
            "tcp://127.0.0.1:2375",
            "tcp://[::1]:2375",
            "unix:///var/run/docker.sock",
            "ssh://me@build",
            "ssh://build:2222",
        ] {
            EngineAddress::new(url, None, false).unwrap();
        }
    }

    #[test]
    fn tls_files_without_verification_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = EngineAddress::new("tcp://h:2376", Some(dir.path()), false).unwrap_err();
        assert!(e.to_string().contains("verification is off"), "{e}");
        // An ssh:// or unix:// engine takes no TLS, as with the docker CLI.
        let a = EngineAddress::new("ssh://me@h", None, true).unwrap();
        assert_eq!(a.tls, None);
    }

    #[test]
    fn a_remote_engine_publishes_on_its_own_address_and_a_local_one_on_loopback() {
        let local = EngineAddress::default().published().unwrap();
        assert_eq!(local, Published::loopback());
        assert_eq!(local.url(5173), "http://127.0.0.1:5173/");
        let tcp = EngineAddress::new("tcp://10.77.0.2:2376", None, false).unwrap();
        let p = tcp.published().unwrap();
        assert_eq!(p.bind_ip, "10.77.0.2");
        assert_eq!(p.url(8000), "http://10.77.0.2:8000/");
        let ssh = EngineAddress::new("ssh://me@localhost:2222", None, false).unwrap();
        let p = ssh.published().unwrap();
        assert_eq!(p.url_host, "localhost");
        assert!(p.bind_ip == "127.0.0.1" || p.bind_ip == "::1", "{p:?}");
        let v6 = EngineAddress::new("tcp://[::1]:2376", None, false).unwrap();
        assert_eq!(v6.published().unwrap().url(80), "http://[::1]:80/");
        let nowhere = EngineAddress::new("ssh://me@no-such-host.invalid", None, false).unwrap();
        let e = nowhere.published().unwrap_err();
        assert!(find_hint(&e).unwrap().contains("IP address"), "{e}");
    }

    #[test]
    fn hints_name_the_fix_for_each_kind_of_address() {
        let ssh = EngineAddress::new("ssh://me@build:2222", None, false).unwrap();
        assert!(
            ssh.unreachable_hint()
                .contains("`ssh -p 2222 me@build docker version`"),
            "{}",
            ssh.unreachable_hint()
        );
        let ssh = EngineAddress::new("ssh://me@build", None, false).unwrap();
        assert!(
            ssh.unreachable_hint()
                .contains("`ssh me@build docker version`")
        );
        let tcp = EngineAddress {
            url: "tcp://h:2376".into(),
            tls: Some(TlsFiles::in_dir(Path::new("/certs"))),
        };
        let hint = tcp.unreachable_hint();
        assert!(
            hint.contains("/certs/ca.pem") && hint.contains("/certs/cert.pem"),
            "{hint}"
        );
        assert!(
            EngineAddress::default()
                .unreachable_hint()
                .contains("start the Docker engine")
        );
        // Where the address came from is named, so the user knows what to change.
        let plain = EngineAddress::new("tcp://127.0.0.1:1", None, false).unwrap();
        assert!(plain.hint(true).contains("DOCKER_HOST=tcp://127.0.0.1:1"));
        assert!(plain.hint(true).contains("unset DOCKER_HOST"));
        assert!(!plain.hint(false).contains("DOCKER_HOST="));
        for a in [ssh, tcp, EngineAddress::default()] {
            assert!(a.unreachable_hint().contains("git agent doctor"));
        }
    }
}
