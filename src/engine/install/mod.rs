//! `engine install`'s plan and steps: Docker into a running VM, converging. Everything that
//! can refuse (storage choice, version, disk size, release of the bundle) is decided in
//! `plan` before the guest is touched; then data disk, storage, packages, daemon.json and
//! start, each skipped when already as intended; then `docker info` through the SSH tunnel
//! must match the intent. lifecycle/engine_install.rs runs the steps top-down.

mod explained;
mod packages;

use crate::engine::addresses;
use crate::engine::config::{
    EngineIntent, EngineRecord, LogDriver, DAEMON_JSON_PATH, DATA_ROOT, RECORD_PATH,
};
use crate::engine::decision::{self, Decision, GuestStorageFacts, Layout, StorageRequest};
use crate::engine::scripts;
use crate::engine::verify::{self, Observed};
use crate::error::Result;
use crate::guest::docker::GuestDocker;
use crate::guest::facts::{self, EngineVersion, GuestFacts};
use crate::guest::{sftp, ssh, Route};
use crate::progress::{Progress, StageTime};
use crate::state::Paths;
use crate::vm::{data_disk, network, pool, Libvirt};
use packages::{plan_packages, PackagePlan};
use serde::Serialize;
use ssh2::Session;

const ENGINE_PACKAGE: &str = "docker.io";

/// Where the packages come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The host downloads the guest's missing .debs with its own apt and pushes them: the
    /// guest needs no network.
    Bundle,
    /// The guest installs from its own configured mirror.
    Online,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Bundle => "bundle",
            Source::Online => "online",
        }
    }
}

#[derive(Debug, Clone)]
pub struct InstallRequest {
    pub source: Source,
    pub version: Option<String>,
    pub storage: StorageRequest,
    pub data_disk: Option<u64>,
    pub log_driver: LogDriver,
}

/// What an install did and what the engine reports.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub vm: String,
    pub engine_package: String,
    pub decision: Decision,
    pub intent: EngineIntent,
    pub observed: Observed,
    /// One line per step that changed something; empty when everything was in place.
    pub changes: Vec<String>,
    /// The .debs pushed from the host's bundle cache (absolute paths); empty when none were.
    pub bundle_debs: Vec<String>,
    pub stages: Vec<StageTime>,
}

/// Everything decided and checked before the guest is changed.
pub struct InstallPlan {
    guest: GuestFacts,
    disk_size: Option<u64>,
    packages: PackagePlan,
    engine_package: String,
    engine: EngineVersion,
    decided: Decision,
    intent: EngineIntent,
    daemon_json: String,
}

/// Whether each step writes its classic commands first (`--explain`; for a VM on a remote
/// host the login's explanation has ended it already).
fn explaining() -> bool {
    crate::explain::is_on()
}

/// Whether this run only writes the steps (`--dry-run`): each step stops after explaining.
fn dry_run() -> bool {
    crate::explain::is_dry_run()
}

/// Read what the guest has and decide everything: packages, engine version, storage layout,
/// Docker's address ranges and daemon.json. Refuses before anything in the guest changes
/// (the host's bundle cache may fill).
pub fn plan(
    lv: &Libvirt,
    paths: &Paths,
    session: &Session,
    vm: &str,
    req: &InstallRequest,
) -> Result<InstallPlan> {
    let guest = facts::gather(session)?;
    let pool_handle = pool::ensure_home(lv, paths)?;
    // A disk attached by an earlier run keeps its role even when the flag is not repeated.
    let existing_disk = data_disk::existing_capacity(&lv.conn(), &pool_handle, vm)?;
    let disk_size = req.data_disk.or(existing_disk);
    let storage = StorageRequest {
        data_disk: disk_size.is_some(),
        ..req.storage.clone()
    };
    let missing: Vec<String> = packages_for(&storage)
        .iter()
        .filter(|p| !guest.installed.iter().any(|i| i == *p))
        .map(|p| p.to_string())
        .collect();
    let packages = plan_packages(paths, session, &guest, req, &missing)?;
    let engine_package = packages.engine_package().to_string();
    let engine = EngineVersion::parse_required(&engine_package)?;
    let decided = decision::decide(
        &storage,
        &GuestStorageFacts {
            engine,
            kernel: guest.kernel,
            root_fs: guest.data_root_backing.clone(),
        },
    )?;
    let mut taken = guest.guest_networks.clone();
    taken.extend(
        network::list(&lv.conn())?
            .into_iter()
            .filter_map(|n| n.subnet),
    );
    let mut intent = EngineIntent::new(
        &decided,
        engine,
        req.log_driver,
        addresses::choose(&taken)?,
        guest.nic_mtu,
        &guest.cgroup_version,
    );
    // A swarm node keeps live-restore off: Docker refuses swarm mode with it on.
    intent.live_restore = !guest.swarm_member;
    let daemon_json = intent.daemon_json()?;
    Ok(InstallPlan {
        guest,
        disk_size,
        packages,
        engine_package,
        engine,
        decided,
        intent,
        daemon_json,
    })
}

impl InstallPlan {
    /// Attach the data disk when the plan has one; a line when it was made now.
    pub fn attach_data_disk(
        &self,
        lv: &Libvirt,
        paths: &Paths,
        vm: &str,
        progress: &Progress,
    ) -> Result<Option<String>> {
        let Some(size) = self.disk_size else {
            return Ok(None);
        };
        progress.stage("attaching the data disk");
        let pool_handle = pool::ensure_home(lv, paths)?;
        if explaining() {
            let work = data_disk::survey(&lv.conn(), &pool_handle, vm, size)?;
            explained::data_disk(lv, paths, vm, size, &work)?;
        }
        if dry_run() {
            return Ok(None);
        }
        let disk = data_disk::ensure(&lv.conn(), &pool_handle, vm, size)?;
        Ok(disk.created.then(|| {
            format!(
                "attached a {} data disk ({})",
                crate::units::format_size(size),
                disk.path.display()
            )
        }))
    }

    /// Prepare data-root's storage when it is not the root filesystem.
    pub fn prepare_storage(
        &self,
        session: &Session,
        progress: &Progress,
    ) -> Result<Option<String>> {
        if self.decided.layout == Layout::RootFs {
            return Ok(None);
        }
        progress.stage("preparing storage");
        let (script, what) = storage_script(&self.decided)?;
        if explaining() {
            let layout = serde_json::to_value(self.decided.layout)?;
            explained::guest_script(
                crate::explain::Step::EngineStorage,
                &script,
                serde_json::json!({ "layout": layout }),
            )?;
        }
        if dry_run() {
            return Ok(None);
        }
        // The script's last line says what it did (tools chatter before it).
        let said = scripts::run_text(session, &script, what)?;
        let summary = said.lines().last().unwrap_or_default().trim();
        Ok((!summary.contains("already")).then(|| summary.to_string()))
    }

    /// Get the missing packages into the guest.
    pub fn install_packages(
        &self,
        lv: &Libvirt,
        paths: &Paths,
        vm: &str,
        session: &Session,
        progress: &Progress,
    ) -> Result<Option<String>> {
        self.packages.carry_out(lv, paths, vm, session, progress)
    }

    /// Write daemon.json and (re)start dockerd when it is not as intended; start a stopped
    /// dockerd that has the intended file.
    pub fn configure_dockerd(&self, session: &Session) -> Result<Option<String>> {
        let wanted_sha = crate::digest::sha256_bytes(self.daemon_json.as_bytes());
        if self.guest.daemon_json_sha256.as_deref() != Some(wanted_sha.as_str()) {
            if explaining() {
                let apply = scripts::apply_daemon_json_script(self.engine)?;
                explained::daemon_json(&self.daemon_json, Some(&apply))?;
            }
            if dry_run() {
                return Ok(None);
            }
            scripts::apply_daemon_json(session, &self.daemon_json, self.engine)?;
            return Ok(Some(format!(
                "wrote {DAEMON_JSON_PATH} and (re)started dockerd"
            )));
        }
        if self.guest.docker_active {
            return Ok(None);
        }
        if explaining() {
            explained::daemon_json(&self.daemon_json, None)?;
        }
        if dry_run() {
            return Ok(None);
        }
        // Right config, not running (yet: a baked clone may still be starting it at boot;
        // `systemctl start` then waits for that start instead of restarting).
        ssh::run_checked(session, "systemctl start docker.service").map_err(|e| {
            e.context("starting dockerd")
                .with_hint("see `journalctl -u docker` in the guest")
        })?;
        Ok(Some("started dockerd".to_string()))
    }

    /// Keep the guest's record of the install (an engine that was already there keeps its
    /// origin).
    pub fn write_record(&self, session: &Session, req: &InstallRequest) -> Result<()> {
        let source = match self.packages {
            PackagePlan::Installed { .. } => None,
            _ => Some(req.source.as_str()),
        };
        let record = EngineRecord::new(
            self.intent.clone(),
            &self.decided,
            source.unwrap_or("found installed"),
            &self.engine_package,
        );
        let Some(text) = record_to_write(
            EngineRecord::from_facts(&self.guest).as_ref(),
            record,
            source.is_none(),
        )?
        else {
            return Ok(());
        };
        if explaining() {
            explained::record(&String::from_utf8_lossy(&text))?;
        }
        if dry_run() {
            return Ok(());
        }
        ssh::run_checked(session, "mkdir -p /etc/strata")?;
        sftp::upload(session, &mut text.as_slice(), RECORD_PATH, 0o644)?;
        Ok(())
    }

    /// `--explain` of the check `verify` makes.
    pub fn explain_verify(&self) -> Result<()> {
        if !explaining() {
            return Ok(());
        }
        explained::verify(&self.intent.storage_driver, &self.intent.data_root)
    }

    /// `docker info` through the Docker API must match the intent, field by field.
    pub fn verify(&self, route: &Route, session: Session, vm: &str) -> Result<Observed> {
        let docker = GuestDocker::over(route, session)?;
        let observed = verify::observe(&docker)?;
        let mismatches = verify::compare(&self.intent, &self.decided.backing, &observed);
        if !mismatches.is_empty() {
            return Err(verify::mismatch_error(vm, &mismatches));
        }
        Ok(observed)
    }

    /// The report of this install.
    pub fn report(
        self,
        vm: &str,
        changes: Vec<String>,
        observed: Observed,
        stages: Vec<StageTime>,
    ) -> InstallReport {
        let bundle_debs = match &self.packages {
            PackagePlan::Bundle(b) => b.debs.iter().map(|d| d.display().to_string()).collect(),
            _ => Vec::new(),
        };
        InstallReport {
            vm: vm.to_string(),
            engine_package: self.engine_package,
            decision: self.decided,
            intent: self.intent,
            observed,
            changes,
            bundle_debs,
            stages,
        }
    }
}

/// The packages a storage request may need in the guest, besides Docker. AppArmor is only a
/// Recommends of docker.io, but on Debian's kernels `docker run` fails without it.
fn packages_for(storage: &StorageRequest) -> Vec<&'static str> {
    let mut packages = vec![ENGINE_PACKAGE, "apparmor", "e2fsprogs"];
    if storage.data_disk {
        packages.extend(match storage.policy {
            decision::StoragePolicy::Btrfs => &["btrfs-progs"][..],
            decision::StoragePolicy::Lvm if storage.devicemapper => {
                &["lvm2", "thin-provisioning-tools"][..]
            }
            decision::StoragePolicy::Lvm | decision::StoragePolicy::Auto => {
                &["lvm2", "xfsprogs"][..]
            }
            decision::StoragePolicy::Overlay2 => &[][..],
        });
    }
    packages
}

/// The script that prepares data-root's storage for `decided`, and what it does (for its
/// error).
fn storage_script(decided: &Decision) -> Result<(String, &'static str)> {
    let fstype = match decided.layout {
        Layout::DiskExt4 => "ext4",
        Layout::DiskBtrfs => "btrfs",
        Layout::LvmXfs => "xfs",
        Layout::LvmThinPool => {
            let script = scripts::render(
                scripts::PREPARE_THIN_POOL,
                &serde_json::json!({ "device": data_disk::GUEST_DEVICE }),
            )?;
            return Ok((script, "preparing the devicemapper thin pool"));
        }
        Layout::RootFs => return Ok((String::new(), "nothing")),
    };
    let layout = serde_json::to_value(decided.layout)?;
    let script = scripts::render(
        scripts::PREPARE_STORAGE,
        &serde_json::json!({
            "layout": layout,
            "device": data_disk::GUEST_DEVICE,
            "data_root": DATA_ROOT,
            "fstype": fstype,
        }),
    )?;
    Ok((script, "preparing Docker's storage"))
}

/// The guest's record of the install as it is to be written, stamped with the time it last
/// changed; None when the one there says the same.
fn record_to_write(
    old: Option<&EngineRecord>,
    mut record: EngineRecord,
    keep_source: bool,
) -> Result<Option<Vec<u8>>> {
    if let Some(old) = old {
        if keep_source {
            record.source = old.source.clone();
        }
        // The same install at another time is the same install.
        let stamped = record.installed.clone();
        record.installed = old.installed.clone();
        if serde_json::to_value(old)? == serde_json::to_value(&record)? {
            return Ok(None);
        }
        record.installed = stamped;
    }
    Ok(Some(serde_json::to_vec_pretty(&record)?))
}
