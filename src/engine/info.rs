//! `engine info`: what strata recorded when it configured Docker in a guest (intent and the
//! reasons for the storage driver) next to what the engine reports now, with the differences.

use crate::engine::config::{EngineRecord, RECORD_PATH};
use crate::engine::verify::{self, Mismatch, Observed};
use crate::error::{Error, Result};
use crate::guest::docker::GuestDocker;
use crate::guest::ssh;
use crate::state::Paths;
use crate::vm::Libvirt;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Table};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    pub vm: String,
    pub record: EngineRecord,
    pub observed: Observed,
    pub mismatches: Vec<Mismatch>,
}

pub fn read(lv: &Libvirt, paths: &Paths, vm: &str) -> Result<EngineInfo> {
    let target = crate::guest::Route::of_vm(lv, paths, vm)?;
    let session = ssh::connect(&target, Duration::from_secs(15))?;
    let facts = crate::guest::facts::gather(&session)?;
    let record = EngineRecord::from_facts(&facts).ok_or_else(|| {
        Error::not_found(format!(
            "Docker in '{vm}' was not installed by strata ({RECORD_PATH} is missing or unreadable)"
        ))
        .with_hint(format!("install it with `strata engine install {vm}`"))
    })?;
    let backing = facts.data_root_backing;
    let docker = GuestDocker::over(&target, session)?;
    let observed = verify::observe(&docker)?;
    let mismatches = verify::compare(&record.intent, &backing, &observed);
    Ok(EngineInfo {
        vm: vm.to_string(),
        record,
        observed,
        mismatches,
    })
}

/// The human view: one row per property, intent beside what the engine reports.
pub fn render_table(info: &EngineInfo) -> String {
    let r = &info.record;
    let o = &info.observed;
    let pools = r
        .intent
        .ranges
        .address_pools
        .iter()
        .map(|p| format!("{} (networks of /{})", p.base, p.size))
        .collect::<Vec<_>>()
        .join(", ");
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY);
    let rows: Vec<(&str, String)> = vec![
        (
            "engine",
            format!(
                "docker.io {} (server {})",
                r.engine_package, o.server_version
            ),
        ),
        ("installed", format!("{} from {}", r.installed, r.source)),
        ("storage driver", o.driver.clone()),
        ("why", r.driver_reasons.join("\n")),
        ("layout", r.layout.clone()),
        (
            "data-root",
            format!(
                "{} on {}{}",
                o.root_dir,
                o.backing_filesystem.as_deref().unwrap_or("-"),
                match o.supports_d_type {
                    Some(true) => ", d_type",
                    Some(false) => ", NO d_type",
                    None => "",
                }
            ),
        ),
        (
            "log driver",
            format!("{} {:?}", o.logging_driver, r.intent.log_opts),
        ),
        (
            "docker0",
            format!("{} (mtu {})", r.intent.ranges.bip, r.intent.mtu),
        ),
        ("address pools", pools),
        ("cgroup", format!("v{}", o.cgroup_version)),
        (
            "warnings",
            if o.warnings.is_empty() {
                "none".into()
            } else {
                o.warnings.join("\n")
            },
        ),
    ];
    for (k, v) in rows {
        table.add_row(vec![k.to_string(), v]);
    }
    let mut out = format!("{table}\n");
    for m in &info.mismatches {
        out.push_str(&format!(
            "MISMATCH {}: strata configured {}, the engine reports {}\n",
            m.field, m.expected, m.actual
        ));
    }
    out
}
