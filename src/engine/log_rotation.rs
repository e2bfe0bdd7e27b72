//! Log rotation for json-file logs in a guest, without stopping its containers (the fix
//! `strata check --fix` applies for guest.logging): live-restore goes in first and is reloaded
//! (SIGHUP), then the full change is applied with a restart (validated, and rolled back if
//! Docker does not come back). A swarm node is the exception: Docker refuses live-restore in
//! swarm mode, so its restart stops and starts its containers, as the check's fix says.

use crate::engine::config::with_log_rotation;
use crate::engine::live_restore;
use crate::engine::scripts::apply_daemon_json;
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, in_swarm_mode, GuestDocker};
use crate::guest::facts::EngineVersion;
use crate::guest::{ssh, Route};
use std::time::Duration;

/// Rotation for json-file logs in the guest without stopping its containers: live-restore
/// goes in first and is reloaded (SIGHUP), then the full change is applied with a restart
/// (validated, and rolled back if Docker does not come back). On a swarm node live-restore is
/// left off and the restart stops the containers until Docker is back.
pub fn apply(target: &Route, vm: &str) -> Result<String> {
    let session = ssh::connect(target, Duration::from_secs(15))?;
    let current = live_restore::read_daemon_json(&session, vm)?;
    let docker = GuestDocker::connect(target)?;
    let info = docker.run(docker.docker.info()).map_err(docker_error)?;
    let swarm_node = in_swarm_mode(&info);
    let (staged, full) = with_log_rotation(&current, !swarm_node)?;
    if full == current {
        return Ok("already in place".into());
    }
    let engine = info
        .server_version
        .as_deref()
        .and_then(EngineVersion::parse)
        .ok_or_else(|| Error::failed(format!("Docker in {vm} reports no version")))?;
    let mut steps = Vec::new();
    if !swarm_node && info.live_restore_enabled != Some(true) {
        // The previous daemon.json is kept until Docker shows live-restore on; otherwise it
        // goes back, so a failed fix leaves the guest as it was.
        live_restore::reload_with(&session, &docker, vm, &staged, true)?;
        steps.push("live-restore on (reloaded)");
    }
    let text = serde_json::to_string_pretty(&full)? + "\n";
    apply_daemon_json(&session, &text, engine)
        .map_err(|e| e.context(format!("restarting Docker in {vm}")))?;
    steps.push(if swarm_node {
        "log-opts max-size/max-file set, Docker restarted (a swarm node: live-restore stays off, its containers were restarted with Docker)"
    } else {
        "log-opts max-size/max-file set, Docker restarted"
    });
    Ok(format!("applied: {}", steps.join("; ")))
}
