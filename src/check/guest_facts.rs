//! What the guest checks read from one VM, gathered over one SSH login: the engine's facts
//! script (release, kernel, filesystem under data-root, NIC MTU, the guest's networks,
//! strata's record), the check script (driver folders, daemon.json validity) and, when
//! Docker runs, the Docker API through the SSH tunnel (info, networks, running containers).

use crate::check::facts::Fact;
use crate::engine::facts::GuestFacts;
use crate::engine::scripts;
use crate::guest::docker::{docker_error, GuestDocker};
use crate::guest::ssh;
use crate::state::Paths;
use crate::vm::Libvirt;
use bollard::models::{Network, SystemInfo};
use std::time::Duration;

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
    pub daemon_json: Option<std::result::Result<serde_json::Value, String>>,
}

/// Everything the guest checks read about one VM.
#[derive(Debug, Clone)]
pub struct GuestCheckFacts {
    pub vm: String,
    pub facts: Fact<GuestFacts>,
    pub script: Fact<CheckScriptFacts>,
    /// Err says why the engine could not be asked (not installed, not running).
    pub docker: Fact<GuestDockerState>,
}

impl GuestCheckFacts {
    /// Facts for a VM that could not be reached at all: every check skips with the reason.
    pub fn unreachable(vm: &str, why: &str) -> GuestCheckFacts {
        GuestCheckFacts {
            vm: vm.to_string(),
            facts: Err(why.to_string()),
            script: Err(why.to_string()),
            docker: Err(why.to_string()),
        }
    }
}

/// Log into the VM and read everything; only reads.
pub fn gather(lv: &Libvirt, paths: &Paths, vm: &str) -> GuestCheckFacts {
    let target = match crate::guest::Route::of_vm(lv, paths, vm) {
        Ok(t) => t,
        Err(e) => return GuestCheckFacts::unreachable(vm, e.message()),
    };
    let session = match ssh::connect(&target, Duration::from_secs(15)) {
        Ok(s) => s,
        Err(e) => return GuestCheckFacts::unreachable(vm, e.message()),
    };
    let facts = crate::engine::facts::gather(&session).map_err(|e| e.to_string());
    let script = ssh::run_checked(&session, &scripts::sh_c(scripts::CHECK_FACTS))
        .map(|out| parse_check_script(&out))
        .map_err(|e| e.to_string());
    let daemon_json =
        crate::guest::sftp::read_file(&session, crate::engine::config::DAEMON_JSON_PATH)
            .map_err(|e| e.to_string())
            .map(|bytes| {
                bytes.map(|b| serde_json::from_slice(&b).map_err(|e| format!("not JSON: {e}")))
            });
    let docker = match &facts {
        Ok(f) if f.engine_package.is_none() => Err("Docker is not installed".to_string()),
        Ok(f) if !f.docker_active => Err("Docker is installed but not running".to_string()),
        Err(why) => Err(why.clone()),
        Ok(_) => daemon_json.and_then(|daemon_json| {
            read_docker(&target, session, daemon_json).map_err(|e| e.to_string())
        }),
    };
    GuestCheckFacts {
        vm: vm.to_string(),
        facts,
        script,
        docker,
    }
}

fn read_docker(
    target: &crate::guest::Route,
    session: ssh2::Session,
    daemon_json: Option<std::result::Result<serde_json::Value, String>>,
) -> crate::error::Result<GuestDockerState> {
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
