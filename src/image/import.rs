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
    let cmdline = req.cmdline.clone().unwrap_or_else(|| {
        if direct_kernel {
            "root=/dev/vda rw console=ttyS0".into()
        } else {
            String::new()
        }
    });
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
