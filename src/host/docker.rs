//! The host's own Docker daemon, through the Docker API (bollard on the local socket): its
//! networks as subnets a new libvirt network must not overlap, and what the checks need to
//! know about it (version, configured address pools, daemon.json).

use crate::error::{Error, ErrorKind, Result};
use ipnet::Ipv4Net;
use std::future::Future;
use std::time::Duration;

/// A Docker network's name, bridge device and IPv4 subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerNetwork {
    pub name: String,
    /// The Linux bridge of a bridge network (docker0, br-<id>), when it has one.
    pub bridge: Option<String>,
    pub subnets: Vec<Ipv4Net>,
}

/// What the checks read about the host's Docker.
#[derive(Debug, Clone, PartialEq)]
pub struct HostDocker {
    /// As the daemon reports it, e.g. "20.10.24+dfsg1".
    pub server_version: String,
    pub networks: Vec<DockerNetwork>,
    /// `default-address-pools` as configured; empty means Docker's built-in pools.
    pub address_pools: Vec<(Ipv4Net, u32)>,
    /// /etc/docker/daemon.json, when there is one and it is JSON.
    pub daemon_json: Option<serde_json::Value>,
}

/// Where Docker reads its settings, on the host and in guests.
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Run one conversation with the local daemon, or say why it could not be had (no daemon, an
/// API error, no answer within 5 s): callers then report what they did not check.
fn with_docker<T, F, Fut>(talk: F) -> Result<T>
where
    F: FnOnce(bollard::Docker) -> Fut,
    Fut: Future<Output = std::result::Result<T, bollard::errors::Error>>,
{
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        return Err(Error::new(
            ErrorKind::Unreachable,
            "no Docker daemon: /var/run/docker.sock does not exist",
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::from(e).context("cannot start the Docker client"))?;
    runtime.block_on(async {
        let docker = bollard::Docker::connect_with_socket_defaults().map_err(|e| {
            Error::new(
                ErrorKind::Unreachable,
                format!("cannot connect to Docker: {e}"),
            )
        })?;
        tokio::time::timeout(Duration::from_secs(5), talk(docker))
            .await
            .map_err(|_| Error::new(ErrorKind::Unreachable, "Docker did not answer within 5 s"))?
            .map_err(|e| Error::failed(format!("Docker refused: {e}")))
    })
}

fn network_of(n: bollard::models::Network) -> DockerNetwork {
    let bridge = n
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
        .or_else(|| {
            // Docker names a user bridge network's device br-<first 12 hex of its id>.
            (n.driver.as_deref() == Some("bridge"))
                .then(|| {
                    n.id.as_ref()
                        .map(|id| format!("br-{}", &id[..id.len().min(12)]))
                })
                .flatten()
        });
    DockerNetwork {
        name: n.name.unwrap_or_default(),
        bridge,
        subnets: n
            .ipam
            .and_then(|ipam| ipam.config)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| c.subnet?.parse().ok())
            .collect(),
    }
}

/// Docker's networks, or why they could not be read.
pub fn networks() -> Result<Vec<DockerNetwork>> {
    with_docker(|docker| async move { docker.list_networks(None).await })
        .map(|nets| nets.into_iter().map(network_of).collect())
}

/// The Docker networks of the host `runner` runs on: through the API here; on a remote host
/// through its docker CLI over SSH (`docker network inspect` prints the API's objects). A host
/// without Docker has none.
pub fn networks_with(runner: &crate::host::runner::Runner) -> Result<Vec<DockerNetwork>> {
    if runner.is_local() {
        return networks();
    }
    let ran = runner.run(
        "sh",
        &[
            "-c",
            "command -v docker >/dev/null || exit 127; ids=$(docker network ls -q) || exit 1; \
             if [ -z \"$ids\" ]; then echo '[]'; else docker network inspect $ids; fi",
        ],
    )?;
    match ran.status {
        0 => parse_network_inspect(&ran.stdout),
        127 => Ok(Vec::new()),
        status => Err(Error::failed(format!(
            "`docker network inspect` on {} exited with {status}: {}",
            runner.describe(),
            ran.stderr.trim()
        ))),
    }
}

/// `docker network inspect` output (a JSON array of the API's network objects).
pub fn parse_network_inspect(json: &str) -> Result<Vec<DockerNetwork>> {
    let nets: Vec<bollard::models::Network> = serde_json::from_str(json)
        .map_err(|e| Error::failed(format!("reading `docker network inspect`: {e}")))?;
    Ok(nets.into_iter().map(network_of).collect())
}

/// The Docker of `runner`'s host, through its docker CLI there (`docker info`, its networks,
/// its daemon.json), or why not.
pub fn read_on(runner: &crate::host::runner::Runner) -> Result<HostDocker> {
    if runner.is_local() {
        return read();
    }
    let ran = runner.run(
        "sh",
        &[
            "-c",
            "command -v docker >/dev/null || exit 127; docker info --format '{{json .}}'",
        ],
    )?;
    match ran.status {
        0 => {}
        127 => {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!("no Docker on {}", runner.describe()),
            ))
        }
        status => {
            return Err(Error::new(
                ErrorKind::Unreachable,
                format!(
                    "`docker info` on {} exited with {status}: {}",
                    runner.describe(),
                    ran.stderr.trim()
                ),
            ))
        }
    }
    let mut docker = parse_info(&ran.stdout)?;
    docker.networks = networks_with(runner)?;
    docker.daemon_json = runner
        .read_file(DAEMON_JSON)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    Ok(docker)
}

/// `docker info --format '{{json .}}'`: the version and address pools (networks and
/// daemon.json are read apart).
pub fn parse_info(json: &str) -> Result<HostDocker> {
    let info: bollard::models::SystemInfo = serde_json::from_str(json)
        .map_err(|e| Error::failed(format!("reading `docker info`: {e}")))?;
    Ok(HostDocker {
        server_version: info.server_version.unwrap_or_default(),
        networks: Vec::new(),
        address_pools: pools_of(info.default_address_pools),
        daemon_json: None,
    })
}

fn pools_of(
    pools: Option<Vec<bollard::models::SystemInfoDefaultAddressPools>>,
) -> Vec<(Ipv4Net, u32)> {
    pools
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((p.base?.parse().ok()?, u32::try_from(p.size?).ok()?)))
        .collect()
}

/// Version, networks, pools and daemon.json of the host's Docker, or why not.
pub fn read() -> Result<HostDocker> {
    let (info, nets) = with_docker(|docker| async move {
        let info = docker.info().await?;
        let nets = docker.list_networks(None).await?;
        Ok((info, nets))
    })?;
    let address_pools = pools_of(info.default_address_pools);
    let daemon_json = std::fs::read_to_string(DAEMON_JSON)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    Ok(HostDocker {
        server_version: info.server_version.unwrap_or_default(),
        networks: nets.into_iter().map(network_of).collect(),
        address_pools,
        daemon_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_info_as_the_cli_prints_it() {
        // `docker info --format '{{json .}}'` on this host (Debian 12's docker.io).
        let docker = parse_info(include_str!("testdata/docker-info.json")).unwrap();
        assert_eq!(docker.server_version, "20.10.24+dfsg1");
        assert!(docker.address_pools.is_empty());
        assert!(parse_info("not json").is_err());
    }

    #[test]
    fn docker_network_inspect_gives_names_bridges_and_subnets() {
        // `docker network inspect $(docker network ls -q)` on this host, with an internal
        // network of a named bridge beside the defaults.
        let nets =
            parse_network_inspect(include_str!("testdata/docker-network-inspect.json")).unwrap();
        let bridge = nets.iter().find(|n| n.name == "bridge").unwrap();
        assert_eq!(bridge.bridge.as_deref(), Some("docker0"));
        assert_eq!(
            bridge.subnets,
            ["172.17.0.0/16".parse::<Ipv4Net>().unwrap()]
        );
        let made = nets.iter().find(|n| n.name == "strata-capture").unwrap();
        assert_eq!(made.bridge.as_deref(), Some("strata-cap0"));
        assert_eq!(
            made.subnets,
            ["198.18.251.0/29".parse::<Ipv4Net>().unwrap()]
        );
        assert!(nets
            .iter()
            .any(|n| n.name == "host" && n.subnets.is_empty()));
        assert!(parse_network_inspect("[]").unwrap().is_empty());
        assert!(parse_network_inspect("not json").is_err());
    }
}
