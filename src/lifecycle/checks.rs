//! One check run, top-down: read the host's snapshot and each guest's (guests in parallel,
//! one SSH login each, with the engine's storage expectation added), probe between the VMs
//! of a swarm (or of one about to form) on its ports, judge them, and with
//! --fix apply the fixes strata can apply (the host's by check, a guest's log rotation by
//! engine), then read and judge everything again so the report shows before and after. And
//! the preflight a launch runs first.

use crate::check::fix::{self, Applied};
use crate::check::report::Report;
use crate::check::snapshot::host::HostSnapshot;
use crate::check::snapshot::reach::{self, Peer};
use crate::check::{self, Finding, FixAction, GuestSnapshot, StorageExpectation, Verdict};
use crate::engine::config::EngineRecord;
use crate::engine::decision::{self, Driver, GuestStorageFacts, StoragePolicy, StorageRequest};
use crate::error::{Error, ErrorKind, Result};
use crate::guest::docker::in_swarm_mode;
use crate::guest::facts::EngineVersion;
use crate::guest::Route;
use crate::host::runner::Runner;
use crate::state::Paths;
use crate::vm::Libvirt;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    pub host: bool,
    pub vms: Vec<String>,
    pub fix: bool,
    pub reach: Reach,
}

/// Which VMs probe each other on the swarm's ports (swarm.ports).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reach {
    #[default]
    Nobody,
    /// The checked VMs whose engine is in swarm mode, grouped by the network they are on.
    SwarmNodes,
    /// These VMs, as one group.
    Among(Vec<String>),
}

/// Check, fix when asked, and report.
pub fn run(lv: Option<&Libvirt>, paths: &Paths, request: &CheckRequest) -> Report {
    let first = judge(lv, paths, request);
    if !request.fix {
        return Report::new(first, None);
    }
    let applied = fix::fixable(&first)
        .iter()
        .map(|action| Applied::from_result(action, apply(lv, paths, action)))
        .collect();
    let second = judge(lv, paths, request);
    Report::new(second, Some((first, applied)))
}

/// Before containers are launched in `vm`: check the host and that VM, and refuse (naming
/// each failure and its fix) unless `force`. Warnings never stop a launch, nor does a
/// failure about a bridge other than the VM's (reported all the same).
pub fn preflight(lv: &Libvirt, paths: &Paths, vm: &str, force: bool) -> Result<Report> {
    preflight_of(lv, paths, &format!("'{vm}'"), &[vm.to_string()], force)
}

/// The same for `what`, the VMs `vms` on one libvirt network (a swarm's): one run, the host
/// checked once.
pub fn preflight_of(
    lv: &Libvirt,
    paths: &Paths,
    what: &str,
    vms: &[String],
    force: bool,
) -> Result<Report> {
    let report = run(
        Some(lv),
        paths,
        &CheckRequest {
            host: true,
            vms: vms.to_vec(),
            fix: false,
            reach: Reach::Nobody,
        },
    );
    let bridge = vms.first().and_then(|vm| bridge_of(lv, vm));
    match report.refusal_of(what, &vms.join(" "), bridge.as_deref()) {
        Some(err) if !force => Err(err),
        _ => Ok(report),
    }
}

/// The bridge of the libvirt network `vm` is on, when libvirt tells (None: every bridge's
/// failures count, the safe side).
fn bridge_of(lv: &Libvirt, vm: &str) -> Option<String> {
    let (_, info) = crate::vm::domain::lookup(&lv.conn(), vm).ok()?;
    crate::vm::network::lookup(&lv.conn(), &info.record.network)
        .ok()?
        .1
        .bridge
}

/// One fix: the host's are check's own; a guest's log rotation is a change to its engine.
fn apply(lv: Option<&Libvirt>, paths: &Paths, action: &FixAction) -> Result<String> {
    match action {
        FixAction::GuestLogRotation { vm } => {
            crate::explain::note(&format!(
                "the log rotation fix in {vm} (live-restore reloaded, then daemon.json with max-size/max-file and a restart) is not written as commands yet"
            ))?;
            let lv =
                lv.ok_or_else(|| Error::new(ErrorKind::Unreachable, "libvirt is not reachable"))?;
            crate::engine::log_rotation::apply(&Route::of_vm(lv, paths, vm)?, vm)
        }
        // The host's fixes change this machine's firewall and kernel switches: on a remote
        // host they are for a strata run there.
        _ if lv.is_some_and(Libvirt::is_remote) => Err(Error::bad_input(
            "host fixes are applied by strata on the host itself",
        )
        .with_hint("run `strata check --fix` on that host")),
        host_action => fix::apply_on_host(host_action),
    }
}

fn judge(lv: Option<&Libvirt>, paths: &Paths, request: &CheckRequest) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut swarm_nodes = Vec::new();
    std::thread::scope(|scope| {
        let guests: Vec<_> = request
            .vms
            .iter()
            .map(|vm| scope.spawn(move || guest_snapshot(lv, paths, vm)))
            .collect();
        if request.host {
            match host_snapshot(lv, paths) {
                Ok(snapshot) => findings.extend(check::judge_host(&snapshot)),
                Err(why) => findings.push(Finding::new(
                    "host.facts",
                    check::Subject::Host,
                    Verdict::Fail,
                    format!("the host's facts could not be read: {why}"),
                )),
            }
        }
        for g in guests {
            match g.join() {
                Ok(snapshot) => {
                    if snapshot
                        .docker
                        .as_ref()
                        .is_ok_and(|d| in_swarm_mode(&d.info))
                    {
                        swarm_nodes.push(snapshot.vm.clone());
                    }
                    findings.extend(check::judge_guest(&snapshot))
                }
                Err(_) => findings.push(Finding::new(
                    "guest.facts",
                    check::Subject::Host,
                    Verdict::Fail,
                    "reading a guest's facts panicked".into(),
                )),
            }
        }
    });
    if let Some(lv) = lv {
        let groups = match &request.reach {
            Reach::Nobody => Vec::new(),
            Reach::SwarmNodes => by_network(lv, &swarm_nodes),
            Reach::Among(vms) => vec![vms.clone()],
        };
        for group in groups {
            findings.extend(reach_findings(lv, paths, &group));
        }
    }
    findings
}

/// `vms` grouped by the libvirt network they are on (groups of two or more).
fn by_network(lv: &Libvirt, vms: &[String]) -> Vec<Vec<String>> {
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for vm in vms {
        if let Ok((_, info)) = crate::vm::domain::lookup(&lv.conn(), vm) {
            groups
                .entry(info.record.network.clone())
                .or_default()
                .push(vm.clone());
        }
    }
    groups.into_values().filter(|g| g.len() > 1).collect()
}

/// swarm.ports for one group: probes between its VMs, judged, with the host's fix for their
/// bridge when strata can apply it (this machine's bridge, known).
fn reach_findings(lv: &Libvirt, paths: &Paths, group: &[String]) -> Vec<Finding> {
    let mut peers = Vec::new();
    let mut unreachable = Vec::new();
    for vm in group {
        let peer = crate::vm::domain::lookup(&lv.conn(), vm).and_then(|(_, info)| {
            Ok(Peer {
                vm: vm.clone(),
                address: info.record.ip,
                route: Route::of_vm(lv, paths, vm)?,
            })
        });
        match peer {
            Ok(peer) => peers.push(peer),
            Err(why) => unreachable.push((vm.clone(), why.to_string())),
        }
    }
    let mut snapshot = reach::gather(&peers);
    snapshot.unreadable.extend(unreachable);
    let bridge = group.first().and_then(|vm| bridge_of(lv, vm));
    let fix = match (&bridge, lv.is_remote()) {
        (Some(bridge), false) => {
            crate::host::iptables::read()
                .ok()
                .map(|table| FixAction::AcceptWithinBridge {
                    chain: check::host::accept_chain(&table),
                    bridge: bridge.clone(),
                })
        }
        _ => None,
    };
    check::swarm_ports::verdict(&snapshot, bridge.as_deref(), fix)
}

/// The facts of the host the VMs run on: this machine's, or a remote host's read over SSH.
fn host_snapshot(lv: Option<&Libvirt>, paths: &Paths) -> Result<HostSnapshot> {
    match lv {
        Some(lv) if lv.is_remote() => Ok(check::snapshot::host::gather_on(
            lv,
            paths,
            &Runner::for_uri(&lv.uri)?,
        )),
        _ => Ok(check::snapshot::host::gather(lv, paths)),
    }
}

/// A guest's snapshot with what the engine layer expects of its storage.
fn guest_snapshot(lv: Option<&Libvirt>, paths: &Paths, vm: &str) -> GuestSnapshot {
    let route = lv
        .ok_or_else(|| Error::new(ErrorKind::Unreachable, "libvirt is not reachable"))
        .and_then(|lv| Route::of_vm(lv, paths, vm));
    let mut snapshot = match route {
        Ok(route) => check::snapshot::guest::gather(&route, vm),
        Err(why) => GuestSnapshot::unreachable(vm, why),
    };
    snapshot.storage = storage_expectation(&snapshot);
    snapshot
}

/// The engine layer's view of the guest's storage: what strata recorded, what its decision
/// picks for these facts, and which drivers cannot work here.
fn storage_expectation(snapshot: &GuestSnapshot) -> Option<StorageExpectation> {
    let facts = snapshot.facts.as_ref().ok()?;
    let running = snapshot
        .docker
        .as_ref()
        .ok()
        .and_then(|d| d.info.server_version.as_deref())
        .and_then(EngineVersion::parse);
    let engine = running
        .or_else(|| {
            facts
                .engine_package
                .as_deref()
                .and_then(EngineVersion::parse)
        })
        // Not installed yet: judge for the engine an install would bring (Debian 12's).
        .unwrap_or(EngineVersion::new(20, 10, 24));
    let storage = GuestStorageFacts {
        engine,
        kernel: facts.kernel,
        root_fs: facts.data_root_backing.clone(),
    };
    let auto = StorageRequest {
        policy: StoragePolicy::Auto,
        data_disk: false,
        devicemapper: false,
    };
    Some(StorageExpectation {
        engine,
        recorded: EngineRecord::from_facts(facts).map(|r| r.intent.storage_driver),
        decided: decision::decide(&auto, &storage)
            .ok()
            .map(|d| d.driver.as_str().to_string()),
        unsupported: [Driver::Overlay2, Driver::Btrfs, Driver::Devicemapper]
            .into_iter()
            .filter_map(|driver| {
                decision::supports(driver, &facts.data_root_backing, engine, facts.kernel)
                    .err()
                    .map(|why| (driver.as_str().to_string(), why))
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::guest::test_facts::{with_facts, FACTS_WITH_DOCKER};

    /// The engine's decision and the storage check together, as a run composes them.
    fn storage_findings(facts_script: &str, docker_running: bool) -> Vec<Finding> {
        let mut snapshot = with_facts(facts_script);
        if !docker_running {
            snapshot.docker = Err(Error::not_found("Docker is not installed"));
        }
        snapshot.storage = storage_expectation(&snapshot);
        check::judge_guest(&snapshot)
            .into_iter()
            .filter(|f| f.check == "guest.storage")
            .collect()
    }

    #[test]
    fn ext4_with_docker_as_strata_installs_it_passes() {
        let found = storage_findings(FACTS_WITH_DOCKER, true);
        assert!(found.iter().all(|f| f.verdict == Verdict::Ok), "{found:?}");
    }

    #[test]
    fn xfs_without_ftype_fails_before_docker_is_installed() {
        let facts = FACTS_WITH_DOCKER
            .replace("data_root_fs=ext2/ext3", "data_root_fs=xfs")
            .replace("ext_filetype=1", "xfs_ftype=0");
        let found = storage_findings(&facts, false);
        assert!(
            found
                .iter()
                .any(|f| f.verdict == Verdict::Fail && f.summary.contains("ftype")),
            "{found:?}"
        );
    }

    #[test]
    fn the_expectation_names_the_decision_and_what_cannot_work() {
        let snapshot = with_facts(FACTS_WITH_DOCKER);
        let expected = storage_expectation(&snapshot).unwrap();
        assert_eq!(expected.decided.as_deref(), Some("overlay2"));
        assert!(expected.unsupported.contains_key("btrfs"), "{expected:?}");
        assert!(!expected.unsupported.contains_key("overlay2"));
        assert_eq!(expected.recorded, None);
    }
}
