//! net.bridge-netfilter (NET-3): with br_netfilter active and bridge-nf-call-iptables=1,
//! frames a Linux bridge forwards between two VMs pass the FORWARD chain as if routed, so
//! Docker's DROP policy cuts VM-to-VM traffic on host bridges (and on libvirt's own bridges
//! when libvirt's accept rules are missing). The check walks the rules in order for a frame
//! from one VM to another on each bridge that carries VMs.

use super::{accept_chain, describe_outcome, forward_evidence, vm_bridges, within_bridge};
use crate::check::{Finding, Fix, FixAction, HostCheck, HostSnapshot, Subject, Verdict};
use crate::host::iptables::FlowVerdict;

const ID: &str = "net.bridge-netfilter";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "/proc/sys/net/bridge/bridge-nf-call-iptables, iptables-save -t filter, libvirt networks and running domains' <interface type='bridge'> (API)",
    verdict,
};

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    if facts.bridge_nf_call_iptables != Some(true) {
        let why = match facts.bridge_nf_call_iptables {
            None => "br_netfilter is not active",
            _ => "net.bridge.bridge-nf-call-iptables=0",
        };
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            format!("bridged frames do not pass iptables ({why})"),
        )];
    }
    let table = match &facts.filter {
        Ok(t) => t,
        Err(why) => return vec![Finding::skipped(ID, Subject::Host, why)],
    };
    let bridges = vm_bridges(facts);
    if bridges.is_empty() {
        let mut f = Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            "no bridge carries VMs".into(),
        );
        // "No bridge" is only a finding when both sources of bridges answered.
        if let Err(why) = facts
            .libvirt_networks
            .as_ref()
            .and(facts.bridged_nics.as_ref())
        {
            f = Finding::skipped(ID, Subject::Host, why);
        }
        return vec![f];
    }
    bridges
        .iter()
        .map(|b| {
            let outcome = within_bridge(table, b);
            let mut evidence = vec![
                "br_netfilter active, net.bridge.bridge-nf-call-iptables=1: bridged frames pass FORWARD".to_string(),
            ];
            evidence.extend(forward_evidence(facts, table));
            evidence.push(describe_outcome(&b.bridge, &b.bridge, &outcome));
            if outcome.verdict == FlowVerdict::Accepted {
                return Finding::new(
                    ID,
                    Subject::Host,
                    Verdict::Ok,
                    format!("VMs on {} ({}) can reach each other", b.origin, b.bridge),
                )
                .evidence(evidence)
                .about_bridge(&b.bridge);
            }
            let chain = accept_chain(table);
            Finding::new(
                ID,
                Subject::Host,
                Verdict::Fail,
                format!(
                    "VMs on {} ({}) cannot reach each other: FORWARD drops frames the bridge forwards",
                    b.origin, b.bridge
                ),
            )
            .evidence(evidence)
            .about_bridge(&b.bridge)
            .with_fix(Fix::automatic(
                format!(
                    "now: `iptables -I {chain} -i {br} -o {br} -j ACCEPT` (until reboot); to keep it: set net.bridge.bridge-nf-call-iptables=0 in /etc/sysctl.d (when no container uses icc=false or userland-proxy=false), or re-add the rule from a unit started after Docker; {}",
                    super::forward_policy::durable_fix(facts),
                    br = b.bridge
                ),
                FixAction::AcceptWithinBridge {
                    chain,
                    bridge: b.bridge.clone(),
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn vms_on_a_plain_bridge_behind_docker_drop_fail() {
        let mut facts = with_bridged_vms(host_facts(DOCKER_20_10), &["a", "b"], "stbr0");
        facts.bridge_nf_call_iptables = Some(true);
        let found = verdict(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(
            found[0].summary.contains("host bridge of VMs a, b"),
            "{}",
            found[0].summary
        );
        assert_eq!(
            found[0].fix.as_ref().unwrap().action,
            Some(FixAction::AcceptWithinBridge {
                chain: "DOCKER-USER".into(),
                bridge: "stbr0".into()
            })
        );
        // After the fix's rule the same frame is accepted.
        let fixed = DOCKER_20_10.replace(
            "-A DOCKER-USER -j RETURN",
            "-A DOCKER-USER -i stbr0 -o stbr0 -j ACCEPT\n-A DOCKER-USER -j RETURN",
        );
        let mut facts = with_bridged_vms(host_facts(&fixed), &["a", "b"], "stbr0");
        facts.bridge_nf_call_iptables = Some(true);
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Ok);
    }

    #[test]
    fn unreadable_libvirt_is_skipped_not_ok() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.bridge_nf_call_iptables = Some(true);
        facts.libvirt_networks = Err(crate::error::Error::failed("libvirt is not reachable"));
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Skip);
    }

    #[test]
    fn without_bridge_netfilter_nothing_to_judge() {
        let mut facts = with_bridged_vms(host_facts(DOCKER_20_10), &["a"], "stbr0");
        facts.bridge_nf_call_iptables = Some(false);
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Ok);
    }

    #[test]
    fn libvirt_isolated_network_is_accepted_in_either_order() {
        for save in [LIBVIRT_FIRST, DOCKER_FIRST] {
            let mut facts =
                with_libvirt_network(host_facts(save), "t", "virbr1", "isolated", "10.251.3.0/24");
            facts.bridge_nf_call_iptables = Some(true);
            let found = verdict(&facts);
            assert_eq!(found[0].verdict, Verdict::Ok, "{save}\n{:?}", found[0]);
        }
    }
}
