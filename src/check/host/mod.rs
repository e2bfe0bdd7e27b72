//! The host checks, one file each, and what several of them share: the bridges that carry VM
//! traffic and how to name a packet flow through them.

mod bridge_netfilter;
mod dns_listeners;
mod firewall_backends;
mod firewalld;
mod forward_policy;
mod kvm_device;
mod pool_access;
mod security_denials;
mod subnet_overlap;
mod template_integrity;

use crate::check::HostCheck;
use crate::check::HostSnapshot;
use crate::host::iptables::{FilterTable, Flow, FlowVerdict, Outcome};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Every host check, in the order the table shows them.
pub const ALL: &[HostCheck] = &[
    forward_policy::CHECK,
    bridge_netfilter::CHECK,
    firewall_backends::CHECK,
    firewalld::CHECK,
    subnet_overlap::CHECK,
    dns_listeners::CHECK,
    kvm_device::CHECK,
    pool_access::CHECK,
    security_denials::CHECK,
    template_integrity::CHECK,
];

/// A Linux bridge that carries VM traffic, and why strata thinks so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmBridge {
    pub bridge: String,
    /// "libvirt network 'default'" or "host bridge of VMs a, b".
    pub origin: String,
    pub subnet: Option<Ipv4Net>,
    /// The network routes (NAT or plain routing) through the host, so its VMs' outbound
    /// traffic passes FORWARD even without br_netfilter.
    pub routed: bool,
}

/// Active libvirt networks' bridges and host bridges with VM NICs (type='bridge'), without
/// Docker's own bridges. Empty when libvirt could not be read (the checks say so).
pub(crate) fn vm_bridges(facts: &HostSnapshot) -> Vec<VmBridge> {
    let mut bridges = Vec::new();
    for net in facts.libvirt_networks.iter().flatten() {
        let (true, Some(bridge)) = (net.active, net.bridge.clone()) else {
            continue;
        };
        bridges.push(VmBridge {
            bridge,
            origin: format!("libvirt network '{}'", net.name),
            subnet: net.subnet,
            routed: matches!(net.mode.as_str(), "nat" | "route" | "open"),
        });
    }
    // Host bridges in order of first appearance, each with the VMs on it.
    let mut host_bridges: Vec<(String, Vec<String>)> = Vec::new();
    for nic in facts.bridged_nics.iter().flatten() {
        if bridges.iter().any(|b| b.bridge == nic.bridge) {
            continue; // a libvirt network's bridge, already listed
        }
        match host_bridges.iter_mut().find(|(b, _)| *b == nic.bridge) {
            Some((_, vms)) if !vms.contains(&nic.domain) => vms.push(nic.domain.clone()),
            Some(_) => {}
            None => host_bridges.push((nic.bridge.clone(), vec![nic.domain.clone()])),
        }
    }
    for (bridge, vms) in host_bridges {
        let subnet = facts
            .routes
            .iter()
            .flatten()
            .find(|r| r.dev == bridge)
            .map(|r| r.subnet);
        bridges.push(VmBridge {
            origin: format!("host bridge of VMs {}", vms.join(", ")),
            bridge,
            subnet,
            routed: false,
        });
    }
    bridges
}

/// Two addresses inside `subnet` (or documentation addresses when it is unknown) for an
/// evaluated flow; no packet is ever sent.
fn sample_addresses(subnet: Option<Ipv4Net>) -> (Ipv4Addr, Ipv4Addr) {
    let mut hosts = subnet.map(|s| s.hosts()).into_iter().flatten().skip(1);
    match (hosts.next(), hosts.next()) {
        (Some(a), Some(b)) => (a, b),
        _ => (Ipv4Addr::new(192, 0, 2, 11), Ipv4Addr::new(192, 0, 2, 12)),
    }
}

/// VM to VM on the same bridge (what br_netfilter sends through FORWARD).
pub(crate) fn within_bridge(table: &FilterTable, b: &VmBridge) -> Outcome {
    let (src, dst) = sample_addresses(b.subnet);
    table.evaluate_forward(&Flow {
        in_iface: b.bridge.clone(),
        out_iface: b.bridge.clone(),
        src,
        dst,
        new_connection: true,
    })
}

/// A VM's first packet out through the host's uplink (`uplink` is the default route's device).
pub(crate) fn out_of_bridge(table: &FilterTable, b: &VmBridge, uplink: &str) -> Outcome {
    let (src, _) = sample_addresses(b.subnet);
    table.evaluate_forward(&Flow {
        in_iface: b.bridge.clone(),
        out_iface: uplink.to_string(),
        src,
        // TEST-NET-3: stands for "somewhere outside"; only evaluated.
        dst: Ipv4Addr::new(203, 0, 113, 10),
        new_connection: true,
    })
}

/// "stbr0 → stbr0: dropped (policy DROP of FORWARD)".
pub(crate) fn describe_outcome(from: &str, to: &str, o: &Outcome) -> String {
    let verdict = match o.verdict {
        FlowVerdict::Accepted => "accepted",
        FlowVerdict::Dropped => "dropped",
        FlowVerdict::Rejected => "rejected",
    };
    let mut line = format!("{from} → {to}: {verdict} by {}", o.decided_by);
    if !o.uncertain.is_empty() {
        line.push_str(&format!(
            " (rules strata cannot evaluate, which might match: {})",
            o.uncertain.join("; ")
        ));
    }
    line
}

/// The chain an ACCEPT rule must go into to come before Docker's rules: DOCKER-USER when
/// FORWARD jumps there first (Docker's documented place for user rules), FORWARD otherwise.
pub(crate) fn accept_chain(table: &FilterTable) -> String {
    match table.forward_jumps().first() {
        Some(first) if first == "DOCKER-USER" && first_forward_rule_is_jump(table) => {
            "DOCKER-USER".into()
        }
        _ => "FORWARD".into(),
    }
}

fn first_forward_rule_is_jump(table: &FilterTable) -> bool {
    table
        .chains
        .get("FORWARD")
        .and_then(|rules| rules.first())
        .map(|r| r.text.trim() == "-A FORWARD -j DOCKER-USER")
        .unwrap_or(false)
}

/// Evidence lines about the filter table that every forwarding finding shows.
pub(crate) fn forward_evidence(facts: &HostSnapshot, table: &FilterTable) -> Vec<String> {
    let policy = table.policy("FORWARD").unwrap_or("ACCEPT");
    let mut lines = vec![format!(
        "FORWARD policy {policy}; FORWARD jumps, in order: {}",
        table.forward_jumps().join(", ")
    )];
    if let Ok(forwarding) = facts.ip_forward {
        lines.push(format!("net.ipv4.ip_forward={}", u8::from(forwarding)));
    }
    lines
}

/// The default route's device, for outbound flows.
pub(crate) fn uplink(facts: &HostSnapshot) -> String {
    facts
        .default_route_dev
        .clone()
        .unwrap_or_else(|| "uplink".into())
}

/// Host facts for the checks' unit tests: everything empty or absent except the filter table.
#[cfg(test)]
pub(crate) mod test_facts {
    use crate::check::snapshot::host::{BridgedNic, HostSnapshot};
    use crate::host::iptables::FilterTable;
    use crate::host::nft::FirewallBackends;
    use crate::vm::network::NetworkInfo;

    /// Captured on this project's Debian 12 machine, Docker 20.10 running, no libvirt network.
    pub const DOCKER_20_10: &str = include_str!("../../host/testdata/iptables-docker-only.txt");
    /// Captured with a strata isolated network (virbr1, 10.250.77.0/24) started after dockerd.
    pub const LIBVIRT_FIRST: &str = include_str!("../../host/testdata/iptables-libvirt-first.txt");
    /// The same after restarting dockerd: Docker's jumps now come first.
    pub const DOCKER_FIRST: &str = include_str!("../../host/testdata/iptables-docker-first.txt");
    /// A strata NAT network (virbr2, 10.250.78.0/24) with Docker's jumps first.
    pub const NAT_DOCKER_FIRST: &str =
        include_str!("../../host/testdata/iptables-nat-docker-first.txt");

    pub fn host_facts(iptables_save: &str) -> HostSnapshot {
        HostSnapshot {
            filter: FilterTable::parse(iptables_save),
            ip_forward: Ok(true),
            bridge_nf_call_iptables: None,
            libvirt_networks: Ok(Vec::new()),
            bridged_nics: Ok(Vec::new()),
            docker: Err(crate::error::Error::failed("not asked")),
            routes: Ok(Vec::new()),
            default_route_dev: Some("eth0".into()),
            dns_dhcp_listeners: Ok(Vec::new()),
            kvm: Err(crate::error::Error::failed("not asked")),
            nested: None,
            backends: FirewallBackends {
                iptables_variant: Some("nf_tables".into()),
                legacy_rules: Ok(0),
                nft_rules: Ok(0),
                nft_tables: Err(crate::error::Error::failed("nft is not installed")),
                libvirt_backend: None,
            },
            firewalld: None,
            pool_access: Err(crate::error::Error::failed("not asked")),
            templates: Ok(Vec::new()),
            apparmor_denials: None,
            selinux_denials: None,
        }
    }

    pub fn with_libvirt_network(
        mut facts: HostSnapshot,
        name: &str,
        bridge: &str,
        mode: &str,
        subnet: &str,
    ) -> HostSnapshot {
        let subnet: ipnet::Ipv4Net = subnet.parse().unwrap();
        facts.libvirt_networks.as_mut().unwrap().push(NetworkInfo {
            name: name.into(),
            bridge: Some(bridge.into()),
            mode: mode.into(),
            subnet: Some(subnet),
            gateway: subnet.hosts().next(),
            dynamic: None,
            hosts: Vec::new(),
            active: true,
            strata: true,
            plan: None,
            mtu: None,
        });
        facts
    }

    pub fn with_bridged_vms(mut facts: HostSnapshot, vms: &[&str], bridge: &str) -> HostSnapshot {
        for vm in vms {
            facts.bridged_nics.as_mut().unwrap().push(BridgedNic {
                domain: vm.to_string(),
                bridge: bridge.into(),
            });
        }
        facts
    }
}
