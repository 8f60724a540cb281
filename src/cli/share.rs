//! `git agent share`: the plain git commands that share tasks through a remote. It only
//! prints them; the namespaces are [`crate::task::remote`]'s.

use anyhow::Result;
use clap::Args;

use super::{Ctx, out};
use crate::error::hinted;

/// Print the git commands that share tasks through a remote.
///
/// Tasks are shared with git alone. `git push <remote> 'refs/agent/*:refs/agent/*'
/// 'refs/notes/agent:refs/notes/agent'` pushes this clone's tasks (their base, work, state
/// record, prompt and transcript) and the provenance notes of promoted commits. In another
/// clone, the fetch refspecs `+refs/agent/*:refs/agent-remotes/<remote>/*` and
/// `+refs/notes/agent:refs/notes/agent-remotes/<remote>` bring them into their own
/// namespaces, so a fetch never moves a local task or the local notes.
///
/// A fetched task is named `<remote>/<task>` (for example `origin/fix-1`): `list` shows it
/// marked `fetched from <remote>` without asking the engine; `status`, `review`, `logs`,
/// `commit` (as you, onto branch `agent/<remote>/<task>`, with provenance notes in
/// refs/notes/agent), `push` and `purge --refs` (its refs only) work on it. Commands that
/// need its sandbox (`attach`, `shell`, `logs -f`, `stop`, `restart`, `sync`, `allow`, `rm`)
/// refuse it: it has none here. Nothing of a fetched record describing the other clone's
/// containers, egress policy or promotions is used here.
///
/// Pushes are not forced, so a task another clone pushed under the same name is never
/// replaced; a task whose agent rewrote its history needs `git push --force-with-lease`.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The remote to share through.
    #[arg(default_value = "origin")]
    pub remote: String,
}

pub fn run(args: ShareArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let remotes = ctx.git.run(["remote"])?;
    if !remotes.lines().any(|r| r == args.remote) {
        return Err(hinted(
            format!("no remote named '{}'", crate::error::sanitize(&args.remote)),
            "add one with `git remote add <name> <url>`, then run `git agent share <name>`",
        ));
    }
    let Some(commands) = crate::task::remote::share_commands(&args.remote) else {
        return Err(hinted(
            format!(
                "git-agent cannot name tasks fetched from remote '{}'",
                crate::error::sanitize(&args.remote)
            ),
            "add the remote under a name of letters, digits, '-', '_' and '.' (`git remote rename`)",
        ));
    };
    for c in commands {
        out(c)?;
    }
    Ok(0)
}
