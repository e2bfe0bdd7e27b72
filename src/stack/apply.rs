//! `strata up` for one stack in its VM, through the Docker API over the SSH tunnel: the
//! stack's pipeline, top-down. Render every service, look at what the VM already runs, and
//! when anything must change run the preflight checks, then get the images, networks and
//! volumes, and create and start the containers wave by wave, each wave once the services it
//! depends on are healthy. A failure removes what this run created unless --keep-failed.

use crate::check::report::Report;
use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::container::{self, ContainerPlan, LABEL_CONFIG, LABEL_STACK, LABEL_VM};
use crate::stack::file::{Service, StackFile};
use crate::stack::images::{self, Obtained};
use crate::stack::objects::{
    inspect, list_stack_containers, missing_networks, missing_volumes, remove_container, row,
    row_from_summary, service_and_name, ServiceRow,
};
use crate::stack::order::waves;
use crate::state::Paths;
use crate::template::container::{
    self as templates, ContainerTemplate, ImageSource, RenderContext, ServiceSpec,
};
use crate::vm::Libvirt;
use bollard::models::{
    ContainerInspectResponse, ContainerSummary, ContainerSummaryStateEnum, HealthStatusEnum,
    NetworkConnectRequest, NetworkCreateRequest, VolumeCreateRequest,
};
use bollard::query_parameters::RemoveVolumeOptions;
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

/// The stack's pipeline: render, look, check, converge (or roll back).
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
    let mut seen = look(&docker, stack, &resolved)?;
    if let Some(current) = seen.all_current.take() {
        report.services = current;
        return Ok(report);
    }
    // Something will be launched: the checks first.
    report.checks = Some(crate::check::run::preflight(
        lv,
        paths,
        &stack.vm,
        options.force,
    )?);
    let mut made = Made::default();
    let converged = converge(&docker, stack, &resolved, &mut seen, &mut made, &mut report);
    match converged {
        Ok(()) => Ok(report),
        Err(e) if options.keep_failed => Err(e.and_hint(format!(
            "--keep-failed: left in {}: {}",
            stack.vm,
            made.describe()
        ))),
        Err(e) => Err(match made.undo(&docker) {
            Ok(()) => e.and_hint(format!(
                "removed what this run had created ({}); nothing half-started is left",
                made.describe()
            )),
            Err(u) => e.and_hint(format!(
                "removing what this run had created also failed: {u}"
            )),
        }),
    }
}

/// What the VM already has for the stack, found without changing anything.
struct Seen {
    /// Per service (in start order), the image id when the image is there.
    image_ids: Vec<Option<String>>,
    /// Containers of services no longer in the stack file.
    orphans: Vec<String>,
    /// Every service's row, when all of them run with the current config and nothing else
    /// is missing: the stack is unchanged.
    all_current: Option<Vec<ServiceRow>>,
}

/// One request each for the images, the stack's containers, networks and volumes: a stack
/// with nothing to do is answered from these four lists (the unchanged re-apply), whatever
/// its number of services.
fn look(docker: &GuestDocker, stack: &StackFile, resolved: &[Resolved]) -> Result<Seen> {
    let known_images = images::catalog(docker)?;
    // One look per distinct image: services from the same template and parameters share it
    // (hashing a build context once, not once per service).
    let mut looked: Vec<(&std::path::Path, &ImageSource, Option<String>)> = Vec::new();
    let mut image_ids: Vec<Option<String>> = Vec::new();
    for r in resolved {
        let (dir, source) = (r.template.dir.as_path(), &r.spec.image);
        let id = match looked.iter().find(|(d, s, _)| *d == dir && *s == source) {
            Some((_, _, id)) => id.clone(),
            None => {
                let id = images::present(docker, &known_images, &r.template, source);
                looked.push((dir, source, id.clone()));
                id
            }
        };
        image_ids.push(id);
    }
    let containers: Vec<(String, String, ContainerSummary)> =
        list_stack_containers(docker, Some(&stack.name))?
            .into_iter()
            .filter_map(|c| {
                let (service, name) = service_and_name(&c)?;
                Some((service, name, c))
            })
            .collect();
    let orphans: Vec<String> = containers
        .iter()
        .filter(|(service, _, _)| !stack.services.contains_key(service.as_str()))
        .map(|(_, name, _)| name.clone())
        .collect();
    let mut all_current = None;
    if orphans.is_empty()
        && missing_networks(docker, stack)?.is_empty()
        && missing_volumes(docker, stack)?.is_empty()
    {
        let mut current = Vec::new();
        for (r, id) in resolved.iter().zip(&image_ids) {
            let Some(id) = id else { break };
            let plan = container::plan(stack, r.service, &r.spec, id)?;
            let listed = containers.iter().find(|(_, name, _)| *name == plan.name);
            match listed {
                Some((_, name, c)) if listed_is_current(c, &plan) => {
                    current.push(row_from_summary(&r.service.name, name, "unchanged", c))
                }
                _ => break,
            }
        }
        if current.len() == resolved.len() {
            all_current = Some(current);
        }
    }
    Ok(Seen {
        image_ids,
        orphans,
        all_current,
    })
}

/// A listed container runs with the plan's config (the same test as `is_current` on an
/// inspected one).
fn listed_is_current(c: &ContainerSummary, plan: &ContainerPlan) -> bool {
    carries_config(c.labels.as_ref(), plan) && c.state == Some(ContainerSummaryStateEnum::RUNNING)
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
    seen: &mut Seen,
    made: &mut Made,
    report: &mut UpReport,
) -> Result<()> {
    for (r, id) in resolved.iter().zip(seen.image_ids.iter_mut()) {
        if id.is_none() {
            let (got, how) = images::ensure(docker, &r.template, &r.spec.image).map_err(|why| {
                stack.error_at(
                    r.service,
                    format!("its image is not available: {why}"),
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
    let missing = missing_networks(docker, stack)?;
    for (declared, decl) in &stack.networks {
        let name = stack.scoped(declared);
        if !missing.contains(&name) {
            continue;
        }
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
    for orphan in &seen.orphans {
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
            .zip(seen.image_ids.iter())
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
    // Elapsed time against the limit: adding a template's (saturated) limit to now could
    // overflow Instant.
    let started = Instant::now();
    let limit = container::health_deadline(spec);
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
            _ if started.elapsed() > limit => {
                return Err(stack.error_at(
                    service,
                    format!(
                        "{} did not turn healthy in {}s: {}",
                        plan.name,
                        limit.as_secs(),
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
    carries_config(c.config.as_ref().and_then(|cfg| cfg.labels.as_ref()), plan)
}

/// A container's labels carry the plan's config hash: it was created from this request.
fn carries_config(labels: Option<&HashMap<String, String>>, plan: &ContainerPlan) -> bool {
    labels.and_then(|l| l.get(LABEL_CONFIG)) == Some(&plan.config_hash)
}
