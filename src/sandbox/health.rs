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
        None => None,
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
        network: s.network.as_ref().map(|n| inv.networks.contains(n)),
        volume: s.volume.as_ref().map(|v| inv.volumes.contains(v)),
    }
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
