//! A VM's data disk: one plain qcow2 volume in strata's pool (vm_NAME_data.qcow2), hot-plugged
//! as vdb with the serial `strata-data`, so the guest finds it as
//! /dev/disk/by-id/virtio-strata-data whatever order the kernel probes disks in. Docker's
//! data-root goes on it. `vm destroy` deletes it with the VM.

use crate::error::{Error, Result};
use crate::units::format_size;
use crate::vm::record::{VmVolume, VolumeRole};
use crate::vm::{domain, pool, xml};
use std::path::PathBuf;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;

/// The serial the guest sees; also the name under /dev/disk/by-id (prefixed `virtio-`).
pub const SERIAL: &str = "strata-data";
pub const GUEST_DEVICE: &str = "/dev/disk/by-id/virtio-strata-data";

/// Below this, neither LVM+xfs nor btrfs leaves Docker room for more than a toy image.
pub const MIN_SIZE: u64 = 1 << 30;

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
    let todo = survey(conn, pool, vm, capacity)?;
    let (dom, _) = domain::lookup(conn, vm)?;
    // Recorded before it is made or taken up: whatever happens next, `vm destroy` knows it. A
    // disk of this name without a record is the one a destroy that kept the data left behind
    // (`plan rebuild`, `plan destroy` without --volumes): this VM's name, in strata's pool.
    if let Some(record) = &todo.record {
        domain::set_record(&dom, record)?;
    }
    let (volume, created) = match pool::find_volume(pool, &todo.volume) {
        Some(volume) => (volume, false),
        None => {
            let xml_text = xml::render(
                xml::DATA_VOLUME,
                &serde_json::json!({ "name": todo.volume, "capacity": capacity }),
            )?;
            (
                virt::storage_vol::StorageVol::create_xml(pool, &xml_text, 0)?,
                true,
            )
        }
    };
    let path = PathBuf::from(volume.path()?);
    if todo.attach {
        let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
        if todo.live {
            flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
        }
        if let Err(e) = dom.attach_device_flags(&disk_xml(&path)?, flags) {
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

/// What `ensure` has to do for `vm`'s data disk, found without changing anything.
#[derive(Debug, Clone)]
pub struct DiskWork {
    /// The volume's name in strata's pool.
    pub volume: String,
    /// It is not in the pool yet.
    pub create: bool,
    /// The VM's record with the disk added, when it does not list it yet.
    pub record: Option<crate::vm::record::VmRecord>,
    /// It is not attached yet.
    pub attach: bool,
    /// The VM runs: the attach is live too.
    pub live: bool,
}

/// The libvirt XML that attaches the disk at `path` as vdb.
pub fn disk_xml(path: &std::path::Path) -> Result<String> {
    xml::render(
        xml::DATA_DISK,
        &serde_json::json!({ "path": path, "serial": SERIAL }),
    )
}

/// Check `capacity` against the rules and any disk `vm` already has, and say what is left to
/// do; changes nothing.
pub fn survey(conn: &Connect, pool: &StoragePool, vm: &str, capacity: u64) -> Result<DiskWork> {
    if capacity < MIN_SIZE {
        return Err(Error::bad_input(format!(
            "--data-disk {}: too small for Docker's data (at least {})",
            format_size(capacity),
            format_size(MIN_SIZE)
        ))
        .with_hint("give e.g. --data-disk 20G (the volume is thin: it takes what Docker writes)"));
    }
    let (dom, info) = domain::lookup(conn, vm)?;
    // A disk made by an earlier run keeps the name it was recorded under.
    let name = info
        .record
        .volume(VolumeRole::Data)
        .map(str::to_string)
        .unwrap_or_else(|| pool::vm_volume_name(vm, VolumeRole::Data));
    let record = info.record.volume(VolumeRole::Data).is_none().then(|| {
        let mut record = info.record.clone();
        record.volumes.push(VmVolume {
            role: VolumeRole::Data,
            name: name.clone(),
        });
        record
    });
    let existing = match pool::find_volume(pool, &name) {
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
            Some(volume.path()?)
        }
        None => None,
    };
    let attached = match &existing {
        Some(path) => dom.xml_desc(0)?.contains(path.as_str()),
        None => false,
    };
    Ok(DiskWork {
        volume: name,
        create: existing.is_none(),
        record,
        attach: !attached,
        live: dom.is_active()?,
    })
}

/// The capacity of `vm`'s data disk when it has one (recorded, and in the pool).
pub fn existing_capacity(conn: &Connect, pool: &StoragePool, vm: &str) -> Result<Option<u64>> {
    let (_, info) = domain::lookup(conn, vm)?;
    let Some(name) = info.record.volume(VolumeRole::Data) else {
        return Ok(None);
    };
    pool::find_volume(pool, name)
        .map(|v| v.info().map(|i| i.capacity))
        .transpose()
        .map_err(Error::from)
}
