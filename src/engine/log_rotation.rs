//! Log rotation for json-file logs in a guest, without stopping its containers (the fix
//! `strata check --fix` applies for guest.logging): live-restore goes in first and is reloaded
//! (SIGHUP), then the full change is applied with a restart (validated, and rolled back if
//! Docker does not come back).

use crate::engine::config::with_log_rotation;
use crate::engine::live_restore;
use crate::engine::scripts::apply_daemon_json;
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::guest::facts::EngineVersion;
use crate::guest::{ssh, Route};
use std::time::Duration;

/// Rotation for json-file logs in the guest without stopping its containers: live-restore
/// goes in first and is reloaded (SIGHUP), then the full change is applied with a restart
/// (validated, and rolled back if Docker does not come back).
pub fn apply(target: &Route, vm: &str) -> Result<String> {
    let session = ssh::connect(target, Duration::from_secs(15))?;
    let current = live_restore::read_daemon_json(&session, vm)?;
    let (staged, full) = with_log_rotation(&current)?;
    if full == current {
        return Ok("already in place".into());
    }
    let docker = GuestDocker::connect(target)?;
    let info = docker.run(docker.docker.info()).map_err(docker_error)?;
    let engine = info
        .server_version
        .as_deref()
        .and_then(EngineVersion::parse)
        .ok_or_else(|| Error::failed(format!("Docker in {vm} reports no version")))?;
    let mut steps = Vec::new();
    if info.live_restore_enabled != Some(true) {
        // The previous daemon.json is kept until Docker shows live-restore on; otherwise it
        // goes back, so a failed fix leaves the guest as it was.
        live_restore::reload_with(&session, &docker, vm, &staged, true)?;
        steps.push("live-restore on (reloaded)");
    }
    let text = serde_json::to_string_pretty(&full)? + "\n";
    apply_daemon_json(&session, &text, engine)
        .map_err(|e| e.context(format!("restarting Docker in {vm}")))?;
    steps.push("log-opts max-size/max-file set, Docker restarted");
    Ok(format!("applied: {}", steps.join("; ")))
}
