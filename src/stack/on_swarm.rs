//! A stack on a swarm, through one manager's Docker API: the images put on every node that may
//! run each service (there is no registry), the stack's networks as overlay networks with the
//! swarm's MTU, services created or updated (only those whose spec changed) wave by wave, each
//! wave once every task of the services before it runs (healthy, with a health check), and
//! services no longer in the file removed. `ps` lists each task with its VM, `down` removes
//! services, then networks, then (asked) the volumes each node made. Only objects carrying the
//! stack's label are ever updated or removed. The swarm's VMs and their Docker connections are
//! the caller's (lifecycle/stack_swarm.rs), given as plain data.

use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, found, GuestDocker};
use crate::stack::container::{health_deadline, LABEL_CONFIG, LABEL_SERVICE, LABEL_STACK};
use crate::stack::file::{StackFile, SwarmMode};
use crate::stack::images::{self, Obtained};
use crate::stack::objects::{describe_made, inspect_network, made_by, not_ours, ServiceRow};
use crate::stack::resolve::Resolved;
use crate::stack::service_spec::{self, ServicePlan};
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest, Task, TaskState};
use bollard::query_parameters::{
    ListNetworksOptions, ListServicesOptions, ListTasksOptions, ListVolumesOptions,
    UpdateServiceOptions,
};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The network option that sets an overlay network's MTU.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// How long tasks get to be scheduled and start, beyond their health checks. Under TCG a
/// node's first task on an overlay network with a published port took 3-4 minutes in
/// `Starting` (measured: three 2-vCPU guests on 2 cores, no health check), and 250 s was too
/// short on a slower machine.
const START_SLACK: Duration = Duration::from_secs(600);

/// One node of the swarm, ready, with its engine.
pub struct Node<'a> {
    pub vm: String,
    pub id: String,
    /// Whether it takes new tasks (availability active; a paused or drained node takes none).
    pub active: bool,
    pub docker: &'a GuestDocker,
}

/// The swarm a stack goes on: a manager to ask, the ready nodes, the overlay MTU it chose.
pub struct SwarmTarget<'a> {
    pub manager: &'a GuestDocker,
    pub nodes: Vec<Node<'a>>,
    /// Every node of the swarm, ready or not, as (node id, VM): what `ps` names tasks by.
    pub vms_by_node: Vec<(String, String)>,
    pub overlay_mtu: Option<u32>,
}

impl SwarmTarget<'_> {
    pub fn vm_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.vm.clone()).collect()
    }

    fn vm_of(&self, node_id: &str) -> String {
        self.vms_by_node
            .iter()
            .find(|(id, _)| id == node_id)
            .map_or_else(|| format!("node {node_id}"), |(_, vm)| vm.clone())
    }

    /// The nodes a service may run on.
    fn allowed<'s>(&'s self, placement: &'s [String]) -> impl Iterator<Item = &'s Node<'s>> {
        self.nodes
            .iter()
            .filter(move |n| may_run(&n.vm, n.active, placement))
    }
}

/// Whether a ready node on VM `vm` may run a service placed on `placement` (empty: anywhere):
/// only if it takes new tasks. A drained node counted for a global service would be waited
/// for in vain.
fn may_run(vm: &str, active: bool, placement: &[String]) -> bool {
    active && (placement.is_empty() || placement.iter().any(|p| p == vm))
}

/// What `up` did on a swarm.
#[derive(Debug, serde::Serialize)]
pub struct SwarmUpReport {
    pub stack: String,
    pub swarm: String,
    pub services: Vec<ServiceRow>,
    pub removed: Vec<String>,
    pub images: Vec<String>,
}

/// One task of a service, as `ps` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskRow {
    pub service: String,
    pub task: String,
    pub vm: String,
    pub state: String,
    pub error: String,
}

/// The stack's services on the swarm by their service name (strata.service label).
fn stack_services(
    docker: &GuestDocker,
    stack: &str,
) -> Result<HashMap<String, bollard::models::Service>> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_STACK}={stack}")])]);
    let listed = docker
        .run(docker.docker.list_services(Some(ListServicesOptions {
            filters: Some(filters),
            ..Default::default()
        })))
        .map_err(docker_error)?;
    Ok(listed
        .into_iter()
        .filter_map(|s| {
            let name = s
                .spec
                .as_ref()?
                .labels
                .as_ref()?
                .get(LABEL_SERVICE)?
                .clone();
            Some((name, s))
        })
        .collect())
}

fn config_label(service: &bollard::models::Service) -> Option<&str> {
    service
        .spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(LABEL_CONFIG)
        .map(String::as_str)
}

/// The tasks of service `name` that the swarm wants running.
fn live_tasks(docker: &GuestDocker, name: &str) -> Result<Vec<Task>> {
    let filters = HashMap::from([
        ("service".to_string(), vec![name.to_string()]),
        ("desired-state".to_string(), vec!["running".to_string()]),
    ]);
    docker
        .run(docker.docker.list_tasks(Some(ListTasksOptions {
            filters: Some(filters),
        })))
        .map_err(docker_error)
}

fn task_hash(task: &Task) -> Option<&str> {
    task.spec
        .as_ref()?
        .container_spec
        .as_ref()?
        .labels
        .as_ref()?
        .get(LABEL_CONFIG)
        .map(String::as_str)
}

/// How many tasks the service should run on `target`.
fn expected_tasks(target: &SwarmTarget, r: &Resolved) -> usize {
    match r.service.decl.swarm_mode() {
        SwarmMode::Replicated(n) => n as usize,
        SwarmMode::Global => target.allowed(&r.service.decl.placement).count(),
    }
}

/// All of the service's wanted tasks run the current spec (and, with a health check, are
/// healthy: Swarm reports a task running only once its check passed).
fn settled(tasks: &[Task], hash: &str, expected: usize) -> bool {
    tasks.len() == expected
        && tasks.iter().all(|t| {
            task_hash(t) == Some(hash)
                && t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
        })
}

/// Plan every service (images named, placement known) without touching the swarm.
fn plans(
    stack: &StackFile,
    resolved: &[Resolved],
    target: &SwarmTarget,
    image_ids: &[String],
) -> Result<Vec<ServicePlan>> {
    let nodes = target.vm_names();
    resolved
        .iter()
        .zip(image_ids)
        .map(|(r, id)| service_spec::plan(stack, r.service, &r.spec, id, &nodes))
        .collect()
}

/// The stack's rows when the swarm runs it exactly as its file says; None when anything is
/// to do. Reads only.
pub fn unchanged(
    stack: &StackFile,
    resolved: &[Resolved],
    target: &SwarmTarget,
) -> Result<Option<Vec<ServiceRow>>> {
    let services = stack_services(target.manager, &stack.name)?;
    if services.keys().any(|s| !stack.services.contains_key(s)) {
        return Ok(None);
    }
    let mut ids = Vec::new();
    for r in resolved {
        // The image as the first allowed node has it; none there means work to do.
        let Some(node) = target.allowed(&r.service.decl.placement).next() else {
            return Ok(None);
        };
        let known = images::catalog(node.docker)?;
        match images::present(node.docker, &known, &r.template, &r.spec.image) {
            Some(id) => ids.push(id),
            None => return Ok(None),
        }
    }
    let mut rows = Vec::new();
    for (r, plan) in resolved.iter().zip(plans(stack, resolved, target, &ids)?) {
        let current = services.get(&r.service.name).and_then(config_label);
        if current != Some(plan.config_hash.as_str()) {
            return Ok(None);
        }
        let tasks = live_tasks(target.manager, &plan.name)?;
        if !settled(&tasks, &plan.config_hash, expected_tasks(target, r)) {
            return Ok(None);
        }
        rows.push(row(target, &plan, &tasks, "unchanged", 0.0));
    }
    Ok(Some(rows))
}

fn row(
    target: &SwarmTarget,
    plan: &ServicePlan,
    tasks: &[Task],
    action: &str,
    seconds: f64,
) -> ServiceRow {
    let mut vms: Vec<String> = tasks
        .iter()
        .filter_map(|t| t.node_id.as_deref())
        .map(|id| target.vm_of(id))
        .collect();
    vms.sort();
    let ports = plan
        .spec
        .endpoint_spec
        .as_ref()
        .and_then(|e| e.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|p| {
                    format!(
                        "*:{}->{}",
                        p.published_port.unwrap_or_default(),
                        p.target_port.unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    ServiceRow {
        service: plan.service.clone(),
        container: plan.name.clone(),
        action: action.to_string(),
        state: format!("{} running", tasks.len()),
        health: if plan.has_healthcheck {
            format!("healthy on {}", vms.join(","))
        } else {
            format!("on {}", vms.join(","))
        },
        ports,
        seconds,
    }
}

/// What one `up` created, to take back when it fails.
#[derive(Default)]
struct Made {
    services: Vec<String>,
    networks: Vec<String>,
}

/// Converge the stack on the swarm; on failure, remove the services and networks this run
/// created (unless `keep_failed`; services it updated stay updated: Swarm keeps their
/// previous spec, `docker service rollback` on a manager goes back).
pub fn converge(
    stack: &StackFile,
    resolved: &[Resolved],
    target: &SwarmTarget,
    keep_failed: bool,
) -> Result<SwarmUpReport> {
    let mut report = SwarmUpReport {
        stack: stack.name.clone(),
        swarm: stack.swarm.clone().unwrap_or_default(),
        services: Vec::new(),
        removed: Vec::new(),
        images: Vec::new(),
    };
    let mut made = Made::default();
    let result: Result<()> = (|| {
        let ids = put_images(stack, resolved, target, &mut report)?;
        let plans = plans(stack, resolved, target, &ids)?;
        make_networks(stack, target, &mut made)?;
        remove_orphans(stack, target, &mut report)?;
        let mut wave_start = 0;
        while wave_start < resolved.len() {
            let wave = resolved[wave_start].wave;
            let end = resolved[wave_start..]
                .iter()
                .position(|r| r.wave != wave)
                .map_or(resolved.len(), |p| wave_start + p);
            let begun = Instant::now();
            let mut actions = Vec::new();
            for (r, plan) in resolved[wave_start..end]
                .iter()
                .zip(&plans[wave_start..end])
            {
                actions.push(apply_service(stack, target, r, plan, &mut made)?);
            }
            for ((r, plan), action) in resolved[wave_start..end]
                .iter()
                .zip(&plans[wave_start..end])
                .zip(actions)
            {
                let tasks = wait_settled(stack, target, r, plan)?;
                let seconds = begun.elapsed().as_secs_f64();
                report
                    .services
                    .push(row(target, plan, &tasks, action, seconds));
            }
            wave_start = end;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(report),
        Err(e) if keep_failed => Err(e.and_hint(format!(
            "--keep-failed: left on the swarm: {}",
            made.describe()
        ))),
        Err(e) => Err(match made.undo(target.manager, &stack.name) {
            Ok(()) => e.and_hint(format!(
                "removed what this run had created ({})",
                made.describe()
            )),
            Err(u) => e.and_hint(format!(
                "removing what this run had created also failed: {u}"
            )),
        }),
    }
}

impl Made {
    fn describe(&self) -> String {
        describe_made(&[("service", &self.services), ("network", &self.networks)])
    }

    fn undo(&self, manager: &GuestDocker, stack: &str) -> Result<()> {
        for s in self.services.iter().rev() {
            remove_service(manager, stack, s)?;
        }
        remove_networks(manager, stack, &self.networks)
    }
}

/// Each service's image on every node that may run it: got (built, loaded, pulled) on the
/// first, copied from there to the others, so that every node has the same id.
fn put_images(
    stack: &StackFile,
    resolved: &[Resolved],
    target: &SwarmTarget,
    report: &mut SwarmUpReport,
) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for r in resolved {
        let mut allowed = target.allowed(&r.service.decl.placement);
        let unavailable = |vm: &str, why: String| {
            stack.error_at(
                r.service,
                format!("its image is not available on VM '{vm}': {why}"),
                "fix the template's [image] or make the image available in the VMs",
            )
        };
        let first = allowed.next().ok_or_else(|| {
            stack.error_at(
                r.service,
                "no ready, active node of the swarm may run it",
                "see `strata swarm list`: its placement names VMs whose nodes are not ready, or paused or drained (`docker node update --availability active` on a manager)",
            )
        })?;
        let (id, how) = images::ensure(first.docker, &r.template, &r.spec.image)
            .map_err(|why| unavailable(&first.vm, why))?;
        let mut said = vec![(first.vm.clone(), how)];
        let name = images::image_name(&r.template, &r.spec.image)
            .ok_or_else(|| unavailable(&first.vm, "its source cannot be read".into()))?;
        for node in allowed {
            let how = images::copy_image(first.docker, node.docker, &name, &id)
                .map_err(|why| unavailable(&node.vm, why))?;
            said.push((node.vm.clone(), how));
        }
        for (vm, how) in said {
            let verb = match how {
                Obtained::Present => continue,
                Obtained::Built => "built",
                Obtained::Pulled => "pulled",
                Obtained::Loaded => "loaded",
            };
            report
                .images
                .push(format!("{verb} for {} on {vm}", r.service.name));
        }
        ids.push(id);
    }
    Ok(ids)
}

/// The stack's networks as overlay networks (internal kept, the swarm's MTU); one of the same
/// name that the stack did not make is refused.
fn make_networks(stack: &StackFile, target: &SwarmTarget, made: &mut Made) -> Result<()> {
    let docker = target.manager;
    for (declared, decl) in &stack.networks {
        let name = stack.scoped(declared);
        let existing = inspect_network(docker, &name)?;
        if let Some(n) = existing {
            if !made_by(n.labels.as_ref(), &stack.name) {
                return Err(not_ours("network", &name, &stack.name));
            }
            // The same stack name used for a stack in the manager VM made a bridge network
            // of this name: a service cannot use it across the swarm.
            if n.driver.as_deref() != Some("overlay") {
                return Err(Error::bad_input(format!(
                    "network {name} in the manager VM is a {} network of a stack '{}' in that VM, not the swarm's",
                    n.driver.as_deref().unwrap_or("local"),
                    stack.name
                ))
                .with_hint("stacks in a VM and stacks on a swarm share Docker's names in the manager VM: rename one of the stacks, or `strata down` the one in the VM"));
            }
            continue;
        }
        let options = target
            .overlay_mtu
            .map(|mtu| HashMap::from([(MTU_OPTION.to_string(), mtu.to_string())]));
        docker
            .run(docker.docker.create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("overlay".into()),
                internal: Some(decl.internal),
                attachable: Some(false),
                options,
                ipam: decl.subnet.map(|subnet| Ipam {
                    config: Some(vec![IpamConfig {
                        subnet: Some(subnet.to_string()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                labels: Some(HashMap::from([(
                    LABEL_STACK.to_string(),
                    stack.name.clone(),
                )])),
                ..Default::default()
            }))
            .map_err(|e| docker_error(e).context(format!("creating overlay network {name}")))?;
        made.networks.push(name);
    }
    Ok(())
}

/// Services of the stack no longer in its file.
fn remove_orphans(
    stack: &StackFile,
    target: &SwarmTarget,
    report: &mut SwarmUpReport,
) -> Result<()> {
    for (service, _) in stack_services(target.manager, &stack.name)? {
        if !stack.services.contains_key(&service) {
            let name = stack.scoped(&service);
            remove_service(target.manager, &stack.name, &name)?;
            report.removed.push(format!("service {name}"));
        }
    }
    Ok(())
}

/// Create the service, or update it when its spec changed; a service by that name the stack
/// did not make is refused.
fn apply_service(
    stack: &StackFile,
    target: &SwarmTarget,
    r: &Resolved,
    plan: &ServicePlan,
    made: &mut Made,
) -> Result<&'static str> {
    let docker = target.manager;
    let current = inspect_service(docker, &plan.name)?;
    let in_service = |e: bollard::errors::Error, what: &str| {
        let e = docker_error(e);
        stack.error_at(
            r.service,
            format!("{what} service {}: {}", plan.name, e.message()),
            e.hint()
                .unwrap_or("see the swarm manager's dockerd log")
                .to_string(),
        )
    };
    let Some(current) = current else {
        docker
            .run(docker.docker.create_service(plan.spec.clone(), None))
            .map_err(|e| in_service(e, "creating"))?;
        made.services.push(plan.name.clone());
        return Ok("created");
    };
    let labels = current.spec.as_ref().and_then(|s| s.labels.as_ref());
    if !made_by(labels, &stack.name) {
        return Err(not_ours("service", &plan.name, &stack.name));
    }
    if config_label(&current) == Some(plan.config_hash.as_str()) {
        return Ok("unchanged");
    }
    let version = current
        .version
        .as_ref()
        .and_then(|v| v.index)
        .and_then(|v| i32::try_from(v).ok())
        .ok_or_else(|| Error::failed(format!("service {} has no version to update", plan.name)))?;
    docker
        .run(docker.docker.update_service(
            &plan.name,
            plan.spec.clone(),
            UpdateServiceOptions {
                version,
                ..Default::default()
            },
            None,
        ))
        .map_err(|e| in_service(e, "updating"))?;
    Ok("updated")
}

/// Wait until every wanted task of the service runs its current spec; Docker's words for the
/// last task that failed when they do not.
fn wait_settled(
    stack: &StackFile,
    target: &SwarmTarget,
    r: &Resolved,
    plan: &ServicePlan,
) -> Result<Vec<Task>> {
    let limit = health_deadline(&r.spec).unwrap_or(Duration::from_secs(60)) + START_SLACK;
    let begun = Instant::now();
    let deadline = begun + limit;
    let expected = expected_tasks(target, r);
    let mut said = String::new();
    loop {
        let tasks = live_tasks(target.manager, &plan.name)?;
        if settled(&tasks, &plan.config_hash, expected) {
            return Ok(tasks);
        }
        // A swarm can take minutes to start tasks (overlay and ingress set up on each node):
        // say where they are whenever that changes, so a slow `up` is not a silent one.
        let states = task_states(&tasks);
        if states != said {
            crate::errln!(
                "strata: {}: {states} of {expected} ({}s)",
                r.service.name,
                begun.elapsed().as_secs()
            );
            said = states;
        }
        let failure = failed_task(target.manager, &plan.name, &plan.config_hash)?;
        if let Some((state, why)) = &failure {
            if *state == TaskState::REJECTED {
                return Err(stack.error_at(
                    r.service,
                    format!("the swarm rejected its task: {why}"),
                    "an image missing on a node, or a placement no node meets",
                ));
            }
        }
        if Instant::now() > deadline {
            let running = tasks
                .iter()
                .filter(|t| t.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING))
                .count();
            return Err(stack.error_at(
                r.service,
                format!(
                    "{running} of {expected} tasks running after {}s ({}){}",
                    limit.as_secs(),
                    said,
                    failure.map(|(_, why)| format!("; the last failed task: {why}")).unwrap_or_default()
                ),
                "`strata ps STACK` shows each task and its VM; a health check that never passes keeps a task from running",
            ));
        }
        // Each look is two API calls on the manager, through its SSH tunnel: not too often.
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// How many of the tasks are in each state, e.g. "1 running, 2 preparing".
fn task_states(tasks: &[Task]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for task in tasks {
        let state = task
            .status
            .as_ref()
            .and_then(|s| s.state)
            .map_or_else(|| "unknown".to_string(), |s| s.to_string());
        match counts.iter_mut().find(|(s, _)| *s == state) {
            Some((_, n)) => *n += 1,
            None => counts.push((state, 1)),
        }
    }
    if counts.is_empty() {
        return "no task yet".to_string();
    }
    counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The newest task of the service's current spec that failed or was rejected, with its error.
fn failed_task(
    docker: &GuestDocker,
    name: &str,
    hash: &str,
) -> Result<Option<(TaskState, String)>> {
    let filters = HashMap::from([("service".to_string(), vec![name.to_string()])]);
    let tasks = docker
        .run(docker.docker.list_tasks(Some(ListTasksOptions {
            filters: Some(filters),
        })))
        .map_err(docker_error)?;
    Ok(tasks
        .iter()
        .filter(|t| task_hash(t) == Some(hash))
        .filter_map(|t| {
            let status = t.status.as_ref()?;
            let state = status.state?;
            matches!(state, TaskState::FAILED | TaskState::REJECTED).then(|| {
                let why = status
                    .err
                    .clone()
                    .or_else(|| status.message.clone())
                    .unwrap_or_default();
                (
                    t.updated_at
                        .clone()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    state,
                    why,
                )
            })
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, state, why)| (state, why)))
}

/// The service `name` on the manager, or None when there is none.
fn inspect_service(docker: &GuestDocker, name: &str) -> Result<Option<bollard::models::Service>> {
    found(
        docker.run(docker.docker.inspect_service(
            name,
            None::<bollard::query_parameters::InspectServiceOptions>,
        )),
        "service",
        name,
    )
}

fn remove_service(docker: &GuestDocker, stack: &str, name: &str) -> Result<()> {
    let current = inspect_service(docker, name)?;
    let Some(current) = current else {
        return Ok(());
    };
    if !made_by(current.spec.as_ref().and_then(|s| s.labels.as_ref()), stack) {
        return Err(not_ours("service", name, stack));
    }
    docker
        .run(docker.docker.delete_service(name))
        .map_err(|e| docker_error(e).context(format!("removing service {name}")))
}

/// Remove the stack's networks among `names`; a network still held by tasks that are shutting
/// down is tried again for a while, and a removed one is waited for until the manager no
/// longer lists it (Swarm removes the endpoints on each node in its time).
fn remove_networks(docker: &GuestDocker, stack: &str, names: &[String]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    for name in names {
        loop {
            let current = inspect_network(docker, name)?;
            let Some(current) = current else { break };
            if !made_by(current.labels.as_ref(), stack) {
                return Err(not_ours("network", name, stack));
            }
            match docker.run(docker.docker.remove_network(name)) {
                // Accepted; the next look says whether it is gone yet.
                Ok(()) => {}
                Err(_) if Instant::now() < deadline => {}
                Err(e) => return Err(docker_error(e).context(format!("removing network {name}"))),
            }
            if Instant::now() > deadline {
                return Err(Error::failed(format!(
                    "network {name} is still there two minutes after its removal"
                ))
                .with_hint("a task of the stack may still be stopping on a node that does not answer; `strata down` again removes it once it is gone"));
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    Ok(())
}

/// A task as `ps` and `logs` name it: "stack-web.2" (a global service's task has no slot).
fn task_name(service: &str, slot: Option<i64>) -> String {
    match slot {
        Some(slot) => format!("{service}.{slot}"),
        None => service.to_string(),
    }
}

/// Every task the swarm wants running for the stack's services, with its VM.
pub fn ps(stack: &StackFile, target: &SwarmTarget) -> Result<Vec<TaskRow>> {
    let mut rows = Vec::new();
    let services = stack_services(target.manager, &stack.name)?;
    let mut names: Vec<&String> = services.keys().collect();
    names.sort();
    for service in names {
        let mut tasks = live_tasks(target.manager, &stack.scoped(service))?;
        tasks.sort_by_key(|t| t.slot.unwrap_or_default());
        for t in tasks {
            let status = t.status.clone().unwrap_or_default();
            rows.push(TaskRow {
                service: service.clone(),
                task: task_name(&stack.scoped(service), t.slot),
                vm: t
                    .node_id
                    .as_deref()
                    .map(|id| target.vm_of(id))
                    .unwrap_or_default(),
                state: status.state.map(|s| s.to_string()).unwrap_or_default(),
                error: status.err.unwrap_or_default(),
            });
        }
    }
    Ok(rows)
}

/// The log of each task `ps` shows for `service` (the tasks the swarm wants running), each
/// line after its task and VM ("stack-web.2@vm-b | "), as `docker service logs` prints them.
/// Without `follow` the tasks' logs come one after another, in slot order; with it, lines of
/// all of them as they come (a task started later, e.g. a replacement, is not followed). A
/// task whose node does not answer is named on stderr and skipped.
pub fn logs(
    stack: &StackFile,
    target: &SwarmTarget,
    service: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<()> {
    use futures_util::stream::{self, BoxStream, StreamExt};
    crate::stack::status::require_declared(stack, service)?;
    let name = stack.scoped(service);
    if !stack_services(target.manager, &stack.name)?.contains_key(service) {
        return Err(Error::not_found(format!(
            "service '{service}' of stack '{}' does not run on the swarm",
            stack.name
        ))
        .with_hint("`strata up STACK` starts it"));
    }
    let mut tasks = live_tasks(target.manager, &name)?;
    tasks.sort_by_key(|t| t.slot.unwrap_or_default());
    let mut readable = Vec::new();
    for task in &tasks {
        let (Some(id), Some(node)) = (task.id.clone(), task.node_id.as_deref()) else {
            continue; // not scheduled yet: no log
        };
        let label = format!("{}@{}", task_name(&name, task.slot), target.vm_of(node));
        if target.nodes.iter().any(|n| n.id == node) {
            readable.push((label, id));
        } else {
            crate::errln!("strata: {label}: its node is not ready, its log is not read");
        }
    }
    let docker = target.manager;
    docker.run(async {
        let per_task = readable.iter().enumerate().map(|(i, (_, id))| {
            docker
                .docker
                .task_logs(id, Some(crate::stack::status::log_options(follow, tail)))
                .map(move |chunk| (i, chunk))
                .boxed()
        });
        let mut merged: BoxStream<_> = if follow {
            stream::select_all(per_task).boxed()
        } else {
            stream::iter(per_task).flatten().boxed()
        };
        let mut printers: Vec<_> = readable
            .iter()
            .map(|(label, _)| crate::stack::status::LogPrinter::new(format!("{label} | ")))
            .collect();
        while let Some((i, chunk)) = merged.next().await {
            let chunk = chunk.map_err(|e| {
                docker_error(e).context(format!("reading the log of {}", readable[i].0))
            })?;
            printers[i].write(chunk);
        }
        Ok(())
    })
}

/// What `down` removed from the swarm.
#[derive(Debug, Default, serde::Serialize)]
pub struct SwarmDownReport {
    pub services: Vec<String>,
    pub networks: Vec<String>,
    /// "VM: volume"
    pub volumes: Vec<String>,
}

/// Remove the stack's services and networks; with `volumes`, the stack's volumes on every
/// node (each node made its own).
pub fn down(stack: &StackFile, target: &SwarmTarget, volumes: bool) -> Result<SwarmDownReport> {
    let mut report = SwarmDownReport::default();
    for service in stack_services(target.manager, &stack.name)?.keys() {
        let name = stack.scoped(service);
        remove_service(target.manager, &stack.name, &name)?;
        report.services.push(name);
    }
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_STACK}={}", stack.name)],
    )]);
    let networks: Vec<String> = target
        .manager
        .run(
            target
                .manager
                .docker
                .list_networks(Some(ListNetworksOptions {
                    filters: Some(filters.clone()),
                })),
        )
        .map_err(docker_error)?
        .into_iter()
        .filter(|n| n.scope.as_deref() == Some("swarm"))
        .filter_map(|n| n.name)
        .collect();
    remove_networks(target.manager, &stack.name, &networks)?;
    report.networks = networks;
    if volumes {
        for node in &target.nodes {
            for volume in node_volumes(node.docker, &filters)? {
                remove_volume_when_free(node.docker, &stack.name, &volume)?;
                report.volumes.push(format!("{}: {volume}", node.vm));
            }
        }
    }
    Ok(report)
}

fn node_volumes(
    docker: &GuestDocker,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Vec<String>> {
    let listed = docker
        .run(docker.docker.list_volumes(Some(ListVolumesOptions {
            filters: Some(filters.clone()),
        })))
        .map_err(docker_error)?;
    Ok(listed
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect())
}

/// A volume is in use until the node has stopped the removed service's task: tried again for
/// a while.
fn remove_volume_when_free(docker: &GuestDocker, stack: &str, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match crate::stack::objects::remove_volume(docker, stack, name) {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(2)),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::TaskStatus;

    fn task(state: Option<TaskState>) -> Task {
        Task {
            status: Some(TaskStatus {
                state,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_active_nodes_in_the_placement_may_run_a_service() {
        let on_b = ["b".to_string()];
        assert!(may_run("a", true, &[]));
        assert!(!may_run("a", false, &[]), "a drained node");
        assert!(may_run("b", true, &on_b));
        assert!(!may_run("a", true, &on_b));
        assert!(!may_run("b", false, &on_b));
    }

    #[test]
    fn task_states_count_each_state_in_the_order_first_seen() {
        let tasks = [
            task(Some(TaskState::STARTING)),
            task(Some(TaskState::RUNNING)),
            task(Some(TaskState::STARTING)),
            task(None),
        ];
        assert_eq!(task_states(&tasks), "2 starting, 1 running, 1 unknown");
        assert_eq!(task_states(&[]), "no task yet");
    }

    #[test]
    fn settled_wants_every_task_running_the_current_spec() {
        let mut labelled = task(Some(TaskState::RUNNING));
        labelled.spec = Some(bollard::models::TaskSpec {
            container_spec: Some(bollard::models::TaskSpecContainerSpec {
                labels: Some(HashMap::from([(
                    LABEL_CONFIG.to_string(),
                    "h1".to_string(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        });
        let running = [labelled.clone(), labelled.clone()];
        assert!(settled(&running, "h1", 2));
        assert!(!settled(&running, "h2", 2), "an older spec");
        assert!(!settled(&running, "h1", 3), "a task missing");
        let mut starting = labelled;
        starting.status = Some(TaskStatus {
            state: Some(TaskState::STARTING),
            ..Default::default()
        });
        assert!(!settled(&[running[0].clone(), starting], "h1", 2));
    }
}
