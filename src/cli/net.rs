//! `strata net create|list|destroy`.

use crate::cli::{args, output, Env, OutputFormat};
use crate::error::Result;
use crate::host::runner::Runner;
use crate::vm::network::{self, NetworkMode};
use crate::{errln, outln};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Create a libvirt network with DHCP (refuses subnets already in use)
    Create {
        name: String,
        /// IPv4 subnet, e.g. 10.77.0.0/24
        #[arg(long, value_parser = args::subnet, allow_hyphen_values = true)]
        subnet: ipnet::Ipv4Net,
        /// No forwarding: guests reach only the host and each other (the default)
        #[arg(long, conflicts_with = "nat")]
        isolated: bool,
        /// NAT to the host's uplink
        #[arg(long)]
        nat: bool,
    },
    /// Show libvirt networks
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Stop and remove a network strata created
    Destroy { name: String },
}

pub fn run(env: &Env, cmd: NetCommand) -> Result<i32> {
    let lv = env.libvirt()?;
    match cmd {
        NetCommand::Create {
            name,
            subnet,
            isolated: _,
            nat,
        } => {
            let mode = if nat {
                NetworkMode::Nat
            } else {
                NetworkMode::Isolated
            };
            // The overlap check reads the routes and Docker networks of the libvirt host,
            // over SSH when it is remote.
            let host = Runner::for_uri(&lv.uri)?;
            // Check and create under strata's lock: two creates of the same free subnet at
            // once must not both pass the overlap check.
            if crate::explain::is_dry_run() {
                let (taken, unchecked) = network::subnets_in_use(&lv.conn(), &host)?;
                network::dry_run_create(&lv.conn(), &name, subnet, mode, &taken)?;
                for what in unchecked {
                    errln!("note: not checked for overlap: {what}");
                }
                crate::explain::say_dry_run_done(&format!("dry run: network {name} checked, nothing created; the script is in the --explain output"));
                return Ok(0);
            }
            let (info, unchecked) = env.paths.with_lock(|| {
                let (taken, unchecked) = network::subnets_in_use(&lv.conn(), &host)?;
                let info = network::create(&lv.conn(), &name, subnet, mode, &taken, None)?;
                Ok((info, unchecked))
            })?;
            for what in unchecked {
                errln!("note: not checked for overlap: {what}");
            }
            outln!(
                "created network {} ({}, {}, bridge {})",
                info.name,
                info.subnet.map(|s| s.to_string()).unwrap_or_default(),
                info.mode,
                info.bridge.unwrap_or_default()
            );
        }
        NetCommand::List { output: format } => {
            let nets = network::list(&lv.conn())?;
            output::print(
                format,
                &nets,
                &[
                    "NETWORK", "SUBNET", "MODE", "BRIDGE", "ACTIVE", "RESERVED", "STRATA",
                ],
                |n| {
                    vec![
                        n.name.clone(),
                        n.subnet
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "-".into()),
                        n.mode.clone(),
                        n.bridge.clone().unwrap_or_else(|| "-".into()),
                        if n.active { "yes" } else { "no" }.into(),
                        n.hosts.len().to_string(),
                        if n.strata { "yes" } else { "no" }.into(),
                    ]
                },
            )?;
        }
        NetCommand::Destroy { name } => {
            let done = crate::lifecycle::destroy_network(&lv, &name)?;
            outln!("destroyed network {name}");
            if !done.rules_removed.is_empty() {
                outln!(
                    "removed {} `strata check --fix` rule(s) for its bridge",
                    done.rules_removed.len()
                );
            }
            if let Some(note) = done.note {
                errln!("strata: {note}");
            }
        }
    }
    Ok(0)
}
