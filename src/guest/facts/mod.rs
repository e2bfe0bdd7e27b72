//! What a guest is, as strata reads it before it decides anything: release, kernel, the
//! installed engine, what lies under Docker's data-root, the NIC's MTU, the guest's own
//! networks and strata's record of its engine. One read-only script
//! (engine-templates/facts.sh) prints key=value lines; parsing them is pure. The engine, the
//! checks and the stacks all start from these facts.

mod backing;
mod versions;

pub use backing::Backing;
pub use versions::{EngineVersion, KernelVersion};

/// Versions and filesystems the unit tests of several layers judge.
#[cfg(test)]
pub(crate) mod samples {
    use super::{Backing, EngineVersion, KernelVersion};

    pub const E20: EngineVersion = EngineVersion::new(20, 10, 24);
    pub const E25: EngineVersion = EngineVersion::new(25, 0, 0);
    pub const E29: EngineVersion = EngineVersion::new(29, 0, 1);
    pub const K61: KernelVersion = KernelVersion { major: 6, minor: 1 };
    pub const K40: KernelVersion = KernelVersion { major: 4, minor: 0 };
    pub const K310: KernelVersion = KernelVersion {
        major: 3,
        minor: 10,
    };
    pub const EXT4: Backing = Backing::Ext4 { filetype: true };
    pub const EXT4_NO_DT: Backing = Backing::Ext4 { filetype: false };
    pub const XFS1: Backing = Backing::Xfs { ftype: true };
    pub const XFS0: Backing = Backing::Xfs { ftype: false };

    pub fn other(name: &str) -> Backing {
        Backing::Other(name.into())
    }
}

use crate::error::{Error, Result};
use crate::guest::ssh;
use ipnet::Ipv4Net;
use ssh2::Session;

/// The read-only facts script (not a template: it takes no parameters).
const FACTS_SCRIPT: &str = include_str!("../../../engine-templates/facts.sh");

/// The guest as the facts script saw it.
#[derive(Debug, Clone)]
pub struct GuestFacts {
    pub release: String,
    pub kernel: KernelVersion,
    /// docker.io's Debian version when installed.
    pub engine_package: Option<String>,
    pub docker_active: bool,
    /// "2" on a unified cgroup hierarchy, "1" otherwise: what `docker info` must report.
    pub cgroup_version: String,
    pub data_root_backing: Backing,
    pub nic_mtu: u32,
    pub guest_networks: Vec<Ipv4Net>,
    pub daemon_json_sha256: Option<String>,
    /// strata's record of the engine it installed (/etc/strata/engine.json), as JSON, when
    /// there is one; the engine layer reads its fields.
    pub engine_record: Option<serde_json::Value>,
    /// Which of the packages an install may need are installed.
    pub installed: Vec<String>,
    /// The engine is a node of a swarm (Docker keeps its swarm state).
    pub swarm_member: bool,
}

/// Run the facts script in the guest.
pub fn gather(session: &Session) -> Result<GuestFacts> {
    let out = ssh::run_checked(session, &ssh::sh_c(FACTS_SCRIPT))
        .map_err(|e| e.context("reading the guest's facts"))?;
    parse(&out)
}

/// Parse the script's key=value lines (pure).
pub fn parse(text: &str) -> Result<GuestFacts> {
    let mut values: Vec<(&str, &str)> = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            values.push((k.trim(), v.trim()));
        }
    }
    let get = |key: &str| values.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let need = |key: &str| {
        get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::failed(format!("the guest's facts lack '{key}'")))
    };
    let kernel_release = need("kernel")?.to_string();
    let kernel = KernelVersion::parse(&kernel_release).ok_or_else(|| {
        Error::failed(format!("cannot read the kernel version '{kernel_release}'"))
    })?;
    let fs = need("data_root_fs")?;
    let dtype = match fs {
        "xfs" => Some(get("xfs_ftype") == Some("1")),
        "ext2/ext3" => get("ext_filetype").map(|v| v == "1"),
        _ => None,
    };
    let guest_networks = values
        .iter()
        .filter(|(k, _)| *k == "guest_net")
        .filter_map(|(_, v)| v.parse::<Ipv4Net>().ok().map(|n| n.trunc()))
        .fold(Vec::new(), |mut nets, net| {
            if !nets.contains(&net) {
                nets.push(net);
            }
            nets
        });
    Ok(GuestFacts {
        release: need("release")?.to_string(),
        kernel,
        engine_package: get("engine").filter(|v| !v.is_empty()).map(str::to_string),
        docker_active: get("docker_active") == Some("active"),
        cgroup_version: if get("cgroup_fs") == Some("cgroup2fs") {
            "2"
        } else {
            "1"
        }
        .to_string(),
        data_root_backing: Backing::from_statfs(fs, dtype),
        nic_mtu: need("nic_mtu")?
            .parse()
            .map_err(|_| Error::failed("the guest's NIC MTU is not a number"))?,
        guest_networks,
        daemon_json_sha256: get("daemon_json_sha256").map(str::to_string),
        // A record strata cannot read is treated as none: the next install rewrites it.
        engine_record: get("record").and_then(|json| serde_json::from_str(json).ok()),
        installed: values
            .iter()
            .filter(|(k, _)| *k == "installed")
            .map(|(_, v)| v.to_string())
            .collect(),
        swarm_member: get("swarm_member") == Some("1"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from a fresh debian-12 clone (engine-templates/facts.sh, TCG guest on this project's
    /// CI machine).
    const FRESH: &str = "release=bookworm\nkernel=6.1.0-50-cloud-amd64\ninstalled=apparmor\ninstalled=btrfs-progs\ninstalled=e2fsprogs\ninstalled=lvm2\ninstalled=thin-provisioning-tools\ninstalled=xfsprogs\ndocker_active=inactive\ncgroup_fs=cgroup2fs\ndata_root_fs=ext2/ext3\next_filetype=1\nnic_mtu=1500\nguest_net=10.250.9.4/24\nguest_net=10.250.9.0/24\n";

    #[test]
    fn reads_a_fresh_clone() {
        let f = parse(FRESH).unwrap();
        assert_eq!(f.release, "bookworm");
        assert_eq!(f.kernel, KernelVersion::parse("6.1.0").unwrap());
        assert_eq!(f.engine_package, None);
        assert!(!f.docker_active);
        assert_eq!(f.cgroup_version, "2");
        assert_eq!(f.data_root_backing, Backing::Ext4 { filetype: true });
        assert_eq!(f.nic_mtu, 1500);
        assert_eq!(f.installed.len(), 6);
        assert!(!f.installed.iter().any(|p| p == "docker.io"));
        assert!(!f.swarm_member);
        assert!(
            parse(&format!("{FRESH}swarm_member=1\n"))
                .unwrap()
                .swarm_member
        );
        // The address and its route are one network.
        assert_eq!(
            f.guest_networks,
            vec!["10.250.9.0/24".parse::<Ipv4Net>().unwrap()]
        );
        assert_eq!(f.daemon_json_sha256, None);
        assert!(f.engine_record.is_none());
    }

    #[test]
    fn reads_an_installed_engine_on_xfs_without_ftype() {
        let text = FRESH
            .replace(
                "installed=apparmor\n",
                "installed=apparmor\ninstalled=docker.io\nengine=20.10.24+dfsg1-1+deb12u1\n",
            )
            .replace("docker_active=inactive", "docker_active=active")
            .replace("data_root_fs=ext2/ext3", "data_root_fs=xfs")
            .replace("ext_filetype=1", "xfs_ftype=0");
        let f = parse(&text).unwrap();
        assert_eq!(
            f.engine_package.as_deref(),
            Some("20.10.24+dfsg1-1+deb12u1")
        );
        assert!(f.docker_active);
        assert_eq!(f.data_root_backing, Backing::Xfs { ftype: false });
    }

    #[test]
    fn missing_facts_are_named() {
        let err = parse("release=bookworm\n").unwrap_err();
        assert!(err.message().contains("'kernel'"), "{err}");
    }
}
