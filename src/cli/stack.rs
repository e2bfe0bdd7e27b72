//! `strata up|ps|logs|down STACK` and `strata context VM`: service stacks in the VMs.

use crate::cli::{args, output, Env, OutputFormat};
use crate::error::{Error, Result};
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

impl UpArgs {
    fn options(&self) -> UpOptions {
        UpOptions {
            force: self.force,
            keep_failed: self.keep_failed,
        }
    }
}

/// The images an `up` got and the services it removed, one line each.
fn print_changes(images: &[String], removed: &[String]) {
    for line in images {
        outln!("image {line}");
    }
    for gone in removed {
        outln!("removed {gone} (no longer in the stack file)");
    }
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
            "{}: stack '{}' for {} is valid; start order: {}",
            args.stack.display(),
            file.name,
            where_(&file),
            order.join(", ")
        );
        return Ok(0);
    }
    if let Some(swarm) = file.swarm.clone() {
        if crate::explain::is_dry_run() {
            return Err(Error::bad_input(format!(
                "--dry-run of a stack on a swarm ({swarm}) is not written yet"
            ))
            .with_hint("--dry-run works for a stack in one VM (vm = \"NAME\")"));
        }
        return up_on_swarm(env, &args, &file, &swarm);
    }
    let lv = env.libvirt()?;
    if crate::explain::is_dry_run() && lv.is_remote() {
        return Err(
            Error::bad_input("--dry-run of `up` works on this machine's libvirt only")
                .with_hint("leave out --connect, or run it on that host"),
        );
    }
    let started = std::time::Instant::now();
    let progress = Progress::new(&format!("up {}", file.name));
    let StackUp { report, checks } =
        crate::lifecycle::stack_up::up(&lv, &env.paths, &file, args.options(), &progress)?;
    drop(progress);
    if crate::explain::is_dry_run() {
        crate::explain::say_dry_run_done(&format!(
            "dry run: stack '{}' in VM '{}' planned, nothing in the VM changed; the script is in the --explain output",
            file.name, file.vm
        ));
        return Ok(0);
    }
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
    print_changes(&report.images, &report.removed);
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

/// "VM 'web'" or "swarm 'lab'", for messages.
fn where_(file: &StackFile) -> String {
    match &file.swarm {
        Some(swarm) => format!("swarm '{swarm}'"),
        None => format!("VM '{}'", file.vm),
    }
}

fn up_on_swarm(env: &Env, args: &UpArgs, file: &StackFile, swarm: &str) -> Result<i32> {
    let lv = env.libvirt()?;
    let started = std::time::Instant::now();
    let progress = Progress::new(&format!("up {}", file.name));
    let up =
        crate::lifecycle::stack_swarm::up(&lv, &env.paths, file, swarm, args.options(), &progress)?;
    drop(progress);
    if args.output == OutputFormat::Json {
        outln!("{}", serde_json::to_string_pretty(&up.report)?);
        return Ok(0);
    }
    if let Some(checks) = &up.checks {
        outln!(
            "preflight checks for the host and swarm '{swarm}': {} ok, {} warn, {} fail{}",
            checks.counts["ok"],
            checks.counts["warn"],
            checks.counts["fail"],
            if args.force && checks.counts["fail"] > 0 {
                " (--force)"
            } else {
                ""
            }
        );
    }
    print_changes(&up.report.images, &up.report.removed);
    let rows = &up.report.services;
    output::print(
        OutputFormat::Table,
        rows,
        &[
            "service",
            "swarm service",
            "action",
            "tasks",
            "where",
            "ports",
            "time",
        ],
        |r| {
            vec![
                r.service.clone(),
                r.container.clone(),
                r.action.clone(),
                r.state.clone(),
                r.health.clone(),
                r.ports.clone(),
                format!("{:.1}s", r.seconds),
            ]
        },
    )?;
    let all_unchanged = rows.iter().all(|s| s.action == "unchanged");
    outln!(
        "stack '{}' on swarm '{swarm}': {} in {:.1}s",
        file.name,
        if all_unchanged { "unchanged" } else { "up" },
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn connect(env: &Env, file: &StackFile) -> Result<GuestDocker> {
    let lv = env.libvirt()?;
    let target = crate::guest::Route::of_vm(&lv, &env.paths, file.require_vm()?)?;
    GuestDocker::connect(&target)
}

pub fn ps(env: &Env, args: PsArgs) -> Result<i32> {
    let file = StackFile::load(&args.stack)?;
    if let Some(swarm) = &file.swarm {
        let lv = env.libvirt()?;
        let rows = crate::lifecycle::stack_swarm::ps(&lv, &env.paths, &file, swarm)?;
        output::print(
            args.output,
            &rows,
            &["service", "task", "vm", "state", "error"],
            |r| {
                vec![
                    r.service.clone(),
                    r.task.clone(),
                    r.vm.clone(),
                    r.state.clone(),
                    r.error.clone(),
                ]
            },
        )?;
        return Ok(0);
    }
    let docker = connect(env, &file)?;
    let rows = stack::ps(&docker, &file)?;
    print_rows(args.output, &rows, false)?;
    Ok(0)
}

pub fn logs(env: &Env, args: LogsArgs) -> Result<i32> {
    let file = StackFile::load(&args.stack)?;
    if let Some(swarm) = &file.swarm {
        let lv = env.libvirt()?;
        crate::lifecycle::stack_swarm::logs(
            &lv,
            &env.paths,
            &file,
            swarm,
            &args.service,
            args.follow,
            args.tail,
        )?;
        return Ok(0);
    }
    let docker = connect(env, &file)?;
    stack::logs(&docker, &file, &args.service, args.follow, args.tail)?;
    Ok(0)
}

pub fn down(env: &Env, args: DownArgs) -> Result<i32> {
    let file = StackFile::load(&args.stack)?;
    let lv = env.libvirt()?;
    if let Some(swarm) = &file.swarm {
        let report =
            crate::lifecycle::stack_swarm::down(&lv, &env.paths, &file, swarm, args.volumes)?;
        for (what, list) in [
            ("service", &report.services),
            ("network", &report.networks),
            ("volume", &report.volumes),
        ] {
            for name in list {
                outln!("removed {what} {name}");
            }
        }
        if !args.volumes {
            outln!("volumes kept on each VM (remove them with --volumes)");
        }
        outln!("stack '{}' on swarm '{swarm}' is down", file.name);
        return Ok(0);
    }
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
