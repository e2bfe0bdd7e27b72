//! `strata check [--host] [VM...] [--swarm-ports] [--fix] [--output json]`: the preflight
//! checks.

use crate::check::report::render_table;
use crate::cli::{Env, OutputFormat};
use crate::error::Result;
use crate::lifecycle::checks::{run as run_checks, CheckRequest, Reach};
use crate::{errln, out, outln};
use std::io::IsTerminal;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// VMs to check (default with no --host: the host and every running strata VM)
    vms: Vec<String>,
    /// Check the host
    #[arg(long)]
    host: bool,
    /// Probe between the VMs given (two or more) on the ports Docker Swarm needs (2377/tcp,
    /// 7946/tcp+udp, 4789/udp), from inside them; without it, only VMs already in swarm mode
    /// probe each other
    #[arg(long)]
    swarm_ports: bool,
    /// Apply the fixes marked [--fix applies], then check again and show before and after
    #[arg(long)]
    fix: bool,
    /// List the checks and what each reads, then exit
    #[arg(long)]
    list: bool,
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
}

/// Exit code 0 when everything is ok, 1 on a warning, 2 on a failure. An error that stops
/// the check also exits 2 (or 130 when interrupted): for a script calling `strata check`,
/// exit 1 must keep meaning "ran, with warnings", never "could not check".
pub fn run(env: &Env, args: CheckArgs) -> Result<i32> {
    check(env, args).or_else(|e| {
        errln!("error: {e}");
        Ok(e.exit_code().max(2))
    })
}

fn check(env: &Env, args: CheckArgs) -> Result<i32> {
    if args.list {
        for (scope, id, reads) in crate::check::catalogue() {
            outln!("{id:<24} {scope:<5} reads {reads}");
        }
        return Ok(0);
    }
    if args.swarm_ports && args.vms.len() < 2 {
        return Err(crate::error::Error::bad_input(
            "--swarm-ports probes between VMs: name two or more",
        )
        .with_hint("e.g. `strata check --swarm-ports web-1 web-2 db`"));
    }
    let (libvirt, vms) = if args.vms.is_empty() {
        // The host checks still run without libvirt; they say what they could not read. A
        // remote host's facts are read only where its libvirt answers (never this machine's
        // in their place).
        let libvirt = if crate::host::remote::Site::of_uri(&env.uri)?.is_local() {
            env.libvirt().ok()
        } else {
            Some(env.libvirt()?)
        };
        let vms = match (&libvirt, args.host) {
            (Some(lv), false) => crate::vm::domain::list(&lv.conn())?
                .into_iter()
                .filter(|vm| vm.state == "running")
                .map(|vm| vm.name)
                .collect(),
            _ => Vec::new(),
        };
        (libvirt, vms)
    } else {
        // Named VMs must exist before anything is read or changed.
        let lv = env.libvirt()?;
        for vm in &args.vms {
            crate::vm::domain::lookup(&lv.conn(), vm)?;
        }
        (Some(lv), args.vms.clone())
    };
    let request = CheckRequest {
        host: args.host || args.vms.is_empty(),
        reach: if args.swarm_ports {
            Reach::Among(vms.clone())
        } else {
            Reach::SwarmNodes
        },
        vms,
        fix: args.fix,
    };
    let report = run_checks(libvirt.as_ref(), &env.paths, &request);
    match args.output {
        OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Table => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            out!("{}", render_table(&report, color));
        }
    }
    Ok(report.exit_code)
}
