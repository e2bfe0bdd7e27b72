//! Bringing a stack to what its file says, once the survey found something to do: get the
//! images, make the networks and volumes, remove containers of services no longer in the
//! file, and create and start the containers wave by wave, each wave once the services it
//! depends on are healthy. A failure removes what this run created unless --keep-failed.
//! (The whole `up`, with the preflight checks first, is composed in lifecycle/stack_up.rs.)

use crate::error::Result;
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::container::{self, LABEL_STACK, LABEL_VM};
use crate::stack::file::StackFile;
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

/// Every service's image in the VM: found, built, pulled or loaded.
fn obtain_images(
    docker: &GuestDocker,
    stack: &StackFile,
    resolved: &[Resolved],
    survey: &mut Survey,
    report: &mut UpReport,
) -> Result<()> {
    for (r, id) in resolved.iter().zip(survey.image_ids.iter_mut()) {
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
                Step::Start => {
                    start(docker, stack, r.service, &plan.name)?;
                    "started"
                }
                Step::Recreate => {
                    remove_container(docker, &stack.name, &plan.name)?;
                    create(docker, stack, r.service, &plan, created)?;
                    "recreated"
                }
                Step::Create => {
                    create(docker, stack, r.service, &plan, created)?;
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
