//! What strata intends Docker in a guest to be — driver, data-root, logging, address ranges,
//! MTU — and daemon.json rendered from it (engine-templates/daemon.json.j2). The same intent is
//! what verification compares `docker info` with, and what the guest keeps in
//! /etc/strata/engine.json so that `engine info` can say why.

use crate::engine::addresses::{AddressPool, DockerRanges};
use crate::engine::decision::{Decision, Driver, Layout};
use crate::error::{Error, Result};
use crate::guest::facts::EngineVersion;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;

pub const DATA_ROOT: &str = "/var/lib/docker";
/// Where the guest keeps strata's record of its engine.
pub const RECORD_PATH: &str = "/etc/strata/engine.json";
pub const DAEMON_JSON_PATH: &str = crate::host::docker::DAEMON_JSON;
/// The thin pool `--engine-storage devicemapper` makes (engines < 25 only).
const THIN_POOL: &str = "/dev/mapper/strata-thinpool";

/// The log driver: `local` rotates by itself; json-file only with max-size/max-file (the
/// paper's lesson: unrotated json-file logs grew until the disk was full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    Local,
    JsonFile,
}

impl LogDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            LogDriver::Local => "local",
            LogDriver::JsonFile => "json-file",
        }
    }
}

impl FromStr for LogDriver {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "local" => Ok(LogDriver::Local),
            "json-file" => Ok(LogDriver::JsonFile),
            _ => Err(Error::bad_input(format!("unknown log driver '{s}'"))
                .with_hint("use local (rotated, compact) or json-file (rotated by strata's max-size/max-file)")),
        }
    }
}

/// Everything strata decides about one guest's Docker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineIntent {
    pub storage_driver: String,
    pub storage_opts: Vec<String>,
    pub data_root: String,
    pub log_driver: LogDriver,
    pub log_opts: BTreeMap<String, String>,
    pub ranges: DockerRanges,
    pub mtu: u32,
    /// Docker 29+ defaults to the containerd image store, which ignores storage-driver and
    /// keeps data outside data-root (STO-6): strata turns it off there.
    pub containerd_snapshotter_off: bool,
    /// "2" or "1": what `docker info` must report as CgroupVersion.
    pub cgroup_version: String,
    /// Containers keep running while dockerd restarts: on, except on a swarm node (Docker
    /// refuses swarm mode with it).
    #[serde(default = "live_restore_default")]
    pub live_restore: bool,
}

fn live_restore_default() -> bool {
    true
}

impl EngineIntent {
    pub fn new(
        decision: &Decision,
        engine: EngineVersion,
        log_driver: LogDriver,
        ranges: DockerRanges,
        mtu: u32,
        cgroup_version: &str,
    ) -> EngineIntent {
        let storage_opts = if decision.layout == Layout::LvmThinPool {
            vec![
                format!("dm.thinpooldev={THIN_POOL}"),
                "dm.use_deferred_removal=true".to_string(),
                "dm.use_deferred_deletion=true".to_string(),
            ]
        } else {
            Vec::new()
        };
        let log_opts = BTreeMap::from([
            ("max-size".to_string(), "20m".to_string()),
            ("max-file".to_string(), "5".to_string()),
        ]);
        EngineIntent {
            storage_driver: decision.driver.as_str().to_string(),
            storage_opts,
            data_root: DATA_ROOT.to_string(),
            log_driver,
            log_opts,
            ranges,
            mtu,
            containerd_snapshotter_off: engine >= EngineVersion::new(29, 0, 0),
            cgroup_version: cgroup_version.to_string(),
            live_restore: true,
        }
    }

    pub fn driver_is(&self, driver: Driver) -> bool {
        self.storage_driver == driver.as_str()
    }

    /// daemon.json for this intent.
    pub fn daemon_json(&self) -> Result<String> {
        let pools: Vec<&AddressPool> = self.ranges.address_pools.iter().collect();
        let text = crate::engine::scripts::render(
            crate::engine::scripts::DAEMON_JSON,
            &serde_json::json!({
                "data_root": self.data_root,
                "storage_driver": self.storage_driver,
                "storage_opts": self.storage_opts,
                "containerd_snapshotter_off": self.containerd_snapshotter_off,
                "log_driver": self.log_driver.as_str(),
                "log_opts": self.log_opts,
                "bip": self.ranges.bip,
                "address_pools": pools,
                "mtu": self.mtu,
                "live_restore": self.live_restore,
            }),
        )?;
        Ok(text + "\n")
    }
}

/// An existing daemon.json with log rotation for json-file (max-size/max-file, the values
/// strata installs with) and, when `live_restore` (not on a swarm node), live-restore on;
/// every other key stays as the user wrote it. Returns the JSON with live-restore only (what
/// to reload first) and the full result.
pub fn with_log_rotation(
    current: &serde_json::Value,
    live_restore: bool,
) -> Result<(serde_json::Value, serde_json::Value)> {
    let mut staged = current.clone();
    let map = staged.as_object_mut().ok_or_else(|| {
        Error::failed(format!("{DAEMON_JSON_PATH} is not a JSON object"))
            .with_hint("fix it by hand, or let `strata engine install VM` rewrite it")
    })?;
    if live_restore {
        map.insert("live-restore".into(), serde_json::Value::Bool(true));
    }
    let mut full = staged.clone();
    let driver = full
        .get("log-driver")
        .and_then(|d| d.as_str())
        .unwrap_or("json-file");
    if driver == "json-file" {
        let opts = full
            .as_object_mut()
            .map(|m| m.entry("log-opts").or_insert_with(|| serde_json::json!({})));
        if let Some(serde_json::Value::Object(opts)) = opts {
            // log-opts values must be strings; Docker refuses numbers.
            opts.entry("max-size").or_insert_with(|| "20m".into());
            opts.entry("max-file").or_insert_with(|| "5".into());
        }
    }
    Ok((staged, full))
}

/// What the guest keeps in /etc/strata/engine.json: the intent, the decision with its reasons,
/// and how the engine got there.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineRecord {
    pub intent: EngineIntent,
    pub driver_reasons: Vec<String>,
    pub layout: String,
    pub source: String,
    pub engine_package: String,
    pub installed: String,
}

impl EngineRecord {
    /// strata's record among the guest's facts, when it is there and readable (one it cannot
    /// read counts as none: the next install rewrites it).
    pub fn from_facts(facts: &crate::guest::facts::GuestFacts) -> Option<EngineRecord> {
        facts
            .engine_record
            .clone()
            .and_then(|json| serde_json::from_value(json).ok())
    }

    pub fn new(
        intent: EngineIntent,
        decision: &Decision,
        source: &str,
        engine_package: &str,
    ) -> EngineRecord {
        EngineRecord {
            intent,
            driver_reasons: decision.reasons.clone(),
            layout: serde_json::to_value(decision.layout)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            source: source.to_string(),
            engine_package: engine_package.to_string(),
            installed: crate::units::now_rfc3339(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::facts::Backing;

    fn decision(driver: Driver, layout: Layout) -> Decision {
        Decision {
            driver,
            layout,
            backing: Backing::Ext4 { filetype: true },
            reasons: vec![],
        }
    }

    #[test]
    fn log_rotation_keeps_the_users_keys() {
        let current = serde_json::json!({"log-driver": "json-file", "bip": "10.9.0.1/24", "log-opts": {"max-file": "2"}});
        let (staged, full) = with_log_rotation(&current, true).unwrap();
        assert_eq!(staged["live-restore"], true);
        assert!(staged.get("log-opts").unwrap().get("max-size").is_none());
        assert_eq!(full["bip"], "10.9.0.1/24");
        assert_eq!(full["log-opts"]["max-size"], "20m");
        assert_eq!(full["log-opts"]["max-file"], "2");
        // No log-driver key means json-file, Docker's default.
        let (_, full) = with_log_rotation(&serde_json::json!({}), true).unwrap();
        assert_eq!(full["log-opts"]["max-size"], "20m");
        let (_, full) =
            with_log_rotation(&serde_json::json!({"log-driver": "local"}), true).unwrap();
        assert!(full.get("log-opts").is_none());
        assert!(with_log_rotation(&serde_json::json!([1]), true).is_err());
    }

    /// On a swarm node live-restore stays as it is: Docker refuses it in swarm mode, and a
    /// restart with it on would take the node out of its swarm.
    #[test]
    fn log_rotation_on_a_swarm_node_leaves_live_restore_alone() {
        let current = serde_json::json!({"log-driver": "json-file", "live-restore": false});
        let (staged, full) = with_log_rotation(&current, false).unwrap();
        assert_eq!(staged, current);
        assert_eq!(full["live-restore"], false);
        assert_eq!(full["log-opts"]["max-size"], "20m");
    }

    /// daemon.json for an intent with Docker's default ranges, parsed back.
    fn rendered(
        driver: Driver,
        layout: Layout,
        engine: EngineVersion,
        log: LogDriver,
        mtu: u32,
    ) -> serde_json::Value {
        let ranges = crate::engine::addresses::choose(&[]).unwrap();
        let intent = EngineIntent::new(&decision(driver, layout), engine, log, ranges, mtu, "2");
        serde_json::from_str(&intent.daemon_json().unwrap()).unwrap()
    }

    #[test]
    fn daemon_json_is_json_with_every_key_explicit() {
        let json = rendered(
            Driver::Overlay2,
            Layout::RootFs,
            EngineVersion::new(20, 10, 24),
            LogDriver::Local,
            1450,
        );
        assert_eq!(json["storage-driver"], "overlay2");
        assert_eq!(json["data-root"], "/var/lib/docker");
        assert_eq!(json["log-driver"], "local");
        assert_eq!(json["log-opts"]["max-size"], "20m");
        assert_eq!(json["bip"], "172.17.0.1/24");
        assert_eq!(json["default-address-pools"][0]["base"], "172.18.0.0/16");
        assert_eq!(json["default-address-pools"][0]["size"], 24);
        assert_eq!(json["mtu"], 1450);
        assert_eq!(json["live-restore"], true);
        // A swarm node's: live-restore off (Docker refuses swarm mode with it).
        let mut swarm_node = EngineIntent::new(
            &decision(Driver::Overlay2, Layout::RootFs),
            EngineVersion::new(20, 10, 24),
            LogDriver::Local,
            crate::engine::addresses::choose(&[]).unwrap(),
            1450,
            "2",
        );
        swarm_node.live_restore = false;
        let off: serde_json::Value =
            serde_json::from_str(&swarm_node.daemon_json().unwrap()).unwrap();
        assert_eq!(off["live-restore"], false);
        // Keys an engine of this version does not know would stop dockerd (CFG-1).
        assert!(json.get("features").is_none());
        assert!(json.get("storage-opts").is_none());
    }

    #[test]
    fn new_engines_keep_the_graphdriver_and_thin_pools_get_their_options() {
        let json = rendered(
            Driver::Overlay2,
            Layout::LvmXfs,
            EngineVersion::new(29, 0, 1),
            LogDriver::JsonFile,
            1500,
        );
        assert_eq!(json["features"]["containerd-snapshotter"], false);
        assert_eq!(json["log-driver"], "json-file");
        assert_eq!(json["log-opts"]["max-file"], "5");

        let json = rendered(
            Driver::Devicemapper,
            Layout::LvmThinPool,
            EngineVersion::new(20, 10, 24),
            LogDriver::Local,
            1500,
        );
        assert_eq!(json["storage-driver"], "devicemapper");
        assert_eq!(
            json["storage-opts"][0],
            "dm.thinpooldev=/dev/mapper/strata-thinpool"
        );
    }

    #[test]
    fn unknown_log_driver_is_refused() {
        let err = "syslog".parse::<LogDriver>().unwrap_err();
        assert!(err.message().contains("syslog"));
        assert_eq!(
            "json-file".parse::<LogDriver>().unwrap(),
            LogDriver::JsonFile
        );
    }
}
