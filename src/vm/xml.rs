//! The small XML fragments strata hands to libvirt (pool, network, volumes, data and read-only
//! disks, DHCP host): data files under libvirt-templates/, compiled in, rendered strictly.

use crate::error::Result;
use serde::Serialize;

/// A fragment under libvirt-templates/: its name (which decides escaping) and its text.
macro_rules! fragment {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../libvirt-templates/", $name)),
        )
    };
}

pub const NETWORK: (&str, &str) = fragment!("network.xml.j2");
pub const POOL: (&str, &str) = fragment!("pool.xml.j2");
pub const CLONE_VOLUME: (&str, &str) = fragment!("clone-volume.xml.j2");
pub const DATA_VOLUME: (&str, &str) = fragment!("data-volume.xml.j2");
pub const DATA_DISK: (&str, &str) = fragment!("data-disk.xml.j2");
pub const READONLY_DISK: (&str, &str) = fragment!("readonly-disk.xml.j2");
pub const DHCP_HOST: (&str, &str) = fragment!("dhcp-host.xml.j2");
pub const VM_METADATA: (&str, &str) = fragment!("vm-metadata.xml.j2");
pub const UPLOAD_VOLUME: (&str, &str) = fragment!("upload-volume.xml.j2");

pub fn render(template: (&str, &str), context: &impl Serialize) -> Result<String> {
    crate::template::render_str(template.0, template.1, context)
}
