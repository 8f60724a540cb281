//! `git agent status`: one task in detail, with its state history.

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::{Ctx, engine, out};
use crate::task::{TaskRecord, age, now};

/// Show one task: its record (agent, prompt, base, image, runtime objects, status, exit
/// code, times) and the history of its state changes.
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
    history: Vec<(i64, String)>,
    network: Option<super::network::NetworkUse>,
}

pub async fn run(args: StatusArgs) -> Result<i32> {
    let ctx = Ctx::open()?;
    let mut loaded = ctx.store.resolve(&args.task)?;
    super::sync::sweep_leftovers(&ctx, [loaded.record.name.as_str()], false).await;
    let rt = engine().await.ok();
    if let Some(rt) = &rt {
        loaded = crate::sandbox::refresh(rt, &ctx.store, loaded).await?;
    }
    let network = super::network::network_use(rt.as_ref(), &ctx.store, &loaded).await?;
    let history = ctx.store.history(&loaded)?;
    let r = &loaded.record;
    if args.json {
        let j = StatusJson {
            record: r,
            prompt: &r.prompt,
            head: loaded.ref_value("head"),
            wip: loaded.ref_value("wip"),
            history,
            network,
        };
        out(serde_json::to_string_pretty(&j)?)?;
        return Ok(0);
    }
    let t = now();
    let mut lines = vec![
        format!("task:      {}", r.name),
        format!("agent:     {}", r.agent),
        format!("command:   {}", r.command.join(" ")),
        format!(
            "status:    {}{}",
            r.status.as_str(),
            r.exit_code
                .map(|c| format!(" (exit {c})"))
                .unwrap_or_default()
        ),
    ];
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
    if let Some(t) = &r.template {
        lines.push(format!("template:  {t}"));
    }
    if let Some(g) = &r.group {
        lines.push(format!("group:     {g}"));
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
        lines.push(format!("promoted:  agent/{} at {}", r.name, p.branch_tip));
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
