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
    crate::vm::network::validate_name("template", &req.name)?;
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
    let result = (|| {
        let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;
        if pool::find_volume(&pool_handle, &volume).is_some() {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!("volume {volume} exists in pool already"),
            )
            .with_hint("remove it with `strata template remove NAME`"));
        }
        paths.ensure_dir(&template_dir)?;
        paths.ensure_dir(&imported_dir)?;
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
        pool::register_template_image(&pool_handle, &paths.pool_dir(), &volume, &staging)?;

        let manifest = crate::template::render_str(
            "template.toml.j2",
            TEMPLATE_TOML,
            &serde_json::json!({
                "name": req.name,
                "source": req.from.display().to_string(),
                "boot_mode": if kernel.is_some() { "direct-kernel" } else { "firmware" },
                "cmdline": req.cmdline.clone().unwrap_or_else(|| if kernel.is_some() { "root=/dev/vda rw console=ttyS0".into() } else { String::new() }),
                "disk": format!("{}", info.virtual_size.max(8 << 30)),
            }),
        )?;
        std::fs::write(imported_dir.join("template.toml"), manifest)?;
        std::fs::write(imported_dir.join("domain.xml.j2"), DOMAIN_XML)?;
        template::Template::load(&imported_dir)?;
        let record = BuildRecord {
            template: req.name.clone(),
            recipe_hash: format!("imported:{sha256}"),
            sha256,
            volume: volume.clone(),
            virtual_size: info.virtual_size,
            file_size,
            kernel,
            initrd,
            built: crate::units::now_rfc3339(),
            build_seconds: 0.0,
        };
        write_record(&template_dir, &record)?;
        Ok(record)
    })();
    if result.is_err() {
        let _ = remove_dir_if_present(&imported_dir);
        let _ = remove_dir_if_present(&template_dir);
        if target.exists() {
            let _ = std::fs::remove_file(&target);
            if let Ok(p) = pool::ensure(&lv.conn, &paths.pool_dir()) {
                let _ = p.refresh(0);
            }
        }
    }
    result
}

/// Remove a template: its volume, kernel, record (and manifest, if imported). Refused while
/// VMs are cloned from it.
pub fn remove(lv: &Libvirt, paths: &Paths, name: &str) -> Result<()> {
    crate::vm::domain::refuse_while_used(&lv.conn, &format!("template '{name}'"), |vm| {
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
    let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;
    if let Some(vol) = pool::find_volume(&pool_handle, &pool::template_volume_name(name)) {
        vol.delete(0)?;
    }
    remove_dir_if_present(&template_dir)?;
    remove_dir_if_present(&imported_dir)
}
