//! libvirt through the `virt` crate: the connection, strata's storage pool and volumes (thin
//! clones, uploads by stream), networks with DHCP reservations, and domains carrying strata's
//! own <metadata>. Nothing here logs into a guest; that is the guest layer.

pub mod alloc;
pub mod connect;
pub mod data_disk;
pub mod domain;
pub mod hotplug;
pub mod network;
pub mod pool;
pub mod record;
pub mod remote_file;
pub mod sizing;
pub mod spec;
pub mod upload;
mod xml;

pub use connect::Libvirt;

/// XML namespaces of strata's <metadata> elements in libvirt objects.
pub const VM_METADATA_NS: &str = "https://strata.dev/xmlns/vm/1";
pub const NETWORK_METADATA_NS: &str = "https://strata.dev/xmlns/network/1";
