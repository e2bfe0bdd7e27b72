//! A read-only disk image plugged into a running VM for a while: how strata hands a guest a
//! set of files (an engine bundle) without SSH encryption in the way. The guest finds it as
//! /dev/disk/by-id/virtio-SERIAL. The image is shared between VMs and never relabelled, so it
//! must be world-readable.

use crate::error::{Error, Result};
use crate::vm::xml;
use std::path::Path;
use virt::connect::Connect;

/// Far down the virtio names, away from vda (root) and vdb (data disk).
const TARGET: &str = "vdz";

/// The libvirt XML that plugs `path` in read-only under `serial`.
pub fn disk_xml(path: &Path, serial: &str) -> Result<String> {
    xml::render(
        xml::READONLY_DISK,
        &serde_json::json!({ "path": path, "serial": serial, "target": TARGET }),
    )
}

/// Plug `image` into the running `vm` (not into its persistent definition: a reboot drops it).
/// The same image left plugged in by an interrupted run stays (the guest may still be reading
/// it); another image under this serial is taken out first.
pub fn attach_readonly(conn: &Connect, vm: &str, image: &Path, serial: &str) -> Result<()> {
    let dom = conn.lookup_domain_by_name(vm)?;
    let current = dom.xml_desc(0)?;
    if current.contains(&format!("<serial>{serial}</serial>")) {
        if current.contains(&image.display().to_string()) {
            return Ok(());
        }
        detach(conn, vm, image, serial)?;
    }
    dom.attach_device_flags(&disk_xml(image, serial)?, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
        .map_err(|e| Error::from(e).context(format!("plugging {} into '{vm}'", image.display())))?;
    Ok(())
}

/// Unplug it again (the guest must have unmounted it); already unplugged is fine.
pub fn detach(conn: &Connect, vm: &str, image: &Path, serial: &str) -> Result<()> {
    let dom = conn.lookup_domain_by_name(vm)?;
    if !dom
        .xml_desc(0)?
        .contains(&format!("<serial>{serial}</serial>"))
    {
        return Ok(());
    }
    dom.detach_device_flags(&disk_xml(image, serial)?, virt::sys::VIR_DOMAIN_AFFECT_LIVE)
        .map_err(|e| {
            Error::from(e).context(format!("unplugging {} from '{vm}'", image.display()))
        })?;
    Ok(())
}
