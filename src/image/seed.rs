//! cloud-init NoCloud seeds without ISO tools: a small vfat disk labelled CIDATA holding
//! user-data and meta-data (mkfs.vfat + mcopy from dosfstools and mtools).

use crate::command::run_logged;
use crate::error::{Error, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Write a seed disk at `path`. It carries the guest's SSH host private key: mode 0600.
pub fn build_seed(path: &Path, user_data: &str, meta_data: &str) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-seed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let result = (|| {
        let user = dir.join("user-data");
        let meta = dir.join("meta-data");
        std::fs::write(&user, user_data)?;
        std::fs::write(&meta, meta_data)?;
        let log = dir.join("seed.log");
        let _ = std::fs::remove_file(path);
        run_logged(
            Command::new("mkfs.vfat")
                .args(["-n", "CIDATA", "-C"])
                .arg(path)
                .arg("2048"),
            &log,
            "making the cloud-init seed filesystem (mkfs.vfat)",
        )?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        run_logged(
            Command::new("mcopy")
                .arg("-o")
                .arg("-i")
                .arg(path)
                .arg(&user)
                .arg(&meta)
                .arg("::"),
            &log,
            "copying user-data and meta-data into the seed (mcopy)",
        )
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(|e: Error| e.with_hint("./scripts/setup installs dosfstools and mtools"))
}
