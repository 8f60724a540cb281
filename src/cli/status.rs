//! `git agent status`: one task in detail, with its state history.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{Ctx, engine_view, out};
use crate::ops::inspect::{NetworkUse, Problem};
use crate::task::{Status, TaskRecord, age, now};

/// Show one task: its record (agent, prompt, base, image, runtime objects, status, exit
/// code, times) and the history of its state changes.
///
/// The runtime objects are checked against the engine: a dead gateway, a missing network or
/// workspace volume is shown as a `problem:` line with the command that repairs it. When the
/// engine cannot be reached the record is shown as the refs last recorded it, a live status
/// marked unverified (`running?`). `status` changes nothing: a task whose container has
/// exited, or whose spawn died, is shown as such and recorded so by the next command that
/// changes it (or `git agent doctor --fix`).
///
/// A run's tokens and cost are shown as its agent reported them (Claude Code, Codex); a
/// run with tokens and a model but no cost is priced from the price table (built in, and
/// ~/.config/git-agent/prices.toml), and an unknown model shows tokens only. A task in a
/// group shows the tokens and cost summed over its group.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The task (any unique prefix of its name).
    pub task: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    record: &'a TaskRecord,
    prompt: &'a str,
    head: Option<&'a str>,
    wip: Option<&'a str>,
    history: &'a [(i64, String)],
    network: &'a Option<NetworkUse>,
    /// Whether the engine confirmed the status (false: it could not be reached).
    status_checked: bool,
    problems: &'a [Problem],
    /// For a running task: whether a follower brings its work home by itself (null when
    /// the task does not run).
    following: Option<bool>,
    /// A queued task's place in the queue (1 = next).
    queue_position: Option<usize>,
    /// The remote a fetched task came from (none for this repository's own tasks).
    fetched_from: Option<&'a str>,
    /// Tokens and cost summed over the task's group (null outside a group).
    group_usage: &'a Option<crate::task::usage::Usage>,
}

pub async fn run(args: StatusArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let detail = crate::ops::inspect::status(&ctx, &args.task)
        .await
        .map_err(crate::ops::OpError::into_report)?;
    for why in &detail.unchecked {
        engine_view::warn_unreachable(why);
    }
    let seen = &detail.seen;
    let problems = &detail.problems;
    let network = &detail.network;
    let history = &detail.history;
    let loaded = &seen.loaded;
    let r = &loaded.record;
    let fetched_from = crate::task::remote::split(&r.name).map(|(remote, _)| remote);
    if args.json {
        let j = StatusJson {
            record: r,
            prompt: &r.prompt,
            head: loaded.ref_value("head"),
            wip: loaded.ref_value("wip"),
            history,
            network,
            status_checked: seen.checked,
            problems,
            following: detail.following,
            queue_position: detail.queue_position,
            fetched_from,
            group_usage: &detail.group_usage,
        };
        super::json::print(&super::json::name_as_task(serde_json::to_value(&j)?))?;
        return Ok(0);
    }
    let t = now();
    let mut lines = vec![
        format!("task:      {}", r.name),
        format!("agent:     {}", r.agent),
        format!("command:   {}", r.command.join(" ")),
        format!(
            "status:    {}{}{}",
            r.status.as_str(),
            if !seen.checked
                && fetched_from.is_none()
                && matches!(r.status, Status::Running | Status::Creating)
            {
                "?"
            } else {
                ""
            },
            r.exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default()
        ) + &detail
            .queue_position
            .map(|p| format!(" #{p}"))
            .unwrap_or_default(),
    ];
    if let Some(after) = &r.after {
        lines.push(format!("after:     {after}"));
    }
    if let Some(remote) = fetched_from {
        lines.push(format!(
            "runtime:   none here (fetched from {remote}; the status is what that clone recorded)"
        ));
    } else if !seen.checked {
        lines.push(
            "runtime:   unknown (the container engine could not be reached; this is what the refs last recorded)"
                .into(),
        );
    }
    for p in problems {
        lines.push(format!("problem:   {}; fix: {}", p.problem, p.fix));
    }
    match detail.following {
        Some(true) => lines.push(format!(
            "follow:    active (its work comes home by itself; log: {})",
            crate::ops::follow::log_path(&ctx.git, &r.name).display()
        )),
        Some(false)
            if !crate::ops::follow::Settings::from_config(&ctx.config)
                .map(|s| s.enabled)
                .unwrap_or(true) =>
        {
            lines.push(
                "follow:    off (agent.follow=false: its work comes home when synced)".into(),
            )
        }
        Some(false) => lines.push(format!(
            "follow:    none (its work comes home when synced; follow it with `git agent sync --follow {}`)",
            r.name
        )),
        None => {}
    }
    if let Some(why) = &r.reason {
        lines.push(format!("reason:    {why}"));
    }
    if let Some(stats) = &r.stats {
        lines.push(format!("run:       {}", stats.summary()));
        if let Some(m) = &stats.final_message {
            lines.push(format!(
                "final:     {}",
                crate::error::sanitize(m.lines().next().unwrap_or(""))
            ));
        }
    }
    if let Some(n) = &network {
        let mut l = n.lines().into_iter();
        lines.push(format!("egress:    {}", l.next().unwrap_or_default()));
        lines.extend(l.map(|x| format!("           {x}")));
    }
    if r.read_only {
        lines.push("root:      read-only".to_string());
    }
    if let Some(rt) = &r.oci_runtime {
        lines.push(format!("runtime:   {} (OCI)", crate::error::sanitize(rt)));
    }
    if let Some(t) = &r.template {
        lines.push(format!("template:  {t}"));
    }
    if let Some(o) = &r.retry_of {
        lines.push(format!("retry of:  {o}"));
    }
    if !r.retried_as.is_empty() {
        lines.push(format!("retried:   as {}", r.retried_as.join(", ")));
    }
    if r.followups > 0 {
        lines.push(format!(
            "followups: {} (sent with `git agent continue`)",
            r.followups
        ));
    }
    if let Some(g) = &r.group {
        match &detail.group_usage {
            Some(u) => lines.push(format!("group:     {g} ({})", u.summary())),
            None => lines.push(format!("group:     {g}")),
        }
    }
    if let Some(t) = r.timeout {
        lines.push(format!("timeout:   {t}s"));
    }
    if r.git_readonly {
        lines.push("git:       read-only (agent-side guards; --git-readonly)".into());
    }
    lines.push(format!(
        "base:      {}{}{}",
        r.base,
        r.base_branch
            .as_deref()
            .map(|b| format!(" ({b})"))
            .unwrap_or_default(),
        if r.dirty {
            " [includes uncommitted changes]"
        } else {
            ""
        }
    ));
    lines.push(format!(
        "head:      {}",
        loaded.ref_value("head").unwrap_or("-")
    ));
    lines.push(format!(
        "wip:       {}",
        loaded.ref_value("wip").unwrap_or("-")
    ));
    lines.push(format!(
        "image:     {} {}",
        r.sandbox.image, r.sandbox.image_id
    ));
    lines.push(format!(
        "container: {}",
        r.sandbox.container.as_deref().unwrap_or("-")
    ));
    lines.push(format!(
        "volume:    {}",
        r.sandbox.volume.as_deref().unwrap_or("-")
    ));
    lines.push(format!(
        "network:   {}",
        r.sandbox.network.as_deref().unwrap_or("-")
    ));
    lines.push(format!("created:   {} ago", age(r.created, t)));
    if let Some(p) = &r.promoted {
        let partial = if p.is_partial() {
            format!(
                " (partial: {})",
                crate::error::sanitize(&p.pathspec.join(" "))
            )
        } else {
            String::new()
        };
        lines.push(format!(
            "promoted:  agent/{} at {}{partial}",
            r.name, p.branch_tip
        ));
    }
    if let Some(m) = &r.merged {
        lines.push(format!(
            "merged:    into {} at {} ({})",
            m.into, m.commit, m.how
        ));
    }
    lines.push("prompt:".into());
    for l in r.prompt.lines() {
        lines.push(format!("  {l}"));
    }
    lines.push("history:".into());
    for (when, msg) in history.iter().take(20) {
        lines.push(format!("  {:>4} ago  {msg}", age(*when, t)));
    }
    for l in lines {
        out(l)?;
    }
    Ok(0)
}
