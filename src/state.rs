//! Where strata keeps what libvirt cannot hold: per-VM SSH keys and pinned host keys, template
//! build records, the storage pool directory, the apt cache, and the lock that keeps
//! concurrent runs from choosing the same address. libvirt stays the source of truth for VMs.

use crate::error::{Context, Error, Result};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The directories strata owns on this host.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Keys, pins, build records, journals: /var/lib/strata for root.
    pub state: PathBuf,
    /// Downloads that can be fetched again: /var/cache/strata for root.
    pub cache: PathBuf,
    /// The remote hypervisor whose VMs this run makes and reaches (its folder under
    /// `hosts/`), so that VM `web` on one host never takes the keys of `web` on another;
    /// None for this machine's VMs.
    pub remote_host: Option<String>,
}

impl Paths {
    /// Root uses the system locations; other users their XDG directories. STRATA_STATE_DIR and
    /// STRATA_CACHE_DIR override both (tests and unusual layouts).
    pub fn discover() -> Paths {
        let is_root = nix::unistd::geteuid().is_root();
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/".into());
        let xdg = |var: &str, fallback: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(fallback))
                .join("strata")
        };
        // An explicit override, else the system location for root, else the XDG one.
        let choose = |override_var: &str, system: &str, xdg_var: &str, fallback: &str| {
            std::env::var_os(override_var)
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    if is_root {
                        system.into()
                    } else {
                        xdg(xdg_var, fallback)
                    }
                })
        };
        let state = choose(
            "STRATA_STATE_DIR",
            "/var/lib/strata",
            "XDG_STATE_HOME",
            ".local/state",
        );
        let cache = choose(
            "STRATA_CACHE_DIR",
            "/var/cache/strata",
            "XDG_CACHE_HOME",
            ".cache",
        );
        Paths {
            state,
            cache,
            remote_host: None,
        }
    }

    /// The same folders, with the VMs' keys and pins kept apart for the remote host
    /// `folder` (a name from `Login::folder_name`, never a path).
    pub fn for_remote_host(&self, folder: &str) -> Paths {
        Paths {
            remote_host: Some(folder.to_string()),
            ..self.clone()
        }
    }

    /// The directory behind strata's libvirt storage pool (templates and VM disks).
    pub fn pool_dir(&self) -> PathBuf {
        self.state.join("pool")
    }
    /// The name of strata's libvirt storage pool: "strata" for the system's state folder, and
    /// one of its own for any other (STRATA_STATE_DIR), so that two state folders never share
    /// a pool whose directory only one of them holds.
    pub fn pool_name(&self) -> String {
        // One folder, one name, however it was written (a trailing '/', "./", relative).
        let folder: PathBuf = std::path::absolute(&self.state)
            .unwrap_or_else(|_| self.state.clone())
            .components()
            .collect();
        if folder == Path::new("/var/lib/strata") {
            return "strata".to_string();
        }
        let digest = crate::digest::sha256_bytes(folder.to_string_lossy().as_bytes());
        format!("strata-{}", &digest[..10])
    }
    /// Kernel, initrd and build record of one template.
    pub fn template_dir(&self, template: &str) -> PathBuf {
        self.state.join("templates").join(template)
    }
    /// Keys and pins of one VM.
    pub fn vm_dir(&self, vm: &str) -> PathBuf {
        match &self.remote_host {
            None => self.state.join("vms").join(vm),
            Some(host) => self.state.join("hosts").join(host).join("vms").join(vm),
        }
    }
    pub fn vm_key(&self, vm: &str) -> PathBuf {
        self.vm_dir(vm).join("id_ed25519")
    }
    pub fn vm_known_hosts(&self, vm: &str) -> PathBuf {
        self.vm_dir(vm).join("known_hosts")
    }
    /// debootstrap's .deb cache, kept between builds.
    pub fn deb_cache(&self) -> PathBuf {
        self.cache.join("debootstrap")
    }
    fn lock_file(&self) -> PathBuf {
        self.state.join("lock")
    }

    /// Create a directory strata owns, readable and traversable by others (the qemu user
    /// must reach the pool through it).
    pub fn ensure_dir(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
        Ok(())
    }

    /// Hold the state lock while `f` runs. Used around short critical sections only (choosing
    /// an address and reserving it), so parallel creates do not serialise their boots.
    pub fn with_lock<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.hold(&self.lock_file(), "the state lock", &|| {}, f)
    }

    /// Hold the lock of one named thing (a stack in a VM) while `f` runs: a second strata
    /// working on the same thing waits for the first, after `waiting` says so. The lock file is
    /// named by a digest of `key`, so no name ever becomes a path.
    pub fn with_named_lock<T>(
        &self,
        key: &str,
        waiting: &dyn Fn(),
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let dir = self.state.join("locks");
        self.ensure_dir(&dir)?;
        let digest = crate::digest::sha256_bytes(key.as_bytes());
        self.hold(&dir.join(&digest[..24]), key, waiting, f)
    }

    fn hold<T>(
        &self,
        path: &Path,
        what: &str,
        waiting: &dyn Fn(),
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.ensure_dir(&self.state)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path)
            .context(format!("opening the lock of {what}"))?;
        let mut lock = fd_lock::RwLock::new(file);
        if let Ok(_guard) = lock.try_write() {
            return f();
        }
        waiting();
        let _guard = lock.write().context(format!("taking the lock of {what}"))?;
        f()
    }
}

/// A folder only its owner (root) can enter, made for one job and removed with it: where a
/// seed is assembled or apt is given a copy of a guest's package database. Its name is
/// unpredictable and it is made with mkdir (never reused), under strata's own folders, so no
/// other user can plant it, or a link in it, first.
#[derive(Debug)]
pub struct PrivateDir(PathBuf);

impl PrivateDir {
    /// A new private folder named `purpose-RANDOM` in `parent` (made when missing).
    pub fn new_in(parent: &Path, purpose: &str) -> Result<PrivateDir> {
        use rand_core::RngCore;
        fs::create_dir_all(parent).context(format!("creating {}", parent.display()))?;
        let mut last = None;
        for _ in 0..8 {
            let path = parent.join(format!("{purpose}-{:016x}", rand_core::OsRng.next_u64()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(Error::from(e).context(format!("creating {}", path.display())))
                }
            }
        }
        Err(Error::failed(format!(
            "no free private folder name in {} ({last:?})",
            parent.display()
        )))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Paths {
    /// A private folder for one job under strata's state folder.
    pub fn private_dir(&self, purpose: &str) -> Result<PrivateDir> {
        PrivateDir::new_in(&self.state.join("tmp"), purpose)
    }
}

/// An error that ran out of space, said as such: which folder (the pool, a template's build
/// folder) is full and how much its filesystem still has. An error counts as one when it says
/// so, or when the filesystem is (nearly) full as it is reported (a tool that ran out of space
/// could not always log why). Other errors pass unchanged.
pub fn explain_full(error: Error, what: &str, dir: &Path) -> Error {
    let available = nix::sys::statvfs::statvfs(dir)
        .ok()
        .map(|v| v.blocks_available().saturating_mul(v.fragment_size()));
    let nearly_full = available.is_some_and(|free| free < 1 << 20);
    if !error.message().contains("No space left") && !nearly_full {
        return error;
    }
    let free = available
        .map(crate::units::format_size)
        .unwrap_or_else(|| "unknown space".into());
    let message = format!(
        "{what} is full ({} has {free} free): {}",
        dir.display(),
        error.message()
    );
    let explained = Error::new(error.kind(), message).with_hint(format!(
        "free space on the filesystem of {} (or give strata another state folder, STRATA_STATE_DIR); nothing of this run is left",
        dir.display()
    ));
    match error.hint() {
        Some(first) => explained.and_hint(first.to_string()),
        None => explained,
    }
}

/// Write a file only its owner can read (private keys).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).context(format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .context(format!("writing {}", path.display()))?;
    file.write_all(contents)
        .context(format!("writing {}", path.display()))?;
    Ok(())
}

/// Remove a directory tree if it is there; a missing one is not an error.
pub fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::from(e).context(format!("removing {}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn one_state_folder_has_one_pool_name_however_written() {
        let name = |state: &str| {
            Paths {
                state: state.into(),
                cache: "/c".into(),
                remote_host: None,
            }
            .pool_name()
        };
        assert_eq!(name("/var/lib/strata"), "strata");
        assert_eq!(name("/var/lib/strata/"), "strata");
        assert_eq!(name("/srv/st"), name("/srv/st/"));
        assert_eq!(name("/srv/st"), name("/srv/./st"));
        assert_ne!(name("/srv/st"), name("/srv/su"));
        let here = std::env::current_dir().unwrap().join("st");
        assert_eq!(name("st"), name(here.to_str().unwrap()));
        assert!(name("/srv/st").starts_with("strata-"));
    }

    #[test]
    fn private_folders_are_new_unpredictable_and_closed() {
        let parent = std::env::temp_dir().join(format!("strata-private-{}", std::process::id()));
        let a = PrivateDir::new_in(&parent, "seed").unwrap();
        let b = PrivateDir::new_in(&parent, "seed").unwrap();
        assert_ne!(a.path(), b.path());
        let name = a.path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("seed-") && name.len() == "seed-".len() + 16,
            "{name}"
        );
        assert_eq!(std::fs::metadata(a.path()).unwrap().mode() & 0o777, 0o700);
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists(), "removed with its job");
        drop(b);
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
