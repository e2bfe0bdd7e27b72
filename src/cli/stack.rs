//! `strata up|ps|logs|down STACK` and `strata context VM`: service stacks in the VMs.

use crate::cli::{args, output, Env, OutputFormat};
use crate::error::Result;
use crate::guest::docker::GuestDocker;
use crate::lifecycle::stack_up::StackUp;
use crate::outln;
use crate::progress::Progress;
use crate::stack::objects::ServiceRow;
use crate::stack::{self, StackFile, UpOptions};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The stack file (TOML)
    stack: PathBuf,
    /// Launch even when a preflight check fails
    #[arg(long)]
    force: bool,
    /// On failure, leave what this run created (and say what it is)
    #[arg(long)]
    keep_failed: bool,
    /// Only check the stack file (templates, parameters, order); touch no VM
    #[arg(long)]
    validate: bool,
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    stack: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    stack: PathBuf,
    service: String,
    /// Keep printing new lines
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only the last N lines
    #[arg(long, value_parser = args::log_lines, allow_hyphen_values = true)]
    tail: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    stack: PathBuf,
    /// Also remove the stack's volumes (kept by default: they hold the data)
    #[arg(long)]
    volumes: bool,
}

#[derive(Debug, clap::Args)]
pub struct ContextArgs {
    /// The VM whose Docker the context reaches
    vm: String,
}

fn print_rows(format: OutputFormat, rows: &[ServiceRow], with_action: bool) -> Result<()> {
    let mut header = vec!["service", "container"];
    if with_action {
        header.push("action");
    }
    header.extend(["state", "health", "ports"]);
    if with_action {
        header.push("time");
    }
    output::print(format, rows, &header, |r| {
        let mut cells = vec![r.service.clone(), r.container.clone()];
        if with_action {
            cells.push(r.action.clone());
        }
        cells.extend([r.state.clone(), r.health.clone(), r.ports.clone()]);
        if with_action {
            cells.push(format!("{:.1}s", r.seconds));
        }
        cells
    })
}

pub fn up(env: &Env, args: UpArgs) -> Result<i32> {
    let file = StackFile::load(&args.stack)?;
    if args.validate {
        let order = stack::validate(&file)?;
        outln!(
            "{}: stack '{}' for VM '{}' is valid; start order: {}",
            args.stack.display(),
            file.name,
            file.vm,
            order.join(", ")
        );
        return Ok(0);
    }
    let lv = env.libvirt()?;
    let started = std::time::Instant::now();
    let progress = Progress::new(&format!("up {}", file.name));
    let StackUp { report, checks } = crate::lifecycle::stack_up::up(
        &lv,
        &env.paths,
        &file,
        UpOptions {
            force: args.force,
            keep_failed: args.keep_failed,
        },
        &progress,
    )?;
    drop(progress);
    if args.output == OutputFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    if let Some(checks) = &checks {
        let (warn, fail) = (checks.counts["warn"], checks.counts["fail"]);
        outln!(
            "preflight checks for '{}': {} ok, {warn} warn, {fail} fail{}",
            file.vm,
            checks.counts["ok"],
            match (fail > 0, args.force) {
                (false, _) => "",
                (true, true) => " (--force)",
                // The preflight let them pass: they are about other networks' bridges.
                (true, false) => " (on other networks' bridges; `strata check --host` shows them)",
            }
        );
    }
    for line in &report.images {
        outln!("image {line}");
    }
    for gone in &report.removed {
        outln!("removed {gone} (no longer in the stack file)");
    }
    print_rows(OutputFormat::Table, &report.services, true)?;
    let all_unchanged = report.services.iter().all(|s| s.action == "unchanged");
    outln!(
        "stack '{}' in VM '{}': {} in {:.1}s",
        file.name,
        file.vm,
        if all_unchanged { "unchanged" } else { "up" },
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn connect(env: &Env, file: &StackFile) -> Result<GuestDocker> {
    let lv = env.libvirt()?;
    let target = crate::guest::Route::of_vm(&lv, &env.paths, &file.vm)?;
    GuestDocker::connect(&target)
}

pub fn ps(env: &Env, args: PsArgs) -> Result<i32> {
    let file = StackFile::load(&args.stack)?;
    let docker = connect(env, &file)?;
    let rows = stack::ps(&docker, &file)?;
    print_rows(args.output, &rows, false)?;
    Ok(0)
}

pub fn logs(env: &Env, args: LogsArgs) -> Result<i32> {
    let file = StackFile::load(&args.stack)?;
    let docker = connect(env, &file)?;
    stack::logs(&docker, &file, &args.service, args.follow, args.tail)?;
    Ok(0)
}

pub fn down(env: &Env, args: DownArgs) -> Result<i32> {
    let file = StackFile::load(&args.stack)?;
    let lv = env.libvirt()?;
    let report = crate::lifecycle::stack_down(&lv, &env.paths, &file, args.volumes)?;
    for (what, list) in [
        ("container", &report.containers),
        ("network", &report.networks),
        ("volume", &report.volumes),
    ] {
        for name in list {
            outln!("removed {what} {name}");
        }
    }
    for name in &report.kept_volumes {
        outln!("kept volume {name} (remove it with --volumes)");
    }
    outln!("stack '{}' in VM '{}' is down", file.name, file.vm);
    Ok(0)
}

pub fn context(env: &Env, args: ContextArgs) -> Result<i32> {
    let lv = env.libvirt()?;
    let target = crate::guest::Route::of_vm(&lv, &env.paths, &args.vm)?;
    let files = stack::context::write(
        &args.vm,
        &target,
        &env.paths.vm_known_hosts(&args.vm),
        &stack::context::Homes::of_current_user()?,
    )?;
    outln!("ssh settings: {}", files.ssh_snippet.display());
    if files.include_added {
        outln!(
            "added `Include strata/*.conf` at the top of {}",
            files.ssh_config.display()
        );
    }
    outln!(
        "docker context: {} ({})",
        files.context,
        files.docker_meta.display()
    );
    outln!("use it with:  docker --context {} ps", files.context);
    Ok(0)
}
