//! How the packages an install needs get into the guest: already there, from the host's
//! offline bundle (handed over on a read-only disk image plugged in for the install), or from
//! the guest's own mirror; and which engine version results.

use super::{explained, InstallRequest, Source, ENGINE_PACKAGE};
use crate::engine::bundle::{self, BundleRequest};
use crate::engine::scripts;
use crate::error::{Error, Result};
use crate::guest::facts::GuestFacts;
use crate::guest::{route, sftp, ssh};
use crate::progress::Progress;
use crate::state::Paths;
use crate::vm::remote_file::{self, HostFile};
use crate::vm::{hotplug, Libvirt};
use ssh2::Session;

/// The bundle's disk as the guest sees it.
const BUNDLE_SERIAL: &str = "strata-bundle";
const BUNDLE_DEVICE: &str = "/dev/disk/by-id/virtio-strata-bundle";

/// How the missing packages will get into the guest.
pub(super) enum PackagePlan {
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
    pub(super) fn engine_package(&self) -> &str {
        match self {
            PackagePlan::Installed { engine_package } => engine_package,
            PackagePlan::Bundle(b) => &b.engine_version,
            PackagePlan::Online { engine_package, .. } => engine_package,
        }
    }

    /// Get the packages into the guest; a line saying what changed, or None.
    pub(super) fn carry_out(
        &self,
        lv: &Libvirt,
        paths: &Paths,
        vm: &str,
        session: &Session,
        progress: &Progress,
    ) -> Result<Option<String>> {
        match self {
            PackagePlan::Installed { .. } => Ok(None),
            PackagePlan::Bundle(b) if b.debs.is_empty() => Ok(None),
            PackagePlan::Bundle(b) => {
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
                let script = scripts::render(
                    scripts::INSTALL_BUNDLE,
                    &serde_json::json!({ "device": BUNDLE_DEVICE, "dir": "", "debs": names }),
                )?;
                if super::explaining() {
                    let cache = b.debs[0].parent().unwrap_or(&paths.cache);
                    let image = b.image_path(&paths.pool_dir());
                    explained::bundle(vm, b, &image, BUNDLE_SERIAL, cache, &script)?;
                }
                if super::dry_run() {
                    return Ok(None);
                }
                let hypervisor = route::hypervisor_login(lv)?;
                let plugging = format!("plugging in {} packages", b.debs.len());
                progress.stage(match hypervisor {
                    Some(_) => "sending the packages to the host",
                    None => &plugging,
                });
                let image = b.disk_image(&paths.pool_dir())?;
                let image = match hypervisor {
                    None => image,
                    // Made here, kept in that host's pool too (the next VM there with the
                    // same packages finds it there); attached from there.
                    Some(login) => {
                        let file = HostFile {
                            volume: image
                                .file_name()
                                .unwrap_or_default()
                                .to_string_lossy()
                                .into_owned(),
                            sha256: crate::digest::sha256_file(&image)?,
                            local: image,
                        };
                        let there =
                            remote_file::ensure_on_host(lv, &login, paths, &file, progress)?;
                        progress.stage(&plugging);
                        there
                    }
                };
                lv.resilient(|| hotplug::attach_readonly(&lv.conn(), vm, &image, BUNDLE_SERIAL))?;
                progress.stage(&format!("installing {} packages", b.debs.len()));
                let installed = scripts::run_text(session, &script, "installing the bundle");
                // Unplugged whatever happened: a re-run plugs it in again.
                let unplugged =
                    lv.resilient(|| hotplug::detach(&lv.conn(), vm, &image, BUNDLE_SERIAL));
                installed?;
                unplugged?;
                Ok(Some(format!(
                    "installed {} packages from the host's bundle ({})",
                    b.debs.len(),
                    crate::units::format_size(b.bytes)
                )))
            }
            PackagePlan::Online { packages, .. } => {
                let script = scripts::render(
                    scripts::INSTALL_ONLINE,
                    &serde_json::json!({ "packages": packages }),
                )?;
                if super::explaining() {
                    explained::guest_script(
                        crate::explain::Step::EngineOnline,
                        &script,
                        serde_json::json!({}),
                    )?;
                }
                if super::dry_run() {
                    return Ok(None);
                }
                progress.stage(&format!("installing {} packages online", packages.len()));
                scripts::run_text(session, &script, "installing from the guest's mirror")?;
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
pub(super) fn plan_packages(
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
            let status = sftp::read_file(session, "/var/lib/dpkg/status")?.ok_or_else(|| {
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
