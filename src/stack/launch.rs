//! Launching one service's container: what to do with the container by its name (create,
//! recreate, start, or leave it: never one the stack did not make), creating it on its
//! networks, starting it, and waiting until it is healthy (or running, without a health
//! check), with Docker's own words when it is not.

use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::apply::NewObjects;
use crate::stack::container::{self, ContainerPlan, LABEL_CONFIG};
use crate::stack::file::{Service, StackFile};
use crate::stack::objects::{inspect, made_by, not_ours};
use crate::template::container::ServiceSpec;
use bollard::models::{ContainerInspectResponse, HealthStatusEnum, NetworkConnectRequest};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What `up` does with the container by a plan's name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    Unchanged,
    Start,
    Recreate,
    Create,
}

/// The step for the container `current` (by the plan's name, if there is one): a container
/// by that name that `stack` did not make is refused, never started or removed.
pub(super) fn step_for(
    current: Option<&ContainerInspectResponse>,
    plan: &ContainerPlan,
    stack: &str,
) -> Result<Step> {
    let Some(c) = current else {
        return Ok(Step::Create);
    };
    if !made_by(c.config.as_ref().and_then(|cfg| cfg.labels.as_ref()), stack) {
        return Err(not_ours("container", &plan.name, stack));
    }
    Ok(if is_current(Some(c), plan) {
        Step::Unchanged
    } else if same_config(c, plan) {
        Step::Start
    } else {
        Step::Recreate
    })
}

pub(super) fn create(
    docker: &GuestDocker,
    stack: &StackFile,
    service: &Service,
    plan: &ContainerPlan,
    created: &mut NewObjects,
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
    created.containers.push(plan.name.clone());
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

pub(super) fn start(
    docker: &GuestDocker,
    stack: &StackFile,
    service: &Service,
    name: &str,
) -> Result<()> {
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
pub(super) fn wait_ready(
    docker: &GuestDocker,
    stack: &StackFile,
    service: &Service,
    plan: &ContainerPlan,
    spec: &ServiceSpec,
) -> Result<ContainerInspectResponse> {
    let patience = container::health_deadline(spec);
    let deadline = patience
        .and_then(|p| Instant::now().checked_add(p))
        .ok_or_else(|| {
            stack.error_at(
                service,
                "its health check would be waited on for longer than time can count",
                "keep healthcheck durations at most 1h and retries at most 1000",
            )
        })?;
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
                        patience.unwrap_or_default().as_secs(),
                        last_probe(&c)
                    ),
                    "its health check never passed; see `strata logs STACK SERVICE`",
                ))
            }
            // Health changes once per probe (seconds apart); each inspect costs the guest's
            // dockerd CPU, which under TCG is what the probes themselves are short of.
            _ => std::thread::sleep(Duration::from_secs(1)),
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
pub(super) fn carries_config(
    labels: Option<&HashMap<String, String>>,
    plan: &ContainerPlan,
) -> bool {
    labels.and_then(|l| l.get(LABEL_CONFIG)) == Some(&plan.config_hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::container::LABEL_STACK;
    use bollard::models::{ContainerConfig, ContainerState};

    fn plan() -> ContainerPlan {
        ContainerPlan {
            service: "web".into(),
            name: "shop-web".into(),
            body: Default::default(),
            more_networks: Vec::new(),
            config_hash: "abc".into(),
            has_healthcheck: false,
        }
    }

    fn container(labels: &[(&str, &str)], running: bool) -> ContainerInspectResponse {
        ContainerInspectResponse {
            config: Some(ContainerConfig {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            state: Some(ContainerState {
                running: Some(running),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_container_by_the_stacks_name_that_it_did_not_make_is_left_alone() {
        let p = plan();
        for foreign in [
            container(&[], true),
            container(&[(LABEL_CONFIG, "old")], false),
            container(&[(LABEL_STACK, "other"), (LABEL_CONFIG, "abc")], true),
        ] {
            let err = step_for(Some(&foreign), &p, "shop").unwrap_err();
            assert!(
                err.message()
                    .starts_with("container shop-web exists but stack 'shop' did not make it"),
                "{err}"
            );
        }
        let ours = |config: &str, running| {
            container(&[(LABEL_STACK, "shop"), (LABEL_CONFIG, config)], running)
        };
        assert_eq!(step_for(None, &p, "shop").unwrap(), Step::Create);
        assert_eq!(
            step_for(Some(&ours("abc", true)), &p, "shop").unwrap(),
            Step::Unchanged
        );
        assert_eq!(
            step_for(Some(&ours("abc", false)), &p, "shop").unwrap(),
            Step::Start
        );
        assert_eq!(
            step_for(Some(&ours("old", true)), &p, "shop").unwrap(),
            Step::Recreate
        );
    }
}
