//! `engine install`: Docker into a running VM, converging. Everything that can refuse (storage
//! choice, version, disk size, release of the bundle) is decided before the guest is touched;
//! then data disk, storage, packages, daemon.json and start, each skipped when already as
//! intended; then `docker info` through the SSH tunnel must match the intent.

use crate::engine::addresses;
use crate::engine::bundle::{self, BundleRequest};
use crate::engine::config::{
    EngineIntent, EngineRecord, LogDriver, DAEMON_JSON_PATH, DATA_ROOT, RECORD_PATH,
};
use crate::engine::decision::{self, Decision, GuestStorageFacts, Layout, StorageRequest};
use crate::engine::scripts::{self, Script};
use crate::engine::verify::{self, Observed};
use crate::error::{Error, Result};
use crate::guest::docker::GuestDocker;
use crate::guest::facts::{self, EngineVersion, GuestFacts};
use crate::guest::ssh;
use crate::progress::{Progress, StageTime};
use crate::state::Paths;
use crate::vm::{data_disk, hotplug, network, pool, Libvirt};
use serde::Serialize;
use ssh2::Session;
use std::time::Duration;

/// The bundle's disk as the guest sees it.
const BUNDLE_SERIAL: &str = "strata-bundle";
const BUNDLE_DEVICE: &str = "/dev/disk/by-id/virtio-strata-bundle";
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
    fn as_str(self) -> &'static str {
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

/// Install (or converge, or only verify) Docker in `vm`.
pub fn install(
    lv: &Libvirt,
    paths: &Paths,
    vm: &str,
    req: &InstallRequest,
    progress: &Progress,
) -> Result<InstallReport> {
    let target = crate::guest::Route::of_vm(lv, paths, vm)?;
    progress.stage("reading the guest");
    let session = ssh::connect(&target, Duration::from_secs(15))?;
    let guest = facts::gather(&session)?;
    let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;

    // A disk attached by an earlier run keeps its role even when the flag is not repeated.
    let existing_disk = data_disk::existing_capacity(&lv.conn, &pool_handle, vm)?;
    let disk_size = req.data_disk.or(existing_disk);
    let storage = StorageRequest {
        data_disk: disk_size.is_some(),
        ..req.storage.clone()
    };

    progress.stage("planning");
    let packages = packages_for(&storage);
    let missing: Vec<String> = packages
        .iter()
        .filter(|p| !guest.installed.iter().any(|i| i == *p))
        .map(|p| p.to_string())
        .collect();
    let plan = plan_packages(paths, &session, &guest, req, &missing)?;
    let engine_package = plan.engine_package().to_string();
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
        network::list(&lv.conn)?
            .into_iter()
            .filter_map(|n| n.subnet),
    );
    let intent = EngineIntent::new(
        &decided,
        engine,
        req.log_driver,
        addresses::choose(&taken)?,
        guest.nic_mtu,
        &guest.cgroup_version,
    );
    let daemon_json = intent.daemon_json()?;

    let mut changes = Vec::new();
    if let Some(size) = disk_size {
        progress.stage("attaching the data disk");
        let disk = data_disk::ensure(&lv.conn, &pool_handle, vm, size)?;
        if disk.created {
            changes.push(format!(
                "attached a {} data disk ({})",
                crate::units::format_size(size),
                disk.path.display()
            ));
        }
    }
    if decided.layout != Layout::RootFs {
        progress.stage("preparing storage");
        // The script's last line says what it did (tools chatter before it).
        let said = prepare_storage(&session, &decided)?;
        let summary = said.lines().last().unwrap_or_default().trim();
        if !summary.contains("already") {
            changes.push(summary.to_string());
        }
    }
    let bundle_debs = match &plan {
        PackagePlan::Bundle(b) => b.debs.iter().map(|d| d.display().to_string()).collect(),
        _ => Vec::new(),
    };
    let ctx = Ctx { lv, paths, vm };
    if let Some(change) = plan.carry_out(&ctx, &session, progress)? {
        changes.push(change);
    }

    progress.stage("configuring dockerd");
    let wanted_sha = crate::digest::sha256_bytes(daemon_json.as_bytes());
    if guest.daemon_json_sha256.as_deref() != Some(wanted_sha.as_str()) {
        apply_daemon_json(&session, &daemon_json, engine)?;
        changes.push(format!("wrote {DAEMON_JSON_PATH} and (re)started dockerd"));
    } else if !guest.docker_active {
        // Right config, not running (yet: a baked clone may still be starting it at boot;
        // `systemctl start` then waits for that start instead of restarting).
        ssh::run_checked(&session, "systemctl start docker.service").map_err(|e| {
            e.context("starting dockerd")
                .with_hint("see `journalctl -u docker` in the guest")
        })?;
        changes.push("started dockerd".to_string());
    }
    // An engine that was already there (a baked clone, an earlier run) keeps its origin.
    let source = match plan {
        PackagePlan::Installed { .. } => None,
        _ => Some(req.source.as_str()),
    };
    let record = EngineRecord::new(
        intent.clone(),
        &decided,
        source.unwrap_or("found installed"),
        &engine_package,
    );
    write_record_if_changed(
        &session,
        EngineRecord::from_facts(&guest).as_ref(),
        record,
        source.is_none(),
    )?;

    progress.stage("verifying through the Docker API");
    let docker = GuestDocker::over(&target, session)?;
    let observed = verify::observe(&docker)?;
    let mismatches = verify::compare(&intent, &decided.backing, &observed);
    if !mismatches.is_empty() {
        return Err(verify::mismatch_error(vm, &mismatches));
    }
    Ok(InstallReport {
        vm: vm.to_string(),
        engine_package,
        decision: decided,
        intent,
        observed,
        changes,
        bundle_debs,
        stages: progress.stage_times(),
    })
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

/// Which VM, on which libvirt, with which files.
struct Ctx<'a> {
    lv: &'a Libvirt,
    paths: &'a Paths,
    vm: &'a str,
}

/// How the missing packages will get into the guest.
enum PackagePlan {
    /// Everything is installed already.
    Installed {
        engine_package: String,
    },
    Bundle(bundle::Bundle),
    Online {
        engine_package: String,
        packages: Vec<String>,
    },
}

impl PackagePlan {
    fn engine_package(&self) -> &str {
        match self {
            PackagePlan::Installed { engine_package } => engine_package,
            PackagePlan::Bundle(b) => &b.engine_version,
            PackagePlan::Online { engine_package, .. } => engine_package,
        }
    }

    fn carry_out(
        &self,
        ctx: &Ctx,
        session: &Session,
        progress: &Progress,
    ) -> Result<Option<String>> {
        match self {
            PackagePlan::Installed { .. } => Ok(None),
            PackagePlan::Bundle(b) if b.debs.is_empty() => Ok(None),
            PackagePlan::Bundle(b) => {
                progress.stage(&format!("plugging in {} packages", b.debs.len()));
                let image = b.disk_image(&ctx.paths.pool_dir())?;
                hotplug::attach_readonly(&ctx.lv.conn, ctx.vm, &image, BUNDLE_SERIAL)?;
                progress.stage(&format!("installing {} packages", b.debs.len()));
                let names: Vec<String> = b
                    .debs
                    .iter()
                    .map(|d| {
                        d.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned()
                    })
                    .collect();
                let installed = run_script(
                    session,
                    scripts::INSTALL_BUNDLE,
                    &serde_json::json!({ "device": BUNDLE_DEVICE, "dir": "", "debs": names }),
                    "installing the bundle",
                );
                // Unplugged whatever happened: a re-run plugs it in again.
                let unplugged = hotplug::detach(&ctx.lv.conn, ctx.vm, &image, BUNDLE_SERIAL);
                installed?;
                unplugged?;
                Ok(Some(format!(
                    "installed {} packages from the host's bundle ({})",
                    b.debs.len(),
                    crate::units::format_size(b.bytes)
                )))
            }
            PackagePlan::Online { packages, .. } => {
                progress.stage(&format!("installing {} packages online", packages.len()));
                run_script(
                    session,
                    scripts::INSTALL_ONLINE,
                    &serde_json::json!({ "packages": packages }),
                    "installing from the guest's mirror",
                )?;
                Ok(Some(format!(
                    "installed {} from the guest's mirror",
                    packages.join(" ")
                )))
            }
        }
    }
}

/// Decide where packages come from and which engine version results, without changing the
/// guest (the host's cache may fill).
fn plan_packages(
    paths: &Paths,
    session: &Session,
    guest: &GuestFacts,
    req: &InstallRequest,
    missing: &[String],
) -> Result<PackagePlan> {
    if let Some(installed) = &guest.engine_package {
        if let Some(wanted) = &req.version {
            if !bundle::version_matches(wanted, installed) {
                return Err(Error::bad_input(format!(
                    "--version {wanted}: the guest already runs docker.io {installed}"
                ))
                .with_hint("strata does not up- or downgrade an installed engine; use a new VM for another version"));
            }
        }
        if missing.is_empty() {
            return Ok(PackagePlan::Installed {
                engine_package: installed.clone(),
            });
        }
    }
    match req.source {
        Source::Bundle => {
            let status = crate::guest::sftp::read_file(session, "/var/lib/dpkg/status")?
                .ok_or_else(|| {
                    Error::failed("the guest has no /var/lib/dpkg/status: not a Debian system")
                })?;
            let status = String::from_utf8_lossy(&status);
            let bundle = bundle::prepare(
                &paths.cache.join("bundle").join(&guest.release),
                &BundleRequest {
                    release: &guest.release,
                    guest_status: &status,
                    packages: missing,
                    engine_version: req.version.as_deref(),
                },
            )?;
            Ok(PackagePlan::Bundle(bundle))
        }
        Source::Online => {
            // The candidate the guest's mirror offers (after an update) decides the engine.
            let out = ssh::run_checked(
                session,
                "apt-get update -q -o DPkg::Lock::Timeout=300 >/dev/null && apt-cache madison docker.io",
            )
            .map_err(|e| e.context("asking the guest's mirror for docker.io").with_hint(
                "--source online needs the guest to reach its mirror; --source bundle needs no guest network",
            ))?;
            let versions: Vec<&str> = out
                .lines()
                .filter_map(|l| l.split('|').nth(1).map(str::trim))
                .collect();
            let engine_package = match &req.version {
                Some(v) => versions.iter().find(|c| bundle::version_matches(v, c)),
                None => versions.first(),
            }
            .map(|s| s.to_string())
            .or_else(|| guest.engine_package.clone())
            .ok_or_else(|| {
                Error::bad_input(format!(
                    "--version {}: the guest's mirror does not have it (it has: {})",
                    req.version.as_deref().unwrap_or("(any)"),
                    versions.join(", ")
                ))
                .with_hint("pick one of the versions listed, or leave --version out")
            })?;
            let packages = missing
                .iter()
                .map(|p| match p.as_str() {
                    ENGINE_PACKAGE => format!("{p}={engine_package}"),
                    _ => p.clone(),
                })
                .collect();
            Ok(PackagePlan::Online {
                engine_package,
                packages,
            })
        }
    }
}

fn run_script(
    session: &Session,
    script: Script,
    context: &serde_json::Value,
    what: &str,
) -> Result<String> {
    let text = scripts::render(script, context)?;
    let out = ssh::exec(session, &ssh::sh_c(&text), false)?;
    if out.status != 0 {
        return Err(Error::failed(format!(
            "{what} failed in the guest (exit {}):\n{}",
            out.status,
            excerpt(&String::from_utf8_lossy(&out.stderr))
        ))
        .with_hint("nothing is lost: fix the cause and run the same `strata engine install` again; it continues from what is done"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A tool's complaint usually comes first and its usage text after: keep the first lines and
/// the last ones.
fn excerpt(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() <= 14 {
        return lines.join("\n");
    }
    format!(
        "{}\n  [... {} lines ...]\n{}",
        lines[..4].join("\n"),
        lines.len() - 12,
        lines[lines.len() - 8..].join("\n")
    )
}

fn prepare_storage(session: &Session, decided: &Decision) -> Result<String> {
    let fstype = match decided.layout {
        Layout::DiskExt4 => "ext4",
        Layout::DiskBtrfs => "btrfs",
        Layout::LvmXfs => "xfs",
        Layout::LvmThinPool => {
            return run_script(
                session,
                scripts::PREPARE_THIN_POOL,
                &serde_json::json!({ "device": data_disk::GUEST_DEVICE }),
                "preparing the devicemapper thin pool",
            )
        }
        Layout::RootFs => return Ok(String::new()),
    };
    let layout = serde_json::to_value(decided.layout)?;
    run_script(
        session,
        scripts::PREPARE_STORAGE,
        &serde_json::json!({
            "layout": layout,
            "device": data_disk::GUEST_DEVICE,
            "data_root": DATA_ROOT,
            "fstype": fstype,
        }),
        "preparing Docker's storage",
    )
}

/// Put `daemon_json` in place and restart dockerd; when dockerd rejects it, the previous file
/// is restored, Docker started again, and the error quotes dockerd.
pub fn apply_daemon_json(
    session: &Session,
    daemon_json: &str,
    engine: EngineVersion,
) -> Result<()> {
    ssh::run_checked(session, "mkdir -p /etc/docker")?;
    crate::guest::sftp::upload(
        session,
        &mut daemon_json.as_bytes(),
        "/etc/docker/daemon.json.strata-new",
        0o644,
    )?;
    run_script(
        session,
        scripts::APPLY_DAEMON_JSON,
        // `dockerd --validate` exists from Docker 23.0 on.
        &serde_json::json!({ "can_validate": engine >= EngineVersion::new(23, 0, 0) }),
        "starting dockerd with the new daemon.json",
    )?;
    Ok(())
}

/// Keep the guest's record of the install, stamped with the time it last changed.
fn write_record_if_changed(
    session: &Session,
    old: Option<&EngineRecord>,
    mut record: EngineRecord,
    keep_source: bool,
) -> Result<()> {
    if let Some(old) = old {
        if keep_source {
            record.source = old.source.clone();
        }
        // The same install at another time is the same install.
        let stamped = record.installed.clone();
        record.installed = old.installed.clone();
        if serde_json::to_value(old)? == serde_json::to_value(&record)? {
            return Ok(());
        }
        record.installed = stamped;
    }
    ssh::run_checked(session, "mkdir -p /etc/strata")?;
    let text = serde_json::to_vec_pretty(&record)?;
    crate::guest::sftp::upload(session, &mut text.as_slice(), RECORD_PATH, 0o644)?;
    Ok(())
}
