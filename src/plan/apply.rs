//! `plan apply` and `plan rebuild`: carry out what `show` found, in dependency order —
//! networks, then every VM in parallel (at most N at once), each VM's engine as soon as it is
//! up and its stacks as soon as its engine is, then each swarm of the plan's VMs and the
//! stacks on it — and answer with one row per object, done or failed. One VM failing does not
//! stop the others; a re-run converges, because every step below (create, engine install,
//! swarm create, up) converges on its own.
//!
//! A VM whose definition is unchanged and whose record says the plan last brought up exactly
//! this engine section and these stack files is not logged into: that is what makes an
//! unchanged re-apply quick, and `strata up`/`engine info` check the guest itself.

use super::diff::{stack_object_name, stack_object_on, Action, ObjectKind, Step};
use super::file::{Plan, PlanEngine, PlanSwarm, PlanVm};
use super::show::Shown;
use crate::engine::config::LogDriver;
use crate::engine::decision::StorageRequest;
use crate::engine::install::{InstallRequest, Source};
use crate::error::{Error, Result};
use crate::host::accel::AccelRequest;
use crate::lifecycle::{self, CreateRequest, DataDisk};
use crate::progress::{Progress, ProgressGroup};
use crate::stack::{StackFile, UpOptions};
use crate::state::Paths;
use crate::vm::alloc::KeptAddress;
use crate::vm::{domain, network, pool, sizing, Libvirt};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a VM made by a plan may take to answer on SSH (TCG boots included).
const SSH_TIMEOUT: Duration = Duration::from_secs(300);

/// What happened to one object.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// network, vm, engine or stack
    pub kind: &'static str,
    pub name: String,
    /// The plan's host it is on (None: the host strata connects to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(flatten)]
    pub result: Outcome,
    pub seconds: f64,
}

impl Row {
    /// The row of an object whose work began at `started` and ends now.
    pub fn new(kind: &'static str, name: &str, result: Outcome, started: Instant) -> Row {
        Row {
            kind,
            name: name.to_string(),
            host: None,
            result,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "lowercase", tag = "result")]
pub enum Outcome {
    Done {
        what: String,
    },
    Unchanged,
    Failed {
        error: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
    },
    /// Not tried: what it depends on failed, or the run was interrupted.
    Skipped {
        why: String,
    },
    /// Of one of the plan's names, but not the plan's: not touched, as it should be.
    #[serde(rename = "left alone")]
    LeftAlone {
        why: String,
    },
}

impl Outcome {
    /// The row of a step that did `what`, or failed.
    pub fn of(result: Result<String>) -> Outcome {
        match result {
            Ok(what) => Outcome::Done { what },
            Err(e) => Outcome::failed(&e),
        }
    }

    /// The row of an error: its message and hint apart, for the table and for JSON.
    pub fn failed(e: &Error) -> Outcome {
        Outcome::Failed {
            error: e.message().to_string(),
            hint: e.hint().map(str::to_string),
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed { .. } | Outcome::Skipped { .. })
    }
}

/// What to do with each VM of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Whatever `show` found (create, update, replace, delete, nothing).
    Converge,
    /// Replace the named VMs by fresh clones (data disks kept), whatever `show` found.
    Rebuild,
}

/// Carry out `shown`. `only` limits a rebuild to some VMs (empty: all of the plan's).
pub fn apply(
    lv: &Libvirt,
    paths: &Paths,
    shown: &Shown,
    mode: Mode,
    only: &[String],
    parallel: usize,
    group: &ProgressGroup,
) -> Vec<Row> {
    let plan = &shown.plan;
    let rows = Mutex::new(Vec::new());
    let push = |kind: &'static str, name: &str, result: Outcome, started: Instant| {
        if let Ok(mut rows) = rows.lock() {
            rows.push(Row::new(kind, name, result, started));
        }
    };
    // Networks first: the VMs need them.
    let mut broken_networks: Vec<String> = Vec::new();
    for step in shown.steps.iter().filter(|s| s.kind == ObjectKind::Network) {
        if step.action == Action::Delete {
            continue;
        }
        let started = Instant::now();
        let result = converge_network(lv, plan, step);
        if result.is_failure() {
            broken_networks.push(step.name.clone());
        }
        push("network", &step.name, result, started);
    }
    // Then every VM: a queue taken by `parallel` workers.
    let mut jobs: Vec<Job> = Vec::new();
    for step in shown.steps.iter().filter(|s| s.kind == ObjectKind::Vm) {
        let wanted = plan.vms.get(&step.name);
        if mode == Mode::Rebuild && (step.action == Action::Delete || !selected(only, &step.name)) {
            continue;
        }
        if let Action::Refused { why } = &step.action {
            push("vm", &step.name, refused(why), Instant::now());
            continue;
        }
        if let Some(net) = wanted
            .map(|w| &w.net)
            .filter(|n| broken_networks.contains(n))
        {
            let why = format!("network '{net}' failed");
            push("vm", &step.name, Outcome::Skipped { why }, Instant::now());
            continue;
        }
        let action = match (mode, &step.action) {
            // A VM that is not there is made, whatever the mode.
            (Mode::Rebuild, Action::Create) => Action::Create,
            (Mode::Rebuild, _) => Action::Replace {
                why: vec!["rebuild".to_string()],
            },
            (Mode::Converge, action) => action.clone(),
        };
        let inside_unchanged = mode == Mode::Converge
            && shown.steps.iter().all(|s| {
                let inside = (s.kind == ObjectKind::Engine && s.name == step.name)
                    || (s.kind == ObjectKind::Stack && stack_object_on(&s.name, &step.name));
                !inside || s.action == Action::Unchanged
            });
        jobs.push(Job {
            name: step.name.clone(),
            action,
            wanted,
            inside_unchanged,
        });
    }
    let queue = Mutex::new(jobs.into_iter());
    let workers = parallel.max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(job) = next else { break };
                if crate::interrupt::requested() {
                    let why = "interrupted before it started".to_string();
                    push("vm", &job.name, Outcome::Skipped { why }, Instant::now());
                    continue;
                }
                let progress = group.line(&format!("vm {}", job.name));
                let done = converge_vm(lv, paths, plan, &job, &progress);
                if let Ok(mut rows) = rows.lock() {
                    rows.extend(done);
                }
                progress.finish();
            });
        }
    });
    // Swarms once all their VMs are up, then the stacks on them.
    for step in shown.steps.iter().filter(|s| s.kind == ObjectKind::Swarm) {
        let swarm = &plan.swarms[&step.name];
        let failed_vm = if crate::interrupt::requested() {
            Some("interrupted before it started".to_string())
        } else {
            rows.lock()
                .ok()
                .and_then(|rows| failed_member(&rows, swarm))
        };
        // A rebuilt VM comes back with a fresh engine (or its data disk's): converged again.
        let rebuilt = mode == Mode::Rebuild && swarm.members().any(|vm| selected(only, vm));
        let step = match (&step.action, rebuilt) {
            (Action::Unchanged, true) => &Step {
                action: Action::Update {
                    changes: vec!["a VM of it was rebuilt".to_string()],
                    restart: false,
                },
                ..step.clone()
            },
            _ => step,
        };
        let progress = group.line(&format!("swarm {}", step.name));
        let done = converge_swarm(lv, paths, plan, step, failed_vm, &progress);
        progress.finish();
        if let Ok(mut rows) = rows.lock() {
            rows.extend(done);
        }
    }
    // Networks the plan no longer has go last, once their VMs are gone.
    if mode == Mode::Converge {
        for step in shown.steps.iter().filter(|s| s.kind == ObjectKind::Network) {
            if step.action == Action::Delete {
                let started = Instant::now();
                let result = remove_plan_network(lv, &step.name).map(|()| "removed".into());
                push("network", &step.name, Outcome::of(result), started);
            }
        }
    }
    group.status("done");
    let mut rows = rows.into_inner().unwrap_or_default();
    // Networks, then each VM with its engine and stacks (a worker's rows stay together).
    rows.sort_by_key(|row| row.kind != "network");
    rows
}

/// Why swarm `swarm` cannot be made: one of its VMs failed, or that VM's engine (the VM's own
/// row and its engine's both carry the VM's name).
fn failed_member(rows: &[Row], swarm: &PlanSwarm) -> Option<String> {
    swarm.members().find_map(|vm| {
        let row = rows
            .iter()
            .find(|r| r.name == *vm && r.result.is_failure())?;
        let what = if row.kind == "vm" {
            "VM"
        } else {
            "the engine in VM"
        };
        Some(format!("{what} '{vm}' failed"))
    })
}

fn selected(only: &[String], name: &str) -> bool {
    only.is_empty() || only.iter().any(|o| o == name)
}

struct Job<'a> {
    name: String,
    action: Action,
    /// None for a VM of the plan that is gone from the file (a delete).
    wanted: Option<&'a PlanVm>,
    /// `show` found its engine and stacks as the plan last brought them up.
    inside_unchanged: bool,
}

fn refused(why: &str) -> Outcome {
    Outcome::Failed {
        error: why.to_string(),
        hint: Some("a plan takes over nothing it did not make: rename the plan's object, or remove the other one yourself".into()),
    }
}

/// Remove a plan's network (to replace it, or gone from the plan, or `plan destroy`), as `net
/// destroy` does: refused while any VM, the plan's or not, still uses it; the `check --fix`
/// accepts for its bridge go with it (a note when they could not).
pub(super) fn remove_plan_network(lv: &Libvirt, name: &str) -> Result<()> {
    let done = lifecycle::destroy_network(lv, name)?;
    if let Some(note) = done.note {
        crate::errln!("strata: network '{name}': {note}");
    }
    Ok(())
}

fn converge_network(lv: &Libvirt, plan: &Plan, step: &Step) -> Outcome {
    let wanted = &plan.networks[&step.name];
    let create = || -> Result<()> {
        // Ranges taken on the network's host (a remote part's own routes and Docker).
        let runner = crate::host::runner::Runner::for_uri(&lv.uri)?;
        let taken = network::subnets_in_use(&lv.conn(), &runner)?.0;
        network::create(
            &lv.conn(),
            &wanted.name,
            wanted.subnet,
            wanted.mode,
            &taken,
            Some(&plan.name),
        )?;
        Ok(())
    };
    let result = match &step.action {
        Action::Unchanged => return Outcome::Unchanged,
        Action::Refused { why } => return refused(why),
        Action::Create => create().map(|()| "created".to_string()),
        Action::Replace { why } => remove_plan_network(lv, &wanted.name)
            .and_then(|()| create())
            .map(|()| format!("replaced ({})", why.join("; "))),
        // Handled apart: last. Updates do not exist for networks.
        Action::Delete | Action::Update { .. } => return Outcome::Unchanged,
    };
    Outcome::of(result)
}

/// One VM, then its engine, then its stacks; each row as it ends.
fn converge_vm(
    lv: &Libvirt,
    paths: &Paths,
    plan: &Plan,
    job: &Job,
    progress: &Progress,
) -> Vec<Row> {
    let started = Instant::now();
    let mut rows = Vec::new();
    let Some(wanted) = job.wanted else {
        // A VM of the plan gone from the file: removed, its data disk kept (nothing lost).
        progress.stage("destroying (gone from the plan; its data disk is kept)");
        let result = lifecycle::destroy_with(lv, paths, &job.name, DataDisk::Keep)
            .map(|()| "destroyed (gone from the plan; a data disk is kept)".into());
        rows.push(Row::new("vm", &job.name, Outcome::of(result), started));
        return rows;
    };
    let vm_result = converge_vm_itself(lv, paths, plan, wanted, &job.action, progress);
    let touched = matches!(&vm_result, Ok(Some(_)));
    match vm_result {
        Ok(Some(what)) => rows.push(Row::new("vm", &job.name, Outcome::Done { what }, started)),
        Ok(None) => rows.push(Row::new("vm", &job.name, Outcome::Unchanged, started)),
        Err(e) => {
            rows.push(Row::new("vm", &job.name, Outcome::failed(&e), started));
            let why = format!("VM '{}' failed", job.name);
            rows.extend(dependents(plan, wanted, &why));
            return rows;
        }
    }
    let digest = match applied_digest(plan, wanted) {
        Ok(digest) => digest,
        Err(e) => {
            rows.push(Row::new(
                "stack",
                &wanted.name,
                Outcome::failed(&e),
                Instant::now(),
            ));
            return rows;
        }
    };
    if !touched && job.inside_unchanged {
        // As the plan last brought it up; the guest is not logged into (see the module doc).
        for (kind, name) in dependent_names(plan, wanted) {
            rows.push(Row::new(kind, &name, Outcome::Unchanged, Instant::now()));
        }
        return rows;
    }
    let mut all_ok = true;
    if let Some(engine) = &wanted.engine {
        let started = Instant::now();
        let result = lifecycle::engine_install::install(
            lv,
            paths,
            &wanted.name,
            &install_request(engine),
            progress,
        );
        let outcome = match result {
            Ok(report) if report.changes.is_empty() => Outcome::Unchanged,
            Ok(report) => Outcome::Done {
                what: report.changes.join("; "),
            },
            Err(e) => Outcome::failed(&e),
        };
        if outcome.is_failure() {
            rows.push(Row::new("engine", &wanted.name, outcome, started));
            let why = format!("the engine in VM '{}' failed", wanted.name);
            rows.extend(
                dependents(plan, wanted, &why)
                    .into_iter()
                    .filter(|r| r.kind == "stack"),
            );
            return rows;
        }
        rows.push(Row::new("engine", &wanted.name, outcome, started));
    }
    for stack in plan.stacks_on(&wanted.name) {
        let started = Instant::now();
        progress.stage(&format!("stack {}", stack.name));
        let result = stack_file(plan, &stack.name, &wanted.name).and_then(|file| {
            lifecycle::stack_up::up(lv, paths, &file, UpOptions::default(), progress)
                .map(|up| (up.checks.is_some(), up.report.services.len()))
        });
        let outcome = up_outcome(result);
        all_ok &= !outcome.is_failure();
        let name = stack_object_name(&stack.name, &wanted.name);
        rows.push(Row::new("stack", &name, outcome, started));
    }
    // A swarm's VM records it once its swarm and the swarm's stacks are up too.
    if all_ok && plan.swarm_of(&wanted.name).is_none() {
        record_or_say(lv, &wanted.name, &digest, progress);
    }
    rows
}

/// The row of one stack's `up`, given whether it changed anything (the preflight checks run
/// only then) and how many services the stack has.
fn up_outcome(result: Result<(bool, usize)>) -> Outcome {
    match result {
        Ok((false, _)) => Outcome::Unchanged,
        Ok((true, services)) => Outcome::Done {
            what: format!("up ({services} services)"),
        },
        Err(e) => Outcome::failed(&e),
    }
}

fn record_or_say(lv: &Libvirt, vm: &str, digest: &str, progress: &Progress) {
    if let Err(e) = record_digest(lv, vm, digest) {
        progress.println(&format!(
            "strata: {vm}: could not record what was applied ({}); the next apply checks the guest again",
            e.message()
        ));
    }
}

/// One swarm of the plan (`swarm create` of its VMs: it adds what is missing and changes
/// nothing else), then its stacks; each row as it ends. `failed_vm` says why it cannot be
/// tried: one of its VMs failed, or the run was interrupted.
fn converge_swarm(
    lv: &Libvirt,
    paths: &Paths,
    plan: &Plan,
    step: &Step,
    failed_vm: Option<String>,
    progress: &Progress,
) -> Vec<Row> {
    let swarm = &plan.swarms[&step.name];
    let stacks = plan.stacks_on_swarm(&swarm.name);
    let stack_rows = |outcome: Outcome| -> Vec<Row> {
        stacks
            .iter()
            .map(|stack| {
                let name = stack_object_name(&stack.name, &swarm.name);
                Row::new("stack", &name, outcome.clone(), Instant::now())
            })
            .collect()
    };
    let mut rows = Vec::new();
    let started = Instant::now();
    let skip = |why: &str| Outcome::Skipped {
        why: why.to_string(),
    };
    match (&step.action, failed_vm) {
        (Action::Unchanged, _) => {
            rows.push(Row::new("swarm", &swarm.name, Outcome::Unchanged, started));
            rows.extend(stack_rows(Outcome::Unchanged));
            return rows;
        }
        (Action::Refused { why }, _) => {
            rows.push(Row::new("swarm", &swarm.name, refused(why), started));
            rows.extend(stack_rows(skip(&format!("swarm '{}' refused", swarm.name))));
            return rows;
        }
        (_, Some(why)) => {
            rows.push(Row::new("swarm", &swarm.name, skip(&why), started));
            rows.extend(stack_rows(skip(&why)));
            return rows;
        }
        _ => {}
    }
    progress.stage("swarm create (checks first)");
    let request = lifecycle::swarm::SwarmRequest {
        name: swarm.name.clone(),
        managers: swarm.managers.clone(),
        workers: swarm.workers.clone(),
        force: false,
    };
    match lifecycle::swarm::create(lv, paths, &request) {
        Ok(report) => {
            let changed: Vec<String> = report
                .nodes
                .iter()
                .filter(|n| n.action != "unchanged")
                .map(|n| format!("{} {}", n.vm, n.action))
                .collect();
            let outcome = if changed.is_empty() {
                Outcome::Unchanged
            } else {
                Outcome::Done {
                    what: changed.join(", "),
                }
            };
            rows.push(Row::new("swarm", &swarm.name, outcome, started));
        }
        Err(e) => {
            rows.push(Row::new("swarm", &swarm.name, Outcome::failed(&e), started));
            let why = format!("swarm '{}' failed", swarm.name);
            rows.extend(stack_rows(skip(&why)));
            return rows;
        }
    }
    let mut all_ok = true;
    for stack in &stacks {
        let started = Instant::now();
        progress.stage(&format!("stack {}", stack.name));
        let result = swarm_stack_file(plan, &stack.name, &swarm.name).and_then(|file| {
            lifecycle::stack_swarm::up(
                lv,
                paths,
                &file,
                &swarm.name,
                UpOptions::default(),
                progress,
            )
            .map(|up| (up.checks.is_some(), up.report.services.len()))
        });
        let outcome = up_outcome(result);
        all_ok &= !outcome.is_failure();
        let name = stack_object_name(&stack.name, &swarm.name);
        rows.push(Row::new("stack", &name, outcome, started));
    }
    if all_ok {
        for vm in swarm.members() {
            match applied_digest(plan, &plan.vms[vm]) {
                Ok(digest) => record_or_say(lv, vm, &digest, progress),
                Err(e) => progress.println(&format!("strata: {vm}: {}", e.message())),
            }
        }
    }
    rows
}

/// The VM itself: Some(what was done), or None when nothing had to change.
fn converge_vm_itself(
    lv: &Libvirt,
    paths: &Paths,
    plan: &Plan,
    wanted: &PlanVm,
    action: &Action,
    progress: &Progress,
) -> Result<Option<String>> {
    let create = |keep_address: Option<KeptAddress>| -> Result<String> {
        let request = CreateRequest {
            keep_address,
            ..create_request(plan, wanted)
        };
        let created = lifecycle::create(lv, paths, &request, progress)?;
        Ok(format!(
            "created at {} ({})",
            created.ip,
            created.accel.as_str()
        ))
    };
    match action {
        Action::Create => create(None).map(Some),
        Action::Replace { why } => {
            // The new VM answers where the old one did (forwards, DNS, notes keep working)
            // when it stays on the same network and nothing took the address meanwhile.
            let (_, old) = domain::lookup(&lv.conn(), &wanted.name)?;
            let keep = (old.record.network == wanted.net).then(|| KeptAddress {
                mac: old.record.mac.clone(),
                ip: old.record.ip,
            });
            progress.stage("destroying the old VM (its data disk is kept)");
            lifecycle::destroy_with(lv, paths, &wanted.name, DataDisk::Keep)?;
            let what = create(keep)?;
            Ok(Some(format!("replaced ({}); {what}", why.join("; "))))
        }
        Action::Update { changes, restart } => {
            progress.stage("updating the definition");
            update_in_place(lv, paths, wanted)?;
            let when = if *restart {
                " (restart needed: it takes effect at the next boot)"
            } else {
                ""
            };
            start_if_stopped(lv, paths, &wanted.name, progress)?;
            Ok(Some(format!("updated {}{when}", changes.join("; "))))
        }
        Action::Unchanged => {
            Ok(start_if_stopped(lv, paths, &wanted.name, progress)?.then(|| "started".to_string()))
        }
        Action::Refused { why } => Err(Error::failed(why.clone())),
        Action::Delete => Err(Error::failed(format!(
            "VM '{}' is both in the plan and to be deleted",
            wanted.name
        ))),
    }
}

fn create_request(plan: &Plan, wanted: &PlanVm) -> CreateRequest {
    CreateRequest {
        name: wanted.name.clone(),
        template: wanted.template.clone(),
        cpus: wanted.cpus,
        // Sizes in bytes: the plan has parsed them already.
        memory: wanted.memory.map(|b| b.to_string()),
        disk: wanted.disk.map(|b| b.to_string()),
        network: wanted.net.clone(),
        accel: AccelRequest::Auto,
        ssh_timeout: Some(SSH_TIMEOUT),
        plan: Some(plan.name.clone()),
        keep_address: None,
    }
}

fn install_request(engine: &PlanEngine) -> InstallRequest {
    InstallRequest {
        source: Source::Bundle,
        version: engine.version.clone(),
        storage: StorageRequest {
            policy: engine.storage,
            data_disk: engine.data_disk.is_some(),
            devicemapper: false,
        },
        data_disk: engine.data_disk,
        log_driver: LogDriver::Local,
    }
}

/// Memory and vCPUs into the definition; a larger root disk grown (live when it runs).
fn update_in_place(lv: &Libvirt, paths: &Paths, wanted: &PlanVm) -> Result<()> {
    let conn = lv.conn();
    let (dom, info) = domain::lookup(&conn, &wanted.name)?;
    let now = sizing::configured(&dom)?;
    sizing::set_configured(
        &dom,
        sizing::Configured {
            memory: wanted.memory.unwrap_or(now.memory),
            cpus: wanted.cpus.unwrap_or(now.cpus),
        },
    )?;
    if let (Some(size), Some(root)) = (
        wanted.disk,
        info.record.volume(crate::vm::record::VolumeRole::Root),
    ) {
        let pool_handle = pool::ensure_home(lv, paths)?;
        sizing::grow_disk(&dom, &pool_handle, root, size)?;
    }
    Ok(())
}

/// Start the VM when it is not running and wait for SSH; true when it had to be started.
fn start_if_stopped(lv: &Libvirt, paths: &Paths, name: &str, progress: &Progress) -> Result<bool> {
    let (dom, _) = domain::lookup(&lv.conn(), name)?;
    if dom.is_active()? {
        return Ok(false);
    }
    progress.stage("starting");
    domain::start(&dom)?;
    let route = crate::guest::Route::of_vm(lv, paths, name)?;
    let restart = || domain::start(&domain::lookup(&lv.conn(), name)?.0);
    lifecycle::wait_until_ready(lv, name, &route, SSH_TIMEOUT, progress, &restart)?;
    Ok(true)
}

/// The stack file as the plan runs it: on `vm`, whatever VM the file names.
pub fn stack_file(plan: &Plan, stack: &str, vm: &str) -> Result<StackFile> {
    let mut file = StackFile::load(&plan.stacks[stack].file)?;
    file.require_vm()?;
    file.vm = vm.to_string();
    Ok(file)
}

/// The stack file as the plan runs it: on swarm `swarm`, whatever placement the file says.
pub fn swarm_stack_file(plan: &Plan, stack: &str, swarm: &str) -> Result<StackFile> {
    let mut file = StackFile::load(&plan.stacks[stack].file)?;
    file.swarm = Some(swarm.to_string());
    Ok(file)
}

fn dependent_names(plan: &Plan, vm: &PlanVm) -> Vec<(&'static str, String)> {
    let mut names = Vec::new();
    if vm.engine.is_some() {
        names.push(("engine", vm.name.clone()));
    }
    for stack in plan.stacks_on(&vm.name) {
        names.push(("stack", stack_object_name(&stack.name, &vm.name)));
    }
    names
}

fn dependents(plan: &Plan, vm: &PlanVm, why: &str) -> Vec<Row> {
    dependent_names(plan, vm)
        .into_iter()
        .map(|(kind, name)| {
            let why = why.to_string();
            Row::new(kind, &name, Outcome::Skipped { why }, Instant::now())
        })
        .collect()
}

/// What the plan brings up in the VM, as one sha256: the engine section and, for each stack,
/// its name and the stack file's bytes; for a VM in a swarm, the swarm's members and the
/// stacks on it too.
pub fn applied_digest(plan: &Plan, vm: &PlanVm) -> Result<String> {
    let mut text = format!("engine {:?}\n", vm.engine);
    let mut stacks = plan.stacks_on(&vm.name);
    if let Some(swarm) = plan.swarm_of(&vm.name) {
        text.push_str(&format!(
            "swarm {} managers {:?} workers {:?}\n",
            swarm.name, swarm.managers, swarm.workers
        ));
        stacks.extend(plan.stacks_on_swarm(&swarm.name));
    }
    let mut files: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for stack in stacks {
        let bytes = std::fs::read(&stack.file).map_err(|e| {
            Error::from(e).context(format!("reading stack file {}", stack.file.display()))
        })?;
        files.insert(&stack.name, bytes);
    }
    for (name, bytes) in files {
        text.push_str(&format!(
            "stack {name} {}\n",
            crate::digest::sha256_bytes(&bytes)
        ));
    }
    Ok(crate::digest::sha256_bytes(text.as_bytes()))
}

fn record_digest(lv: &Libvirt, vm: &str, digest: &str) -> Result<()> {
    let (dom, info) = domain::lookup(&lv.conn(), vm)?;
    if info.record.applied.as_deref() == Some(digest) {
        return Ok(());
    }
    let mut record = info.record;
    record.applied = Some(digest.to_string());
    domain::set_record(&dom, &record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-plan-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn plan_in(dir: &std::path::Path, engine: &str) -> Plan {
        let text = format!(
            "name = \"lab\"\n[networks.lab]\nsubnet = \"10.80.0.0/24\"\n\
             [vms.db]\ntemplate = \"debian-12\"\nnet = \"lab\"\n[vms.db.engine]\n{engine}\n\
             [vms.web]\ntemplate = \"debian-12-docker\"\nnet = \"lab\"\ncount = 2\n\
             [stacks.records]\nfile = \"records.toml\"\nvm = \"db\"\n\
             [stacks.front]\nfile = \"front.toml\"\n"
        );
        Plan::parse(&dir.join("lab.toml"), &text).unwrap()
    }

    #[test]
    fn stacks_go_where_the_plan_or_their_file_says() {
        let dir = scratch("targets");
        std::fs::write(
            dir.join("records.toml"),
            "name = \"records\"\nvm = \"elsewhere\"\n[services.a]\ntemplate = \"busybox-httpd\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("front.toml"),
            "name = \"front\"\nvm = \"web\"\n[services.a]\ntemplate = \"busybox-httpd\"\n",
        )
        .unwrap();
        let mut plan = plan_in(&dir, "storage = \"overlay2\"");
        plan.fill_stack_targets(&|path| StackFile::placement_of_file(path))
            .unwrap();
        let on = |vm: &str| -> Vec<String> {
            plan.stacks_on(vm).iter().map(|s| s.name.clone()).collect()
        };
        // records: the plan's `vm` wins over the file's; front: the file's `web` is the count.
        assert_eq!(on("db"), ["records"]);
        assert_eq!(on("web-1"), ["front"]);
        assert_eq!(on("web-2"), ["front"]);
        assert_eq!(stack_file(&plan, "records", "db").unwrap().vm, "db");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_swarm_vm_has_applied_its_swarm_and_the_stack_files_on_it() {
        let dir = scratch("swarm-digest");
        std::fs::write(dir.join("front.toml"), "name = \"front\"\nvm = \"web\"\n").unwrap();
        std::fs::write(
            dir.join("records.toml"),
            "name = \"records\"\nvm = \"db\"\n",
        )
        .unwrap();
        let spread = dir.join("spread.toml");
        let spread_text =
            "name = \"spread\"\nswarm = \"lab\"\n[services.a]\ntemplate = \"busybox-httpd\"\n";
        std::fs::write(&spread, spread_text).unwrap();
        let alone = plan_in(&dir, "storage = \"overlay2\"");
        let swarmed = |workers: &str| {
            let mut text = String::from(
                "name = \"lab\"\n[networks.lab]\nsubnet = \"10.80.0.0/24\"\n\
                 [vms.db]\ntemplate = \"debian-12\"\nnet = \"lab\"\n[vms.db.engine]\nstorage = \"overlay2\"\n\
                 [vms.web]\ntemplate = \"debian-12-docker\"\nnet = \"lab\"\ncount = 2\n\
                 [stacks.records]\nfile = \"records.toml\"\nvm = \"db\"\n\
                 [stacks.front]\nfile = \"front.toml\"\n",
            );
            text.push_str(&format!(
                "[swarms.lab]\nmanagers = [\"web-1\"]\nworkers = [{workers}]\n\
                 [stacks.spread]\nfile = \"spread.toml\"\nswarm = \"lab\"\n"
            ));
            Plan::parse(&dir.join("lab.toml"), &text).unwrap()
        };
        let plan = swarmed("\"web-2\"");
        let first = applied_digest(&plan, &plan.vms["web-1"]).unwrap();
        assert_ne!(first, applied_digest(&alone, &alone.vms["web-1"]).unwrap());
        // Its swarm's members, and the stack file on the swarm.
        let smaller = swarmed("");
        assert_ne!(
            first,
            applied_digest(&smaller, &smaller.vms["web-1"]).unwrap()
        );
        std::fs::write(&spread, format!("{spread_text}# edited\n")).unwrap();
        assert_ne!(first, applied_digest(&plan, &plan.vms["web-1"]).unwrap());
        // A VM outside the swarm is not concerned.
        assert_eq!(
            applied_digest(&plan, &plan.vms["db"]).unwrap(),
            applied_digest(&alone, &alone.vms["db"]).unwrap()
        );
        // The file as the plan runs it: on the plan's swarm.
        assert_eq!(
            swarm_stack_file(&plan, "spread", "lab")
                .unwrap()
                .swarm
                .as_deref(),
            Some("lab")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_was_applied_changes_with_the_engine_section_and_the_stack_files() {
        let dir = scratch("digest");
        let records = dir.join("records.toml");
        std::fs::write(&records, "name = \"records\"\nvm = \"db\"\n").unwrap();
        std::fs::write(
            dir.join("front.toml"),
            "name = \"front\"\nvm = \"web\"\n[services.a]\ntemplate = \"busybox-httpd\"\n",
        )
        .unwrap();
        let plan = plan_in(&dir, "storage = \"overlay2\"");
        let first = applied_digest(&plan, &plan.vms["db"]).unwrap();
        assert_eq!(first, applied_digest(&plan, &plan.vms["db"]).unwrap());
        assert_eq!(first.len(), 64);
        // Another VM brings up other stacks.
        assert_ne!(first, applied_digest(&plan, &plan.vms["web-1"]).unwrap());
        // The engine section.
        let btrfs = plan_in(&dir, "storage = \"btrfs\"\ndata_disk = \"2G\"");
        assert_ne!(first, applied_digest(&btrfs, &btrfs.vms["db"]).unwrap());
        // A stack file's bytes.
        std::fs::write(&records, "name = \"records\"\nvm = \"db\"\n# edited\n").unwrap();
        assert_ne!(first, applied_digest(&plan, &plan.vms["db"]).unwrap());
        // A stack file that cannot be read is an error, not "unchanged".
        std::fs::remove_file(&records).unwrap();
        assert!(applied_digest(&plan, &plan.vms["db"]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
