//! net.firewall-backends (NET-2, NET-5): a packet must pass every netfilter back end that
//! holds rules, and a DROP in any of them wins. Two cases break VMs: rules in both the legacy
//! x_tables and the nf_tables back end (usually Docker on one, firewalld/libvirt on the
//! other), and libvirt's nftables backend (libvirt >= 10.3) next to Docker's iptables DROP
//! policy, where libvirt's accept in its own table is not final.

use super::{describe_outcome, out_of_bridge, uplink, vm_bridges, within_bridge};
use crate::check::{Finding, Fix, HostCheck, HostSnapshot, Subject, Verdict};
use crate::host::iptables::FlowVerdict;

const ID: &str = "net.firewall-backends";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "`iptables --version`, rule counts of iptables-legacy-save and iptables-nft-save, `nft -j list tables`, firewall_backend in /etc/libvirt/network.conf, iptables-save FORWARD policy",
    verdict,
};

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let b = &facts.backends;
    let count = |r: &crate::error::Result<usize>| match r {
        Ok(n) => n.to_string(),
        Err(why) => format!("unknown ({})", why.message()),
    };
    let mut evidence = vec![
        format!(
            "iptables is the {} variant",
            b.iptables_variant.as_deref().unwrap_or("unknown")
        ),
        format!(
            "rules: {} in the legacy back end, {} in the nf_tables back end",
            count(&b.legacy_rules),
            count(&b.nft_rules)
        ),
    ];
    let libvirt_nft_table = b
        .nft_tables
        .as_ref()
        .map(|t| t.iter().any(|t| t.ends_with(" libvirt_network")))
        .unwrap_or(false);
    let libvirt_on_nft = libvirt_nft_table || b.libvirt_backend.as_deref() == Some("nftables");
    evidence.push(match (&b.libvirt_backend, libvirt_nft_table) {
        (_, true) => "libvirt's nftables table 'libvirt_network' is present".into(),
        (Some(backend), false) => format!("libvirt firewall_backend = {backend}"),
        (None, false) => "libvirt uses its iptables rules (no table 'libvirt_network')".into(),
    });
    let both = matches!((&b.legacy_rules, &b.nft_rules), (Ok(l), Ok(n)) if *l > 0 && *n > 0);
    // With libvirt on nftables its iptables rules are gone, so walking the iptables FORWARD
    // chain for each libvirt bridge shows what Docker's rules do to it; accept rules added
    // by `--fix` (or by hand) make the flows pass and the conflict is settled.
    let dropped: Vec<String> = match &facts.filter {
        Ok(table) if table.policy("FORWARD") == Some("DROP") => {
            let out = uplink(facts);
            vm_bridges(facts)
                .iter()
                .filter(|b| b.origin.starts_with("libvirt network"))
                .flat_map(|b| {
                    let mut outcomes = vec![(b.bridge.clone(), within_bridge(table, b))];
                    if b.routed {
                        outcomes.push((out.clone(), out_of_bridge(table, b, &out)));
                    }
                    let all_accepted = outcomes
                        .iter()
                        .all(|(_, o)| o.verdict == FlowVerdict::Accepted);
                    let described = outcomes
                        .iter()
                        .map(|(to, o)| describe_outcome(&b.bridge, to, o));
                    described.filter(move |_| !all_accepted).collect::<Vec<_>>()
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let mut findings = Vec::new();
    if both {
        findings.push(
            Finding::new(
                ID,
                Subject::Host,
                Verdict::Fail,
                "both iptables back ends hold rules: a packet must pass both, and rules in one are invisible to the other's tools".into(),
            )
            .evidence(evidence.clone())
            .with_fix(Fix::manual(
                "choose one: `update-alternatives --set iptables /usr/sbin/iptables-nft` (what libvirt, firewalld and current Docker use), restart the daemons that wrote legacy rules, and reboot to clear the legacy tables",
            )),
        );
    }
    if libvirt_on_nft && !dropped.is_empty() {
        let mut evidence = evidence.clone();
        evidence.extend(dropped);
        findings.push(
            Finding::new(
                ID,
                Subject::Host,
                Verdict::Fail,
                "libvirt filters in nftables while Docker's iptables FORWARD policy is DROP: libvirt's accepts are not final, so VM traffic is dropped".into(),
            )
            .evidence(evidence)
            .with_fix(Fix::manual(
                "set `firewall_backend = \"iptables\"` in /etc/libvirt/network.conf and restart libvirtd; or add DOCKER-USER accept rules for libvirt's bridges (`strata check --fix` does for the bridges it finds); Docker 28+: `\"ip-forward-no-drop\": true`",
            )),
        );
    }
    if findings.is_empty() {
        findings.push(
            Finding::new(
                ID,
                Subject::Host,
                Verdict::Ok,
                "one packet-filter back end holds the rules".into(),
            )
            .evidence(evidence),
        );
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn this_machine_uses_one_back_end() {
        let facts = host_facts(DOCKER_20_10);
        let found = verdict(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Ok);
    }

    #[test]
    fn rules_in_both_back_ends_fail() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.backends.legacy_rules = Ok(12);
        facts.backends.nft_rules = Ok(30);
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(found[0]
            .fix
            .as_ref()
            .unwrap()
            .description
            .contains("iptables-nft"));
    }

    fn libvirt_on_nftables(save: &str) -> HostSnapshot {
        let mut facts = with_libvirt_network(
            host_facts(save),
            "default",
            "virbr0",
            "nat",
            "192.168.122.0/24",
        );
        facts.backends.nft_tables = Ok(vec!["ip filter".into(), "ip libvirt_network".into()]);
        facts
    }

    #[test]
    fn libvirt_nftables_with_docker_drop_fails() {
        let found = verdict(&libvirt_on_nftables(DOCKER_20_10));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(found[0].summary.contains("not final"));
        assert!(
            found[0]
                .evidence
                .iter()
                .any(|e| e.contains("virbr0 → eth0: dropped")),
            "{:?}",
            found[0].evidence
        );
    }

    #[test]
    fn libvirt_nftables_passes_once_accept_rules_let_its_bridges_through() {
        let fixed = DOCKER_20_10.replace(
            "-A DOCKER-USER -j RETURN",
            "-A DOCKER-USER -i virbr0 -j ACCEPT\n-A DOCKER-USER -o virbr0 -j ACCEPT\n-A DOCKER-USER -j RETURN",
        );
        let found = verdict(&libvirt_on_nftables(&fixed));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Ok, "{:?}", found[0]);
    }
}
