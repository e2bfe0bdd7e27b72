//! `strata ps`, `logs` and `down`: a stack's containers as they are, one service's log, and
//! removing the stack (its volumes only when asked).

use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::stack::explained;
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

/// Refuse a service the stack file does not declare.
pub(crate) fn require_declared(stack: &StackFile, service: &str) -> Result<()> {
    if stack.services.contains_key(service) {
        return Ok(());
    }
    Err(
        Error::not_found(format!("stack '{}' has no service '{service}'", stack.name))
            .with_hint(format!("services: {}", stack.service_names())),
    )
}

/// The options of one log read: all of it or the last `tail` lines, followed when asked.
pub(crate) fn log_options(follow: bool, tail: Option<usize>) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        tail: tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into()),
        ..Default::default()
    }
}

/// Writes a container's log to our stdout and stderr as it comes, each line after `prefix`
/// (none for a lone container; "web.2@vm | " for one task of several).
pub(crate) struct LogPrinter {
    prefix: String,
    /// Whether the next byte on stdout, and on stderr, begins a line.
    at_line_start: [bool; 2],
}

impl LogPrinter {
    pub(crate) fn new(prefix: String) -> LogPrinter {
        LogPrinter {
            prefix,
            at_line_start: [true, true],
        }
    }

    pub(crate) fn write(&mut self, chunk: bollard::container::LogOutput) {
        let (bytes, to_stderr) = match chunk {
            bollard::container::LogOutput::StdErr { message } => (message, true),
            other => (other.into_bytes(), false),
        };
        let at_start = &mut self.at_line_start[usize::from(to_stderr)];
        crate::console::bytes(to_stderr, &prefix_lines(&self.prefix, at_start, &bytes));
    }
}

/// `bytes` with `prefix` before each line that begins in them; `at_start` says whether the
/// first byte begins a line (a message may end without its newline), and is left saying it
/// for the next bytes.
fn prefix_lines(prefix: &str, at_start: &mut bool, bytes: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(bytes.len() + prefix.len());
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if *at_start {
            text.extend_from_slice(prefix.as_bytes());
        }
        text.extend_from_slice(line);
        *at_start = line.ends_with(b"\n");
    }
    text
}

/// Print a service's log to stdout (and stderr), following it when asked.
pub fn logs(
    docker: &GuestDocker,
    stack: &StackFile,
    service: &str,
    follow: bool,
    tail: Option<usize>,
) -> Result<()> {
    require_declared(stack, service)?;
    let name = stack.scoped(service);
    docker.run(async {
        let mut stream = docker.docker.logs(&name, Some(log_options(follow, tail)));
        let mut printer = LogPrinter::new(String::new());
        while let Some(chunk) = stream.next().await {
            printer.write(
                chunk.map_err(|e| docker_error(e).context(format!("reading the log of {name}")))?,
            );
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
        explained::removal(
            &format!("container {name}"),
            &["docker", "rm", "--force", &name],
        )?;
        remove_container(docker, &stack.name, &name)?;
        report.containers.push(name);
    }
    for name in stack_networks(docker, stack)? {
        explained::removal(
            &format!("network {name}"),
            &["docker", "network", "rm", &name],
        )?;
        remove_network(docker, &stack.name, &name)?;
        report.networks.push(name);
    }
    for name in stack_volumes(docker, stack)? {
        if volumes {
            explained::removal(
                &format!("volume {name} (--volumes)"),
                &["docker", "volume", "rm", &name],
            )?;
            remove_volume(docker, &stack.name, &name)?;
            report.volumes.push(name);
        } else {
            report.kept_volumes.push(name);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::prefix_lines;

    #[test]
    fn each_line_gets_the_prefix_once_even_across_chunks() {
        let mut at_start = true;
        let mut out = prefix_lines("w.1@a | ", &mut at_start, b"one\ntw");
        assert!(!at_start);
        out.extend(prefix_lines("w.1@a | ", &mut at_start, b"o\nthree\n"));
        assert!(at_start);
        assert_eq!(out, b"w.1@a | one\nw.1@a | two\nw.1@a | three\n");
    }

    #[test]
    fn without_a_prefix_the_bytes_are_unchanged() {
        let mut at_start = true;
        let raw = b"\xff\xfe not utf-8\n\nlast".to_vec();
        assert_eq!(prefix_lines("", &mut at_start, &raw), raw);
        assert_eq!(prefix_lines("p ", &mut at_start, b""), b"");
        assert!(!at_start);
    }
}
