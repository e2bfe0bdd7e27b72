//! `strata swarm create|list|join|leave|destroy`: Docker Swarm across strata's VMs.

use crate::cli::{output, Env, OutputFormat};
use crate::error::Result;
use crate::lifecycle::swarm::{self, SwarmReport, SwarmRequest};
use crate::{errln, outln};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Make a swarm of VMs (checks first; a re-run adds what is missing, changes nothing else)
    Create {
        name: String,
        /// A manager VM (the first one makes the swarm); repeat for more
        #[arg(long = "manager", required = true)]
        managers: Vec<String>,
        /// A worker VM; repeat for more
        #[arg(long = "worker")]
        workers: Vec<String>,
        /// Go ahead although the preflight checks fail
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Show the swarms strata made, their managers and workers
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Add worker VMs to a swarm
    Join {
        name: String,
        #[arg(long = "worker", required = true)]
        workers: Vec<String>,
        #[arg(long)]
        force: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Take a VM out of a swarm (a manager is demoted first; not the last one)
    Leave { name: String, vm: String },
    /// End a swarm: every VM leaves, its Docker left as before it joined (refused while services run)
    Destroy { name: String },
}

pub fn run(env: &Env, cmd: SwarmCommand) -> Result<i32> {
    let lv = env.libvirt()?;
    let paths = &env.paths;
    match cmd {
        SwarmCommand::Create {
            name,
            managers,
            workers,
            force,
            output: format,
        } => {
            let req = SwarmRequest {
                name,
                managers,
                workers,
                force,
            };
            converge(env, &lv, &req, format, swarm::create)
        }
        SwarmCommand::Join {
            name,
            workers,
            force,
            output: format,
        } => {
            let req = SwarmRequest {
                name,
                managers: Vec::new(),
                workers,
                force,
            };
            converge(env, &lv, &req, format, swarm::join)
        }
        SwarmCommand::List { output: format } => {
            let swarms = swarm::list(&lv, paths)?;
            output::print(
                format,
                &swarms,
                &[
                    "SWARM",
                    "MANAGERS",
                    "WORKERS",
                    "READY",
                    "POOL",
                    "OVERLAY MTU",
                ],
                |s| {
                    let ready = s.nodes.iter().filter(|n| n.state == "ready").count();
                    vec![
                        s.name.clone(),
                        s.vms(true).join(","),
                        s.vms(false).join(","),
                        format!("{ready}/{}", s.nodes.len()),
                        s.pools.join(","),
                        s.overlay_mtu
                            .map(|m| m.to_string())
                            .unwrap_or_else(|| "-".into()),
                    ]
                },
            )?;
            Ok(0)
        }
        SwarmCommand::Leave { name, vm } => {
            let note = paths.with_named_lock(&lock_key(&name), &waiting(&name), || {
                swarm::leave(&lv, paths, &name, &vm)
            })?;
            outln!("{vm} left swarm {name}");
            if let Some(note) = note {
                errln!("note: {note}");
            }
            Ok(0)
        }
        SwarmCommand::Destroy { name } => {
            let destroyed = paths.with_named_lock(&lock_key(&name), &waiting(&name), || {
                swarm::destroy(&lv, paths, &name)
            })?;
            outln!(
                "swarm {name} destroyed: {} left it",
                destroyed.left.join(", ")
            );
            for note in destroyed.notes {
                errln!("note: {note}");
            }
            Ok(0)
        }
    }
}

/// Create or join under the swarm's lock, then the report.
fn converge(
    env: &Env,
    lv: &crate::vm::Libvirt,
    req: &SwarmRequest,
    format: OutputFormat,
    how: fn(&crate::vm::Libvirt, &crate::state::Paths, &SwarmRequest) -> Result<SwarmReport>,
) -> Result<i32> {
    let report = env
        .paths
        .with_named_lock(&lock_key(&req.name), &waiting(&req.name), || {
            how(lv, &env.paths, req)
        })?;
    print_report(format, &report)
}

/// One change to a swarm at a time.
fn lock_key(name: &str) -> String {
    format!("swarm {name}")
}

fn waiting(name: &str) -> impl Fn() + '_ {
    move || errln!("waiting for another strata working on swarm {name}")
}

fn print_report(format: OutputFormat, report: &SwarmReport) -> Result<i32> {
    if format == OutputFormat::Json {
        outln!("{}", serde_json::to_string_pretty(report)?);
        return Ok(0);
    }
    output::print(format, &report.nodes, &["VM", "ROLE", "ACTION"], |n| {
        vec![n.vm.clone(), n.role.to_string(), n.action.to_string()]
    })?;
    outln!(
        "swarm {}: address pool {}, overlay MTU {}",
        report.swarm,
        report.pools.join(","),
        report
            .overlay_mtu
            .map(|m| m.to_string())
            .unwrap_or_else(|| "-".into())
    );
    for note in &report.notes {
        errln!("note: {note}");
    }
    Ok(0)
}
