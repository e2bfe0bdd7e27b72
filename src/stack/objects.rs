//! The stack's objects in the VM's Docker, found by strata's labels: containers, networks
//! and volumes of a stack, a container inspected (or absent), removed, and shown as a row.

use crate::error::Result;
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::container::LABEL_SERVICE;
use crate::stack::container::LABEL_STACK;
use crate::stack::file::StackFile;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListNetworksOptions, ListVolumesOptions,
    RemoveContainerOptions,
};
use std::collections::HashMap;

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

pub fn inspect(docker: &GuestDocker, name: &str) -> Result<Option<ContainerInspectResponse>> {
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

pub fn remove_container(docker: &GuestDocker, name: &str) -> Result<()> {
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

pub fn label_filter(stack: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match stack {
        Some(s) => format!("{LABEL_STACK}={s}"),
        None => LABEL_STACK.to_string(),
    };
    HashMap::from([("label".to_string(), vec![label])])
}

/// (service, container name) of every container strata made for `stack` (or any stack).
pub fn stack_containers(
    docker: &GuestDocker,
    stack: Option<&str>,
) -> Result<Vec<(String, String)>> {
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

/// Names of the networks strata made for `stack`.
pub fn stack_networks(docker: &GuestDocker, stack: &StackFile) -> Result<Vec<String>> {
    Ok(docker
        .run(docker.docker.list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(Some(&stack.name))),
        })))
        .map_err(docker_error)?
        .into_iter()
        .filter_map(|n| n.name)
        .collect())
}

/// Names of the volumes strata made for `stack`.
pub fn stack_volumes(docker: &GuestDocker, stack: &StackFile) -> Result<Vec<String>> {
    Ok(docker
        .run(docker.docker.list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(Some(&stack.name))),
        })))
        .map_err(docker_error)?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect())
}

/// The stack's declared networks (scoped names) that Docker does not have.
pub fn missing_networks(docker: &GuestDocker, stack: &StackFile) -> Result<Vec<String>> {
    let have = stack_networks(docker, stack)?;
    Ok(stack
        .networks
        .keys()
        .map(|n| stack.scoped(n))
        .filter(|n| !have.contains(n))
        .collect())
}

/// The stack's declared volumes (scoped names) that Docker does not have.
pub fn missing_volumes(docker: &GuestDocker, stack: &StackFile) -> Result<Vec<String>> {
    let have = stack_volumes(docker, stack)?;
    Ok(stack
        .volumes
        .keys()
        .map(|v| stack.scoped(v))
        .filter(|v| !have.contains(v))
        .collect())
}

pub fn row(
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
