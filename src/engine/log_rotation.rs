//! Log rotation for json-file logs in a guest, without stopping its containers (the fix
//! `strata check --fix` applies for guest.logging): live-restore goes in first and is reloaded
//! (SIGHUP), then the full change is applied with a restart (validated, and rolled back if
//! Docker does not come back).

use crate::engine::config::{with_log_rotation, DAEMON_JSON_PATH};
use crate::engine::scripts::{self, apply_daemon_json};
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::guest::facts::EngineVersion;
use crate::guest::{sftp, ssh, Route};
use std::time::{Duration, Instant};

/// Rotation for json-file logs in the guest without stopping its containers: live-restore
/// goes in first and is reloaded (SIGHUP), then the full change is applied with a restart
/// (validated, and rolled back if Docker does not come back).
pub fn apply(target: &Route, vm: &str) -> Result<String> {
    let session = ssh::connect(target, Duration::from_secs(15))?;
    let current: serde_json::Value = match sftp::read_file(&session, DAEMON_JSON_PATH)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::failed(format!("{DAEMON_JSON_PATH} in {vm} is not JSON: {e}"))
                .with_hint("fix it by hand first; strata does not rewrite a file it cannot read")
        })?,
        None => serde_json::json!({}),
    };
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
        let text = serde_json::to_string_pretty(&staged)? + "\n";
        sftp::upload(
            &session,
            &mut text.as_bytes(),
            "/etc/docker/daemon.json.strata-new",
            0o644,
        )?;
        let reload = |step: &str| {
            let command = format!(
                "{} strata-reload {step}",
                ssh::sh_c(scripts::RELOAD_DAEMON_JSON)
            );
            ssh::run_checked(&session, &command)
        };
        reload("apply").map_err(|e| e.context("reloading Docker with live-restore"))?;
        // The previous daemon.json is kept until Docker shows live-restore on; otherwise it
        // goes back, so a failed fix leaves the guest as it was.
        if let Err(e) = wait_for_live_restore(&docker, vm) {
            return Err(match reload("revert") {
                Ok(_) => e.with_hint(
                    "the previous daemon.json is back in place; see `journalctl -u docker` in the VM",
                ),
                Err(back) => e.with_hint(format!(
                    "putting the previous daemon.json back also failed ({back}): restore /etc/docker/daemon.json.strata-prev by hand"
                )),
            });
        }
        reload("keep")?;
        steps.push("live-restore on (reloaded)");
    }
    let text = serde_json::to_string_pretty(&full)? + "\n";
    apply_daemon_json(&session, &text, engine)
        .map_err(|e| e.context(format!("restarting Docker in {vm}")))?;
    steps.push("log-opts max-size/max-file set, Docker restarted");
    Ok(format!("applied: {}", steps.join("; ")))
}

fn wait_for_live_restore(docker: &GuestDocker, vm: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = docker.run(docker.docker.info()).map_err(docker_error)?;
        if info.live_restore_enabled == Some(true) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "Docker in {vm} did not turn live-restore on after a reload; nothing was restarted"
            )));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
