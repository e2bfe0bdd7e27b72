//! The host files a container template's [image] names, held to what the template may read:
//! strata reads them as root, and the template (and the stack that picked it) may come from
//! someone else. `build` and `tarball` must resolve, symlinks followed, inside the template's
//! own folder; `context_files` may only copy public system files: regular files under /usr,
//! owned by root, writable by nobody else and readable by everyone (what any local user may
//! read anyway). Files are checked again on the open descriptor when read, so a path swapped
//! after the check cannot lead elsewhere.

use crate::error::{Error, Result};
use crate::template::container::ImageSource;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Where public system files live (Debian 12 has merged /usr: /bin is /usr/bin).
const SYSTEM_FILES: &str = "/usr";

const INSIDE_HINT: &str =
    "a template uses only files inside its own folder; copy what it needs into that folder";

/// Check what `source` (rendered for template `template` in folder `root`, canonical) names on
/// the host, before anything is read: the fields that go together, the paths' places and the
/// context paths.
pub fn check_image(template: &str, root: &Path, source: &ImageSource) -> Result<()> {
    let field = |name: &str| format!("template '{template}': image.{name}");
    let given = [&source.reference, &source.build, &source.tarball];
    if given.iter().filter(|s| s.is_some()).count() != 1 {
        return Err(Error::bad_input(format!(
            "template '{template}': [image] must set exactly one of reference, build or tarball"
        ))
        .with_hint("see docs/stacks.md, the [image] table"));
    }
    if source.build.is_none() {
        let only_for_build = [
            ("name", source.name.is_some()),
            ("context_files", !source.context_files.is_empty()),
        ];
        if let Some((name, _)) = only_for_build.iter().find(|(_, set)| *set) {
            return Err(
                Error::bad_input(format!("{} goes only with image.build", field(name)))
                    .with_hint("remove it, or build the image from a context folder"),
            );
        }
    }
    if let Some(name) = &source.name {
        if !crate::names::is_valid_name(name) {
            return Err(Error::bad_input(format!(
                "{} '{name}' is not a valid image name",
                field("name")
            ))
            .with_hint(crate::names::NAME_RULE));
        }
    }
    if let Some(build) = &source.build {
        let dir = inside(root, &field("build"), build)?;
        if !dir.join("Dockerfile").is_file() {
            return Err(Error::bad_input(format!(
                "{} '{build}' has no Dockerfile",
                field("build")
            ))
            .with_hint("image.build names a folder inside the template holding a Dockerfile"));
        }
    }
    if let Some(tarball) = &source.tarball {
        inside(root, &field("tarball"), tarball)?;
    }
    for (inside_context, host) in &source.context_files {
        let what = format!("{} '{inside_context}'", field("context_files"));
        check_context_path(&what, inside_context)?;
        // A file that is not there gives nothing away: building says to install it, and
        // checking a stack does not depend on the host's packages.
        match open_public_system_file(&what, Path::new(host)) {
            Err(e) if e.kind() != crate::error::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// `relative` (a template's field) joined onto the template folder `root`, symlinks followed;
/// an error unless the result is inside `root`.
pub fn inside(root: &Path, what: &str, relative: &str) -> Result<PathBuf> {
    let joined = root.join(relative);
    let real = joined.canonicalize().map_err(|e| {
        Error::from(e)
            .context(format!("{what} '{relative}' ({})", joined.display()))
            .with_hint("image paths are relative to the template's folder")
    })?;
    if !real.starts_with(root) {
        return Err(Error::bad_input(format!(
            "{what} '{relative}' is {}, outside the template's folder {}",
            real.display(),
            root.display()
        ))
        .with_hint(INSIDE_HINT));
    }
    Ok(real)
}

/// Open `path` for reading when the file actually opened is a regular file inside `root`
/// (the open descriptor's own path is checked, not the name).
pub fn open_inside(root: &Path, what: &str, path: &Path) -> Result<File> {
    let outside = |real: &Path| {
        Error::bad_input(format!(
            "{what}: {} is {}, outside the template's folder {}",
            path.display(),
            real.display(),
            root.display()
        ))
        .with_hint(INSIDE_HINT)
    };
    let real = resolve_regular(what, path)?;
    if !real.starts_with(root) {
        return Err(outside(&real));
    }
    let (file, real) = open_regular(what, &real)?;
    if !real.starts_with(root) {
        return Err(outside(&real));
    }
    Ok(file)
}

/// Open `path` for reading when the file actually opened is a public system file.
pub fn open_public_system_file(what: &str, path: &Path) -> Result<File> {
    let refused = |why: String| {
        Error::bad_input(format!(
            "{what} = '{}' is not a public system file: {why}",
            path.display()
        ))
        .with_hint(
            "context_files copies only files under /usr owned by root, writable by nobody else \
             and readable by everyone (e.g. /bin/busybox); put other files in the template's context folder",
        )
    };
    // Where it leads is checked before anything is opened.
    let real = resolve_regular(what, path)?;
    if !real.starts_with(SYSTEM_FILES) {
        return Err(refused(format!(
            "{} is not under {SYSTEM_FILES}",
            real.display()
        )));
    }
    let (file, real) = open_regular(what, &real)?;
    let meta = file.metadata()?;
    public_system_file(&real, meta.uid(), meta.mode()).map_err(refused)?;
    Ok(file)
}

/// Why a regular file at `real` with owner `uid` and `mode` is not a public system file.
fn public_system_file(real: &Path, uid: u32, mode: u32) -> std::result::Result<(), String> {
    if !real.starts_with(SYSTEM_FILES) {
        return Err(format!("{} is not under {SYSTEM_FILES}", real.display()));
    }
    if uid != 0 {
        return Err(format!(
            "{} is owned by uid {uid}, not root",
            real.display()
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} is writable by its group or others (mode {:o})",
            real.display(),
            mode & 0o7777
        ));
    }
    if mode & 0o004 == 0 {
        return Err(format!(
            "{} is not readable by everyone (mode {:o})",
            real.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Where `path` leads (symlinks followed) when that is a regular file, found without opening
/// anything: opening a device can act by itself (a watchdog reboots the host, a tape rewinds).
fn resolve_regular(what: &str, path: &Path) -> Result<PathBuf> {
    let real = path.canonicalize().map_err(|e| {
        Error::from(e)
            .context(format!("{what}: opening {}", path.display()))
            .with_hint("the template names a file that is not there")
    })?;
    if !std::fs::metadata(&real)?.is_file() {
        return Err(not_regular(what, path));
    }
    Ok(real)
}

fn not_regular(what: &str, path: &Path) -> Error {
    Error::bad_input(format!("{what}: {} is not a regular file", path.display()))
        .with_hint("only regular files go into an image")
}

/// Open `real` (from resolve_regular) without following a symlink swapped in since, never
/// waiting on a FIFO, and say which file was really opened.
fn open_regular(what: &str, real: &Path) -> Result<(File, PathBuf)> {
    use nix::fcntl::OFlag;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // A FIFO would block the open until a writer came; non-blocking it opens and is
        // then refused as not a regular file.
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY).bits())
        .open(real)
        .map_err(|e| Error::from(e).context(format!("{what}: opening {}", real.display())))?;
    if !file.metadata()?.is_file() {
        return Err(not_regular(what, real));
    }
    let opened = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))?;
    Ok((file, opened))
}

/// A path inside the build context: plain and relative, no '..', no leading '/'.
fn check_context_path(what: &str, inside: &str) -> Result<()> {
    let plain = !inside.is_empty()
        && Path::new(inside)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if plain {
        return Ok(());
    }
    Err(
        Error::bad_input(format!("{what} is not a plain relative path")).with_hint(
            "the key is where the file goes in the build context, e.g. busybox or bin/tool",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;

    /// A private template folder with a context, for tests.
    fn template_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-confine-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("t/context")).unwrap();
        std::fs::write(dir.join("t/context/Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.join("secret"), "outside").unwrap();
        dir
    }

    fn build(context: &str, files: &[(&str, &str)]) -> ImageSource {
        ImageSource {
            reference: None,
            build: Some(context.into()),
            name: None,
            context_files: files
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            tarball: None,
        }
    }

    #[test]
    fn build_and_tarball_must_stay_in_the_template_folder() {
        let dir = template_dir("paths");
        let root = dir.join("t").canonicalize().unwrap();
        assert!(check_image("t", &root, &build("context", &[])).is_ok());
        std::os::unix::fs::symlink(&dir, root.join("up")).unwrap();
        for outside in ["..", "/etc", "/tmp", "up", "context/../.."] {
            let err = check_image("t", &root, &build(outside, &[])).unwrap_err();
            assert!(
                err.message()
                    .starts_with(&format!("template 't': image.build '{outside}' "))
                    && err.message().contains("outside the template's folder"),
                "{outside}: {err}"
            );
            assert!(err.hint().is_some());
        }
        for tarball in ["../secret", "/etc/shadow", "up/secret"] {
            let source = ImageSource {
                build: None,
                tarball: Some(tarball.into()),
                ..build("", &[])
            };
            let err = check_image("t", &root, &source).unwrap_err();
            assert!(
                err.message().contains("image.tarball") && err.message().contains("outside"),
                "{tarball}: {err}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn context_files_are_public_system_files_only() {
        let dir = template_dir("files");
        let root = dir.join("t").canonicalize().unwrap();
        assert!(check_image("t", &root, &build("context", &[("sh", "/bin/sh")])).is_ok());
        let secret = dir.join("secret");
        let private_key = dir.join("id_ed25519");
        std::fs::write(&private_key, "key").unwrap();
        std::fs::set_permissions(&private_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        for host in [
            "/etc/shadow",
            private_key.to_str().unwrap(),
            secret.to_str().unwrap(),
            "/etc/hostname",
            "/usr",
            // A device is refused without being opened.
            "/dev/null",
        ] {
            let err = check_image("t", &root, &build("context", &[("x", host)])).unwrap_err();
            assert!(
                err.message()
                    .starts_with("template 't': image.context_files 'x'"),
                "{host}: {err}"
            );
            assert!(err.message().contains(host), "{host}: {err}");
        }
        // Not there: nothing to read, and the build will say so.
        assert!(check_image("t", &root, &build("context", &[("x", "/nonexistent/x")])).is_ok());
        for key in ["../x", "/x", "", "a/../../b", "./x"] {
            let err = check_image("t", &root, &build("context", &[(key, "/bin/sh")])).unwrap_err();
            assert!(
                err.message().contains("not a plain relative path"),
                "{key}: {err}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_public_system_file_is_under_usr_root_owned_and_world_readable_only() {
        let usr = Path::new("/usr/bin/busybox");
        assert!(public_system_file(usr, 0, 0o100755).is_ok());
        assert!(public_system_file(usr, 0, 0o100644).is_ok());
        assert!(public_system_file(Path::new("/etc/shadow"), 0, 0o100644).is_err());
        assert!(public_system_file(usr, 1000, 0o100755)
            .unwrap_err()
            .contains("uid 1000"));
        assert!(public_system_file(usr, 0, 0o100775)
            .unwrap_err()
            .contains("writable"));
        assert!(public_system_file(usr, 0, 0o100757)
            .unwrap_err()
            .contains("writable"));
        assert!(public_system_file(usr, 0, 0o100640)
            .unwrap_err()
            .contains("readable"));
        assert!(public_system_file(Path::new("/usrx/bin/a"), 0, 0o100755).is_err());
    }

    #[test]
    fn opening_checks_the_file_really_opened() {
        let dir = template_dir("open");
        let root = dir.join("t").canonicalize().unwrap();
        let link = root.join("context/leak");
        std::os::unix::fs::symlink(dir.join("secret"), &link).unwrap();
        let err = open_inside(&root, "context", &link).unwrap_err();
        assert!(
            err.message().contains("outside the template's folder"),
            "{err}"
        );
        assert!(open_inside(&root, "context", &root.join("context/Dockerfile")).is_ok());
        let fifo = root.join("context/fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let err = open_inside(&root, "context", &fifo).unwrap_err();
        assert!(err.message().contains("not a regular file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
