//! A task's internal network: the small subnet git-agent gives it from its own range, and its
//! release once the task's run has ended.
//!
//! An engine hands out networks from a few default address pools (about thirty on a default
//! Docker engine), so a task that took one of them and kept it until `purge` made the
//! thirtieth spawn fail. Instead each task network gets a /28 ([`SUBNET_PREFIX`]: the task,
//! its gateway and room to spare) from `agent.subnets` ([`DEFAULT_RANGE`], 4,096 of them),
//! picked free from what the engine already has; and a run that has ended gives its network
//! back (the gateway is gone by then), so finished tasks hold no network at all. `restart`
//! makes a new one.
//!
//! Owns: reading and checking the range, picking a subnet, creating the network with it
//! (picking again after losing a subnet to a concurrent spawn), and releasing a finished
//! task's network. Must not: read the range from anywhere but git config (a repository's
//! files never choose addresses on the user's engine), release the network of a task
//! recorded as live, or remove a network that does not carry the task's labels.

use std::collections::HashMap;

use anyhow::Result;

use super::{ObjectNames, RepoId, owned_by};
use crate::error::{hinted, sanitize};
use crate::runtime::subnet::Ipv4Net;
use crate::runtime::{EngineErrorKind, ObjectKind, Runtime, engine_kind};
use crate::task::Status;
use crate::task::store::{Loaded, TaskStore};
use std::net::Ipv4Addr;

/// The git config key of the range task networks come from.
pub const CONFIG_KEY: &str = "agent.subnets";
/// The range when `agent.subnets` is not set: private, and clear of Docker's default pools
/// (172.17.0.0/16 to 172.31.0.0/16, 192.168.0.0/16 in /20s) and of the 10.0.0.0/8 pools
/// engines are commonly configured with (such as 10.213.0.0/16).
pub const DEFAULT_RANGE: &str = "10.242.0.0/16";
/// The size of one task network: 16 addresses, 13 of them for containers.
pub const SUBNET_PREFIX: u8 = 28;

/// A host address of `subnet`, `n` up from its network address.
fn host(subnet: &Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.addr()) + n)
}

/// The gateway's fixed address on a task network: the second host address (the engine's
/// bridge takes the first). The gateway is on the network before any other container.
pub fn gateway_address(subnet: &Ipv4Net) -> Ipv4Addr {
    host(subnet, 2)
}

/// The task's (or a project build step's) fixed address: the third host address. Every
/// container that starts beside the gateway has a fixed address: the engine hands out
/// addresses when a container starts, not when it joins, so one given any address could
/// take the gateway's before the gateway starts.
pub fn task_address(subnet: &Ipv4Net) -> Ipv4Addr {
    host(subnet, 3)
}

/// A preview's fixed address on the network it joins: the last host address.
pub fn preview_address(subnet: &Ipv4Net) -> Ipv4Addr {
    host(subnet, subnet.size() as u32 - 2)
}

/// The `index`th service's fixed address: down from the one below the preview's. Containers
/// without a fixed address (a commit message's draft, a preview's door) are given theirs
/// from those left, while the gateway and the task run.
pub fn service_address(subnet: &Ipv4Net, index: usize) -> Ipv4Addr {
    host(subnet, subnet.size() as u32 - 3 - index as u32)
}
/// The smallest range accepted: room for 16 task networks.
pub const SMALLEST_RANGE: u8 = 24;
/// The private IPv4 ranges (RFC 1918) a range must lie in.
const PRIVATE: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];
/// How often a spawn picks again after a refusal it cannot explain (no network on the engine
/// holds the refused subnet yet: a concurrent creation the engine does not list yet). A refusal
/// explained by a network now holding the subnet does not count: another spawn made progress,
/// and every refused subnet is left out of the next pick, so the range bounds the loop.
const ATTEMPTS: usize = 8;

/// Where task networks get their subnets (`agent.subnets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetRange(Ipv4Net);

impl Default for SubnetRange {
    fn default() -> SubnetRange {
        SubnetRange(Ipv4Net::parse(DEFAULT_RANGE).expect("the default range parses"))
    }
}

impl SubnetRange {
    /// `agent.subnets` from the user's git config, else [`DEFAULT_RANGE`]. A value that is
    /// not a private IPv4 range of /24 or larger is an error saying how to fix it.
    pub fn from_config(config: &crate::git::Config) -> Result<SubnetRange> {
        let Some(value) = config.get(CONFIG_KEY) else {
            return Ok(SubnetRange::default());
        };
        SubnetRange::parse(value).map_err(|why| {
            hinted(
                format!(
                    "bad value '{}' for {CONFIG_KEY}: {why}",
                    sanitize(value.trim())
                ),
                format!(
                    "set a private IPv4 range of /{SMALLEST_RANGE} or larger (`git config {CONFIG_KEY} {DEFAULT_RANGE}`), or unset it (`git config --unset {CONFIG_KEY}`)"
                ),
            )
        })
    }

    /// Parse and check a range; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<SubnetRange, String> {
        let net = Ipv4Net::parse(text.trim())
            .ok_or_else(|| "not an IPv4 network such as 10.242.0.0/16".to_string())?;
        let private = PRIVATE
            .iter()
            .filter_map(|p| Ipv4Net::parse(p))
            .any(|p| p.contains(&net));
        if !private {
            return Err(
                "not a private range (inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)".into(),
            );
        }
        if net.prefix() > SMALLEST_RANGE {
            return Err(format!(
                "too small: it holds {} task network{}, a /{SMALLEST_RANGE} holds 16",
                net.size() >> (32 - SUBNET_PREFIX as u32),
                if net.size() >> (32 - SUBNET_PREFIX as u32) == 1 {
                    ""
                } else {
                    "s"
                }
            ));
        }
        Ok(SubnetRange(net))
    }

    /// The range itself.
    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    /// How many task networks it holds.
    pub fn slots(&self) -> u64 {
        1u64 << (SUBNET_PREFIX - self.0.prefix())
    }

    /// The first subnet from slot `start` on (wrapping around) that overlaps none of `used`.
    /// Concurrent spawns start at different slots, so they rarely pick the same one.
    pub fn pick(&self, used: &[Ipv4Net], start: u64) -> Option<Ipv4Net> {
        let n = self.slots();
        // Only what overlaps the range matters.
        let used: Vec<&Ipv4Net> = used.iter().filter(|u| u.overlaps(&self.0)).collect();
        (0..n)
            .filter_map(|i| self.0.subnet(SUBNET_PREFIX, (start % n + i) % n))
            .find(|c| !used.iter().any(|u| u.overlaps(c)))
    }
}

/// The IPv4 subnets of every network on the engine.
async fn used<R: Runtime>(rt: &R) -> Result<Vec<Ipv4Net>> {
    Ok(rt
        .network_subnets()
        .await?
        .iter()
        .filter_map(|s| Ipv4Net::parse_lenient(s))
        .collect())
}

/// A slot to start looking from, different for each spawn (no randomness is needed for
/// safety, only to spread concurrent spawns apart).
fn start_slot(name: &str) -> u64 {
    use sha2::Digest;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{name}\0{}\0{nanos}", std::process::id());
    let d = sha2::Sha256::digest(seed.as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Create the internal network `name` with a free subnet of `range`, and return the subnet.
/// The engine refuses a subnet that overlaps one of its networks' (a conflict): another
/// network took it since the listing (a concurrent spawn, whose network the engine may not
/// list yet), so another subnet is picked, never the refused one again. With many spawns at
/// once a spawn may lose many times in a row; each loss is another spawn's success, so it
/// goes on until the range is full. A conflict while the name is taken is the name's, and
/// final.
/// `None` (and a network without a subnet of git-agent's) on an engine that does not take
/// fixed addresses ([`Runtime::fixes_addresses`]).
pub async fn create<R: Runtime>(
    rt: &R,
    range: &SubnetRange,
    name: &str,
    labels: &HashMap<String, String>,
) -> Result<Option<Ipv4Net>> {
    create_picked(rt, range, name, labels, pick(rt, range, name).await?).await
}

/// The subnet a network about to be created will most likely get (see [`pick`]).
pub struct Picked {
    taken: Vec<Ipv4Net>,
    start: u64,
    subnet: Option<Ipv4Net>,
}

impl Picked {
    /// The subnet picked; the network may still get another (see [`create`]), or none be
    /// free.
    pub fn subnet(&self) -> Option<Ipv4Net> {
        self.subnet
    }
}

/// Pick the subnet for network `name` ahead of its creation (one listing of the engine's
/// networks), so that what must know it (the gateway's address) can be made meanwhile.
pub async fn pick<R: Runtime>(rt: &R, range: &SubnetRange, name: &str) -> Result<Picked> {
    if !rt.fixes_addresses() {
        return Ok(Picked {
            taken: vec![],
            start: 0,
            subnet: None,
        });
    }
    let taken = used(rt).await?;
    let start = start_slot(name);
    Ok(Picked {
        subnet: range.pick(&taken, start),
        taken,
        start,
    })
}

/// [`create`] from a [`pick`]: the picked subnet first.
pub async fn create_picked<R: Runtime>(
    rt: &R,
    range: &SubnetRange,
    name: &str,
    labels: &HashMap<String, String>,
    picked: Picked,
) -> Result<Option<Ipv4Net>> {
    if !rt.fixes_addresses() {
        rt.create_network(name, labels, true, None).await?;
        return Ok(None);
    }
    let Picked {
        mut taken,
        mut start,
        ..
    } = picked;
    let mut refused: Vec<Ipv4Net> = Vec::new();
    let mut unexplained = 0;
    loop {
        let holding = taken.iter().filter(|u| u.overlaps(&range.net())).count();
        taken.extend(refused.iter().copied());
        let Some(subnet) = range.pick(&taken, start) else {
            return Err(hinted(
                format!(
                    "no free subnet left in {CONFIG_KEY} ({}): {holding} network{} use it",
                    range.net(),
                    if holding == 1 { "" } else { "s" }
                ),
                format!(
                    "finished tasks give theirs back (`git agent doctor --fix` releases what older versions kept); or give git-agent a larger range: `git config {CONFIG_KEY} 10.240.0.0/14`"
                ),
            ));
        };
        let e = match rt
            .create_network(name, labels, true, Some(&subnet.to_string()))
            .await
        {
            Ok(_) => return Ok(Some(subnet)),
            Err(e) => e,
        };
        if engine_kind(&e) != Some(EngineErrorKind::Conflict) || rt.network_exists(name).await? {
            return Err(e);
        }
        taken = used(rt).await?;
        if !taken.iter().any(|u| u.overlaps(&subnet)) {
            unexplained += 1;
            if unexplained == ATTEMPTS {
                return Err(e);
            }
        }
        refused.push(subnet);
        // Somewhere else in the range: the spawns that took this part are still there.
        start = start_slot(name);
    }
}

/// Is a task in this state running (or being set up)?
pub(super) fn live(status: Status) -> bool {
    matches!(status, Status::Running | Status::Creating)
}

/// Give back the network of a task whose run has ended: record that it has none, then remove
/// it (when it carries the task's labels). `recorded`: the network the record named before
/// the caller recorded that the run has none. The caller holds the task's lock and has removed
/// the gateway. A task recorded as live keeps its network. A network the engine still finds
/// in use stays (whatever is on it ends with the task); `doctor --fix` releases it later.
pub async fn release<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    loaded: Loaded,
    names: &ObjectNames,
    recorded: Option<&str>,
) -> Result<Loaded> {
    if live(loaded.record.status) {
        return Ok(loaded);
    }
    let task = loaded.record.name.clone();
    let mut doomed = vec![names.network.clone()];
    // The network the record names (a spare's, see `super::spare`), or named before the
    // caller recorded that the run has none.
    for n in [loaded.record.sandbox.network.as_deref(), recorded]
        .into_iter()
        .flatten()
    {
        if !doomed.iter().any(|d| d == n) {
            doomed.push(n.to_string());
        }
    }
    let recorded =
        loaded.record.sandbox.network.is_some() || loaded.record.sandbox.subnet.is_some();
    let loaded = if recorded {
        store.update(&task, "release network", |r, _| {
            forget(r);
            Ok(vec![])
        })?
    } else {
        loaded
    };
    if live(loaded.record.status) {
        return Ok(loaded);
    }
    remove(rt, store, &task, &doomed).await?;
    Ok(loaded)
}

/// Record that a task whose run has ended has no network (a live one keeps its own): for
/// a record change that goes with the release, such as the gateway's retirement.
pub fn forget(r: &mut crate::task::TaskRecord) {
    if !live(r.status) {
        r.sandbox.network = None;
        r.sandbox.subnet = None;
    }
}

/// Remove those of `networks` that carry task `task`'s labels; one in use stays.
async fn remove<R: Runtime>(
    rt: &R,
    store: &TaskStore,
    task: &str,
    networks: &[String],
) -> Result<()> {
    let repo = RepoId::of(store.git());
    for n in networks {
        if !owned_by(rt, &repo, task, ObjectKind::Network, n).await? {
            continue;
        }
        match rt.remove_network(n).await {
            Ok(()) => {}
            Err(e) if engine_kind(&e) == Some(EngineErrorKind::Conflict) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Does a finished task still hold a network (one an older git-agent kept, or one whose
/// release was cut short)? For `doctor`.
pub async fn held<R: Runtime>(rt: &R, repo: &RepoId, loaded: &Loaded) -> Result<Option<String>> {
    if live(loaded.record.status) {
        return Ok(None);
    }
    let names = repo.object_names(&loaded.record.name);
    let mut candidates = vec![names.network];
    if let Some(n) = &loaded.record.sandbox.network {
        candidates.push(n.clone());
    }
    for n in candidates {
        if owned_by(rt, repo, &loaded.record.name, ObjectKind::Network, &n).await? {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).unwrap()
    }

    #[test]
    fn the_default_range_avoids_the_engines_pools() {
        let range = SubnetRange::default().net();
        for pool in [
            "172.17.0.0/16",
            "172.18.0.0/16",
            "172.31.0.0/16",
            "192.168.0.0/16",
            "10.213.0.0/16",
        ] {
            assert!(!range.overlaps(&net(pool)), "{pool}");
        }
        assert_eq!(SubnetRange::default().slots(), 4096);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        assert!(SubnetRange::parse("10.242.0.0/16").is_ok());
        assert!(SubnetRange::parse(" 192.168.128.0/24 ").is_ok());
        assert!(SubnetRange::parse("172.16.0.0/12").is_ok());
        let why = |s: &str| SubnetRange::parse(s).unwrap_err();
        assert!(why("garbage").contains("not an IPv4 network"));
        assert!(why("10.242.0.1/16").contains("not an IPv4 network"));
        assert!(why("8.8.0.0/16").contains("not a private range"));
        assert!(why("0.0.0.0/0").contains("not a private range"));
        // Partly private is not private.
        assert!(why("10.0.0.0/7").contains("not a private range"));
        assert!(why("172.0.0.0/8").contains("not a private range"));
        assert_eq!(
            why("10.242.0.0/25"),
            "too small: it holds 8 task networks, a /24 holds 16"
        );
        assert_eq!(
            why("10.242.0.0/28"),
            "too small: it holds 1 task network, a /24 holds 16"
        );
    }

    #[test]
    fn config_errors_carry_a_hint() {
        let config = crate::git::Config::from_pairs(&[("agent.subnets", "8.8.8.0/24")]);
        let e = SubnetRange::from_config(&config).unwrap_err();
        assert_eq!(
            crate::error::render(&e),
            [
                "Error: bad value '8.8.8.0/24' for agent.subnets: not a private range (inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)",
                "Hint: set a private IPv4 range of /24 or larger (`git config agent.subnets 10.242.0.0/16`), or unset it (`git config --unset agent.subnets`)",
            ]
        );
        let config = crate::git::Config::from_pairs(&[("agent.subnets", "10.9.0.0/20")]);
        assert_eq!(
            SubnetRange::from_config(&config).unwrap().net(),
            net("10.9.0.0/20")
        );
    }

    #[test]
    fn picks_a_free_subnet_inside_the_range() {
        let range = SubnetRange::parse("10.242.0.0/24").unwrap();
        assert_eq!(range.pick(&[], 0), Some(net("10.242.0.0/28")));
        assert_eq!(range.pick(&[], 17), Some(net("10.242.0.16/28")));
        // Taken subnets (of any size, inside or across the range) are skipped.
        let used = [
            net("10.242.0.0/28"),
            net("10.242.0.16/29"),
            net("172.17.0.0/16"),
        ];
        assert_eq!(range.pick(&used, 0), Some(net("10.242.0.32/28")));
        // Wraps around from the start slot.
        let used: Vec<Ipv4Net> = (1..16)
            .map(|i| range.net().subnet(28, i).unwrap())
            .collect();
        assert_eq!(range.pick(&used, 5), Some(net("10.242.0.0/28")));
        // A network spanning the whole range leaves nothing.
        assert_eq!(range.pick(&[net("10.0.0.0/8")], 3), None);
        for start in [0, 1, 99, u64::MAX] {
            let s = range.pick(&[], start).unwrap();
            assert!(
                range.net().contains(&s) && s.prefix() == SUBNET_PREFIX,
                "{s}"
            );
        }
    }
}
