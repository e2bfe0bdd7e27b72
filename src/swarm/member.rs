//! What one guest's engine says of its swarm membership (`docker info`'s Swarm section).

use crate::error::Result;
use crate::guest::docker::{docker_error, GuestDocker};
use bollard::models::{LocalNodeState, SystemInfo};

/// A guest's place in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// In no swarm.
    Alone,
    /// A manager: the swarm's id and strata's name for it (None: a swarm strata did not make),
    /// the ranges its overlay networks are cut from and the MTU strata chose for them.
    Manager {
        cluster: String,
        name: Option<String>,
        pools: Vec<String>,
        overlay_mtu: Option<u32>,
    },
    /// A worker. A worker knows neither the swarm's id nor its labels: its managers' node
    /// lists say which swarm it is in.
    Worker,
    /// Joining, locked or in error, as Docker says it.
    Unsettled(String),
}

/// One guest's engine as a swarm node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's id (empty when in no swarm).
    pub node_id: String,
    pub membership: Membership,
    /// The engine's version, as `docker info` says it.
    pub engine_version: String,
    /// Docker's live-restore is on (it refuses swarm mode then).
    pub live_restore: bool,
}

/// Read the guest's membership through its Docker API.
pub fn read_member(docker: &GuestDocker) -> Result<Member> {
    let info = docker
        .run(docker.docker.info())
        .map_err(|e| docker_error(e).context("reading the engine's swarm state"))?;
    Ok(member_of(&info))
}

/// The membership `docker info` describes (pure).
pub fn member_of(info: &SystemInfo) -> Member {
    let swarm = info.swarm.clone().unwrap_or_default();
    let node_id = swarm.node_id.clone().unwrap_or_default();
    // One rule for "in no swarm", shared with the engine's own checks.
    let membership = match swarm.local_node_state {
        _ if !crate::guest::docker::in_swarm_mode(info) => Membership::Alone,
        Some(LocalNodeState::ACTIVE) if swarm.control_available == Some(true) => {
            let cluster = swarm.cluster.unwrap_or_default();
            let labels = cluster.spec.and_then(|s| s.labels).unwrap_or_default();
            Membership::Manager {
                cluster: cluster.id.unwrap_or_default(),
                name: labels.get(super::NAME_LABEL).cloned(),
                pools: cluster.default_addr_pool.unwrap_or_default(),
                overlay_mtu: labels.get(super::MTU_LABEL).and_then(|m| m.parse().ok()),
            }
        }
        Some(LocalNodeState::ACTIVE) => Membership::Worker,
        other => Membership::Unsettled(format!(
            "{}{}",
            serde_json::to_value(other)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            swarm
                .error
                .filter(|e| !e.is_empty())
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )),
    };
    Member {
        node_id,
        membership,
        engine_version: info.server_version.clone().unwrap_or_default(),
        live_restore: info.live_restore_enabled == Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(swarm: serde_json::Value) -> SystemInfo {
        serde_json::from_value(serde_json::json!({
            "ServerVersion": "20.10.24+dfsg1",
            "Swarm": swarm,
        }))
        .unwrap()
    }

    #[test]
    fn an_engine_in_no_swarm_is_alone() {
        let m = member_of(&info(serde_json::json!({
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null
        })));
        assert_eq!(m.membership, Membership::Alone);
        assert_eq!(m.engine_version, "20.10.24+dfsg1");
    }

    #[test]
    fn a_manager_knows_its_swarm_and_strata_s_name_for_it() {
        let m = member_of(&info(serde_json::json!({
            "NodeID": "n1", "LocalNodeState": "active", "ControlAvailable": true,
            "Cluster": {"ID": "c1", "Spec": {"Name": "default", "Labels": {"strata.swarm": "lab", "strata.overlay-mtu": "1450"}},
                        "DefaultAddrPool": ["10.128.0.0/16"]}
        })));
        assert_eq!(m.node_id, "n1");
        assert_eq!(
            m.membership,
            Membership::Manager {
                cluster: "c1".into(),
                name: Some("lab".into()),
                pools: vec!["10.128.0.0/16".into()],
                overlay_mtu: Some(1450),
            }
        );
        let foreign = member_of(&info(serde_json::json!({
            "NodeID": "n1", "LocalNodeState": "active", "ControlAvailable": true,
            "Cluster": {"ID": "c2", "Spec": {"Name": "default"}}
        })));
        assert_eq!(
            foreign.membership,
            Membership::Manager {
                cluster: "c2".into(),
                name: None,
                pools: vec![],
                overlay_mtu: None,
            }
        );
    }

    #[test]
    fn workers_and_unsettled_engines() {
        let worker = member_of(&info(serde_json::json!({
            "NodeID": "n2", "LocalNodeState": "active", "ControlAvailable": false
        })));
        assert_eq!(worker.membership, Membership::Worker);
        let pending = member_of(&info(serde_json::json!({
            "NodeID": "n3", "LocalNodeState": "pending", "ControlAvailable": false,
            "Error": "timeout joining"
        })));
        assert_eq!(
            pending.membership,
            Membership::Unsettled("pending: timeout joining".into())
        );
    }
}
