//! `strata template build|list`.

use crate::cli::{output, Env, OutputFormat};
use crate::error::Result;
use crate::image::{self, BuildOutcome};
use crate::outln;
use crate::progress::Progress;
use crate::template;
use crate::units::format_size;
use clap::Subcommand;
use serde::Serialize;

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Build a template image from its recipe (a no-op when nothing changed)
    Build {
        name: String,
        /// Rebuild from current packages, ignoring the previous build and the cached debootstrap
        #[arg(long)]
        refresh: bool,
    },
    /// Show templates: built or not, size, checksum
    List {
        #[arg(long, value_enum, default_value = "table")]
        output: OutputFormat,
    },
    /// Remove a template's image (refused while VMs are cloned from it)
    Remove { name: String },
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Name of the new template
    name: String,
    /// The qcow2 cloud image (cloud-init inside)
    #[arg(long)]
    from: std::path::PathBuf,
    /// Boot this kernel directly instead of the image's bootloader (with --initrd)
    #[arg(long, requires = "initrd")]
    kernel: Option<std::path::PathBuf>,
    #[arg(long, requires = "kernel")]
    initrd: Option<std::path::PathBuf>,
    /// Kernel command line for direct boot
    #[arg(long, requires = "kernel")]
    cmdline: Option<String>,
}

pub fn import(env: &Env, args: ImportArgs) -> Result<i32> {
    let lv = env.libvirt()?;
    let rec = image::import(
        &lv,
        &env.paths,
        &image::ImportRequest {
            name: args.name.clone(),
            from: args.from,
            kernel: args.kernel,
            initrd: args.initrd,
            cmdline: args.cmdline,
        },
    )?;
    outln!(
        "imported template {}: volume {} ({}), sha256 {}",
        args.name,
        rec.volume,
        format_size(rec.file_size),
        rec.sha256
    );
    Ok(0)
}

#[derive(Serialize)]
struct TemplateRow {
    name: String,
    description: String,
    built: bool,
    virtual_size: Option<u64>,
    file_size: Option<u64>,
    sha256: Option<String>,
    built_at: Option<String>,
}

pub fn run(env: &Env, cmd: TemplateCommand) -> Result<i32> {
    let search = template::search_path(&env.paths.state.join("imported"));
    match cmd {
        TemplateCommand::Build { name, refresh } => {
            let template = template::find(&search, &name)?;
            let lv = env.libvirt()?;
            let progress = Progress::new(&format!("template {name}"));
            match crate::lifecycle::template_build::build(
                &lv, &env.paths, &template, refresh, &progress,
            )? {
                BuildOutcome::UpToDate(rec) => {
                    progress.finish();
                    outln!(
                        "template {name} is up to date (sha256 {}); nothing to do",
                        rec.sha256
                    );
                }
                BuildOutcome::Built(rec) => {
                    for (stage, took) in progress.finish() {
                        outln!("  {stage:<26} {:>7.1}s", took.as_secs_f64());
                    }
                    outln!(
                        "built template {name}: volume {} ({} file, {} disk), sha256 {}, {:.0}s",
                        rec.volume,
                        format_size(rec.file_size),
                        format_size(rec.virtual_size),
                        rec.sha256,
                        rec.build_seconds
                    );
                }
            }
            Ok(0)
        }
        TemplateCommand::Remove { name } => {
            let lv = env.libvirt()?;
            image::remove(&lv, &env.paths, &name)?;
            outln!("removed template {name}");
            Ok(0)
        }
        TemplateCommand::List { output: format } => {
            let mut rows = Vec::new();
            for t in template::list(&search)? {
                let rec = image::read_record(&env.paths.template_dir(t.name()))?;
                rows.push(TemplateRow {
                    name: t.name().to_string(),
                    description: t.manifest.description.clone(),
                    built: rec.is_some(),
                    virtual_size: rec.as_ref().map(|r| r.virtual_size),
                    file_size: rec.as_ref().map(|r| r.file_size),
                    sha256: rec.as_ref().map(|r| r.sha256.clone()),
                    built_at: rec.as_ref().map(|r| r.built.clone()),
                });
            }
            output::print(
                format,
                &rows,
                &["TEMPLATE", "BUILT", "SIZE", "SHA256", "DESCRIPTION"],
                |r| {
                    vec![
                        r.name.clone(),
                        r.built_at.clone().unwrap_or_else(|| "no".into()),
                        r.file_size.map(format_size).unwrap_or_else(|| "-".into()),
                        r.sha256
                            .as_ref()
                            .map(|s| s[..16].to_string())
                            .unwrap_or_else(|| "-".into()),
                        r.description.clone(),
                    ]
                },
            )?;
            Ok(0)
        }
    }
}
