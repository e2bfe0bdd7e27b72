//! Carrying out the host fixes `strata check --fix` may apply: each is idempotent (it looks
//! before it changes, and says "already in place" when there is nothing to do) and reports
//! what it did. Fixes that restart a daemon on the host, reformat a disk or move a network are
//! never applied here; their findings only describe them. The one guest fix (log rotation)
//! changes Docker's configuration in the guest: the engine layer carries it out, composed by
//! lifecycle/checks.rs.

use crate::check::{Finding, FixAction, Verdict};
use crate::command::capture;
use crate::error::{Error, Result};
use crate::host::runner::Runner;
use serde::Serialize;
use std::time::Duration;

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

impl Applied {
    /// What an attempted fix came to: its own words, or its error.
    pub fn from_result(action: &FixAction, result: Result<String>) -> Applied {
        let (result, ok) = match result {
            Ok(said) => (said, true),
            Err(e) => (format!("failed: {e}"), false),
        };
        Applied {
            action: action.clone(),
            result,
            ok,
        }
    }
}

/// Apply a fix to the host. A guest fix is not the host's to make: an error says so.
pub fn apply_on_host(action: &FixAction) -> Result<String> {
    explain(action)?;
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
        FixAction::GuestLogRotation { vm } => Err(Error::failed(format!(
            "log rotation in '{vm}' is made in the guest, not on the host"
        ))),
    }
}

/// `--explain` of a host fix: the iptables or chgrp/chmod commands that make it, idempotent
/// as the fix is.
fn explain(action: &FixAction) -> Result<()> {
    let rules = |chain: &str, bridge: &str, rules: &[Vec<String>]| {
        serde_json::json!({
            "kind": "iptables",
            "chain": chain,
            "bridge": bridge,
            "rules": rules
                .iter()
                .map(|rule| crate::template::shell_command_line(rule))
                .collect::<Vec<_>>(),
        })
    };
    let context = match action {
        FixAction::AcceptWithinBridge { chain, bridge } => {
            rules(chain, bridge, &[within_bridge_rule(bridge)])
        }
        FixAction::AcceptRoutedBridge {
            chain,
            bridge,
            subnet,
        } => rules(
            chain,
            bridge,
            &routed_bridge_rules(bridge, subnet.as_deref()),
        ),
        FixAction::KvmGroupAccess => serde_json::json!({"kind": "kvm"}),
        FixAction::GuestLogRotation { .. } => return Ok(()),
    };
    crate::explain::step(crate::explain::Step::CheckFix, &context)
}

/// The distinct actions of the findings that are not ok, in finding order.
pub fn fixable(findings: &[Finding]) -> Vec<FixAction> {
    let mut actions: Vec<FixAction> = Vec::new();
    for f in findings.iter().filter(|f| f.verdict > Verdict::Skip) {
        if let Some(action) = f.fix.as_ref().and_then(|x| x.action.clone()) {
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
    }
    actions
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

/// Remove the rules `--fix` added for `bridge` (strata's comment, the bridge as in- or
/// out-interface) from DOCKER-USER and FORWARD on `runner`'s host: called when strata removes
/// the network, so that its accepts do not outlive it (libvirt gives the next network the
/// freed bridge name, which would inherit them). The rules removed, as deleted.
pub fn remove_bridge_rules(runner: &Runner, bridge: &str) -> Result<Vec<Vec<String>>> {
    let table = crate::host::iptables::read_on(runner)?;
    let mut removed = Vec::new();
    for chain in ["DOCKER-USER", "FORWARD"] {
        for spec in table.commented_rules_on(chain, RULE_COMMENT, bridge) {
            let args: Vec<&str> = ["-D", chain]
                .into_iter()
                .chain(spec.iter().map(String::as_str))
                .collect();
            runner.capture("iptables", &args)?;
            removed.push(args.iter().map(|a| a.to_string()).collect());
        }
    }
    Ok(removed)
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
        capture("iptables", &refs)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Fix, Subject};

    #[test]
    fn each_action_once_and_only_for_problems() {
        let f = |v, action: FixAction| {
            Finding::new("x", Subject::Host, v, String::new()).with_fix(Fix::automatic("d", action))
        };
        let within = FixAction::AcceptWithinBridge {
            chain: "DOCKER-USER".into(),
            bridge: "stbr0".into(),
        };
        let found = vec![
            f(Verdict::Fail, within.clone()),
            f(Verdict::Fail, within.clone()),
            f(Verdict::Ok, FixAction::KvmGroupAccess),
            f(
                Verdict::Warn,
                FixAction::GuestLogRotation { vm: "a".into() },
            ),
        ];
        assert_eq!(
            fixable(&found),
            vec![within, FixAction::GuestLogRotation { vm: "a".into() }]
        );
    }

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
