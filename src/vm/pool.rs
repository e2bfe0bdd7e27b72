//! strata's storage pool (a directory pool) and its volumes: read-only template volumes and
//! thin qcow2 clones whose <backingStore> is a template. Clones are made through the libvirt
//! storage API; a template volume is never opened for writing.

use crate::error::{Error, Result};
use crate::state::Paths;
use crate::vm::record::VolumeRole;
use crate::vm::xml;
use crate::vm::Libvirt;
use std::path::{Path, PathBuf};
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;

/// Volume name of a template image.
pub fn template_volume_name(template: &str) -> String {
    format!("template-{template}.qcow2")
}

/// The name of `vm`'s volume with `role`: `vm_NAME.qcow2`, `vm_NAME_data.qcow2`,
/// `vm_NAME_seed.img`. A VM name never holds '_', so no volume of one VM can carry another's
/// name (with '-' as the separator, VM `web`'s data disk was VM `web-data`'s root disk).
pub fn vm_volume_name(vm: &str, role: VolumeRole) -> String {
    match role {
        VolumeRole::Root => format!("vm_{vm}.qcow2"),
        VolumeRole::Data => format!("vm_{vm}_data.qcow2"),
        VolumeRole::Seed => format!("vm_{vm}_seed.img"),
    }
}

/// Whether `volume` is a name strata gives `vm`'s volume with `role` (or, for the root disk,
/// the name it had before volumes had roles): a record naming anything else was not written by
/// strata for this VM, and nothing of it is removed.
pub fn is_vm_volume_name(vm: &str, role: VolumeRole, volume: &str) -> bool {
    volume == vm_volume_name(vm, role)
        || (role == VolumeRole::Root && volume == format!("vm-{vm}.qcow2"))
}

/// Find strata's pool (`paths.pool_name()` at `paths.pool_dir()`), defining, building and
/// starting it when missing or stopped.
pub fn ensure(conn: &Connect, paths: &Paths) -> Result<StoragePool> {
    ensure_at(conn, &paths.pool_name(), &paths.pool_dir())
}

/// strata's pool on a remote host: one per host, at the path a local one has by default.
pub const REMOTE_POOL_NAME: &str = "strata";
pub const REMOTE_POOL_DIR: &str = "/var/lib/strata/pool";

/// The name and folder of strata's pool on `lv`'s host: this machine's state folder's, or the
/// one every remote host has.
pub fn home(lv: &Libvirt, paths: &Paths) -> (String, PathBuf) {
    if lv.is_remote() {
        (REMOTE_POOL_NAME.to_string(), PathBuf::from(REMOTE_POOL_DIR))
    } else {
        (paths.pool_name(), paths.pool_dir())
    }
}

/// strata's pool on a remote host, defined, built and started when missing or stopped.
pub fn ensure_remote(conn: &Connect) -> Result<StoragePool> {
    ensure_at(conn, REMOTE_POOL_NAME, Path::new(REMOTE_POOL_DIR))
}

/// strata's pool on `lv`'s host, defined, built and started when missing or stopped.
pub fn ensure_home(lv: &Libvirt, paths: &Paths) -> Result<StoragePool> {
    let (name, dir) = home(lv, paths);
    ensure_at(&lv.conn(), &name, &dir)
}

/// The directory pool `name` at `dir` on `conn`'s host, defined, built and started when
/// missing or stopped.
pub fn ensure_at(conn: &Connect, name: &str, dir: &Path) -> Result<StoragePool> {
    let pool = match conn.lookup_storage_pool_by_name(name) {
        Ok(pool) => pool,
        Err(_) => {
            let xml_text = xml::render(
                xml::POOL,
                &serde_json::json!({"name": name, "path": dir.display().to_string()}),
            )?;
            let pool = conn.define_storage_pool_xml(&xml_text, 0)?;
            pool.build(0)?;
            pool.set_autostart(true)?;
            pool
        }
    };
    if !pool.is_active()? {
        pool.create(0)?;
    }
    Ok(pool)
}

/// The directory behind a directory pool, as its definition says.
pub fn dir_of(pool: &StoragePool) -> Result<std::path::PathBuf> {
    let xml_text = pool.xml_desc(0)?;
    let doc = roxmltree::Document::parse(&xml_text)
        .map_err(|e| Error::failed(format!("reading the pool's definition: {e}")))?;
    doc.descendants()
        .find(|n| n.has_tag_name("target"))
        .and_then(|t| t.children().find(|n| n.has_tag_name("path")))
        .and_then(|p| p.text())
        .map(std::path::PathBuf::from)
        .ok_or_else(|| Error::failed("the pool's definition names no directory"))
}

/// "pool 'strata' at /var/lib/strata/pool, 1.2 GiB free": what an error about space names.
pub fn describe_space(pool: &StoragePool, paths: &Paths) -> String {
    let free = pool
        .info()
        .map(|i| crate::units::format_size(i.available))
        .unwrap_or_else(|_| "unknown space".into());
    format!(
        "pool '{}' at {}, {free} free",
        paths.pool_name(),
        paths.pool_dir().display()
    )
}

/// Look up a volume by name in the pool; None when it is not there.
pub fn find_volume(pool: &StoragePool, name: &str) -> Option<StorageVol> {
    pool.lookup_storage_vol_by_name(name).ok()
}

/// Create `name` as a thin qcow2 clone of `template` with `capacity` bytes (>= the
/// template's own size). The template is only read, as the backing file.
pub fn clone_volume(
    pool: &StoragePool,
    template: &StorageVol,
    name: &str,
    capacity: u64,
) -> Result<StorageVol> {
    let template_size = template.info()?.capacity;
    if capacity < template_size {
        return Err(Error::bad_input(format!(
            "--disk {}: smaller than the template's disk ({})",
            crate::units::format_size(capacity),
            crate::units::format_size(template_size)
        ))
        .with_hint("give at least the template's size; the root filesystem grows to the disk on first boot"));
    }
    let available = pool.info()?.available;
    if capacity - template_size > available.saturating_mul(8) {
        // Thin clones only take what the guest writes; refuse only absurd sizes.
        return Err(Error::bad_input(format!(
            "--disk {}: far larger than the {} free in the pool",
            crate::units::format_size(capacity),
            crate::units::format_size(available)
        ))
        .with_hint("choose a smaller --disk"));
    }
    let xml_text = xml::render(
        xml::CLONE_VOLUME,
        &serde_json::json!({
            "name": name,
            "capacity": capacity,
            "backing_path": template.path()?,
        }),
    )?;
    Ok(StorageVol::create_xml(pool, &xml_text, 0)?)
}

/// Move a finished qcow2 image into the pool directory as the read-only (0444) template
/// volume `volume` (same filesystem: a rename), and have libvirt pick it up.
pub fn register_template_image(
    pool: &StoragePool,
    pool_dir: &Path,
    volume: &str,
    image: &Path,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = pool_dir.join(volume);
    std::fs::set_permissions(image, std::fs::Permissions::from_mode(0o444))?;
    std::fs::rename(image, &target)
        .map_err(|e| Error::from(e).context(format!("moving the image to {}", target.display())))?;
    refresh(pool)?;
    if find_volume(pool, volume).is_none() {
        return Err(Error::failed(format!(
            "the pool does not show {volume} after refresh"
        )));
    }
    Ok(())
}

/// Delete a VM's volume if it exists; refuses template volumes.
pub fn delete_vm_volume(pool: &StoragePool, name: &str) -> Result<()> {
    if name.starts_with("template-") {
        return Err(Error::failed(format!(
            "refusing to delete template volume '{name}'"
        )));
    }
    if let Some(vol) = find_volume(pool, name) {
        vol.delete(0)?;
    }
    Ok(())
}

/// Let libvirt read the pool's folder again (after strata put a file in it or took one out).
/// libvirt refuses while a volume of the pool is being made ("asynchronous jobs running": a
/// clone, an upload), which another strata may be doing at this very moment: that is waited
/// out, up to a bound, instead of failing this command.
pub fn refresh(pool: &StoragePool) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        match pool.refresh(0) {
            Ok(_) => return Ok(()),
            Err(e)
                if e.message().contains("asynchronous jobs")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_owns_only_its_own_volume_names() {
        for role in [VolumeRole::Root, VolumeRole::Data, VolumeRole::Seed] {
            assert!(is_vm_volume_name("web", role, &vm_volume_name("web", role)));
            assert!(!is_vm_volume_name(
                "web",
                role,
                &vm_volume_name("web-data", role)
            ));
            assert!(!is_vm_volume_name(
                "web-data",
                role,
                &vm_volume_name("web", role)
            ));
        }
        assert!(is_vm_volume_name("web", VolumeRole::Root, "vm-web.qcow2"));
        assert!(!is_vm_volume_name("web", VolumeRole::Data, "vm-web.qcow2"));
        for forged in [
            "/etc/shadow",
            "../vm_web.qcow2",
            "template-debian-12.qcow2",
            "",
        ] {
            assert!(
                !is_vm_volume_name("web", VolumeRole::Root, forged),
                "{forged}"
            );
        }
    }
}
