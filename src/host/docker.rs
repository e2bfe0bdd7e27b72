//! Docker networks on this host, through the Docker API (bollard on the local socket), as
//! subnets a new libvirt network must not overlap.

use ipnet::Ipv4Net;
use std::time::Duration;

/// A Docker network's name and IPv4 subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub name: String,
    pub subnets: Vec<Ipv4Net>,
}

/// Docker's networks, or why they could not be read (no daemon, an API error, no answer
/// within 5 s): the caller then says what it did not check instead of failing.
pub fn networks() -> std::result::Result<Vec<DockerNetwork>, String> {
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        return Err("no Docker daemon: /var/run/docker.sock does not exist".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the Docker client: {e}"))?;
    runtime.block_on(async {
        let docker = bollard::Docker::connect_with_socket_defaults()
            .map_err(|e| format!("cannot connect to Docker: {e}"))?;
        let listed = tokio::time::timeout(Duration::from_secs(5), docker.list_networks(None))
            .await
            .map_err(|_| "Docker did not answer within 5 s".to_string())?
            .map_err(|e| format!("Docker refused to list networks: {e}"))?;
        Ok(listed
            .into_iter()
            .map(|n| DockerNetwork {
                name: n.name.unwrap_or_default(),
                subnets: n
                    .ipam
                    .and_then(|ipam| ipam.config)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|c| c.subnet?.parse().ok())
                    .collect(),
            })
            .collect())
    })
}
