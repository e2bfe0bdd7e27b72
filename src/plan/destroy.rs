//! `plan destroy`: remove what the plan owns and nothing else. Ownership is the plan's name
//! in libvirt metadata (on every VM and network the plan made), so an object of the same name
//! that the plan did not make is left alone and said so. Stacks on a VM whose data disk is
//! kept go down first (their volumes kept), and a swarm with such a VM is ended (its stacks
//! down first), then the VMs (their data disks kept unless --volumes), then the networks.

use super::apply::{self, Outcome, Row};
use super::diff::stack_object_name;
use super::file::Plan;
use crate::error::{Error, Result};
use crate::lifecycle::{self, DataDisk};
use crate::progress::ProgressGroup;
use crate::state::Paths;
use crate::vm::record::VolumeRole;
use crate::vm::{domain, network, pool, Libvirt};
use std::time::Instant;

pub fn destroy(
    lv: &Libvirt,
    paths: &Paths,
    plan: &Plan,
    volumes: bool,
    group: &ProgressGroup,
) -> Result<Vec<Row>> {
    let conn = lv.conn();
    let ours = |owner: &Option<String>| owner.as_deref() == Some(plan.name.as_str());
    let vms: Vec<domain::VmInfo> = domain::list(&conn)?
        .into_iter()
        .filter(|vm| ours(&vm.record.plan))
        .collect();
    let mut rows = Vec::new();
    let row = Row::new;
    // Same names, not the plan's: said, and left alone.
    for name in plan.vms.keys() {
        if !vms.iter().any(|vm| &vm.name == name) && domain::exists(&conn, name) {
            let why = format!(
                "VM '{name}' was not made by plan '{}'; left alone",
                plan.name
            );
            rows.push(row("vm", name, Outcome::LeftAlone { why }, Instant::now()));
        }
    }
    // Stacks down where their VM runs and keeps a data disk: their containers (on that disk)
    // would otherwise come back on the next VM of that name. Everything else goes with the
    // VM's disks, so it is not worth a login.
    let keeps_data = |vm: &domain::VmInfo| !volumes && vm.record.volume(VolumeRole::Data).is_some();
    for vm in vms
        .iter()
        .filter(|vm| vm.state == "running" && keeps_data(vm))
    {
        let Some(wanted) = plan.vms.get(&vm.name) else {
            continue;
        };
        for stack in plan.stacks_on(&wanted.name) {
            let stack_name = &stack.name;
            let started = Instant::now();
            group.status(&format!("stack {stack_name} in {} down", vm.name));
            let result = apply::stack_file(plan, stack_name, &vm.name).and_then(|file| {
                lifecycle::stack_down(lv, paths, &file, false).map(|_| "down".into())
            });
            rows.push(row(
                "stack",
                &stack_object_name(stack_name, &vm.name),
                Outcome::of(result),
                started,
            ));
        }
    }
    // A swarm whose VM keeps its data disk: Docker's swarm state is on that disk, so the next
    // VM of that name would come back a node of a swarm that is gone. Its stacks go down
    // (volumes kept) and the swarm is ended first.
    for swarm in plan.swarms.values() {
        let keeps = swarm.members().any(|m| {
            vms.iter()
                .any(|vm| vm.name == *m && vm.state == "running" && keeps_data(vm))
        });
        if !keeps {
            continue;
        }
        for stack in plan.stacks_on_swarm(&swarm.name) {
            let started = Instant::now();
            group.status(&format!(
                "stack {} on swarm {} down",
                stack.name, swarm.name
            ));
            let result = apply::swarm_stack_file(plan, &stack.name, &swarm.name).and_then(|file| {
                lifecycle::stack_swarm::down(lv, paths, &file, &swarm.name, false)
                    .map(|_| "down".into())
            });
            let name = stack_object_name(&stack.name, &swarm.name);
            rows.push(row("stack", &name, Outcome::of(result), started));
        }
        let started = Instant::now();
        group.status(&format!("swarm {} ended", swarm.name));
        let result = lifecycle::swarm::destroy(lv, paths, &swarm.name)
            .map(|done| format!("ended ({} left)", done.left.join(", ")));
        rows.push(row("swarm", &swarm.name, Outcome::of(result), started));
    }
    let data = if volumes {
        DataDisk::Remove
    } else {
        DataDisk::Keep
    };
    for vm in &vms {
        let started = Instant::now();
        group.status(&format!("destroying VM {}", vm.name));
        let kept = (!volumes)
            .then(|| vm.record.volume(VolumeRole::Data))
            .flatten()
            .map(|v| format!(" (data disk {v} kept; --volumes removes it)"))
            .unwrap_or_default();
        let result =
            lifecycle::destroy_with(lv, paths, &vm.name, data).map(|()| format!("destroyed{kept}"));
        rows.push(row("vm", &vm.name, Outcome::of(result), started));
    }
    if volumes {
        rows.extend(remove_kept_data_disks(lv, paths, plan)?);
    }
    for net in network::list(&conn)?.into_iter().filter(|n| ours(&n.plan)) {
        let started = Instant::now();
        let result = apply::remove_plan_network(lv, &net.name).map(|()| "removed".into());
        rows.push(row("network", &net.name, Outcome::of(result), started));
    }
    for name in plan.networks.keys() {
        let theirs = network::lookup(&conn, name).is_ok_and(|(_, info)| !ours(&info.plan));
        if theirs {
            let why = format!(
                "network '{name}' was not made by plan '{}'; left alone",
                plan.name
            );
            rows.push(row(
                "network",
                name,
                Outcome::LeftAlone { why },
                Instant::now(),
            ));
        }
    }
    Ok(rows)
}

/// Data disks that earlier destroys of the plan's VMs kept (`plan rebuild` interrupted, a
/// `plan destroy` without --volumes): strata's name for that VM's data disk, in strata's
/// pool, with no VM of that name left to own it.
fn remove_kept_data_disks(lv: &Libvirt, paths: &Paths, plan: &Plan) -> Result<Vec<Row>> {
    let conn = lv.conn();
    let pool_handle = pool::ensure_home(lv, paths)?;
    let mut rows = Vec::new();
    for name in plan.vms.keys() {
        if domain::exists(&conn, name) {
            continue;
        }
        let volume = pool::vm_volume_name(name, VolumeRole::Data);
        let Some(found) = pool::find_volume(&pool_handle, &volume) else {
            continue;
        };
        let started = Instant::now();
        let outcome = match found.delete(0) {
            Ok(()) => Outcome::Done {
                what: "removed (kept by an earlier destroy)".into(),
            },
            Err(e) => Outcome::failed(&Error::from(e)),
        };
        rows.push(Row::new("volume", &volume, outcome, started));
    }
    Ok(rows)
}
