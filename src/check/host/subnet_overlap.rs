//! net.subnet-overlap (ADDR-1, ADDR-2): libvirt networks, Docker networks, Docker's address
//! pools and the host's routes must not overlap. Neither side notices a partial overlap: libvirt
//! only refuses an exact route match, and Docker only skips ranges with an on-link route at
//! the moment it creates a network — so Docker's built-in 192.168.112.0/20 pool covers
//! libvirt's default 192.168.122.0/24 whenever that network is down.

use crate::check::{Finding, Fix, HostCheck, HostSnapshot, Subject, Verdict};
use ipnet::Ipv4Net;

const ID: &str = "net.subnet-overlap";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "libvirt networks (API), Docker networks and default-address-pools (API), `ip -j -4 route show`",
    verdict,
};

/// A subnet and who uses it.
#[derive(Debug, Clone)]
struct Owned {
    owner: String,
    subnet: Ipv4Net,
    /// The device whose route this is (routes of libvirt's and Docker's own bridges are the
    /// same networks again and are left out).
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Libvirt,
    Docker,
    Route,
}

fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Docker's built-in pools (moby ipamutils): 172.17-172.31 as /16s, then 192.168.0.0/16 as /20s.
/// Returns the block that Docker would hand out and that overlaps `subnet`, if any.
fn builtin_block(subnet: Ipv4Net) -> Option<Ipv4Net> {
    let private_172: Ipv4Net = "172.16.0.0/12".parse().ok()?;
    let private_192: Ipv4Net = "192.168.0.0/16".parse().ok()?;
    let first_172: Ipv4Net = "172.17.0.0/16".parse().ok()?;
    let block = |prefix: u8| {
        Ipv4Net::new(subnet.network(), prefix)
            .ok()
            .map(|n| n.trunc())
    };
    if private_192.contains(&subnet.network()) {
        block(20)
    } else if private_172.contains(&subnet.network()) && subnet.network() >= first_172.network() {
        block(16)
    } else {
        None
    }
}

fn owned(facts: &HostSnapshot) -> Vec<Owned> {
    let mut list = Vec::new();
    let mut own_devices: Vec<String> = Vec::new();
    for n in facts.libvirt_networks.iter().flatten() {
        if let Some(subnet) = n.subnet {
            let state = if n.active { "" } else { ", inactive" };
            list.push(Owned {
                owner: format!("libvirt network '{}' ({subnet}{state})", n.name),
                subnet,
                kind: Kind::Libvirt,
            });
        }
        own_devices.extend(n.bridge.clone());
    }
    for d in facts.docker.iter().flat_map(|d| d.networks.iter()) {
        for subnet in &d.subnets {
            list.push(Owned {
                owner: format!("Docker network '{}' ({subnet})", d.name),
                subnet: *subnet,
                kind: Kind::Docker,
            });
        }
        own_devices.extend(d.bridge.clone());
    }
    for r in facts.routes.iter().flatten() {
        if !own_devices.contains(&r.dev) {
            list.push(Owned {
                owner: format!("host route {} dev {}", r.subnet, r.dev),
                subnet: r.subnet,
                kind: Kind::Route,
            });
        }
    }
    list
}

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let mut unread: Vec<&str> = Vec::new();
    for fact in [
        facts.libvirt_networks.as_ref().err(),
        facts.docker.as_ref().err(),
        facts.routes.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        unread.push(fact.message());
    }
    let list = owned(facts);
    let mut findings = Vec::new();
    for (i, a) in list.iter().enumerate() {
        for b in &list[i + 1..] {
            // Two routes overlapping is the host's own business, not a libvirt/Docker conflict.
            if a.kind == b.kind && a.kind == Kind::Route || !overlap(a.subnet, b.subnet) {
                continue;
            }
            let exact = a.subnet == b.subnet;
            let consequence = if exact {
                "libvirt refuses to start a network whose route already exists (\"Network is already in use by interface\")"
            } else {
                "hosts in the overlap are reachable from only one side"
            };
            findings.push(
                Finding::new(
                    ID,
                    Subject::Host,
                    Verdict::Fail,
                    format!("{} overlaps {}", a.owner, b.owner),
                )
                .evidence([consequence.to_string()])
                .with_fix(Fix::manual(
                    "move one of them: recreate the Docker network with a disjoint --subnet, or redefine the libvirt network (`strata net create` refuses overlapping subnets)",
                )),
            );
        }
    }
    let pools: Vec<(Ipv4Net, u32)> = facts
        .docker
        .as_ref()
        .map(|d| d.address_pools.clone())
        .unwrap_or_default();
    if facts.docker.is_ok() {
        for l in list.iter().filter(|o| o.kind == Kind::Libvirt) {
            let taken_by_docker = list
                .iter()
                .any(|d| d.kind == Kind::Docker && overlap(d.subnet, l.subnet));
            if taken_by_docker {
                continue;
            }
            let risky = if pools.is_empty() {
                builtin_block(l.subnet)
                    .map(|block| format!("Docker's built-in address pool {block}"))
            } else {
                pools
                    .iter()
                    .find(|(base, _)| overlap(*base, l.subnet))
                    .map(|(base, size)| {
                        format!("Docker's default-address-pools entry {base} (size /{size})")
                    })
            };
            if let Some(pool) = risky {
                findings.push(
                    Finding::new(
                        ID,
                        Subject::Host,
                        Verdict::Warn,
                        format!("{pool} covers {}", l.owner),
                    )
                    .evidence(["Docker skips a range only while an on-link route to it exists when it creates a network; with the libvirt network down the next Docker network can take it".to_string()])
                    .with_fix(Fix::manual(
                        "set \"default-address-pools\" (and \"bip\") in /etc/docker/daemon.json to ranges disjoint from every libvirt network, then restart Docker",
                    )),
                );
            }
        }
    }
    if findings.is_empty() {
        let mut f = Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            format!("{} subnets, none overlapping", list.len()),
        )
        .evidence(list.iter().map(|o| o.owner.clone()));
        if !unread.is_empty() {
            f = Finding::new(
                ID,
                Subject::Host,
                Verdict::Skip,
                format!("not all subnets could be read: {}", unread.join("; ")),
            )
            .evidence(list.iter().map(|o| o.owner.clone()));
        }
        findings.push(f);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;
    use crate::host::docker::{DockerNetwork, HostDocker};

    fn docker(networks: Vec<DockerNetwork>, pools: Vec<(Ipv4Net, u32)>) -> HostDocker {
        HostDocker {
            server_version: "20.10.24+dfsg1".into(),
            networks,
            address_pools: pools,
            daemon_json: None,
        }
    }

    fn net(name: &str, bridge: &str, subnet: &str) -> DockerNetwork {
        DockerNetwork {
            name: name.into(),
            bridge: Some(bridge.into()),
            subnets: vec![subnet.parse().unwrap()],
        }
    }

    #[test]
    fn docker_slash_20_over_libvirt_default_fails_naming_both() {
        let mut facts = with_libvirt_network(
            host_facts(DOCKER_20_10),
            "default",
            "virbr0",
            "nat",
            "192.168.122.0/24",
        );
        facts.docker = Ok(docker(
            vec![
                net("bridge", "docker0", "172.17.0.0/16"),
                net("clash", "br-0123456789ab", "192.168.112.0/20"),
            ],
            vec![],
        ));
        let found = verdict(&facts);
        let fails: Vec<_> = found
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .collect();
        assert_eq!(fails.len(), 1, "{found:?}");
        assert!(fails[0].summary.contains("'default'") && fails[0].summary.contains("'clash'"));
        assert!(!found.iter().any(|f| f.verdict == Verdict::Warn));
    }

    #[test]
    fn builtin_pools_warn_about_the_libvirt_default_network() {
        let mut facts = with_libvirt_network(
            host_facts(DOCKER_20_10),
            "default",
            "virbr0",
            "nat",
            "192.168.122.0/24",
        );
        facts.docker = Ok(docker(
            vec![net("bridge", "docker0", "172.17.0.0/16")],
            vec![],
        ));
        let found = verdict(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Warn);
        assert!(
            found[0].summary.contains("192.168.112.0/20"),
            "{}",
            found[0].summary
        );
        // Configured pools elsewhere: nothing to say.
        facts.docker = Ok(docker(vec![], vec![("10.200.0.0/16".parse().unwrap(), 24)]));
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Ok);
    }

    #[test]
    fn exact_match_names_libvirts_refusal() {
        let mut facts = with_libvirt_network(
            host_facts(DOCKER_20_10),
            "t",
            "virbr3",
            "isolated",
            "10.251.5.0/24",
        );
        facts.docker = Ok(docker(
            vec![net("same", "br-aaaaaaaaaaaa", "10.251.5.0/24")],
            vec![],
        ));
        let found = verdict(&facts);
        assert!(found[0].evidence[0].contains("already in use"));
    }

    #[test]
    fn own_bridge_routes_are_not_counted_twice() {
        let mut facts = with_libvirt_network(
            host_facts(DOCKER_20_10),
            "t",
            "virbr3",
            "isolated",
            "10.251.5.0/24",
        );
        facts.routes = Ok(crate::host::routes::parse_routes(
            r#"[{"dst":"10.251.5.0/24","dev":"virbr3"},{"dst":"172.17.0.0/16","dev":"docker0"}]"#,
        )
        .unwrap());
        facts.docker = Ok(docker(
            vec![net("bridge", "docker0", "172.17.0.0/16")],
            vec![("10.200.0.0/16".parse().unwrap(), 24)],
        ));
        let found = verdict(&facts);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Ok, "{found:?}");
    }
}
