//! The storage-driver decision for Docker inside a guest: which graphdriver, on which storage
//! layout strata prepares for data-root, and why. It applies conflicts.md §0 and §6
//! (STO-1..STO-9) to facts probed elsewhere (engine version, kernel, root filesystem) and
//! hands the result to storage preparation and daemon.json. Pure: no I/O here, so every rule
//! is tested by table.

use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::guest::facts::{Backing, EngineVersion, KernelVersion};

/// The graphdriver strata writes into daemon.json. Never vfs and never left to Docker:
/// its auto-selection falls through to vfs silently (§6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Overlay2,
    Btrfs,
    Devicemapper,
}

impl Driver {
    /// Docker's name, as in daemon.json `storage-driver` and `docker info .Driver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Overlay2 => "overlay2",
            Driver::Btrfs => "btrfs",
            Driver::Devicemapper => "devicemapper",
        }
    }
}

/// What strata prepares for data-root before Docker starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// data-root stays on the guest's root filesystem.
    RootFs,
    /// A whole data disk formatted ext4, mounted at data-root.
    DiskExt4,
    /// A whole data disk formatted btrfs, mounted at data-root.
    DiskBtrfs,
    /// Data disk as LVM PV, VG, one LV, xfs with ftype=1, mounted at data-root (STO-8).
    LvmXfs,
    /// devicemapper direct-lvm thin pool on the data disk; no filesystem, so data-root
    /// stays on the root filesystem.
    LvmThinPool,
}

impl Layout {
    /// Where Docker's data goes, for people: "on an LVM volume with xfs ftype=1".
    pub fn describe(self) -> &'static str {
        match self {
            Layout::RootFs => "on the root filesystem",
            Layout::DiskExt4 => "on an ext4 data disk",
            Layout::DiskBtrfs => "on a btrfs data disk",
            Layout::LvmXfs => "on an LVM volume with xfs ftype=1",
            Layout::LvmThinPool => "on an LVM thin pool",
        }
    }
}

/// The user's `--storage` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoragePolicy {
    Auto,
    Overlay2,
    Btrfs,
    Lvm,
}

impl StoragePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            StoragePolicy::Auto => "auto",
            StoragePolicy::Overlay2 => "overlay2",
            StoragePolicy::Btrfs => "btrfs",
            StoragePolicy::Lvm => "lvm",
        }
    }
}

impl FromStr for StoragePolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        use StoragePolicy::*;
        [Auto, Overlay2, Btrfs, Lvm]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                Error::bad_input(format!("unknown storage policy '{s}'"))
                    .with_hint("use one of: auto, overlay2, btrfs, lvm")
            })
    }
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRequest {
    pub policy: StoragePolicy,
    /// A data disk (`--data-disk SIZE`) will be attached to the guest.
    pub data_disk: bool,
    /// `--storage lvm --engine-storage devicemapper`: a thin pool for devicemapper.
    pub devicemapper: bool,
}

/// What the guest reported before anything was prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestStorageFacts {
    pub engine: EngineVersion,
    pub kernel: KernelVersion,
    /// The filesystem under the default data-root (/var/lib/docker) today.
    pub root_fs: Backing,
}

/// Driver, layout, the filesystem under data-root after preparation, and one sentence per
/// fact that led there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub driver: Driver,
    pub layout: Layout,
    pub backing: Backing,
    pub reasons: Vec<String>,
}

/// A yes, or the reason for a no.
type Verdict = std::result::Result<(), String>;

const OVERLAY2_ENGINE: EngineVersion = EngineVersion::new(1, 12, 0);
const OVERLAY2_KERNEL: KernelVersion = KernelVersion { major: 4, minor: 0 };
const DEVICEMAPPER_REMOVED: EngineVersion = EngineVersion::new(25, 0, 0);

/// Whether `driver` works on `backing` with this engine and kernel (§6.1 plus §0); the error
/// is the reason in one sentence.
pub fn supports(
    driver: Driver,
    backing: &Backing,
    engine: EngineVersion,
    kernel: KernelVersion,
) -> std::result::Result<(), String> {
    versions_support(driver, engine, kernel)?;
    backing_supports(driver, backing)
}

fn versions_support(d: Driver, engine: EngineVersion, kernel: KernelVersion) -> Verdict {
    match d {
        Driver::Overlay2 if engine < OVERLAY2_ENGINE => Err(format!(
            "overlay2 needs Docker 1.12 or newer, and this engine is {engine}"
        )),
        // RHEL 7 backported overlay to 3.10.0-514, but major.minor cannot tell a backport
        // from a plain 3.10, so every 3.x is refused rather than guessed at.
        Driver::Overlay2 if kernel < OVERLAY2_KERNEL => Err(format!(
            "overlay2 needs kernel 4.0 or newer (STO-9), and this guest runs {kernel}"
        )),
        Driver::Devicemapper if engine >= DEVICEMAPPER_REMOVED => Err(format!(
            "devicemapper was removed in Docker 25.0 (STO-5), and this engine is {engine}"
        )),
        _ => Ok(()),
    }
}

fn backing_supports(driver: Driver, backing: &Backing) -> Verdict {
    use Backing as B;
    let reason = match (driver, backing) {
        // devicemapper keeps layers in its thin pool, not in files on data-root's filesystem.
        (Driver::Devicemapper, _) | (Driver::Btrfs, B::Btrfs) => return Ok(()),
        (Driver::Overlay2, B::Ext4 { filetype: true } | B::Xfs { ftype: true }) => return Ok(()),
        (Driver::Btrfs, other) => {
            return Err(format!(
                "the btrfs driver needs btrfs, not {}",
                other.describe()
            ))
        }
        (Driver::Overlay2, other @ (B::Overlay | B::Nfs | B::Other(_))) => {
            let fs = other.describe();
            return Err(format!(
                "overlay2 cannot use {fs} as its backing filesystem (STO-2)"
            ));
        }
        (Driver::Overlay2, B::Ext4 { filetype: false }) => {
            "overlay2 needs d_type and this ext4 lacks the filetype feature (STO-1): \
             reformat it with mkfs.ext4 -O filetype"
        }
        (Driver::Overlay2, B::Xfs { ftype: false }) => {
            "overlay2 needs d_type and this xfs has ftype=0 (STO-1): \
             reformat it with mkfs.xfs -n ftype=1"
        }
        // Docker's own answer differs by version (STO-3); strata wants one answer, and the
        // btrfs driver or a real xfs/ext4 disk both give it.
        (Driver::Overlay2, B::Btrfs) => {
            "overlay2 on btrfs is refused by strata's policy because Docker's support for it \
             differs by version (STO-3): use the btrfs driver or a dedicated xfs/ext4 disk"
        }
        (Driver::Overlay2, B::Zfs) => {
            "overlay2 on zfs needs OpenZFS 2.2 or newer and the guest's OpenZFS version is \
             not known (STO-4): use a data disk"
        }
        (Driver::Overlay2, B::Tmpfs) => {
            "tmpfs is not a supported backing filesystem for overlay2: it is volatile and \
             bounded by RAM (STO-2)"
        }
    };
    Err(reason.to_string())
}

/// The filesystem under data-root once `layout` is prepared, and the sentence saying so.
fn prepared(layout: Layout, root_fs: &Backing) -> (Backing, String) {
    let disk = "a data disk was given: it becomes";
    let (backing, what) = match layout {
        Layout::RootFs => (
            root_fs.clone(),
            "no data disk was given: data-root stays on",
        ),
        Layout::DiskExt4 => (Backing::Ext4 { filetype: true }, disk),
        Layout::DiskBtrfs => (Backing::Btrfs, disk),
        Layout::LvmXfs => (Backing::Xfs { ftype: true }, disk),
        // The thin pool is raw blocks for devicemapper; Docker's files stay on the root fs.
        Layout::LvmThinPool => {
            let why = format!("{disk} a direct-lvm thin pool, never loop-lvm files (STO-7)");
            return (root_fs.clone(), why);
        }
    };
    let fs = backing.describe();
    let why = match layout {
        Layout::LvmXfs => format!("{what} an LVM volume with {fs} (overlay2 backing, STO-8)"),
        Layout::RootFs => format!("{what} the root filesystem ({fs})"),
        _ => format!("{what} {fs}, mounted at data-root"),
    };
    (backing, why)
}

/// Picks driver and layout for `request` on `guest`, or refuses (BadInput) with a hint.
pub fn decide(request: &StorageRequest, guest: &GuestStorageFacts) -> Result<Decision> {
    use StoragePolicy as P;
    let policy = request.policy.as_str();
    let refuse = |reason: &str, hint: &str| {
        Error::bad_input(format!("storage policy '{policy}': {reason}")).with_hint(hint)
    };
    if request.devicemapper && request.policy != P::Lvm {
        return Err(Error::bad_input(format!(
            "--engine-storage devicemapper goes with --storage lvm, not --storage {policy}"
        ))
        .with_hint("add --storage lvm --data-disk 20G, or drop --engine-storage"));
    }
    let (driver, layout) = match (request.policy, request.data_disk) {
        (P::Auto | P::Overlay2, false) => (Driver::Overlay2, Layout::RootFs),
        (P::Overlay2, true) => (Driver::Overlay2, Layout::DiskExt4),
        (P::Btrfs, false) => (Driver::Btrfs, Layout::RootFs),
        (P::Btrfs, true) => (Driver::Btrfs, Layout::DiskBtrfs),
        (P::Lvm, false) => {
            return Err(refuse(
                "LVM needs a data disk",
                "give a data disk: --data-disk 20G",
            ))
        }
        (P::Lvm, true) if request.devicemapper => (Driver::Devicemapper, Layout::LvmThinPool),
        (P::Auto | P::Lvm, true) => (Driver::Overlay2, Layout::LvmXfs),
    };
    let (backing, layout_reason) = prepared(layout, &guest.root_fs);
    let (engine, kernel) = (guest.engine, guest.kernel);
    // The one gate for every outcome: nothing leaves here that supports() rejects.
    if let Err(reason) = supports(driver, &backing, engine, kernel) {
        let hint = match (driver, versions_support(driver, engine, kernel).is_err()) {
            (Driver::Devicemapper, _) => "use plain --storage lvm: overlay2 on an LV (STO-8)",
            (_, true) => "use a guest image with kernel >= 4.0 and Docker >= 1.12",
            (Driver::Btrfs, false) => "add --data-disk 20G: strata formats it btrfs",
            (_, false) => "give a data disk: --data-disk 20G",
        };
        return Err(refuse(&reason, hint));
    }
    let fs = backing.describe();
    let (versions, fit) = match driver {
        Driver::Overlay2 => (
            format!("kernel {kernel} >= 4.0 and Docker {engine} >= 1.12 have overlay2 (STO-9)"),
            format!("overlay2 is Docker's recommended driver on {fs}"),
        ),
        Driver::Btrfs => (
            // Left alone, Docker's pick on btrfs flips at 23.0 (STO-3); naming it pins it.
            if engine < EngineVersion::new(23, 0, 0) {
                format!("Docker {engine} < 23.0 would pick btrfs itself; it is pinned (STO-3)")
            } else {
                format!("Docker {engine} >= 23.0 would pick overlay2 on btrfs (STO-3)")
            },
            format!("storage policy '{policy}' asks for the btrfs driver, which needs {fs}"),
        ),
        Driver::Devicemapper => (
            format!("Docker {engine} < 25.0 still has devicemapper (deprecated since 18.09)"),
            "devicemapper keeps layers in the thin pool, whatever data-root's filesystem".into(),
        ),
    };
    let explicit = format!(
        "storage-driver is set to {} explicitly, so a misfit fails loudly instead of \
         falling back to vfs",
        driver.as_str()
    );
    let reasons = vec![layout_reason, versions, fit, explicit];
    Ok(Decision {
        driver,
        layout,
        backing,
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::guest::facts::samples::*;
    use Backing::{Btrfs, Nfs, Overlay, Tmpfs, Zfs};

    #[test]
    fn policies_parse_and_unknown_is_bad_input() {
        use StoragePolicy as P;
        for p in [P::Auto, P::Overlay2, P::Btrfs, P::Lvm] {
            assert_eq!(p.as_str().parse::<P>().unwrap(), p);
        }
        let err = "zfs".parse::<P>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert_eq!(err.message(), "unknown storage policy 'zfs'");
        assert!(err.hint().unwrap().contains("auto, overlay2, btrfs, lvm"));
    }

    /// §6.1, one row per backing: the overlay2 verdict, and btrfs/devicemapper for all rows.
    #[test]
    #[rustfmt::skip]
    fn drivers_follow_the_support_matrix() {
        for (backing, overlay2_refusal) in [
            (EXT4, None), (EXT4_NO_DT, Some("mkfs.ext4")), (XFS1, None), (XFS0, Some("ftype=1")),
            (Btrfs, Some("btrfs driver")), (Zfs, Some("OpenZFS")), (Tmpfs, Some("volatile")),
            (Overlay, Some("STO-2")), (Nfs, Some("STO-2")), (other("ecryptfs"), Some("STO-2")),
        ] {
            match (supports(Driver::Overlay2, &backing, E29, K61), overlay2_refusal) {
                (Ok(()), None) => {}
                (Err(why), Some(word)) => assert!(why.contains(word), "{backing:?}: {why}"),
                (got, want) => panic!("{backing:?}: got {got:?}, want refusal {want:?}"),
            }
            let btrfs = supports(Driver::Btrfs, &backing, E29, K61);
            assert_eq!(btrfs.is_ok(), backing == Btrfs, "{backing:?}: {btrfs:?}");
            assert_eq!(supports(Driver::Devicemapper, &backing, E20, K61), Ok(()));
            for removed in [E25, E29] {
                let why = supports(Driver::Devicemapper, &backing, removed, K61).unwrap_err();
                assert!(why.contains("removed in Docker 25.0") && why.contains("STO-5"), "{why}");
            }
        }
    }

    #[test]
    fn overlay2_needs_kernel_4_and_engine_1_12() {
        let why = supports(Driver::Overlay2, &EXT4, E20, K310).unwrap_err();
        assert!(why.contains("kernel 4.0") && why.contains("3.10"), "{why}");
        assert_eq!(supports(Driver::Overlay2, &EXT4, E20, K40), Ok(()));
        let old = EngineVersion::new(1, 11, 2);
        let why = supports(Driver::Overlay2, &EXT4, old, K61).unwrap_err();
        assert!(why.contains("1.12") && why.contains("1.11.2"), "{why}");
        assert_eq!(
            supports(Driver::Overlay2, &XFS1, OVERLAY2_ENGINE, K61),
            Ok(())
        );
    }

    enum Want {
        Chosen(Driver, Layout, Backing),
        Refused(&'static str),
    }

    #[test]
    #[rustfmt::skip]
    fn decide_covers_every_policy_disk_and_root_fs() {
        use {Driver as D, Layout as L, StoragePolicy as P, Want::*};
        const DISK: bool = true;
        const DM: bool = true;
        let cases = [
            (P::Auto, !DISK, !DM, EXT4, E29, K61, Chosen(D::Overlay2, L::RootFs, EXT4)),
            (P::Auto, !DISK, !DM, XFS1, E20, K61, Chosen(D::Overlay2, L::RootFs, XFS1)),
            (P::Auto, !DISK, !DM, XFS0, E29, K61, Refused("STO-1")),
            (P::Auto, !DISK, !DM, EXT4_NO_DT, E29, K61, Refused("d_type")),
            (P::Auto, !DISK, !DM, Btrfs, E29, K61, Refused("btrfs")),
            (P::Auto, !DISK, !DM, Zfs, E29, K61, Refused("OpenZFS")),
            (P::Auto, !DISK, !DM, Tmpfs, E29, K61, Refused("tmpfs")),
            (P::Auto, !DISK, !DM, Overlay, E29, K61, Refused("overlayfs")),
            (P::Auto, !DISK, !DM, Nfs, E29, K61, Refused("nfs")),
            (P::Auto, !DISK, !DM, EXT4, E29, K310, Refused("kernel 4.0")),
            (P::Auto, DISK, !DM, XFS0, E29, K61, Chosen(D::Overlay2, L::LvmXfs, XFS1)),
            (P::Auto, DISK, !DM, Overlay, E29, K61, Chosen(D::Overlay2, L::LvmXfs, XFS1)),
            (P::Auto, DISK, !DM, EXT4, E29, K310, Refused("kernel 4.0")),
            (P::Overlay2, !DISK, !DM, EXT4, E29, K61, Chosen(D::Overlay2, L::RootFs, EXT4)),
            (P::Overlay2, !DISK, !DM, XFS0, E29, K61, Refused("ftype=0")),
            (P::Overlay2, !DISK, !DM, Btrfs, E29, K61, Refused("policy")),
            (P::Overlay2, DISK, !DM, Btrfs, E29, K61, Chosen(D::Overlay2, L::DiskExt4, EXT4)),
            (P::Overlay2, DISK, !DM, XFS0, E20, K61, Chosen(D::Overlay2, L::DiskExt4, EXT4)),
            (P::Btrfs, !DISK, !DM, Btrfs, E29, K61, Chosen(D::Btrfs, L::RootFs, Btrfs)),
            (P::Btrfs, !DISK, !DM, Btrfs, E20, K310, Chosen(D::Btrfs, L::RootFs, Btrfs)),
            (P::Btrfs, !DISK, !DM, EXT4, E29, K61, Refused("needs btrfs")),
            (P::Btrfs, !DISK, !DM, XFS1, E29, K61, Refused("needs btrfs")),
            (P::Btrfs, DISK, !DM, EXT4, E29, K61, Chosen(D::Btrfs, L::DiskBtrfs, Btrfs)),
            (P::Lvm, !DISK, !DM, EXT4, E29, K61, Refused("data disk")),
            (P::Lvm, !DISK, DM, EXT4, E20, K61, Refused("data disk")),
            (P::Lvm, DISK, !DM, EXT4, E29, K61, Chosen(D::Overlay2, L::LvmXfs, XFS1)),
            (P::Lvm, DISK, !DM, Btrfs, E20, K61, Chosen(D::Overlay2, L::LvmXfs, XFS1)),
            (P::Lvm, DISK, DM, EXT4, E20, K61, Chosen(D::Devicemapper, L::LvmThinPool, EXT4)),
            (P::Lvm, DISK, DM, XFS0, E20, K310, Chosen(D::Devicemapper, L::LvmThinPool, XFS0)),
            (P::Lvm, DISK, DM, EXT4, E25, K61, Refused("removed in Docker 25.0")),
            (P::Lvm, DISK, DM, EXT4, E29, K61, Refused("removed in Docker 25.0")),
            (P::Auto, DISK, DM, EXT4, E20, K61, Refused("--storage lvm")),
            (P::Overlay2, !DISK, DM, EXT4, E20, K61, Refused("--storage lvm")),
            (P::Btrfs, DISK, DM, Btrfs, E20, K61, Refused("--storage lvm")),
        ];
        for (policy, data_disk, devicemapper, root_fs, engine, kernel, want) in cases {
            let request = StorageRequest { policy, data_disk, devicemapper };
            let guest = GuestStorageFacts { engine, kernel, root_fs };
            let label = format!("{request:?} on {guest:?}");
            match (decide(&request, &guest), want) {
                (Ok(d), Chosen(driver, layout, backing)) => {
                    let got = (d.driver, d.layout, &d.backing);
                    assert_eq!(got, (driver, layout, &backing), "{label}");
                    assert_eq!(supports(d.driver, &d.backing, engine, kernel), Ok(()), "{label}");
                    assert!(d.reasons.iter().any(|r| r.contains(driver.as_str())), "{label}");
                }
                (Err(e), Refused(word)) => {
                    assert_eq!(e.kind(), ErrorKind::BadInput, "{label}");
                    assert!(e.message().contains(word), "{label}: {}", e.message());
                    assert!(e.hint().is_some(), "{label}");
                }
                (Ok(d), Refused(word)) => panic!("{label}: chose {d:?}, want refusal '{word}'"),
                (Err(e), Chosen(..)) => panic!("{label}: refused: {e}"),
            }
        }
    }

    #[test]
    #[rustfmt::skip]
    fn refusals_name_the_policy_and_hint_the_fix() {
        use StoragePolicy as P;
        let ask = |policy, data_disk, devicemapper| StorageRequest { policy, data_disk, devicemapper };
        let on = |engine, kernel, root_fs| GuestStorageFacts { engine, kernel, root_fs };
        for (request, guest, message, hint) in [
            (ask(P::Auto, false, false), on(E29, K61, XFS0), "policy 'auto'", "--data-disk 20G"),
            (ask(P::Auto, true, false), on(E29, K310, EXT4), "kernel", "guest image"),
            (ask(P::Overlay2, false, false), on(E29, K61, Zfs), "policy 'overlay2'", "--data-disk"),
            (ask(P::Btrfs, false, false), on(E29, K61, EXT4), "policy 'btrfs'", "formats it btrfs"),
            (ask(P::Lvm, false, false), on(E29, K61, EXT4), "LVM needs a data disk", "--data-disk"),
            (ask(P::Lvm, true, true), on(E29, K61, EXT4), "29.0.1", "plain --storage lvm"),
            (ask(P::Auto, true, true), on(E20, K61, EXT4), "--engine-storage", "--storage lvm"),
        ] {
            let e = decide(&request, &guest).unwrap_err();
            assert!(e.message().contains(message), "{}", e.message());
            assert!(e.hint().unwrap().contains(hint), "{:?}", e.hint());
        }
    }

    #[test]
    fn reasons_name_versions_and_the_decision_serializes() {
        use StoragePolicy as P;
        let thin = StorageRequest {
            policy: P::Lvm,
            data_disk: true,
            devicemapper: true,
        };
        let old = GuestStorageFacts {
            engine: E20,
            kernel: K61,
            root_fs: EXT4,
        };
        let d = decide(&thin, &old).unwrap();
        let has = |d: &Decision, text: &str| d.reasons.iter().any(|r| r.contains(text));
        assert!(
            has(&d, "Docker 20.10.24 < 25.0 still has devicemapper"),
            "{d:?}"
        );
        assert!(has(&d, "STO-7"), "{d:?}");
        let auto = StorageRequest {
            policy: P::Auto,
            data_disk: false,
            devicemapper: false,
        };
        let new = GuestStorageFacts {
            engine: E29,
            kernel: K61,
            root_fs: EXT4,
        };
        let d = decide(&auto, &new).unwrap();
        assert!(has(&d, "kernel 6.1 >= 4.0 and Docker 29.0.1"), "{d:?}");
        assert!(
            has(
                &d,
                "overlay2 is Docker's recommended driver on ext4 with d_type"
            ),
            "{d:?}"
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["driver"], "overlay2");
        assert_eq!(json["layout"], "root_fs");
        assert_eq!(json["backing"]["ext4"]["filetype"], true);
        assert_eq!(json["reasons"].as_array().unwrap().len(), d.reasons.len());
    }
}
