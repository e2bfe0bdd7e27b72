//! Facts about a hypervisor host, one reader per source: which accelerator qemu can use
//! (accel), which user libvirt runs qemu as and what it can reach (qemu_user), Docker on the
//! host (docker), listening sockets (listeners), routes, the iptables filter table (iptables:
//! model, parser, FORWARD walker), the packet-filter back ends and nftables (nft), firewalld,
//! LSM denials (lsm) and kernel switches (sysctl); where a libvirt URI's host is, and the SSH
//! login to a remote one (remote). Readers only read; each parser is pure and
//! tested on captures from real hosts.

pub mod accel;
pub mod capacity;
pub mod docker;
pub mod firewalld;
pub mod iptables;
pub mod listeners;
pub mod lsm;
pub mod nft;
pub mod qemu_user;
pub mod remote;
pub mod routes;
pub mod runner;
pub mod sysctl;
