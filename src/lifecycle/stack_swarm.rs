//! `strata up|ps|logs|down` of a stack on a swarm, top-down: render the stack, find the swarm
//! among the running VMs and open its ready nodes, and when anything must change run the
//! preflight checks for the host and the swarm's VMs first, then converge through a manager
//! (stack rolls back what it made if that fails). One `up` of a stack at a time, as on a VM.

use super::checks;
use super::swarm::{open_by_name, OpenSwarm};
use crate::check::report::Report;
use crate::error::Result;
use crate::stack::on_swarm::{self, Node, SwarmDownReport, SwarmTarget, SwarmUpReport, TaskRow};
use crate::stack::{self, StackFile, UpOptions};
use crate::state::Paths;
use crate::vm::Libvirt;

/// What `up` did on the swarm, and the preflight report of the host and the swarm's VMs when
/// it ran (only when something had to change).
pub struct SwarmStackUp {
    pub report: SwarmUpReport,
    pub checks: Option<Report>,
}

fn target(open: &OpenSwarm) -> SwarmTarget<'_> {
    SwarmTarget {
        manager: &open.nodes[open.manager].2,
        nodes: open
            .nodes
            .iter()
            .map(|(vm, id, docker)| Node {
                vm: vm.clone(),
                id: id.clone(),
                active: open
                    .view
                    .nodes
                    .iter()
                    .any(|n| n.id == *id && n.availability == "active"),
                docker,
            })
            .collect(),
        vms_by_node: open
            .view
            .nodes
            .iter()
            .map(|n| {
                let vm = n.vm.clone().unwrap_or_else(|| n.hostname.clone());
                (n.id.clone(), vm)
            })
            .collect(),
        overlay_mtu: open.view.overlay_mtu,
    }
}

fn lock_key(file: &StackFile, swarm: &str) -> String {
    format!("stack {} on swarm {swarm}", file.name)
}

/// Bring `file` (a stack on swarm `swarm`) up.
pub fn up(
    lv: &Libvirt,
    paths: &Paths,
    file: &StackFile,
    swarm: &str,
    options: UpOptions,
    progress: &crate::progress::Progress,
) -> Result<SwarmStackUp> {
    crate::explain::stop_here("up of a stack on a swarm is not explained yet")?;
    let resolved = stack::resolve(file)?;
    let key = lock_key(file, swarm);
    let waiting = || progress.println(&format!("strata: waiting for another `strata up` of {key}"));
    paths.with_named_lock(&key, &waiting, || {
        let open = open_by_name(lv, paths, swarm)?;
        let target = target(&open);
        if let Some(rows) = on_swarm::unchanged(file, &resolved, &target)? {
            return Ok(SwarmStackUp {
                report: SwarmUpReport {
                    stack: file.name.clone(),
                    swarm: swarm.to_string(),
                    services: rows,
                    removed: Vec::new(),
                    images: Vec::new(),
                },
                checks: None,
            });
        }
        let vms = target.vm_names();
        let what = format!("swarm '{swarm}' (VMs {})", vms.join(", "));
        let checks = checks::preflight_of(lv, paths, &what, &vms, options.force)?;
        let report = on_swarm::converge(file, &resolved, &target, options.keep_failed)?;
        Ok(SwarmStackUp {
            report,
            checks: Some(checks),
        })
    })
}

/// Every task of the stack, with its VM.
pub fn ps(lv: &Libvirt, paths: &Paths, file: &StackFile, swarm: &str) -> Result<Vec<TaskRow>> {
    let open = open_by_name(lv, paths, swarm)?;
    on_swarm::ps(file, &target(&open))
}

/// Print the log of each task of `service` (see on_swarm::logs).
pub fn logs(
    lv: &Libvirt,
    paths: &Paths,
    file: &StackFile,
    swarm: &str,
    service: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<()> {
    let open = open_by_name(lv, paths, swarm)?;
    on_swarm::logs(file, &target(&open), service, follow, tail)
}

/// Take the stack down (its volumes on every node only with `volumes`), under `up`'s lock.
pub fn down(
    lv: &Libvirt,
    paths: &Paths,
    file: &StackFile,
    swarm: &str,
    volumes: bool,
) -> Result<SwarmDownReport> {
    crate::explain::stop_here("down of a stack on a swarm is not explained yet")?;
    paths.with_named_lock(&lock_key(file, swarm), &|| {}, || {
        let open = open_by_name(lv, paths, swarm)?;
        on_swarm::down(file, &target(&open), volumes)
    })
}
