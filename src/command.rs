//! Running host tools (debootstrap, mke2fs, qemu-img, chroot) with their output appended to a
//! log file; a failure quotes the log's last lines and names the log.

use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Command, Stdio};

/// Run `cmd`, appending its output to `log`. `what` names the step for the error.
pub fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::from(e).context(format!("opening {}", log.display())))?;
    let program = cmd.get_program().to_string_lossy().into_owned();
    {
        use std::io::Write;
        let mut header = &file;
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let _ = writeln!(header, "\n$ {program} {}", args.join(" "));
    }
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .status()
        .map_err(|e| {
            Error::from(e)
                .context(format!("{what}: cannot run {program}"))
                .with_hint("./scripts/setup installs the host tools strata needs")
        })?;
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(Error::failed(format!(
        "{what} failed ({status}); last lines of {}:\n{}",
        log.display(),
        tail.join("\n")
    )))
}

/// Is `program` on PATH?
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Run a read-only host tool and return its standard output. A tool that is not installed is
/// NotFound (with a hint); one that fails says what it printed. Checks report the message as
/// the reason they could not look.
pub fn capture(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::from(e)
                .context(format!("cannot run {program}"))
                .with_hint("./scripts/setup installs the host tools strata needs")
        })?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
