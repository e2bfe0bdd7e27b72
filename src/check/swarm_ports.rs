//! swarm.ports (NET-3 judged by behaviour, on the swarm's ports): the VMs of a swarm, or
//! those about to form one, must reach each other on 2377/tcp (managers), 7946/tcp+udp
//! (gossip) and 4789/udp (VXLAN, the overlay networks). A host whose bridged traffic goes
//! through iptables (br_netfilter) with a FORWARD DROP, or a rule of the site's own, drops
//! them silently: the swarm forms but its overlay networks carry nothing, or nodes flap.
//! Judged from probes made inside the guests (snapshot/reach.rs), one finding per VM that
//! sent probes.

use crate::check::snapshot::reach::{Outcome, Probe, ReachSnapshot};
use crate::check::{Finding, Fix, FixAction, Subject, Verdict};

pub const ID: &str = "swarm.ports";

pub const READS: &str = "probes from inside each VM to the others: tcp connects to 2377 and 7946, udp datagrams to 7946 and 4789 seen by a listener in the receiving VM (perl-base)";

/// The findings for the probes of one group of VMs on `bridge`. `fix` is what `--fix` may
/// apply on the host for that bridge (None when strata cannot: a remote host, an unknown
/// bridge).
pub fn verdict(
    snapshot: &ReachSnapshot,
    bridge: Option<&str>,
    fix: Option<FixAction>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut senders: Vec<&str> = snapshot.probes.iter().map(|p| p.from.as_str()).collect();
    senders.dedup();
    for from in senders {
        let probes: Vec<&Probe> = snapshot.probes.iter().filter(|p| p.from == from).collect();
        let silent: Vec<&&Probe> = probes
            .iter()
            .filter(|p| p.outcome == Outcome::Silent)
            .collect();
        let skipped: Vec<String> = probes
            .iter()
            .filter_map(|p| match &p.outcome {
                Outcome::NotProbed(why) => Some(format!("{}: not probed: {why}", label(p))),
                _ => None,
            })
            .collect();
        let reached = probes
            .iter()
            .filter(|p| p.outcome == Outcome::Reached)
            .count();
        let mut evidence: Vec<String> = silent
            .iter()
            .map(|p| match p.proto.as_str() {
                "tcp" => format!("{}: no answer to a connect", label(p)),
                _ => format!("{}: no datagram arrived", label(p)),
            })
            .collect();
        evidence.push(format!("{reached} of {} probes got through", probes.len()));
        evidence.extend(skipped);
        let subject = Subject::Vm(from.to_string());
        let finding = if !silent.is_empty() {
            let mut ports: Vec<String> = silent
                .iter()
                .map(|p| format!("{} {}/{}", p.to, p.port, p.proto.as_str()))
                .collect();
            ports.dedup();
            let finding = Finding::new(
                ID,
                subject,
                Verdict::Fail,
                format!(
                    "cannot reach {}: a swarm would not form, or its overlay networks would carry nothing",
                    ports.join(", ")
                ),
            )
            .evidence(evidence);
            match (&fix, bridge) {
                (Some(action), Some(bridge)) => finding.with_fix(Fix::automatic(
                    format!("accept forwarding within {bridge} (VM to VM) at the top of the host's filter rules"),
                    action.clone(),
                )),
                _ => finding.with_fix(Fix::manual(
                    "let 2377/tcp, 7946/tcp+udp and 4789/udp through between the VMs: the host's FORWARD rules for their bridge, and any firewall in the guests",
                )),
            }
        } else if reached == 0 {
            Finding::new(
                ID,
                subject,
                Verdict::Skip,
                "not checked: no probe could be made".into(),
            )
            .evidence(evidence)
        } else {
            Finding::new(
                ID,
                subject,
                Verdict::Ok,
                "reaches the other VMs on 2377/tcp, 7946/tcp+udp and 4789/udp".into(),
            )
            .evidence(evidence)
        };
        findings.push(on_bridge(finding, bridge));
    }
    for (vm, why) in &snapshot.unreadable {
        let finding = Finding::skipped(ID, Subject::Vm(vm.clone()), why);
        findings.push(on_bridge(finding, bridge));
    }
    findings
}

/// The finding tied to the VMs' bridge when it is known (the preflight refuses by bridge).
fn on_bridge(finding: Finding, bridge: Option<&str>) -> Finding {
    match bridge {
        Some(b) => finding.about_bridge(b),
        None => finding,
    }
}

fn label(p: &Probe) -> String {
    format!("→ {} {}/{}", p.to, p.port, p.proto.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::snapshot::reach::Proto;

    fn probe(from: &str, to: &str, proto: Proto, port: u16, outcome: Outcome) -> Probe {
        Probe {
            from: from.into(),
            to: to.into(),
            proto,
            port,
            outcome,
        }
    }

    fn accept() -> FixAction {
        FixAction::AcceptWithinBridge {
            chain: "DOCKER-USER".into(),
            bridge: "virbr7".into(),
        }
    }

    #[test]
    fn a_dropped_vxlan_port_fails_with_the_bridge_fix() {
        let snapshot = ReachSnapshot {
            probes: vec![
                probe("a", "b", Proto::Tcp, 2377, Outcome::Reached),
                probe("a", "b", Proto::Udp, 4789, Outcome::Silent),
                probe("b", "a", Proto::Tcp, 2377, Outcome::Reached),
                probe("b", "a", Proto::Udp, 4789, Outcome::Reached),
            ],
            unreadable: vec![],
        };
        let found = verdict(&snapshot, Some("virbr7"), Some(accept()));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert_eq!(found[0].subject, Subject::Vm("a".into()));
        assert!(
            found[0].summary.contains("b 4789/udp"),
            "{}",
            found[0].summary
        );
        assert!(
            found[0].evidence[0].contains("no datagram"),
            "{:?}",
            found[0].evidence
        );
        assert_eq!(found[0].fix.as_ref().unwrap().action, Some(accept()));
        assert_eq!(found[0].bridge.as_deref(), Some("virbr7"));
        assert_eq!(found[1].verdict, Verdict::Ok);
    }

    #[test]
    fn without_a_host_fix_the_finding_says_what_to_open() {
        let snapshot = ReachSnapshot {
            probes: vec![probe("a", "b", Proto::Tcp, 7946, Outcome::Silent)],
            unreadable: vec![],
        };
        let found = verdict(&snapshot, None, None);
        let fix = found[0].fix.as_ref().unwrap();
        assert!(fix.action.is_none());
        assert!(fix.description.contains("4789/udp"), "{}", fix.description);
    }

    #[test]
    fn ports_in_use_by_a_swarm_are_said_not_probed_and_unreachable_vms_skip() {
        let snapshot = ReachSnapshot {
            probes: vec![
                probe("a", "b", Proto::Tcp, 2377, Outcome::Reached),
                probe(
                    "a",
                    "b",
                    Proto::Udp,
                    4789,
                    Outcome::NotProbed("4789/udp is in use in b".into()),
                ),
            ],
            unreadable: vec![("c".into(), "no perl in the VM".into())],
        };
        let found = verdict(&snapshot, Some("virbr7"), Some(accept()));
        assert_eq!(found[0].verdict, Verdict::Ok);
        assert!(found[0].evidence.iter().any(|e| e.contains("not probed")));
        assert_eq!(found[1].verdict, Verdict::Skip);
        assert!(found[1].summary.contains("no perl"));
    }
}
