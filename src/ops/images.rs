//! `image list` and `image prune`: the sandbox images git-agent made on the engine, what
//! uses them, and removing the unused ones. Never prints.
//!
//! An image is git-agent's only when one of its tags is `git-agent:<hex>`,
//! `git-agent-gateway:<hex>` or `git-agent-stage:<hex>` (12 lowercase hex digits, as
//! [`crate::image`] names them) and its `git-agent.image` label names that same tag. A label
//! alone proves nothing (any Dockerfile can write one), nor does a name alone; an image that
//! is not git-agent's is never listed, and so never removed. Removal is never forced: the
//! engine itself refuses an image a container (running or stopped) uses.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Ctx;
use crate::image::LABEL_IMAGE;
use crate::runtime::{EngineErrorKind, ImageInfo, ImageUse, Runtime};

/// The repositories git-agent tags images in, with the kind each holds.
const KINDS: &[(&str, &str)] = &[
    ("git-agent", "sandbox"),
    ("git-agent-gateway", "gateway"),
    ("git-agent-stage", "stage"),
];

/// What went wrong listing or pruning images.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// A named image is not one git-agent made (or is not there).
    #[error("{0} is not an image git-agent made")]
    NotOurs(String),
    /// The repository's current image cannot be worked out, so pruning cannot tell whether
    /// an image is the one its next task needs.
    #[error("cannot work out this repository's current image: {0}")]
    NoPlan(String),
    /// A failure below the operation (the refs, the engine), as it came.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl super::OpError for ImagesError {
    fn hint(&self) -> Option<String> {
        match self {
            ImagesError::NotOurs(_) => {
                Some("see git-agent's images with `git agent image list`".to_string())
            }
            ImagesError::NoPlan(_) => Some(
                "fix the agent definition or settings (`git agent image build --dry-run` shows the error), or prune with --all".to_string(),
            ),
            ImagesError::Other(_) => None,
        }
    }

    fn below(&self) -> Option<&anyhow::Error> {
        match self {
            ImagesError::Other(e) => Some(e),
            _ => None,
        }
    }

    fn passthrough(self) -> Result<anyhow::Error, Self> {
        match self {
            ImagesError::Other(e) => Ok(e),
            other => Err(other),
        }
    }
}

/// One of git-agent's images (one row per git-agent tag).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entry {
    pub tag: String,
    pub id: String,
    /// `sandbox`, `gateway` or `stage`.
    pub kind: &'static str,
    /// Bytes.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created: i64,
    /// The tasks of this repository whose record names it.
    pub tasks: Vec<String>,
    /// The repository's current image plan uses it.
    pub current: bool,
    /// A task or the current plan uses it.
    pub in_use: bool,
    /// Containers (in any state) made from it.
    pub containers: usize,
    /// Of those, the running ones.
    pub running: usize,
}

/// The kind of git-agent image `tag` names, when `labels` confirm it.
pub fn ours(tag: &str, labels: &std::collections::HashMap<String, String>) -> Option<&'static str> {
    let (repo, hex) = tag.split_once(':')?;
    let kind = KINDS.iter().find(|(r, _)| *r == repo)?.1;
    let hex_ok = hex.len() == 12
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex_ok && labels.get(LABEL_IMAGE).map(String::as_str) == Some(tag)).then_some(kind)
}

/// The tags the repository's current plan uses (its image, its stage, the gateway's).
fn current_tags(ctx: &Ctx) -> Result<Vec<String>, ImagesError> {
    let plan = super::image::plan(ctx, None, None).map_err(|e| {
        ImagesError::NoPlan(crate::error::sanitize(
            &super::OpError::into_report(e).to_string(),
        ))
    })?;
    let mut tags = vec![plan.tag.clone()];
    if let Some(split) = &plan.project {
        tags.push(split.stage_tag.clone());
    }
    let gateway =
        crate::image::gateway_plan(&ctx.config).map_err(|e| ImagesError::NoPlan(e.to_string()))?;
    tags.push(gateway.tag);
    Ok(tags)
}

fn entries(
    images: Vec<ImageInfo>,
    uses: &[ImageUse],
    tasks: &BTreeMap<String, Vec<String>>,
    current: &[String],
) -> Vec<Entry> {
    let mut out = Vec::new();
    for image in images {
        let made_from: Vec<&ImageUse> = uses.iter().filter(|u| u.image_id == image.id).collect();
        for tag in &image.tags {
            let Some(kind) = ours(tag, &image.labels) else {
                continue;
            };
            let mut users: Vec<String> = tasks
                .iter()
                .filter(|(k, _)| *k == tag || *k == &image.id)
                .flat_map(|(_, v)| v.iter().cloned())
                .collect();
            users.sort();
            users.dedup();
            let current = current.contains(tag);
            out.push(Entry {
                tag: tag.clone(),
                id: image.id.clone(),
                kind,
                size: image.size,
                created: image.created,
                in_use: current || !users.is_empty(),
                tasks: users,
                current,
                containers: made_from.len(),
                running: made_from.iter().filter(|u| u.running).count(),
            });
        }
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then(a.tag.cmp(&b.tag)));
    out
}

/// Image (tag or id) -> the tasks of this repository whose record names it.
fn task_images(ctx: &Ctx) -> Result<BTreeMap<String, Vec<String>>, ImagesError> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in ctx.store.all()? {
        let s = &t.record.sandbox;
        for key in [&s.image, &s.image_id] {
            if !key.is_empty() {
                map.entry(key.clone())
                    .or_default()
                    .push(t.record.name.clone());
            }
        }
    }
    Ok(map)
}

/// git-agent's images, newest first. When the current plan cannot be worked out, no image
/// is marked current.
pub async fn list<R: Runtime>(rt: &R, ctx: &Ctx) -> Result<Vec<Entry>, ImagesError> {
    let images = rt.images_labelled(LABEL_IMAGE).await?;
    let uses = rt.image_uses().await?;
    let current = current_tags(ctx).unwrap_or_default();
    Ok(entries(images, &uses, &task_images(ctx)?, &current))
}

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct PruneRequest {
    /// Every git-agent image no container uses, even those tasks or the plan name.
    pub all: bool,
    pub dry_run: bool,
    /// Only these images (tags or ids); empty: all of git-agent's.
    pub only: Vec<String>,
}

/// An image prune leaves, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub tag: String,
    pub id: String,
    pub reason: String,
}

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub dry_run: bool,
    pub all: bool,
    pub removed: Vec<Entry>,
    pub kept: Vec<Kept>,
    /// Bytes the engine gave back (with --dry-run: would give back).
    pub freed: u64,
}

fn named(e: &Entry, name: &str) -> bool {
    let short = e.id.trim_start_matches("sha256:");
    e.tag == name
        || e.id == name
        || (name.len() >= 12
            && short.starts_with(name.trim_start_matches("sha256:"))
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b":sha".contains(&b)))
}

/// Remove git-agent's unused images: those no task of this repository names and that are not
/// the current plan's (with `all`, any), and never one a container (running or stopped) is
/// made from.
pub async fn prune<R: Runtime>(
    rt: &R,
    ctx: &Ctx,
    req: &PruneRequest,
) -> Result<Pruned, ImagesError> {
    let current = if req.all {
        Vec::new()
    } else {
        current_tags(ctx)?
    };
    let images = rt.images_labelled(LABEL_IMAGE).await?;
    let uses = rt.image_uses().await?;
    let mut all = entries(images, &uses, &task_images(ctx)?, &current);
    if !req.only.is_empty() {
        if let Some(missing) = req.only.iter().find(|n| !all.iter().any(|e| named(e, n))) {
            return Err(ImagesError::NotOurs(crate::error::sanitize(missing)));
        }
        all.retain(|e| req.only.iter().any(|n| named(e, n)));
    }
    let mut out = Pruned {
        dry_run: req.dry_run,
        all: req.all,
        removed: Vec::new(),
        kept: Vec::new(),
        freed: 0,
    };
    // Sizes count once per image, when its last git-agent tag goes and no other tag holds it.
    let mut freed_ids: Vec<String> = Vec::new();
    for e in all {
        let reason = if e.containers > 0 {
            Some(format!("{} container(s) use it", e.containers))
        } else if !req.all && e.current {
            Some("the current image of this repository".to_string())
        } else if !req.all && !e.tasks.is_empty() {
            Some(format!("task(s) {}", e.tasks.join(", ")))
        } else {
            None
        };
        if let Some(reason) = reason {
            out.kept.push(Kept {
                tag: e.tag,
                id: e.id,
                reason,
            });
            continue;
        }
        if req.dry_run {
            if !freed_ids.contains(&e.id) {
                out.freed += e.size;
                freed_ids.push(e.id.clone());
            }
            out.removed.push(e);
            continue;
        }
        crate::interrupt::checkpoint()?;
        match rt.remove_image_tag(&e.tag).await {
            Ok(deleted) => {
                if deleted {
                    out.freed += e.size;
                }
                out.removed.push(e);
            }
            // A container made from it since it was listed: the engine kept it.
            Err(err) if crate::runtime::engine_kind(&err) == Some(EngineErrorKind::Conflict) => {
                out.kept.push(Kept {
                    tag: e.tag,
                    id: e.id,
                    reason: "in use (the engine refused)".to_string(),
                })
            }
            Err(err) if crate::runtime::engine_kind(&err) == Some(EngineErrorKind::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn labelled(tag: &str) -> HashMap<String, String> {
        HashMap::from([(LABEL_IMAGE.to_string(), tag.to_string())])
    }

    #[test]
    fn only_git_agent_tags_with_their_own_label_are_ours() {
        let t = "git-agent:0123456789ab";
        assert_eq!(ours(t, &labelled(t)), Some("sandbox"));
        assert_eq!(
            ours(
                "git-agent-gateway:0123456789ab",
                &labelled("git-agent-gateway:0123456789ab")
            ),
            Some("gateway")
        );
        // A forged label on another image, or our label naming another tag.
        assert_eq!(ours("evil:x", &labelled(t)), None);
        assert_eq!(
            ours(
                "git-agent-evil:0123456789ab",
                &labelled("git-agent-evil:0123456789ab")
            ),
            None
        );
        assert_eq!(ours(t, &labelled("git-agent:ffffffffffff")), None);
        assert_eq!(ours(t, &HashMap::new()), None);
        assert_eq!(
            ours(
                "git-agent:0123456789AB",
                &labelled("git-agent:0123456789AB")
            ),
            None
        );
        assert_eq!(
            ours("git-agent:latest", &labelled("git-agent:latest")),
            None
        );
    }
}
