//! Choosing a VM's MAC and IP before boot: addresses outside the network's dynamic DHCP range
//! first, never the network, broadcast or gateway address, never one already reserved or
//! still leased; MACs in QEMU's 52:54:00 block, never one already used. A VM that replaces
//! another of its name (a plan's rebuild) gets the old one's MAC and IP back while nothing
//! else holds them. The choice itself is pure; `choose_address` reads what libvirt knows and
//! makes it.

use crate::error::{Error, Result};
use crate::vm::domain;
use crate::vm::network::{self, DhcpHost};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use virt::connect::Connect;

/// The MAC and IP of a VM that is being replaced, to give its successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAddress {
    pub mac: String,
    pub ip: Ipv4Addr,
}

/// A free address and a free MAC for `vm` on `network_name`, from the network's reservations
/// and live leases and the MACs of strata's VMs; `keep` when it is still free. Nothing is
/// reserved: the caller does that, under strata's state lock so that parallel creates cannot
/// pick the same one.
pub fn choose_address(
    conn: &Connect,
    network_name: &str,
    vm: &str,
    keep: Option<&KeptAddress>,
) -> Result<DhcpHost> {
    let (net, info) = network::lookup(conn, network_name)?;
    let (subnet, gateway) = info
        .subnet
        .zip(info.gateway)
        .ok_or_else(|| Error::bad_input(format!("network '{network_name}' has no IPv4 subnet")))?;
    let used_macs: Vec<String> = domain::list(conn)?
        .into_iter()
        .map(|vm| vm.record.mac)
        .chain(info.hosts.iter().map(|h| h.mac.clone()))
        .collect();
    let leases = network::leases(&net)?;
    let space = AddressSpace {
        subnet,
        gateway,
        dynamic: info.dynamic,
        taken: info
            .hosts
            .iter()
            .map(|h| h.ip)
            .chain(leases.iter().map(|(_, ip)| *ip))
            .collect(),
    };
    if let Some(keep) = keep.filter(|k| still_free(k, &space, &info.hosts, &leases, &used_macs)) {
        return Ok(DhcpHost {
            mac: keep.mac.clone(),
            name: vm.to_string(),
            ip: keep.ip,
        });
    }
    Ok(DhcpHost {
        mac: choose_mac(&used_macs, os_random_bytes),
        name: vm.to_string(),
        ip: choose_ip(&space, network_name)?,
    })
}

/// Whether `keep` may be given again: its IP a host address of the subnet other than the
/// gateway, reserved for no one, leased to no other MAC (the old VM's own lease may outlive
/// it), and its MAC used by no VM and no reservation.
pub fn still_free(
    keep: &KeptAddress,
    space: &AddressSpace,
    reserved: &[DhcpHost],
    leases: &[(String, Ipv4Addr)],
    used_macs: &[String],
) -> bool {
    let same_mac = |mac: &str| mac.eq_ignore_ascii_case(&keep.mac);
    space.subnet.contains(&keep.ip)
        && keep.ip != space.subnet.network()
        && keep.ip != space.subnet.broadcast()
        && keep.ip != space.gateway
        && !reserved.iter().any(|h| h.ip == keep.ip || same_mac(&h.mac))
        && !leases
            .iter()
            .any(|(mac, ip)| *ip == keep.ip && !same_mac(mac))
        && !used_macs.iter().any(|m| same_mac(m))
}

/// What the network looks like to the allocator.
#[derive(Debug, Clone)]
pub struct AddressSpace {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The dynamic range (start, end), inclusive.
    pub dynamic: Option<(Ipv4Addr, Ipv4Addr)>,
    /// Addresses already reserved (DHCP hosts) or leased.
    pub taken: Vec<Ipv4Addr>,
}

/// The first free address, preferring addresses outside the dynamic range so that no
/// dynamic lease can hold the one we reserve.
pub fn choose_ip(space: &AddressSpace, network_name: &str) -> Result<Ipv4Addr> {
    let in_dynamic = |ip: Ipv4Addr| {
        space
            .dynamic
            .map(|(start, end)| ip >= start && ip <= end)
            .unwrap_or(false)
    };
    let free = |ip: &Ipv4Addr| *ip != space.gateway && !space.taken.contains(ip);
    let hosts = || space.subnet.hosts();
    hosts()
        .filter(|ip| !in_dynamic(*ip))
        .find(free)
        .or_else(|| hosts().filter(|ip| in_dynamic(*ip)).find(free))
        .ok_or_else(|| {
            Error::failed(format!(
                "network '{network_name}' ({}) has no free address left",
                space.subnet
            ))
            .with_hint("destroy unused VMs or create a larger network with `strata net create`")
        })
}

/// A random locally administered MAC in QEMU's 52:54:00 block, not in `taken`.
pub fn choose_mac(taken: &[String], mut random_bytes: impl FnMut() -> [u8; 3]) -> String {
    loop {
        let [a, b, c] = random_bytes();
        let mac = format!("52:54:00:{a:02x}:{b:02x}:{c:02x}");
        if !taken.iter().any(|t| t.eq_ignore_ascii_case(&mac)) {
            return mac;
        }
    }
}

/// Three bytes from the operating system's random source.
pub fn os_random_bytes() -> [u8; 3] {
    use rand_core::RngCore;
    let mut bytes = [0u8; 3];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The DHCP layout strata gives a new network: gateway .1, reservations in the lower half,
/// dynamic range in the upper half.
pub fn layout(subnet: Ipv4Net) -> Result<(Ipv4Addr, Ipv4Addr, Ipv4Addr)> {
    if subnet.prefix_len() > 28 {
        return Err(
            Error::bad_input(format!("--subnet {subnet}: too small (at most /28)"))
                .with_hint("use a /24 such as 10.77.0.0/24"),
        );
    }
    let subnet = subnet.trunc();
    let first = u32::from(subnet.network());
    let last = u32::from(subnet.broadcast());
    let middle = first + (last - first) / 2 + 1;
    Ok((
        Ipv4Addr::from(first + 1),
        Ipv4Addr::from(middle),
        Ipv4Addr::from(last - 1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(taken: &[&str]) -> AddressSpace {
        AddressSpace {
            subnet: "10.77.0.0/24".parse().unwrap(),
            gateway: "10.77.0.1".parse().unwrap(),
            dynamic: Some((
                "10.77.0.128".parse().unwrap(),
                "10.77.0.254".parse().unwrap(),
            )),
            taken: taken.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn skips_gateway_and_taken_addresses() {
        assert_eq!(
            choose_ip(&space(&[]), "n").unwrap(),
            "10.77.0.2".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            choose_ip(&space(&["10.77.0.2", "10.77.0.3"]), "n").unwrap(),
            "10.77.0.4".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn uses_dynamic_range_only_when_the_rest_is_full() {
        // libvirt's own 'default' network: the range covers .2-.254.
        let mut s = space(&[]);
        s.dynamic = Some(("10.77.0.2".parse().unwrap(), "10.77.0.254".parse().unwrap()));
        s.taken = vec!["10.77.0.2".parse().unwrap()];
        assert_eq!(
            choose_ip(&s, "default").unwrap(),
            "10.77.0.3".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn full_network_is_an_error_naming_it() {
        let s = AddressSpace {
            subnet: "10.77.0.0/30".parse().unwrap(),
            gateway: "10.77.0.1".parse().unwrap(),
            dynamic: None,
            taken: vec!["10.77.0.2".parse().unwrap()],
        };
        let err = choose_ip(&s, "tiny").unwrap_err();
        assert!(err.message().contains("'tiny'"), "{err}");
    }

    #[test]
    fn a_kept_address_comes_back_only_while_nothing_else_holds_it() {
        let keep = KeptAddress {
            mac: "52:54:00:aa:bb:cc".into(),
            ip: "10.77.0.5".parse().unwrap(),
        };
        let host = |mac: &str, ip: &str| DhcpHost {
            mac: mac.into(),
            name: "other".into(),
            ip: ip.parse().unwrap(),
        };
        let lease = |mac: &str, ip: &str| (mac.to_string(), ip.parse().unwrap());
        let s = space(&[]);
        // Free, and the old VM's own lease (same MAC, any case) does not hold it.
        assert!(still_free(&keep, &s, &[], &[], &[]));
        assert!(still_free(
            &keep,
            &s,
            &[],
            &[lease("52:54:00:AA:BB:CC", "10.77.0.5")],
            &[]
        ));
        // Taken meanwhile: reserved, leased to another MAC, or its MAC in use.
        assert!(!still_free(
            &keep,
            &s,
            &[host("52:54:00:00:00:01", "10.77.0.5")],
            &[],
            &[]
        ));
        assert!(!still_free(
            &keep,
            &s,
            &[host("52:54:00:aa:bb:cc", "10.77.0.9")],
            &[],
            &[]
        ));
        assert!(!still_free(
            &keep,
            &s,
            &[],
            &[lease("52:54:00:00:00:01", "10.77.0.5")],
            &[]
        ));
        assert!(!still_free(
            &keep,
            &s,
            &[],
            &[],
            &["52:54:00:aa:bb:cc".into()]
        ));
        // Not an address this network can give.
        for ip in ["10.78.0.5", "10.77.0.1", "10.77.0.0", "10.77.0.255"] {
            let other = KeptAddress {
                ip: ip.parse().unwrap(),
                ..keep.clone()
            };
            assert!(!still_free(&other, &s, &[], &[], &[]), "{ip}");
        }
    }

    #[test]
    fn mac_avoids_taken_ones() {
        let mut draws = vec![[1, 2, 3], [1, 2, 3], [0xaa, 0xbb, 0xcc]].into_iter();
        let mac = choose_mac(&["52:54:00:01:02:03".into()], || draws.next().unwrap());
        assert_eq!(mac, "52:54:00:aa:bb:cc");
    }

    #[test]
    fn layout_splits_the_subnet() {
        let (gw, start, end) = layout("10.77.0.0/24".parse().unwrap()).unwrap();
        assert_eq!(gw.to_string(), "10.77.0.1");
        assert_eq!(start.to_string(), "10.77.0.128");
        assert_eq!(end.to_string(), "10.77.0.254");
        assert!(layout("10.77.0.0/30".parse().unwrap()).is_err());
    }
}
