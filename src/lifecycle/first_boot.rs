//! What a new guest is told at first boot, without ISO tools: its keys (a login key strata
//! keeps and a host key strata pins before first contact), the domain spec rendered from the
//! template (public values in SMBIOS OEM strings for strata's own templates) and, for cloud
//! images, a cloud-init NoCloud seed (hostname and login key).
//!
//! The guest's private host key is the one secret: it never goes on QEMU's command line, into
//! the domain XML or into the seed. It waits in a file only root can read (libvirt hands it to
//! qemu's user), in a folder only root can list, under an unpredictable name; QEMU reads it
//! into a fw_cfg blob when it starts, and strata deletes the file and redefines the domain
//! without it right after the start, on every path (waiting for SSH or not).

use super::create_plan::CreatePlan;
use super::journal::Undo;
use super::vm_create::CreateRequest;
use crate::error::{Error, Result};
use crate::guest::{keys, route};
use crate::host::accel::Accel;
use crate::state::{write_private, Paths};
use crate::template;
use crate::vm::record::VmRecord;
use crate::vm::spec::{DomainSpec, FwCfgFile};
use crate::vm::{pool, upload, Libvirt};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The two key pairs of a new VM.
pub(super) struct GuestKeys {
    /// strata logs in with this one (private half 0600 under the VM's state folder).
    pub login: keys::KeyPair,
    /// The guest's SSH host key: strata generates it, so its public half is pinned before the
    /// guest ever answers.
    pub host: keys::KeyPair,
}

impl GuestKeys {
    /// Generate both pairs and keep what strata needs: the login key and the pin.
    pub(super) fn generate_and_store(paths: &Paths, vm: &str, ip: Ipv4Addr) -> Result<GuestKeys> {
        let GuestKeys { login, host } = GuestKeys::generate(vm)?;
        write_private(&paths.vm_key(vm), login.private_openssh.as_bytes())?;
        write_private(
            &paths.vm_dir(vm).join("id_ed25519.pub"),
            login.public_openssh.as_bytes(),
        )?;
        write_private(
            &paths.vm_known_hosts(vm),
            route::known_hosts_line(&ip.to_string(), &host.public_openssh).as_bytes(),
        )?;
        Ok(GuestKeys { login, host })
    }

    /// Both pairs, in memory only.
    pub(super) fn generate(vm: &str) -> Result<GuestKeys> {
        Ok(GuestKeys {
            login: keys::generate(&format!("strata@{vm}"))?,
            host: keys::generate(&format!("root@{vm}"))?,
        })
    }
}

/// The fw_cfg name the guest reads its host key from (/sys/firmware/qemu_fw_cfg/by_name/...).
pub(super) const HOST_KEY_FW_CFG: &str = "opt/strata/host_key";

/// Where a new VM's private host key waits for QEMU, on the host that runs the VM.
pub(super) enum Handover {
    /// A file of this machine: an unpredictable name in a folder only root can list (mode
    /// 0711: qemu's user may pass through to the one file libvirt hands it).
    File(PathBuf),
    /// A volume (mode 0600) in strata's pool on a remote host, under an unpredictable name,
    /// sent through libvirt's stream: the key never lands on this machine's disk nor on a
    /// command line there.
    Volume(String),
}

impl Handover {
    pub(super) fn new(lv: &Libvirt, paths: &Paths, vm: &str) -> Result<Handover> {
        use rand_core::RngCore;
        use std::os::unix::fs::PermissionsExt;
        let unpredictable = rand_core::OsRng.next_u64();
        if lv.is_remote() {
            return Ok(Handover::Volume(format!(
                "strata-hostkey-{vm}-{unpredictable:016x}.key"
            )));
        }
        let dir = handover_dir(paths);
        paths.ensure_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        Ok(Handover::File(
            dir.join(format!("{vm}-{unpredictable:016x}.key")),
        ))
    }

    /// What a rollback removes.
    pub(super) fn undo(&self) -> Undo {
        match self {
            Handover::File(path) => Undo::File { path: path.clone() },
            Handover::Volume(name) => Undo::Volume { name: name.clone() },
        }
    }

    /// Write the key where QEMU will read it; the path on the VM's host. One this run wrote
    /// before a lost libvirtd is replaced: the name is this run's.
    pub(super) fn place(&self, lv: &Libvirt, paths: &Paths, keys: &GuestKeys) -> Result<PathBuf> {
        match self {
            Handover::File(path) => {
                write_host_key(path, keys)?;
                Ok(path.clone())
            }
            Handover::Volume(name) => {
                let pool_handle = pool::ensure_home(lv, paths)?;
                if let Some(old) = pool::find_volume(&pool_handle, name) {
                    old.delete(0)?;
                }
                let volume = upload::upload_bytes(
                    &lv.conn(),
                    &pool_handle,
                    name,
                    keys.host.private_openssh.as_bytes(),
                )?;
                Ok(PathBuf::from(volume.path()?))
            }
        }
    }

    /// Remove the key once QEMU has read it (or the start failed).
    pub(super) fn remove(&self, lv: &Libvirt, paths: &Paths) -> Result<()> {
        match self {
            Handover::File(path) => std::fs::remove_file(path)
                .map_err(|e| Error::from(e).context(format!("removing {}", path.display()))),
            Handover::Volume(name) => {
                let pool_handle = pool::ensure_home(lv, paths)?;
                pool::delete_vm_volume(&pool_handle, name)
            }
        }
    }
}

/// The folder of this machine's handover files.
pub(super) fn handover_dir(paths: &Paths) -> PathBuf {
    paths.state.join("handover")
}

/// Write the private host key for QEMU: a new file, mode 0600 (one this run wrote before a
/// lost libvirtd is replaced: the name is this run's, in a folder only root can write).
fn write_host_key(path: &Path, keys: &GuestKeys) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::from(e).context(format!("removing {}", path.display())))
        }
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::from(e).context(format!("writing {}", path.display())))?;
    file.write_all(keys.host.private_openssh.as_bytes())
        .map_err(|e| Error::from(e).context(format!("writing {}", path.display())))
}

/// Where the serial console of a VM is logged on its host: beside its keys here; on a remote
/// host in libvirt's own log folder there (which every libvirt host has, and virtlogd writes).
pub(super) fn console_log_path(lv: &Libvirt, paths: &Paths, vm: &str) -> PathBuf {
    if lv.is_remote() {
        PathBuf::from(format!("/var/log/libvirt/qemu/strata-{vm}-console.log"))
    } else {
        paths.vm_dir(vm).join("console.log")
    }
}

/// The VM's domain spec. With `host_key` (the handover file of the first start) the domain
/// hands the file to the guest through fw_cfg; without, the definition holds no trace of it.
#[allow(clippy::too_many_arguments)]
pub(super) fn domain_spec(
    req: &CreateRequest,
    plan: &CreatePlan,
    record: &VmRecord,
    uuid: &str,
    disk_path: &str,
    keys: &GuestKeys,
    host_key: Option<&Path>,
) -> Result<DomainSpec> {
    let name = req.name.as_str();
    let oem_strings = oem_strings(
        name,
        keys.login.public_openssh.trim(),
        keys.host.public_openssh.trim(),
    );
    let fw_cfg_files = host_key
        .map(|file| FwCfgFile {
            name: HOST_KEY_FW_CFG.to_string(),
            file: file.display().to_string(),
        })
        .into_iter()
        .collect();
    let path_text = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    Ok(DomainSpec {
        name: name.to_string(),
        uuid: uuid.to_string(),
        template: plan.template.name().to_string(),
        virt_type: plan.accel.domain_type(),
        accel: plan.accel.as_str(),
        memory_kib: plan.memory / 1024,
        cpus: plan.cpus,
        network: req.network.clone(),
        mac: record.mac.clone(),
        disk_path: disk_path.to_string(),
        kernel: path_text(&plan.kernel),
        initrd: path_text(&plan.initrd),
        cmdline: kernel_cmdline(&plan.template.manifest.boot, plan.accel),
        tcg_cpu: plan.template.manifest.boot.tcg_cpu.clone(),
        console_log: plan.console_log.display().to_string(),
        seed_path: path_text(&plan.seed),
        oem_strings,
        fw_cfg_files,
        metadata: record.to_xml()?,
    })
}

/// The public first-boot data strata's own templates read from SMBIOS OEM strings.
pub(super) fn oem_strings(name: &str, login_public: &str, host_public: &str) -> Vec<String> {
    vec![
        format!("strata.hostname={name}"),
        format!("strata.authorized_key={login_public}"),
        format!("strata.host_key_pub={host_public}"),
    ]
}

/// The template's kernel command line, plus its TCG-only arguments when emulated.
fn kernel_cmdline(boot: &template::BootSpec, accel: Accel) -> String {
    match (accel, boot.tcg_cmdline.trim()) {
        (Accel::Tcg, extra) if !extra.is_empty() => format!("{} {extra}", boot.cmdline.trim()),
        _ => boot.cmdline.trim().to_string(),
    }
}

/// cloud-init NoCloud data: hostname, login key, the public host key, and the command that
/// installs the private one from fw_cfg. Written at `path` on the VM's host: here a file in
/// the pool folder; on a remote host a volume of that name in its pool, assembled here in a
/// private folder and sent through libvirt's stream (mode 0600 there too).
pub(super) fn write_seed(
    lv: &Libvirt,
    paths: &Paths,
    path: &Path,
    name: &str,
    uuid: &str,
    keys: &GuestKeys,
) -> Result<()> {
    let context = serde_json::json!({
        "name": name,
        "uuid": uuid,
        "authorized_key": keys.login.public_openssh.trim(),
        "host_key_public": keys.host.public_openssh.trim(),
        "fw_cfg_name": HOST_KEY_FW_CFG,
    });
    let user_data = template::render_str("user-data.j2", USER_DATA, &context)?;
    let meta_data = template::render_str("meta-data.j2", META_DATA, &context)?;
    if !lv.is_remote() {
        return crate::image::seed::build_seed(paths, path, &user_data, &meta_data);
    }
    let bytes = crate::image::seed::seed_bytes(paths, &user_data, &meta_data)?;
    let volume = seed_volume(path);
    let pool_handle = pool::ensure_home(lv, paths)?;
    // One a killed run of this create left (no domain of this name exists, the plan checked).
    if let Some(old) = pool::find_volume(&pool_handle, &volume) {
        old.delete(0)?;
    }
    upload::upload_bytes(&lv.conn(), &pool_handle, &volume, &bytes)?;
    Ok(())
}

/// What a rollback removes for the seed at `path` on the VM's host.
pub(super) fn seed_undo(lv: &Libvirt, path: &Path) -> Undo {
    if lv.is_remote() {
        Undo::Volume {
            name: seed_volume(path),
        }
    } else {
        Undo::File {
            path: path.to_path_buf(),
        }
    }
}

/// The seed's volume name: its file name in the pool folder.
fn seed_volume(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

const USER_DATA: &str = include_str!("../../libvirt-templates/cloud-init-user-data.j2");
const META_DATA: &str = include_str!("../../libvirt-templates/cloud-init-meta-data.j2");

/// A random RFC 4122 version-4 UUID, so a define can never silently update a namesake.
pub(super) fn uuid_v4() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_version_4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid_v4());
    }

    #[test]
    fn tcg_arguments_only_under_tcg() {
        let boot = template::BootSpec {
            mode: template::BootMode::DirectKernel,
            cmdline: "root=/dev/vda rw".into(),
            tcg_cmdline: "mitigations=off".into(),
            tcg_cpu: String::new(),
        };
        assert_eq!(
            kernel_cmdline(&boot, Accel::Tcg),
            "root=/dev/vda rw mitigations=off"
        );
        assert_eq!(kernel_cmdline(&boot, Accel::Kvm), "root=/dev/vda rw");
    }
}
