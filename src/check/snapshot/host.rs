//! What the host checks read, gathered once per run from the host's readers (host/), libvirt
//! (vm/) and strata's template records (image/): the filter table, forwarding and
//! bridge-netfilter switches, libvirt networks and the VM NICs on host bridges, the host's
//! Docker, routes, sockets on ports 53/67, /dev/kvm, strata's pool directory, template
//! checksums, firewalld and LSM denials. Each fact is a Result: an error is the reason it
//! could not be read, and the checks that need it say `skip` with that reason.

use crate::error::{Error, Result};
use crate::host::accel::KvmFacts;
use crate::host::docker::HostDocker;
use crate::host::firewalld::Firewalld;
use crate::host::iptables::FilterTable;
use crate::host::listeners::Listener;
use crate::host::nft::FirewallBackends;
use crate::host::qemu_user::QemuIdentity;
use crate::host::routes::HostRoute;
use crate::host::runner::Runner;
use crate::host::{firewalld, lsm, nft, sysctl};
use crate::state::Paths;
use crate::vm::network::NetworkInfo;
use crate::vm::Libvirt;
use std::path::{Path, PathBuf};

/// A running VM's NIC attached directly to a host bridge (`<interface type='bridge'>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgedNic {
    pub domain: String,
    pub bridge: String,
}

/// A strata directory qemu must reach, and the directory that stops it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAccess {
    pub qemu_user: String,
    pub pool_dir: PathBuf,
    /// The first directory on the way that the qemu user cannot traverse.
    pub blocked_at: Option<PathBuf>,
}

/// A built template's volume and its checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateImage {
    pub template: String,
    pub volume: PathBuf,
    pub recorded_sha256: String,
    /// The volume's checksum now, or why it could not be computed.
    pub actual_sha256: Result<String>,
    /// Whether the volume file exists at all (a missing one breaks every clone).
    pub volume_present: bool,
}

/// Everything the host checks read.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    pub filter: Result<FilterTable>,
    /// net.ipv4.ip_forward.
    pub ip_forward: Result<bool>,
    /// net.bridge.bridge-nf-call-iptables; None when br_netfilter is not active (the sysctl
    /// only exists while it is, as a module or built in).
    pub bridge_nf_call_iptables: Option<bool>,
    pub libvirt_networks: Result<Vec<NetworkInfo>>,
    pub bridged_nics: Result<Vec<BridgedNic>>,
    pub docker: Result<HostDocker>,
    pub routes: Result<Vec<HostRoute>>,
    /// The device of the default route (where routed VM traffic leaves).
    pub default_route_dev: Option<String>,
    /// Sockets on ports 53 and 67.
    pub dns_dhcp_listeners: Result<Vec<Listener>>,
    pub kvm: Result<KvmFacts>,
    /// e.g. "kvm_intel nested=Y", when a KVM module is loaded.
    pub nested: Option<String>,
    pub backends: FirewallBackends,
    /// None when firewalld is not running.
    pub firewalld: Option<Result<Firewalld>>,
    pub pool_access: Result<PoolAccess>,
    pub templates: Result<Vec<TemplateImage>>,
    /// Lines of the kernel log with AppArmor denials for libvirt/qemu profiles; Err when the
    /// log could not be read; None when AppArmor is not enabled.
    pub apparmor_denials: Option<Result<Vec<String>>>,
    /// AVC denials of sVirt/qemu in the audit log; None when SELinux is not enforcing.
    pub selinux_denials: Option<Result<Vec<String>>>,
}

/// Read every host fact. Only reads; never changes anything.
pub fn gather(lv: Option<&Libvirt>, paths: &Paths) -> HostSnapshot {
    let libvirt = |what: &str| {
        lv.ok_or_else(|| {
            Error::new(
                crate::error::ErrorKind::Unreachable,
                format!("{what}: libvirt is not reachable"),
            )
        })
    };
    HostSnapshot {
        filter: crate::host::iptables::read(),
        ip_forward: sysctl::ip_forward(),
        bridge_nf_call_iptables: sysctl::bridge_nf_call_iptables(),
        libvirt_networks: libvirt("networks").and_then(|lv| crate::vm::network::list(&lv.conn())),
        bridged_nics: libvirt("VM interfaces").and_then(bridged_nics),
        docker: crate::host::docker::read(),
        routes: crate::host::routes::read(),
        default_route_dev: crate::host::routes::default_route_device(),
        dns_dhcp_listeners: crate::host::listeners::read(&[53, 67]),
        kvm: KvmFacts::read(),
        nested: sysctl::nested_virtualization(),
        backends: nft::read(),
        firewalld: firewalld::running().then(firewalld::read),
        pool_access: pool_access(paths),
        templates: template_images(paths),
        apparmor_denials: lsm::apparmor_denials(),
        selinux_denials: lsm::selinux_denials(),
    }
}

/// Read every fact of the host `lv` connects to: this machine's through `gather`, a remote
/// host's over SSH (`runner`) — its filter table, switches, routes, sockets and their owners,
/// Docker, /dev/kvm, firewall back ends and LSM denials there. strata's pool there is made by
/// that host's libvirt and its templates are verified when they are sent, so those two facts
/// are left to the checks run on the host itself (they say skip, with why).
pub fn gather_on(lv: &Libvirt, paths: &Paths, runner: &Runner) -> HostSnapshot {
    if runner.is_local() {
        return gather(Some(lv), paths);
    }
    let here_only = |what: &str| {
        Error::failed(format!(
            "{what} on {} (`strata check --host` on that host checks it)",
            runner.describe()
        ))
    };
    let (apparmor_denials, selinux_denials) = lsm::denials_on(runner);
    HostSnapshot {
        filter: crate::host::iptables::read_on(runner),
        ip_forward: sysctl::ip_forward_on(runner),
        bridge_nf_call_iptables: sysctl::bridge_nf_call_iptables_on(runner),
        libvirt_networks: crate::vm::network::list(&lv.conn()),
        bridged_nics: bridged_nics(lv),
        docker: crate::host::docker::read_on(runner),
        routes: crate::host::routes::read_with(runner),
        default_route_dev: crate::host::routes::default_route_device_on(runner),
        dns_dhcp_listeners: crate::host::listeners::read_on(runner, &[53, 67]),
        kvm: KvmFacts::read_on(runner),
        nested: sysctl::nested_virtualization_on(runner),
        backends: nft::read_on(runner),
        firewalld: firewalld::read_on(runner),
        pool_access: Err(here_only("strata's pool")),
        templates: Err(here_only("the templates' checksums")),
        apparmor_denials,
        selinux_denials,
    }
}

/// NICs of running domains (strata's or not) on host bridges, from their live XML.
fn bridged_nics(lv: &Libvirt) -> Result<Vec<BridgedNic>> {
    let domains = lv
        .conn()
        .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        .map_err(|e| Error::from(e).context("listing domains"))?;
    let mut nics = Vec::new();
    for dom in domains {
        let (Ok(name), Ok(xml)) = (dom.name(), dom.xml_desc(0)) else {
            continue; // gone between listing and reading
        };
        nics.extend(
            parse_bridged_nics(&xml)
                .into_iter()
                .map(|bridge| BridgedNic {
                    domain: name.clone(),
                    bridge,
                }),
        );
    }
    Ok(nics)
}

/// The host bridges a domain's `<interface type='bridge'>` elements attach to (pure).
pub fn parse_bridged_nics(domain_xml: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(domain_xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("interface") && n.attribute("type") == Some("bridge"))
        .filter_map(|n| {
            n.children()
                .find(|c| c.has_tag_name("source"))
                .and_then(|s| s.attribute("bridge"))
                .map(str::to_string)
        })
        .collect()
}

fn pool_access(paths: &Paths) -> Result<PoolAccess> {
    let qemu = QemuIdentity::discover()?;
    let pool_dir = paths.pool_dir();
    // Anything inside the pool stands for the pool: qemu must reach the directory itself.
    let blocked_at = qemu.blocked_directory(&pool_dir.join("volume"));
    Ok(PoolAccess {
        qemu_user: qemu.user,
        pool_dir,
        blocked_at,
    })
}

fn template_images(paths: &Paths) -> Result<Vec<TemplateImage>> {
    let search = crate::template::search_path(&paths.state.join("imported"));
    let templates = crate::template::list(&search)?;
    let mut images = Vec::new();
    for t in templates {
        let Ok(Some(record)) = crate::image::read_record(&paths.template_dir(t.name())) else {
            continue; // never built: nothing to verify
        };
        let volume = paths.pool_dir().join(&record.volume);
        images.push(TemplateImage {
            template: t.name().to_string(),
            actual_sha256: volume_sha256(&paths.template_dir(t.name()), &volume),
            volume_present: volume.exists(),
            volume,
            recorded_sha256: record.sha256,
        });
    }
    Ok(images)
}

/// The volume's sha256, hashed again only when its inode, size, mtime or ctime changed since
/// the last check: every write to the file (and every `touch`) moves ctime, and hashing the
/// templates on every run would cost seconds per GiB.
fn volume_sha256(template_dir: &Path, volume: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(volume)
        .map_err(|e| Error::from(e).context(volume.display().to_string()))?;
    let stamp = format!(
        "{} {} {}.{} {}.{}",
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let cache = template_dir.join("verified");
    if let Some(sum) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|text| text.strip_prefix(&format!("{stamp} ")).map(str::to_string))
    {
        return Ok(sum.trim().to_string());
    }
    let sum = crate::digest::sha256_file(volume)?;
    // A cache that cannot be written only costs the next run a rehash.
    let _ = std::fs::write(&cache, format!("{stamp} {sum}\n"));
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nics_on_host_bridges() {
        let xml = "<domain><devices>\
            <interface type='network'><source network='strata-e2e' bridge='virbr3'/></interface>\
            <interface type='bridge'><mac address='52:54:00:aa:bb:cc'/><source bridge='stbr0'/><target dev='vnet7'/></interface>\
            </devices></domain>";
        assert_eq!(parse_bridged_nics(xml), vec!["stbr0".to_string()]);
        assert!(parse_bridged_nics("not xml").is_empty());
    }
}
