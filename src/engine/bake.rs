//! Docker baked into a template's root filesystem at build time (a golden image, as ischnura
//! and colima ship): the same bundle, the same install script, the same decision and the same
//! daemon.json as `engine install` on a clone of the plain template, so `engine install` on a
//! clone of the baked one finds everything in place and only verifies.

use crate::command::run_logged;
use crate::engine::addresses;
use crate::engine::bundle::{self, BundleRequest};
use crate::engine::config::{EngineIntent, EngineRecord, LogDriver, DAEMON_JSON_PATH, RECORD_PATH};
use crate::engine::decision::{self, GuestStorageFacts, StoragePolicy, StorageRequest};
use crate::engine::scripts;
use crate::error::{Context, Error, Result};
use crate::guest::facts::{Backing, EngineVersion, KernelVersion};
use crate::image::RootfsStep;
use crate::state::Paths;
use crate::template::EngineBake;
use std::path::Path;
use std::process::Command;

/// Where the .debs wait inside the root filesystem (apt's sandbox user must read them).
const ROOTFS_BUNDLE_DIR: &str = "/var/tmp/strata-bundle";
/// A clone's NIC: virtio-net on a libvirt bridge.
const TEMPLATE_MTU: u32 = 1500;
/// Debian 12 boots with the unified cgroup hierarchy.
const TEMPLATE_CGROUP: &str = "2";

/// Docker baked into a template's root filesystem: the template's [build.engine], for its
/// Debian suite, with strata's paths (the bundle cache). A build step of the image layer.
pub struct Bake<'a> {
    pub paths: &'a Paths,
    pub suite: &'a str,
    pub spec: &'a EngineBake,
}

impl RootfsStep for Bake<'_> {
    fn stage(&self) -> &str {
        "bake Docker"
    }

    fn inputs(&self) -> Vec<(&'static str, &'static str)> {
        scripts::BAKE_INPUTS.to_vec()
    }

    fn run(&self, rootfs: &Path, kernel: &str, log: &Path) -> Result<()> {
        bake(self.paths, rootfs, self.suite, kernel, self.spec, log).map(|_| ())
    }
}

/// Install docker.io into `rootfs` (Debian `suite`, kernel `kernel`) from the host's bundle
/// and configure it; returns the docker.io version baked in.
pub fn bake(
    paths: &Paths,
    rootfs: &Path,
    suite: &str,
    kernel: &str,
    spec: &EngineBake,
    log: &Path,
) -> Result<String> {
    let log_driver: LogDriver = spec.log_driver.parse()?;
    let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status"))
        .context("reading the image's dpkg status")?;
    let packages = vec!["docker.io".to_string(), "apparmor".to_string()];
    let bundle = bundle::prepare(
        &paths.cache.join("bundle").join(suite),
        &BundleRequest {
            release: suite,
            guest_status: &status,
            packages: &packages,
            engine_version: (!spec.version.is_empty()).then_some(spec.version.as_str()),
        },
    )?;
    let engine = EngineVersion::parse_required(&bundle.engine_version)?;
    let kernel = KernelVersion::parse(kernel)
        .ok_or_else(|| Error::failed(format!("cannot read the kernel version '{kernel}'")))?;
    // The image's root is ext4 made by mke2fs, whose filetype feature gives d_type.
    let decided = decision::decide(
        &StorageRequest {
            policy: StoragePolicy::Auto,
            data_disk: false,
            devicemapper: false,
        },
        &GuestStorageFacts {
            engine,
            kernel,
            root_fs: Backing::Ext4 { filetype: true },
        },
    )?;
    // A clone's own network is not known yet: Docker's ranges are the ones `engine install`
    // picks when nothing is in the way, and it moves them on a clone where something is.
    let intent = EngineIntent::new(
        &decided,
        engine,
        log_driver,
        addresses::choose(&[])?,
        TEMPLATE_MTU,
        TEMPLATE_CGROUP,
    );

    if !bundle.debs.is_empty() {
        let dir = rootfs.join(ROOTFS_BUNDLE_DIR.trim_start_matches('/'));
        std::fs::create_dir_all(&dir)?;
        let mut names = Vec::new();
        for deb in &bundle.debs {
            let name = deb
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            std::fs::copy(deb, dir.join(&name))
                .context(format!("copying {} into the image", deb.display()))?;
            names.push(name);
        }
        let script = scripts::render(
            scripts::INSTALL_BUNDLE,
            &serde_json::json!({ "device": "", "dir": ROOTFS_BUNDLE_DIR, "debs": names }),
        )?;
        run_logged(
            Command::new("chroot")
                .arg(rootfs)
                .args(["sh", "-c", &script]),
            log,
            "installing Docker into the image",
        )?;
    }
    write_file(rootfs, DAEMON_JSON_PATH, intent.daemon_json()?.as_bytes())?;
    let record = EngineRecord::new(intent, &decided, "baked", &bundle.engine_version);
    write_file(rootfs, RECORD_PATH, &serde_json::to_vec_pretty(&record)?)?;
    Ok(bundle.engine_version)
}

fn write_file(rootfs: &Path, absolute: &str, contents: &[u8]) -> Result<()> {
    let path = rootfs.join(absolute.trim_start_matches('/'));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, contents).context(format!("writing {absolute} in the image"))
}
