//! The template.toml schema (plain serde data) and its parser, whose errors name the file,
//! the line and the field. A manifest may `extends = "other"`: it then starts from that
//! sibling template's manifest and changes only what it names (the golden-image variant
//! debian-12-docker is debian-12 plus Docker baked in).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateManifest {
    /// The sibling template this one starts from (resolved at load time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    pub name: String,
    pub description: String,
    /// How to build the image from packages; absent for imported images.
    pub build: Option<BuildRecipe>,
    pub boot: BootSpec,
    pub vm: VmDefaults,
    pub guest: GuestSpec,
}

/// A debootstrap recipe: everything that decides the image's bytes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuildRecipe {
    pub suite: String,
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Debian mirror; empty means the one the host's apt uses.
    #[serde(default)]
    pub mirror: String,
    pub packages: Vec<String>,
    /// Size of the root filesystem inside the image (a VM's disk may be larger).
    pub size: String,
    /// Folder (relative to the template) copied over the root filesystem.
    #[serde(default)]
    pub overlay: Option<String>,
    /// systemd units enabled / masked in the image.
    #[serde(default)]
    pub enable: Vec<String>,
    #[serde(default)]
    pub mask: Vec<String>,
    /// Docker installed into the image at build time (a golden image), as `engine install`
    /// would install it. Left out of the serialised recipe when absent, so recipes without
    /// it keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineBake>,
}

/// `[build.engine]`: which docker.io and which log driver to bake in.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineBake {
    /// docker.io version, exact or an upstream prefix; empty: the release's.
    #[serde(default)]
    pub version: String,
    #[serde(default = "default_log_driver")]
    pub log_driver: String,
}

fn default_log_driver() -> String {
    "local".into()
}

fn default_variant() -> String {
    "minbase".into()
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    pub mode: BootMode,
    /// Kernel command line for direct kernel boot.
    #[serde(default)]
    pub cmdline: String,
    /// Extra kernel arguments when the VM runs under TCG (software emulation).
    #[serde(default)]
    pub tcg_cmdline: String,
    /// The CPU model QEMU emulates under TCG (a libvirt model name, e.g. "Nehalem"); empty:
    /// `maximum`, every feature TCG has. Under KVM the host's CPU is passed through.
    #[serde(default)]
    pub tcg_cpu: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// Kernel and initrd kept beside the image, booted by qemu directly (no bootloader).
    DirectKernel,
    /// The image boots itself through firmware and its own bootloader (cloud images).
    Firmware,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmDefaults {
    pub cpus: u32,
    pub memory: String,
    pub disk: String,
    /// The user strata logs in as.
    pub user: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    pub inject: InjectMethod,
}

/// How hostname, authorized key and host key reach a new guest without ISO tools.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InjectMethod {
    /// SMBIOS OEM strings read by the template's own first-boot unit.
    Smbios,
    /// A cloud-init NoCloud seed (for standard cloud images).
    CloudInit,
}

impl TemplateManifest {
    pub fn load(path: &Path) -> Result<TemplateManifest> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
        let table: toml::Table = parse_toml(path, &text)?;
        let manifest: TemplateManifest = match table.get("extends").cloned() {
            None => parse_toml(path, &text)?,
            Some(parent) => {
                let parent = parent.as_str().ok_or_else(|| {
                    Error::bad_input(format!(
                        "{}: extends must be a template name",
                        path.display()
                    ))
                    .with_hint("e.g. extends = \"debian-12\"")
                })?;
                extend(path, parent, table)?
            }
        };
        manifest.validate(path)?;
        Ok(manifest)
    }

    /// What serde cannot check: the sizes are sizes and a direct-kernel boot has a command
    /// line. `path` names the manifest in errors.
    pub fn validate(&self, path: &Path) -> Result<()> {
        for (field, value) in [("vm.memory", &self.vm.memory), ("vm.disk", &self.vm.disk)] {
            crate::units::parse_size(field, value).map_err(|e| e.context(path.display()))?;
        }
        if let Some(build) = &self.build {
            crate::units::parse_size("build.size", &build.size)
                .map_err(|e| e.context(path.display()))?;
        }
        if self.boot.mode == BootMode::DirectKernel && self.boot.cmdline.is_empty() {
            return Err(Error::bad_input(format!(
                "{}: boot.cmdline is empty but boot.mode is direct-kernel",
                path.display()
            ))
            .with_hint(
                "give the kernel command line, e.g. cmdline = \"root=/dev/vda rw console=ttyS0\"",
            ));
        }
        if !is_cpu_model_name(&self.boot.tcg_cpu) {
            return Err(Error::bad_input(format!(
                "{}: boot.tcg_cpu '{}' is not a CPU model name",
                path.display(),
                self.boot.tcg_cpu
            ))
            .with_hint("a model libvirt knows (`virsh cpu-models x86_64`), e.g. tcg_cpu = \"Nehalem\", or empty for every feature TCG has"));
        }
        Ok(())
    }
}

/// Empty, or a name as libvirt's CPU models are spelled (letters, digits, `-`, `_`, `.`):
/// the name goes into the domain XML.
fn is_cpu_model_name(name: &str) -> bool {
    name.is_empty()
        || (name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// The manifest `path` (already parsed as `child`) laid over its sibling `parent`: tables
/// merge key by key, anything else in the child replaces the parent's value. The parent's
/// overlay folder stays the parent's (its path is made relative to the child).
fn extend(path: &Path, parent: &str, mut child: toml::Table) -> Result<TemplateManifest> {
    crate::names::check_object_name("template", parent)
        .map_err(|e| e.context(format!("{}: extends", path.display())))?;
    let parent_path = path
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(parent).join("template.toml"))
        .unwrap_or_default();
    let parent_text = std::fs::read_to_string(&parent_path).map_err(|e| {
        Error::from(e)
            .context(format!(
                "{}: extends = \"{parent}\": reading {}",
                path.display(),
                parent_path.display()
            ))
            .with_hint("extends names a template in the same folder as this one")
    })?;
    let mut base: toml::Table = parse_toml(&parent_path, &parent_text)?;
    if base.contains_key("extends") {
        return Err(Error::bad_input(format!(
            "{}: extends = \"{parent}\", which extends another template",
            path.display()
        ))
        .with_hint("extend a template that stands on its own (one level only)"));
    }
    if let Some(toml::Value::String(overlay)) = base
        .get_mut("build")
        .and_then(|b| b.as_table_mut())
        .and_then(|b| b.get_mut("overlay"))
    {
        *overlay = format!("../{parent}/{overlay}");
    }
    child.insert("extends".into(), toml::Value::String(parent.to_string()));
    merge(&mut base, child);
    toml::Value::Table(base)
        .try_into()
        .map_err(|e: toml::de::Error| {
            Error::bad_input(format!(
                "{} (extending {parent}): {}",
                path.display(),
                e.message()
            ))
            .with_hint("fix the field named above; nothing was changed")
        })
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Parse TOML into `T`; on error say `file:line:column: message`.
pub fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let place: (String, String) = match e.span() {
            Some(span) => {
                let (line, column) = line_and_column(text, span.start);
                let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                (
                    format!("{}:{line}:{column}", path.display()),
                    format!(" (in `{source}`)"),
                )
            }
            None => (path.display().to_string(), String::new()),
        };
        Error::bad_input(format!("{}: {}{}", place.0, e.message(), place.1))
            .with_hint("fix the field named above; nothing was changed")
    })
}

/// 1-based line and column of a byte offset.
/// The 1-based line and column of byte `offset` in `text` (for errors naming file:line).
pub fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
description = "test"
[build]
suite = "bookworm"
packages = ["systemd"]
size = "2G"
[boot]
mode = "direct-kernel"
cmdline = "root=/dev/vda"
[vm]
cpus = 1
memory = "512M"
disk = "4G"
user = "root"
[guest]
inject = "smbios"
"#;

    #[test]
    fn parses_a_full_manifest() {
        let m: TemplateManifest = parse_toml(Path::new("t.toml"), GOOD).unwrap();
        assert_eq!(m.build.unwrap().variant, "minbase");
        assert_eq!(m.boot.mode, BootMode::DirectKernel);
        assert_eq!(m.guest.inject, InjectMethod::Smbios);
    }

    #[test]
    fn extends_starts_from_the_sibling_and_keeps_its_overlay() {
        let dir = std::env::temp_dir().join(format!("strata-extends-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("t")).unwrap();
        std::fs::create_dir_all(dir.join("t-docker")).unwrap();
        let parent = GOOD.replace("size = \"2G\"", "size = \"2G\"\noverlay = \"rootfs\"");
        std::fs::write(dir.join("t/template.toml"), parent).unwrap();
        let child = "extends = \"t\"\nname = \"t-docker\"\ndescription = \"t with Docker\"\n[build]\nsize = \"3G\"\n[build.engine]\nversion = \"20.10\"\n";
        std::fs::write(dir.join("t-docker/template.toml"), child).unwrap();
        let m = TemplateManifest::load(&dir.join("t-docker/template.toml")).unwrap();
        assert_eq!(m.name, "t-docker");
        assert_eq!(m.extends.as_deref(), Some("t"));
        let build = m.build.unwrap();
        assert_eq!(build.size, "3G");
        assert_eq!(build.packages, vec!["systemd"]);
        assert_eq!(build.overlay.as_deref(), Some("../t/rootfs"));
        let engine = build.engine.unwrap();
        assert_eq!(
            (engine.version.as_str(), engine.log_driver.as_str()),
            ("20.10", "local")
        );
        assert_eq!(m.vm.memory, "512M");

        // A chain, a missing parent and a bad field are refused, naming the file.
        std::fs::write(
            dir.join("t/template.toml"),
            format!("extends = \"x\"\n{GOOD}"),
        )
        .unwrap();
        let err = TemplateManifest::load(&dir.join("t-docker/template.toml")).unwrap_err();
        assert!(err.message().contains("extends another template"), "{err}");
        std::fs::write(
            dir.join("t-docker/template.toml"),
            child.replace("\"t\"", "\"nope\""),
        )
        .unwrap();
        let err = TemplateManifest::load(&dir.join("t-docker/template.toml")).unwrap_err();
        assert!(err.message().contains("nope"), "{err}");
        std::fs::write(dir.join("t/template.toml"), GOOD).unwrap();
        std::fs::write(
            dir.join("t-docker/template.toml"),
            child.replace("version", "verison"),
        )
        .unwrap();
        let err = TemplateManifest::load(&dir.join("t-docker/template.toml")).unwrap_err();
        assert!(
            err.message()
                .contains("t-docker/template.toml (extending t)")
                && err.message().contains("verison"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn error_names_file_line_and_field() {
        let bad = GOOD.replace("cpus = 1", "cpus = \"one\"");
        let err = parse_toml::<TemplateManifest>(Path::new("vm-templates/t/template.toml"), &bad)
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("vm-templates/t/template.toml:12:"),
            "{err}"
        );
        let unknown = GOOD.replace("user = \"root\"", "user = \"root\"\nusr = 1");
        let err = parse_toml::<TemplateManifest>(Path::new("x.toml"), &unknown).unwrap_err();
        assert!(err.message().contains("usr"), "{err}");
        assert!(err.message().starts_with("x.toml:16:"), "{err}");
        let err = parse_toml::<TemplateManifest>(Path::new("x.toml"), &bad).unwrap_err();
        assert!(err.message().contains("`cpus = \"one\"`"), "{err}");
    }

    #[test]
    fn the_tcg_cpu_is_a_model_name_or_empty() {
        for good in [
            "",
            "Nehalem",
            "qemu64",
            "Skylake-Client-v4",
            "EPYC_IBPB",
            "a.b",
        ] {
            assert!(is_cpu_model_name(good), "{good}");
        }
        for bad in ["-x", "Nehalem'/><x", "a b", "../x", "<", &"x".repeat(65)] {
            assert!(!is_cpu_model_name(bad), "{bad}");
        }
        let m: TemplateManifest = parse_toml(
            Path::new("t.toml"),
            &GOOD.replace("[vm]", "tcg_cpu = \"Nehalem'/>\"\n[vm]"),
        )
        .unwrap();
        let err = m.validate(Path::new("t.toml")).unwrap_err();
        assert!(err.message().contains("boot.tcg_cpu"), "{err}");
    }
}
