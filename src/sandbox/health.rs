//! What the engine says about a task's runtime objects, beside what its record says.
//!
//! `list`, `status`, `allow`, `restart` and `doctor` all ask the same questions (is the
//! container there, does the gateway of a running task run, are its network and workspace
//! still there), so they ask them here, and all tell the user the same thing.

use anyhow::Result;

use crate::runtime::{ContainerState, Inventory, ObjectKind, Runtime};
use crate::task::Status;
use crate::task::store::Loaded;

/// The engine's view of one task's objects. `None` where the record names no such object.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub container: Option<ContainerState>,
    pub gateway: Option<ContainerState>,
    pub network: Option<bool>,
    pub volume: Option<bool>,
}

/// Look up every object the task's record names.
pub async fn check<R: Runtime>(rt: &R, loaded: &Loaded) -> Result<Health> {
    let s = &loaded.record.sandbox;
    let container = match &s.container {
        Some(c) => Some(rt.state(c).await?),
        None => None,
    };
    let gateway = match &s.gateway {
        Some(g) => Some(rt.state(g).await?),
        None => None,
    };
    let network = match &s.network {
        Some(n) => Some(rt.network_exists(n).await?),
        None => no_network(loaded),
    };
    let volume = match &s.volume {
        Some(v) => Some(rt.labels_of(ObjectKind::Volume, v).await?.is_some()),
        None => None,
    };
    Ok(Health {
        container,
        gateway,
        network,
        volume,
    })
}

/// The same answers as [`check`], read from one [`Inventory`] of the repository's objects
/// (what `list` uses, so that many tasks cost three engine requests, not four each).
pub fn from_inventory(inv: &Inventory, loaded: &Loaded) -> Health {
    let s = &loaded.record.sandbox;
    Health {
        container: s.container.as_deref().map(|c| inv.container(c)),
        gateway: s.gateway.as_deref().map(|g| inv.container(g)),
        network: match &s.network {
            Some(n) => Some(inv.networks.contains(n)),
            None => no_network(loaded),
        },
        volume: s.volume.as_ref().map(|v| inv.volumes.contains(v)),
    }
}

/// A task whose record names no network: normal once its run has ended (it gave the network
/// back), missing while it runs.
fn no_network(loaded: &Loaded) -> Option<bool> {
    (loaded.record.status == Status::Running).then_some(false)
}

impl Health {
    /// What is wrong, in words, for a task with `status` (empty when all is well). A task
    /// that is not running needs no gateway; any task with a workspace needs its volume.
    pub fn problems(&self, status: Status) -> Vec<&'static str> {
        let mut out = Vec::new();
        let live = matches!(status, Status::Running | Status::Creating);
        if live && self.container == Some(ContainerState::Missing) {
            out.push("container missing");
        }
        if status == Status::Running
            && self.container == Some(ContainerState::Running)
            && self
                .gateway
                .as_ref()
                .is_some_and(|g| *g != ContainerState::Running)
        {
            out.push("gateway down");
        }
        if live && self.network == Some(false) {
            out.push("network missing");
        }
        if self.volume == Some(false) {
            out.push("workspace volume missing");
        }
        out
    }
}

impl Health {
    /// Why a change of the live network policy cannot be applied now: the task's container
    /// runs but its gateway does not, or its network is gone. `None` when the gateway can take
    /// it, and when there is no live run (the record alone then holds the change).
    pub fn gateway_problem(&self) -> Option<String> {
        if self.container != Some(ContainerState::Running) {
            return None;
        }
        match &self.gateway {
            Some(ContainerState::Running) => {}
            Some(g) => return Some(format!("its gateway is {}", describe(g))),
            None => return Some("it has no gateway".into()),
        }
        if self.network == Some(false) {
            return Some("its network is missing".into());
        }
        None
    }
}

/// A container's state in words.
pub fn describe(state: &ContainerState) -> String {
    match state {
        ContainerState::Missing => "gone".into(),
        ContainerState::Created => "created but not started".into(),
        ContainerState::Running => "running".into(),
        ContainerState::Exited(code) => format!("not running (exited with status {code})"),
        ContainerState::Other(s) => format!("not running ({s})"),
    }
}

/// Does the task's running gateway enforce exactly the recorded network policy? `None` when
/// there is nothing to compare (no recorded policy, no running gateway). They differ only
/// after an `allow` was killed between the gateway taking a policy and the record (the
/// gateway then allows one change more than recorded): running that `allow` again, or `git
/// agent restart`, makes them agree. For `status` and `doctor`; it costs one exec.
pub async fn gateway_policy_matches<R: Runtime>(rt: &R, loaded: &Loaded) -> Result<Option<bool>> {
    let (Some(policy), Some(gw)) = (&loaded.record.network, &loaded.record.sandbox.gateway) else {
        return Ok(None);
    };
    if rt.state(gw).await? != ContainerState::Running {
        return Ok(None);
    }
    let live = crate::sandbox::gateway::live_policy_digest(rt, gw).await?;
    Ok(Some(live == crate::sandbox::gateway::policy_digest(policy)))
}

/// What a task's workspace volume holds, seen without running anything the agent wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Workspace {
    /// The volume holds the task's repository with its branch.
    Ready,
    /// No volume by the task's name (removed, or the engine lost it).
    Missing,
    /// The volume is there but holds no repository (a spawn died before delivering it, or
    /// the engine recreated the volume empty).
    Empty,
    /// A repository without the task's branch.
    NoBranch,
}

impl Workspace {
    pub fn describe(&self) -> &'static str {
        match self {
            Workspace::Ready => "holds the task's repository",
            Workspace::Missing => "is missing (its volume is gone)",
            Workspace::Empty => "is empty (the task's repository was never delivered or was lost)",
            Workspace::NoBranch => "has no task branch",
        }
    }
}

/// Look into a task's workspace volume: a fresh container of the task's image with no network
/// (the reader `sync` uses) lists what is there with `test` and `grep`; no git runs, nothing
/// the agent wrote is executed or read as configuration. The volume's existence is checked
/// first, so that looking never creates it.
pub async fn workspace<R: Runtime>(
    rt: &R,
    store: &crate::task::store::TaskStore,
    loaded: &Loaded,
) -> Result<Workspace> {
    let Some(volume) = &loaded.record.sandbox.volume else {
        return Ok(Workspace::Missing);
    };
    if rt.labels_of(ObjectKind::Volume, volume).await?.is_none() {
        return Ok(Workspace::Missing);
    }
    let branch = crate::task::branch_name(&loaded.record.name);
    // Exit 10: no .git directory; 11: no branch (neither loose nor packed).
    let script = format!(
        "cd /workspace || exit 10; [ -d .git ] && [ ! -L .git ] || exit 10; \
         [ -f '.git/refs/heads/{branch}' ] && exit 0; \
         [ -f .git/packed-refs ] && grep -q ' refs/heads/{branch}$' .git/packed-refs && exit 0; exit 11"
    );
    let reader = crate::sandbox::sync::start_reader(rt, store, loaded).await?;
    let mut sink = tokio::io::sink();
    let out = rt
        .exec(
            &reader,
            &["sh".to_string(), "-c".to_string(), script],
            None::<&[u8]>,
            &mut sink,
            1 << 12,
        )
        .await;
    rt.remove_container(&reader).await.ok();
    Ok(match out?.exit_code {
        0 => Workspace::Ready,
        10 => Workspace::Empty,
        11 => Workspace::NoBranch,
        code => {
            anyhow::bail!("cannot look into the task's workspace (check exited with status {code})")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Health {
        Health {
            container: Some(ContainerState::Running),
            gateway: Some(ContainerState::Running),
            network: Some(true),
            volume: Some(true),
        }
    }

    #[test]
    fn a_running_task_needs_its_gateway_and_network() {
        assert!(healthy().problems(Status::Running).is_empty());
        let mut h = healthy();
        h.gateway = Some(ContainerState::Exited(137));
        h.network = Some(false);
        assert_eq!(
            h.problems(Status::Running),
            ["gateway down", "network missing"]
        );
        // Once the task is over its gateway is retired on purpose.
        h.container = Some(ContainerState::Exited(0));
        assert!(h.problems(Status::Exited).is_empty());
    }

    /// A finished task gave its network back: nothing is missing. A running task without
    /// one recorded is missing it.
    #[test]
    fn only_a_running_task_needs_a_recorded_network() {
        let record: crate::task::TaskRecord = toml::from_str(
            "name = \"t\"\nagent = \"exec\"\ncommand = []\nbase = \"b\"\ndirty = false\nstatus = \"exited\"\ncreated = 0\n[sandbox]\nimage = \"i\"\nimage_id = \"i\"\nvolume = \"v\"\n",
        )
        .unwrap();
        let mut loaded = Loaded {
            record,
            state: String::new(),
            refs: Default::default(),
        };
        let inv = Inventory {
            volumes: ["v".to_string()].into(),
            ..Default::default()
        };
        let h = from_inventory(&inv, &loaded);
        assert_eq!(h.network, None);
        assert!(h.problems(Status::Exited).is_empty());
        loaded.record.status = Status::Running;
        let h = from_inventory(&inv, &loaded);
        assert_eq!(h.network, Some(false));
        assert_eq!(h.problems(Status::Running), ["network missing"]);
    }

    #[test]
    fn a_live_run_takes_policy_changes_only_through_a_running_gateway() {
        assert_eq!(healthy().gateway_problem(), None);
        let mut h = healthy();
        h.gateway = Some(ContainerState::Exited(137));
        assert_eq!(
            h.gateway_problem().as_deref(),
            Some("its gateway is not running (exited with status 137)")
        );
        h.gateway = Some(ContainerState::Running);
        h.network = Some(false);
        assert_eq!(
            h.gateway_problem().as_deref(),
            Some("its network is missing")
        );
        // No live run: the record alone takes the change.
        h.container = Some(ContainerState::Exited(0));
        h.gateway = Some(ContainerState::Missing);
        assert_eq!(h.gateway_problem(), None);
    }

    #[test]
    fn a_lost_workspace_is_always_a_problem() {
        let mut h = healthy();
        h.volume = Some(false);
        h.container = Some(ContainerState::Missing);
        assert_eq!(
            h.problems(Status::Running),
            ["container missing", "workspace volume missing"]
        );
        assert_eq!(h.problems(Status::Stopped), ["workspace volume missing"]);
    }
}
