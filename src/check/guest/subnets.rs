//! guest.subnets (ADDR-3): inside the guest, docker0 and Docker's other networks must not
//! overlap the guest's own networks, or the guest loses the route to its own LAN (or to the
//! host) as soon as Docker starts.

use crate::check::snapshot::guest::GuestDockerState;
use crate::check::{Finding, Fix, GuestCheck, GuestVerdict, GuestView, Verdict};
use ipnet::Ipv4Net;

const ID: &str = "guest.subnets";

pub const CHECK: GuestCheck = GuestCheck {
    id: ID,
    reads: "the guest's own addresses and routes (ip -4 addr/route, Docker's bridges left out), each Docker network's IPAM subnets (API)",
    verdict: GuestVerdict::Engine(verdict),
};

fn verdict(view: &GuestView, state: &GuestDockerState) -> Vec<Finding> {
    let who = view.subject.clone();
    let own = &view.facts.guest_networks;
    let mut clashes = Vec::new();
    let mut evidence = vec![format!(
        "guest networks: {}",
        own.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )];
    for n in &state.networks {
        let name = n.name.clone().unwrap_or_default();
        let subnets: Vec<Ipv4Net> = n
            .ipam
            .as_ref()
            .and_then(|i| i.config.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.subnet.as_ref()?.parse().ok())
            .collect();
        for s in subnets {
            evidence.push(format!("Docker network {name}: {s}"));
            for o in own {
                if s.contains(&o.network()) || o.contains(&s.network()) {
                    clashes.push(format!(
                        "Docker network {name} ({s}) overlaps the guest's {o}"
                    ));
                }
            }
        }
    }
    if clashes.is_empty() {
        return vec![Finding::new(
            ID,
            who,
            Verdict::Ok,
            "Docker's networks are apart from the guest's own".into(),
        )
        .evidence(evidence)];
    }
    vec![Finding::new(ID, who, Verdict::Fail, clashes.join("; "))
        .evidence(evidence)
        .with_fix(Fix::manual("re-run `strata engine install VM`: it picks bip and default-address-pools away from the guest's networks"))]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    fn network(name: &str, subnet: &str) -> bollard::models::Network {
        serde_json::from_value(serde_json::json!({
            "Name": name, "Driver": "bridge",
            "IPAM": {"Config": [{"Subnet": subnet}]}
        }))
        .unwrap()
    }

    #[test]
    fn docker0_over_the_guest_lan_fails() {
        let mut f = guest_facts();
        docker_mut(&mut f).networks = vec![network("bridge", "172.18.0.0/16")];
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Ok);
        docker_mut(&mut f).networks = vec![network("bridge", "10.250.0.0/16")];
        let found = judge(&CHECK, &f);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(found[0].summary.contains("10.250.9.0/24"));
    }
}
