//! Carrying out the fixes `strata check --fix` may apply: each is idempotent (it looks before
//! it changes, and says "already in place" when there is nothing to do) and reports what it
//! did. Fixes that restart a daemon on the host, reformat a disk or move a network are never
//! applied here; their findings only describe them.

use crate::check::FixAction;
use crate::command::capture;
use crate::engine::config::{with_log_rotation, DAEMON_JSON_PATH};
use crate::engine::decision::EngineVersion;
use crate::engine::scripts;
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::guest::ssh;
use crate::state::Paths;
use crate::vm::Libvirt;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Marks the iptables rules strata adds, so people (and `iptables -S`) can tell them apart.
pub const RULE_COMMENT: &str = "strata check --fix";

/// What one fix did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    #[serde(flatten)]
    pub action: FixAction,
    /// "applied: ...", "already in place", or "failed: ..."
    pub result: String,
    pub ok: bool,
}

/// Apply each action once, in order; a failed fix is reported and the others still run.
pub fn apply_all(lv: Option<&Libvirt>, paths: &Paths, actions: &[FixAction]) -> Vec<Applied> {
    actions
        .iter()
        .map(|action| {
            let (result, ok) = match apply(lv, paths, action) {
                Ok(said) => (said, true),
                Err(e) => (format!("failed: {e}"), false),
            };
            Applied {
                action: action.clone(),
                result,
                ok,
            }
        })
        .collect()
}

fn apply(lv: Option<&Libvirt>, paths: &Paths, action: &FixAction) -> Result<String> {
    match action {
        FixAction::AcceptWithinBridge { chain, bridge } => {
            insert_rules(chain, &[within_bridge_rule(bridge)])
        }
        FixAction::AcceptRoutedBridge {
            chain,
            bridge,
            subnet,
        } => insert_rules(chain, &routed_bridge_rules(bridge, subnet.as_deref())),
        FixAction::KvmGroupAccess => kvm_group_access(),
        FixAction::GuestLogRotation { vm } => {
            let lv = lv.ok_or_else(|| Error::failed("libvirt is not reachable"))?;
            guest_log_rotation(lv, paths, vm)
        }
    }
}

fn with_comment(spec: &[&str]) -> Vec<String> {
    spec.iter()
        .map(|s| s.to_string())
        .chain(["-m", "comment", "--comment", RULE_COMMENT].map(String::from))
        .chain(["-j", "ACCEPT"].map(String::from))
        .collect()
}

/// `-i BR -o BR ... -j ACCEPT`: VM to VM across the bridge.
pub fn within_bridge_rule(bridge: &str) -> Vec<String> {
    with_comment(&["-i", bridge, "-o", bridge])
}

/// Out of the bridge from its subnet, and replies back into it: the same scope as libvirt's
/// LIBVIRT_FWO/LIBVIRT_FWI rules, so nothing else on the bridge gets through.
pub fn routed_bridge_rules(bridge: &str, subnet: Option<&str>) -> Vec<Vec<String>> {
    let (mut out, mut back) = (vec!["-i", bridge], vec!["-o", bridge]);
    if let Some(net) = subnet {
        out.extend(["-s", net]);
        back.extend(["-d", net]);
    }
    back.extend(["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"]);
    vec![with_comment(&out), with_comment(&back)]
}

/// Insert each rule at the top of `chain` unless `iptables -C` finds it there already.
fn insert_rules(chain: &str, rules: &[Vec<String>]) -> Result<String> {
    let mut added = Vec::new();
    for rule in rules {
        let args = |op: &str| -> Vec<String> {
            [op.to_string(), chain.to_string()]
                .into_iter()
                .chain(rule.iter().cloned())
                .collect()
        };
        let check = args("-C");
        let refs: Vec<&str> = check.iter().map(String::as_str).collect();
        if capture("iptables", &refs).is_ok() {
            continue;
        }
        let insert = args("-I");
        let refs: Vec<&str> = insert.iter().map(String::as_str).collect();
        capture("iptables", &refs).map_err(Error::failed)?;
        added.push(format!("iptables {}", insert.join(" ")));
    }
    Ok(if added.is_empty() {
        "already in place".into()
    } else {
        format!("applied: {}", added.join("; "))
    })
}

fn kvm_group_access() -> Result<String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let group = nix::unistd::Group::from_name("kvm")
        .map_err(|e| Error::failed(format!("looking up group kvm: {e}")))?
        .ok_or_else(|| {
            Error::failed("there is no group kvm on this host").with_hint(
                "install qemu-system-x86 (it creates the group) and add qemu's user to it",
            )
        })?;
    let meta =
        std::fs::metadata("/dev/kvm").map_err(|e| Error::from(e).context("reading /dev/kvm"))?;
    let done = if meta.gid() == group.gid.as_raw() && meta.mode() & 0o060 == 0o060 {
        "already in place".to_string()
    } else {
        nix::unistd::chown("/dev/kvm", None, Some(group.gid))
            .map_err(|e| Error::failed(format!("chgrp kvm /dev/kvm: {e}")))?;
        let mode = (meta.mode() & 0o7777) | 0o060;
        std::fs::set_permissions("/dev/kvm", std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::from(e).context("chmod /dev/kvm"))?;
        // libvirtd caches whether qemu can open /dev/kvm by the device's ctime in whole
        // seconds; had it looked between the chgrp and the chmod it would keep "no" (and
        // re-probe QEMU at every start). A second chmod in a new second moves the ctime on.
        std::thread::sleep(Duration::from_millis(1100));
        std::fs::set_permissions("/dev/kvm", std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::from(e).context("chmod /dev/kvm"))?;
        format!("applied: chgrp kvm /dev/kvm; chmod {mode:04o} /dev/kvm")
    };
    // Group access helps only when qemu's user is in the group: say so rather than claim a fix.
    let after = crate::host::accel::KvmFacts::read()?;
    if !after.usable_by_qemu {
        return Err(Error::failed(format!(
            "{done}, but qemu's user '{}' still cannot open /dev/kvm",
            after.qemu_user
        ))
        .with_hint(format!(
            "add it to group kvm: `usermod -aG kvm {}`, then restart libvirtd",
            after.qemu_user
        )));
    }
    Ok(done)
}

/// Rotation for json-file logs in the guest without stopping its containers: live-restore
/// goes in first and is reloaded (SIGHUP), then the full change is applied with a restart
/// (validated, and rolled back if Docker does not come back).
fn guest_log_rotation(lv: &Libvirt, paths: &Paths, vm: &str) -> Result<String> {
    let target = crate::guest::Route::of_vm(lv, paths, vm)?;
    let session = ssh::connect(&target, Duration::from_secs(15))?;
    let current: serde_json::Value =
        match crate::guest::sftp::read_file(&session, DAEMON_JSON_PATH)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::failed(format!("{DAEMON_JSON_PATH} in {vm} is not JSON: {e}")).with_hint(
                    "fix it by hand first; strata does not rewrite a file it cannot read",
                )
            })?,
            None => serde_json::json!({}),
        };
    let (staged, full) = with_log_rotation(&current)?;
    if full == current {
        return Ok("already in place".into());
    }
    let docker = GuestDocker::connect(&target)?;
    let info = docker.run(docker.docker.info()).map_err(docker_error)?;
    let engine = info
        .server_version
        .as_deref()
        .and_then(EngineVersion::parse)
        .ok_or_else(|| Error::failed(format!("Docker in {vm} reports no version")))?;
    let mut steps = Vec::new();
    if info.live_restore_enabled != Some(true) {
        let text = serde_json::to_string_pretty(&staged)? + "\n";
        crate::guest::sftp::upload(
            &session,
            &mut text.as_bytes(),
            "/etc/docker/daemon.json.strata-new",
            0o644,
        )?;
        let reload = |step: &str| {
            let command = format!(
                "{} strata-reload {step}",
                scripts::sh_c(scripts::RELOAD_DAEMON_JSON)
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
    crate::engine::install::apply_daemon_json(&session, &text, engine)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_carry_strata_comment() {
        let rule = within_bridge_rule("stbr0").join(" ");
        assert_eq!(
            rule,
            "-i stbr0 -o stbr0 -m comment --comment strata check --fix -j ACCEPT"
        );
        let routed = routed_bridge_rules("virbr2", Some("10.250.78.0/24"));
        assert_eq!(routed.len(), 2);
        assert!(routed[0]
            .join(" ")
            .starts_with("-i virbr2 -s 10.250.78.0/24 -m comment"));
        assert!(routed[1]
            .join(" ")
            .starts_with("-o virbr2 -d 10.250.78.0/24 -m conntrack --ctstate RELATED,ESTABLISHED"));
    }
}
