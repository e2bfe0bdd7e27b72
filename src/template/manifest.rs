//! The template.toml schema (plain serde data) and its parser, whose errors name the file,
//! the line and the field.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateManifest {
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
        let manifest: TemplateManifest = parse_toml(path, &text)?;
        for (field, value) in [
            ("vm.memory", &manifest.vm.memory),
            ("vm.disk", &manifest.vm.disk),
        ] {
            crate::units::parse_size(field, value).map_err(|e| e.context(path.display()))?;
        }
        if let Some(build) = &manifest.build {
            crate::units::parse_size("build.size", &build.size)
                .map_err(|e| e.context(path.display()))?;
        }
        if manifest.boot.mode == BootMode::DirectKernel && manifest.boot.cmdline.is_empty() {
            return Err(Error::bad_input(format!(
                "{}: boot.cmdline is empty but boot.mode is direct-kernel",
                path.display()
            ))
            .with_hint(
                "give the kernel command line, e.g. cmdline = \"root=/dev/vda rw console=ttyS0\"",
            ));
        }
        Ok(manifest)
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
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
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
}
