//! `strata up`, `ps`, `logs` and `down` for one stack in its VM, through the Docker API over
//! the SSH tunnel. `up` is the stack's pipeline, top-down: render every service, look at what
//! the VM already runs, and when anything must change run the preflight checks, then get the
//! images, networks and volumes, and create and start the containers in dependency order,
//! each one only after the services it depends on are healthy. A failure removes what this run
//! created unless --keep-failed.

use crate::check::report::Report;
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::container::{
    self, ContainerPlan, LABEL_CONFIG, LABEL_SERVICE, LABEL_STACK, LABEL_VM,
};
use crate::stack::file::{Service, StackFile};
use crate::stack::images::{self, Obtained};
use crate::stack::order::{start_order, waves};
use crate::state::Paths;
use crate::template::container::{
    self as templates, ContainerTemplate, RenderContext, ServiceSpec,
};
use crate::vm::Libvirt;
use bollard::models::{
    ContainerInspectResponse, HealthStatusEnum, NetworkConnectRequest, NetworkCreateRequest,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    LogsOptions, RemoveContainerOptions, RemoveVolumeOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What `up` may do beyond the plain path.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpOptions {
    /// Launch even when a preflight check fails.
    pub force: bool,
    /// Leave what a failed `up` created, and report it.
    pub keep_failed: bool,
}

/// One service after `up` (or as `ps` sees it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceRow {
    pub service: String,
    pub container: String,
    /// created, recreated, started, unchanged (up); empty for ps.
    pub action: String,
    pub state: String,
    pub health: String,
    pub ports: String,
    /// Seconds this service took in this `up`.
    pub seconds: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct UpReport {
    pub stack: String,
    pub vm: String,
    pub services: Vec<ServiceRow>,
    /// Containers of services no longer in the stack file, removed.
    pub removed: Vec<String>,
    /// The preflight report when checks ran (only when something had to change).
    #[serde(skip)]
    pub checks: Option<Report>,
    pub images: Vec<String>,
}

/// A service with its template and rendered spec.
struct Resolved<'a> {
    service: &'a Service,
    /// Which start wave it belongs to (see order::waves).
    wave: usize,
    template: ContainerTemplate,
    spec: ServiceSpec,
}

/// Render every service of the stack (templates found, parameters known), in start order.
fn resolve(stack: &StackFile) -> Result<Vec<Resolved<'_>>> {
    let waves = waves(stack)?;
    let search = templates::search_path();
    waves
        .iter()
        .enumerate()
        .flat_map(|(wave, names)| names.iter().map(move |name| (wave, name)))
        .map(|(wave, name)| {
            let service = &stack.services[name];
            let template = templates::find(&search, &service.decl.template).map_err(|e| {
                stack.error_at(
                    service,
                    e.message(),
                    e.hint().unwrap_or_default().to_string(),
                )
            })?;
            let context = RenderContext {
                stack: stack.name.clone(),
                service: name.clone(),
            };
            let spec = template
                .render(&service.decl.params, &context)
                .map_err(|why| {
                    stack.error_at(
                        service,
                        why,
                        "see params.toml of the template for its parameters",
                    )
                })?;
            Ok(Resolved {
                service,
                wave,
                template,
                spec,
            })
        })
        .collect()
}

/// Check a stack file without touching any VM: templates, parameters, order, requests.
pub fn validate(stack: &StackFile) -> Result<Vec<String>> {
    let resolved = resolve(stack)?;
    for r in &resolved {
        container::plan(stack, r.service, &r.spec, "sha256:validate")?;
    }
    Ok(resolved.iter().map(|r| r.service.name.clone()).collect())
}

pub fn up(lv: &Libvirt, paths: &Paths, stack: &StackFile, options: UpOptions) -> Result<UpReport> {
    let resolved = resolve(stack)?;
    let target = crate::lifecycle::ssh_target(lv, paths, &stack.vm)?;
    let docker = GuestDocker::connect(&target)?;
    let mut report = UpReport {
        stack: stack.name.clone(),
        vm: stack.vm.clone(),
        services: Vec::new(),
        removed: Vec::new(),
        checks: None,
        images: Vec::new(),
    };
    // What is already there, without changing anything.
    let mut image_ids: Vec<Option<String>> = resolved
        .iter()
        .map(|r| images::present(&docker, &r.template, &r.spec.image))
        .collect();
    let existing = stack_containers(&docker, Some(&stack.name))?;
    let orphans: Vec<String> = existing
        .iter()
        .filter(|(service, _)| !stack.services.contains_key(service.as_str()))
        .map(|(_, name)| name.clone())
        .collect();
    let mut unchanged = orphans.is_empty()
        && missing_networks(&docker, stack)?.is_empty()
        && missing_volumes(&docker, stack)?.is_empty();
    if unchanged {
        for (r, id) in resolved.iter().zip(&image_ids) {
            let Some(id) = id else {
                unchanged = false;
                break;
            };
            let plan = container::plan(stack, r.service, &r.spec, id)?;
            let current = inspect(&docker, &plan.name)?;
            if !is_current(current.as_ref(), &plan) {
                unchanged = false;
                break;
            }
        }
    }
    if unchanged {
        for r in &resolved {
            let name = stack.scoped(&r.service.name);
            let current = inspect(&docker, &name)?;
            report.services.push(row(
                &r.service.name,
                &name,
                "unchanged",
                current.as_ref(),
                0.0,
            ));
        }
        return Ok(report);
    }
    report.checks = Some(crate::check::run::preflight(
        lv,
        paths,
        &stack.vm,
        options.force,
    )?);

    let mut made = Made::default();
    let result = converge(
        &docker,
        stack,
        &resolved,
        &mut image_ids,
        &orphans,
        &mut made,
        &mut report,
    );
    if let Err(e) = result {
        if options.keep_failed {
            return Err(e.with_hint(format!(
                "--keep-failed: left in {}: {}",
                stack.vm,
                made.describe()
            )));
        }
        let undo = made.undo(&docker);
        return Err(match undo {
            Ok(()) => e.with_hint(format!(
                "removed what this run had created ({}); nothing half-started is left",
                made.describe()
            )),
            Err(u) => e.with_hint(format!(
                "removing what this run had created also failed: {u}"
            )),
        });
    }
    Ok(report)
}

/// What one `up` created, to take back when it fails.
#[derive(Default)]
struct Made {
    networks: Vec<String>,
    volumes: Vec<String>,
    containers: Vec<String>,
}

impl Made {
    fn describe(&self) -> String {
        let all: Vec<String> = self
            .containers
            .iter()
            .map(|c| format!("container {c}"))
            .chain(self.networks.iter().map(|n| format!("network {n}")))
            .chain(self.volumes.iter().map(|v| format!("volume {v}")))
            .collect();
        if all.is_empty() {
            "nothing".into()
        } else {
            all.join(", ")
        }
    }

    fn undo(&self, docker: &GuestDocker) -> Result<()> {
        for c in self.containers.iter().rev() {
            remove_container(docker, c)?;
        }
        for n in &self.networks {
            docker
                .run(docker.docker.remove_network(n))
                .map_err(docker_error)?;
        }
        for v in &self.volumes {
            docker
                .run(docker.docker.remove_volume(v, None::<RemoveVolumeOptions>))
                .map_err(docker_error)?;
        }
        Ok(())
    }
}

fn converge(
    docker: &GuestDocker,
    stack: &StackFile,
    resolved: &[Resolved],
    image_ids: &mut [Option<String>],
    orphans: &[String],
    made: &mut Made,
    report: &mut UpReport,
) -> Result<()> {
    for (r, id) in resolved.iter().zip(image_ids.iter_mut()) {
        if id.is_none() {
            let (got, how) = images::ensure(docker, &r.template, &r.spec.image).map_err(|why| {
                stack.error_at(
                    r.service,
                    format!("the image cannot be had: {why}"),
                    "fix the template's [image] or make the image available in the VM",
                )
            })?;
            report.images.push(format!(
                "{} for {}",
                match how {
                    Obtained::Built => "built",
                    Obtained::Pulled => "pulled",
                    Obtained::Loaded => "loaded",
                    Obtained::Present => "found",
                },
                r.service.name
            ));
            *id = Some(got);
        }
    }
    for name in missing_networks(docker, stack)? {
        let decl = stack
            .networks
            .get(
                name.strip_prefix(&format!("{}-", stack.name))
                    .unwrap_or(&name),
            )
            .cloned()
            .unwrap_or_default();
        let ipam = decl.subnet.map(|subnet| bollard::models::Ipam {
            config: Some(vec![bollard::models::IpamConfig {
                subnet: Some(subnet.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        docker
            .run(docker.docker.create_network(NetworkCreateRequest {
                name: name.clone(),
                driver: Some("bridge".into()),
                internal: Some(decl.internal),
                ipam,
                labels: Some(labels(stack)),
                ..Default::default()
            }))
            .map_err(|e| docker_error(e).context(format!("creating network {name}")))?;
        made.networks.push(name);
    }
    for name in missing_volumes(docker, stack)? {
        docker
            .run(docker.docker.create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels(stack)),
                ..Default::default()
            }))
            .map_err(|e| docker_error(e).context(format!("creating volume {name}")))?;
        made.volumes.push(name);
    }
    for orphan in orphans {
        remove_container(docker, orphan)?;
        report.removed.push(orphan.clone());
    }
    // Wave by wave: start every service of a wave, then wait for all of them, so services
    // that only share dependencies come up side by side.
    let last_wave = resolved.iter().map(|r| r.wave).max().unwrap_or(0);
    for wave in 0..=last_wave {
        let started = Instant::now();
        let mut launched = Vec::new();
        for (r, id) in resolved
            .iter()
            .zip(image_ids.iter())
            .filter(|(r, _)| r.wave == wave)
        {
            let id = id.as_deref().unwrap_or_default();
            let plan = container::plan(stack, r.service, &r.spec, id)?;
            let current = inspect(docker, &plan.name)?;
            let action = match &current {
                Some(c) if is_current(Some(c), &plan) => "unchanged",
                Some(c) if same_config(c, &plan) => {
                    start(docker, stack, r.service, &plan.name)?;
                    "started"
                }
                Some(_) => {
                    remove_container(docker, &plan.name)?;
                    create(docker, stack, r.service, &plan, made)?;
                    "recreated"
                }
                None => {
                    create(docker, stack, r.service, &plan, made)?;
                    "created"
                }
            };
            launched.push((r, plan, action));
        }
        for (r, plan, action) in launched {
            let state = wait_ready(docker, stack, r.service, &plan, &r.spec)?;
            report.services.push(row(
                &r.service.name,
                &plan.name,
                action,
                Some(&state),
                started.elapsed().as_secs_f64(),
            ));
        }
    }
    Ok(())
}

fn labels(stack: &StackFile) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_STACK.to_string(), stack.name.clone()),
        (LABEL_VM.to_string(), stack.vm.clone()),
    ])
}

fn create(
    docker: &GuestDocker,
    stack: &StackFile,
    service: &Service,
    plan: &ContainerPlan,
    made: &mut Made,
) -> Result<()> {
    docker
        .run(docker.docker.create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(plan.name.clone()),
                ..Default::default()
            }),
            plan.body.clone(),
        ))
        .map_err(|e| {
            stack.error_at(
                service,
                format!(
                    "creating container {}: {}",
                    plan.name,
                    docker_error(e).message()
                ),
                "see the template's service.toml.j2",
            )
        })?;
    made.containers.push(plan.name.clone());
    for net in &plan.more_networks {
        docker
            .run(docker.docker.connect_network(
                net,
                NetworkConnectRequest {
                    container: plan.name.clone(),
                    endpoint_config: Some(bollard::models::EndpointSettings {
                        aliases: Some(vec![service.name.clone()]),
                        ..Default::default()
                    }),
                },
            ))
            .map_err(|e| docker_error(e).context(format!("connecting {} to {net}", plan.name)))?;
    }
    start(docker, stack, service, &plan.name)
}

fn start(docker: &GuestDocker, stack: &StackFile, service: &Service, name: &str) -> Result<()> {
    docker.run(docker.docker.start_container(name, None)).map_err(|e| {
        let message = docker_error(e).message().to_string();
        let hint = if message.contains("already allocated") || message.contains("address already in use") {
            "a port it publishes is in use in the VM: change the service's port parameter, or stop what holds it"
        } else {
            "see `strata logs STACK SERVICE` for what the container said"
        };
        stack.error_at(service, format!("starting {name}: {message}"), hint)
    })
}

/// Wait until the container is healthy (with a health check) or running (without one).
fn wait_ready(
    docker: &GuestDocker,
    stack: &StackFile,
    service: &Service,
    plan: &ContainerPlan,
    spec: &ServiceSpec,
) -> Result<ContainerInspectResponse> {
    let deadline = Instant::now() + container::health_deadline(spec);
    loop {
        let c = inspect(docker, &plan.name)?
            .ok_or_else(|| Error::failed(format!("container {} disappeared", plan.name)))?;
        let state = c.state.clone().unwrap_or_default();
        let health = state.health.as_ref().and_then(|h| h.status);
        if state.running != Some(true) {
            return Err(stack.error_at(
                service,
                format!(
                    "{} stopped (exit code {})",
                    plan.name,
                    state.exit_code.unwrap_or(-1)
                ),
                "see `strata logs STACK SERVICE` for what it said",
            ));
        }
        match (plan.has_healthcheck, health) {
            (false, _) | (true, Some(HealthStatusEnum::HEALTHY)) => return Ok(c),
            (true, Some(HealthStatusEnum::UNHEALTHY)) => {
                return Err(stack.error_at(
                    service,
                    format!("{} is unhealthy: {}", plan.name, last_probe(&c)),
                    "its health check fails; see `strata logs STACK SERVICE`",
                ))
            }
            _ if Instant::now() > deadline => {
                return Err(stack.error_at(
                    service,
                    format!(
                        "{} did not turn healthy in {}s: {}",
                        plan.name,
                        container::health_deadline(spec).as_secs(),
                        last_probe(&c)
                    ),
                    "its health check never passed; see `strata logs STACK SERVICE`",
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn last_probe(c: &ContainerInspectResponse) -> String {
    c.state
        .as_ref()
        .and_then(|s| s.health.as_ref())
        .and_then(|h| h.log.as_ref())
        .and_then(|log| log.last())
        .map(|r| {
            format!(
                "last probe exit {}: {}",
                r.exit_code.unwrap_or(-1),
                r.output.as_deref().unwrap_or("").trim()
            )
        })
        .unwrap_or_else(|| "no probe has finished yet".into())
}

fn is_current(current: Option<&ContainerInspectResponse>, plan: &ContainerPlan) -> bool {
    current.is_some_and(|c| {
        same_config(c, plan) && c.state.as_ref().and_then(|s| s.running) == Some(true)
    })
}

fn same_config(c: &ContainerInspectResponse, plan: &ContainerPlan) -> bool {
    c.config
        .as_ref()
        .and_then(|cfg| cfg.labels.as_ref())
        .and_then(|l| l.get(LABEL_CONFIG))
        == Some(&plan.config_hash)
}

fn inspect(docker: &GuestDocker, name: &str) -> Result<Option<ContainerInspectResponse>> {
    match docker.run(
        docker
            .docker
            .inspect_container(name, None::<InspectContainerOptions>),
    ) {
        Ok(c) => Ok(Some(c)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(docker_error(e)),
    }
}

fn remove_container(docker: &GuestDocker, name: &str) -> Result<()> {
    docker
        .run(docker.docker.remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        ))
        .or_else(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => Ok(()),
            e => Err(docker_error(e).context(format!("removing container {name}"))),
        })
}

fn label_filter(stack: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match stack {
        Some(s) => format!("{LABEL_STACK}={s}"),
        None => LABEL_STACK.to_string(),
    };
    HashMap::from([("label".to_string(), vec![label])])
}

/// (service, container name) of every container strata made for `stack` (or any stack).
fn stack_containers(docker: &GuestDocker, stack: Option<&str>) -> Result<Vec<(String, String)>> {
    let list = docker
        .run(docker.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(stack)),
            ..Default::default()
        })))
        .map_err(docker_error)?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let service = c.labels.as_ref()?.get(LABEL_SERVICE)?.clone();
            let name = c
                .names
                .as_ref()?
                .first()?
                .trim_start_matches('/')
                .to_string();
            Some((service, name))
        })
        .collect())
}

fn missing_networks(docker: &GuestDocker, stack: &StackFile) -> Result<Vec<String>> {
    let have: Vec<String> = docker
        .run(docker.docker.list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(Some(&stack.name))),
        })))
        .map_err(docker_error)?
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    Ok(stack
        .networks
        .keys()
        .map(|n| stack.scoped(n))
        .filter(|n| !have.contains(n))
        .collect())
}

fn missing_volumes(docker: &GuestDocker, stack: &StackFile) -> Result<Vec<String>> {
    let have: Vec<String> = docker
        .run(docker.docker.list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(Some(&stack.name))),
        })))
        .map_err(docker_error)?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok(stack
        .volumes
        .keys()
        .map(|v| stack.scoped(v))
        .filter(|v| !have.contains(v))
        .collect())
}

fn row(
    service: &str,
    container: &str,
    action: &str,
    c: Option<&ContainerInspectResponse>,
    seconds: f64,
) -> ServiceRow {
    let state = c.and_then(|c| c.state.as_ref());
    let ports = c
        .and_then(|c| c.host_config.as_ref())
        .and_then(|h| h.port_bindings.as_ref())
        .map(|map| {
            let mut all: Vec<String> = map
                .iter()
                .flat_map(|(inside, bindings)| {
                    bindings.iter().flatten().map(move |b| {
                        format!(
                            "{}:{}→{inside}",
                            b.host_ip.as_deref().unwrap_or("0.0.0.0"),
                            b.host_port.as_deref().unwrap_or("")
                        )
                    })
                })
                .collect();
            all.sort();
            all.join(", ")
        })
        .unwrap_or_default();
    ServiceRow {
        service: service.to_string(),
        container: container.to_string(),
        action: action.to_string(),
        state: state
            .and_then(|s| s.status)
            .map(|s| s.to_string())
            .unwrap_or_else(|| "missing".into()),
        health: state
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.status)
            .map(|h| h.to_string())
            .unwrap_or_else(|| "-".into()),
        ports,
        seconds,
    }
}

/// The stack's containers as they are now (`strata ps`), in start order; services without a
/// container show as missing.
pub fn ps(docker: &GuestDocker, stack: &StackFile) -> Result<Vec<ServiceRow>> {
    let order = start_order(stack)?;
    order
        .iter()
        .map(|service| {
            let name = stack.scoped(service);
            let c = inspect(docker, &name)?;
            Ok(row(service, &name, "", c.as_ref(), 0.0))
        })
        .collect()
}

/// Print a service's log to stdout (and stderr), following it when asked.
pub fn logs(
    docker: &GuestDocker,
    stack: &StackFile,
    service: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<()> {
    if !stack.services.contains_key(service) {
        return Err(
            Error::not_found(format!("stack '{}' has no service '{service}'", stack.name))
                .with_hint(format!("services: {}", stack.service_names())),
        );
    }
    let name = stack.scoped(service);
    docker.run(async {
        use std::io::Write;
        let mut stream = docker.docker.logs(
            &name,
            Some(LogsOptions {
                follow,
                stdout: true,
                stderr: true,
                tail: tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()),
                ..Default::default()
            }),
        );
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| docker_error(e).context(format!("reading the log of {name}")))?;
            match chunk {
                bollard::container::LogOutput::StdErr { message } => {
                    let _ = std::io::stderr().write_all(&message);
                }
                other => {
                    let _ = std::io::stdout().write_all(&other.into_bytes());
                    let _ = std::io::stdout().flush();
                }
            }
        }
        Ok(())
    })
}

/// What `down` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct DownReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    /// Volumes left in place (without --volumes).
    pub kept_volumes: Vec<String>,
}

/// Remove the stack's containers and networks, and its volumes only when asked.
pub fn down(docker: &GuestDocker, stack: &StackFile, volumes: bool) -> Result<DownReport> {
    let mut report = DownReport::default();
    for (_, name) in stack_containers(docker, Some(&stack.name))? {
        remove_container(docker, &name)?;
        report.containers.push(name);
    }
    let networks = docker
        .run(docker.docker.list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(Some(&stack.name))),
        })))
        .map_err(docker_error)?;
    for name in networks.into_iter().filter_map(|n| n.name) {
        docker
            .run(docker.docker.remove_network(&name))
            .map_err(|e| docker_error(e).context(format!("removing network {name}")))?;
        report.networks.push(name);
    }
    let vols = docker
        .run(docker.docker.list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(Some(&stack.name))),
        })))
        .map_err(docker_error)?
        .volumes
        .unwrap_or_default();
    for v in vols {
        if volumes {
            docker
                .run(
                    docker
                        .docker
                        .remove_volume(&v.name, None::<RemoveVolumeOptions>),
                )
                .map_err(|e| docker_error(e).context(format!("removing volume {}", v.name)))?;
            report.volumes.push(v.name);
        } else {
            report.kept_volumes.push(v.name);
        }
    }
    Ok(report)
}
