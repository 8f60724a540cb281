//! Admitting work from a sandbox. Everything here treats its input as hostile.
//!
//! The sandbox's `emit` answers with one header line, `git-agent-sync 1 <head> <wip|->`,
//! followed by a git bundle holding whatever the host does not have yet (or nothing). The
//! bundle is written to a host temp file under a size cap, then checked inside a throwaway
//! quarantine repository that borrows the host's objects through `alternates`: only the
//! expected refs, `git bundle verify`, every object fsck-checked on fetch, and every tip a
//! descendant of the task's base. Only then are the objects copied into the user's repository,
//! still without touching any ref; the caller moves the task's refs in one transaction.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWrite;

use super::Git;
use crate::error::hinted;

const HEADER_MAX: usize = 256;
const HEADER_TAG: &str = "git-agent-sync 1 ";
/// The bundle ref names a sandbox may send for task `<t>`.
pub const WIP_REF: &str = "refs/git-agent/wip";

/// What the sandbox claims its tips are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncHeader {
    pub head: String,
    pub wip: Option<String>,
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parse the header line strictly: anything unexpected is an attack or a bug.
pub fn parse_header(line: &str) -> Result<SyncHeader> {
    let bad = || anyhow::anyhow!("the sandbox sent a malformed sync header");
    let rest = line.strip_prefix(HEADER_TAG).ok_or_else(bad)?;
    let mut parts = rest.split(' ');
    let (Some(head), Some(wip), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if !is_oid(head) || !(wip == "-" || is_oid(wip)) {
        return Err(bad());
    }
    Ok(SyncHeader {
        head: head.to_string(),
        wip: (wip != "-").then(|| wip.to_string()),
    })
}

/// An `AsyncWrite` that takes the header line off the front of a stream and passes the rest
/// to `inner`.
pub struct HeaderSplitter<W> {
    pub header: Vec<u8>,
    pub header_done: bool,
    inner: W,
}

impl<W> HeaderSplitter<W> {
    pub fn new(inner: W) -> Self {
        HeaderSplitter {
            header: Vec::new(),
            header_done: false,
            inner,
        }
    }

    pub fn header_line(&self) -> Result<String> {
        if !self.header_done {
            bail!("the sandbox ended its answer before the sync header");
        }
        String::from_utf8(self.header.clone()).context("the sync header is not UTF-8")
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HeaderSplitter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if !self.header_done {
            let mut used = 0;
            for &b in buf {
                used += 1;
                if b == b'\n' {
                    self.header_done = true;
                    break;
                }
                self.header.push(b);
                if self.header.len() > HEADER_MAX {
                    return Poll::Ready(Err(std::io::Error::other(
                        "the sandbox's sync header is too long",
                    )));
                }
            }
            return Poll::Ready(Ok(used));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Git {
    /// Start `git bundle create -q - <revs>`: the bundle streams from the child's stdout
    /// (piped, as is stderr, for the caller to read), to be written into a sandbox. The
    /// child is killed if dropped before it ends.
    pub fn start_bundle<S: AsRef<std::ffi::OsStr>>(
        &self,
        revs: &[S],
    ) -> Result<tokio::process::Child> {
        super::async_command_at(&self.dir)
            .args(["bundle", "create", "-q", "-"])
            .args(revs)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run git bundle")
    }
}

/// Reject work that is not what the task may produce.
fn rejected(why: impl Into<String>) -> anyhow::Error {
    hinted(
        format!("rejected the sandbox's work: {}", why.into()),
        "nothing was changed in your repository; inspect the task with `git agent shell <task>`",
    )
}

/// Check the sandbox's answer and copy its objects into the host repository. No ref is
/// changed here. The quarantine repository is made in `scratch` (the sync's own directory,
/// which a killed sync leaves for the next command to remove), never in the system temp dir.
pub fn admit(
    git: &Git,
    task: &str,
    base: &str,
    header: &SyncHeader,
    bundle: Option<&Path>,
    scratch: &Path,
) -> Result<()> {
    let branch_ref = format!("refs/heads/agent/{task}");
    let tips: Vec<(&str, &str)> = std::iter::once(("head", header.head.as_str()))
        .chain(header.wip.as_deref().map(|w| ("wip", w)))
        .collect();

    let Some(bundle) = bundle else {
        // No new objects: every tip must already be a commit the host has.
        for (what, oid) in &tips {
            if !git.test(["cat-file", "-e", &format!("{oid}^{{commit}}")])? {
                return Err(rejected(format!(
                    "its {what} {oid} is neither sent nor known"
                )));
            }
            if !git.test(["merge-base", "--is-ancestor", base, oid])? {
                return Err(rejected(format!(
                    "its {what} {oid} does not descend from the task's base"
                )));
            }
        }
        return Ok(());
    };

    let quarantine = tempfile::Builder::new()
        .prefix("quarantine-")
        .tempdir_in(scratch)
        .context("cannot create a quarantine directory")?;
    let q = Git {
        dir: quarantine.path().to_path_buf(),
        common_dir: quarantine.path().to_path_buf(),
    };
    q.run(["init", "-q", "--bare", "--template=", "."])?;
    std::fs::write(
        quarantine.path().join("objects/info/alternates"),
        format!("{}\n", git.common_dir.join("objects").display()),
    )?;

    let bundle_arg = bundle.to_string_lossy().to_string();
    let heads = q
        .run(["bundle", "list-heads", &bundle_arg])
        .map_err(|_| rejected("it is not a valid git bundle"))?;
    let mut fetch_specs = Vec::new();
    let mut listed = Vec::new();
    for line in heads.lines() {
        let (oid, name) = line
            .split_once(' ')
            .ok_or_else(|| rejected("its bundle lists a malformed ref"))?;
        let expected = if name == branch_ref {
            Some(("head", "refs/q/head"))
        } else if name == WIP_REF {
            Some(("wip", "refs/q/wip"))
        } else {
            None
        };
        let Some((what, dst)) = expected else {
            return Err(rejected(format!(
                "its bundle carries an unexpected ref '{}'",
                crate::error::sanitize(name)
            )));
        };
        let claimed = tips.iter().find(|(w, _)| *w == what).map(|(_, o)| *o);
        if claimed != Some(oid) {
            return Err(rejected(format!(
                "its bundle's {what} does not match what it announced"
            )));
        }
        listed.push(what);
        fetch_specs.push(format!("{name}:{dst}"));
    }
    for (what, oid) in &tips {
        if !listed.contains(what) && !git.test(["cat-file", "-e", &format!("{oid}^{{commit}}")])? {
            return Err(rejected(format!(
                "its {what} {oid} is neither sent nor known"
            )));
        }
    }
    q.run(["bundle", "verify", "-q", &bundle_arg])
        .map_err(|e| rejected(format!("the bundle does not verify: {e:#}")))?;
    let mut fetch = vec![
        "-c".to_string(),
        "transfer.fsckObjects=true".to_string(),
        "fetch".to_string(),
        "-q".to_string(),
        "--no-tags".to_string(),
        "--no-write-fetch-head".to_string(),
        "--no-auto-maintenance".to_string(),
        bundle_arg.clone(),
    ];
    fetch.extend(fetch_specs.iter().cloned());
    q.run(&fetch)
        .map_err(|e| rejected(format!("its objects failed the integrity check: {e:#}")))?;
    for (what, oid) in &tips {
        if !q.test(["merge-base", "--is-ancestor", base, oid])? {
            return Err(rejected(format!(
                "its {what} {oid} does not descend from the task's base (history was rewritten)"
            )));
        }
    }
    // Everything checked: copy the new objects into the user's repository, touching no ref.
    if !fetch_specs.is_empty() {
        let mut args = vec![
            "fetch".to_string(),
            "-q".to_string(),
            "--no-tags".to_string(),
            "--no-write-fetch-head".to_string(),
            "--no-auto-maintenance".to_string(),
            quarantine.path().to_string_lossy().to_string(),
        ];
        for what in &listed {
            args.push(format!("refs/q/{what}"));
        }
        git.run(&args)
            .context("cannot copy the checked objects into your repository")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn header_parses_strictly() {
        let h = parse_header(&format!("git-agent-sync 1 {A} -")).unwrap();
        assert_eq!(
            h,
            SyncHeader {
                head: A.into(),
                wip: None
            }
        );
        let h = parse_header(&format!("git-agent-sync 1 {A} {A}")).unwrap();
        assert_eq!(h.wip.as_deref(), Some(A));
        for bad in [
            "".to_string(),
            format!("git-agent-sync 2 {A} -"),
            format!("git-agent-sync 1 {A}"),
            format!("git-agent-sync 1 {A} - extra"),
            format!("git-agent-sync 1 {} -", A.to_uppercase()),
            "git-agent-sync 1 ../../etc -".to_string(),
        ] {
            assert!(parse_header(&bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn splitter_takes_the_first_line() {
        use tokio::io::AsyncWriteExt;
        let mut s = HeaderSplitter::new(Vec::new());
        s.write_all(b"head").await.unwrap();
        s.write_all(b"er\nbundle").await.unwrap();
        s.write_all(b" bytes").await.unwrap();
        assert_eq!(s.header_line().unwrap(), "header");
        assert_eq!(s.inner, b"bundle bytes");
    }

    #[tokio::test]
    async fn splitter_refuses_endless_headers() {
        use tokio::io::AsyncWriteExt;
        let mut s = HeaderSplitter::new(Vec::new());
        let err = s.write_all(&[b'x'; 1000]).await.unwrap_err();
        assert!(err.to_string().contains("too long"));
    }
}
