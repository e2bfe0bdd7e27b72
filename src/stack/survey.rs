//! What the VM already has for a stack, found without changing anything: the image of each
//! service, the containers of services no longer in the stack file, and whether every service
//! already runs as the stack file says (the unchanged re-apply, answered from four list
//! requests whatever the number of services).

use crate::error::Result;
use crate::guest::docker::GuestDocker;
use crate::stack::container::{self, ContainerPlan};
use crate::stack::file::StackFile;
use crate::stack::images;
use crate::stack::launch::carries_config;
use crate::stack::objects::{
    list_stack_containers, missing_networks, missing_volumes, row_from_summary, service_and_name,
    ServiceRow,
};
use crate::stack::resolve::Resolved;
use crate::template::container::ImageSource;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};

/// What the VM already has for the stack, found without changing anything.
pub struct Survey {
    /// Per service (in start order), the image id when the image is there.
    pub image_ids: Vec<Option<String>>,
    /// Containers of services no longer in the stack file.
    pub orphans: Vec<String>,
    /// Every service's row, when all of them run with the current config and nothing else
    /// is missing: the stack is unchanged.
    pub all_current: Option<Vec<ServiceRow>>,
}

/// One request each for the images, the stack's containers, networks and volumes: a stack
/// with nothing to do is answered from these four lists (the unchanged re-apply), whatever
/// its number of services.
pub fn survey(docker: &GuestDocker, stack: &StackFile, resolved: &[Resolved]) -> Result<Survey> {
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
    Ok(Survey {
        image_ids,
        orphans,
        all_current,
    })
}

/// A listed container runs with the plan's config (the same test as `is_current` on an
/// inspected one) and its health is settled.
fn listed_is_current(c: &ContainerSummary, plan: &ContainerPlan) -> bool {
    carries_config(c.labels.as_ref(), plan)
        && c.state == Some(ContainerSummaryStateEnum::RUNNING)
        && health_settled(c)
}

/// Whether a listed container is healthy or has no health check. One still "starting" (a VM
/// just rebooted or rebuilt: Docker restarted it) or unhealthy is not "unchanged" at a
/// glance: `up` takes the service-by-service path, which waits for it. Docker 20.10 lists
/// health only in the status text ("Up 3 seconds (health: starting)").
fn health_settled(c: &ContainerSummary) -> bool {
    let status = c.status.as_deref().unwrap_or_default();
    !(status.contains("(health: starting)") || status.contains("(unhealthy)"))
}

impl Survey {
    /// Every service's row when the stack is up exactly as its file says: nothing to do.
    pub fn unchanged(&self) -> Option<&[ServiceRow]> {
        self.all_current.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_healthy_or_unchecked_containers_are_settled() {
        let listed = |status: &str| ContainerSummary {
            status: Some(status.to_string()),
            ..Default::default()
        };
        assert!(health_settled(&listed("Up 2 minutes (healthy)")));
        assert!(health_settled(&listed("Up 2 minutes")));
        assert!(!health_settled(&listed("Up 3 seconds (health: starting)")));
        assert!(!health_settled(&listed("Up 5 minutes (unhealthy)")));
    }
}
