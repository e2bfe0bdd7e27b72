//! The "bundle" install source for Docker: a guest without network gets exactly the .debs it
//! lacks, prepared on the host. The host's own apt computes the missing closure against a copy
//! of the *guest's* dpkg status (`Dir::State::status`) with the host's package lists, and
//! downloads into a cache strata owns. The cache is shared between bundles and kept between
//! runs, so a bundle is the list apt's simulation names, never the cache's whole content, and a
//! second prepare downloads nothing. This is only right when host and guest run the same
//! Debian release, so other releases are refused. Pushing and installing is done elsewhere.

use crate::error::{Context, Error, Result};
use crate::state::PrivateDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The package an engine version pins.
const ENGINE_PACKAGE: &str = "docker.io";

pub struct BundleRequest<'a> {
    /// The guest's VERSION_CODENAME, e.g. "bookworm".
    pub release: &'a str,
    /// The contents of the guest's /var/lib/dpkg/status.
    pub guest_status: &'a str,
    /// What the guest must end up with, e.g. ["docker.io", "apparmor"]; docker.io is always
    /// included.
    pub packages: &'a [String],
    /// Pin docker.io: an exact Debian version or an upstream prefix such as "20.10.24".
    pub engine_version: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub release: String,
    /// Absolute paths in the cache, in apt's install order; empty if nothing is missing.
    pub debs: Vec<PathBuf>,
    /// The docker.io version the guest will have (to be installed, or installed already).
    pub engine_version: String,
    pub bytes: u64,
}

impl Bundle {
    /// Where `disk_image` keeps the image of these .debs in `dir`: named after them, so the
    /// next VM that needs the same set finds it.
    pub fn image_path(&self, dir: &Path) -> PathBuf {
        let mut names = Vec::new();
        for deb in &self.debs {
            names.extend_from_slice(deb.file_name().unwrap_or_default().as_encoded_bytes());
            names.push(b'\n');
        }
        let hash = crate::digest::sha256_bytes(&names);
        dir.join(format!("bundle-{}.img", &hash[..16]))
    }

    /// The image's size: room for the files, their metadata and ext4's own (no journal:
    /// read-only).
    pub fn image_kib(&self) -> u64 {
        self.bytes / 1024 + self.bytes / 1024 / 10 + 8 * 1024
    }

    /// The bundle's .debs as a small read-only ext4 image in `dir`, made once per set of debs
    /// (its name carries their hash) and shared by every guest that needs the same set:
    /// plugged in as a disk, the files reach the guest without SSH's encryption, which costs
    /// most in an emulated guest. World-readable, so qemu reads it without relabelling.
    pub fn disk_image(&self, dir: &Path) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let image = self.image_path(dir);
        if image.is_file() {
            return Ok(image);
        }
        // Concurrent installs of one bundle each build under their own name; the renames
        // that finish last replace an identical image.
        let unique = unique_suffix();
        let staging = dir.join(format!(".bundle-{unique}.d"));
        let partial = dir.join(format!(".bundle-{unique}.img"));
        std::fs::create_dir_all(&staging)?;
        let built = (|| -> Result<()> {
            for deb in &self.debs {
                let name = staging.join(deb.file_name().unwrap_or_default());
                if std::fs::hard_link(deb, &name).is_err() {
                    std::fs::copy(deb, &name).context(format!("copying {}", deb.display()))?;
                }
            }
            let kib = self.image_kib();
            let out = Command::new("mke2fs")
                .args(["-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0"])
                .args(["-L", "strata-bundle", "-d"])
                .arg(&staging)
                .arg(&partial)
                .arg(format!("{kib}k"))
                .stdin(Stdio::null())
                .output()
                .context("running mke2fs")?;
            if !out.status.success() {
                return Err(Error::failed(format!(
                    "mke2fs could not make the bundle image: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))?;
            std::fs::rename(&partial, &image)?;
            Ok(())
        })();
        let _ = std::fs::remove_dir_all(&staging);
        let _ = std::fs::remove_file(&partial);
        built.map(|()| image)
    }
}

/// "PID-N", different for every call in every process: names of scratch files and folders
/// that concurrent strata runs must not share.
fn unique_suffix() -> String {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The host's VERSION_CODENAME from /etc/os-release.
pub fn host_release() -> Result<String> {
    let text = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    os_release_codename(&text).ok_or_else(|| {
        Error::failed("/etc/os-release has no VERSION_CODENAME")
            .with_hint("bundles need a Debian host")
    })
}

/// The versions of `package` the host's apt offers from `release` and its -updates and
/// -security suites (not backports), newest first.
pub fn available_versions(release: &str, package: &str) -> Result<Vec<String>> {
    let out = run(Command::new("apt-cache").args(["madison", package]))?;
    Ok(madison_versions(
        &String::from_utf8_lossy(&out.stdout),
        release,
        package,
    ))
}

/// Download into `cache_dir` the .debs the guest lacks for `req.packages`.
pub fn prepare(cache_dir: &Path, req: &BundleRequest) -> Result<Bundle> {
    let host = host_release()?;
    if req.release != host {
        return Err(Error::bad_input(format!(
            "the guest runs {} but the host's apt serves {host}: a bundle must come from the guest's release",
            req.release
        ))
        .with_hint(format!(
            "use --source online, or run strata on a {} host",
            req.release
        )));
    }
    let mut wanted: Vec<String> = req
        .packages
        .iter()
        .filter(|p| *p != ENGINE_PACKAGE)
        .cloned()
        .collect();
    wanted.push(match req.engine_version {
        Some(v) => format!("{ENGINE_PACKAGE}={}", resolve_engine(req.release, v)?),
        None => ENGINE_PACKAGE.to_string(),
    });

    std::fs::create_dir_all(cache_dir.join("partial"))
        .context(format!("creating {}", cache_dir.display()))?;
    // apt takes its dpkg locks next to the status file it is given, so concurrent prepares
    // must not share one: each gets a private folder with a copy of the guest's status.
    let admin = PrivateDir::new_in(&cache_dir.join("work"), "apt-admin")?;
    std::fs::write(admin.path().join("status"), req.guest_status)
        .context("writing the guest's dpkg status")?;
    let args = apt_args(req.release, admin.path(), cache_dir);
    let sim = run(Command::new("apt-get").args(&args).arg("-s").args(&wanted))?;
    let plan = parse_simulation(&String::from_utf8_lossy(&sim.stdout));
    let engine_version = plan
        .iter()
        .find(|i| i.package == ENGINE_PACKAGE)
        .map(|i| i.version.clone())
        .or_else(|| installed_version(req.guest_status, ENGINE_PACKAGE))
        .ok_or_else(|| Error::failed(format!("apt did not plan to install {ENGINE_PACKAGE}")))?;
    if !plan.is_empty() {
        // apt gives up at once when another apt holds the cache's lock; prepares sharing the
        // cache wait for each other instead (the later one then finds its debs cached).
        let file = std::fs::File::create(cache_dir.join("strata.lock"))
            .context("opening the bundle cache's lock")?;
        let mut lock = fd_lock::RwLock::new(file);
        let _guard = lock.write().context("locking the bundle cache")?;
        run(Command::new("apt-get")
            .args(&args)
            .args(["--download-only", "-y", "-qq"])
            .args(&wanted))?;
    }
    let mut bytes = 0;
    let mut debs = Vec::with_capacity(plan.len());
    for install in &plan {
        let deb = cache_dir.join(install.file_name());
        let len = std::fs::metadata(&deb)
            .context(format!("apt-get left no {} in the cache", deb.display()))?
            .len();
        bytes += len;
        debs.push(std::path::absolute(&deb)?);
    }
    Ok(Bundle {
        release: req.release.to_string(),
        debs,
        engine_version,
        bytes,
    })
}

/// Options shared by the simulation and the download, so both compute the same closure.
fn apt_args(release: &str, admin: &Path, cache_dir: &Path) -> Vec<String> {
    let (status, states) = (admin.join("status"), admin.join("extended_states"));
    vec![
        "install".into(),
        "--no-install-recommends".into(),
        // A bare `-t bookworm` would rank bookworm above bookworm-security and pick the point
        // release's older version over a security fix. This pin covers the release and its
        // update suites (not backports); o=Debian keeps a third-party repo that reuses the
        // codename (download.docker.com) from winning.
        "-t".into(),
        format!("o=Debian,n=/^{release}(-updates|-security)?$/"),
        "-o".into(),
        format!("Dir::State::status={}", status.display()),
        // Otherwise the host's auto-installed marks leak into the guest's view.
        "-o".into(),
        format!("Dir::State::extended_states={}", states.display()),
        "-o".into(),
        format!("Dir::Cache::archives={}", cache_dir.display()),
    ]
}

/// Run an apt tool; a failure names the command and quotes apt's last lines.
fn run(cmd: &mut Command) -> Result<Output> {
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let out = cmd
        .env("DEBIAN_FRONTEND", "noninteractive")
        // Untranslated messages: parsed here, quoted to the user.
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null())
        .output()
        .context(format!("cannot run `{line}`"))?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.trim_end().lines().collect();
    let tail = lines[lines.len().saturating_sub(8)..].join("\n");
    Err(Error::failed(format!(
        "`{line}` failed ({}):\n{tail}",
        out.status
    )))
}

/// The version `wanted` names: an exact Debian version, or the newest whose upstream part
/// starts with `wanted` at a component boundary.
fn resolve_engine(release: &str, wanted: &str) -> Result<String> {
    let versions = available_versions(release, ENGINE_PACKAGE)?;
    match_version(wanted, &versions)
        .map(str::to_string)
        .ok_or_else(|| {
            Error::bad_input(format!(
                "{ENGINE_PACKAGE} {wanted} is not available from {release}; apt has: [{}]",
                versions.join(", ")
            ))
            .with_hint("give one of those versions (its upstream part such as 20.10.24 is enough), or no engine version for the newest")
        })
}

/// `available` is newest first (madison's order), so the newest match wins.
fn match_version<'a>(wanted: &str, available: &'a [String]) -> Option<&'a str> {
    let exact = available.iter().find(|v| *v == wanted);
    exact
        .or_else(|| available.iter().find(|v| version_matches(wanted, v)))
        .map(String::as_str)
}

/// Does the Debian version `candidate` answer a user's `wanted`: equal, or its upstream part
/// starts with `wanted` at a component boundary? "20.10.24" matches
/// "20.10.24+dfsg1-1+deb12u1+b6"; "20.10.2" does not.
pub fn version_matches(wanted: &str, candidate: &str) -> bool {
    let without_epoch = candidate.split_once(':').map_or(candidate, |(_, v)| v);
    let upstream = without_epoch
        .rsplit_once('-')
        .map_or(without_epoch, |(u, _)| u);
    candidate == wanted
        || upstream
            .strip_prefix(wanted)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_alphanumeric()))
}

pub(crate) fn os_release_codename(text: &str) -> Option<String> {
    let value = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("VERSION_CODENAME="))?;
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    (!value.is_empty()).then(|| value.to_string())
}

/// Versions from `apt-cache madison` lines ("pkg | version | uri suite/component arch
/// Packages") of `release`'s suites, deduplicated (one version can be in several suites).
pub(crate) fn madison_versions(text: &str, release: &str, package: &str) -> Vec<String> {
    let suites = [
        release.to_string(),
        format!("{release}-updates"),
        format!("{release}-security"),
    ];
    let mut versions: Vec<String> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [name, version, origin] = fields[..] else {
            continue;
        };
        let words: Vec<&str> = origin.split_whitespace().collect();
        let suite = words.get(1).and_then(|s| s.split('/').next());
        if name == package
            && words.last() == Some(&"Packages")
            && suite.is_some_and(|s| suites.iter().any(|x| x == s))
            && !versions.iter().any(|v| v == version)
        {
            versions.push(version.to_string());
        }
    }
    versions
}

/// One "Inst" line of `apt-get -s`: a package apt will unpack, in its order.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Install {
    package: String,
    version: String,
    arch: String,
}

impl Install {
    /// The name apt stores the .deb under in the archives dir: it quotes the epoch's ':'
    /// (Debian package names and versions can contain no other character it quotes).
    fn file_name(&self) -> String {
        let version = self.version.replace(':', "%3a");
        format!("{}_{version}_{}.deb", self.package, self.arch)
    }
}

/// "Inst pkg (ver Release[, Release] [arch])", with "[oldver] " before "(" on an upgrade and
/// sometimes a list of packages it breaks, "[...]", after ")".
pub(crate) fn parse_simulation(text: &str) -> Vec<Install> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("Inst ")?.split_once(' ')?;
            let inner = rest.split_once('(')?.1.split_once(')')?.0;
            let version = inner.split_whitespace().next()?;
            let arch = inner.rsplit_once('[')?.1.strip_suffix(']')?;
            Some(Install {
                // A foreign-architecture package shows as "pkg:arch".
                package: name.split(':').next()?.to_string(),
                version: version.to_string(),
                arch: arch.to_string(),
            })
        })
        .collect()
}

/// The version of `package` if dpkg's status says it is installed.
pub(crate) fn installed_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|para| {
        let field = |name: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim))
        };
        let installed = field("Package")? == package && field("Status")?.ends_with(" installed");
        installed.then(|| field("Version").map(str::to_string))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on the Debian 12 host: `apt-get install -s --no-install-recommends` against the
    // minbase guest's status for docker.io, then libssl3 (an upgrade), then lvm2 against the
    // host's status.
    const SIMULATION: &str = "\
Inst runc (1.1.5+ds1-1+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Inst containerd (1.6.20~ds1-1+deb12u3 Debian:12.15/oldstable [amd64])
Inst netbase (6.4 Debian:12.15/oldstable [all])
Inst docker.io (20.10.24+dfsg1-1+deb12u1+b6 Debian:12.15/oldstable [amd64])
Inst libssl3 [3.0.20-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst liblvm2cmd2.03 (2.03.16-2 Debian:12.15/oldstable [amd64]) []
Conf runc (1.1.5+ds1-1+deb12u1 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Conf docker.io (20.10.24+dfsg1-1+deb12u1+b6 Debian:12.15/oldstable [amd64])
";

    fn inst(package: &str, version: &str, arch: &str) -> Install {
        Install {
            package: package.into(),
            version: version.into(),
            arch: arch.into(),
        }
    }

    #[test]
    fn simulation_lists_installs_in_order() {
        assert_eq!(
            parse_simulation(SIMULATION),
            vec![
                inst("runc", "1.1.5+ds1-1+deb12u1", "amd64"),
                inst("containerd", "1.6.20~ds1-1+deb12u3", "amd64"),
                inst("netbase", "6.4", "all"),
                inst("docker.io", "20.10.24+dfsg1-1+deb12u1+b6", "amd64"),
                inst("libssl3", "3.0.22-1~deb12u2", "amd64"),
                inst("liblvm2cmd2.03", "2.03.16-2", "amd64"),
            ]
        );
        assert!(parse_simulation("Reading package lists...\n").is_empty());
    }

    #[test]
    fn file_names_match_apts_archive_names() {
        // As found in the archives dir after `apt-get --download-only`.
        let docker = inst("docker.io", "20.10.24+dfsg1-1+deb12u1+b6", "amd64");
        assert_eq!(
            docker.file_name(),
            "docker.io_20.10.24+dfsg1-1+deb12u1+b6_amd64.deb"
        );
        let vim = inst("vim-common", "2:9.0.1378-2+deb12u2", "all");
        assert_eq!(vim.file_name(), "vim-common_2%3a9.0.1378-2+deb12u2_all.deb");
    }

    #[test]
    fn madison_keeps_the_release_suites_only() {
        // Captured `apt-cache madison openssl runc`; the backports and Sources lines are
        // hand-written in the same shape (the host has neither configured).
        let text = "\
   openssl | 3.0.22-1~deb12u2 | http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
   openssl | 3.0.20-1~deb12u2 | http://deb.debian.org/debian bookworm/main amd64 Packages
   openssl | 3.0.17-1~deb12u2 | http://deb.debian.org/debian bookworm-updates/main amd64 Packages
   openssl | 3.5.1-1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
   openssl | 3.0.22-1~deb12u2 | http://deb.debian.org/debian-security bookworm-security/main Sources
      runc | 1.1.5+ds1-1+deb12u1 | http://deb.debian.org/debian bookworm/main amd64 Packages
";
        assert_eq!(
            madison_versions(text, "bookworm", "openssl"),
            ["3.0.22-1~deb12u2", "3.0.20-1~deb12u2", "3.0.17-1~deb12u2"]
        );
        assert_eq!(
            madison_versions(text, "bookworm-backports", "openssl"),
            ["3.5.1-1~bpo12+1"]
        );
        assert_eq!(
            madison_versions(text, "bookworm", "runc"),
            ["1.1.5+ds1-1+deb12u1"]
        );
        assert!(madison_versions("", "bookworm", "nosuchpkg").is_empty());
    }

    #[test]
    fn versions_match_exactly_or_by_upstream_prefix() {
        let have = [
            "20.10.25+dfsg1-1".to_string(),
            "20.10.24+dfsg1-1+deb12u1+b6".to_string(),
            "5:20.10.24~3-0~debian-bookworm".to_string(),
        ];
        let m = |w| match_version(w, &have);
        assert_eq!(
            m("20.10.24+dfsg1-1+deb12u1+b6"),
            Some("20.10.24+dfsg1-1+deb12u1+b6")
        );
        assert_eq!(m("20.10.24"), Some("20.10.24+dfsg1-1+deb12u1+b6"));
        assert_eq!(m("20.10"), Some("20.10.25+dfsg1-1"));
        assert_eq!(m("20.10.2"), None);
        assert_eq!(m("99.0"), None);
        assert_eq!(m(""), None);
    }

    #[test]
    fn codename_comes_from_os_release() {
        // The host's /etc/os-release.
        let text = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"#;
        assert_eq!(os_release_codename(text).as_deref(), Some("bookworm"));
        assert_eq!(
            os_release_codename("VERSION_CODENAME=\"trixie\"\n").as_deref(),
            Some("trixie")
        );
        assert_eq!(os_release_codename("ID=debian\nVERSION_CODENAME=\n"), None);
    }

    #[test]
    fn installed_version_reads_dpkg_status() {
        // Shaped like the guest's status, with one removed package left in config-files state.
        let status = "\
Package: docker.io
Status: deinstall ok config-files
Version: 20.10.5+dfsg1-1+deb11u2

Package: xfsprogs
Status: install ok installed
Priority: optional
Version: 6.1.0-1
Depends: libc6 (>= 2.34)

Package: xfsprogs-extra
Status: install ok installed
Version: 1.0
";
        assert_eq!(
            installed_version(status, "xfsprogs").as_deref(),
            Some("6.1.0-1")
        );
        assert_eq!(installed_version(status, "docker.io"), None);
        assert_eq!(installed_version(status, "lvm2"), None);
    }
}
