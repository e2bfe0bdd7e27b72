//! Images for a stack's services, in the VM's Docker: a registry reference is used when the
//! VM has it and pulled otherwise; a build context is tarred (with the host files the template
//! adds) and built once per content hash; an image tarball is loaded once per file hash. Each
//! ends as an image id, which goes into the container's config hash.

use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::template::container::{ContainerTemplate, ImageSource};
use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, ImportImageOptions, ListImagesOptions, TagImageOptions,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What was done to get an image, for the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obtained {
    Present,
    Pulled,
    Built,
    Loaded,
}

/// The image id for `source` of `template`, getting the image into the VM if needed.
pub fn ensure(
    docker: &GuestDocker,
    template: &ContainerTemplate,
    source: &ImageSource,
) -> std::result::Result<(String, Obtained), String> {
    match (&source.reference, &source.build, &source.tarball) {
        (Some(reference), None, None) => by_reference(docker, reference),
        (None, Some(context), None) => {
            let dir = template.dir.join(context);
            built(docker, &template.name, &dir, source)
        }
        (None, None, Some(tarball)) => loaded(docker, Path::new(tarball)),
        _ => Err("image must set exactly one of reference, build or tarball".into()),
    }
}

/// Every tagged image of the VM as tag -> id, in one request: what `present` looks in first.
pub fn catalog(docker: &GuestDocker) -> Result<HashMap<String, String>> {
    let images = docker
        .run(docker.docker.list_images(None::<ListImagesOptions>))
        .map_err(docker_error)?;
    Ok(images
        .into_iter()
        .flat_map(|image| {
            let id = image.id;
            image
                .repo_tags
                .into_iter()
                .filter(|tag| tag != "<none>:<none>")
                .map(move |tag| (tag, id.clone()))
        })
        .collect())
}

/// The image id when the VM already has the image `source` names; changes nothing. A name
/// not in `known` exactly as written (a reference without a tag, a digest) is asked of Docker.
pub fn present(
    docker: &GuestDocker,
    known: &HashMap<String, String>,
    template: &ContainerTemplate,
    source: &ImageSource,
) -> Option<String> {
    let name = match (&source.reference, &source.build, &source.tarball) {
        (Some(reference), None, None) => reference.clone(),
        (None, Some(context), None) => {
            let dir = template.dir.join(context);
            let tar = context_tar(&dir, source).ok()?;
            build_tag(&image_name(&template.name, &dir), &tar)
        }
        (None, None, Some(tarball)) => {
            let sum = crate::digest::sha256_file(Path::new(tarball)).ok()?;
            format!("{TARBALL_REPO}:{}", &sum[..12])
        }
        _ => return None,
    };
    known
        .get(&name)
        .cloned()
        .or_else(|| image_id(docker, &name))
}

/// Images built from a context are tagged with the context's hash: same files, same tag,
/// whichever template (or stack) asks for it.
fn build_tag(name: &str, context: &[u8]) -> String {
    let hash = format!("{:x}", Sha256::digest(context));
    format!("strata-build/{name}:{}", &hash[..12])
}

/// The image's name: its context folder's (contexts/busybox -> "busybox", shared by the
/// templates built on it), or the template's when the folder is just "context".
fn image_name(template: &str, dir: &Path) -> String {
    let folder = dir
        .components()
        .next_back()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("context");
    if folder == "context" || folder == "." {
        template.to_string()
    } else {
        folder.to_lowercase()
    }
}

/// Loaded tarballs are tagged with the file's hash, so a second `up` does not load again.
const TARBALL_REPO: &str = "strata-tarball";

fn image_id(docker: &GuestDocker, name: &str) -> Option<String> {
    docker
        .run(docker.docker.inspect_image(name))
        .ok()
        .and_then(|i| i.id)
}

fn by_reference(
    docker: &GuestDocker,
    reference: &str,
) -> std::result::Result<(String, Obtained), String> {
    if let Some(id) = image_id(docker, reference) {
        return Ok((id, Obtained::Present));
    }
    let pulled: std::result::Result<(), bollard::errors::Error> = docker.run(async {
        let mut pull = docker.docker.create_image(
            Some(CreateImageOptions {
                from_image: Some(reference.to_string()),
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(step) = pull.next().await {
            step?;
        }
        Ok(())
    });
    pulled.map_err(|e| {
        format!(
            "image '{reference}' is not in the VM and could not be pulled ({}); load it with a tarball (image.tarball) or give a build context",
            docker_error(e).message()
        )
    })?;
    image_id(docker, reference)
        .map(|id| (id, Obtained::Pulled))
        .ok_or_else(|| format!("image '{reference}' was pulled but Docker does not show it"))
}

fn built(
    docker: &GuestDocker,
    template: &str,
    dir: &Path,
    source: &ImageSource,
) -> std::result::Result<(String, Obtained), String> {
    let context = context_tar(dir, source).map_err(|e| e.to_string())?;
    let tag = build_tag(&image_name(template, dir), &context);
    if let Some(id) = image_id(docker, &tag) {
        return Ok((id, Obtained::Present));
    }
    let outcome: std::result::Result<Vec<String>, bollard::errors::Error> = docker.run(async {
        let mut build = docker.docker.build_image(
            BuildImageOptions {
                t: Some(tag.clone()),
                rm: true,
                forcerm: true,
                ..Default::default()
            },
            None,
            Some(bollard::body_full(context.into())),
        );
        let mut errors = Vec::new();
        while let Some(step) = build.next().await {
            let info = step?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                errors.push(detail);
            }
        }
        Ok(errors)
    });
    let errors = outcome
        .map_err(|e| format!("building {}: {}", dir.display(), docker_error(e).message()))?;
    if !errors.is_empty() {
        return Err(format!("building {}: {}", dir.display(), errors.join("; ")));
    }
    image_id(docker, &tag)
        .map(|id| (id, Obtained::Built))
        .ok_or_else(|| format!("building {} left no image {tag}", dir.display()))
}

/// The build context as a tar with fixed owners and times, so the same files give the same
/// hash (and the build is skipped) on every run.
pub fn context_tar(dir: &Path, source: &ImageSource) -> Result<Vec<u8>> {
    if !dir.join("Dockerfile").is_file() {
        return Err(
            Error::bad_input(format!("{} has no Dockerfile", dir.display())).with_hint(
                "image.build names a folder (relative to the template) holding a Dockerfile",
            ),
        );
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    collect(dir, dir, &mut files)?;
    for (inside, host) in &source.context_files {
        let host = PathBuf::from(host);
        if !host.is_file() {
            return Err(Error::not_found(format!(
                "{} (image.context_files '{inside}') does not exist on this host",
                host.display()
            ))
            .with_hint(
                "install the package that provides it (scripts/setup installs busybox-static)",
            ));
        }
        files.push((inside.clone(), host));
    }
    files.sort();
    let mut tar = tar::Builder::new(Vec::new());
    for (inside, path) in files {
        let data = std::fs::read(&path)
            .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
        let executable = std::fs::metadata(&path)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0)
            .unwrap_or(false);
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(if executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        tar.append_data(&mut header, &inside, data.as_slice())?;
    }
    Ok(tar.into_inner()?)
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::from(e).context(format!("reading {}", dir.display())))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else {
            let inside = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            files.push((inside, path));
        }
    }
    Ok(())
}

fn loaded(docker: &GuestDocker, tarball: &Path) -> std::result::Result<(String, Obtained), String> {
    let sum = crate::digest::sha256_file(tarball).map_err(|e| e.to_string())?;
    let tag = format!("{TARBALL_REPO}:{}", &sum[..12]);
    if let Some(id) = image_id(docker, &tag) {
        return Ok((id, Obtained::Present));
    }
    let bytes =
        std::fs::read(tarball).map_err(|e| format!("reading {}: {e}", tarball.display()))?;
    let outcome: std::result::Result<Vec<String>, bollard::errors::Error> = docker.run(async {
        let mut load = docker.docker.import_image(
            ImportImageOptions {
                quiet: true,
                ..Default::default()
            },
            bollard::body_full(bytes.into()),
            None,
        );
        let mut said = Vec::new();
        while let Some(step) = load.next().await {
            let info = step?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 500,
                    message: e,
                });
            }
            said.extend(info.stream);
        }
        Ok(said)
    });
    let said = outcome.map_err(|e| {
        format!(
            "loading {}: {}",
            tarball.display(),
            docker_error(e).message()
        )
    })?;
    // "Loaded image: name:tag" or "Loaded image ID: sha256:..."
    let loaded = said
        .iter()
        .flat_map(|s| s.lines())
        .find_map(|l| {
            l.strip_prefix("Loaded image ID: ")
                .or_else(|| l.strip_prefix("Loaded image: "))
        })
        .map(|s| s.trim().to_string())
        .ok_or_else(|| format!("{} held no image", tarball.display()))?;
    let id = image_id(docker, &loaded)
        .ok_or_else(|| format!("Docker does not show {loaded} after loading it"))?;
    docker
        .run(docker.docker.tag_image(
            &id,
            Some(TagImageOptions {
                repo: Some(TARBALL_REPO.to_string()),
                tag: Some(sum[..12].to_string()),
            }),
        ))
        .map_err(|e| format!("tagging {loaded}: {}", docker_error(e).message()))?;
    Ok((id, Obtained::Loaded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_tar_is_the_same_for_the_same_files() {
        let dir =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("container-templates/contexts/busybox");
        let source = ImageSource {
            reference: None,
            build: Some(".".into()),
            context_files: [("busybox".to_string(), "/bin/busybox".to_string())].into(),
            tarball: None,
        };
        let a = context_tar(&dir, &source).unwrap();
        assert_eq!(a, context_tar(&dir, &source).unwrap());
        let names: Vec<String> = tar::Archive::new(a.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["Dockerfile", "busybox"]);
        let missing = ImageSource {
            context_files: [("x".to_string(), "/nonexistent/x".to_string())].into(),
            ..source
        };
        assert_eq!(image_name("busybox-httpd", &dir), "busybox");
        assert_eq!(
            image_name("apache-python", Path::new("t/apache-python/context")),
            "apache-python"
        );
        assert!(context_tar(&dir, &missing)
            .unwrap_err()
            .message()
            .contains("/nonexistent/x"));
    }
}
