//! Removing a network strata made (`net destroy`, and a plan's network gone from the plan or
//! destroyed with it): refused while any VM uses it, since libvirt would cut the VM off; then
//! the network; then the accepts `check --fix` added for its bridge, which would otherwise
//! outlive it and let through whatever network libvirt next gives that bridge name.

use crate::error::Result;
use crate::host::runner::Runner;
use crate::vm::{domain, network, Libvirt};

/// What removing the network did besides removing it.
#[derive(Debug, Default)]
pub struct NetDestroyed {
    /// The `check --fix` rules removed for its bridge: the arguments of each `iptables -D`.
    pub rules_removed: Vec<Vec<String>>,
    /// Said when those rules could not be read or removed (the network is gone all the same).
    pub note: Option<String>,
}

pub fn destroy_network(lv: &Libvirt, name: &str) -> Result<NetDestroyed> {
    let conn = lv.conn();
    domain::refuse_while_used(&conn, &format!("network '{name}'"), |record| {
        record.network == name
    })?;
    let bridge = network::lookup(&conn, name)?.1.bridge;
    network::destroy(&conn, name)?;
    let Some(bridge) = bridge else {
        explain(name, &[])?;
        return Ok(NetDestroyed::default());
    };
    let removed = Runner::for_uri(&lv.uri)
        .and_then(|runner| crate::check::fix::remove_bridge_rules(&runner, &bridge));
    explain(name, removed.as_deref().unwrap_or_default())?;
    Ok(match removed {
        Ok(rules_removed) => NetDestroyed {
            rules_removed,
            note: None,
        },
        Err(e) => NetDestroyed {
            rules_removed: Vec::new(),
            note: Some(format!(
                "the `strata check --fix` accepts for its bridge {bridge} were not removed ({}): `iptables -S DOCKER-USER` shows them",
                e.message()
            )),
        },
    })
}

/// `--explain`: the removal as virsh and iptables commands (written once it is done, so the
/// rules are the ones it found).
fn explain(name: &str, rules: &[Vec<String>]) -> Result<()> {
    crate::explain::step(
        crate::explain::Step::NetDestroy,
        &serde_json::json!({ "name": name, "rules": rules }),
    )
}
