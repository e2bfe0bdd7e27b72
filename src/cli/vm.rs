//! `strata vm create|list|ssh|stop|start|destroy`.

use crate::cli::{args, output, Env, OutputFormat};
use crate::error::{Error, Result};
use crate::guest::ssh;
use crate::host::accel::AccelRequest;
use crate::lifecycle::{self, CreateRequest};
use crate::outln;
use crate::progress::Progress;
use crate::vm::domain;
use clap::Subcommand;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Clone a VM from a template, boot it and wait until SSH answers
    Create {
        name: String,
        #[arg(long, short = 't')]
        template: String,
        /// virtual CPUs (default: the template's)
        #[arg(long, value_parser = args::cpus, allow_hyphen_values = true)]
        cpus: Option<u32>,
        /// with a unit, e.g. 1G, 512M (default: the template's)
        #[arg(long, value_parser = args::size_text, allow_hyphen_values = true)]
        memory: Option<String>,
        /// with a unit, e.g. 10G (default: the template's); thin, grows as the guest writes
        #[arg(long, value_parser = args::size_text, allow_hyphen_values = true)]
        disk: Option<String>,
        /// libvirt network to attach to
        #[arg(long, default_value = "strata")]
        net: String,
        /// kvm, tcg, or auto (kvm only when usable by qemu and the CPU has vmx/svm)
        #[arg(long, value_enum, default_value = "auto")]
        accel: AccelRequest,
        /// seconds to wait for SSH
        #[arg(long, default_value = "300", value_parser = args::seconds, allow_hyphen_values = true)]
        ssh_timeout: u64,
        /// return once the VM is started, without waiting for SSH
        #[arg(long)]
        no_wait: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Show the VMs strata made
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Log in (no command) or run a command; the exit code is passed through
    Ssh {
        name: String,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Forward a port on the host's 127.0.0.1 to one in the VM, over SSH, until Ctrl-C
    Forward {
        name: String,
        /// REMOTE or LOCAL:REMOTE, e.g. 8080 or 18080:8080
        #[arg(value_parser = args::forward_ports, allow_hyphen_values = true)]
        ports: (u16, u16),
        /// Host the VM connects to (default: its own loopback, where stacks publish ports)
        #[arg(long, default_value = "127.0.0.1")]
        to: String,
    },
    /// Shut down (ACPI, then power off after --timeout seconds)
    Stop {
        name: String,
        /// seconds to wait for the guest to shut down
        #[arg(long, default_value = "60", value_parser = args::seconds, allow_hyphen_values = true)]
        timeout: u64,
    },
    /// Start a stopped VM and wait for SSH
    Start {
        name: String,
        /// seconds to wait for SSH
        #[arg(long, default_value = "300", value_parser = args::seconds, allow_hyphen_values = true)]
        ssh_timeout: u64,
    },
    /// Remove a VM: domain, disk, address reservation and keys (never the template)
    Destroy { name: String },
}

pub fn run(env: &Env, cmd: VmCommand) -> Result<i32> {
    let lv = env.libvirt()?;
    match cmd {
        VmCommand::Create {
            name,
            template,
            cpus,
            memory,
            disk,
            net,
            accel,
            ssh_timeout,
            no_wait,
            output: format,
        } => {
            // The create polls for Ctrl-C so that it can roll back.
            crate::interrupt::install();
            let req = CreateRequest {
                name: name.clone(),
                template,
                cpus,
                memory,
                disk,
                network: net,
                accel,
                ssh_timeout: (!no_wait).then(|| Duration::from_secs(ssh_timeout)),
            };
            let progress = Progress::new(&format!("vm {name}"));
            let created = lifecycle::create(&lv, &env.paths, &req, &progress)?;
            drop(progress);
            if format == OutputFormat::Json {
                outln!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                outln!(
                    "created {} at {} ({}: {})",
                    created.name,
                    created.ip,
                    created.accel.as_str(),
                    created.accel_reason
                );
                for s in &created.stages {
                    outln!("  {:<16} {:>6.2}s", s.stage, s.seconds);
                }
                if no_wait {
                    outln!("started; not waiting for SSH (--no-wait)");
                } else {
                    outln!("log in with: strata vm ssh {}", created.name);
                }
            }
            Ok(0)
        }
        VmCommand::List { output: format } => {
            let vms = domain::list(&lv.conn)?;
            output::print(
                format,
                &vms,
                &[
                    "VM", "STATE", "IP", "TEMPLATE", "ACCEL", "CPUS", "MEMORY", "NETWORK",
                ],
                |v| {
                    vec![
                        v.name.clone(),
                        v.state.clone(),
                        v.record.ip.to_string(),
                        v.record.template.clone(),
                        v.record.accel.as_str().to_string(),
                        v.cpus.to_string(),
                        format!("{} MiB", v.memory_mib),
                        v.record.network.clone(),
                    ]
                },
            )?;
            Ok(0)
        }
        VmCommand::Ssh { name, command } => {
            let target = crate::guest::Route::of_vm(&lv, &env.paths, &name)?;
            if command.is_empty() {
                interactive(env, &name, &target)
            } else {
                let session = ssh::connect(&target, Duration::from_secs(15))?;
                let out = ssh::exec(&session, &shell_join(&command), true)?;
                Ok(out.status)
            }
        }
        VmCommand::Forward { name, ports, to } => {
            let (local, remote) = ports;
            let target = crate::guest::Route::of_vm(&lv, &env.paths, &name)?;
            let forward = crate::guest::forward::Forward::open(&target, local, &to, remote)?;
            outln!(
                "forwarding http://{} → {to}:{remote} in {name} over SSH; Ctrl-C to stop",
                forward.local
            );
            forward.serve();
            Ok(0)
        }
        VmCommand::Stop { name, timeout } => {
            let (dom, _) = domain::lookup(&lv.conn, &name)?;
            let clean = domain::stop(&dom, Duration::from_secs(timeout))?;
            outln!(
                "stopped {name}{}",
                if clean {
                    ""
                } else {
                    " (powered off after the timeout)"
                }
            );
            Ok(0)
        }
        VmCommand::Start { name, ssh_timeout } => {
            crate::interrupt::install();
            let (dom, _) = domain::lookup(&lv.conn, &name)?;
            domain::start(&dom)?;
            let target = crate::guest::Route::of_vm(&lv, &env.paths, &name)?;
            let progress = Progress::new(&format!("vm {name}"));
            progress.stage("boot-to-ssh");
            lifecycle::wait_until_ready(
                &dom,
                &target,
                Duration::from_secs(ssh_timeout),
                &progress,
            )?;
            progress.finish();
            outln!("started {name}; SSH answers at {}", target.addr.ip());
            Ok(0)
        }
        VmCommand::Destroy { name } => {
            lifecycle::destroy(&lv, &env.paths, &name)?;
            outln!("destroyed {name}");
            Ok(0)
        }
    }
}

/// Quote arguments for the remote shell so `-- ls "a b"` means what it says.
fn shell_join(args: &[String]) -> String {
    if args.len() == 1 {
        // A single argument is taken as a shell command line, like ssh does.
        return args[0].clone();
    }
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An interactive login through the system OpenSSH client, with the same key and the same
/// pinned host key (a terminal needs what OpenSSH does well: PTY, escapes, window size).
fn interactive(env: &Env, name: &str, target: &crate::guest::Route) -> Result<i32> {
    let status = std::process::Command::new("ssh")
        .arg("-i")
        .arg(&target.key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            env.paths.vm_known_hosts(name).display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg(format!("{}@{}", target.user, target.addr.ip()))
        .status()
        .map_err(|e| {
            Error::from(e)
                .context("running ssh")
                .with_hint("install openssh-client")
        })?;
    Ok(status.code().unwrap_or(255))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_arguments_with_spaces() {
        let args: Vec<String> = ["echo", "a b", "it's"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(shell_join(&args), "echo 'a b' 'it'\\''s'");
        assert_eq!(shell_join(&["uname -a".to_string()]), "uname -a");
    }
}
