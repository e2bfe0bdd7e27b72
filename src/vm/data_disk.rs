//! A VM's data disk: one plain qcow2 volume in strata's pool (vm-NAME-data.qcow2), hot-plugged
//! as vdb with the serial `strata-data`, so the guest finds it as
//! /dev/disk/by-id/virtio-strata-data whatever order the kernel probes disks in. Docker's
//! data-root goes on it. `vm destroy` deletes it with the VM.

use crate::error::{Error, Result};
use crate::units::format_size;
use crate::vm::{pool, xml};
use std::path::PathBuf;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;

/// The serial the guest sees; also the name under /dev/disk/by-id (prefixed `virtio-`).
pub const SERIAL: &str = "strata-data";
pub const GUEST_DEVICE: &str = "/dev/disk/by-id/virtio-strata-data";

/// Below this, neither LVM+xfs nor btrfs leaves Docker room for more than a toy image.
pub const MIN_SIZE: u64 = 1 << 30;

pub fn volume_name(vm: &str) -> String {
    format!("vm-{vm}-data.qcow2")
}

/// What `ensure` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDisk {
    pub path: PathBuf,
    pub capacity: u64,
    /// False when the disk was already there (a re-run).
    pub created: bool,
}

/// Make sure `vm` has a data disk of `capacity` bytes, attached live and in its persistent
/// definition. An existing disk of another size is refused rather than replaced: it may
/// hold the VM's Docker data. A disk made here is deleted again if attaching it fails.
pub fn ensure(conn: &Connect, pool: &StoragePool, vm: &str, capacity: u64) -> Result<DataDisk> {
    if capacity < MIN_SIZE {
        return Err(Error::bad_input(format!(
            "--data-disk {}: too small for Docker's data (at least {})",
            format_size(capacity),
            format_size(MIN_SIZE)
        ))
        .with_hint("give e.g. --data-disk 20G (the volume is thin: it takes what Docker writes)"));
    }
    let dom = conn.lookup_domain_by_name(vm)?;
    let name = volume_name(vm);
    let (volume, created) = match pool::find_volume(pool, &name) {
        Some(volume) => {
            let existing = volume.info()?.capacity;
            if existing != capacity {
                return Err(Error::bad_input(format!(
                    "VM '{vm}' already has a data disk of {}; --data-disk asks for {}",
                    format_size(existing),
                    format_size(capacity)
                ))
                .with_hint(format!(
                    "repeat the install with --data-disk {} (strata does not resize or replace a disk that may hold data)",
                    format_size(existing)
                )));
            }
            (volume, false)
        }
        None => {
            let xml_text = xml::render(
                xml::DATA_VOLUME,
                &serde_json::json!({ "name": name, "capacity": capacity }),
            )?;
            (
                virt::storage_vol::StorageVol::create_xml(pool, &xml_text, 0)?,
                true,
            )
        }
    };
    let path = PathBuf::from(volume.path()?);
    let attached = dom.xml_desc(0)?.contains(&path.display().to_string());
    if !attached {
        let disk_xml = xml::render(
            xml::DATA_DISK,
            &serde_json::json!({ "path": path, "serial": SERIAL }),
        )?;
        let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
        if dom.is_active()? {
            flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
        }
        if let Err(e) = dom.attach_device_flags(&disk_xml, flags) {
            if created {
                let _ = volume.delete(0);
            }
            return Err(Error::from(e).context(format!("attaching the data disk to '{vm}'")));
        }
    }
    Ok(DataDisk {
        path,
        capacity,
        created,
    })
}

/// Delete a VM's data disk if it has one (the domain must be gone or stopped).
pub fn delete(pool: &StoragePool, vm: &str) -> Result<()> {
    pool::delete_vm_volume(pool, &volume_name(vm))
}
