//! Bringing a stack to what its file says, once the survey found something to do: get the
//! images, make the networks and volumes, remove containers of services no longer in the
//! file, and create and start the containers wave by wave, each wave once the services it
//! depends on are healthy. A failure removes what this run created unless --keep-failed.
//! (The whole `up`, with the preflight checks first, is composed in lifecycle/stack_up.rs.)

use crate::error::Result;
use crate::explain;
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::container::{self, LABEL_STACK, LABEL_VM};
use crate::stack::explained;
use crate::stack::file::{NetworkDecl, StackFile};
use crate::stack::images::{self, Obtained};
use crate::stack::launch::{create, start, step_for, wait_ready, Step};
use crate::stack::objects::{
    describe_made, inspect, missing_networks, missing_volumes, refuse_foreign_network,
    refuse_foreign_volume, remove_container, remove_network, remove_volume, row, ServiceRow,
};
use crate::stack::resolve::Resolved;
use crate::stack::survey::Survey;
use bollard::models::{NetworkCreateRequest, VolumeCreateRequest};
use std::collections::HashMap;
use std::time::Instant;

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
    pub images: Vec<String>,
}

impl UpReport {
    /// The report of a stack found up as its file says.
    pub fn unchanged(stack: &StackFile, rows: &[ServiceRow]) -> UpReport {
        UpReport {
            services: rows.to_vec(),
            ..UpReport::empty(stack)
        }
    }

    fn empty(stack: &StackFile) -> UpReport {
        UpReport {
            stack: stack.name.clone(),
            vm: stack.vm.clone(),
            services: Vec::new(),
            removed: Vec::new(),
            images: Vec::new(),
        }
    }
}

/// Converge the stack; on failure, take back what this run created (unless `keep_failed`).
pub fn converge(
    docker: &GuestDocker,
    stack: &StackFile,
    resolved: &[Resolved],
    mut survey: Survey,
    keep_failed: bool,
) -> Result<UpReport> {
    let mut report = UpReport::empty(stack);
    let mut created = NewObjects::default();
    let converged = (|| {
        obtain_images(docker, stack, resolved, &mut survey, &mut report)?;
        create_networks(docker, stack, &mut created)?;
        create_volumes(docker, stack, &mut created)?;
        remove_orphans(docker, stack, &survey, &mut report)?;
        start_in_waves(docker, stack, resolved, &survey, &mut created, &mut report)
    })();
    match converged {
        Ok(()) => Ok(report),
        Err(e) if keep_failed => Err(e.and_hint(format!(
            "--keep-failed: left in {}: {}",
            stack.vm,
            created.describe()
        ))),
        Err(e) => Err(match created.undo(docker, &stack.name) {
            Ok(()) => e.and_hint(format!(
                "removed what this run had created ({}); nothing half-started is left",
                created.describe()
            )),
            Err(u) => e.and_hint(format!(
                "removing what this run had created also failed: {u}"
            )),
        }),
    }
}

/// What one `up` created, to take back when it fails.
#[derive(Default)]
pub struct NewObjects {
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub containers: Vec<String>,
}

impl NewObjects {
    fn describe(&self) -> String {
        describe_made(&[
            ("container", &self.containers),
            ("network", &self.networks),
            ("volume", &self.volumes),
        ])
    }

    /// Remove what this run made; each object is looked at first and left alone unless it
    /// carries the stack's label (a name is no proof).
    fn undo(&self, docker: &GuestDocker, stack: &str) -> Result<()> {
        for c in self.containers.iter().rev() {
            remove_container(docker, stack, c)?;
        }
        for n in &self.networks {
            remove_network(docker, stack, n)?;
        }
        for v in &self.volumes {
            remove_volume(docker, stack, v)?;
        }
        Ok(())
    }
}

/// Every service's image in the VM: found, built, pulled or loaded. In a dry run each is
/// only written, and named by the tag or reference it would have (its id is not known yet).
fn obtain_images(
    docker: &GuestDocker,
    stack: &StackFile,
    resolved: &[Resolved],
    survey: &mut Survey,
    report: &mut UpReport,
) -> Result<()> {
    let mut planned: Vec<String> = Vec::new();
    for (r, id) in resolved.iter().zip(survey.image_ids.iter_mut()) {
        if id.is_none() {
            let obtained = if explain::is_dry_run() {
                images::would_obtain(&r.template, &r.spec.image, &planned)
            } else {
                images::ensure(docker, &r.template, &r.spec.image)
            };
            let (got, how) = obtained.map_err(|why| {
                stack.error_at(
                    r.service,
                    format!("its image is not available: {why}"),
                    "fix the template's [image] or make the image available in the VM",
                )
            })?;
            if explain::is_on() {
                images::explain_obtained(&r.service.name, &r.template, &r.spec.image, &how, &got)?;
            }
            planned.push(got.clone());
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
    Ok(())
}

/// The stack's networks Docker does not have yet.
fn create_networks(
    docker: &GuestDocker,
    stack: &StackFile,
    created: &mut NewObjects,
) -> Result<()> {
    let missing = missing_networks(docker, stack)?;
    for (declared, decl) in &stack.networks {
        let name = stack.scoped(declared);
        if !missing.contains(&name) {
            continue;
        }
        refuse_foreign_network(docker, &stack.name, &name)?;
        explained::object("network", &network_create_words(stack, &name, decl))?;
        if explain::is_dry_run() {
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
        created.networks.push(name);
    }
    Ok(())
}

/// The stack's volumes Docker does not have yet.
fn create_volumes(docker: &GuestDocker, stack: &StackFile, created: &mut NewObjects) -> Result<()> {
    for name in missing_volumes(docker, stack)? {
        refuse_foreign_volume(docker, &stack.name, &name)?;
        let mut words = vec!["docker".to_string(), "volume".into(), "create".into()];
        words.extend(label_words(stack));
        words.push(name.clone());
        explained::object("volume", &words)?;
        if explain::is_dry_run() {
            continue;
        }
        docker
            .run(docker.docker.create_volume(VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels(stack)),
                ..Default::default()
            }))
            .map_err(|e| docker_error(e).context(format!("creating volume {name}")))?;
        created.volumes.push(name);
    }
    Ok(())
}

/// Containers of services no longer in the stack file.
fn remove_orphans(
    docker: &GuestDocker,
    stack: &StackFile,
    survey: &Survey,
    report: &mut UpReport,
) -> Result<()> {
    for orphan in &survey.orphans {
        explained::removal(
            &format!("container {orphan}: its service is no longer in the stack file"),
            &["docker", "rm", "--force", orphan],
        )?;
        if explain::is_dry_run() {
            continue;
        }
        remove_container(docker, &stack.name, orphan)?;
        report.removed.push(orphan.clone());
    }
    Ok(())
}

/// Every service's container, wave by wave.
fn start_in_waves(
    docker: &GuestDocker,
    stack: &StackFile,
    resolved: &[Resolved],
    survey: &Survey,
    created: &mut NewObjects,
    report: &mut UpReport,
) -> Result<()> {
    // Wave by wave: start every service of a wave, then wait for all of them, so services
    // that only share dependencies come up side by side.
    let last_wave = resolved.iter().map(|r| r.wave).max().unwrap_or(0);
    for wave in 0..=last_wave {
        let started = Instant::now();
        let mut launched = Vec::new();
        for (r, id) in resolved
            .iter()
            .zip(survey.image_ids.iter())
            .filter(|(r, _)| r.wave == wave)
        {
            let id = id.as_deref().unwrap_or_default();
            let plan = container::plan(stack, r.service, &r.spec, id)?;
            let current = inspect(docker, &plan.name)?;
            let step = step_for(current.as_ref(), &plan, &stack.name).map_err(|e| {
                stack.error_at(r.service, e.message(), e.hint().unwrap_or_default())
            })?;
            let action = match step {
                Step::Unchanged => "unchanged",
                Step::Start => "started",
                Step::Recreate => "recreated",
                Step::Create => "created",
            };
            if explain::is_on() {
                explained::container(&r.service.name, action, &plan)?;
            }
            match step {
                _ if explain::is_dry_run() => {}
                Step::Unchanged => {}
                Step::Start => start(docker, stack, r.service, &plan.name)?,
                Step::Recreate => {
                    remove_container(docker, &stack.name, &plan.name)?;
                    create(docker, stack, r.service, &plan, created)?;
                }
                Step::Create => create(docker, stack, r.service, &plan, created)?,
            }
            launched.push((r, plan, action));
        }
        explained::wait(
            wave,
            &launched
                .iter()
                .map(|(r, plan, _)| {
                    let patience = container::health_deadline(&r.spec).unwrap_or_default();
                    (plan.name.clone(), plan.has_healthcheck, patience.as_secs())
                })
                .collect::<Vec<_>>(),
        )?;
        if explain::is_dry_run() {
            for (r, plan, action) in launched {
                report
                    .services
                    .push(row(&r.service.name, &plan.name, action, None, 0.0));
            }
            continue;
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

/// `docker network create` for the stack's network `name`, as create_networks asks Docker.
fn network_create_words(stack: &StackFile, name: &str, decl: &NetworkDecl) -> Vec<String> {
    let mut words = vec![
        "docker".to_string(),
        "network".into(),
        "create".into(),
        "--driver".into(),
        "bridge".into(),
    ];
    if decl.internal {
        words.push("--internal".into());
    }
    if let Some(subnet) = decl.subnet {
        words.extend(["--subnet".to_string(), subnet.to_string()]);
    }
    words.extend(label_words(stack));
    words.push(name.to_string());
    words
}

/// The stack's labels as `--label` words, in a fixed order.
fn label_words(stack: &StackFile) -> Vec<String> {
    let mut labels: Vec<_> = labels(stack).into_iter().collect();
    labels.sort();
    labels
        .into_iter()
        .flat_map(|(key, value)| ["--label".to_string(), format!("{key}={value}")])
        .collect()
}

fn labels(stack: &StackFile) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_STACK.to_string(), stack.name.clone()),
        (LABEL_VM.to_string(), stack.vm.clone()),
    ])
}
