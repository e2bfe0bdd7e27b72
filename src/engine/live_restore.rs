//! Docker's live-restore in a guest, switched without a restart: daemon.json is swapped and
//! dockerd reloaded (SIGHUP; live-restore is one of the settings Docker reloads), the previous
//! file kept until Docker shows the new value, and put back when it does not. On is strata's
//! default (containers survive a daemon restart); swarm mode needs it off (Docker refuses
//! `swarm init` and `join` with it on).

use crate::engine::config::DAEMON_JSON_PATH;
use crate::engine::scripts;
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::guest::{sftp, ssh, Route};
use std::time::{Duration, Instant};

/// Turn live-restore `on` or off in the guest behind `target`; whether anything changed.
pub fn set(target: &Route, vm: &str, on: bool) -> Result<bool> {
    let session = ssh::connect(target, Duration::from_secs(15))?;
    let docker = GuestDocker::connect(target)?;
    let current = read_daemon_json(&session, vm)?;
    let mut wanted = current.clone();
    let map = wanted.as_object_mut().ok_or_else(|| {
        Error::failed(format!("{DAEMON_JSON_PATH} in {vm} is not a JSON object"))
            .with_hint("fix it by hand, or let `strata engine install VM` rewrite it")
    })?;
    map.insert("live-restore".into(), serde_json::Value::Bool(on));
    let running = docker
        .run(docker.docker.info())
        .map_err(docker_error)?
        .live_restore_enabled
        == Some(true);
    if wanted == current && running == on {
        return Ok(false);
    }
    reload_with(&session, &docker, vm, &wanted, on)?;
    Ok(true)
}

/// The guest's daemon.json (an empty object when there is none).
pub(crate) fn read_daemon_json(session: &ssh2::Session, vm: &str) -> Result<serde_json::Value> {
    match sftp::read_file(session, DAEMON_JSON_PATH)? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::failed(format!("{DAEMON_JSON_PATH} in {vm} is not JSON: {e}"))
                .with_hint("fix it by hand first; strata does not rewrite a file it cannot read")
        }),
        None => Ok(serde_json::json!({})),
    }
}

/// Put `json` in place of daemon.json and reload dockerd; keep it once Docker reports
/// live-restore as `on`, else put the previous file back (the guest is left as it was).
pub(crate) fn reload_with(
    session: &ssh2::Session,
    docker: &GuestDocker,
    vm: &str,
    json: &serde_json::Value,
    on: bool,
) -> Result<()> {
    let text = serde_json::to_string_pretty(json)? + "\n";
    sftp::upload(
        session,
        &mut text.as_bytes(),
        "/etc/docker/daemon.json.strata-new",
        0o644,
    )?;
    let reload = |step: &str| {
        let command = format!(
            "{} strata-reload {step}",
            ssh::sh_c(scripts::RELOAD_DAEMON_JSON)
        );
        ssh::run_checked(session, &command)
    };
    let said = if on { "on" } else { "off" };
    reload("apply").map_err(|e| e.context(format!("reloading Docker with live-restore {said}")))?;
    if let Err(e) = wait_for(docker, vm, on) {
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
    Ok(())
}

fn wait_for(docker: &GuestDocker, vm: &str, on: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = docker.run(docker.docker.info()).map_err(docker_error)?;
        if info.live_restore_enabled.unwrap_or(false) == on {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::failed(format!(
                "Docker in {vm} did not turn live-restore {} after a reload; nothing was restarted",
                if on { "on" } else { "off" }
            )));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
