//! What the host has, as the plan diff reads it: every libvirt network, and every domain —
//! strata's with their record, root disk size and the plan that made them; others by name
//! only, so that a plan refuses their names instead of taking them over.

use super::diff::{SeenNetwork, SeenVm, VmDefaults};
use crate::error::{Error, Result};
use crate::state::Paths;
use crate::template::Template;
use crate::vm::record::VolumeRole;
use crate::vm::{domain, network, pool};
use virt::connect::Connect;

pub fn networks(conn: &Connect) -> Result<Vec<SeenNetwork>> {
    Ok(network::list(conn)?
        .into_iter()
        .map(|n| SeenNetwork {
            name: n.name,
            subnet: n.subnet,
            mode: n.mode,
            plan: n.plan,
        })
        .collect())
}

pub fn vms(conn: &Connect, paths: &Paths) -> Result<Vec<SeenVm>> {
    let pool_handle = pool::ensure(conn, paths)?;
    let mut seen: Vec<SeenVm> = Vec::new();
    for vm in domain::list(conn)? {
        let disk = vm
            .record
            .volume(VolumeRole::Root)
            .and_then(|name| pool::find_volume(&pool_handle, name))
            .and_then(|volume| volume.info().ok())
            .map_or(0, |info| info.capacity);
        seen.push(SeenVm {
            name: vm.name,
            template: vm.record.template,
            network: vm.record.network,
            memory: vm.memory_mib << 20,
            cpus: vm.cpus,
            disk,
            plan: vm.record.plan,
        });
    }
    for dom in conn.list_all_domains(0)? {
        let Ok(name) = dom.name() else { continue };
        if !seen.iter().any(|v| v.name == name) {
            seen.push(SeenVm {
                name,
                template: String::new(),
                network: String::new(),
                memory: 0,
                cpus: 0,
                disk: 0,
                plan: None,
            });
        }
    }
    Ok(seen)
}

/// A template's defaults for what a plan's VM leaves out.
pub fn defaults(template: &Template) -> Result<VmDefaults> {
    let vm = &template.manifest.vm;
    let size = |field: &str, text: &str| {
        crate::units::parse_size(field, text)
            .map_err(|e: Error| e.context(format!("template '{}'", template.name())))
    };
    Ok(VmDefaults {
        memory: size("vm.memory", &vm.memory)?,
        cpus: vm.cpus,
        disk: size("vm.disk", &vm.disk)?,
    })
}
