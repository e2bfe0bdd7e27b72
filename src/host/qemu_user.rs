//! The user and groups libvirt runs qemu as (qemu.conf `user`/`group`, Debian's default
//! libvirt-qemu), and whether that user can open a device or traverse to a file.

use crate::error::{Error, Result};
use nix::unistd::{Gid, Group, Uid, User};
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The identity qemu processes run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuIdentity {
    pub user: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

/// Read `user = "..."` from libvirt's qemu.conf; Debian's default is libvirt-qemu.
pub fn configured_user(qemu_conf: &str) -> Option<String> {
    qemu_conf.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix("user")?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

impl QemuIdentity {
    /// Look up the qemu user of the system libvirt on this host.
    pub fn discover() -> Result<QemuIdentity> {
        let conf = std::fs::read_to_string("/etc/libvirt/qemu.conf").unwrap_or_default();
        let candidates: Vec<String> = match configured_user(&conf) {
            Some(user) => vec![user],
            None => vec!["libvirt-qemu".into(), "qemu".into()],
        };
        for name in &candidates {
            if let Ok(Some(user)) = User::from_name(name) {
                let cname =
                    CString::new(name.as_str()).map_err(|_| Error::failed("bad user name"))?;
                let gids = nix::unistd::getgrouplist(&cname, user.gid)
                    .map(|g| g.iter().map(|g| g.as_raw()).collect())
                    .unwrap_or_else(|_| vec![user.gid.as_raw()]);
                return Ok(QemuIdentity {
                    user: name.clone(),
                    uid: user.uid.as_raw(),
                    gids,
                });
            }
        }
        Err(Error::not_found(format!(
            "none of the users libvirt runs qemu as exists ({})",
            candidates.join(", ")
        ))
        .with_hint("install libvirt-daemon-system (./scripts/setup does)"))
    }

    /// Can this identity open a file with these owner/group/mode bits for read+write?
    pub fn can_read_write(&self, uid: u32, gid: u32, mode: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let bits = if uid == self.uid {
            (mode >> 6) & 0o7
        } else if self.gids.contains(&gid) {
            (mode >> 3) & 0o7
        } else {
            mode & 0o7
        };
        bits & 0o6 == 0o6
    }

    /// Can this identity traverse every directory above `path` (x bit for its class)?
    /// Returns the first directory that stops it.
    pub fn blocked_directory(&self, path: &Path) -> Option<std::path::PathBuf> {
        if self.uid == 0 {
            return None;
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            if let Ok(meta) = std::fs::metadata(d) {
                let mode = meta.permissions().mode();
                let bits = if meta.uid() == self.uid {
                    (mode >> 6) & 0o7
                } else if self.gids.contains(&meta.gid()) {
                    (mode >> 3) & 0o7
                } else {
                    mode & 0o7
                };
                if bits & 0o1 == 0 {
                    return Some(d.to_path_buf());
                }
            }
            dir = d.parent();
        }
        None
    }

    pub fn group_names(&self) -> Vec<String> {
        self.gids
            .iter()
            .filter_map(|g| {
                Group::from_gid(Gid::from_raw(*g))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
            })
            .collect()
    }
}

/// The name of a user id, for messages.
pub fn user_name(uid: u32) -> String {
    User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_from_qemu_conf() {
        let conf = "# user = \"commented\"\n#group=\"x\"\nuser = \"qemu\"\ngroup = \"qemu\"\n";
        assert_eq!(configured_user(conf), Some("qemu".into()));
        assert_eq!(configured_user("# nothing set\n"), None);
    }

    #[test]
    fn permission_classes() {
        let qemu = QemuIdentity {
            user: "libvirt-qemu".into(),
            uid: 64055,
            gids: vec![108, 64055],
        };
        // /dev/kvm root:root 0600 — fresh machine: not usable.
        assert!(!qemu.can_read_write(0, 0, 0o600));
        // root:kvm 0660 with qemu in group kvm: usable.
        assert!(qemu.can_read_write(0, 108, 0o660));
        // root:kvm 0666: usable by anyone.
        assert!(qemu.can_read_write(0, 0, 0o666));
    }

    #[test]
    fn finds_the_directory_that_blocks_traversal() {
        let base = std::env::temp_dir().join(format!("strata-trav-{}", std::process::id()));
        let closed = base.join("closed");
        std::fs::create_dir_all(closed.join("pool")).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let qemu = QemuIdentity {
            user: "libvirt-qemu".into(),
            uid: 64055,
            gids: vec![108],
        };
        let image = closed.join("pool/template.qcow2");
        assert_eq!(qemu.blocked_directory(&image), Some(closed.clone()));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(qemu.blocked_directory(&image), None);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
