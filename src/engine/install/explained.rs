//! `engine install` explained: each step's classic commands (explain-templates/engine-*.bash.j2)
//! with this install's values. The guest's steps are the very scripts strata runs in the
//! guest, fed to `bash -s` over the VM's pinned SSH login; the host's steps are virsh and
//! mke2fs. Written as the install runs (`--explain`), or instead of it (`--dry-run`).

use crate::engine::bundle::Bundle;
use crate::error::Result;
use crate::explain::{self, Step};
use crate::state::Paths;
use crate::vm::data_disk::{self, DiskWork};
use crate::vm::{hotplug, pool, Libvirt};
use serde_json::json;
use std::path::Path;

/// The here-document marker of a script fed to the guest's shell.
const GUEST_MARKER: &str = "STRATA_GUEST";
/// The data disk's path, known only once the script has made the volume.
const DISK_PATH: (&str, &str) = ("STRATA-EXPLAIN-DATA-DISK", "data_disk_path");

pub(super) fn data_disk(
    lv: &Libvirt,
    paths: &Paths,
    vm: &str,
    capacity: u64,
    work: &DiskWork,
) -> Result<()> {
    let record_xml = match &work.record {
        Some(record) => Some(explain::quoted_heredoc(
            &record.to_metadata_element()?,
            "STRATA_XML",
        )?),
        None => None,
    };
    let disk_xml = data_disk::disk_xml(Path::new(DISK_PATH.0))?;
    explain::step(
        Step::EngineDataDisk,
        &json!({
            "vm": vm,
            "pool": pool::home(lv, paths).0,
            "volume": work.volume,
            "capacity": capacity,
            "create": work.create,
            "record_xml": record_xml,
            "namespace": crate::vm::VM_METADATA_NS,
            "attach": work.attach,
            "disk_xml": explain::heredoc(disk_xml.trim_end(), "STRATA_XML", &[DISK_PATH])?,
            "live": work.live,
            "serial": data_disk::SERIAL,
        }),
    )
}

/// A script the guest runs, as `step` writes it.
pub(super) fn guest_script(step: Step, script: &str, values: serde_json::Value) -> Result<()> {
    let mut context = values;
    context["script"] = json!(explain::quoted_heredoc(script, GUEST_MARKER)?);
    explain::step(step, &context)
}

/// The offline install: the .debs onto an image (unless one for the same set is there), the
/// image plugged in, the install script, unplugged.
pub(super) fn bundle(
    vm: &str,
    bundle: &Bundle,
    image: &Path,
    serial: &str,
    cache: &Path,
    script: &str,
) -> Result<()> {
    let disk_xml = hotplug::disk_xml(image, serial)?;
    guest_script(
        Step::EngineBundle,
        script,
        json!({
            "vm": vm,
            "build": !image.is_file(),
            "debs": bundle.debs,
            "cache": cache,
            "image": image,
            "kib": bundle.image_kib(),
            "disk_xml": explain::quoted_heredoc(disk_xml.trim_end(), "STRATA_XML")?,
        }),
    )
}

/// daemon.json put in place and dockerd restarted (`apply` the script that does it), or
/// only started (`apply` None).
pub(super) fn daemon_json(daemon_json: &str, apply: Option<&str>) -> Result<()> {
    let Some(script) = apply else {
        return explain::step(Step::EngineDaemonJson, &json!({ "write": false }));
    };
    guest_script(
        Step::EngineDaemonJson,
        script,
        json!({
            "write": true,
            "daemon_json": explain::quoted_heredoc(daemon_json, "STRATA_JSON")?,
        }),
    )
}

pub(super) fn record(text: &str) -> Result<()> {
    explain::step(
        Step::EngineRecord,
        &json!({ "record": explain::quoted_heredoc(text, "STRATA_JSON")? }),
    )
}

pub(super) fn verify(driver: &str, data_root: &str) -> Result<()> {
    explain::step(
        Step::EngineVerify,
        &json!({ "expected": format!("{driver} {data_root}") }),
    )
}
