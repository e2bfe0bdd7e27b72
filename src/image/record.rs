//! build.json beside each built template: what was built from which recipe, its checksum,
//! and where its kernel and initrd are.

use crate::error::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BuildRecord {
    pub template: String,
    /// sha256 over everything that decides the image (manifest, overlay files, recipe version).
    pub recipe_hash: String,
    /// sha256 of the qcow2 template volume.
    pub sha256: String,
    pub volume: String,
    /// Virtual size of the image in bytes.
    pub virtual_size: u64,
    /// Bytes the qcow2 file takes.
    pub file_size: u64,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub built: String,
    pub build_seconds: f64,
}

pub fn record_path(template_dir: &Path) -> PathBuf {
    template_dir.join("build.json")
}

/// The record of a built template, or None if it was never built.
pub fn read_record(template_dir: &Path) -> Result<Option<BuildRecord>> {
    let path = record_path(template_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            serde_json::from_str(&text).context(format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::Error::from(e).context(format!("reading {}", path.display()))),
    }
}

pub fn write_record(template_dir: &Path, record: &BuildRecord) -> Result<()> {
    let path = record_path(template_dir);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(record)?)
        .context(format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).context(format!("writing {}", path.display()))?;
    Ok(())
}
