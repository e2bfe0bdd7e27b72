//! net.firewalld (NET-6): when firewalld runs, libvirt's bridges must be in its `libvirt`
//! zone (or `libvirt-routed`) and Docker's in `docker`; with firewalld's iptables backend a
//! reload flushes the DOCKER-USER rules others added.

use crate::check::{Finding, Fix, HostCheck, HostSnapshot, Subject, Verdict};
use crate::host::firewalld::Firewalld;

const ID: &str = "net.firewalld";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "whether a firewalld process runs, `firewall-cmd --get-active-zones`, FirewallBackend in /etc/firewalld/firewalld.conf, libvirt networks (API), Docker networks (API)",
    verdict,
};

fn zone_of<'a>(fw: &'a Firewalld, iface: &str) -> Option<&'a str> {
    fw.zones
        .iter()
        .find(|(_, ifaces)| ifaces.iter().any(|i| i == iface))
        .map(|(z, _)| z.as_str())
}

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let fw = match &facts.firewalld {
        None => {
            return vec![Finding::new(
                ID,
                Subject::Host,
                Verdict::Ok,
                "firewalld is not running".into(),
            )]
        }
        Some(Err(why)) => return vec![Finding::skipped(ID, Subject::Host, why)],
        Some(Ok(fw)) => fw,
    };
    let mut problems = Vec::new();
    for net in facts.libvirt_networks.iter().flatten().filter(|n| n.active) {
        let Some(bridge) = &net.bridge else { continue };
        match zone_of(fw, bridge) {
            Some("libvirt") | Some("libvirt-routed") => {}
            other => problems.push(format!(
                "libvirt network '{}' bridge {bridge} is in zone {} instead of 'libvirt'",
                net.name,
                other.unwrap_or("(none)")
            )),
        }
    }
    for net in facts.docker.iter().flat_map(|d| d.networks.iter()) {
        let Some(bridge) = &net.bridge else { continue };
        if let Some(zone) = zone_of(fw, bridge).filter(|z| *z != "docker") {
            problems.push(format!(
                "Docker network '{}' bridge {bridge} is in zone '{zone}' instead of 'docker'",
                net.name
            ));
        }
    }
    let mut evidence: Vec<String> = fw
        .zones
        .iter()
        .map(|(z, i)| format!("zone {z}: {}", i.join(" ")))
        .collect();
    evidence.push(format!(
        "FirewallBackend={}",
        fw.backend.as_deref().unwrap_or("(default nftables)")
    ));
    if fw.backend.as_deref() == Some("iptables") {
        problems.push(
            "firewalld uses its iptables backend: `firewall-cmd --reload` flushes DOCKER-USER rules added by others".into(),
        );
    }
    if problems.is_empty() {
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            "libvirt's and Docker's bridges are in their own firewalld zones".into(),
        )
        .evidence(evidence)];
    }
    vec![Finding::new(ID, Subject::Host, Verdict::Warn, problems.join("; "))
        .evidence(evidence)
        .with_fix(Fix::manual(
            "keep firewalld on its nftables backend; let libvirt and Docker place their bridges (do not move virbr*/docker0 to other zones by hand); re-add DOCKER-USER rules from a unit bound to both docker and firewalld",
        ))]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn not_running_is_fine() {
        assert_eq!(verdict(&host_facts(DOCKER_20_10))[0].verdict, Verdict::Ok);
    }

    #[test]
    fn libvirt_bridge_in_the_wrong_zone_warns() {
        let mut facts = with_libvirt_network(
            host_facts(DOCKER_20_10),
            "default",
            "virbr0",
            "nat",
            "192.168.122.0/24",
        );
        facts.firewalld = Some(Ok(Firewalld {
            zones: crate::host::firewalld::parse_active_zones(
                "public\n  interfaces: eth0 virbr0\n",
            ),
            backend: Some("nftables".into()),
        }));
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Warn);
        assert!(
            found[0].summary.contains("zone public"),
            "{}",
            found[0].summary
        );
        facts.firewalld = Some(Ok(Firewalld {
            zones: crate::host::firewalld::parse_active_zones("libvirt\n  interfaces: virbr0\n"),
            backend: None,
        }));
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Ok);
    }
}
