//! What the host checks read, gathered once per run: iptables (filter table, which backends
//! hold rules), forwarding and bridge-netfilter sysctls, libvirt networks and the VM NICs on
//! host bridges (libvirt API), the host's Docker (API), routes, sockets on ports 53/67,
//! /dev/kvm, strata's pool directories, template checksums, firewalld and AppArmor.
//! Each fact is a Result: Err is the reason it could not be read, and the checks that need it
//! say `skip` with that reason.

use crate::check::firewall::FilterTable;
use crate::command::capture;
use crate::host::accel::KvmFacts;
use crate::host::docker::HostDocker;
use crate::host::listeners::Listener;
use crate::host::qemu_user::QemuIdentity;
use crate::host::routes::HostRoute;
use crate::state::Paths;
use crate::vm::network::NetworkInfo;
use crate::vm::Libvirt;
use std::path::{Path, PathBuf};

/// A fact, or why it could not be read.
pub type Fact<T> = std::result::Result<T, String>;

/// A running VM's NIC attached directly to a host bridge (`<interface type='bridge'>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgedNic {
    pub domain: String,
    pub bridge: String,
}

/// Which packet-filter back ends hold rules (NET-2, NET-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallBackends {
    /// "nf_tables" or "legacy": what `iptables` is on this host.
    pub iptables_variant: Option<String>,
    /// Rules (`-A` lines) in the legacy x_tables back end; 0 when it has no tables loaded.
    pub legacy_rules: Fact<usize>,
    /// Rules in iptables' nf_tables back end.
    pub nft_rules: Fact<usize>,
    /// `family name` of every nftables table (e.g. "ip libvirt_network"), when nft is installed.
    pub nft_tables: Fact<Vec<String>>,
    /// `firewall_backend` from /etc/libvirt/network.conf, when set.
    pub libvirt_backend: Option<String>,
}

/// firewalld, when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Firewalld {
    /// Active zones and their interfaces (`firewall-cmd --get-active-zones`).
    pub zones: Vec<(String, Vec<String>)>,
    /// FirewallBackend from /etc/firewalld/firewalld.conf.
    pub backend: Option<String>,
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
    pub actual_sha256: Fact<String>,
    /// Whether the volume file exists at all (a missing one breaks every clone).
    pub volume_present: bool,
}

/// Everything the host checks read.
#[derive(Debug, Clone)]
pub struct HostFacts {
    pub filter: Fact<FilterTable>,
    /// net.ipv4.ip_forward.
    pub ip_forward: Fact<bool>,
    /// net.bridge.bridge-nf-call-iptables; None when br_netfilter is not active (the sysctl
    /// only exists while it is, as a module or built in).
    pub bridge_nf_call_iptables: Option<bool>,
    pub libvirt_networks: Fact<Vec<NetworkInfo>>,
    pub bridged_nics: Fact<Vec<BridgedNic>>,
    pub docker: Fact<HostDocker>,
    pub routes: Fact<Vec<HostRoute>>,
    /// The device of the default route (where routed VM traffic leaves).
    pub default_route_dev: Option<String>,
    /// Sockets on ports 53 and 67.
    pub dns_dhcp_listeners: Fact<Vec<Listener>>,
    pub kvm: Fact<KvmFacts>,
    /// e.g. "kvm_intel nested=Y", when a KVM module is loaded.
    pub nested: Option<String>,
    pub backends: FirewallBackends,
    /// None when firewalld is not running.
    pub firewalld: Option<Fact<Firewalld>>,
    pub pool_access: Fact<PoolAccess>,
    pub templates: Fact<Vec<TemplateImage>>,
    /// Lines of the kernel log with AppArmor denials for libvirt/qemu profiles; Err when the
    /// log could not be read; None when AppArmor is not enabled.
    pub apparmor_denials: Option<Fact<Vec<String>>>,
    /// AVC denials of sVirt/qemu in the audit log; None when SELinux is not enforcing.
    pub selinux_denials: Option<Fact<Vec<String>>>,
}

fn read_trimmed(path: &str) -> Fact<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {path}: {e}"))
}

fn sysctl_flag(path: &str) -> Fact<bool> {
    read_trimmed(path).map(|v| v == "1")
}

/// Read every host fact. Only reads; never changes anything.
pub fn gather(lv: Option<&Libvirt>, paths: &Paths) -> HostFacts {
    let libvirt_err = |what: &str| format!("{what}: libvirt is not reachable");
    HostFacts {
        filter: capture("iptables-save", &["-t", "filter"]).and_then(|t| FilterTable::parse(&t)),
        ip_forward: sysctl_flag("/proc/sys/net/ipv4/ip_forward"),
        bridge_nf_call_iptables: sysctl_flag("/proc/sys/net/bridge/bridge-nf-call-iptables").ok(),
        libvirt_networks: lv
            .ok_or_else(|| libvirt_err("networks"))
            .and_then(|lv| crate::vm::network::list(&lv.conn).map_err(|e| e.to_string())),
        bridged_nics: lv
            .ok_or_else(|| libvirt_err("VM interfaces"))
            .and_then(bridged_nics),
        docker: crate::host::docker::read(),
        routes: crate::host::routes::read().map_err(|e| e.to_string()),
        default_route_dev: capture("ip", &["-j", "-4", "route", "show", "default"])
            .ok()
            .and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok())
            .and_then(|v| v[0]["dev"].as_str().map(str::to_string)),
        dns_dhcp_listeners: crate::host::listeners::read(&[53, 67]),
        kvm: KvmFacts::read().map_err(|e| e.to_string()),
        nested: nested_virtualization(),
        backends: firewall_backends(),
        firewalld: firewalld_running().then(read_firewalld),
        pool_access: pool_access(paths),
        templates: template_images(paths),
        apparmor_denials: apparmor_denials(),
        selinux_denials: selinux_denials(),
    }
}

/// NICs of running domains (strata's or not) on host bridges, from their live XML.
fn bridged_nics(lv: &Libvirt) -> Fact<Vec<BridgedNic>> {
    let domains = lv
        .conn
        .list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        .map_err(|e| format!("listing domains: {e}"))?;
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

fn nested_virtualization() -> Option<String> {
    ["kvm_intel", "kvm_amd"].iter().find_map(|module| {
        read_trimmed(&format!("/sys/module/{module}/parameters/nested"))
            .ok()
            .map(|v| format!("{module} nested={v}"))
    })
}

/// Count `-A` lines in a *-save dump.
fn rule_count(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

fn firewall_backends() -> FirewallBackends {
    let iptables_variant = capture("iptables", &["--version"]).ok().map(|v| {
        if v.contains("legacy") {
            "legacy".to_string()
        } else {
            "nf_tables".to_string()
        }
    });
    // The legacy back end only has rules when it has tables loaded; reading
    // /proc/net/ip_tables_names first avoids running (and module-loading) iptables-legacy.
    let legacy_rules = match std::fs::read_to_string("/proc/net/ip_tables_names") {
        Ok(names) if names.trim().is_empty() => Ok(0),
        Err(_) => Ok(0),
        Ok(_) => capture("iptables-legacy-save", &[]).map(|t| rule_count(&t)),
    };
    let nft_rules = capture("iptables-nft-save", &[]).map(|t| rule_count(&t));
    let nft_tables = capture("nft", &["-j", "list", "tables"]).and_then(|j| parse_nft_tables(&j));
    let libvirt_backend = std::fs::read_to_string("/etc/libvirt/network.conf")
        .ok()
        .and_then(|conf| config_value(&conf, "firewall_backend"));
    FirewallBackends {
        iptables_variant,
        legacy_rules,
        nft_rules,
        nft_tables,
        libvirt_backend,
    }
}

/// `family name` of each table in `nft -j list tables` output (pure).
pub fn parse_nft_tables(json: &str) -> Fact<Vec<String>> {
    let doc: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("reading `nft -j list tables`: {e}"))?;
    Ok(doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let table = item.get("table")?;
            Some(format!(
                "{} {}",
                table["family"].as_str()?,
                table["name"].as_str()?
            ))
        })
        .collect())
}

/// `key = "value"` from a libvirt-style config file, ignoring comments (pure).
pub fn config_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

fn firewalld_running() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .map(|c| c.trim() == "firewalld")
                .unwrap_or(false)
        })
}

fn read_firewalld() -> Fact<Firewalld> {
    let zones = capture("firewall-cmd", &["--get-active-zones"])?;
    Ok(Firewalld {
        zones: parse_active_zones(&zones),
        backend: std::fs::read_to_string("/etc/firewalld/firewalld.conf")
            .ok()
            .and_then(|c| {
                c.lines().find_map(|l| {
                    l.trim()
                        .strip_prefix("FirewallBackend=")
                        .map(|v| v.trim().to_string())
                })
            }),
    })
}

/// `firewall-cmd --get-active-zones`: a zone name on its own line, then indented
/// `interfaces: a b` / `sources: ...` lines (pure).
pub fn parse_active_zones(text: &str) -> Vec<(String, Vec<String>)> {
    let mut zones: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let name = line.split_whitespace().next().unwrap_or_default();
            zones.push((name.to_string(), Vec::new()));
        } else if let (Some(rest), Some(zone)) =
            (line.trim().strip_prefix("interfaces:"), zones.last_mut())
        {
            zone.1.extend(rest.split_whitespace().map(str::to_string));
        }
    }
    zones
}

fn pool_access(paths: &Paths) -> Fact<PoolAccess> {
    let qemu = QemuIdentity::discover().map_err(|e| e.to_string())?;
    let pool_dir = paths.pool_dir();
    // Anything inside the pool stands for the pool: qemu must reach the directory itself.
    let blocked_at = qemu.blocked_directory(&pool_dir.join("volume"));
    Ok(PoolAccess {
        qemu_user: qemu.user,
        pool_dir,
        blocked_at,
    })
}

fn template_images(paths: &Paths) -> Fact<Vec<TemplateImage>> {
    let search = crate::template::search_path(&paths.state.join("imported"));
    let templates = crate::template::list(&search).map_err(|e| e.to_string())?;
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
fn volume_sha256(template_dir: &Path, volume: &Path) -> Fact<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(volume).map_err(|e| format!("{}: {e}", volume.display()))?;
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
    let sum = crate::digest::sha256_file(volume).map_err(|e| e.to_string())?;
    // A cache that cannot be written only costs the next run a rehash.
    let _ = std::fs::write(&cache, format!("{stamp} {sum}\n"));
    Ok(sum)
}

fn apparmor_denials() -> Option<Fact<Vec<String>>> {
    let enabled = read_trimmed("/sys/module/apparmor/parameters/enabled").ok()?;
    if enabled != "Y" {
        return None;
    }
    Some(
        capture("dmesg", &[])
            .or_else(|why| std::fs::read_to_string("/var/log/kern.log").map_err(|_| why))
            .map(|log| libvirt_denials(&log)),
    )
}

fn selinux_denials() -> Option<Fact<Vec<String>>> {
    if read_trimmed("/sys/fs/selinux/enforce").ok()? != "1" {
        return None;
    }
    Some(
        std::fs::read_to_string("/var/log/audit/audit.log")
            .map(|log| svirt_denials(&log))
            .map_err(|e| format!("cannot read /var/log/audit/audit.log: {e}")),
    )
}

/// SELinux AVC denials of sVirt's domains or qemu in an audit log (pure).
pub fn svirt_denials(audit_log: &str) -> Vec<String> {
    audit_log
        .lines()
        .filter(|l| l.contains("avc:") && l.contains("denied"))
        .filter(|l| l.contains("svirt") || l.contains("qemu"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// AppArmor denials of libvirt's and qemu's profiles in a kernel log (pure).
pub fn libvirt_denials(kernel_log: &str) -> Vec<String> {
    kernel_log
        .lines()
        .filter(|l| l.contains("apparmor=\"DENIED\""))
        .filter(|l| l.contains("libvirt") || l.contains("qemu"))
        .map(|l| l.trim().to_string())
        .collect()
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

    #[test]
    fn reads_nft_tables_and_libvirt_backend() {
        // Shape of `nft -j list tables` (nftables 1.0.6) with libvirt's nftables backend.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"table": {"family": "ip", "name": "libvirt_network", "handle": 7}}]}"#;
        assert_eq!(
            parse_nft_tables(json).unwrap(),
            vec!["ip filter".to_string(), "ip libvirt_network".to_string()]
        );
        let conf = "# firewall_backend = \"iptables\"\nfirewall_backend = \"nftables\"\n";
        assert_eq!(
            config_value(conf, "firewall_backend").as_deref(),
            Some("nftables")
        );
    }

    #[test]
    fn reads_firewalld_zones() {
        let text = "docker\n  interfaces: docker0 br-1a2b3c4d5e6f\nlibvirt\n  interfaces: virbr0\npublic (default)\n  interfaces: eth0\n  sources: 10.0.0.0/8\n";
        let zones = parse_active_zones(text);
        assert_eq!(zones.len(), 3);
        assert_eq!(zones[0].1, vec!["docker0", "br-1a2b3c4d5e6f"]);
        assert_eq!(zones[2].0, "public");
        assert_eq!(zones[2].1, vec!["eth0"]);
    }

    #[test]
    fn picks_libvirt_denials() {
        let log = "[ 12.3] audit: type=1400 apparmor=\"DENIED\" operation=\"open\" profile=\"libvirt-2f1e\" name=\"/srv/pool/x.qcow2\"\n[ 13.0] apparmor=\"DENIED\" profile=\"cupsd\"\n[ 14] eth0: link up\n";
        let d = libvirt_denials(log);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("libvirt-2f1e"));
        let audit = "type=AVC msg=audit(1700000000.1:42): avc:  denied  { read } for pid=901 comm=\"qemu-kvm\" name=\"disk.qcow2\" scontext=system_u:system_r:svirt_t:s0:c1,c2 tcontext=unconfined_u:object_r:user_home_t:s0 tclass=file\ntype=AVC msg=audit(1.2:3): avc:  denied  { write } for comm=\"httpd\" scontext=system_u:system_r:httpd_t:s0\n";
        assert_eq!(svirt_denials(audit).len(), 1);
    }
}
