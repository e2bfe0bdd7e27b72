//! `import-image`: register a standard cloud image (with cloud-init) as a template. The image
//! is copied read-only into strata's pool with its sha256; VMs cloned from it get a
//! cloud-init NoCloud seed. Firmware boot by default; --kernel/--initrd for direct boot.

use crate::digest::sha256_file;
use crate::error::{Context, Error, ErrorKind, Result};
use crate::image::record::{write_record, BuildRecord};
use crate::state::{remove_dir_if_present, Paths};
use crate::template;
use crate::vm::{pool, Libvirt};
use serde::Deserialize;
use std::path::{Path, PathBuf};

const TEMPLATE_TOML: &str = include_str!("../../libvirt-templates/imported-template.toml.j2");
const DOMAIN_XML: &str = include_str!("../../libvirt-templates/imported-domain.xml.j2");

pub struct ImportRequest {
    pub name: String,
    pub from: PathBuf,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: Option<String>,
}

#[derive(Deserialize)]
struct QemuImgInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing_filename: Option<String>,
}

fn image_info(path: &Path) -> Result<QemuImgInfo> {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .context("running qemu-img info")?;
    if !out.status.success() {
        return Err(Error::bad_input(format!(
            "--from {}: qemu-img cannot read it: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .with_hint("give a qcow2 disk image"));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Import `req.from` as template `req.name`; on any failure nothing is left behind.
pub fn import(lv: &Libvirt, paths: &Paths, req: &ImportRequest) -> Result<BuildRecord> {
    crate::names::check_object_name("template", &req.name)?;
    let imported_dir = paths.state.join("imported").join(&req.name);
    if template::find(
        &template::search_path(&paths.state.join("imported")),
        &req.name,
    )
    .is_ok()
    {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("a template named '{}' exists already", req.name),
        )
        .with_hint("pick another name, or remove it with `strata template remove NAME`"));
    }
    if !req.from.is_file() {
        return Err(Error::not_found(format!(
            "--from {}: no such file",
            req.from.display()
        )));
    }
    let info = image_info(&req.from)?;
    if info.format != "qcow2" {
        return Err(Error::bad_input(format!(
            "--from {}: format is {}, not qcow2",
            req.from.display(),
            info.format
        ))
        .with_hint("convert it: qemu-img convert -O qcow2 IN OUT.qcow2"));
    }
    if let Some(backing) = info.backing_filename {
        return Err(Error::bad_input(format!(
            "--from {}: it has a backing file ({backing})",
            req.from.display()
        ))
        .with_hint("flatten it first: qemu-img convert -O qcow2 IN OUT.qcow2"));
    }
    if req.kernel.is_some() != req.initrd.is_some() {
        return Err(Error::bad_input("--kernel and --initrd go together")
            .with_hint("give both, or neither for firmware boot"));
    }
    let template_dir = paths.template_dir(&req.name);
    let volume = pool::template_volume_name(&req.name);
    let target = paths.pool_dir().join(&volume);
    let key = format!("template {}", req.name);
    paths.with_named_lock(&key, &|| {}, || {
        // Nothing of this name may exist: a built template's record or volume is someone's,
        // and every clone of it needs its backing file.
        let pool_handle = pool::ensure(&lv.conn(), paths)?;
        for (taken, what) in [
            (template_dir.exists(), template_dir.display().to_string()),
            (imported_dir.exists(), imported_dir.display().to_string()),
            (
                target.exists() || pool::find_volume(&pool_handle, &volume).is_some(),
                format!("volume {volume}"),
            ),
        ] {
            if taken {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("a template named '{}' exists already ({what})", req.name),
                )
                .with_hint("pick another name, or remove it with `strata template remove NAME`"));
            }
        }
        let mut made = Made::default();
        let result = place(paths, req, &info, &pool_handle, &mut made);
        if result.is_err() {
            made.undo(&pool_handle);
        }
        result
    })
}

/// For a VM host elsewhere: template `req.name` imported on this machine, from this very
/// image (and boot files, and command line) — the record of an earlier import of them, or a
/// new import. The bool says whether it was imported now. The same name holding anything
/// else is refused, as a local import is.
pub fn import_or_same(
    lv: &Libvirt,
    paths: &Paths,
    req: &ImportRequest,
) -> Result<(BuildRecord, bool)> {
    crate::names::check_object_name("template", &req.name)?;
    let imported_dir = paths.state.join("imported").join(&req.name);
    let record = crate::image::read_record(&paths.template_dir(&req.name))?;
    match record {
        Some(record) if imported_dir.exists() => {
            if same_import(&imported_dir, &record, req)? {
                Ok((record, false))
            } else {
                Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "a template named '{}' is imported on this machine already, from another image, kernel, initrd or command line",
                        req.name
                    ),
                )
                .with_hint("pick another name, or remove it here with `strata template remove NAME` (without --connect)"))
            }
        }
        _ => Ok((import(lv, paths, req)?, true)),
    }
}

/// Whether the import recorded in `imported_dir`/`record` was made from `req`'s files.
fn same_import(imported_dir: &Path, record: &BuildRecord, req: &ImportRequest) -> Result<bool> {
    if !req.from.is_file() {
        return Err(Error::not_found(format!(
            "--from {}: no such file",
            req.from.display()
        )));
    }
    if sha256_file(&req.from)? != record.sha256 {
        return Ok(false);
    }
    for (given, kept) in [(&req.kernel, &record.kernel), (&req.initrd, &record.initrd)] {
        match (given, kept) {
            (None, None) => {}
            (Some(given), Some(kept)) => {
                if sha256_file(given)? != sha256_file(kept)? {
                    return Ok(false);
                }
            }
            _ => return Ok(false),
        }
    }
    let manifest = template::Template::load(imported_dir)?.manifest;
    Ok(manifest.boot.cmdline.trim() == cmdline_of(req, req.kernel.is_some()).trim())
}

/// What one import made, newest last: only these are taken back when it fails.
#[derive(Default)]
struct Made {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
    volume: bool,
}

impl Made {
    fn undo(self, pool_handle: &virt::storage_pool::StoragePool) {
        for file in self.files.iter().rev() {
            let _ = std::fs::remove_file(file);
        }
        for dir in self.dirs.iter().rev() {
            let _ = remove_dir_if_present(dir);
        }
        if self.volume {
            let _ = crate::vm::pool::refresh(pool_handle);
        }
    }
}

/// Make a folder that must be new (the name is this run's from now on).
fn new_dir(dir: &Path, made: &mut Made) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).context(format!("creating {}", parent.display()))?;
    }
    std::fs::create_dir(dir).context(format!("creating {}", dir.display()))?;
    made.dirs.push(dir.to_path_buf());
    Ok(())
}

/// Copy the image (and kernel), register it read-only, write the manifest and the record.
fn place(
    paths: &Paths,
    req: &ImportRequest,
    info: &QemuImgInfo,
    pool_handle: &virt::storage_pool::StoragePool,
    made: &mut Made,
) -> Result<BuildRecord> {
    let template_dir = paths.template_dir(&req.name);
    let imported_dir = paths.state.join("imported").join(&req.name);
    let volume = pool::template_volume_name(&req.name);
    new_dir(&template_dir, made)?;
    new_dir(&imported_dir, made)?;
    let (kernel, initrd) = match (&req.kernel, &req.initrd) {
        (Some(k), Some(i)) => {
            let (kt, it) = (
                template_dir.join("vmlinuz"),
                template_dir.join("initrd.img"),
            );
            std::fs::copy(k, &kt).context(format!("copying {}", k.display()))?;
            std::fs::copy(i, &it).context(format!("copying {}", i.display()))?;
            (Some(kt), Some(it))
        }
        _ => (None, None),
    };
    let staging = template_dir.join("import.qcow2");
    std::fs::copy(&req.from, &staging).context(format!("copying {}", req.from.display()))?;
    let sha256 = sha256_file(&staging)?;
    let file_size = std::fs::metadata(&staging)?.len();
    made.files.push(paths.pool_dir().join(&volume));
    made.volume = true;
    pool::register_template_image(pool_handle, &paths.pool_dir(), &volume, &staging)?;
    let manifest = manifest_text(req, kernel.is_some(), info.virtual_size)?;
    std::fs::write(imported_dir.join("template.toml"), manifest)?;
    std::fs::write(imported_dir.join("domain.xml.j2"), DOMAIN_XML)?;
    template::Template::load(&imported_dir)?;
    let record = BuildRecord {
        template: req.name.clone(),
        recipe_hash: format!("imported:{sha256}"),
        sha256,
        volume,
        virtual_size: info.virtual_size,
        file_size,
        kernel,
        initrd,
        built: crate::units::now_rfc3339(),
        build_seconds: 0.0,
    };
    write_record(&template_dir, &record)?;
    Ok(record)
}

/// The imported template's template.toml: every value TOML-escaped (a path or command line
/// with a quote or a newline stays one value).
fn manifest_text(req: &ImportRequest, direct_kernel: bool, virtual_size: u64) -> Result<String> {
    let cmdline = cmdline_of(req, direct_kernel);
    crate::template::render_str(
        "template.toml.j2",
        TEMPLATE_TOML,
        &serde_json::json!({
            "name": req.name,
            "source": req.from.display().to_string(),
            "boot_mode": if direct_kernel { "direct-kernel" } else { "firmware" },
            "cmdline": cmdline,
            "disk": format!("{}", virtual_size.max(8 << 30)),
        }),
    )
}

/// The kernel command line an import of `req` boots with.
fn cmdline_of(req: &ImportRequest, direct_kernel: bool) -> String {
    req.cmdline.clone().unwrap_or_else(|| {
        if direct_kernel {
            "root=/dev/vda rw console=ttyS0".into()
        } else {
            String::new()
        }
    })
}

/// Remove a template: its volume, kernel, record (and manifest, if imported). Refused while
/// VMs are cloned from it.
pub fn remove(lv: &Libvirt, paths: &Paths, name: &str) -> Result<()> {
    crate::names::check_object_name("template", name)?;
    // Not while a build or an import of it runs (they hold this lock).
    paths.with_named_lock(&format!("template {name}"), &|| {}, || {
        remove_now(lv, paths, name)
    })
}

fn remove_now(lv: &Libvirt, paths: &Paths, name: &str) -> Result<()> {
    crate::vm::domain::refuse_while_used(&lv.conn(), &format!("template '{name}'"), |vm| {
        vm.template == name
    })?;
    let template_dir = paths.template_dir(name);
    let imported_dir = paths.state.join("imported").join(name);
    let record = crate::image::read_record(&template_dir)?;
    if record.is_none() && !imported_dir.exists() {
        return Err(
            Error::not_found(format!("template '{name}' is neither built nor imported"))
                .with_hint("`strata template list` shows templates"),
        );
    }
    let pool_handle = pool::ensure(&lv.conn(), paths)?;
    if let Some(vol) = pool::find_volume(&pool_handle, &pool::template_volume_name(name)) {
        vol.delete(0)?;
    }
    remove_dir_if_present(&template_dir)?;
    remove_dir_if_present(&imported_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An import recorded in a scratch folder, as `place` leaves it: the manifest, the
    /// record's sha256 of the image, a copy of the kernel and initrd.
    fn recorded(dir: &Path, req: &ImportRequest) -> BuildRecord {
        std::fs::create_dir_all(dir).unwrap();
        let copy = |from: &Option<PathBuf>, name: &str| {
            from.as_ref().map(|f| {
                let to = dir.join(name);
                std::fs::copy(f, &to).unwrap();
                to
            })
        };
        let text = manifest_text(req, req.kernel.is_some(), 1 << 30).unwrap();
        std::fs::write(dir.join("template.toml"), text).unwrap();
        std::fs::write(dir.join("domain.xml.j2"), DOMAIN_XML).unwrap();
        BuildRecord {
            template: req.name.clone(),
            recipe_hash: String::new(),
            sha256: sha256_file(&req.from).unwrap(),
            volume: String::new(),
            virtual_size: 1 << 30,
            file_size: 0,
            kernel: copy(&req.kernel, "vmlinuz"),
            initrd: copy(&req.initrd, "initrd.img"),
            built: String::new(),
            build_seconds: 0.0,
        }
    }

    #[test]
    fn an_import_is_the_same_only_from_the_same_image_boot_files_and_command_line() {
        let dir = std::env::temp_dir().join(format!("strata-import-{}", std::process::id()));
        let files = dir.join("files");
        std::fs::create_dir_all(&files).unwrap();
        let file = |name: &str, bytes: &str| {
            let path = files.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let req = ImportRequest {
            name: "cloud".into(),
            from: file("image.qcow2", "an image"),
            kernel: Some(file("vmlinuz", "a kernel")),
            initrd: Some(file("initrd", "an initrd")),
            cmdline: None,
        };
        let imported = dir.join("cloud");
        let record = recorded(&imported, &req);
        assert!(same_import(&imported, &record, &req).unwrap());
        let other_image = ImportRequest {
            from: file("other.qcow2", "another image"),
            ..recorded_request(&req)
        };
        assert!(!same_import(&imported, &record, &other_image).unwrap());
        let other_kernel = ImportRequest {
            kernel: Some(file("vmlinuz2", "another kernel")),
            ..recorded_request(&req)
        };
        assert!(!same_import(&imported, &record, &other_kernel).unwrap());
        let firmware = ImportRequest {
            kernel: None,
            initrd: None,
            ..recorded_request(&req)
        };
        assert!(!same_import(&imported, &record, &firmware).unwrap());
        let other_cmdline = ImportRequest {
            cmdline: Some("root=/dev/vda ro".into()),
            ..recorded_request(&req)
        };
        assert!(!same_import(&imported, &record, &other_cmdline).unwrap());
        let missing = ImportRequest {
            from: files.join("gone.qcow2"),
            ..recorded_request(&req)
        };
        assert!(same_import(&imported, &record, &missing).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn recorded_request(req: &ImportRequest) -> ImportRequest {
        ImportRequest {
            name: req.name.clone(),
            from: req.from.clone(),
            kernel: req.kernel.clone(),
            initrd: req.initrd.clone(),
            cmdline: req.cmdline.clone(),
        }
    }

    #[test]
    fn the_manifest_keeps_quotes_and_newlines_in_their_values() {
        let req = ImportRequest {
            name: "cloud".into(),
            from: PathBuf::from("/srv/images/it's \"new\"\n[boot]\nmode = \"x\".qcow2"),
            kernel: None,
            initrd: None,
            cmdline: Some("root=/dev/vda console=\"ttyS0\"\nrw".into()),
        };
        let text = manifest_text(&req, true, 1 << 30).unwrap();
        let manifest: crate::template::TemplateManifest =
            crate::template::parse_toml(Path::new("template.toml"), &text).unwrap();
        assert_eq!(
            manifest.description,
            format!("imported from {}", req.from.display())
        );
        assert_eq!(manifest.boot.cmdline, req.cmdline.unwrap());
        assert_eq!(manifest.boot.mode, crate::template::BootMode::DirectKernel);
    }
}
