//! guest.mtu (MTU-1): Docker's bridges default to MTU 1500 whatever the VM's NIC has; on a
//! smaller NIC (VXLAN, VPN) large packets from containers vanish and TLS handshakes hang.

use crate::check::snapshot::guest::GuestDockerState;
use crate::check::{Finding, Fix, GuestCheck, GuestVerdict, GuestView, Verdict};

const ID: &str = "guest.mtu";

pub const CHECK: GuestCheck = GuestCheck {
    id: ID,
    reads: "the MTU of the guest's NIC (/sys/class/net), each Docker network's com.docker.network.driver.mtu option (API; absent = 1500)",
    verdict: GuestVerdict::Engine(verdict),
};

fn verdict(view: &GuestView, state: &GuestDockerState) -> Vec<Finding> {
    let who = view.subject.clone();
    let nic_mtu = view.facts.nic_mtu;
    let mut too_big = Vec::new();
    let mut evidence = vec![format!("guest NIC MTU {nic_mtu}")];
    for n in &state.networks {
        if n.driver.as_deref() != Some("bridge") {
            continue;
        }
        let mtu: u32 = n
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.driver.mtu"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500);
        let name = n.name.clone().unwrap_or_default();
        evidence.push(format!("Docker network {name}: MTU {mtu}"));
        if mtu > nic_mtu {
            too_big.push(format!("{name} ({mtu})"));
        }
    }
    if too_big.is_empty() {
        return vec![Finding::new(
            ID,
            who,
            Verdict::Ok,
            "Docker's networks fit the NIC's MTU".into(),
        )
        .evidence(evidence)];
    }
    vec![Finding::new(
        ID,
        who,
        Verdict::Fail,
        format!("Docker networks with a larger MTU than the NIC's {nic_mtu}: {}", too_big.join(", ")),
    )
    .evidence(evidence)
    .with_fix(Fix::manual(format!(
        "set \"mtu\": {nic_mtu} and \"default-network-opts\": {{\"bridge\": {{\"com.docker.network.driver.mtu\": \"{nic_mtu}\"}}}} (Docker 24+) in daemon.json, and recreate user networks with -o com.docker.network.driver.mtu={nic_mtu}"
    )))]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    fn bridge(name: &str, mtu: Option<&str>) -> bollard::models::Network {
        serde_json::from_value(serde_json::json!({
            "Name": name,
            "Driver": "bridge",
            "Options": mtu.map(|m| serde_json::json!({"com.docker.network.driver.mtu": m})).unwrap_or(serde_json::json!({}))
        }))
        .unwrap()
    }

    #[test]
    fn default_1500_on_a_1450_nic_fails() {
        let mut f = guest_facts();
        docker_mut(&mut f).networks = vec![bridge("bridge", Some("1450")), bridge("app", None)];
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Ok);
        if let Ok(g) = f.facts.as_mut() {
            g.nic_mtu = 1450;
        }
        let found = judge(&CHECK, &f);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(
            found[0].summary.contains("app (1500)"),
            "{}",
            found[0].summary
        );
    }
}
