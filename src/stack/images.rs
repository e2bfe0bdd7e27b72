//! Images for a stack's services, in the VM's Docker: a registry reference is used when the
//! VM has it and pulled otherwise; a build context is tarred (with the public system files the
//! template adds) and built once per content hash; an image tarball is loaded once per file
//! hash. Each ends as an image id, which goes into the container's config hash. Every host
//! file is read through template::confine: inside the template's folder, or public.

use crate::error::{Error, Result};
use crate::guest::docker::{docker_error, GuestDocker};
use crate::template::confine;
use crate::template::container::{ContainerTemplate, ImageSource};
use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, ImportImageOptions, ListImagesOptions, TagImageOptions,
};
use futures_util::StreamExt;
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
        (None, Some(_), None) => built(docker, template, source),
        (None, None, Some(tarball)) => loaded(docker, template, tarball),
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
    let name = image_name(template, source)?;
    known
        .get(&name)
        .cloned()
        .or_else(|| image_id(docker, &name))
}

/// The name the image of `source` has in a VM once there: the reference as written, or the tag
/// strata gives what it builds or loads (by content). None when the source is unusable.
pub fn image_name(template: &ContainerTemplate, source: &ImageSource) -> Option<String> {
    match (&source.reference, &source.build, &source.tarball) {
        (Some(reference), None, None) => Some(reference.clone()),
        (None, Some(_), None) => {
            let tar = context_tar(template, source).ok()?;
            Some(build_tag(template, source, &tar))
        }
        (None, None, Some(tarball)) => {
            let (_, short_hash) = open_tarball(template, tarball).ok()?;
            Some(format!("{TARBALL_REPO}:{short_hash}"))
        }
        _ => None,
    }
}

/// A dry run's answer to `ensure`: the name the image would have in the VM and how it would
/// get there (the survey found it absent), changing nothing; `planned` holds the names an
/// earlier service of the run already gets.
pub fn would_obtain(
    template: &ContainerTemplate,
    source: &ImageSource,
    planned: &[String],
) -> std::result::Result<(String, Obtained), String> {
    let name = image_name(template, source)
        .ok_or_else(|| "image must set exactly one of reference, build or tarball".to_string())?;
    let how = match (&source.reference, &source.build) {
        _ if planned.contains(&name) => Obtained::Present,
        (Some(_), _) => Obtained::Pulled,
        (None, Some(_)) => Obtained::Built,
        (None, None) => Obtained::Loaded,
    };
    Ok((name, how))
}

/// `--explain` of how `source`'s image came to be in the VM as `id`.
pub fn explain_obtained(
    service: &str,
    template: &ContainerTemplate,
    source: &ImageSource,
    how: &Obtained,
    id: &str,
) -> Result<()> {
    use crate::stack::explained::{image, ImageExplained};
    let tag = || {
        image_name(template, source)
            .ok_or_else(|| Error::failed(format!("the image of template '{}'", template.name)))
    };
    match how {
        Obtained::Present => image(service, ImageExplained::Present { id }),
        Obtained::Pulled => image(
            service,
            ImageExplained::Pull {
                reference: source.reference.as_deref().unwrap_or_default(),
            },
        ),
        Obtained::Loaded => {
            let what = format!("template '{}': image.tarball", template.name);
            let tarball = source.tarball.as_deref().unwrap_or_default();
            let path = confine::inside(&template.dir, &what, tarball)?;
            let tag = tag()?;
            image(
                service,
                ImageExplained::Load {
                    tarball: &path,
                    tag: &tag,
                },
            )
        }
        Obtained::Built => {
            let dir = template.dir.join(source.build.as_deref().unwrap_or("."));
            let tag = tag()?;
            let added = source
                .context_files
                .iter()
                .map(|(inside, host)| (inside.as_str(), Path::new(host.as_str())))
                .collect();
            image(
                service,
                ImageExplained::Build {
                    dir: &dir,
                    added,
                    tag: &tag,
                },
            )
        }
    }
}

/// Images built from a context are tagged with the context's hash: same files, same tag,
/// whichever template (or stack) asks for it. The name is the template's unless the
/// template names the image (the busybox-* templates share "busybox").
fn build_tag(template: &ContainerTemplate, source: &ImageSource, context: &[u8]) -> String {
    let name = source.name.as_deref().unwrap_or(&template.name);
    let hash = crate::digest::sha256_bytes(context);
    format!("strata-build/{name}:{}", &hash[..12])
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
    template: &ContainerTemplate,
    source: &ImageSource,
) -> std::result::Result<(String, Obtained), String> {
    let dir = template.dir.join(source.build.as_deref().unwrap_or("."));
    let context = context_tar(template, source).map_err(|e| e.to_string())?;
    let tag = build_tag(template, source, &context);
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
/// hash (and the build is skipped) on every run. Its folder and every file in it must be
/// inside the template's folder (symlinks followed), the added files public system files.
pub fn context_tar(template: &ContainerTemplate, source: &ImageSource) -> Result<Vec<u8>> {
    let root = &template.dir;
    let what = format!("template '{}': image.build", template.name);
    let build = source.build.as_deref().unwrap_or(".");
    let dir = confine::inside(root, &what, build)?;
    if !dir.join("Dockerfile").is_file() {
        return Err(
            Error::bad_input(format!("{} has no Dockerfile", dir.display())).with_hint(
                "image.build names a folder (relative to the template) holding a Dockerfile",
            ),
        );
    }
    let mut files: Vec<(String, std::fs::File)> = Vec::new();
    let mut found = Vec::new();
    collect(root, &what, &dir, &mut found)?;
    for path in found {
        let inside = path
            .strip_prefix(&dir)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        files.push((inside, confine::open_inside(root, &what, &path)?));
    }
    for (inside, host) in &source.context_files {
        let what = format!(
            "template '{}': image.context_files '{inside}'",
            template.name
        );
        let file = confine::open_public_system_file(&what, Path::new(host)).map_err(|e| {
            if e.kind() == crate::error::ErrorKind::NotFound {
                e.with_hint(
                    "install the package that provides it (scripts/setup installs busybox-static)",
                )
            } else {
                e
            }
        })?;
        files.push((inside.clone(), file));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut tar = tar::Builder::new(Vec::new());
    for (inside, mut file) in files {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut data)
            .map_err(|e| Error::from(e).context(format!("reading {inside} of {what}")))?;
        let executable = file
            .metadata()
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

/// The files under `dir`, without following anything out of the template folder `root`: a
/// symlink is taken when it resolves to a file inside `root`, and refused otherwise; folders
/// are walked only when they are real folders (a symlinked one could loop).
fn collect(root: &Path, what: &str, dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::from(e).context(format!("reading {}", dir.display())))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(root, what, &path, files)?;
        } else if kind.is_file() {
            files.push(path);
        } else if kind.is_symlink() {
            let target = confine::inside(root, what, &path.to_string_lossy())?;
            if !target.is_file() {
                return Err(Error::bad_input(format!(
                    "{what}: {} is a symlink to {}, not to a file",
                    path.display(),
                    target.display()
                ))
                .with_hint("put the folder itself into the context, not a link to it"));
            }
            files.push(path);
        } else {
            return Err(Error::bad_input(format!(
                "{what}: {} is not a file or a folder",
                path.display()
            ))
            .with_hint("a build context holds only files and folders"));
        }
    }
    Ok(())
}

/// A template's image tarball, opened through the confinement and hashed (streamed: it may
/// be large), rewound for reading; with the short hash its tag is made of.
fn open_tarball(template: &ContainerTemplate, tarball: &str) -> Result<(std::fs::File, String)> {
    let what = format!("template '{}': image.tarball", template.name);
    let path = confine::inside(&template.dir, &what, tarball)?;
    let mut file = confine::open_inside(&template.dir, &what, &path)?;
    let sum = crate::digest::sha256_read(&mut file)
        .and_then(|sum| std::io::Seek::rewind(&mut file).map(|_| sum))
        .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
    Ok((file, sum[..12].to_string()))
}

fn loaded(
    docker: &GuestDocker,
    template: &ContainerTemplate,
    tarball: &str,
) -> std::result::Result<(String, Obtained), String> {
    let (mut file, short_hash) = open_tarball(template, tarball).map_err(|e| e.to_string())?;
    let tag = format!("{TARBALL_REPO}:{short_hash}");
    if let Some(id) = image_id(docker, &tag) {
        return Ok((id, Obtained::Present));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes)
        .map_err(|e| format!("reading {tarball}: {e}"))?;
    let said = load(docker, bytes).map_err(|e| format!("loading {tarball}: {e}"))?;
    // "Loaded image: name:tag" or "Loaded image ID: sha256:..."
    let loaded = said
        .iter()
        .flat_map(|s| s.lines())
        .find_map(|l| {
            l.strip_prefix("Loaded image ID: ")
                .or_else(|| l.strip_prefix("Loaded image: "))
        })
        .map(|s| s.trim().to_string())
        .ok_or_else(|| format!("{} held no image", tarball))?;
    let id = image_id(docker, &loaded)
        .ok_or_else(|| format!("Docker does not show {loaded} after loading it"))?;
    docker
        .run(docker.docker.tag_image(
            &id,
            Some(TagImageOptions {
                repo: Some(TARBALL_REPO.to_string()),
                tag: Some(short_hash),
            }),
        ))
        .map_err(|e| format!("tagging {loaded}: {}", docker_error(e).message()))?;
    Ok((id, Obtained::Loaded))
}

/// Load an image archive (`docker save` format) into the VM's Docker; what Docker said.
fn load(docker: &GuestDocker, bytes: Vec<u8>) -> std::result::Result<Vec<String>, String> {
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
    outcome.map_err(|e| docker_error(e).message().to_string())
}

/// Put the image `name` (with its id `id`) of one VM's Docker into another's, as it is: the
/// same layers, config and id (a build on each node would make other ids), through this
/// machine. Nothing is done when the other VM has it already.
pub fn copy_image(
    from: &GuestDocker,
    to: &GuestDocker,
    name: &str,
    id: &str,
) -> std::result::Result<Obtained, String> {
    if image_id(to, id).is_some() && image_id(to, name).as_deref() == Some(id) {
        return Ok(Obtained::Present);
    }
    let saved: std::result::Result<Vec<u8>, bollard::errors::Error> = from.run(async {
        let mut archive = Vec::new();
        let mut stream = from.docker.export_image(name);
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk?);
        }
        Ok(archive)
    });
    let archive = saved.map_err(|e| format!("saving {name}: {}", docker_error(e).message()))?;
    load(to, archive).map_err(|e| format!("loading {name}: {e}"))?;
    match image_id(to, name) {
        Some(loaded) if loaded == id => Ok(Obtained::Loaded),
        other => Err(format!(
            "{name} loaded as {} where {id} was saved",
            other.unwrap_or_else(|| "nothing".into())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::container::{self, ParamsFile};

    fn shipped(name: &str) -> ContainerTemplate {
        let search = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("container-templates")];
        container::find(&search, name).unwrap()
    }

    fn busybox_source() -> ImageSource {
        ImageSource {
            reference: None,
            build: Some("context".into()),
            name: Some("busybox".into()),
            context_files: [("busybox".to_string(), "/bin/busybox".to_string())].into(),
            tarball: None,
        }
    }

    /// A template in a private temporary folder, with a context holding a Dockerfile.
    fn scratch_template(tag: &str) -> (PathBuf, ContainerTemplate) {
        let top = std::env::temp_dir().join(format!("strata-images-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        std::fs::create_dir_all(top.join("t/context")).unwrap();
        std::fs::write(top.join("t/context/Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(top.join("t/shared.txt"), "in the template").unwrap();
        std::fs::write(top.join("secret"), "not the template's").unwrap();
        let template = ContainerTemplate {
            name: "t".into(),
            dir: top.join("t").canonicalize().unwrap(),
            params: ParamsFile {
                description: "t".into(),
                params: Default::default(),
            },
        };
        (top, template)
    }

    #[test]
    fn context_tar_is_the_same_for_the_same_files_and_named_images_are_shared() {
        let httpd = shipped("busybox-httpd");
        let source = busybox_source();
        let a = context_tar(&httpd, &source).unwrap();
        assert_eq!(a, context_tar(&httpd, &source).unwrap());
        let names: Vec<String> = tar::Archive::new(a.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["Dockerfile", "busybox"]);
        // The three busybox templates have their own, identical contexts: one image.
        let tag = build_tag(&httpd, &source, &a);
        assert!(tag.starts_with("strata-build/busybox:"), "{tag}");
        for other in ["busybox-poller", "busybox-tcp-ambassador"] {
            let t = shipped(other);
            assert_eq!(
                build_tag(&t, &source, &context_tar(&t, &source).unwrap()),
                tag
            );
        }
        let unnamed = ImageSource {
            name: None,
            ..busybox_source()
        };
        assert!(build_tag(&httpd, &unnamed, &a).starts_with("strata-build/busybox-httpd:"));
        let missing = ImageSource {
            context_files: [("x".to_string(), "/nonexistent/x".to_string())].into(),
            ..source
        };
        let err = context_tar(&httpd, &missing).unwrap_err();
        assert!(err.message().contains("/nonexistent/x"), "{err}");
        assert!(err.hint().unwrap().contains("busybox-static"), "{err:?}");
    }

    #[test]
    fn context_symlinks_out_of_the_template_folder_are_refused() {
        let (top, t) = scratch_template("links");
        let source = ImageSource {
            name: None,
            context_files: Default::default(),
            ..busybox_source()
        };
        // A link to a file elsewhere in the template's own folder is fine.
        std::os::unix::fs::symlink("../shared.txt", t.dir.join("context/shared.txt")).unwrap();
        assert!(context_tar(&t, &source).is_ok());
        for (name, target) in [
            ("leak", top.join("secret")),
            ("shadow", PathBuf::from("/etc/shadow")),
        ] {
            let link = t.dir.join("context").join(name);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let err = context_tar(&t, &source).unwrap_err();
            assert!(
                err.message().starts_with("template 't': image.build")
                    && err.message().contains("outside the template's folder"),
                "{name}: {err}"
            );
            std::fs::remove_file(&link).unwrap();
        }
        // A linked folder is not walked (it could loop, or lead out).
        std::os::unix::fs::symlink("..", t.dir.join("context/up")).unwrap();
        let err = context_tar(&t, &source).unwrap_err();
        assert!(err.message().contains("not to a file"), "{err}");
        let _ = std::fs::remove_dir_all(&top);
    }

    #[test]
    fn host_files_other_than_public_system_files_are_refused_when_read() {
        let (top, t) = scratch_template("hostfiles");
        for host in ["/etc/shadow", top.join("secret").to_str().unwrap()] {
            let source = ImageSource {
                context_files: [("x".to_string(), host.to_string())].into(),
                ..busybox_source()
            };
            let err = context_tar(&t, &source).unwrap_err();
            assert!(
                err.message()
                    .starts_with("template 't': image.context_files 'x' = '")
                    && err.message().contains("not a public system file"),
                "{host}: {err}"
            );
        }
        std::fs::write(t.dir.join("image.tar"), "a docker save").unwrap();
        let (_, short_hash) = open_tarball(&t, "image.tar").unwrap();
        assert_eq!(short_hash.len(), 12);
        let tarball = open_tarball(&t, "../secret").unwrap_err();
        assert!(tarball.message().contains("outside"), "{tarball}");
        let _ = std::fs::remove_dir_all(&top);
    }
}
