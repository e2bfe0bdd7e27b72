//! After an install: read `docker info` and the default bridge through the Docker API and
//! compare them with what strata intended (conflicts.md §7.3). Any difference is reported by
//! field; Docker never gets to fall back to vfs unnoticed. The comparison is pure.

use crate::engine::addresses::AddressPool;
use crate::engine::config::EngineIntent;
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::guest::facts::Backing;
use bollard::models::{NetworkInspect, SystemInfo};
use serde::Serialize;

/// What the engine reports about itself, reduced to what strata checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    pub server_version: String,
    pub driver: String,
    pub backing_filesystem: Option<String>,
    pub supports_d_type: Option<bool>,
    pub pool_name: Option<String>,
    pub root_dir: String,
    pub logging_driver: String,
    pub cgroup_version: String,
    /// None when the engine does not report its pools.
    pub address_pools: Option<Vec<AddressPool>>,
    pub bridge_subnet: Option<String>,
    pub bridge_mtu: Option<u32>,
    pub warnings: Vec<String>,
}

/// One field that is not what strata asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

/// Ask the engine (through the tunnel) for its info and its default bridge.
pub fn observe(docker: &GuestDocker) -> Result<Observed> {
    let info = docker
        .run(docker.docker.info())
        .map_err(|e| docker_error(e).context("reading docker info"))?;
    let bridge = docker
        .run(docker.docker.inspect_network("bridge", None))
        .ok();
    Ok(from_api(&info, bridge.as_ref()))
}

/// Reduce the API's answers (pure).
pub fn from_api(info: &SystemInfo, bridge: Option<&NetworkInspect>) -> Observed {
    let status = |key: &str| {
        info.driver_status
            .iter()
            .flatten()
            .find(|pair| pair.first().map(String::as_str) == Some(key))
            .and_then(|pair| pair.get(1).cloned())
    };
    let bridge_config = bridge
        .and_then(|n| n.ipam.as_ref())
        .and_then(|ipam| ipam.config.as_ref())
        .and_then(|configs| configs.first());
    Observed {
        server_version: info.server_version.clone().unwrap_or_default(),
        driver: info.driver.clone().unwrap_or_default(),
        backing_filesystem: status("Backing Filesystem"),
        supports_d_type: status("Supports d_type").map(|v| v == "true"),
        pool_name: status("Pool Name"),
        root_dir: info.docker_root_dir.clone().unwrap_or_default(),
        logging_driver: info.logging_driver.clone().unwrap_or_default(),
        cgroup_version: info
            .cgroup_version
            .map(|v| v.to_string())
            .unwrap_or_default(),
        address_pools: info.default_address_pools.as_ref().map(|pools| {
            pools
                .iter()
                .map(|p| AddressPool {
                    base: p.base.clone().unwrap_or_default(),
                    size: p.size.unwrap_or_default().clamp(0, 32) as u8,
                })
                .collect()
        }),
        bridge_subnet: bridge_config.and_then(|c| c.subnet.clone()),
        bridge_mtu: bridge
            .and_then(|n| n.options.as_ref())
            .and_then(|o| o.get("com.docker.network.driver.mtu"))
            .and_then(|v| v.parse().ok()),
        warnings: info.warnings.clone().unwrap_or_default(),
    }
}

/// Docker's name for a backing filesystem in DriverStatus.
fn docker_fs_name(backing: &Backing) -> Option<&'static str> {
    match backing {
        Backing::Ext4 { .. } => Some("extfs"),
        Backing::Xfs { .. } => Some("xfs"),
        Backing::Btrfs => Some("btrfs"),
        _ => None,
    }
}

/// Every field that differs from the intent (pure).
pub fn compare(intent: &EngineIntent, backing: &Backing, seen: &Observed) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut expect = |field: &'static str, expected: &str, actual: &str| {
        if expected != actual {
            out.push(Mismatch {
                field,
                expected: expected.to_string(),
                actual: if actual.is_empty() {
                    "(not reported)".into()
                } else {
                    actual.to_string()
                },
            });
        }
    };
    expect("Driver", &intent.storage_driver, &seen.driver);
    if intent.storage_driver == "overlay2" {
        if let Some(fs) = docker_fs_name(backing) {
            expect(
                "Backing Filesystem",
                fs,
                seen.backing_filesystem.as_deref().unwrap_or(""),
            );
        }
        let d_type = seen
            .supports_d_type
            .map(|b| b.to_string())
            .unwrap_or_default();
        expect("Supports d_type", "true", &d_type);
    }
    if let Some(pool) = intent
        .storage_opts
        .iter()
        .find_map(|o| o.strip_prefix("dm.thinpooldev=/dev/mapper/"))
    {
        expect("Pool Name", pool, seen.pool_name.as_deref().unwrap_or(""));
    }
    expect("Docker Root Dir", &intent.data_root, &seen.root_dir);
    expect(
        "Logging Driver",
        intent.log_driver.as_str(),
        &seen.logging_driver,
    );
    expect(
        "Cgroup Version",
        &intent.cgroup_version,
        &seen.cgroup_version,
    );
    if let Some(pools) = &seen.address_pools {
        let show = |p: &[AddressPool]| {
            p.iter()
                .map(|p| format!("{}/{}", p.base, p.size))
                .collect::<Vec<_>>()
                .join(",")
        };
        expect(
            "Default Address Pools",
            &show(&intent.ranges.address_pools),
            &show(pools),
        );
    }
    let subnet = intent
        .ranges
        .bridge_subnet()
        .map(|n| n.to_string())
        .unwrap_or_default();
    expect(
        "docker0 subnet",
        &subnet,
        seen.bridge_subnet.as_deref().unwrap_or(""),
    );
    if let Some(mtu) = seen.bridge_mtu {
        expect("docker0 MTU", &intent.mtu.to_string(), &mtu.to_string());
    }
    out
}

/// The error for a non-empty list of mismatches.
pub fn mismatch_error(vm: &str, mismatches: &[Mismatch]) -> Error {
    let lines: Vec<String> = mismatches
        .iter()
        .map(|m| {
            format!(
                "  {}: expected {}, engine reports {}",
                m.field, m.expected, m.actual
            )
        })
        .collect();
    Error::failed(format!(
        "Docker in '{vm}' is not configured as strata intended:\n{}",
        lines.join("\n")
    ))
    .with_hint(format!(
        "`strata engine info {vm}` shows the engine's view; re-run `strata engine install {vm}` to converge"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::LogDriver;
    use crate::engine::decision::{Decision, Driver, Layout};
    use crate::guest::facts::EngineVersion;

    fn intent() -> EngineIntent {
        EngineIntent::new(
            &Decision {
                driver: Driver::Overlay2,
                layout: Layout::RootFs,
                backing: Backing::Ext4 { filetype: true },
                reasons: vec![],
            },
            EngineVersion::new(20, 10, 24),
            LogDriver::Local,
            crate::engine::addresses::choose(&[]).unwrap(),
            1500,
            "2",
        )
    }

    /// `docker info` of Debian 12's docker.io 20.10.24 configured by strata, as JSON.
    fn info_json() -> serde_json::Value {
        serde_json::json!({
            "ServerVersion": "20.10.24+dfsg1",
            "Driver": "overlay2",
            "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
            "DockerRootDir": "/var/lib/docker",
            "LoggingDriver": "local",
            "CgroupVersion": "2",
            "DefaultAddressPools": [{"Base": "172.18.0.0/16", "Size": 24}],
            "Warnings": null
        })
    }

    fn bridge() -> NetworkInspect {
        serde_json::from_value(serde_json::json!({
            "Name": "bridge",
            "IPAM": {"Driver": "default", "Config": [{"Subnet": "172.17.0.0/24", "Gateway": "172.17.0.1"}]},
            "Options": {"com.docker.network.driver.mtu": "1500"}
        }))
        .unwrap()
    }

    #[test]
    fn a_matching_engine_has_no_mismatch() {
        let info: SystemInfo = serde_json::from_value(info_json()).unwrap();
        let seen = from_api(&info, Some(&bridge()));
        assert_eq!(seen.backing_filesystem.as_deref(), Some("extfs"));
        assert_eq!(seen.supports_d_type, Some(true));
        assert_eq!(
            compare(&intent(), &Backing::Ext4 { filetype: true }, &seen),
            vec![]
        );
    }

    #[test]
    fn a_vfs_fallback_and_wrong_pools_are_named() {
        let mut json = info_json();
        json["Driver"] = "vfs".into();
        json["DriverStatus"] = serde_json::json!([]);
        json["LoggingDriver"] = "json-file".into();
        json["DefaultAddressPools"] = serde_json::json!([{"Base": "172.17.0.0/16", "Size": 16}]);
        let info: SystemInfo = serde_json::from_value(json).unwrap();
        let seen = from_api(&info, Some(&bridge()));
        let fields: Vec<&str> = compare(&intent(), &Backing::Ext4 { filetype: true }, &seen)
            .iter()
            .map(|m| m.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "Driver",
                "Backing Filesystem",
                "Supports d_type",
                "Logging Driver",
                "Default Address Pools"
            ]
        );
        let err = mismatch_error(
            "vm1",
            &compare(&intent(), &Backing::Ext4 { filetype: true }, &seen),
        );
        assert!(
            err.message()
                .contains("Driver: expected overlay2, engine reports vfs"),
            "{err}"
        );
    }

    #[test]
    fn engines_without_pool_reporting_are_not_blamed() {
        let mut json = info_json();
        json.as_object_mut().unwrap().remove("DefaultAddressPools");
        let info: SystemInfo = serde_json::from_value(json).unwrap();
        let seen = from_api(&info, None);
        let fields: Vec<&str> = compare(&intent(), &Backing::Ext4 { filetype: true }, &seen)
            .iter()
            .map(|m| m.field)
            .collect();
        // Without the bridge, its subnet is unknown: that is reported, pools are not.
        assert_eq!(fields, vec!["docker0 subnet"]);
    }
}
