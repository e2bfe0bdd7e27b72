//! `strata engine install|info`: Docker inside a VM.

use crate::cli::{args, Env, OutputFormat};
use crate::engine::config::LogDriver;
use crate::engine::decision::{Layout, StoragePolicy, StorageRequest};
use crate::engine::info;
use crate::engine::install::{InstallRequest, Source};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::{out, outln};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Install Docker in a running VM (or converge, or only verify when it is as intended)
    Install {
        vm: String,
        /// bundle: the host fetches the .debs with its own apt and pushes them (the guest
        /// needs no network); online: the guest uses its own mirror
        #[arg(long, value_enum, default_value = "bundle")]
        source: Source,
        /// docker.io version, exact or a prefix such as 20.10.24 (default: the release's)
        #[arg(long)]
        version: Option<String>,
        /// auto, overlay2, btrfs or lvm
        #[arg(long, default_value = "auto")]
        storage: String,
        /// with --storage lvm: devicemapper on a thin pool instead of overlay2 on an LV
        /// (engines older than 25.0 only)
        #[arg(long, value_parser = ["overlay2", "devicemapper"], default_value = "overlay2")]
        engine_storage: String,
        /// attach a data disk of this size for Docker's data-root, e.g. 20G
        #[arg(long, value_parser = args::size_with_unit, allow_hyphen_values = true)]
        data_disk: Option<u64>,
        /// local (rotated by Docker) or json-file (rotated with max-size/max-file)
        #[arg(long, default_value = "local")]
        log_driver: String,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Show the engine in a VM: version, storage driver and why, data-root, logging, pools
    Info {
        vm: String,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
}

pub fn run(env: &Env, cmd: EngineCommand) -> Result<i32> {
    match cmd {
        EngineCommand::Install {
            vm,
            source,
            version,
            storage,
            engine_storage,
            data_disk,
            log_driver,
            output,
        } => {
            // Flags are checked before libvirt or the guest is touched.
            let request = InstallRequest {
                source,
                version,
                storage: StorageRequest {
                    policy: storage.parse::<StoragePolicy>()?,
                    data_disk: data_disk.is_some(),
                    devicemapper: engine_storage == "devicemapper",
                },
                data_disk,
                log_driver: log_driver.parse::<LogDriver>()?,
            };
            let lv = env.libvirt()?;
            let progress = Progress::new(&format!("engine {vm}"));
            if crate::explain::is_dry_run() {
                crate::lifecycle::engine_install::dry_run(
                    &lv, &env.paths, &vm, &request, &progress,
                )?;
                drop(progress);
                crate::explain::say_dry_run_done(&format!("dry run: Docker in {vm} planned, nothing in the guest or libvirt changed; the script is in the --explain output"));
                return Ok(0);
            }
            let report = crate::lifecycle::engine_install::install(
                &lv, &env.paths, &vm, &request, &progress,
            )?;
            if output == OutputFormat::Json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(0);
            }
            if report.changes.is_empty() {
                outln!("Docker in {vm} is installed and configured as intended: nothing changed");
            } else {
                for change in &report.changes {
                    outln!("{change}");
                }
            }
            // A thin pool has no filesystem of its own to name.
            let backing = match report.decision.layout {
                Layout::LvmThinPool => String::new(),
                _ => format!(" ({})", report.decision.backing.describe()),
            };
            outln!(
                "verified: docker.io {}, {} {}{backing}, data-root {}, log driver {}",
                report.engine_package,
                report.observed.driver,
                report.decision.layout.describe(),
                report.observed.root_dir,
                report.observed.logging_driver
            );
            for s in &report.stages {
                outln!("  {:<34} {:>6.2}s", s.stage, s.seconds);
            }
            Ok(0)
        }
        EngineCommand::Info { vm, output } => {
            let lv = env.libvirt()?;
            let report = info::read(&lv, &env.paths, &vm)?;
            match output {
                OutputFormat::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
                OutputFormat::Table => out!("{}", info::render_table(&report)),
            }
            if report.mismatches.is_empty() {
                Ok(0)
            } else {
                Err(Error::failed(format!(
                    "Docker in '{vm}' differs from what strata configured ({} fields)",
                    report.mismatches.len()
                ))
                .with_hint(format!("re-run `strata engine install {vm}` to converge")))
            }
        }
    }
}
