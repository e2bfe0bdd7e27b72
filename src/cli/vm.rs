//! `strata vm create|list|ssh|stop|start|destroy`.

use crate::cli::{args, output, Env, OutputFormat};
use crate::error::{Error, ErrorKind, Result};
use crate::explain::{self, Step};
use crate::guest::{ssh, Route};
use crate::host::accel::AccelRequest;
use crate::lifecycle::{self, Action, CreateRequest};
use crate::outln;
use crate::progress::Progress;
use crate::vm::{domain, Libvirt};
use clap::Subcommand;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Clone a VM from a template, boot it and wait until SSH answers
    Create(CreateArgs),
    /// Show the VMs strata made
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Log in (no command) or run a command; stdin goes to it, its exit code is passed through
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

/// `vm create`'s flags.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    pub(super) name: String,
    #[arg(long, short = 't')]
    pub(super) template: String,
    /// virtual CPUs (default: the template's)
    #[arg(long, value_parser = args::cpus, allow_hyphen_values = true)]
    pub(super) cpus: Option<u32>,
    /// with a unit, e.g. 1G, 512M (default: the template's)
    #[arg(long, value_parser = args::size_text, allow_hyphen_values = true)]
    pub(super) memory: Option<String>,
    /// with a unit, e.g. 10G (default: the template's); thin, grows as the guest writes
    #[arg(long, value_parser = args::size_text, allow_hyphen_values = true)]
    pub(super) disk: Option<String>,
    /// libvirt network to attach to
    #[arg(long, default_value = "strata")]
    pub(super) net: String,
    /// kvm, tcg, or auto (kvm only when usable by qemu and the CPU has vmx/svm)
    #[arg(long, value_enum, default_value = "auto")]
    pub(super) accel: AccelRequest,
    /// seconds to wait for SSH
    #[arg(long, default_value = "300", value_parser = args::seconds, allow_hyphen_values = true)]
    pub(super) ssh_timeout: u64,
    /// return once the VM is started, without waiting for SSH
    #[arg(long)]
    pub(super) no_wait: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub(super) output: OutputFormat,
}

pub fn run(env: &Env, cmd: VmCommand) -> Result<i32> {
    let lv = env.libvirt()?;
    match cmd {
        VmCommand::Create(args) => create(env, &lv, args),
        VmCommand::List { output } => list(env, &lv, output),
        VmCommand::Ssh { name, command } => {
            let route = Route::of_vm(&lv, &env.paths, &name)?;
            if command.is_empty() {
                interactive(env, &name, &route)
            } else {
                let session = ssh::connect(&route, Duration::from_secs(15))?;
                // Our stdin goes to the command, as with `ssh VM CMD < FILE`.
                let stdin = Some(ssh::stdin_chunks());
                Ok(ssh::exec_with_input(&session, &shell_join(&command), true, stdin)?.status)
            }
        }
        VmCommand::Forward { name, ports, to } => {
            let (local, remote) = ports;
            let route = Route::of_vm(&lv, &env.paths, &name)?;
            let forward = crate::guest::forward::Forward::open(&route, local, &to, remote)?;
            outln!(
                "forwarding http://{} → {to}:{remote} in {name} over SSH; Ctrl-C to stop",
                forward.local
            );
            forward.serve();
            Ok(0)
        }
        VmCommand::Stop { name, timeout } => {
            let (dom, _) = domain::lookup(&lv.conn(), &name)?;
            explain::step(
                Step::VmStop,
                &json!({"name": name, "running": dom.is_active()?, "timeout": timeout}),
            )?;
            let clean = domain::stop(&dom, Duration::from_secs(timeout))?;
            let how = if clean {
                ""
            } else {
                " (powered off after the timeout)"
            };
            outln!("stopped {name}{how}");
            Ok(0)
        }
        VmCommand::Start { name, ssh_timeout } => start(env, &lv, &name, ssh_timeout),
        VmCommand::Destroy { name } => {
            match lifecycle::destroy(&lv, &env.paths, &name) {
                Ok(()) => outln!("destroyed {name}"),
                // Opening libvirt already finished what an interrupted run left of it.
                Err(e)
                    if e.kind() == ErrorKind::NotFound
                        && env.take_finished().iter().any(|p| p.vm == name) =>
                {
                    outln!("removed what an interrupted run left of {name}")
                }
                Err(e) => return Err(e),
            }
            Ok(0)
        }
    }
}

fn create(env: &Env, lv: &Libvirt, args: CreateArgs) -> Result<i32> {
    // The create polls for Ctrl-C so that it can roll back.
    crate::interrupt::install();
    let req = CreateRequest {
        name: args.name.clone(),
        template: args.template,
        cpus: args.cpus,
        memory: args.memory,
        disk: args.disk,
        network: args.net,
        accel: args.accel,
        ssh_timeout: (!args.no_wait).then(|| Duration::from_secs(args.ssh_timeout)),
        plan: None,
        keep_address: None,
    };
    if crate::explain::is_dry_run() {
        let ip = lifecycle::dry_run_create(lv, &env.paths, &req)?;
        explain::say_dry_run_done(&format!(
            "dry run: {} checked, address {ip} free, nothing created; the script is in the --explain output",
            args.name
        ));
        return Ok(0);
    }
    let progress = Progress::new(&format!("vm {}", args.name));
    let created = lifecycle::create(lv, &env.paths, &req, &progress)?;
    drop(progress);
    if args.output == OutputFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&created)?);
        return Ok(0);
    }
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
    if args.no_wait {
        outln!("started; not waiting for SSH (--no-wait)");
    } else {
        outln!("log in with: strata vm ssh {}", created.name);
    }
    Ok(0)
}

/// A row of `vm list`: a VM strata made, or what is left of a create or destroy that has not
/// finished (a `vm destroy NAME` finishes it).
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Listed {
    Vm(Box<domain::VmInfo>),
    Unfinished {
        name: String,
        state: String,
        pid: u32,
    },
}

fn list(env: &Env, lv: &Libvirt, format: OutputFormat) -> Result<i32> {
    let vms = domain::list(&lv.conn())?;
    let finished_now = env.take_finished().into_iter().map(|p| Listed::Unfinished {
        state: match p.action {
            Action::Create => "abandoned create, rolled back now",
            Action::Destroy => "interrupted destroy, finished now",
        }
        .to_string(),
        name: p.vm,
        pid: p.pid,
    });
    let unfinished: Vec<Listed> = lifecycle::pending(&env.paths)
        .into_iter()
        // Another host's runs are that host's to list.
        .filter(|p| p.uri == lv.uri)
        // A running create's VM is listed as itself once it is defined.
        .filter(|p| !vms.iter().any(|vm| vm.name == p.vm))
        .map(|p| Listed::Unfinished {
            state: match (p.action, p.running) {
                (Action::Create, true) => "being created",
                (Action::Create, false) => "abandoned create (vm destroy finishes it)",
                (Action::Destroy, true) => "being destroyed",
                (Action::Destroy, false) => "destroy unfinished (vm destroy finishes it)",
            }
            .to_string(),
            name: p.vm,
            pid: p.pid,
        })
        .chain(finished_now)
        .collect();
    let rows: Vec<Listed> = vms
        .into_iter()
        .map(|v| Listed::Vm(Box::new(v)))
        .chain(unfinished)
        .collect();
    output::print(
        format,
        &rows,
        &[
            "VM", "STATE", "IP", "TEMPLATE", "ACCEL", "CPUS", "MEMORY", "NETWORK",
        ],
        |row| match row {
            Listed::Vm(v) => vec![
                v.name.clone(),
                v.state.clone(),
                v.record.ip.to_string(),
                v.record.template.clone(),
                v.record.accel.as_str().to_string(),
                v.cpus.to_string(),
                format!("{} MiB", v.memory_mib),
                v.record.network.clone(),
            ],
            Listed::Unfinished { name, state, pid } => {
                let mut cells = vec![name.clone(), format!("{state}, pid {pid}")];
                cells.resize(8, "-".to_string());
                cells
            }
        },
    )?;
    Ok(0)
}

fn start(env: &Env, lv: &Libvirt, name: &str, ssh_timeout: u64) -> Result<i32> {
    crate::interrupt::install();
    let (dom, _) = domain::lookup(&lv.conn(), name)?;
    explain::step(
        Step::VmBoot,
        &json!({"name": name, "running": dom.is_active()?}),
    )?;
    domain::start(&dom)?;
    let route = Route::of_vm(lv, &env.paths, name)?;
    explain_wait(env, lv, &route, name, ssh_timeout)?;
    let progress = Progress::new(&format!("vm {name}"));
    progress.stage("boot-to-ssh");
    // Looked up again: a handle from a connection that died with libvirtd dies with it.
    let restart = || domain::start(&domain::lookup(&lv.conn(), name)?.0);
    lifecycle::wait_until_ready(
        lv,
        name,
        &route,
        Duration::from_secs(ssh_timeout),
        &progress,
        &restart,
    )?;
    progress.finish();
    outln!("started {name}; SSH answers at {}", route.addr.ip());
    Ok(0)
}

/// The wait for SSH after `vm start`, as the create's own; through a remote host the guest's
/// address is not reachable from here, so that wait is only noted.
fn explain_wait(
    env: &Env,
    lv: &Libvirt,
    route: &Route,
    name: &str,
    ssh_timeout: u64,
) -> Result<()> {
    if lv.is_remote() {
        return explain::note(&format!(
            "waiting for SSH of {name} through the remote host is not explained yet"
        ));
    }
    crate::guest::route::explain_wait_for_ssh(
        &env.paths,
        name,
        route.addr.ip(),
        &route.user,
        &route.key,
        Duration::from_secs(ssh_timeout),
    )
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
                crate::guest::ssh::sh_quote(a)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An interactive login through the system OpenSSH client, with the same key and the same
/// pinned host key (a terminal needs what OpenSSH does well: PTY, escapes, window size).
fn interactive(env: &Env, name: &str, target: &Route) -> Result<i32> {
    let mut ssh = std::process::Command::new("ssh");
    if let Some(hypervisor) = &target.via {
        // A guest of a remote host: through that host, as strata itself goes.
        ssh.arg("-o")
            .arg(format!("ProxyCommand={}", hypervisor.proxy_command()));
    }
    let status = ssh
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
