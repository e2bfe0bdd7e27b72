//! `plan show`: read the plan, check it against the host's templates and stack files, read
//! what libvirt has, and tell what applying the plan would do. It only reads.

use super::diff::{diff, Action, ObjectKind, Step, VmDefaults};
use super::file::{Known, Plan, TemplateKind};
use super::observe;
use crate::error::{Error, Result};
use crate::stack::file::StackFile;
use crate::state::Paths;
use crate::template::{self, Template};
use crate::vm::{network, Libvirt};
use std::collections::BTreeMap;
use std::path::Path;

/// A plan and what applying it would do, object by object.
#[derive(Debug)]
pub struct Shown {
    pub plan: Plan,
    pub steps: Vec<Step>,
}

pub fn show(lv: &Libvirt, paths: &Paths, file: &Path) -> Result<Shown> {
    show_part(lv, paths, file, None)
}

/// `show` for the part of the plan on one of its hosts (`Plan::host_parts`), `lv` connected
/// to that host and `paths` that host's: the whole file is read and checked, then that host's
/// networks, VMs and stacks are compared with what that host has.
pub fn show_part(lv: &Libvirt, paths: &Paths, file: &Path, host: Option<&str>) -> Result<Shown> {
    let mut whole = Plan::load(file)?;
    let search = template::search_path(&paths.state.join("imported"));
    let templates: BTreeMap<String, Template> = whole
        .vms
        .values()
        .filter_map(|vm| {
            let found = template::find(&search, &vm.template).ok()?;
            Some((vm.template.clone(), found))
        })
        .collect();
    let kind = |name: &str| {
        templates.get(name).map(|t| {
            let baked = t
                .manifest
                .build
                .as_ref()
                .is_some_and(|b| b.engine.is_some());
            if baked {
                TemplateKind::WithDocker
            } else {
                TemplateKind::Plain
            }
        })
    };
    let stack_on = |path: &Path| StackFile::placement_of_file(path);
    whole.check_against(&Known {
        template: &kind,
        stack_on: &stack_on,
    })?;
    let plan = whole.part(host);
    let mut defaults: BTreeMap<&str, VmDefaults> = BTreeMap::new();
    for (name, t) in &templates {
        defaults.insert(name, observe::defaults(t)?);
    }
    // Every template is known here: check_against refused the plan otherwise.
    let defaults_of = |name: &str| defaults[name];
    let conn = lv.conn();
    let brought_up = |vm: &super::file::PlanVm| super::apply::applied_digest(&plan, vm).ok();
    let mut steps = diff(
        &plan,
        &defaults_of,
        &brought_up,
        &observe::networks(&conn)?,
        &observe::vms(lv, paths)?,
    );
    for step in &mut steps {
        step.host = host.map(str::to_string);
    }
    // Ranges taken on that host: its libvirt networks, routes and Docker networks.
    let runner = crate::host::runner::Runner::for_uri(&lv.uri)?;
    refuse_taken_subnets(&plan, &steps, &network::subnets_in_use(&conn, &runner)?.0)?;
    Ok(Shown { plan, steps })
}

/// A network the plan would create on a range the host already uses (another libvirt
/// network, a route, a Docker network) is a bad plan, said at its line.
fn refuse_taken_subnets(plan: &Plan, steps: &[Step], taken: &[network::Taken]) -> Result<()> {
    for step in steps {
        if step.kind != ObjectKind::Network || step.action != Action::Create {
            continue;
        }
        let wanted = &plan.networks[&step.name];
        let clashes = network::find_overlaps(wanted.subnet, taken);
        if let Some(first) = clashes.first() {
            return Err(Error::bad_input(format!(
                "{}:{}: networks.{}.subnet: {} overlaps {} ({})",
                plan.path.display(),
                wanted.subnet_line,
                wanted.name,
                wanted.subnet,
                first.what,
                first.subnet
            ))
            .with_hint("choose a range that is free on this host; `strata net list` and `ip route` show what is taken"));
        }
    }
    Ok(())
}
