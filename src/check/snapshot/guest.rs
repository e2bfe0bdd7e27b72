//! What the guest checks read from one VM, gathered over one SSH login along its route: the
//! guest's facts (guest/facts), the check script (driver folders, daemon.json validity) and,
//! when Docker runs, the Docker API through the SSH tunnel (info, networks, running
//! containers). What strata's engine layer expects of the guest's storage is added by the
//! assembly layer (it is the engine's decision, and check does not call engine).

use crate::error::{Error, ErrorKind, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::guest::facts::{EngineVersion, GuestFacts};
use crate::guest::{sftp, ssh, Route};
use crate::host::docker::DAEMON_JSON;
use bollard::models::{Network, SystemInfo};
use std::collections::BTreeMap;
use std::time::Duration;

/// Read-only facts only `strata check` needs (driver folders, daemon.json validity).
const CHECK_SCRIPT: &str = include_str!("../../../engine-templates/check-facts.sh");

/// What `check-facts.sh` printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckScriptFacts {
    /// Driver folders present under /var/lib/docker.
    pub driver_dirs: Vec<String>,
    /// daemon.json changed after dockerd started (it has not been read by the running engine).
    pub daemon_json_newer_than_dockerd: bool,
    /// Some(Ok) valid, Some(Err(what dockerd said)) invalid, None when the engine cannot
    /// validate (older than 23.0) or there is no daemon.json.
    pub daemon_json_valid: Option<std::result::Result<(), String>>,
}

/// One running container, reduced to what the checks judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerView {
    pub name: String,
    /// HostConfig.Memory in bytes; 0 = unlimited.
    pub memory_limit: i64,
    pub log_driver: String,
    pub log_opts: std::collections::HashMap<String, String>,
}

/// The engine as its API shows it.
#[derive(Debug, Clone)]
pub struct GuestDockerState {
    pub info: SystemInfo,
    pub networks: Vec<Network>,
    pub containers: Vec<ContainerView>,
    /// /etc/docker/daemon.json: None when absent, Err when it is not JSON.
    pub daemon_json: Option<Result<serde_json::Value>>,
}

/// Everything the guest checks read about one VM.
#[derive(Debug, Clone)]
pub struct GuestSnapshot {
    pub vm: String,
    pub facts: Result<GuestFacts>,
    pub script: Result<CheckScriptFacts>,
    /// An error says why the engine could not be asked (not installed, not running).
    pub docker: Result<GuestDockerState>,
    /// None until the assembly layer adds the engine's view (and when the facts are missing).
    pub storage: Option<StorageExpectation>,
}

/// What strata's engine layer expects of the storage under Docker's data-root in this guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageExpectation {
    /// The engine version judged: the one running, the one installed, or the one an install
    /// would bring.
    pub engine: EngineVersion,
    /// The driver strata recorded when it configured the engine.
    pub recorded: Option<String>,
    /// The driver strata's storage decision picks for these facts (policy auto, no data disk).
    pub decided: Option<String>,
    /// For each driver strata may configure (overlay2, btrfs, devicemapper) that cannot work
    /// here: why not.
    pub unsupported: BTreeMap<String, String>,
}

impl GuestSnapshot {
    /// A VM that could not be reached at all: every check skips with the reason.
    pub fn unreachable(vm: &str, why: Error) -> GuestSnapshot {
        GuestSnapshot {
            vm: vm.to_string(),
            facts: Err(why.clone()),
            script: Err(why.clone()),
            docker: Err(why),
            storage: None,
        }
    }
}

/// Log into the VM and read everything; only reads.
pub fn gather(route: &Route, vm: &str) -> GuestSnapshot {
    let session = match ssh::connect(route, Duration::from_secs(15)) {
        Ok(s) => s,
        Err(e) => return GuestSnapshot::unreachable(vm, e),
    };
    let facts = crate::guest::facts::gather(&session);
    let script =
        ssh::run_checked(&session, &ssh::sh_c(CHECK_SCRIPT)).map(|out| parse_check_script(&out));
    let daemon_json = sftp::read_file(&session, DAEMON_JSON).map(|bytes| {
        bytes.map(|b| {
            serde_json::from_slice(&b).map_err(|e| Error::failed(format!("not JSON: {e}")))
        })
    });
    let not_running = |why: &str| Err(Error::new(ErrorKind::NotFound, why));
    let docker = match &facts {
        Ok(f) if f.engine_package.is_none() => not_running("Docker is not installed"),
        Ok(f) if !f.docker_active => not_running("Docker is installed but not running"),
        Err(why) => Err(why.clone()),
        Ok(_) => daemon_json.and_then(|daemon_json| read_docker(route, session, daemon_json)),
    };
    GuestSnapshot {
        vm: vm.to_string(),
        facts,
        script,
        docker,
        storage: None,
    }
}

fn read_docker(
    target: &Route,
    session: ssh2::Session,
    daemon_json: Option<Result<serde_json::Value>>,
) -> Result<GuestDockerState> {
    let docker = GuestDocker::over(target, session)?;
    let api = &docker.docker;
    let info = docker.run(api.info()).map_err(docker_error)?;
    let networks = docker.run(api.list_networks(None)).map_err(docker_error)?;
    let listed = docker
        .run(api.list_containers(None))
        .map_err(docker_error)?;
    let mut containers = Vec::new();
    for summary in listed {
        let Some(id) = summary.id else { continue };
        // A container removed between listing and inspecting is simply not there any more.
        let Ok(c) = docker.run(api.inspect_container(&id, None)) else {
            continue;
        };
        let host = c.host_config.unwrap_or_default();
        let log = host.log_config.clone().unwrap_or_default();
        containers.push(ContainerView {
            name: c.name.unwrap_or(id).trim_start_matches('/').to_string(),
            memory_limit: host.memory.unwrap_or(0),
            log_driver: log.typ.unwrap_or_default(),
            log_opts: log.config.unwrap_or_default(),
        });
    }
    Ok(GuestDockerState {
        info,
        networks,
        containers,
        daemon_json,
    })
}

/// Parse check-facts.sh output (pure).
pub fn parse_check_script(text: &str) -> CheckScriptFacts {
    let mut facts = CheckScriptFacts::default();
    let mut json_mtime: Option<u64> = None;
    let mut started: Option<u64> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        match key {
            "driver_dir" => facts.driver_dirs.push(value.to_string()),
            "daemon_json_mtime" => json_mtime = value.parse().ok(),
            "dockerd_started" => started = value.parse().ok(),
            "daemon_json_valid" => {
                facts.daemon_json_valid = match value.split_once(' ').unwrap_or((value, "")) {
                    ("yes", _) => Some(Ok(())),
                    ("no", said) => Some(Err(said.trim().to_string())),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    facts.daemon_json_newer_than_dockerd =
        matches!((json_mtime, started), (Some(m), Some(s)) if m > s);
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_check_script() {
        let f = parse_check_script(
            "driver_dir=overlay2\ndriver_dir=devicemapper\ndaemon_json_mtime=1700000100\ndockerd_started=1700000000\ndaemon_json_valid=unknown\n",
        );
        assert_eq!(f.driver_dirs, vec!["overlay2", "devicemapper"]);
        assert!(f.daemon_json_newer_than_dockerd);
        assert_eq!(f.daemon_json_valid, None);
        let bad = parse_check_script(
            "daemon_json_valid=no unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives don't match any configuration option: bogus\n",
        );
        assert!(bad
            .daemon_json_valid
            .unwrap()
            .unwrap_err()
            .contains("bogus"));
        let fresh =
            parse_check_script("daemon_json_mtime=1\ndockerd_started=5\ndaemon_json_valid=yes\n");
        assert!(!fresh.daemon_json_newer_than_dockerd);
        assert_eq!(fresh.daemon_json_valid, Some(Ok(())));
    }
}
