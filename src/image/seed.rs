//! cloud-init NoCloud seeds without ISO tools: a small vfat disk labelled CIDATA holding
//! user-data and meta-data (mkfs.vfat + mcopy from dosfstools and mtools).

use crate::command::run_logged;
use crate::error::{Context, Error, Result};
use crate::state::Paths;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Write a seed disk at `path` (mode 0600: it names the VM's login key and host). It is
/// assembled in a private folder of strata's own, never in a shared /tmp.
pub fn build_seed(paths: &Paths, path: &Path, user_data: &str, meta_data: &str) -> Result<()> {
    let work = paths.private_dir("seed")?;
    let result = assemble(work.path(), path, user_data, meta_data);
    drop(work);
    result
}

/// The bytes of a seed disk, assembled in a private folder that goes away with it: for a VM
/// on a remote host, where the seed is sent into that host's pool.
pub fn seed_bytes(paths: &Paths, user_data: &str, meta_data: &str) -> Result<Vec<u8>> {
    let work = paths.private_dir("seed")?;
    let disk = work.path().join("seed.img");
    let result = assemble(work.path(), &disk, user_data, meta_data)
        .and_then(|()| std::fs::read(&disk).context(format!("reading {}", disk.display())));
    drop(work);
    result
}

fn assemble(dir: &Path, path: &Path, user_data: &str, meta_data: &str) -> Result<()> {
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
    result.map_err(|e: Error| e.with_hint("./scripts/setup installs dosfstools and mtools"))
}
