//! The small XML fragments strata hands to libvirt (pool, network, volumes, data and read-only disks, DHCP host): data
//! files under libvirt-templates/, compiled in, rendered strictly.

use crate::error::Result;
use serde::Serialize;

pub const NETWORK: (&str, &str) = (
    "network.xml.j2",
    include_str!("../../libvirt-templates/network.xml.j2"),
);
pub const POOL: (&str, &str) = (
    "pool.xml.j2",
    include_str!("../../libvirt-templates/pool.xml.j2"),
);
pub const CLONE_VOLUME: (&str, &str) = (
    "clone-volume.xml.j2",
    include_str!("../../libvirt-templates/clone-volume.xml.j2"),
);
pub const DATA_VOLUME: (&str, &str) = (
    "data-volume.xml.j2",
    include_str!("../../libvirt-templates/data-volume.xml.j2"),
);
pub const DATA_DISK: (&str, &str) = (
    "data-disk.xml.j2",
    include_str!("../../libvirt-templates/data-disk.xml.j2"),
);
pub const READONLY_DISK: (&str, &str) = (
    "readonly-disk.xml.j2",
    include_str!("../../libvirt-templates/readonly-disk.xml.j2"),
);
pub const DHCP_HOST: (&str, &str) = (
    "dhcp-host.xml.j2",
    include_str!("../../libvirt-templates/dhcp-host.xml.j2"),
);

pub fn render(template: (&str, &str), context: &impl Serialize) -> Result<String> {
    crate::template::render_str(template.0, template.1, context)
}
