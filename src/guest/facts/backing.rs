//! The filesystem under Docker's data-root in a guest, as the facts script reports it, with
//! the property overlay2 depends on (d_type: ext4's filetype feature, xfs's ftype=1).

use serde::Serialize;

/// The filesystem under Docker's data-root, as the guest reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backing {
    /// ext2/3/4; the `filetype` feature is what gives overlay2 its d_type.
    Ext4 {
        filetype: bool,
    },
    /// `ftype=1` is what gives overlay2 its d_type.
    Xfs {
        ftype: bool,
    },
    Btrfs,
    Zfs,
    Tmpfs,
    /// overlayfs: data-root inside a container or on a live/overlay root.
    Overlay,
    Nfs,
    /// Anything else, by the name `stat -f -c %T` printed (ecryptfs, fuseblk, ...).
    Other(String),
}

impl Backing {
    /// Maps the name `stat -f -c %T` prints; `dtype` is what the caller learned from
    /// `tune2fs -l` (ext) or `xfs_info` (xfs), None when it did not look.
    pub fn from_statfs(fs_type: &str, dtype: Option<bool>) -> Backing {
        match fs_type.trim().to_ascii_lowercase().as_str() {
            // GNU stat prints "ext2/ext3" for ext4 too (one superblock magic); mke2fs has
            // turned filetype on by default for decades, so unknown means yes.
            "ext2/ext3" | "ext2" | "ext3" | "ext4" => Backing::Ext4 {
                filetype: dtype.unwrap_or(true),
            },
            // Callers always run xfs_info; should one not, refusing beats guessing ftype=1.
            "xfs" => Backing::Xfs {
                ftype: dtype.unwrap_or(false),
            },
            "btrfs" => Backing::Btrfs,
            "zfs" => Backing::Zfs,
            "tmpfs" => Backing::Tmpfs,
            "overlayfs" | "overlay" => Backing::Overlay,
            "nfs" | "nfs4" => Backing::Nfs,
            other => Backing::Other(other.to_string()),
        }
    }

    /// A short human name: "ext4 with d_type", "xfs ftype=0", "fuseblk".
    pub fn describe(&self) -> String {
        match self {
            Backing::Ext4 { filetype: true } => "ext4 with d_type".into(),
            Backing::Ext4 { filetype: false } => "ext4 without d_type (no filetype)".into(),
            Backing::Xfs { ftype } => format!("xfs ftype={}", u8::from(*ftype)),
            Backing::Btrfs => "btrfs".into(),
            Backing::Zfs => "zfs".into(),
            Backing::Tmpfs => "tmpfs".into(),
            Backing::Overlay => "overlayfs".into(),
            Backing::Nfs => "nfs".into(),
            Backing::Other(name) => name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::facts::samples::*;
    use Backing::{Btrfs, Nfs, Overlay, Tmpfs, Zfs};

    #[test]
    #[rustfmt::skip]
    fn statfs_names_map_to_backings() {
        for (name, dtype, want, text) in [
            ("ext2/ext3", None, EXT4, "ext4 with d_type"),
            ("ext4", Some(false), EXT4_NO_DT, "ext4 without d_type (no filetype)"),
            ("xfs", Some(true), XFS1, "xfs ftype=1"),
            ("xfs", Some(false), XFS0, "xfs ftype=0"),
            ("xfs", None, XFS0, "xfs ftype=0"),
            ("btrfs", None, Btrfs, "btrfs"),
            ("zfs", None, Zfs, "zfs"),
            ("tmpfs", None, Tmpfs, "tmpfs"),
            ("overlayfs", None, Overlay, "overlayfs"),
            ("nfs", None, Nfs, "nfs"),
            ("nfs4", None, Nfs, "nfs"),
            ("ecryptfs", None, other("ecryptfs"), "ecryptfs"),
            ("fuseblk", None, other("fuseblk"), "fuseblk"),
        ] {
            let got = Backing::from_statfs(name, dtype);
            assert_eq!((&got, got.describe().as_str()), (&want, text), "{name}");
        }
    }
}
