//! What the host has, as the plan diff reads it: every libvirt network, and every domain —
//! strata's with their record, root disk size and the plan that made them; others by name
//! only, so that a plan refuses their names instead of taking them over.

use super::diff::{SeenNetwork, SeenVm, VmDefaults};
use crate::error::{Error, ErrorKind, Result};
use crate::state::Paths;
use crate::template::Template;
use crate::vm::record::VolumeRole;
use crate::vm::{domain, network, pool, sizing, Libvirt};
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

pub fn vms(lv: &Libvirt, paths: &Paths) -> Result<Vec<SeenVm>> {
    let conn = &lv.conn();
    let pool_handle = pool::ensure_home(lv, paths)?;
    let mut seen: Vec<SeenVm> = Vec::new();
    for dom in conn.list_all_domains(0)? {
        let Ok(name) = dom.name() else { continue };
        let record = match domain::record(&dom) {
            Ok(record) => record,
            // Undefined by someone else between listing and reading it: not there any more.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Some(record) = record else {
            // Not strata's: only its name counts, so that the plan refuses to take it.
            seen.push(SeenVm {
                name,
                template: String::new(),
                network: String::new(),
                memory: 0,
                cpus: 0,
                disk: 0,
                plan: None,
                running: false,
                applied: None,
            });
            continue;
        };
        let disk = record
            .volume(VolumeRole::Root)
            .and_then(|volume| pool::find_volume(&pool_handle, volume))
            .and_then(|volume| volume.info().ok())
            .map_or(0, |info| info.capacity);
        // The definition's sizes, not the running ones: an update is written there and takes
        // effect at the next boot, and the plan has converged once it is written.
        let size = match sizing::configured(&dom) {
            Ok(size) => size,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        seen.push(SeenVm {
            name,
            template: record.template,
            network: record.network,
            memory: size.memory,
            cpus: size.cpus,
            disk,
            plan: record.plan,
            running: dom.is_active().unwrap_or(false),
            applied: record.applied,
        });
    }
    seen.sort_by(|a, b| a.name.cmp(&b.name));
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
