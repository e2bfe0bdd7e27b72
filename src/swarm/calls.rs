//! The Docker API calls that make, change and read a swarm, one function each, on a guest's
//! engine (through its SSH tunnel). Errors keep Docker's own words, never a join token.

use super::{CONTROL_PORT, DATA_PATH_PORT, LIVE_RESTORE_LABEL, MTU_LABEL, NAME_LABEL, VM_LABEL};
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, found, GuestDocker};
use bollard::models::{
    NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, SwarmInitRequest, SwarmJoinRequest,
    SwarmSpec, SwarmSpecDispatcher,
};
use bollard::query_parameters::{
    DeleteNodeOptions, LeaveSwarmOptions, ListNodesOptions, ListServicesOptions, UpdateNodeOptions,
};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// What a new swarm is made with.
pub struct InitRequest<'a> {
    /// strata's name for it (the swarm's label).
    pub name: &'a str,
    /// The first manager's address on the VMs' network: it listens and advertises there.
    pub addr: Ipv4Addr,
    /// The /16 its overlay networks are cut from.
    pub pool: Ipv4Net,
    pub subnet_size: u8,
    pub overlay_mtu: u32,
    /// How often nodes report to the managers (addresses::heartbeat).
    pub heartbeat: std::time::Duration,
}

/// Make a swarm with the guest behind `docker` as its first manager; its node id.
pub fn init(docker: &GuestDocker, req: &InitRequest) -> Result<String> {
    let labels = HashMap::from([
        (NAME_LABEL.to_string(), req.name.to_string()),
        (MTU_LABEL.to_string(), req.overlay_mtu.to_string()),
    ]);
    let request = SwarmInitRequest {
        listen_addr: Some(format!("{}:{CONTROL_PORT}", req.addr)),
        advertise_addr: Some(req.addr.to_string()),
        data_path_addr: Some(req.addr.to_string()),
        data_path_port: Some(u32::from(DATA_PATH_PORT)),
        default_addr_pool: Some(vec![req.pool.to_string()]),
        subnet_size: Some(u32::from(req.subnet_size)),
        spec: Some(SwarmSpec {
            labels: Some(labels),
            dispatcher: Some(SwarmSpecDispatcher {
                heartbeat_period: i64::try_from(req.heartbeat.as_nanos()).ok(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    docker
        .run(docker.docker.init_swarm(request))
        .map_err(|e| docker_error(e).context("making the swarm (docker swarm init)"))
}

/// A swarm's join tokens. They let an engine into the swarm, so they are never shown:
/// Debug prints neither.
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}

impl std::fmt::Debug for JoinTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinTokens { .. }")
    }
}

/// The join tokens, read from a manager.
pub fn join_tokens(docker: &GuestDocker) -> Result<JoinTokens> {
    let swarm = docker
        .run(docker.docker.inspect_swarm())
        .map_err(|e| docker_error(e).context("reading the swarm from a manager"))?;
    let tokens = swarm.join_tokens.unwrap_or_default();
    match (tokens.worker, tokens.manager) {
        (Some(worker), Some(manager)) if !worker.is_empty() && !manager.is_empty() => {
            Ok(JoinTokens { worker, manager })
        }
        _ => Err(Error::failed("the manager's engine gave no join tokens")),
    }
}

/// Join the guest behind `docker` (at `addr` on the VMs' network) to the swarm whose manager
/// listens at `manager`.
pub fn join(docker: &GuestDocker, addr: Ipv4Addr, manager: Ipv4Addr, token: &str) -> Result<()> {
    let request = SwarmJoinRequest {
        listen_addr: Some(format!("{addr}:{CONTROL_PORT}")),
        advertise_addr: Some(addr.to_string()),
        data_path_addr: Some(addr.to_string()),
        remote_addrs: Some(vec![format!("{manager}:{CONTROL_PORT}")]),
        join_token: Some(token.to_string()),
    };
    docker.run(docker.docker.join_swarm(request)).map_err(|e| {
        // Docker's message does not carry the token today; make sure it never does.
        let said = docker_error(e).message().replace(token, "<token>");
        Error::failed(said).context(format!("joining the swarm at {manager}:{CONTROL_PORT}"))
    })
}

/// A node as a manager lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SwarmNode {
    pub id: String,
    pub hostname: String,
    /// The VM strata labelled it with.
    pub vm: Option<String>,
    pub manager: bool,
    pub leader: bool,
    /// ready, down, unknown or disconnected.
    pub state: String,
    /// active, pause or drain: only an active node takes new tasks.
    pub availability: String,
    /// strata turned the engine's live-restore off when it joined: on again when it leaves.
    #[serde(skip)]
    pub restore_live_restore: bool,
}

/// The swarm's nodes, from a manager.
pub fn list_nodes(docker: &GuestDocker) -> Result<Vec<SwarmNode>> {
    let nodes = docker
        .run(docker.docker.list_nodes(None::<ListNodesOptions>))
        .map_err(|e| docker_error(e).context("listing the swarm's nodes"))?;
    Ok(nodes
        .into_iter()
        .map(|n| {
            let spec = n.spec.unwrap_or_default();
            let label = |key: &str| spec.labels.as_ref().and_then(|l| l.get(key).cloned());
            SwarmNode {
                restore_live_restore: label(LIVE_RESTORE_LABEL).as_deref() == Some("on"),
                id: n.id.unwrap_or_default(),
                hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                vm: label(VM_LABEL),
                manager: spec.role == Some(NodeSpecRoleEnum::MANAGER),
                leader: n.manager_status.and_then(|m| m.leader).unwrap_or(false),
                availability: match spec.availability {
                    Some(NodeSpecAvailabilityEnum::PAUSE) => "pause",
                    Some(NodeSpecAvailabilityEnum::DRAIN) => "drain",
                    _ => "active",
                }
                .to_string(),
                state: match n.status.and_then(|s| s.state) {
                    Some(NodeState::READY) => "ready",
                    Some(NodeState::DOWN) => "down",
                    Some(NodeState::DISCONNECTED) => "disconnected",
                    _ => "unknown",
                }
                .to_string(),
            }
        })
        .collect())
}

/// Label node `node_id` with its VM's name, and whether strata turned its live-restore off
/// (through a manager); unchanged when it has them.
pub fn label_node(
    docker: &GuestDocker,
    node_id: &str,
    vm: &str,
    restore_live_restore: bool,
) -> Result<()> {
    update_spec(docker, node_id, |spec| {
        let labels = spec.labels.get_or_insert_with(HashMap::new);
        let mut wanted = vec![(VM_LABEL, vm)];
        if restore_live_restore {
            wanted.push((LIVE_RESTORE_LABEL, "on"));
        }
        let mut changed = false;
        for (key, value) in wanted {
            if labels.get(key).map(String::as_str) != Some(value) {
                labels.insert(key.to_string(), value.to_string());
                changed = true;
            }
        }
        changed
    })
}

/// Make manager `node_id` a worker (through another manager), before it leaves.
pub fn demote(docker: &GuestDocker, node_id: &str) -> Result<()> {
    update_spec(docker, node_id, |spec| {
        if spec.role == Some(NodeSpecRoleEnum::WORKER) {
            return false;
        }
        spec.role = Some(NodeSpecRoleEnum::WORKER);
        true
    })
}

fn update_spec(
    docker: &GuestDocker,
    node_id: &str,
    change: impl FnOnce(&mut bollard::models::NodeSpec) -> bool,
) -> Result<()> {
    let node = docker
        .run(docker.docker.inspect_node(node_id))
        .map_err(|e| docker_error(e).context(format!("reading node {node_id}")))?;
    let mut spec = node.spec.unwrap_or_default();
    if !change(&mut spec) {
        return Ok(());
    }
    let version = node.version.and_then(|v| v.index).unwrap_or_default() as i64;
    docker
        .run(
            docker
                .docker
                .update_node(node_id, spec, UpdateNodeOptions { version }),
        )
        .map_err(|e| docker_error(e).context(format!("updating node {node_id}")))
}

/// The guest behind `docker` leaves its swarm (`force`: the last manager, which ends it).
pub fn leave(docker: &GuestDocker, force: bool) -> Result<()> {
    docker
        .run(docker.docker.leave_swarm(Some(LeaveSwarmOptions { force })))
        .map_err(|e| docker_error(e).context("leaving the swarm"))
}

/// Remove a node that left from the swarm's list (through a manager).
pub fn remove_node(docker: &GuestDocker, node_id: &str) -> Result<()> {
    docker
        .run(
            docker
                .docker
                .delete_node(node_id, Some(DeleteNodeOptions { force: true })),
        )
        .map_err(|e| docker_error(e).context(format!("removing node {node_id} from the swarm")))
}

/// How many services the swarm runs (from a manager).
pub fn service_count(docker: &GuestDocker) -> Result<usize> {
    docker
        .run(docker.docker.list_services(None::<ListServicesOptions>))
        .map(|s| s.len())
        .map_err(|e| docker_error(e).context("listing the swarm's services"))
}

/// After leaving: remove the docker_gwbridge network that joining made, when no container is
/// on it (a leave takes the swarm's own networks but leaves this one). Whether it was removed.
pub fn remove_gateway_bridge(docker: &GuestDocker) -> Result<bool> {
    const GATEWAY_BRIDGE: &str = "docker_gwbridge";
    let Some(network) = inspect_network(docker, GATEWAY_BRIDGE)? else {
        return Ok(false);
    };
    if network.containers.is_some_and(|c| !c.is_empty()) {
        return Ok(false);
    }
    docker
        .run(docker.docker.remove_network(GATEWAY_BRIDGE))
        .map(|()| true)
        .map_err(|e| docker_error(e).context("removing docker_gwbridge"))
}

/// The guest's network `name`, if it has one.
fn inspect_network(
    docker: &GuestDocker,
    name: &str,
) -> Result<Option<bollard::models::NetworkInspect>> {
    found(
        docker.run(docker.docker.inspect_network(
            name,
            None::<bollard::query_parameters::InspectNetworkOptions>,
        )),
        "network",
        name,
    )
}

/// The IPv4 ranges of the guest's own Docker networks.
pub fn network_subnets(docker: &GuestDocker) -> Result<Vec<Ipv4Net>> {
    let networks = docker
        .run(
            docker
                .docker
                .list_networks(None::<bollard::query_parameters::ListNetworksOptions>),
        )
        .map_err(|e| docker_error(e).context("listing the guest's Docker networks"))?;
    Ok(networks
        .into_iter()
        .filter_map(|n| n.ipam.and_then(|i| i.config))
        .flatten()
        .filter_map(|c| c.subnet.and_then(|s| s.parse().ok()))
        .collect())
}

/// After leaving: whether Docker still shows an ingress network (a stale copy Docker 20.10
/// sometimes keeps, with its endpoint on docker_gwbridge, until dockerd restarts).
pub fn stale_ingress(docker: &GuestDocker) -> Result<bool> {
    Ok(inspect_network(docker, "ingress")?.is_some())
}

/// How many containers run in the guest.
pub fn running_containers(docker: &GuestDocker) -> Result<usize> {
    docker
        .run(
            docker
                .docker
                .list_containers(None::<bollard::query_parameters::ListContainersOptions>),
        )
        .map(|c| c.len())
        .map_err(|e| docker_error(e).context("listing the guest's containers"))
}
