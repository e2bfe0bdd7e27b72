//! Everything `vm create` decides and checks before it changes anything: names, sizes, host
//! limits, template and network state, the accelerator, and whether qemu can reach the files.
//! Bad input fails here, so it changes nothing.

use super::vm_create::CreateRequest;
use crate::error::{Error, ErrorKind, Result};
use crate::host::accel::{self, Accel, KvmFacts};
use crate::host::qemu_user::QemuIdentity;
use crate::host::runner::Runner;
use crate::image::read_record;
use crate::state::Paths;
use crate::template::{self, InjectMethod};
use crate::units::parse_size;
use crate::vm::record::VolumeRole;
use crate::vm::{domain, network, pool, Libvirt};
use std::path::PathBuf;

/// Everything decided and checked before anything is changed.
pub(super) struct CreatePlan {
    pub(super) template: template::Template,
    pub(super) kernel: Option<PathBuf>,
    pub(super) initrd: Option<PathBuf>,
    pub(super) template_volume: String,
    pub(super) cpus: u32,
    pub(super) memory: u64,
    pub(super) disk: u64,
    pub(super) accel: Accel,
    pub(super) accel_reason: String,
    pub(super) volume: String,
    /// cloud-init templates: the NoCloud seed disk in the pool folder of the VM's host.
    pub(super) seed: Option<PathBuf>,
    /// Where the serial console is logged, on the VM's host.
    pub(super) console_log: PathBuf,
}

pub(super) fn plan_create(lv: &Libvirt, paths: &Paths, req: &CreateRequest) -> Result<CreatePlan> {
    crate::names::check_vm_name(&req.name)?;
    let template = template::find(
        &template::search_path(&paths.state.join("imported")),
        &req.template,
    )?;
    let defaults = &template.manifest.vm;
    let cpus = req.cpus.unwrap_or(defaults.cpus);
    let memory = parse_size(
        "--memory",
        req.memory.as_deref().unwrap_or(&defaults.memory),
    )?;
    let disk = parse_size("--disk", req.disk.as_deref().unwrap_or(&defaults.disk))?;
    let node = lv.conn().node_info()?;
    if cpus == 0 || cpus > node.cpus {
        return Err(
            Error::bad_input(format!("--cpus {cpus}: this host has {} CPUs", node.cpus))
                .with_hint(format!("give 1 to {}", node.cpus)),
        );
    }
    let host_memory = node.memory * 1024;
    if memory < 128 << 20 || memory > host_memory {
        return Err(Error::bad_input(format!(
            "--memory {}: must be between 128 MiB and this host's {}",
            crate::units::format_size(memory),
            crate::units::format_size(host_memory)
        ))
        .with_hint("e.g. --memory 1G"));
    }
    if domain::exists(&lv.conn(), &req.name) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("a VM named '{}' already exists", req.name),
        )
        .with_hint("pick another name, or remove it with `strata vm destroy NAME`"));
    }
    let record = read_record(&paths.template_dir(template.name()))?.ok_or_else(|| {
        Error::not_found(format!("template '{}' is not built yet", template.name()))
            .with_hint(format!("run `strata template build {}`", template.name()))
    })?;
    let pool_handle = pool::ensure_home(lv, paths)?;
    let template_volume = |volume: &str| -> Result<virt::storage_vol::StorageVol> {
        let (pool_name, _) = pool::home(lv, paths);
        pool::find_volume(&pool_handle, volume).ok_or_else(|| {
            let hint = if lv.is_remote() {
                format!(
                    "put it on that host with `strata --connect '{}' template build {}`",
                    lv.uri,
                    template.name()
                )
            } else {
                format!(
                    "rebuild it with `strata template build {}`",
                    template.name()
                )
            };
            Error::not_found(format!(
                "template '{}' has no volume '{volume}' in pool '{pool_name}'{}",
                template.name(),
                if lv.is_remote() { " on that host" } else { "" },
            ))
            .with_hint(hint)
        })
    };
    template_volume(&record.volume)?;
    // Direct kernel boot reads the kernel and initrd on the VM's host: this machine's files, or
    // the volumes the template's upload put beside its image there.
    let (kernel, initrd) = if lv.is_remote() {
        let [kernel_volume, initrd_volume] =
            super::template_upload::boot_file_volumes(template.name());
        let there = |local: &Option<PathBuf>, volume: &str| -> Result<Option<PathBuf>> {
            match local {
                None => Ok(None),
                Some(_) => Ok(Some(PathBuf::from(template_volume(volume)?.path()?))),
            }
        };
        (
            there(&record.kernel, &kernel_volume)?,
            there(&record.initrd, &initrd_volume)?,
        )
    } else {
        (record.kernel.clone(), record.initrd.clone())
    };
    let volume = pool::vm_volume_name(&req.name, VolumeRole::Root);
    refuse_leftover_volume(lv, paths, &pool_handle, &req.name, &volume)?;
    let (_, net) = network::lookup(&lv.conn(), &req.network)?;
    if net.subnet.is_none() {
        return Err(Error::bad_input(format!("network '{}' has no IPv4 subnet with DHCP", req.network))
            .with_hint("strata reserves addresses in a libvirt network's DHCP; use one made by `strata net create`"));
    }
    if !net.active {
        return Err(
            Error::bad_input(format!("network '{}' is not running", req.network))
                .with_hint(format!("start it with `virsh net-start {}`", req.network)),
        );
    }
    let facts = if lv.is_test_driver() {
        None
    } else {
        Some(KvmFacts::read_on(&Runner::for_uri(&lv.uri)?)?)
    };
    let (accel, accel_reason) = match &facts {
        Some(facts) => accel::choose(req.accel, facts)?,
        None => (Accel::Tcg, "test driver".to_string()),
    };
    // Whether qemu can reach the files is this machine's question; on a remote host they live
    // in the pool libvirt made there.
    if !lv.is_test_driver() && !lv.is_remote() {
        let qemu = QemuIdentity::discover()?;
        let files = [
            Some(paths.pool_dir().join(&record.volume)),
            record.kernel.clone(),
            record.initrd.clone(),
        ];
        for file in files.into_iter().flatten() {
            if let Some(dir) = qemu.blocked_directory(&file) {
                return Err(Error::bad_input(format!(
                    "qemu's user '{}' cannot reach {}: {} is not traversable (o+x) for it",
                    qemu.user,
                    file.display(),
                    dir.display()
                ))
                .with_hint(format!("chmod o+x {}", dir.display())));
            }
        }
    }
    let cloud_init = template.manifest.guest.inject == InjectMethod::CloudInit;
    // The seed lives in the pool of the VM's host, beside its disk.
    let seed = if cloud_init {
        let seed_volume = pool::vm_volume_name(&req.name, VolumeRole::Seed);
        let pool_dir = if lv.is_remote() {
            pool::dir_of(&pool_handle)?
        } else {
            paths.pool_dir()
        };
        Some(pool_dir.join(seed_volume))
    } else {
        None
    };
    Ok(CreatePlan {
        seed,
        console_log: super::first_boot::console_log_path(lv, paths, &req.name),
        kernel,
        initrd,
        template_volume: record.volume.clone(),
        template,
        cpus,
        memory,
        disk,
        accel,
        accel_reason,
        volume,
    })
}

/// A volume under the name this create would give its disk, while no VM of that name exists
/// and this process holds the name's journal: left by a run that could not finish. It is never
/// overwritten, and the hint names it only when no VM lists it as its own.
fn refuse_leftover_volume(
    lv: &Libvirt,
    paths: &Paths,
    pool_handle: &virt::storage_pool::StoragePool,
    vm: &str,
    volume: &str,
) -> Result<()> {
    if pool::find_volume(pool_handle, volume).is_none() {
        return Ok(());
    }
    let owner = domain::list(&lv.conn())?
        .into_iter()
        .find(|other| other.record.volumes.iter().any(|v| v.name == volume));
    let (pool_name, _) = pool::home(lv, paths);
    let err = Error::new(
        ErrorKind::AlreadyExists,
        format!("volume '{volume}' already exists in pool '{pool_name}' but no VM '{vm}' does"),
    );
    Err(match owner {
        Some(other) => err.with_hint(format!(
            "it belongs to VM '{}'; pick another name",
            other.name
        )),
        None => err.with_hint(format!(
            "no VM and no running create owns it (a run was cut short); remove it with `virsh vol-delete {volume} --pool {pool_name}`, or pick another name",
        )),
    })
}
