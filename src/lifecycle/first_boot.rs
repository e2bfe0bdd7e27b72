//! What a new guest is told at first boot, without ISO tools: its keys (a login key strata
//! keeps and a host key strata pins before first contact), the domain spec rendered from the
//! template (with SMBIOS OEM strings for strata's own templates) and, for cloud images, a
//! cloud-init NoCloud seed. Both carry the hostname, the login key and the host key to pin.

use super::create_plan::CreatePlan;
use super::vm_create::CreateRequest;
use crate::error::Result;
use crate::guest::{keys, route};
use crate::host::accel::Accel;
use crate::state::{write_private, Paths};
use crate::template;
use crate::vm::record::VmRecord;
use crate::vm::spec::DomainSpec;
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
        let login = keys::generate(&format!("strata@{vm}"))?;
        let host = keys::generate(&format!("root@{vm}"))?;
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
}

/// The VM's domain spec. The host's private key rides in it only until first boot has used it
/// (`with_private_host_key`).
#[allow(clippy::too_many_arguments)]
pub(super) fn domain_spec(
    paths: &Paths,
    req: &CreateRequest,
    plan: &CreatePlan,
    record: &VmRecord,
    uuid: &str,
    disk_path: &str,
    keys: &GuestKeys,
    with_private_host_key: bool,
) -> Result<DomainSpec> {
    use base64::Engine;
    let name = req.name.as_str();
    let mut oem_strings = vec![
        format!("strata.hostname={name}"),
        format!("strata.authorized_key={}", keys.login.public_openssh.trim()),
        format!("strata.host_key_pub={}", keys.host.public_openssh.trim()),
    ];
    if with_private_host_key {
        oem_strings.push(format!(
            "strata.host_key={}",
            base64::engine::general_purpose::STANDARD.encode(keys.host.private_openssh.as_bytes())
        ));
    }
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
        console_log: paths.vm_dir(name).join("console.log").display().to_string(),
        seed_path: path_text(&plan.seed),
        oem_strings,
        fw_cfg_files: Vec::new(),
        metadata: record.to_xml()?,
    })
}

/// The template's kernel command line, plus its TCG-only arguments when emulated.
fn kernel_cmdline(boot: &template::BootSpec, accel: Accel) -> String {
    match (accel, boot.tcg_cmdline.trim()) {
        (Accel::Tcg, extra) if !extra.is_empty() => format!("{} {extra}", boot.cmdline.trim()),
        _ => boot.cmdline.trim().to_string(),
    }
}

/// cloud-init NoCloud data: hostname, login key, and the host key strata pins.
pub(super) fn write_seed(path: &Path, name: &str, uuid: &str, keys: &GuestKeys) -> Result<()> {
    let context = serde_json::json!({
        "name": name,
        "uuid": uuid,
        "authorized_key": keys.login.public_openssh.trim(),
        "host_key_private": keys.host.private_openssh.trim_end(),
        "host_key_public": keys.host.public_openssh.trim(),
    });
    let user_data = template::render_str("user-data.j2", USER_DATA, &context)?;
    let meta_data = template::render_str("meta-data.j2", META_DATA, &context)?;
    crate::image::seed::build_seed(path, &user_data, &meta_data)
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
        };
        assert_eq!(
            kernel_cmdline(&boot, Accel::Tcg),
            "root=/dev/vda rw mitigations=off"
        );
        assert_eq!(kernel_cmdline(&boot, Accel::Kvm), "root=/dev/vda rw");
    }
}
