//! The one request git-agent makes of Podman's own API (libpod) rather than its
//! Docker-compatible one: creating an internal network without a name server.
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

/// Create network `name` without a name server through the libpod API at `socket`. Returns
/// its id, or the engine's refusal.
pub async fn create_network(
    socket: &Path,
    name: &str,
    labels: &HashMap<String, String>,
    internal: bool,
    subnet: Option<&str>,
) -> Result<std::result::Result<String, Refused>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("cannot connect to Podman at {}", socket.display()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("cannot talk to Podman")?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::post(format!("/{VERSION}/libpod/networks/create"))
        .header("host", "podman")
        .header("content-type", "application/json")
        .body(body(name, labels, internal, subnet))?;
    let resp = send
        .send_request(req)
        .await
        .context("Podman did not answer the network create")?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .context("cannot read Podman's answer")?
        .to_bytes();
    driver.abort();
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
}
