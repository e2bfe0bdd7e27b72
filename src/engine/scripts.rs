//! The shell scripts strata runs in guests (and in a template's chroot), as data files under
//! engine-templates/, compiled in and rendered strictly; running one in a guest; and putting
//! a daemon.json in place with the script that validates it and rolls it back.

use crate::error::{Error, Result};
use crate::guest::facts::EngineVersion;
use crate::guest::{sftp, ssh};
use serde::Serialize;
use ssh2::Session;

pub type Script = (&'static str, &'static str);

macro_rules! script {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../engine-templates/", $name)),
        )
    };
}

pub const PREPARE_STORAGE: Script = script!("prepare-storage.sh.j2");
pub const PREPARE_THIN_POOL: Script = script!("prepare-thin-pool.sh.j2");
/// Prepended to the install scripts: policy-rc.d, finishing an interrupted dpkg run.
const INSTALL_PRELUDE: &str = include_str!("../../engine-templates/install-prelude.sh");
pub const INSTALL_BUNDLE: Script = script!("install-bundle.sh.j2");
pub const INSTALL_ONLINE: Script = script!("install-online.sh.j2");
pub const APPLY_DAEMON_JSON: Script = script!("apply-daemon-json.sh.j2");
pub const DAEMON_JSON: Script = script!("daemon.json.j2");
/// Not a template: swaps in daemon.json.strata-new and reloads dockerd.
pub const RELOAD_DAEMON_JSON: &str = include_str!("../../engine-templates/reload-daemon-json.sh");

/// Everything that decides what a baked engine looks like (part of a template's recipe hash).
pub const BAKE_INPUTS: [Script; 3] = [
    ("install-prelude.sh", INSTALL_PRELUDE),
    INSTALL_BUNDLE,
    DAEMON_JSON,
];

pub fn render(script: Script, context: &impl Serialize) -> Result<String> {
    let text = crate::template::render_str(script.0, script.1, context)?;
    Ok(if script == INSTALL_BUNDLE || script == INSTALL_ONLINE {
        format!("{INSTALL_PRELUDE}{text}")
    } else {
        text
    })
}

/// Render `script` with `context` and run it in the guest; a failure quotes its stderr (the
/// first and last lines) and says that a re-run continues.
pub fn run(
    session: &Session,
    script: Script,
    context: &serde_json::Value,
    what: &str,
) -> Result<String> {
    run_text(session, &render(script, context)?, what)
}

/// Run a rendered script in the guest, as `run` does.
pub fn run_text(session: &Session, text: &str, what: &str) -> Result<String> {
    let out = ssh::exec(session, &ssh::sh_c(text), false)?;
    if out.status != 0 {
        return Err(Error::failed(format!(
            "{what} failed in the guest (exit {}):\n{}",
            out.status,
            excerpt(&String::from_utf8_lossy(&out.stderr))
        ))
        .with_hint("nothing is lost: fix the cause and run the same `strata engine install` again; it continues from what is done"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A tool's complaint usually comes first and its usage text after: keep the first lines and
/// the last ones.
fn excerpt(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() <= 14 {
        return lines.join("\n");
    }
    format!(
        "{}\n  [... {} lines ...]\n{}",
        lines[..4].join("\n"),
        lines.len() - 12,
        lines[lines.len() - 8..].join("\n")
    )
}

/// Put `daemon_json` in place and restart dockerd; when dockerd rejects it, the previous file
/// is restored, Docker started again, and the error quotes dockerd.
pub fn apply_daemon_json(
    session: &Session,
    daemon_json: &str,
    engine: EngineVersion,
) -> Result<()> {
    ssh::run_checked(session, "mkdir -p /etc/docker")?;
    sftp::upload(
        session,
        &mut daemon_json.as_bytes(),
        "/etc/docker/daemon.json.strata-new",
        0o644,
    )?;
    run_text(
        session,
        &apply_daemon_json_script(engine)?,
        "starting dockerd with the new daemon.json",
    )?;
    Ok(())
}

/// The script that swaps in daemon.json.strata-new and restarts dockerd.
pub fn apply_daemon_json_script(engine: EngineVersion) -> Result<String> {
    // `dockerd --validate` exists from Docker 23.0 on.
    render(
        APPLY_DAEMON_JSON,
        &serde_json::json!({ "can_validate": engine >= EngineVersion::new(23, 0, 0) }),
    )
}
