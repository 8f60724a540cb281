//! The requests git-agent makes of Podman's own API (libpod) rather than its
//! Docker-compatible one: creating an internal network without a name server, and reading
//! whether the engine can enforce a container's limits (see [`limits_unenforced`]).
//!
//! Podman's Docker-compatible API turns on its name server (aardvark-dns) on every bridge
//! network it creates. On an internal network that server still resolves any name through
//! the host's resolvers: a task could send data out in the names it looks up, around its
//! gateway. (aardvark-dns 1.4 also often fails to serve a new network's own names at all.)
//! git-agent's containers find each other by their /etc/hosts instead (see
//! [`crate::runtime::Hosts`]), so its internal networks need no name server, and on Podman
//! they get none. The request goes over the engine's Unix socket, the way Podman is reached
//! locally; an engine reached another way keeps the compatible API (see
//! [`super::docker::DockerRuntime::podman_dns_gap`]).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

/// The libpod API version the request is written against (Podman 4.0 and later).
const VERSION: &str = "v4.0.0";

/// What the engine answered to a network create it refused.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

/// The request body: a bridge network, isolated from other bridges (as the compatible API
/// makes them), with no name server.
fn body(
    name: &str,
    labels: &HashMap<String, String>,
    internal: bool,
    subnet: Option<&str>,
) -> String {
    let mut v = serde_json::json!({
        "name": name,
        "driver": "bridge",
        "internal": internal,
        "dns_enabled": false,
        "labels": labels,
        "options": {"isolate": "true"},
    });
    if let Some(s) = subnet {
        v["subnets"] = serde_json::json!([{ "subnet": s }]);
    }
    v.to_string()
}

/// One request to libpod's `path` at `socket`: its status and body.
async fn request(
    socket: &Path,
    method: hyper::Method,
    path: &str,
    body: String,
) -> Result<(u16, bytes::Bytes)> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to Podman at {}", socket.display()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("cannot talk to Podman")?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("/{VERSION}/libpod/{path}"))
        .header("host", "podman")
        .header("content-type", "application/json")
        .body(body)?;
    let resp = send
        .send_request(req)
        .await
        .with_context(|| format!("Podman did not answer {path}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .context("cannot read Podman's answer")?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
}

/// Create network `name` without a name server through the libpod API at `socket`. Returns
/// its id, or the engine's refusal.
pub async fn create_network(
    socket: &Path,
    name: &str,
    labels: &HashMap<String, String>,
    internal: bool,
    subnet: Option<&str>,
) -> Result<std::result::Result<String, Refused>> {
    let (status, bytes) = request(
        socket,
        hyper::Method::POST,
        "networks/create",
        body(name, labels, internal, subnet),
    )
    .await?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if (200..300).contains(&status) {
        let id = json["id"]
            .as_str()
            .or_else(|| json["Id"].as_str())
            .ok_or_else(|| anyhow!("Podman created network {name} but named no id"))?;
        return Ok(Ok(id.to_string()));
    }
    let message = json["message"]
        .as_str()
        .or_else(|| json["cause"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    Ok(Err(Refused {
        status,
        message: crate::error::sanitize(&message),
    }))
}

/// Why a Podman engine would set none of a container's memory, CPU and process limits, if it
/// would not, from its `info` (libpod's): rootless on cgroups v1, or rootless on cgroups v2
/// without those controllers delegated to its user. It says so only in its own log.
pub fn limits_unenforced(info: &serde_json::Value) -> Option<String> {
    let host = &info["host"];
    if host["security"]["rootless"].as_bool() != Some(true) {
        return None;
    }
    match host["cgroupVersion"].as_str() {
        Some("v1") => {
            Some("rootless Podman on cgroups v1 sets no memory, CPU or process limits".into())
        }
        Some("v2") => {
            let have: Vec<&str> = host["cgroupControllers"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c.as_str()).collect())
                .unwrap_or_default();
            let missing: Vec<&str> = ["memory", "pids", "cpu"]
                .into_iter()
                .filter(|c| !have.contains(c))
                .collect();
            (!missing.is_empty()).then(|| {
                format!(
                    "rootless Podman without the cgroup controllers {} delegated to its user sets no such limits",
                    missing.join(", ")
                )
            })
        }
        _ => None,
    }
}

/// Podman's own `info` through its API at `socket`.
pub async fn info(socket: &Path) -> Result<serde_json::Value> {
    let (status, bytes) = request(socket, hyper::Method::GET, "info", String::new()).await?;
    if !(200..300).contains(&status) {
        return Err(anyhow!("Podman answered HTTP {status} to info"));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_has_no_name_server_and_keeps_its_subnet_and_labels() {
        let labels = HashMap::from([("git-agent.task".to_string(), "t".to_string())]);
        let v: serde_json::Value =
            serde_json::from_str(&body("n", &labels, true, Some("10.242.0.16/28"))).unwrap();
        assert_eq!(v["dns_enabled"], false);
        assert_eq!(v["internal"], true);
        assert_eq!(v["subnets"][0]["subnet"], "10.242.0.16/28");
        assert_eq!(v["labels"]["git-agent.task"], "t");
        assert_eq!(v["options"]["isolate"], "true");
        let v: serde_json::Value = serde_json::from_str(&body("n", &labels, false, None)).unwrap();
        assert!(v.get("subnets").is_none());
    }

    #[test]
    fn limits_are_unenforced_rootless_on_v1_or_without_delegated_controllers() {
        let info = |rootless: bool, version: &str, controllers: &[&str]| {
            serde_json::json!({"host": {"security": {"rootless": rootless},
                "cgroupVersion": version, "cgroupControllers": controllers}})
        };
        assert!(
            limits_unenforced(&info(true, "v1", &[]))
                .unwrap()
                .contains("cgroups v1")
        );
        assert!(limits_unenforced(&info(false, "v1", &[])).is_none());
        assert!(limits_unenforced(&info(true, "v2", &["cpu", "memory", "pids"])).is_none());
        let why = limits_unenforced(&info(true, "v2", &["cpu"])).unwrap();
        assert!(why.contains("memory, pids"), "{why}");
        assert!(limits_unenforced(&serde_json::json!({})).is_none());
    }
}
