//! The guest checks, one file each, and what they share.

mod cgroup;
mod daemon_json;
mod logging;
mod memory_limits;
mod mtu;
mod storage;
mod subnets;

use crate::check::snapshot::guest::GuestDockerState;
use crate::check::GuestCheck;
use crate::guest::facts::EngineVersion;

/// Every guest check, in the order the table shows them.
pub const ALL: &[GuestCheck] = &[
    storage::CHECK,
    logging::CHECK,
    cgroup::CHECK,
    daemon_json::CHECK,
    memory_limits::CHECK,
    mtu::CHECK,
    subnets::CHECK,
];

/// The engine's version from `docker info`.
pub(crate) fn engine_version(state: &GuestDockerState) -> Option<EngineVersion> {
    state
        .info
        .server_version
        .as_deref()
        .and_then(EngineVersion::parse)
}

/// Guest facts for the checks' unit tests.
#[cfg(test)]
pub(crate) mod test_facts {
    use super::*;
    use crate::check::snapshot::guest::CheckScriptFacts;
    use crate::check::{Finding, GuestSnapshot, StorageExpectation};

    /// engine-templates/facts.sh output captured from a debian-12 clone with docker.io
    /// installed by `strata engine install` (TCG guest on this project's machine).
    pub const FACTS_WITH_DOCKER: &str = "release=bookworm\nkernel=6.1.0-50-cloud-amd64\ninstalled=apparmor\ninstalled=docker.io\nengine=20.10.24+dfsg1-1+deb12u1\ninstalled=e2fsprogs\ninstalled=xfsprogs\ndocker_active=active\ncgroup_fs=cgroup2fs\ndata_root_fs=ext2/ext3\next_filetype=1\nnic_mtu=1500\nguest_net=10.250.9.4/24\nguest_net=10.250.9.0/24\n";

    /// `docker info --format '{{json .}}'` (ClientInfo left out) in a clone of
    /// debian-12-docker on this project's machine: Docker 20.10.24, overlay2 on ext4, local logs.
    pub const DOCKER_INFO: &str = include_str!("../testdata/docker-info-guest-20.10.json");

    /// A guest running Docker 20.10 as strata installs it: overlay2 on ext4, local logs.
    pub fn guest_facts() -> GuestSnapshot {
        with_facts(FACTS_WITH_DOCKER)
    }

    /// The same guest with other facts-script output.
    pub fn with_facts(facts_script: &str) -> GuestSnapshot {
        GuestSnapshot {
            vm: "web1".into(),
            facts: crate::guest::facts::parse(facts_script),
            script: Ok(CheckScriptFacts {
                driver_dirs: vec!["overlay2".into()],
                daemon_json_newer_than_dockerd: false,
                daemon_json_valid: None,
            }),
            docker: Ok(GuestDockerState {
                info: serde_json::from_str(DOCKER_INFO).unwrap(),
                networks: Vec::new(),
                containers: Vec::new(),
                daemon_json: Some(Ok(serde_json::json!({
                    "log-driver": "local",
                    "log-opts": {"max-size": "20m", "max-file": "5"},
                    "live-restore": true
                }))),
            }),
            // What the engine layer expects of ext4 with d_type: overlay2, nothing else.
            storage: Some(StorageExpectation {
                engine: EngineVersion::new(20, 10, 24),
                recorded: None,
                decided: Some("overlay2".into()),
                unsupported: [
                    ("btrfs".to_string(), "ext4 is not btrfs".to_string()),
                    ("devicemapper".to_string(), "no thin pool".to_string()),
                ]
                .into(),
            }),
        }
    }

    pub fn docker_mut(f: &mut GuestSnapshot) -> &mut GuestDockerState {
        f.docker.as_mut().unwrap()
    }

    /// One check through the runner, as `strata check` runs it.
    pub fn judge(check: &GuestCheck, snapshot: &GuestSnapshot) -> Vec<Finding> {
        crate::check::judge_one(check, snapshot)
    }
}
