//! `vm destroy`: remove a VM and everything strata made for it — its domain, the volumes its
//! record lists, its DHCP reservation, its keys, the docker context `strata context` wrote for
//! it — and never the template. The whole list is journaled before the first removal, so a
//! destroy that stops halfway (an error, a lost libvirtd, a kill) is finished by the next
//! `vm destroy NAME` or any later strata run.

use super::journal::{self, Action, Journal, Undo};
use crate::error::{Error, Result};
use crate::state::Paths;
use crate::vm::network::DhcpHost;
use crate::vm::record::{VmRecord, VolumeRole};
use crate::vm::{domain, pool, Libvirt};

/// What a destroy does with the VM's data disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDisk {
    Remove,
    /// Left in the pool under its name, for the next VM of this name to take up again
    /// (`plan rebuild`, `plan destroy` without --volumes).
    Keep,
}

/// Remove a VM; or finish an interrupted create or destroy of that name.
pub fn destroy(lv: &Libvirt, paths: &Paths, name: &str) -> Result<()> {
    destroy_with(lv, paths, name, DataDisk::Remove)
}

/// `destroy`, keeping or removing the data disk.
pub fn destroy_with(lv: &Libvirt, paths: &Paths, name: &str, data: DataDisk) -> Result<()> {
    crate::names::check_vm_name(name)?;
    // What an earlier run left unfinished for this name (a create killed halfway, a destroy
    // that stopped) is finished first; it may be all there was to do.
    let finished = journal::finish(lv, paths, name)?;
    let (dom, info) = match domain::lookup(&lv.conn(), name) {
        Ok(found) => found,
        Err(e) if e.kind() == crate::error::ErrorKind::NotFound && finished => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some(foreign) = info
        .record
        .volumes
        .iter()
        .find(|v| !pool::is_vm_volume_name(name, v.role, &v.name))
    {
        return Err(Error::failed(format!(
            "VM '{name}''s record names the volume '{}', which is not a name strata gives this VM's volumes; nothing was removed",
            foreign.name
        ))
        .with_hint(format!(
            "the domain's strata metadata was not written by strata for '{name}' (or was edited): check what '{}' is, then remove the VM by hand (`virsh undefine {name}`)",
            foreign.name
        )));
    }
    let mut steps = vec![Undo::VmDir {
        path: paths.vm_dir(name),
    }];
    for volume in &info.record.volumes {
        if volume.role == VolumeRole::Data && data == DataDisk::Keep {
            continue;
        }
        steps.push(match volume.role {
            // The seed is a file strata wrote into this machine's pool directory.
            VolumeRole::Seed if !lv.is_remote() => Undo::File {
                path: paths.pool_dir().join(&volume.name),
            },
            VolumeRole::Root | VolumeRole::Data | VolumeRole::Seed => Undo::Volume {
                name: volume.name.clone(),
            },
        });
    }
    // Names from before volumes had roles exist only on this machine: a remote host's record
    // never names a file here.
    if !lv.is_remote() {
        steps.extend(legacy_volumes(paths, name, &info.record));
    }
    steps.push(Undo::Reservation {
        network: info.record.network.clone(),
        host: DhcpHost {
            mac: info.record.mac.clone(),
            name: name.to_string(),
            ip: info.record.ip,
        },
    });
    steps.push(Undo::Domain {
        name: name.to_string(),
        uuid: dom.uuid_string()?,
    });
    explain_destroy(lv, paths, name, &dom, &steps)?;
    // Carried out newest first: the domain goes first, then what it used.
    let journal = Journal::begin_with(lv, paths, name, Action::Destroy, steps)?;
    let problems = journal.rollback(lv, paths);
    if problems.is_empty() {
        forget_docker_context(paths, name)
    } else {
        Err(Error::failed(format!(
            "destroying '{name}' stopped halfway: {}",
            problems.join("; ")
        ))
        .with_hint(format!(
            "run `strata vm destroy {name}` again to finish (any strata command also retries it)"
        )))
    }
}

/// `--explain`: the destroy's steps as virsh and rm commands.
fn explain_destroy(
    lv: &Libvirt,
    paths: &Paths,
    name: &str,
    dom: &virt::domain::Domain,
    steps: &[Undo],
) -> Result<()> {
    if !crate::explain::is_on() {
        return Ok(());
    }
    let mut volumes = Vec::new();
    let mut files = Vec::new();
    let mut reservation = None;
    for step in steps {
        match step {
            Undo::Volume { name } => volumes.push(name.clone()),
            Undo::File { path } => files.push(path.display().to_string()),
            Undo::Reservation { network, host } => reservation = Some((network, host)),
            _ => {}
        }
    }
    let (network, host) = reservation
        .ok_or_else(|| Error::failed(format!("VM '{name}': no reservation to explain")))?;
    let live = crate::vm::network::lookup(&lv.conn(), network)
        .map(|(net, _)| net.is_active().unwrap_or(false))
        .unwrap_or(false);
    crate::explain::step(
        crate::explain::Step::VmDestroy,
        &serde_json::json!({
            "name": name,
            "running": dom.is_active()?,
            "pool": pool::home(lv, paths).0,
            "volumes": volumes,
            "files": files,
            "network": network,
            "host_xml": crate::vm::network::host_xml(host)?,
            "live": live,
            "vm_dir": paths.vm_dir(name),
        }),
    )
}

/// The docker context and SSH settings `strata context NAME` wrote for the user running
/// strata reach a VM that is gone: removed when they are strata's for this VM.
fn forget_docker_context(paths: &Paths, name: &str) -> Result<()> {
    let homes = crate::stack::context::Homes::of_current_user()?;
    crate::stack::context::remove(name, &paths.vm_known_hosts(name), &homes)
        .map(drop)
        .map_err(|e| {
            e.context(format!(
                "VM '{name}' is destroyed; removing its docker context"
            ))
        })
}

/// VMs made before volumes were recorded by role list only their root disk: their data disk
/// carried the old name `vm-NAME-data.qcow2`, which (with '-' allowed in names) may also be VM
/// `NAME-data`'s root disk. It is removed only when no VM of that name exists.
fn legacy_volumes(paths: &Paths, name: &str, record: &VmRecord) -> Vec<Undo> {
    let legacy_root = format!("vm-{name}.qcow2");
    if record.volume(VolumeRole::Root) != Some(legacy_root.as_str())
        || record.volume(VolumeRole::Data).is_some()
    {
        return Vec::new();
    }
    vec![
        Undo::LegacyDataDisk {
            name: format!("vm-{name}-data.qcow2"),
            unless_vm: format!("{name}-data"),
        },
        // No VM's root disk ends in .img: this name was only ever NAME's seed.
        Undo::File {
            path: paths.pool_dir().join(format!("vm-{name}-seed.img")),
        },
    ]
}
