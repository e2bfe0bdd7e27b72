//! `strata plan show|apply|destroy|rebuild|list`: a whole host in one file.

use crate::cli::{output, Env, OutputFormat};
use crate::error::{Error, Result};
use crate::host::capacity;
use crate::outln;
use crate::plan::apply::{self, Mode, Outcome, Row};
use crate::plan::{self, Action, Plan, Step};
use crate::progress::ProgressGroup;
use crate::stack::StackFile;
use clap::Subcommand;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// What applying the plan would do to this host, object by object (it only reads)
    Show {
        /// The plan file (TOML), e.g. plans/lab.toml
        file: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Make the host what the plan says: networks, then VMs in parallel, Docker in them, stacks
    Apply {
        file: PathBuf,
        /// VMs made at once (default: one per core, as many as fit in free memory)
        #[arg(long)]
        parallel: Option<usize>,
        /// Replace and delete without asking (needed without a terminal)
        #[arg(long)]
        yes: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Remove what the plan made (and nothing else): stacks down, VMs, networks
    Destroy {
        file: PathBuf,
        /// Also remove data disks and the stacks' volumes (kept by default: they hold the data)
        #[arg(long)]
        volumes: bool,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Replace VMs by fresh clones of their templates; data disks kept, Docker and stacks back
    Rebuild {
        file: PathBuf,
        /// The VMs to rebuild (default: all of the plan's)
        vms: Vec<String>,
        /// VMs rebuilt at once (default 1, so that the others keep serving)
        #[arg(long, default_value_t = 1)]
        parallel: usize,
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// The plans on this host (from libvirt metadata), their networks and VMs
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
}

pub fn run(env: &Env, cmd: PlanCommand) -> Result<i32> {
    match cmd {
        PlanCommand::Show { file, output } => show(env, &file, output),
        PlanCommand::Apply {
            file,
            parallel,
            yes,
            output,
        } => {
            crate::interrupt::install();
            let lv = env.libvirt()?;
            let shown = plan::show::show(&lv, &env.paths, &file)?;
            if output == OutputFormat::Table {
                print_steps(&shown.steps)?;
                outln!("plan {}: {}", shown.plan.name, plan::summary(&shown.steps));
            }
            confirm(&shown.steps, yes)?;
            let parallel = parallel.unwrap_or_else(|| default_parallel(&shown.plan));
            let group = ProgressGroup::new(&format!("plan {}", shown.plan.name));
            let rows = apply::apply(
                &lv,
                &env.paths,
                &shown,
                Mode::Converge,
                &[],
                parallel,
                &group,
            );
            drop(group);
            finish(&shown.plan, &rows, output)
        }
        PlanCommand::Destroy {
            file,
            volumes,
            output,
        } => {
            let lv = env.libvirt()?;
            let mut plan = Plan::load(&file)?;
            // A stack file that cannot be read any more only costs its `down`: its VM goes.
            let _ = plan.fill_stack_vms(&|path| StackFile::load(path).map(|stack| stack.vm));
            let group = ProgressGroup::new(&format!("plan {}", plan.name));
            let rows = plan::destroy::destroy(&lv, &env.paths, &plan, volumes, &group)?;
            drop(group);
            finish(&plan, &rows, output)
        }
        PlanCommand::Rebuild {
            file,
            vms,
            parallel,
            output,
        } => {
            crate::interrupt::install();
            let lv = env.libvirt()?;
            let shown = plan::show::show(&lv, &env.paths, &file)?;
            if let Some(unknown) = vms.iter().find(|vm| !shown.plan.vms.contains_key(*vm)) {
                return Err(Error::bad_input(format!(
                    "VM '{unknown}' is not in plan '{}' ({})",
                    shown.plan.name,
                    file.display()
                ))
                .with_hint(format!(
                    "the plan's VMs: {}",
                    shown
                        .plan
                        .vms
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let group = ProgressGroup::new(&format!("plan {} rebuild", shown.plan.name));
            let rows = apply::apply(
                &lv,
                &env.paths,
                &shown,
                Mode::Rebuild,
                &vms,
                parallel,
                &group,
            );
            drop(group);
            finish(&shown.plan, &rows, output)
        }
        PlanCommand::List { output: format } => {
            let lv = env.libvirt()?;
            let owned = plan::list::list(&lv.conn())?;
            output::print(
                format,
                &owned,
                &["PLAN", "KIND", "NAME", "STATE", "DETAIL"],
                |o| {
                    vec![
                        o.plan.clone(),
                        o.kind.to_string(),
                        o.name.clone(),
                        o.state.clone(),
                        o.detail.clone(),
                    ]
                },
            )?;
            Ok(0)
        }
    }
}

fn show(env: &Env, file: &std::path::Path, format: OutputFormat) -> Result<i32> {
    let lv = env.libvirt()?;
    let shown = plan::show::show(&lv, &env.paths, file)?;
    let summary = plan::summary(&shown.steps);
    if format == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "plan": shown.plan.name,
                "steps": shown.steps,
                "summary": summary,
            }))?
        );
        return Ok(0);
    }
    print_steps(&shown.steps)?;
    outln!("plan {}: {summary}", shown.plan.name);
    Ok(0)
}

fn print_steps(steps: &[Step]) -> Result<()> {
    output::print(
        OutputFormat::Table,
        steps,
        &["KIND", "NAME", "ACTION", "WHY"],
        |s| {
            let (action, why) = match &s.action {
                Action::Create => ("create", String::new()),
                Action::Update { changes, restart } => (
                    "update",
                    format!(
                        "{}{}",
                        changes.join("; "),
                        if *restart { " (restart needed)" } else { "" }
                    ),
                ),
                Action::Replace { why } => ("replace", why.join("; ")),
                Action::Delete => ("delete", "gone from the plan".to_string()),
                Action::Unchanged => ("unchanged", String::new()),
                Action::Refused { why } => ("refused", why.clone()),
            };
            vec![
                format!("{:?}", s.kind).to_lowercase(),
                s.name.clone(),
                action.to_string(),
                why,
            ]
        },
    )
}

/// Replacements and deletions lose a VM's root disk: asked first on a terminal, refused
/// without one unless --yes.
fn confirm(steps: &[Step], yes: bool) -> Result<()> {
    let risky: Vec<String> = steps
        .iter()
        .filter(|s| matches!(s.action, Action::Replace { .. } | Action::Delete))
        .map(|s| format!("{:?} {}", s.kind, s.name).to_lowercase())
        .collect();
    if risky.is_empty() || yes {
        return Ok(());
    }
    let list = risky.join(", ");
    if !std::io::stdin().is_terminal() {
        return Err(Error::bad_input(format!(
            "the plan would replace or delete {list}; nothing was changed"
        ))
        .with_hint(
            "run it on a terminal to be asked, or add --yes (data disks are kept either way)",
        ));
    }
    crate::console::stderr(format_args!(
        "replace or delete {list} (root disks are lost, data disks kept)? [y/N] "
    ));
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::bad_input("not confirmed; nothing was changed")
            .with_hint("add --yes to skip the question"))
    }
}

fn default_parallel(plan: &Plan) -> usize {
    // A VM's memory (1 GiB where the plan leaves it to the template) and QEMU's own on top.
    let per_vm = plan
        .vms
        .values()
        .map(|vm| vm.memory.unwrap_or(1 << 30))
        .max()
        .unwrap_or(1 << 30)
        + (256 << 20);
    capacity::parallel_vms(&capacity::read(), per_vm)
}

/// The table of what was done and what failed, a summary line, and the exit code: 0 when
/// everything is as the plan says, 1 when something failed (a re-run retries it).
fn finish(plan: &Plan, rows: &[Row], format: OutputFormat) -> Result<i32> {
    output::print(
        format,
        rows,
        &["KIND", "NAME", "RESULT", "DETAIL", "TIME"],
        |r| {
            let (result, detail) = match &r.result {
                Outcome::Done { what } => ("done", what.clone()),
                Outcome::Unchanged => ("unchanged", String::new()),
                Outcome::Failed { error, hint } => (
                    "FAILED",
                    match hint {
                        Some(hint) => format!("{error} (hint: {hint})"),
                        None => error.clone(),
                    },
                ),
                Outcome::Skipped { why } => ("skipped", why.clone()),
                Outcome::LeftAlone { why } => ("left alone", why.clone()),
            };
            vec![
                r.kind.to_string(),
                r.name.clone(),
                result.to_string(),
                detail,
                format!("{:.1}s", r.seconds),
            ]
        },
    )?;
    let failed = rows.iter().filter(|r| r.result.is_failure()).count();
    if format == OutputFormat::Table {
        let count = |f: fn(&Outcome) -> bool| rows.iter().filter(|r| f(&r.result)).count();
        let unchanged = count(|o| matches!(o, Outcome::Unchanged));
        let left_alone = count(|o| matches!(o, Outcome::LeftAlone { .. }));
        if failed == 0 && unchanged == rows.len() {
            outln!("plan {}: unchanged", plan.name);
        } else {
            let done = rows.len() - failed - unchanged - left_alone;
            let mut said = format!("{done} done, {unchanged} unchanged");
            if left_alone > 0 {
                said.push_str(&format!(", {left_alone} left alone (not the plan's)"));
            }
            said.push_str(&format!(", {failed} failed or skipped"));
            outln!("plan {}: {said}", plan.name);
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}
