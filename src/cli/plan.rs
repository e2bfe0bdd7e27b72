//! `strata plan show` (apply, destroy, rebuild and list come next: issue 13).

use crate::cli::{output, Env, OutputFormat};
use crate::error::Result;
use crate::outln;
use crate::plan::{self, Action};
use clap::Subcommand;
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
}

pub fn run(env: &Env, cmd: PlanCommand) -> Result<i32> {
    match cmd {
        PlanCommand::Show {
            file,
            output: format,
        } => {
            let lv = env.libvirt()?;
            let shown = plan::show::show(&lv, &env.paths, &file)?;
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
            output::print(
                format,
                &shown.steps,
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
            )?;
            outln!("plan {}: {summary}", shown.plan.name);
            Ok(0)
        }
    }
}
