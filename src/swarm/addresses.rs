//! The address ranges a swarm gets, chosen away from everything the host and the guests
//! already use. Docker's own default for swarm-scoped networks is all of 10.0.0.0/8 in /24s
//! (the ingress network takes 10.0.0.0/24), which collides with libvirt and office networks
//! (conflicts.md ADDR-*); strata gives each swarm one /16 of 10.0.0.0/8 that overlaps
//! nothing in use, cut into /24s. And the overlay networks' MTU: VXLAN adds 50 bytes to
//! every frame, so an overlay on a network of MTU M carries M - 50. Pure: the caller gathers
//! what is taken.

use crate::error::{Error, Result};
use crate::vm::network::overlap;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Overlay networks get /24s from the pool: 256 of them per swarm.
pub const SUBNET_SIZE: u8 = 24;

/// What VXLAN (outer Ethernet, IP, UDP and VXLAN headers) takes from each frame.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The smallest MTU an IPv4 network must carry (RFC 791: 576-byte datagrams).
const MIN_MTU: u32 = 576;

/// The first /16 of 10.0.0.0/8 that overlaps nothing in `taken`. The upper half is tried
/// first: office and lab networks crowd the low 10.x blocks.
pub fn choose_pool(taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    (128u8..=255)
        .chain(0..128)
        .map(|second| Ipv4Net::new(Ipv4Addr::new(10, second, 0, 0), 16).expect("a valid /16"))
        .find(|block| !taken.iter().any(|t| overlap(*block, *t)))
        .ok_or_else(|| {
            Error::failed("no /16 of 10.0.0.0/8 is free for the swarm's networks: the host's and the guests' networks cover it all")
                .with_hint("free a 10.x.0.0/16 block (a libvirt network, a route or a Docker network)")
        })
}

/// How often a swarm's nodes report to its managers. Docker's 5 s suits guests on KVM; a
/// node that misses its beats for about three periods is marked down and its tasks go
/// elsewhere, and a TCG guest (10-50x slower, its CPU shared with other guests) is slow to
/// answer anything under load: in a three-VM swarm bringing a stack up, the guests' load
/// stayed above 5 on two vCPUs, gossip between them timed out again and again and a task was
/// moved off a busy worker. A precaution, not measured on its own: slower beats cost only a
/// slower reaction to a node that is gone (about a minute).
pub fn heartbeat(emulated: bool) -> std::time::Duration {
    std::time::Duration::from_secs(if emulated { 20 } else { 5 })
}

/// The MTU of overlay networks across VMs whose network carries `network_mtu`.
pub fn overlay_mtu(network_mtu: u32) -> Result<u32> {
    match network_mtu.checked_sub(VXLAN_OVERHEAD) {
        Some(mtu) if mtu >= MIN_MTU => Ok(mtu),
        _ => Err(Error::bad_input(format!(
            "the VMs' network carries frames of {network_mtu} bytes: too few for VXLAN's {VXLAN_OVERHEAD} bytes of headers and {MIN_MTU} of IPv4"
        ))
        .with_hint("give the libvirt network a larger MTU (<mtu size='1500'/>)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn the_upper_half_of_ten_first() {
        assert_eq!(choose_pool(&[]).unwrap(), "10.128.0.0/16".parse().unwrap());
    }

    #[test]
    fn blocks_touched_by_any_network_are_skipped() {
        // A libvirt network inside 10.128, a route over 10.129-10.131, Docker's 172.17.
        let taken = nets(&[
            "10.128.7.0/24",
            "10.129.0.0/16",
            "10.130.0.0/15",
            "172.17.0.0/16",
        ]);
        assert_eq!(
            choose_pool(&taken).unwrap(),
            "10.132.0.0/16".parse().unwrap()
        );
    }

    #[test]
    fn a_network_covering_ten_leaves_nothing() {
        let err = choose_pool(&nets(&["10.0.0.0/8"])).unwrap_err();
        assert!(err.message().contains("no /16"), "{err}");
        // The whole upper half taken: the lower half is used.
        assert_eq!(
            choose_pool(&nets(&["10.128.0.0/9"])).unwrap(),
            "10.0.0.0/16".parse().unwrap()
        );
    }

    #[test]
    fn the_overlay_mtu_leaves_room_for_vxlan() {
        assert_eq!(overlay_mtu(1500).unwrap(), 1450);
        assert_eq!(overlay_mtu(9000).unwrap(), 8950);
        assert_eq!(overlay_mtu(626).unwrap(), 576);
        assert!(overlay_mtu(600).is_err());
        assert!(overlay_mtu(10).is_err());
    }
}
