//! The stack's objects in the VM's Docker, found by strata's labels: containers, networks
//! and volumes of a stack, a container inspected (or absent), removed, and shown as a row.
//! Removal looks at the object first and takes only what carries the stack's label (by id,
//! so a rename in between cannot redirect it): a name alone does not make an object strata's.

use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, found, GuestDocker};
use crate::stack::container::LABEL_SERVICE;
use crate::stack::container::LABEL_STACK;
use crate::stack::file::StackFile;
use bollard::models::{ContainerInspectResponse, ContainerSummary, NetworkInspect, Volume};
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, ListContainersOptions, ListNetworksOptions,
    ListVolumesOptions, RemoveContainerOptions, RemoveVolumeOptions,
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
    found(
        docker.run(
            docker
                .docker
                .inspect_container(name, None::<InspectContainerOptions>),
        ),
        "container",
        name,
    )
}

pub(crate) fn inspect_network(docker: &GuestDocker, name: &str) -> Result<Option<NetworkInspect>> {
    found(
        docker.run(
            docker
                .docker
                .inspect_network(name, None::<InspectNetworkOptions>),
        ),
        "network",
        name,
    )
}

fn inspect_volume(docker: &GuestDocker, name: &str) -> Result<Option<Volume>> {
    found(
        docker.run(docker.docker.inspect_volume(name)),
        "volume",
        name,
    )
}

/// Before `stack` makes network `name`: one of that name it did not make is refused, never
/// adopted (Docker 20.10 would make a second network of the same name).
pub fn refuse_foreign_network(docker: &GuestDocker, stack: &str, name: &str) -> Result<()> {
    match inspect_network(docker, name)? {
        Some(n) if !made_by(n.labels.as_ref(), stack) => Err(not_ours("network", name, stack)),
        _ => Ok(()),
    }
}

/// Before `stack` makes volume `name`: one of that name it did not make is refused, never
/// adopted (Docker hands an existing volume back as if it were new).
pub fn refuse_foreign_volume(docker: &GuestDocker, stack: &str, name: &str) -> Result<()> {
    match inspect_volume(docker, name)? {
        Some(v) if !made_by(Some(&v.labels), stack) => Err(not_ours("volume", name, stack)),
        _ => Ok(()),
    }
}

/// What a failed `up` made, for its error: "container a, network b" ("nothing" when empty).
pub fn describe_made(groups: &[(&str, &Vec<String>)]) -> String {
    let all: Vec<String> = groups
        .iter()
        .flat_map(|(kind, names)| names.iter().map(move |n| format!("{kind} {n}")))
        .collect();
    if all.is_empty() {
        "nothing".into()
    } else {
        all.join(", ")
    }
}

/// Objects carrying `labels` were made by strata for `stack`.
pub fn made_by(labels: Option<&HashMap<String, String>>, stack: &str) -> bool {
    labels.and_then(|l| l.get(LABEL_STACK)).map(String::as_str) == Some(stack)
}

/// The refusal when an object by a stack's name is not the stack's.
pub fn not_ours(kind: &str, name: &str, stack: &str) -> Error {
    Error::bad_input(format!(
        "{kind} {name} exists but stack '{stack}' did not make it (it lacks the label {LABEL_STACK}={stack}); it was left alone"
    ))
    .with_hint(format!(
        "strata removes only what it made: remove or rename that {kind} in the VM yourself, or rename the stack or service"
    ))
}

/// Remove the container `name` when it is `stack`'s (force: it may run); gone is fine.
pub fn remove_container(docker: &GuestDocker, stack: &str, name: &str) -> Result<()> {
    let Some(c) = inspect(docker, name)? else {
        return Ok(());
    };
    if !made_by(c.config.as_ref().and_then(|cfg| cfg.labels.as_ref()), stack) {
        return Err(not_ours("container", name, stack));
    }
    let id = c.id.unwrap_or_else(|| name.to_string());
    docker
        .run(docker.docker.remove_container(
            &id,
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

/// Remove the network `name` when it is `stack`'s; gone is fine.
pub fn remove_network(docker: &GuestDocker, stack: &str, name: &str) -> Result<()> {
    let Some(network) = inspect_network(docker, name)? else {
        return Ok(());
    };
    if !made_by(network.labels.as_ref(), stack) {
        return Err(not_ours("network", name, stack));
    }
    let id = network.id.unwrap_or_else(|| name.to_string());
    docker
        .run(docker.docker.remove_network(&id))
        .map_err(|e| docker_error(e).context(format!("removing network {name}")))
}

/// Remove the volume `name` (a volume's name is its id) when it is `stack`'s; gone is fine.
pub fn remove_volume(docker: &GuestDocker, stack: &str, name: &str) -> Result<()> {
    let Some(volume) = inspect_volume(docker, name)? else {
        return Ok(());
    };
    if !made_by(Some(&volume.labels), stack) {
        return Err(not_ours("volume", name, stack));
    }
    docker
        .run(
            docker
                .docker
                .remove_volume(name, None::<RemoveVolumeOptions>),
        )
        .map_err(|e| docker_error(e).context(format!("removing volume {name}")))
}

pub fn label_filter(stack: Option<&str>) -> HashMap<String, Vec<String>> {
    let label = match stack {
        Some(s) => format!("{LABEL_STACK}={s}"),
        None => LABEL_STACK.to_string(),
    };
    HashMap::from([("label".to_string(), vec![label])])
}

/// Every container strata made for `stack` (or any stack), as Docker lists them: one request.
pub fn list_stack_containers(
    docker: &GuestDocker,
    stack: Option<&str>,
) -> Result<Vec<ContainerSummary>> {
    docker
        .run(docker.docker.list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(stack)),
            ..Default::default()
        })))
        .map_err(docker_error)
}

/// A listed container's service label and name.
pub fn service_and_name(c: &ContainerSummary) -> Option<(String, String)> {
    let service = c.labels.as_ref()?.get(LABEL_SERVICE)?.clone();
    let name = c
        .names
        .as_ref()?
        .first()?
        .trim_start_matches('/')
        .to_string();
    Some((service, name))
}

/// (service, container name) of every container strata made for `stack` (or any stack).
pub fn stack_containers(
    docker: &GuestDocker,
    stack: Option<&str>,
) -> Result<Vec<(String, String)>> {
    Ok(list_stack_containers(docker, stack)?
        .iter()
        .filter_map(service_and_name)
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
                        port_text(
                            b.host_ip.as_deref().unwrap_or("0.0.0.0"),
                            b.host_port.as_deref().unwrap_or(""),
                            inside,
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

/// A published port as the table shows it: host address:port→container port/protocol.
fn port_text(host_ip: &str, host_port: &str, inside: &str) -> String {
    format!("{host_ip}:{host_port}→{inside}")
}

/// The row of a listed container (the unchanged path of `up`, which does not inspect).
pub fn row_from_summary(
    service: &str,
    container: &str,
    action: &str,
    c: &ContainerSummary,
) -> ServiceRow {
    let mut ports: Vec<String> = c
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let public = p.public_port?;
            let protocol = p.typ.map(|t| t.to_string()).unwrap_or_else(|| "tcp".into());
            Some(port_text(
                p.ip.as_deref().unwrap_or("0.0.0.0"),
                &public.to_string(),
                &format!("{}/{protocol}", p.private_port),
            ))
        })
        .collect();
    // Docker lists a port once per address family; the table shows each binding once.
    ports.sort();
    ports.dedup();
    ServiceRow {
        service: service.to_string(),
        container: container.to_string(),
        action: action.to_string(),
        state: c
            .state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "missing".into()),
        health: c
            .health
            .as_ref()
            .and_then(|h| h.status)
            .map(|h| h.to_string())
            .unwrap_or_else(|| health_in_status(c.status.as_deref().unwrap_or(""))),
        ports: ports.join(", "),
        seconds: 0.0,
    }
}

/// The health in a listed container's status ("Up 3 minutes (healthy)"), for engines whose
/// list has no Health field (before API 1.52).
fn health_in_status(status: &str) -> String {
    let Some(open) = status.rfind('(') else {
        return "-".into();
    };
    match status[open..].trim_end_matches(')').trim_start_matches('(') {
        "healthy" => "healthy".into(),
        "unhealthy" => "unhealthy".into(),
        "health: starting" => "starting".into(),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerSummaryStateEnum, PortSummary, PortSummaryTypeEnum};

    #[test]
    fn only_the_stacks_own_label_makes_an_object_its() {
        let labels = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(made_by(Some(&labels(&[(LABEL_STACK, "shop")])), "shop"));
        assert!(!made_by(Some(&labels(&[(LABEL_STACK, "shop2")])), "shop"));
        assert!(!made_by(Some(&labels(&[(LABEL_SERVICE, "web")])), "shop"));
        assert!(!made_by(Some(&labels(&[])), "shop"));
        assert!(!made_by(None, "shop"));
        let err = not_ours("container", "shop-web", "shop");
        assert!(err.message().contains("left alone"), "{err}");
        assert!(err.hint().unwrap().contains("yourself"), "{err:?}");
    }

    #[test]
    fn health_is_read_from_the_status_text() {
        assert_eq!(health_in_status("Up 3 minutes (healthy)"), "healthy");
        assert_eq!(
            health_in_status("Up 2 seconds (health: starting)"),
            "starting"
        );
        assert_eq!(health_in_status("Up 9 minutes (unhealthy)"), "unhealthy");
        assert_eq!(health_in_status("Up 3 minutes"), "-");
        assert_eq!(health_in_status("Exited (1) 2 minutes ago"), "-");
    }

    #[test]
    fn a_listed_container_gives_the_same_row_as_an_inspected_one() {
        let port = |ip: &str| PortSummary {
            ip: Some(ip.into()),
            private_port: 80,
            public_port: Some(8080),
            typ: Some(PortSummaryTypeEnum::TCP),
        };
        let listed = ContainerSummary {
            names: Some(vec!["/stk-web".into()]),
            labels: Some(HashMap::from([(
                LABEL_SERVICE.to_string(),
                "web".to_string(),
            )])),
            state: Some(ContainerSummaryStateEnum::RUNNING),
            status: Some("Up 5 minutes (healthy)".into()),
            ports: Some(vec![
                port("127.0.0.1"),
                port("127.0.0.1"),
                PortSummary {
                    private_port: 443,
                    ..port("127.0.0.1")
                },
            ]),
            ..Default::default()
        };
        let r = row_from_summary("web", "stk-web", "unchanged", &listed);
        assert_eq!(
            (r.container.as_str(), r.state.as_str(), r.health.as_str()),
            ("stk-web", "running", "healthy")
        );
        assert_eq!(r.ports, "127.0.0.1:8080→443/tcp, 127.0.0.1:8080→80/tcp");
    }
}
