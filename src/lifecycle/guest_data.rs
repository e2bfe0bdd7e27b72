//! What a new guest is told at first boot, without ISO tools: the domain XML rendered from
//! the template (with SMBIOS OEM strings for strata's own templates) and, for cloud images, a
//! cloud-init NoCloud seed. Both carry the hostname, the login key and the host key to pin.

use super::plan::CreatePlan;
use super::CreateRequest;
use crate::error::Result;
use crate::guest::keys;
use crate::host::accel::Accel;
use crate::state::Paths;
use crate::template;
use crate::vm::network::DhcpHost;
use crate::vm::VM_METADATA_NS;
use std::path::{Path, PathBuf};

/// The VM's libvirt domain XML, rendered from the template's domain.xml.j2; the first-boot
/// data for strata's own templates rides in SMBIOS OEM strings. The host's private key is in
/// them only until first boot has used it (`with_private_host_key`).
#[allow(clippy::too_many_arguments)]
pub(super) fn render_domain(
    paths: &Paths,
    req: &CreateRequest,
    plan: &CreatePlan,
    host: &DhcpHost,
    uuid: &str,
    disk_path: &str,
    authorized_key: &str,
    host_key: &keys::KeyPair,
    with_private_host_key: bool,
) -> Result<String> {
    use base64::Engine;
    let name = req.name.as_str();
    let mut oem_strings = vec![
        format!("strata.hostname={name}"),
        format!("strata.authorized_key={}", authorized_key.trim()),
        format!("strata.host_key_pub={}", host_key.public_openssh.trim()),
    ];
    if with_private_host_key {
        oem_strings.push(format!(
            "strata.host_key={}",
            base64::engine::general_purpose::STANDARD.encode(host_key.private_openssh.as_bytes())
        ));
    }
    let path_str = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let context = serde_json::json!({
        "name": name,
        "uuid": uuid,
        "template": plan.template.name(),
        "metadata_ns": VM_METADATA_NS,
        "created": crate::units::now_rfc3339(),
        "accel": plan.accel.as_str(),
        "virt_type": plan.accel.domain_type(),
        "network": req.network,
        "mac": host.mac,
        "ip": host.ip.to_string(),
        "user": plan.template.manifest.vm.user,
        "key_path": paths.vm_key(name).display().to_string(),
        "volume": plan.volume,
        "memory_kib": plan.memory / 1024,
        "cpus": plan.cpus,
        "oem_strings": oem_strings,
        "kernel": path_str(&plan.kernel),
        "initrd": path_str(&plan.initrd),
        "cmdline": kernel_cmdline(&plan.template.manifest.boot, plan.accel),
        "disk_path": disk_path,
        "console_log": paths.vm_dir(name).join("console.log").display().to_string(),
        "seed_path": path_str(&plan.seed),
    });
    template::render_file(&plan.template.domain_xml_template(), &context)
}

/// The template's kernel command line, plus its TCG-only arguments when emulated.
fn kernel_cmdline(boot: &template::BootSpec, accel: Accel) -> String {
    match (accel, boot.tcg_cmdline.trim()) {
        (Accel::Tcg, extra) if !extra.is_empty() => format!("{} {extra}", boot.cmdline.trim()),
        _ => boot.cmdline.trim().to_string(),
    }
}

/// The seed disk's file name in the pool directory.
pub(super) fn seed_file_name(vm: &str) -> String {
    format!("vm-{vm}-seed.img")
}

/// cloud-init NoCloud data: hostname, login key, and the host key strata pins.
pub(super) fn write_seed(
    path: &Path,
    name: &str,
    uuid: &str,
    authorized_key: &str,
    host_key: &keys::KeyPair,
) -> Result<()> {
    let context = serde_json::json!({
        "name": name,
        "uuid": uuid,
        "authorized_key": authorized_key.trim(),
        "host_key_private": host_key.private_openssh.trim_end(),
        "host_key_public": host_key.public_openssh.trim(),
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
