//! Docker Swarm across strata's guests, through each guest's Docker API (bollard over the SSH
//! tunnel, never Docker's TCP port): what a guest's engine says of its swarm membership, and
//! the calls that change it (init on the first manager, join, node labels, demote, leave,
//! node removal). A swarm strata made carries its name in the swarm's own labels, and each
//! node the name of its VM, so the swarms are read back from the guests, not from a file.
//! Join tokens are read through the API and go only into the join request of the guest that
//! joins: never printed, logged or written. The pure choices (the default address pool, the
//! overlay MTU) are in `addresses`.

pub mod addresses;
mod calls;
mod member;

pub use calls::{
    demote, init, join, join_tokens, label_node, leave, list_nodes, network_subnets,
    remove_gateway_bridge, remove_node, running_containers, service_count, stale_ingress,
    InitRequest, JoinTokens, SwarmNode,
};
pub use member::{member_of, read_member, Member, Membership};

/// The swarm label that holds strata's name for a swarm.
pub const NAME_LABEL: &str = "strata.swarm";
/// The swarm label that holds the MTU strata chose for overlay networks.
pub const MTU_LABEL: &str = "strata.overlay-mtu";
/// The node label that names a node's VM.
pub const VM_LABEL: &str = "strata.vm";
/// The node label saying strata turned the engine's live-restore off for the swarm (Docker
/// refuses swarm mode with it): it goes back on when the node leaves.
pub const LIVE_RESTORE_LABEL: &str = "strata.live-restore";
/// The port managers listen on for the swarm's control plane.
pub const CONTROL_PORT: u16 = 2377;
/// The UDP port of the overlay networks' VXLAN data path (Docker's default, set explicitly).
pub const DATA_PATH_PORT: u16 = 4789;
