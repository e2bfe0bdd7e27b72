//! The address ranges Docker gets inside a guest: docker0's `bip` and the
//! `default-address-pools` its user networks are cut from. Docker's defaults (172.17.0.0/16
//! and pools over 172.17-31 and 192.168/16) can shadow the guest's own network or a libvirt
//! network on the host (conflicts.md ADDR-*): strata pins both to /16 blocks in 172.16/12 that
//! overlap neither. Pure: the caller gathers what is taken.

use crate::error::{Error, Result};
use crate::vm::network::overlap;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// One entry of `default-address-pools`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    pub base: String,
    pub size: u8,
}

/// docker0's address with its prefix, and the pools for user networks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerRanges {
    /// Gateway address with prefix, as daemon.json's `bip` wants it: "172.17.0.1/24".
    pub bip: String,
    pub address_pools: Vec<AddressPool>,
}

impl DockerRanges {
    /// The network docker0 will be on.
    pub fn bridge_subnet(&self) -> Option<Ipv4Net> {
        self.bip.parse::<Ipv4Net>().ok().map(|n| n.trunc())
    }
}

/// User networks get /24s: 256 of them per /16 pool.
const POOL_PREFIX: u8 = 24;

/// Pick the first two /16 blocks of 172.17-31 (where Docker's own defaults live) that
/// overlap nothing in `taken`: the first carries docker0 (its first /24), the second the
/// pools.
pub fn choose(taken: &[Ipv4Net]) -> Result<DockerRanges> {
    let free: Vec<Ipv4Net> = (17u8..=31)
        .map(|second| Ipv4Net::new(Ipv4Addr::new(172, second, 0, 0), 16).expect("valid /16"))
        .filter(|block| !taken.iter().any(|t| overlap(*block, *t)))
        .take(2)
        .collect();
    let [bridge, pools] = free[..] else {
        return Err(Error::failed(
            "no two free /16 blocks in 172.16.0.0/12 for Docker's bridge and address pools: the guest's and the host's networks take them",
        )
        .with_hint("free a 172.16-31.x.x network, or give the guest networks outside 172.16.0.0/12"));
    };
    let gateway = Ipv4Addr::from(u32::from(bridge.network()) + 1);
    Ok(DockerRanges {
        bip: format!("{gateway}/{POOL_PREFIX}"),
        address_pools: vec![AddressPool {
            base: pools.to_string(),
            size: POOL_PREFIX,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn nothing_taken_gives_dockers_own_start() {
        let r = choose(&[]).unwrap();
        assert_eq!(r.bip, "172.17.0.1/24");
        assert_eq!(
            r.address_pools,
            vec![AddressPool {
                base: "172.18.0.0/16".into(),
                size: 24
            }]
        );
        assert_eq!(r.bridge_subnet(), Some("172.17.0.0/24".parse().unwrap()));
    }

    #[test]
    fn skips_blocks_that_guest_or_host_networks_touch() {
        // A guest on 172.17.5.0/24 and a libvirt network covering 172.18-19.
        let r = choose(&nets(&["172.17.5.0/24", "172.18.0.0/15", "10.250.9.0/24"])).unwrap();
        assert_eq!(r.bip, "172.20.0.1/24");
        assert_eq!(r.address_pools[0].base, "172.21.0.0/16");
    }

    #[test]
    fn a_wide_network_covering_the_blocks_is_seen() {
        // 172.16.0.0/12 itself covers every candidate.
        let err = choose(&nets(&["172.16.0.0/12"])).unwrap_err();
        assert!(err.message().contains("no two free"), "{err}");
        // One free block is not enough either.
        let mut taken: Vec<Ipv4Net> = (17u8..=31)
            .map(|b| format!("172.{b}.0.0/16").parse().unwrap())
            .collect();
        assert!(choose(&taken).is_err());
        taken.pop();
        assert!(choose(&taken).is_err());
        taken.pop();
        let r = choose(&taken).unwrap();
        assert_eq!(r.bip, "172.30.0.1/24");
        assert_eq!(r.address_pools[0].base, "172.31.0.0/16");
    }
}
