//! `strata template build|list`.

use crate::cli::{output, Env, OutputFormat};
use crate::error::Result;
use crate::host::remote::Site;
use crate::image::{self, BuildOutcome};
use crate::lifecycle::template_upload;
use crate::outln;
use crate::progress::Progress;
use crate::template;
use crate::units::format_size;
use crate::vm::connect::DEFAULT_URI;
use crate::vm::Libvirt;
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

/// Import a cloud image as a template. For a remote host (`--connect qemu+ssh://…`) it is
/// imported on this machine (or found imported here already from the same files) and sent to
/// that host like a built template.
pub fn import(env: &Env, args: ImportArgs) -> Result<i32> {
    let request = image::ImportRequest {
        name: args.name.clone(),
        from: args.from,
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.cmdline,
    };
    let site = Site::of_uri(&env.uri)?;
    if site.is_local() {
        let lv = env.libvirt()?;
        let rec = image::import(&lv, &env.paths, &request)?;
        outln!(
            "imported template {}: volume {} ({}), sha256 {}",
            args.name,
            rec.volume,
            format_size(rec.file_size),
            rec.sha256
        );
        return Ok(0);
    }
    // A remote host without an SSH login is refused before anything is imported.
    let login = site.login()?;
    let lv = env.libvirt()?;
    let local = this_machine()?;
    let (rec, imported_now) = image::import_or_same(&local, &env.paths, &request)?;
    if imported_now {
        outln!(
            "imported template {} here: volume {} ({}), sha256 {}",
            args.name,
            rec.volume,
            format_size(rec.file_size),
            rec.sha256
        );
    } else {
        outln!(
            "template {} is imported here already from the same files (sha256 {})",
            args.name,
            rec.sha256
        );
    }
    let progress = Progress::new(&format!("template {}", args.name));
    let placed = template_upload::upload(&lv, login, &env.paths, &args.name, &rec, &progress)?;
    progress.finish();
    report_placed(login, &placed);
    Ok(0)
}

/// This machine's libvirt, where templates are built and imported whatever host their VMs
/// run on.
fn this_machine() -> Result<Libvirt> {
    Libvirt::open(DEFAULT_URI)
        .map_err(|e| e.context("templates are built on this machine, in its own strata pool"))
}

/// One line per file of a template sent to (or found on) a remote host.
fn report_placed(login: &crate::host::remote::Login, placed: &[template_upload::Placed]) {
    for file in placed {
        if file.sent {
            outln!(
                "{}: uploaded {} ({}), sha256 verified there",
                login.display(),
                file.volume,
                format_size(file.bytes)
            );
        } else {
            outln!(
                "{}: {} is already there (same sha256); not sent",
                login.display(),
                file.volume
            );
        }
    }
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
            // A remote host without an SSH login is refused before anything is built.
            let site = Site::of_uri(&env.uri)?;
            let remote_login = (!site.is_local()).then(|| site.login()).transpose()?;
            let lv = env.libvirt()?;
            // Built here, in this machine's own pool, whatever host the VMs run on.
            let local = match remote_login {
                None => None,
                Some(_) => Some(this_machine()?),
            };
            let builder = local.as_ref().unwrap_or(&lv);
            let progress = Progress::new(&format!("template {name}"));
            let record = match crate::lifecycle::template_build::build(
                builder, &env.paths, &template, refresh, &progress,
            )? {
                BuildOutcome::UpToDate(rec) => {
                    if remote_login.is_some() {
                        outln!("template {name} is up to date here (sha256 {})", rec.sha256);
                    } else {
                        outln!(
                            "template {name} is up to date (sha256 {}); nothing to do",
                            rec.sha256
                        );
                    }
                    rec
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
                    rec
                }
            };
            if let Some(login) = remote_login {
                let placed =
                    template_upload::upload(&lv, login, &env.paths, &name, &record, &progress)?;
                // The spinner ends before the report lines.
                progress.finish();
                report_placed(login, &placed);
            }
            progress.finish();
            Ok(0)
        }
        TemplateCommand::Remove { name } => {
            let site = Site::of_uri(&env.uri)?;
            let lv = env.libvirt()?;
            if site.is_local() {
                image::remove(&lv, &env.paths, &name)?;
                outln!("removed template {name}");
            } else {
                // The host's copy only: the build here stays for other hosts.
                let login = site.login()?;
                let removed = template_upload::remove(&lv, login, &name)?;
                outln!(
                    "removed template {name} from {} ({}); its build on this machine is kept",
                    login.display(),
                    removed.join(", ")
                );
            }
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
