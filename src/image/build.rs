//! The template build pipeline: debootstrap, customise the root filesystem (overlay, units,
//! empty machine-id, no host keys, small initrd), mke2fs -d, qemu-img convert, register the
//! qcow2 read-only in the pool, record it. Unchanged recipe + existing volume = no-op.

use crate::command::{on_path, run_logged};
use crate::digest::sha256_file;
use crate::error::{Context, Error, Result};
use crate::image::record::{read_record, write_record, BuildRecord};
use crate::progress::Progress;
use crate::state::{remove_dir_if_present, Paths};
use crate::template::{BootMode, BuildRecipe, Template};
use crate::vm::{pool, Libvirt};
use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Bump when the pipeline below changes what it produces.
const PIPELINE_VERSION: &str = "strata-image-build/1";

/// A step the build runs on the customised root filesystem before it is packed, e.g. Docker
/// baked in by the engine layer (composed by lifecycle/template_build.rs). What decides its
/// result is part of the recipe hash, so changing it rebuilds the template.
pub trait RootfsStep {
    /// The progress stage, e.g. "bake Docker".
    fn stage(&self) -> &str;
    /// Named texts (scripts, templates) that decide what the step produces.
    fn inputs(&self) -> Vec<(&'static str, &'static str)>;
    /// Change `rootfs`, whose newest kernel is `kernel`; tools log to `log`.
    fn run(&self, rootfs: &Path, kernel: &str, log: &Path) -> Result<()>;
}

pub enum BuildOutcome {
    /// Nothing changed since the last build.
    UpToDate(BuildRecord),
    Built(BuildRecord),
}

/// Build `template` unless an identical build is registered already. `refresh` ignores both
/// that and the cached debootstrap result, fetching current packages. `extra` runs on the
/// customised root filesystem (the template's [build.engine], baked in).
pub fn build(
    lv: &Libvirt,
    paths: &Paths,
    template: &Template,
    refresh: bool,
    extra: Option<&dyn RootfsStep>,
    progress: &Progress,
) -> Result<BuildOutcome> {
    // Two builds of one template would share its work folder and staged image; the second
    // waits, then finds the template up to date. The key is the one import-image takes.
    let key = format!("template {}", template.name());
    paths.with_named_lock(
        &key,
        &|| progress.stage("waiting for another build of this template"),
        || build_now(lv, paths, template, refresh, extra, progress),
    )
}

fn build_now(
    lv: &Libvirt,
    paths: &Paths,
    template: &Template,
    refresh: bool,
    extra: Option<&dyn RootfsStep>,
    progress: &Progress,
) -> Result<BuildOutcome> {
    let recipe = template.manifest.build.as_ref().ok_or_else(|| {
        Error::bad_input(format!(
            "template '{}' has no [build] recipe (it was imported)",
            template.name()
        ))
        .with_hint("imported templates are registered with `strata import-image`, not built")
    })?;
    let mirror = resolve_mirror(recipe);
    let recipe_hash = recipe_hash(template, &mirror, extra)?;
    let out_dir = paths.template_dir(template.name());
    let volume_name = pool::template_volume_name(template.name());
    let pool_handle = pool::ensure(&lv.conn(), paths)?;

    if let Some(record) = read_record(&out_dir)?.filter(|_| !refresh) {
        let files_present = [&record.kernel, &record.initrd]
            .iter()
            .all(|f| f.as_ref().map(|p| p.is_file()).unwrap_or(true));
        if record.recipe_hash == recipe_hash
            && files_present
            && pool::find_volume(&pool_handle, &volume_name).is_some()
        {
            return Ok(BuildOutcome::UpToDate(record));
        }
    }
    refuse_while_in_use(lv, template.name())?;
    preflight()?;

    let started = Instant::now();
    paths.ensure_dir(&out_dir)?;
    paths.ensure_dir(&paths.deb_cache())?;
    let work = out_dir.join("work");
    remove_dir_if_present(&work)?;
    std::fs::create_dir_all(&work)?;
    let built = make_image(
        paths, template, recipe, &mirror, refresh, extra, &work, progress,
    )
    .and_then(|image| {
        progress.stage("sha256 + register");
        register(paths, &pool_handle, &volume_name, &out_dir, image)
    });
    // Said while the work folder is there: it is what filled the disk, if anything did.
    let built = built.map_err(|e| {
        crate::state::explain_full(
            e,
            &format!("the build folder of template '{}'", template.name()),
            &out_dir,
        )
    });
    // The work folder (a whole root filesystem) never outlives the build, whatever happened;
    // the template as it was stays until the new one is complete.
    let _ = remove_dir_if_present(&work);
    let (sha256, file_size, kernel, initrd) = built?;
    let record = BuildRecord {
        template: template.name().to_string(),
        recipe_hash,
        sha256,
        volume: volume_name,
        virtual_size: crate::units::parse_size("build.size", &recipe.size)?,
        file_size,
        kernel,
        initrd,
        built: crate::units::now_rfc3339(),
        build_seconds: started.elapsed().as_secs_f64(),
    };
    write_record(&out_dir, &record)?;
    Ok(BuildOutcome::Built(record))
}

/// What a build made in its work folder: the qcow2, and the kernel and initrd for direct boot.
struct MadeImage {
    qcow2: PathBuf,
    boot_files: Option<(PathBuf, PathBuf)>,
}

/// debootstrap (or the cached result), customise, the extra step, then mke2fs -d and qcow2,
/// all inside `work`.
#[allow(clippy::too_many_arguments)]
fn make_image(
    paths: &Paths,
    template: &Template,
    recipe: &BuildRecipe,
    mirror: &str,
    refresh: bool,
    extra: Option<&dyn RootfsStep>,
    work: &Path,
    progress: &Progress,
) -> Result<MadeImage> {
    let log = work.parent().unwrap_or(work).join("build.log");
    let _ = std::fs::remove_file(&log);
    let rootfs = work.join("rootfs");
    let base = base_tarball(paths, recipe, mirror)?;
    if base.is_file() && !refresh {
        progress.stage("unpack cached debootstrap");
        std::fs::create_dir_all(&rootfs)?;
        run_logged(
            Command::new("tar")
                .args(TAR_FLAGS)
                .arg("-xf")
                .arg(&base)
                .arg("-C")
                .arg(&rootfs),
            &log,
            "unpacking the cached debootstrap result",
        )?;
    } else {
        progress.stage("debootstrap");
        debootstrap(recipe, mirror, &paths.deb_cache(), &rootfs, &log)?;
        progress.stage("cache debootstrap result");
        let partial = base.with_extension("tar.partial");
        run_logged(
            Command::new("tar")
                .args(TAR_FLAGS)
                .arg("-cf")
                .arg(&partial)
                .arg("-C")
                .arg(&rootfs)
                .arg("."),
            &log,
            "caching the debootstrap result",
        )
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
        std::fs::rename(&partial, &base)?;
    }
    progress.stage("customise");
    customise(template, recipe, &rootfs, &log)?;
    if let Some(step) = extra {
        progress.stage(step.stage());
        let kernel = kernel_versions(&rootfs)?.pop().unwrap_or_default();
        step.run(&rootfs, &kernel, &log)?;
    }
    let boot_files = if template.manifest.boot.mode == BootMode::DirectKernel {
        Some(keep_kernel(&rootfs, work)?)
    } else {
        None
    };
    progress.stage("mke2fs -d");
    let size = crate::units::parse_size("build.size", &recipe.size)?;
    let raw = work.join("root.raw");
    run_logged(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", "strata-root", "-d"])
            .arg(&rootfs)
            .arg(&raw)
            .arg(format!("{}k", size / 1024)),
        &log,
        "making the ext4 filesystem",
    )?;
    progress.stage("qemu-img convert");
    let qcow2 = work.join("template.qcow2");
    run_logged(
        Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
        &log,
        "converting to qcow2",
    )?;
    std::fs::remove_file(&raw)?;
    Ok(MadeImage { qcow2, boot_files })
}

/// Put a finished image and its boot files in place of the template's previous ones (no VM is
/// cloned from those: checked before the build). Returns sha256, file size, kernel, initrd.
fn register(
    paths: &Paths,
    pool_handle: &virt::storage_pool::StoragePool,
    volume_name: &str,
    out_dir: &Path,
    image: MadeImage,
) -> Result<(String, u64, Option<PathBuf>, Option<PathBuf>)> {
    let sha256 = sha256_file(&image.qcow2)?;
    let file_size = std::fs::metadata(&image.qcow2)?.len();
    // Into the pool's folder under a name libvirt does not list, then over the old one.
    let staged = paths.pool_dir().join(format!(".{volume_name}.new"));
    std::fs::rename(&image.qcow2, &staged).map_err(|e| {
        crate::state::explain_full(
            Error::from(e).context(format!("moving the image to {}", staged.display())),
            &pool::describe_space(pool_handle, paths),
            &paths.pool_dir(),
        )
    })?;
    let replaced = (|| {
        if let Some(old) = pool::find_volume(pool_handle, volume_name) {
            old.delete(0)?;
        }
        pool::register_template_image(pool_handle, &paths.pool_dir(), volume_name, &staged)
    })();
    if let Err(e) = replaced {
        let _ = std::fs::remove_file(&staged);
        return Err(e);
    }
    let (kernel, initrd) = match image.boot_files {
        Some((k, i)) => {
            let (kt, it) = (out_dir.join("vmlinuz"), out_dir.join("initrd.img"));
            std::fs::rename(&k, &kt)?;
            std::fs::rename(&i, &it)?;
            (Some(kt), Some(it))
        }
        None => (None, None),
    };
    Ok((sha256, file_size, kernel, initrd))
}

fn preflight() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            Error::bad_input("building a template needs root (debootstrap, chroot)")
                .with_hint("run `sudo strata template build ...`"),
        );
    }
    for tool in ["debootstrap", "mke2fs", "qemu-img", "chroot"] {
        if !on_path(tool) && !Path::new("/usr/sbin").join(tool).exists() {
            return Err(Error::not_found(format!("{tool} is not installed"))
                .with_hint("./scripts/setup installs it"));
        }
    }
    Ok(())
}

/// VMs are thin clones of the template volume: replacing it under them would corrupt them.
fn refuse_while_in_use(lv: &Libvirt, template: &str) -> Result<()> {
    crate::vm::domain::refuse_while_used(
        &lv.conn(),
        &format!("template '{template}' changed, and its current image"),
        |vm| vm.template == template,
    )
}

/// The Debian mirror: STRATA_DEBIAN_MIRROR, the recipe's, the host apt's, deb.debian.org.
fn resolve_mirror(recipe: &BuildRecipe) -> String {
    if let Ok(m) = std::env::var("STRATA_DEBIAN_MIRROR") {
        if !m.is_empty() {
            return m;
        }
    }
    if !recipe.mirror.is_empty() {
        return recipe.mirror.clone();
    }
    let deb822 =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let legacy = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    host_mirror(&deb822, &legacy).unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

/// The first non-security Debian archive URI in the host's apt sources (pure).
pub fn host_mirror(deb822: &str, legacy: &str) -> Option<String> {
    let from_deb822 = deb822.lines().find_map(|l| {
        let uri = l.trim().strip_prefix("URIs:")?.split_whitespace().next()?;
        (!uri.contains("security")).then(|| uri.to_string())
    });
    from_deb822.or_else(|| {
        legacy.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            if f.next()? != "deb" {
                return None;
            }
            let uri = f.find(|x| !x.starts_with('['))?;
            (!uri.contains("security")).then(|| uri.to_string())
        })
    })
}

/// sha256 over the [build] recipe, every overlay file (path, mode, bytes), the mirror and the
/// pipeline version: equal hashes mean an identical image would come out. Boot settings and
/// VM defaults are not in it: changing them needs no rebuild.
fn recipe_hash(
    template: &Template,
    mirror: &str,
    extra: Option<&dyn RootfsStep>,
) -> Result<String> {
    let mut hasher = Sha256::new();
    hasher.update(PIPELINE_VERSION);
    hasher.update(mirror);
    hasher.update(serde_json::to_vec(&template.manifest.build)?);
    for (name, text) in extra.map(|step| step.inputs()).unwrap_or_default() {
        hasher.update(name);
        hasher.update(text);
    }
    if let Some(overlay) = template
        .manifest
        .build
        .as_ref()
        .and_then(|b| b.overlay.as_ref())
    {
        let root = template.dir.join(overlay);
        let mut files = Vec::new();
        walk(&root, &mut files)?;
        files.sort();
        for file in files {
            // Relative paths: the same template elsewhere on disk is the same recipe.
            let relative = file.strip_prefix(&root).unwrap_or(&file);
            hasher.update(relative.to_string_lossy().as_bytes());
            let meta = std::fs::symlink_metadata(&file)?;
            hasher.update(meta.permissions().mode().to_le_bytes());
            if meta.is_file() {
                hasher.update(std::fs::read(&file)?);
            }
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).context(format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// Owners as numbers, permissions, and extended attributes (file capabilities such as
/// ping's cap_net_raw) survive the round trip.
const TAR_FLAGS: [&str; 4] = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "-p"];

/// Where the untouched debootstrap result for this suite, variant, package set and mirror is
/// cached, so that a rebuild which changes only the template's own files or units takes
/// seconds instead of a minute. `template build --refresh` replaces it.
fn base_tarball(paths: &Paths, recipe: &BuildRecipe, mirror: &str) -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    for part in [
        recipe.suite.as_str(),
        recipe.variant.as_str(),
        mirror,
        PIPELINE_VERSION,
    ] {
        hasher.update(part);
        hasher.update([0]);
    }
    for package in &recipe.packages {
        hasher.update(package);
        hasher.update([0]);
    }
    let key = format!("{:x}", hasher.finalize());
    let dir = paths.cache.join("rootfs");
    paths.ensure_dir(&dir)?;
    Ok(dir.join(format!(
        "{}-{}-{}.tar",
        recipe.suite,
        recipe.variant,
        &key[..16]
    )))
}

fn debootstrap(
    recipe: &BuildRecipe,
    mirror: &str,
    cache: &Path,
    rootfs: &Path,
    log: &Path,
) -> Result<()> {
    run_logged(
        Command::new("debootstrap")
            .arg(format!("--variant={}", recipe.variant))
            .arg(format!("--include={}", recipe.packages.join(",")))
            .arg(format!("--cache-dir={}", cache.display()))
            .arg(&recipe.suite)
            .arg(rootfs)
            .arg(mirror),
        log,
        "debootstrap",
    )
}

fn chroot(rootfs: &Path, args: &[&str], log: &Path, what: &str) -> Result<()> {
    run_logged(Command::new("chroot").arg(rootfs).args(args), log, what)
}

fn customise(template: &Template, recipe: &BuildRecipe, rootfs: &Path, log: &Path) -> Result<()> {
    if let Some(overlay) = &recipe.overlay {
        let source = template.dir.join(overlay);
        run_logged(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", source.display()))
                .arg(rootfs),
            log,
            "copying the template's files into the image",
        )?;
    }
    // Each clone must make its own machine-id (and so its own DHCP identity).
    std::fs::write(rootfs.join("etc/machine-id"), "")?;
    let _ = std::fs::remove_file(rootfs.join("var/lib/dbus/machine-id"));
    // Host keys come from strata at first boot; none may be shared by clones.
    for entry in std::fs::read_dir(rootfs.join("etc/ssh"))? {
        let path = entry?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ssh_host_"))
        {
            std::fs::remove_file(path)?;
        }
    }
    if !recipe.enable.is_empty() {
        let mut args = vec!["systemctl", "enable"];
        args.extend(recipe.enable.iter().map(String::as_str));
        chroot(rootfs, &args, log, "enabling units")?;
    }
    if !recipe.mask.is_empty() {
        let mut args = vec!["systemctl", "mask"];
        args.extend(recipe.mask.iter().map(String::as_str));
        chroot(rootfs, &args, log, "masking units")?;
    }
    // Rebuild the initrd with the template's initramfs settings (update-initramfs is
    // switched off in the image, so call mkinitramfs directly).
    for version in kernel_versions(rootfs)? {
        let target = format!("/boot/initrd.img-{version}");
        chroot(
            rootfs,
            &["mkinitramfs", "-o", &target, &version],
            log,
            "building the initrd",
        )?;
    }
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let dir = rootfs.join(dir);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.path().is_file() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }
    Ok(())
}

fn kernel_versions(rootfs: &Path) -> Result<Vec<String>> {
    let mut versions: Vec<String> = std::fs::read_dir(rootfs.join("boot"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("vmlinuz-")
                .map(str::to_string)
        })
        .collect();
    versions.sort();
    Ok(versions)
}

/// Copy the newest kernel and its initrd beside the image for direct kernel boot.
fn keep_kernel(rootfs: &Path, out_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let version = kernel_versions(rootfs)?.pop().ok_or_else(|| {
        Error::failed("the image has no kernel in /boot")
            .with_hint("add a kernel package (e.g. linux-image-cloud-amd64) to build.packages")
    })?;
    let kernel = out_dir.join("vmlinuz");
    let initrd = out_dir.join("initrd.img");
    std::fs::copy(rootfs.join(format!("boot/vmlinuz-{version}")), &kernel)?;
    std::fs::copy(rootfs.join(format!("boot/initrd.img-{version}")), &initrd)?;
    for f in [&kernel, &initrd] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok((kernel, initrd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_mirror_from_deb822_skips_security() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n";
        assert_eq!(
            host_mirror(deb822, ""),
            Some("http://mirror.example/debian".into())
        );
    }

    #[test]
    fn host_mirror_from_legacy_sources_list() {
        let legacy = "# comment\ndeb [arch=amd64] http://ftp.de.debian.org/debian bookworm main\n";
        assert_eq!(
            host_mirror("", legacy),
            Some("http://ftp.de.debian.org/debian".into())
        );
        assert_eq!(host_mirror("", ""), None);
    }
}
