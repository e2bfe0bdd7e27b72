//! `plan list`: the plans found on this host, read from libvirt metadata alone (no plan file
//! needed): every network and VM carrying a plan's name, with its state.

use crate::error::Result;
use crate::vm::{domain, network};
use serde::Serialize;
use virt::connect::Connect;

#[derive(Debug, Clone, Serialize)]
pub struct Owned {
    pub plan: String,
    /// network or vm
    pub kind: &'static str,
    pub name: String,
    pub state: String,
    /// The VM's template and address, the network's subnet.
    pub detail: String,
}

/// Everything a plan made, by plan then kind (networks first) then name.
pub fn list(conn: &Connect) -> Result<Vec<Owned>> {
    let mut owned = Vec::new();
    for net in network::list(conn)? {
        let Some(plan) = net.plan.clone() else {
            continue;
        };
        owned.push(Owned {
            plan,
            kind: "network",
            state: if net.active { "active" } else { "inactive" }.to_string(),
            detail: net
                .subnet
                .map(|s| format!("{s} {}", net.mode))
                .unwrap_or_else(|| net.mode.clone()),
            name: net.name,
        });
    }
    for vm in domain::list(conn)? {
        let Some(plan) = vm.record.plan.clone() else {
            continue;
        };
        owned.push(Owned {
            plan,
            kind: "vm",
            detail: format!("{} at {}", vm.record.template, vm.record.ip),
            state: vm.state,
            name: vm.name,
        });
    }
    owned.sort_by(|a, b| {
        (&a.plan, a.kind != "network", &a.name).cmp(&(&b.plan, b.kind != "network", &b.name))
    });
    Ok(owned)
}
