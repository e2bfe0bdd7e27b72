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
    /// Write each step as the classic commands that do the same (virsh, ssh-keygen, ssh), as a
    /// bash script: to stderr, or to FILE with --explain=FILE ('-' for stdout)
    #[arg(long, global = true, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub explain: Option<Option<std::path::PathBuf>>,
    /// With --explain: change nothing, and write the whole job as a script that does it when
    /// run as root on the same host (net create, vm create, engine install)
    #[arg(long, global = true, requires = "explain")]
    pub dry_run: bool,
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
    /// Print the shell completion script for bash, zsh or fish
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print strata's man page (roff), made from the same command definitions
    Manpage,
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
        // A dry run changes nothing, not even what an interrupted run left.
        if crate::explain::is_dry_run() {
            return Ok(lv);
        }
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
    match cli.command {
        Command::Completions { shell } => return print_completions(shell),
        Command::Manpage => return print_manpage(),
        _ => {}
    }
    let uri = connect::resolve_uri(cli.connect.as_deref());
    let env = Env {
        paths: paths_for(&uri)?,
        finished: Default::default(),
        uri,
    };
    if let Some(target) = &cli.explain {
        start_explaining(target.as_deref(), cli.dry_run, &cli.command, &env.uri)?;
    }
    let code = dispatch(&env, cli.command);
    crate::explain::finish();
    code
}

fn dispatch(env: &Env, command: Command) -> Result<i32> {
    match command {
        Command::Template(cmd) => template::run(env, cmd),
        Command::Net(cmd) => net::run(env, cmd),
        Command::Vm(cmd) => vm::run(env, cmd),
        Command::Engine(cmd) => engine::run(env, cmd),
        Command::Check(args) => check::run(env, args),
        Command::ImportImage(args) => template::import(env, args),
        Command::Up(args) => stack::up(env, args),
        Command::Ps(args) => stack::ps(env, args),
        Command::Logs(args) => stack::logs(env, args),
        Command::Down(args) => stack::down(env, args),
        Command::Context(args) => stack::context(env, args),
        Command::Plan(cmd) => plan::run(env, cmd),
        Command::Swarm(cmd) => swarm::run(env, cmd),
        Command::Completions { .. } | Command::Manpage => Ok(0),
    }
}

/// `--explain[=FILE]`, and `--dry-run` for the commands that can write their whole job as a
/// script without doing it (refused for the others before anything runs).
fn start_explaining(
    target: Option<&std::path::Path>,
    dry_run: bool,
    command: &Command,
    uri: &str,
) -> Result<()> {
    let can_dry_run = matches!(
        command,
        Command::Net(net::NetCommand::Create { .. })
            | Command::Vm(vm::VmCommand::Create(_))
            | Command::Engine(engine::EngineCommand::Install { .. })
            | Command::Up(_)
    );
    // explain::EXPLAINED names these.
    let explained = can_dry_run
        || matches!(
            command,
            Command::Net(net::NetCommand::Destroy { .. })
                | Command::Vm(
                    vm::VmCommand::Destroy { .. }
                        | vm::VmCommand::Start { .. }
                        | vm::VmCommand::Stop { .. }
                )
                | Command::Up(_)
                | Command::Down(_)
                | Command::Check(_)
        );
    if dry_run && !can_dry_run {
        return Err(Error::bad_input("--dry-run is not available for this command")
            .with_hint("--dry-run works with `net create`, `vm create`, `engine install` and `up`; --explain alone writes the commands of any explained step as it runs"));
    }
    let target = match target {
        None => crate::explain::Target::Stderr,
        Some(path) if path.as_os_str() == "-" => crate::explain::Target::Stdout,
        Some(path) => crate::explain::Target::File(path.to_path_buf()),
    };
    let words: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| crate::template::shell_quote(&a.to_string_lossy()))
        .collect();
    crate::explain::start(
        &target,
        dry_run,
        explained,
        &format!("strata {}", words.join(" ")),
        uri,
    )
}

fn print_completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut text = Vec::new();
    clap_complete::generate(
        shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "strata",
        &mut text,
    );
    crate::console::bytes(false, &text);
    Ok(0)
}

fn print_manpage() -> Result<i32> {
    let mut text = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut text)?;
    crate::console::bytes(false, &text);
    Ok(0)
}
