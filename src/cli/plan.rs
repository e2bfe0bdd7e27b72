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
            let shown = show_hosts(env, &file)?;
            let plan = &shown[0].1.plan;
            let steps: Vec<Step> = shown.iter().flat_map(|(_, s)| s.steps.clone()).collect();
            if output == OutputFormat::Table {
                print_steps(&steps)?;
                outln!("plan {}: {}", plan.name, plan::summary(&steps));
            }
            confirm(&steps, yes)?;
            let mut rows = Vec::new();
            for (part, shown) in &shown {
                let lv = part.env.libvirt()?;
                send_templates(&lv, &part.env, &shown.plan)?;
                let parallel = parallel.unwrap_or_else(|| default_parallel(&shown.plan));
                let group = ProgressGroup::new(&part.title(&shown.plan));
                let done = apply::apply(
                    &lv,
                    &part.env.paths,
                    shown,
                    Mode::Converge,
                    &[],
                    parallel,
                    &group,
                );
                drop(group);
                rows.extend(part.mark(done));
            }
            finish(plan, &rows, output)
        }
        PlanCommand::Destroy {
            file,
            volumes,
            output,
        } => {
            let mut plan = Plan::load(&file)?;
            // A stack file that cannot be read any more only costs its `down`: its VM goes.
            let _ = plan.fill_stack_targets(&|path| StackFile::placement_of_file(path));
            let mut rows = Vec::new();
            for part in parts(env, &plan)? {
                let lv = part.env.libvirt()?;
                let own = plan.part(part.host.as_deref());
                let group = ProgressGroup::new(&part.title(&own));
                let done = plan::destroy::destroy(&lv, &part.env.paths, &own, volumes, &group)?;
                drop(group);
                rows.extend(part.mark(done));
            }
            finish(&plan, &rows, output)
        }
        PlanCommand::Rebuild {
            file,
            vms,
            parallel,
            output,
        } => {
            crate::interrupt::install();
            let shown = show_hosts(env, &file)?;
            let known = |vm: &String| shown.iter().any(|(_, s)| s.plan.vms.contains_key(vm));
            if let Some(unknown) = vms.iter().find(|vm| !known(vm)) {
                let all: Vec<String> = shown
                    .iter()
                    .flat_map(|(_, s)| s.plan.vms.keys().cloned())
                    .collect();
                return Err(Error::bad_input(format!(
                    "VM '{unknown}' is not in plan '{}' ({})",
                    shown[0].1.plan.name,
                    file.display()
                ))
                .with_hint(format!("the plan's VMs: {}", all.join(", "))));
            }
            let mut rows = Vec::new();
            for (part, shown) in &shown {
                let lv = part.env.libvirt()?;
                send_templates(&lv, &part.env, &shown.plan)?;
                let group = ProgressGroup::new(&format!("{} rebuild", part.title(&shown.plan)));
                let done = apply::apply(
                    &lv,
                    &part.env.paths,
                    shown,
                    Mode::Rebuild,
                    &vms,
                    parallel,
                    &group,
                );
                drop(group);
                rows.extend(part.mark(done));
            }
            finish(&shown[0].1.plan, &rows, output)
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

/// One host a plan is carried out on: its name in the plan (None: the host strata connects
/// to) and that host's context (its URI, the folder its VMs' keys are kept in).
struct Part {
    host: Option<String>,
    env: Env,
}

impl Part {
    /// The progress title of this host's work.
    fn title(&self, plan: &Plan) -> String {
        match &self.host {
            Some(host) => format!("plan {} on {host}", plan.name),
            None => format!("plan {}", plan.name),
        }
    }

    /// Rows of this host's work, marked with its name.
    fn mark(&self, rows: Vec<Row>) -> Vec<Row> {
        rows.into_iter()
            .map(|row| Row {
                host: self.host.clone(),
                ..row
            })
            .collect()
    }
}

/// The hosts of `plan`, each with its context (`Plan::host_parts`). A `[hosts]` entry that is
/// the host strata connects to is refused: that host's part would see the other's objects as
/// gone from the plan.
fn parts(env: &Env, plan: &Plan) -> Result<Vec<Part>> {
    let here = crate::host::remote::Site::of_uri(&env.uri)?;
    if let Some(twin) = plan.hosts.values().find(|h| {
        crate::host::remote::Site::of_uri(&h.uri).is_ok_and(|site| site.same_machine(&here))
    }) {
        return Err(Error::bad_input(format!(
            "{}:{}: hosts.{}.uri: the host strata connects to ({})",
            plan.path.display(),
            twin.line,
            twin.name,
            env.uri
        ))
        .with_hint(
            "leave `host` out for that host's networks, or connect elsewhere with --connect",
        ));
    }
    plan.host_parts()
        .into_iter()
        .map(|host| {
            let env = match &host {
                None => env.at(&env.uri)?,
                Some(_) => env.at(plan.uri_of(host.as_deref(), &env.uri))?,
            };
            Ok(Part { host, env })
        })
        .collect()
}

/// `plan show` on every host of the plan: what applying it would do there.
fn show_hosts(env: &Env, file: &std::path::Path) -> Result<Vec<(Part, plan::show::Shown)>> {
    let plan = Plan::load(file)?;
    let mut shown = Vec::new();
    for part in parts(env, &plan)? {
        let lv = part.env.libvirt()?;
        let on_host = plan::show::show_part(&lv, &part.env.paths, file, part.host.as_deref())?;
        shown.push((part, on_host));
    }
    Ok(shown)
}

/// A remote host's VMs are cloned from templates in its own pool: the plan's templates are
/// sent there first (built here; those already there are not sent again).
fn send_templates(lv: &crate::vm::Libvirt, env: &Env, plan: &Plan) -> Result<()> {
    if !lv.is_remote() {
        return Ok(());
    }
    let site = crate::host::remote::Site::of_uri(&lv.uri)?;
    let login = site.login()?;
    let templates: std::collections::BTreeSet<&str> =
        plan.vms.values().map(|vm| vm.template.as_str()).collect();
    for template in templates {
        let record =
            crate::image::read_record(&env.paths.template_dir(template))?.ok_or_else(|| {
                Error::not_found(format!(
                    "template '{template}' is not built on this machine"
                ))
                .with_hint(format!(
                    "run `strata template build {template}` (plan apply sends it to {})",
                    login.display()
                ))
            })?;
        let progress = crate::progress::Progress::new(&format!("template {template}"));
        crate::lifecycle::template_upload::upload(
            lv, login, &env.paths, template, &record, &progress,
        )?;
        progress.finish();
    }
    Ok(())
}

fn show(env: &Env, file: &std::path::Path, format: OutputFormat) -> Result<i32> {
    let shown = show_hosts(env, file)?;
    let plan = &shown[0].1.plan;
    let steps: Vec<Step> = shown.iter().flat_map(|(_, s)| s.steps.clone()).collect();
    let summary = plan::summary(&steps);
    if format == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "plan": plan.name,
                "steps": steps,
                "summary": summary,
            }))?
        );
        return Ok(0);
    }
    print_steps(&steps)?;
    outln!("plan {}: {summary}", plan.name);
    Ok(0)
}

/// "HOST" first when the plan spans hosts; the rows' cells follow.
fn with_host_column<'a>(spans_hosts: bool, header: &[&'a str]) -> Vec<&'a str> {
    spans_hosts
        .then_some("HOST")
        .into_iter()
        .chain(header.iter().copied())
        .collect()
}

fn host_cell(spans_hosts: bool, host: &Option<String>) -> Option<String> {
    spans_hosts.then(|| host.clone().unwrap_or_else(|| "(this)".to_string()))
}

fn print_steps(steps: &[Step]) -> Result<()> {
    let spans_hosts = steps.iter().any(|s| s.host.is_some());
    output::print(
        OutputFormat::Table,
        steps,
        &with_host_column(spans_hosts, &["KIND", "NAME", "ACTION", "WHY"]),
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
            host_cell(spans_hosts, &s.host)
                .into_iter()
                .chain([
                    format!("{:?}", s.kind).to_lowercase(),
                    s.name.clone(),
                    action.to_string(),
                    why,
                ])
                .collect()
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
    let spans_hosts = rows.iter().any(|r| r.host.is_some());
    output::print(
        format,
        rows,
        &with_host_column(spans_hosts, &["KIND", "NAME", "RESULT", "DETAIL", "TIME"]),
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
            host_cell(spans_hosts, &r.host)
                .into_iter()
                .chain([
                    r.kind.to_string(),
                    r.name.clone(),
                    result.to_string(),
                    detail,
                    format!("{:.1}s", r.seconds),
                ])
                .collect()
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
