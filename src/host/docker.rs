//! Docker networks on this host, through the Docker API (bollard on the local socket), as
//! subnets a new libvirt network must not overlap.

use crate::error::{Error, Result};
use ipnet::Ipv4Net;

/// A Docker network's name and IPv4 subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub name: String,
    pub subnets: Vec<Ipv4Net>,
}

/// Docker's networks, or None when no Docker daemon answers on the local socket (then there
/// is nothing to collide with; the caller says it did not check).
pub fn networks() -> Result<Option<Vec<DockerNetwork>>> {
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("starting the Docker client: {e}")))?;
    runtime.block_on(async {
        let Ok(docker) = bollard::Docker::connect_with_socket_defaults() else {
            return Ok(None);
        };
        let listed = match docker.list_networks(None).await {
            Ok(listed) => listed,
            Err(_) => return Ok(None),
        };
        Ok(Some(
            listed
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
                .collect(),
        ))
    })
}
