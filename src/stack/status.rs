//! `strata ps`, `logs` and `down`: a stack's containers as they are, one service's log, and
//! removing the stack (its volumes only when asked).

use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::file::StackFile;
use crate::stack::objects::{
    inspect, remove_container, remove_network, remove_volume, row, stack_containers,
    stack_networks, stack_volumes, ServiceRow,
};
use crate::stack::order::start_order;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;

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
    // Listed by the stack's label, and each looked at again before it goes.
    for (_, name) in stack_containers(docker, Some(&stack.name))? {
        remove_container(docker, &stack.name, &name)?;
        report.containers.push(name);
    }
    for name in stack_networks(docker, stack)? {
        remove_network(docker, &stack.name, &name)?;
        report.networks.push(name);
    }
    for name in stack_volumes(docker, stack)? {
        if volumes {
            remove_volume(docker, &stack.name, &name)?;
            report.volumes.push(name);
        } else {
            report.kept_volumes.push(name);
        }
    }
    Ok(report)
}
