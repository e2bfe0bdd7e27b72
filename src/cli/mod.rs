//! Command-line grammar (clap) and dispatch to one file per command group. No logic here
//! beyond turning flags into requests and results into output.

pub mod args;
mod check;
mod engine;
mod net;
mod output;
mod plan;
mod stack;
mod swarm;
mod template;
mod vm;

use crate::error::{Error, Result};
use crate::state::Paths;
use crate::vm::{connect, Libvirt};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Clone libvirt VMs from templates in seconds, then put Docker and services in them"
)]
pub struct Cli {
    /// libvirt URI (default: LIBVIRT_DEFAULT_URI, then qemu:///system)
    #[arg(long, short = 'c', global = true)]
    pub connect: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build and list VM templates
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Create, list and remove libvirt networks
    #[command(subcommand)]
    Net(net::NetCommand),
    /// Create, list, log into, stop, start and destroy VMs
    #[command(subcommand)]
    Vm(vm::VmCommand),
    /// Install Docker in a VM and show how it is configured
    #[command(subcommand)]
    Engine(engine::EngineCommand),
    /// Check the host and VMs for libvirtd/Docker conflicts, and fix what can be fixed safely
    Check(check::CheckArgs),
    /// Register a standard cloud image (with cloud-init) as a template
    ImportImage(template::ImportArgs),
    /// Bring a stack up in its VM: checks, images, networks, volumes, containers in health order
    Up(stack::UpArgs),
    /// Show a stack's containers: state, health, ports
    Ps(stack::PsArgs),
    /// Print a service's log (-f to follow)
    Logs(stack::LogsArgs),
    /// Remove a stack's containers and networks (volumes only with --volumes)
    Down(stack::DownArgs),
    /// Make a docker CLI context "strata-VM" that reaches the VM's Docker over SSH
    Context(stack::ContextArgs),
    /// A whole host in one file: show, apply, destroy, rebuild and list plans
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Docker Swarm across VMs: create, list, join, leave, destroy
    #[command(subcommand)]
    Swarm(swarm::SwarmCommand),
}

/// Output format of list commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Context every command gets: where strata's files are and how to reach libvirt.
pub struct Env {
    pub paths: Paths,
    /// What opening libvirt finished of interrupted runs (`vm list` shows it once).
    finished: std::sync::Mutex<Vec<crate::lifecycle::PendingJournal>>,
    uri: String,
}

impl Env {
    /// The context of another host (a plan's `[hosts]`): its URI, and its own folder for its
    /// VMs' keys.
    pub fn at(&self, uri: &str) -> Result<Env> {
        Ok(Env {
            paths: paths_for(uri)?,
            finished: Default::default(),
            uri: uri.to_string(),
        })
    }

    /// What opening libvirt finished of interrupted runs, taken once.
    pub fn take_finished(&self) -> Vec<crate::lifecycle::PendingJournal> {
        self.finished
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }

    /// libvirt, after finishing what an interrupted run left (a create rolled back, a destroy
    /// carried through): every command that reaches libvirt does this first, so nothing an
    /// interrupted run made outlives the next strata command.
    pub fn libvirt(&self) -> Result<Libvirt> {
        let lv = Libvirt::open(&self.uri)?;
        match crate::lifecycle::recover_abandoned(&lv, &self.paths) {
            Ok(finished) => {
                for journal in finished {
                    crate::errln!(
                        "strata: finished what an interrupted run (pid {}) left of '{}'",
                        journal.pid,
                        journal.vm
                    );
                    if let Ok(mut shown) = self.finished.lock() {
                        shown.push(journal);
                    }
                }
            }
            // Said, not fatal: this command may not touch that VM, and the next one retries.
            Err(e) => crate::errln!("strata: note: {e}"),
        }
        Ok(lv)
    }
}

/// strata's folders for the host of `uri`: a remote host's VMs keep their keys and pins in a
/// folder of that host's own.
fn paths_for(uri: &str) -> Result<Paths> {
    Ok(match crate::host::remote::Site::of_uri(uri)? {
        crate::host::remote::Site::Ssh(login) => {
            Paths::discover().for_remote_host(&login.folder_name())
        }
        _ => Paths::discover(),
    })
}

/// Why the command line was not accepted.
#[derive(Debug)]
pub enum ArgsError {
    /// A value strata's own parsers refused, named after its option: report like any error.
    Input(Error),
    /// Everything else (unknown flag, missing argument, also --help and --version):
    /// clap prints it and picks the exit code, through `clap::Error::exit`.
    Clap(clap::Error),
}

/// Read the command line (`std::env::args_os()` in main, a list in tests).
pub fn parse_args<I, T>(argv: I) -> std::result::Result<Cli, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(argv).map_err(|e| match args::input_error(&e) {
        Some(named) => ArgsError::Input(named),
        None => ArgsError::Clap(e),
    })
}

/// Run the parsed command; the Ok value is the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let uri = connect::resolve_uri(cli.connect.as_deref());
    let env = Env {
        paths: paths_for(&uri)?,
        finished: Default::default(),
        uri,
    };
    match cli.command {
        Command::Template(cmd) => template::run(&env, cmd),
        Command::Net(cmd) => net::run(&env, cmd),
        Command::Vm(cmd) => vm::run(&env, cmd),
        Command::Engine(cmd) => engine::run(&env, cmd),
        Command::Check(args) => check::run(&env, args),
        Command::ImportImage(args) => template::import(&env, args),
        Command::Up(args) => stack::up(&env, args),
        Command::Ps(args) => stack::ps(&env, args),
        Command::Logs(args) => stack::logs(&env, args),
        Command::Down(args) => stack::down(&env, args),
        Command::Context(args) => stack::context(&env, args),
        Command::Plan(cmd) => plan::run(&env, cmd),
        Command::Swarm(cmd) => swarm::run(&env, cmd),
    }
}
