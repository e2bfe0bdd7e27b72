//! The shell scripts strata runs in guests (and in a template's chroot), as data files under
//! engine-templates/, compiled in and rendered strictly.

use crate::error::Result;
use serde::Serialize;

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
