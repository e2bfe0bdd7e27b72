//! VM templates as data: each folder under vm-templates/ holds a template.toml manifest (the
//! build recipe, boot mode, VM defaults, how first-boot data is injected) and a
//! domain.xml.j2. This module finds templates, parses manifests (errors name file and line),
//! and renders their files with minijinja in strict mode.

pub mod confine;
pub mod container;
mod manifest;
mod params;
mod render;
mod shell_escape;
mod toml_escape;
mod volume_sources;

pub use manifest::{line_and_column, parse_toml};
pub use manifest::{
    BootMode, BootSpec, BuildRecipe, EngineBake, InjectMethod, TemplateManifest, VmDefaults,
};
pub use render::{render_file, render_str};
pub use shell_escape::{command_line as shell_command_line, quote as shell_quote};

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A template found on disk: its folder and parsed manifest.
#[derive(Debug, Clone)]
pub struct Template {
    pub dir: PathBuf,
    pub manifest: TemplateManifest,
}

impl Template {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }
    /// The template's domain.xml.j2, or the one of the template it extends.
    pub fn domain_xml_template(&self) -> PathBuf {
        let own = self.dir.join("domain.xml.j2");
        match (&self.manifest.extends, own.exists()) {
            (Some(parent), false) => self.dir.join("..").join(parent).join("domain.xml.j2"),
            _ => own,
        }
    }
    /// Load the template in `dir`, checking that the folder name and manifest name agree.
    pub fn load(dir: &Path) -> Result<Template> {
        let manifest = TemplateManifest::load(&dir.join("template.toml"))?;
        let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if manifest.name != folder {
            return Err(Error::bad_input(format!(
                "{}: name = \"{}\" but the folder is '{folder}'",
                dir.join("template.toml").display(),
                manifest.name
            ))
            .with_hint("a template's name must match its folder name"));
        }
        Ok(Template {
            dir: dir.to_path_buf(),
            manifest,
        })
    }
}

/// Where templates are looked up, first match wins: STRATA_TEMPLATE_PATH (colon-separated),
/// imported templates in the state directory, the installed share folder, and the source
/// tree strata was built from.
pub fn search_path(imported: &Path) -> Vec<PathBuf> {
    let mut dirs = search_dirs("STRATA_TEMPLATE_PATH", "vm-templates");
    let after_env = std::env::var("STRATA_TEMPLATE_PATH")
        .map(|v| v.split(':').filter(|s| !s.is_empty()).count())
        .unwrap_or(0);
    dirs.insert(after_env, imported.to_path_buf());
    dirs
}

/// The folders named by `env_var` (colon-separated), then the installed share/strata/`folder`
/// beside the binary, and the source tree's `folder`. Never the current folder: strata runs as
/// root, and root working inside someone else's checkout must not pick up that checkout's
/// templates; the environment variable is the deliberate way to point at other templates.
pub(crate) fn search_dirs(env_var: &str, folder: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var(env_var)
        .map(|v| {
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(prefix) = exe.parent().and_then(|bin| bin.parent()) {
            dirs.push(prefix.join("share/strata").join(folder));
        }
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(folder));
    dirs
}

/// Folders holding `marker`, in search order and sorted within each directory; the same
/// name may appear more than once (the first one wins for the caller).
pub(crate) fn folders_with(search: &[PathBuf], marker: &str) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for dir in search {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut folders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(marker).is_file())
            .collect();
        folders.sort();
        all.extend(folders);
    }
    all
}

/// Every template on the search path, first occurrence of each name.
pub fn list(search: &[PathBuf]) -> Result<Vec<Template>> {
    let mut found: Vec<Template> = Vec::new();
    for folder in folders_with(search, "template.toml") {
        let template = Template::load(&folder)?;
        if !found.iter().any(|t| t.name() == template.name()) {
            found.push(template);
        }
    }
    Ok(found)
}

/// Find one template by name, or say which exist.
pub fn find(search: &[PathBuf], name: &str) -> Result<Template> {
    crate::names::check_object_name("template", name)?;
    for dir in search {
        let folder = dir.join(name);
        if folder.join("template.toml").is_file() {
            return Template::load(&folder);
        }
    }
    let known: Vec<String> = list(search)?.iter().map(|t| t.name().to_string()).collect();
    Err(
        Error::not_found(format!("unknown template '{name}'")).with_hint(format!(
            "known templates: {}; `strata template list` shows them",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_folder_is_not_searched() {
        let dirs = search_dirs("STRATA_TEST_UNSET_TEMPLATE_PATH", "container-templates");
        assert!(!dirs.is_empty());
        for dir in &dirs {
            assert!(
                dir.is_absolute(),
                "{} is relative to the current folder",
                dir.display()
            );
        }
    }
}
