//! The transport of an `ssh://` engine: each connection to the engine is one
//! `ssh [-l user] [-p port] -T -o BatchMode=yes -- host docker system dial-stdio` child of
//! git-agent, the request and the answer on its stdin and stdout, as the docker CLI does it.
//!
//! Not bollard's own `ssh` transport: that starts an SSH master per connection with
//! `ControlPersist=yes` in the background, which outlives git-agent (every command left
//! immortal `ssh` processes behind). Here each child is killed when its connection is dropped
//! and dies with git-agent, and what `ssh` said on stderr becomes the error when it ends
//! before the engine answered (a refused key, an unknown host key, no `docker` there).
//!
//! Owns: starting and wiring those children. Must not: choose SSH options that weaken the
//! user's own (host key checking, identities and proxies come from their ssh config).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Most bytes of `ssh`'s stderr kept for an error message.
const STDERR_KEEP: usize = 4096;

/// Where to log in: `ssh://[user@]host[:port]` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl SshTarget {
    /// Parse an `ssh://` URL (already checked by [`super::address`]).
    pub fn parse(url: &str) -> Option<SshTarget> {
        let rest = url.strip_prefix("ssh://")?.trim_end_matches('/');
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, rest),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        if host.is_empty()
            || host.starts_with('-')
            || user.as_deref().is_some_and(|u| u.starts_with('-'))
        {
            return None;
        }
        Some(SshTarget {
            user,
            host: host.to_string(),
            port,
        })
    }

    /// The arguments of `ssh` for one connection to the engine.
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(user) = &self.user {
            args.extend(["-l".to_string(), user.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".to_string(), port.to_string()]);
        }
        // No terminal, never a password prompt (stdin is the engine's stream).
        args.extend(["-T", "-o", "BatchMode=yes", "--"].map(String::from));
        args.push(self.host.clone());
        args.extend(["docker", "system", "dial-stdio"].map(String::from));
        args
    }
}

/// How many `ssh` children may be logging in at once. An operation opens several connections
/// together (a spawn streams, waits and inspects at the same time), and sshd drops logins
/// beyond its `MaxStartups` (10 by default) that are not yet authenticated.
const LOGINS_AT_ONCE: usize = 4;

/// A connector for hyper's client: each call starts one `ssh` child.
#[derive(Clone)]
pub struct SshDial {
    target: SshTarget,
    logins: Arc<Semaphore>,
}

impl SshDial {
    pub fn new(target: SshTarget) -> SshDial {
        SshDial {
            target,
            logins: Arc::new(Semaphore::new(LOGINS_AT_ONCE)),
        }
    }
}

impl tower_service::Service<hyper::Uri> for SshDial {
    type Response = TokioIo<SshPipe>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<SshPipe>>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let args = self.target.args();
        let logins = self.logins.clone();
        Box::pin(async move {
            // Held until the engine's first bytes come back: the login is over by then.
            let login = logins
                .acquire_owned()
                .await
                .map_err(|_| io::Error::other("the ssh connector was closed"))?;
            let mut child = Command::new("ssh")
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot run ssh: {e}")))?;
            let stdin = child.stdin.take().expect("piped");
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take().expect("piped");
            Ok(TokioIo::new(SshPipe {
                _child: child,
                stdin: Some(stdin),
                stdout,
                stderr: Some(stderr),
                said: Vec::new(),
                answered: false,
                login: Some(login),
            }))
        })
    }
}

/// One connection: the engine's stream on an `ssh` child's stdin and stdout.
pub struct SshPipe {
    _child: Child,
    /// Closed (dropped) on shutdown: a pipe has no half-close of its own, and the engine
    /// must see the end of an exec's input (ssh passes the EOF on).
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Read to its end only when stdout ends before any answer.
    stderr: Option<ChildStderr>,
    said: Vec<u8>,
    answered: bool,
    /// The right to be logging in, given back with the first answer.
    login: Option<OwnedSemaphorePermit>,
}

impl SshPipe {
    /// `ssh`'s stderr to its end (it has exited or is about to), as an error.
    fn poll_failure(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        while let Some(stderr) = self.stderr.as_mut() {
            let mut chunk = [0u8; 1024];
            let mut buf = ReadBuf::new(&mut chunk);
            match ready!(Pin::new(stderr).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    if self.said.len() < STDERR_KEEP {
                        self.said.extend_from_slice(buf.filled());
                    }
                }
                _ => self.stderr = None,
            }
        }
        let said = String::from_utf8_lossy(&self.said);
        let said = said.trim();
        let text = if said.is_empty() {
            "ssh ended before the engine answered".to_string()
        } else {
            format!(
                "ssh ended before the engine answered: {}",
                said.replace('\n', "; ")
            )
        };
        Poll::Ready(io::Error::new(io::ErrorKind::ConnectionAborted, text))
    }
}

impl Connection for SshPipe {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for SshPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stdout).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.answered = true;
            this.login = None;
        } else if !this.answered {
            return Poll::Ready(Err(ready!(this.poll_failure(cx))));
        }
        Poll::Ready(Ok(()))
    }
}

impl SshPipe {
    fn stdin(&mut self) -> io::Result<Pin<&mut ChildStdin>> {
        self.stdin
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::BrokenPipe.into())
    }
}

impl AsyncWrite for SshPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stdin()?.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(stdin) = this.stdin.as_mut() {
            ready!(Pin::new(stdin).poll_flush(cx))?;
        }
        // Dropping the pipe is what closes it.
        this.stdin = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn targets_are_taken_apart_and_passed_as_separate_arguments() {
        let t = SshTarget::parse("ssh://me@build:2222").unwrap();
        assert_eq!(
            t.args(),
            [
                "-l",
                "me",
                "-p",
                "2222",
                "-T",
                "-o",
                "BatchMode=yes",
                "--",
                "build",
                "docker",
                "system",
                "dial-stdio"
            ]
        );
        let t = SshTarget::parse("ssh://build").unwrap();
        assert_eq!(t.args()[..4], ["-T", "-o", "BatchMode=yes", "--"]);
        assert_eq!(SshTarget::parse("ssh://[::1]:22").unwrap().host, "::1");
        // A host or user that ssh would read as an option is refused.
        assert_eq!(SshTarget::parse("ssh://-oProxyCommand=x"), None);
        assert_eq!(SshTarget::parse("ssh://-oProxyCommand=x@h"), None);
        assert_eq!(SshTarget::parse("ssh://h:notaport"), None);
    }

    #[tokio::test]
    async fn what_ssh_says_before_it_ends_is_the_error() {
        use tokio::io::AsyncReadExt;
        let mut child = Command::new("sh")
            .args(["-c", "echo 'Permission denied (publickey).' >&2"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut pipe = SshPipe {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            stderr: child.stderr.take(),
            _child: child,
            said: Vec::new(),
            answered: false,
            login: None,
        };
        let mut buf = Vec::new();
        let e = pipe.read_to_end(&mut buf).await.unwrap_err();
        assert!(
            e.to_string().contains("Permission denied (publickey)"),
            "{e}"
        );
    }

    /// A shutdown closes the child's stdin: the far end sees the end of the input.
    #[tokio::test]
    async fn a_shutdown_ends_the_childs_input() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut child = Command::new("sh")
            .args(["-c", "wc -c"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut pipe = SshPipe {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().unwrap(),
            stderr: child.stderr.take(),
            _child: child,
            said: Vec::new(),
            answered: false,
            login: None,
        };
        pipe.write_all(b"12345").await.unwrap();
        pipe.shutdown().await.unwrap();
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), pipe.read_to_string(&mut out))
            .await
            .expect("wc saw the end of its input")
            .unwrap();
        assert_eq!(out.trim(), "5");
    }
}
