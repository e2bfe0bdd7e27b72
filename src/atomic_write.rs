//! Replacing a file that is not strata's alone (the user's ~/.ssh/config, the docker CLI's
//! context files): the new contents go to a private temporary file in the same directory,
//! which is synced and renamed over the old one, so an error, a crash or a full disk leaves
//! the old file or the new one, never a truncated mix. The file keeps its permissions and,
//! when root writes it, its owner.

use crate::error::{Context, Error, Result};
use rand_core::RngCore;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Write `contents` to `path` atomically. A new file gets `new_file_mode`; an existing one
/// keeps its mode (and, for root, its owner and group). A symlink is followed, so a config
/// file kept in a dotfiles repository stays linked there, but only to a file the link's owner
/// owns: root never writes through someone's link into a file that is not theirs.
pub fn replace(path: &Path, contents: &[u8], new_file_mode: u32) -> Result<()> {
    let doing = || format!("writing {}", path.display());
    let target = if path.is_symlink() {
        let target = fs::canonicalize(path).context(doing())?;
        let link_owner = fs::symlink_metadata(path).context(doing())?.uid();
        let target_owner = fs::metadata(&target).context(doing())?.uid();
        if link_owner != target_owner {
            return Err(Error::bad_input(format!(
                "{} is a link to {}, which the link's owner (uid {link_owner}) does not own; strata does not write through it",
                path.display(),
                target.display()
            ))
            .with_hint("put the file itself in place of the link"));
        }
        target
    } else {
        path.to_path_buf()
    };
    let existing = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::from(e).context(doing())),
    };
    let (temp_path, mut temp) = create_temp_beside(&target).context(doing())?;
    let written = (|| -> std::io::Result<()> {
        match &existing {
            Some(meta) => {
                if nix::unistd::geteuid().is_root() {
                    std::os::unix::fs::fchown(&temp, Some(meta.uid()), Some(meta.gid()))?;
                }
                temp.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            }
            None => temp.set_permissions(fs::Permissions::from_mode(new_file_mode))?,
        }
        temp.write_all(contents)?;
        temp.sync_all()?;
        fs::rename(&temp_path, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp_path);
        return Err(Error::from(e).context(doing()));
    }
    // The rename is durable only once the directory is; the file is already in place, so a
    // failure here is not worth failing the command for.
    if let Some(dir) = target.parent() {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

/// A new file next to `target`, readable by its owner only, under a name nobody can guess
/// (so nobody can plant a file or a symlink there first), created exclusively.
fn create_temp_beside(target: &Path) -> std::io::Result<(PathBuf, File)> {
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last_error = None;
    for _ in 0..8 {
        let candidate = dir.join(format!(
            ".{name}.strata-{:016x}",
            rand_core::OsRng.next_u64()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-atomic-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_gets_the_given_mode_and_no_temp_is_left() {
        let dir = scratch("new");
        let path = dir.join("config");
        replace(&path, b"one\n", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(names_in(&dir), ["config"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_file_keeps_its_mode_and_owner() {
        let dir = scratch("existing");
        let path = dir.join("config");
        fs::write(&path, b"old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let as_root = nix::unistd::geteuid().is_root();
        if as_root {
            std::os::unix::fs::chown(&path, Some(4321), Some(4322)).unwrap();
        }
        replace(&path, b"new\n", 0o600).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new\n");
        assert_eq!(meta.mode() & 0o7777, 0o644);
        if as_root {
            assert_eq!((meta.uid(), meta.gid()), (4321, 4322));
        }
        assert_eq!(names_in(&dir), ["config"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_stays_a_symlink() {
        let dir = scratch("link");
        fs::create_dir(dir.join("dotfiles")).unwrap();
        fs::write(dir.join("dotfiles/ssh_config"), b"old\n").unwrap();
        std::os::unix::fs::symlink("dotfiles/ssh_config", dir.join("config")).unwrap();
        replace(&dir.join("config"), b"new\n", 0o600).unwrap();
        assert!(dir.join("config").is_symlink());
        assert_eq!(fs::read(dir.join("dotfiles/ssh_config")).unwrap(), b"new\n");
        assert_eq!(names_in(&dir.join("dotfiles")), ["ssh_config"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_to_a_file_of_another_owner_is_not_written_through() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test makes files of other owners: run the tests as root (scripts/test does)"
        );
        let dir = scratch("foreign");
        let victim = dir.join("passwd");
        fs::write(&victim, b"root's\n").unwrap();
        let link = dir.join("meta.json");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(4321), Some(4321)).unwrap();
        let err = replace(&link, b"new\n", 0o600).unwrap_err();
        assert!(err.message().contains("does not own"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"root's\n");
        // The same link to a file its owner owns is written through.
        std::os::unix::fs::chown(&victim, Some(4321), Some(4321)).unwrap();
        replace(&link, b"new\n", 0o600).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"new\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_replace_leaves_the_old_file_and_no_temp() {
        let dir = scratch("fail");
        // A directory cannot be renamed over by a file: the rename fails after the write.
        fs::create_dir(dir.join("config")).unwrap();
        fs::write(dir.join("config/keep"), b"x").unwrap();
        assert!(replace(&dir.join("config"), b"new\n", 0o600).is_err());
        assert_eq!(names_in(&dir), ["config"]);
        assert_eq!(fs::read(dir.join("config/keep")).unwrap(), b"x");
        fs::remove_dir_all(&dir).unwrap();
    }
}
