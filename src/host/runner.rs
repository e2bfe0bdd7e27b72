//! Where a host reader's command runs: on this machine, or over SSH on the remote host a
//! libvirt URI names, so that the same readers (routes, Docker's networks) give the facts of
//! the host the VMs and networks are made on, not of the machine strata runs on.

use crate::error::{Error, Result};
use crate::host::remote::Site;
use crate::ssh_exec::{exec, sh_quote};
use ssh2::Session;
use std::time::Duration;

/// A host to run readers' commands on.
pub enum Runner {
    Local,
    Ssh { who: String, session: Session },
}

/// How a command ended, and what it printed.
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Runner {
    /// The runner for a connection URI's host: this machine, or an SSH session to it.
    pub fn for_uri(uri: &str) -> Result<Runner> {
        let site = Site::of_uri(uri)?;
        if site.is_local() {
            return Ok(Runner::Local);
        }
        let login = site.login()?;
        Ok(Runner::Ssh {
            who: login.display(),
            session: login.connect(Duration::from_secs(15))?,
        })
    }

    /// "this host", or the remote login, as messages name the host.
    pub fn describe(&self) -> String {
        match self {
            Runner::Local => "this host".to_string(),
            Runner::Ssh { who, .. } => who.clone(),
        }
    }

    /// Run `program args...` and return how it ended (a program that cannot be started at
    /// all ends with 127, as a shell says).
    pub fn run(&self, program: &str, args: &[&str]) -> Result<Ran> {
        match self {
            Runner::Local => match std::process::Command::new(program)
                .args(args)
                .stdin(std::process::Stdio::null())
                .output()
            {
                Ok(out) => Ok(Ran {
                    status: out.status.code().unwrap_or(-1),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ran {
                    status: 127,
                    stdout: String::new(),
                    stderr: format!("{program}: not found"),
                }),
                Err(e) => Err(Error::from(e).context(format!("cannot run {program}"))),
            },
            Runner::Ssh { session, .. } => {
                let line: Vec<String> = std::iter::once(program)
                    .chain(args.iter().copied())
                    .map(sh_quote)
                    .collect();
                let out = exec(session, &line.join(" "), false)?;
                Ok(Ran {
                    status: out.status,
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                })
            }
        }
    }

    /// A file of the host, as text.
    pub fn read_file(&self, path: &str) -> Result<String> {
        match self {
            Runner::Local => std::fs::read_to_string(path)
                .map_err(|e| Error::from(e).context(format!("cannot read {path}"))),
            Runner::Ssh { .. } => {
                let ran = self.run("cat", &["--", path])?;
                if ran.status != 0 {
                    return Err(Error::not_found(format!(
                        "cannot read {path} on {}: {}",
                        self.describe(),
                        ran.stderr.trim()
                    )));
                }
                Ok(ran.stdout)
            }
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Runner::Local)
    }

    /// Run a command that must succeed; its output. Here as every reader of this machine
    /// runs its tools (`command::capture`); on a remote host, over its SSH session.
    pub fn capture(&self, program: &str, args: &[&str]) -> Result<String> {
        if self.is_local() {
            return crate::command::capture(program, args);
        }
        let ran = self.run(program, args)?;
        if ran.status != 0 {
            return Err(Error::failed(format!(
                "`{program} {}` on {} exited with {}: {}",
                args.join(" "),
                self.describe(),
                ran.status,
                ran.stderr.trim()
            ))
            .with_hint("that host needs the tool (iproute2, iptables, ...) installed"));
        }
        Ok(ran.stdout)
    }
}
