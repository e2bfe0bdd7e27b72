//! net.forward-policy (NET-1, NET-8): traffic of routed libvirt networks (NAT, route) leaving
//! the host passes the FORWARD chain; when dockerd itself turned ip_forward on it set the
//! policy to DROP, and libvirt's accept rules only help while they come before it. The check
//! walks the rules in their current order for each network's first outbound packet.

use super::{accept_chain, describe_outcome, forward_evidence, out_of_bridge, uplink, vm_bridges};
use crate::check::{Finding, Fix, FixAction, HostCheck, HostSnapshot, Subject, Verdict};
use crate::guest::facts::EngineVersion;
use crate::host::iptables::FlowVerdict;

const ID: &str = "net.forward-policy";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "iptables-save -t filter (policy and rule order of FORWARD), net.ipv4.ip_forward, libvirt networks (API), Docker's version (API)",
    verdict,
};

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let table = match &facts.filter {
        Ok(t) => t,
        Err(why) => return vec![Finding::skipped(ID, Subject::Host, why)],
    };
    // Routed networks come only from libvirt: without its answer there is nothing to judge,
    // and "ok" would be a claim strata did not check.
    if let Err(why) = &facts.libvirt_networks {
        return vec![Finding::skipped(ID, Subject::Host, why)];
    }
    let routed: Vec<_> = vm_bridges(facts).into_iter().filter(|b| b.routed).collect();
    if routed.is_empty() {
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            "no active libvirt network routes VM traffic through this host".into(),
        )
        .evidence(forward_evidence(facts, table))];
    }
    let out = uplink(facts);
    routed
        .iter()
        .map(|b| {
            let outcome = out_of_bridge(table, b, &out);
            let mut evidence = forward_evidence(facts, table);
            evidence.push(describe_outcome(&b.bridge, &out, &outcome));
            if outcome.verdict == FlowVerdict::Accepted {
                return Finding::new(
                    ID,
                    Subject::Host,
                    Verdict::Ok,
                    format!("{} ({}) can reach beyond the host", b.origin, b.bridge),
                )
                .evidence(evidence)
                .about_bridge(&b.bridge);
            }
            evidence.push(who_set_drop(facts));
            let chain = accept_chain(table);
            Finding::new(
                ID,
                Subject::Host,
                Verdict::Fail,
                format!(
                    "VMs on {} ({}) cannot reach beyond the host: FORWARD drops their traffic",
                    b.origin, b.bridge
                ),
            )
            .evidence(evidence)
            .about_bridge(&b.bridge)
            .with_fix(Fix::automatic(
                format!(
                    "now: `iptables -I {chain} -i {br}{src} -j ACCEPT` and `iptables -I {chain} -o {br}{dst} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT` (until reboot); to keep it: {}",
                    durable_fix(facts),
                    br = b.bridge,
                    src = b.subnet.map(|s| format!(" -s {s}")).unwrap_or_default(),
                    dst = b.subnet.map(|s| format!(" -d {s}")).unwrap_or_default(),
                ),
                FixAction::AcceptRoutedBridge {
                    chain,
                    bridge: b.bridge.clone(),
                    subnet: b.subnet.map(|s| s.to_string()),
                },
            ))
        })
        .collect()
}

/// Which daemon the DROP policy comes from, as far as the facts tell.
fn who_set_drop(facts: &HostSnapshot) -> String {
    match &facts.docker {
        Ok(d) => format!(
            "Docker {} runs on this host, the likely source: Docker sets FORWARD to DROP when it is the one that turns net.ipv4.ip_forward on at start",
            d.server_version
        ),
        Err(_) => "Docker does not answer on this host; something else set FORWARD to DROP".into(),
    }
}

/// The lasting fix for the host's Docker version (conflicts.md NET-1).
pub(super) fn durable_fix(facts: &HostSnapshot) -> String {
    let version = facts
        .docker
        .as_ref()
        .ok()
        .and_then(|d| EngineVersion::parse(&d.server_version));
    let sysctl = "put `net.ipv4.ip_forward=1` in /etc/sysctl.d/90-forwarding.conf so forwarding is on before dockerd starts";
    match version {
        Some(v) if v >= EngineVersion::new(28, 0, 0) => format!(
            "{sysctl} and set `\"ip-forward-no-drop\": true` in /etc/docker/daemon.json (Docker {v})"
        ),
        Some(v) => format!(
            "{sysctl} (Docker {v} then leaves the policy alone; `ip-forward-no-drop` needs Docker 28); as a last resort `\"iptables\": false`"
        ),
        None => sysctl.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn nat_network_behind_docker_drop_fails_with_a_fix() {
        let facts = with_libvirt_network(
            host_facts(DOCKER_20_10),
            "default",
            "virbr0",
            "nat",
            "192.168.122.0/24",
        );
        let found = verdict(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(
            found[0]
                .evidence
                .iter()
                .any(|e| e.contains("policy DROP of FORWARD")),
            "{:?}",
            found[0].evidence
        );
        let fix = found[0].fix.as_ref().unwrap();
        assert_eq!(
            fix.action,
            Some(FixAction::AcceptRoutedBridge {
                chain: "DOCKER-USER".into(),
                bridge: "virbr0".into(),
                subnet: Some("192.168.122.0/24".into())
            })
        );
        assert!(fix.description.contains("sysctl.d"), "{}", fix.description);
        // The rules the fix inserts, as iptables-save shows them, let the traffic out.
        let fixed = DOCKER_20_10.replace(
            "-A DOCKER-USER -j RETURN",
            "-A DOCKER-USER -s 192.168.122.0/24 -i virbr0 -m comment --comment \"strata check --fix\" -j ACCEPT\n-A DOCKER-USER -j RETURN",
        );
        let facts = with_libvirt_network(
            host_facts(&fixed),
            "default",
            "virbr0",
            "nat",
            "192.168.122.0/24",
        );
        assert_eq!(
            verdict(&facts)[0].verdict,
            Verdict::Ok,
            "{:?}",
            verdict(&facts)
        );
    }

    #[test]
    fn libvirt_rules_first_let_nat_traffic_out() {
        // Captured with a strata NAT network and Docker's jumps first in FORWARD.
        let facts = with_libvirt_network(
            host_facts(NAT_DOCKER_FIRST),
            "cap-nat",
            "virbr2",
            "nat",
            "10.250.78.0/24",
        );
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Ok, "{:?}", found[0]);
    }

    #[test]
    fn unreadable_libvirt_is_skipped_not_ok() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.libvirt_networks = Err(crate::error::Error::failed("libvirt is not reachable"));
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Skip);
    }

    #[test]
    fn isolated_networks_do_not_route() {
        let facts = with_libvirt_network(
            host_facts(DOCKER_20_10),
            "t",
            "virbr9",
            "isolated",
            "10.251.1.0/24",
        );
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Ok);
    }
}
