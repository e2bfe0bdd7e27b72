//! `strata context VM`: a docker CLI context "strata-VM" for the user, reaching the VM's Docker
//! over ssh:// with strata's key and the pinned host key. The SSH settings go into a snippet
//! strata owns (~/.ssh/strata/VM.conf, included from ~/.ssh/config), the context into
//! ~/.docker/contexts the way `docker context create` stores it. Docker's socket stays
//! unexposed: the CLI runs `docker system dial-stdio` in the VM over that SSH login. Both are
//! removed with the VM (`remove`).

use crate::atomic_write;
use crate::error::{Context, Error, Result};
use crate::guest::Route;
use std::path::{Path, PathBuf};

/// The line that makes ssh read strata's snippets; it must come before any Host block.
const INCLUDE_LINE: &str = "Include strata/*.conf";

/// What `strata context` wrote.
#[derive(Debug, serde::Serialize)]
pub struct ContextFiles {
    pub context: String,
    pub ssh_snippet: PathBuf,
    pub docker_meta: PathBuf,
    pub ssh_config: PathBuf,
    /// Whether ~/.ssh/config got the Include line now.
    pub include_added: bool,
}

/// The ssh_config snippet for `vm` (pure). A guest of a remote host is reached through that
/// host (ProxyCommand), as strata reaches it.
pub fn ssh_snippet(vm: &str, target: &Route, known_hosts: &Path) -> String {
    let through_host = target
        .via
        .as_ref()
        .map(|login| format!("  ProxyCommand {}\n", login.proxy_command()))
        .unwrap_or_default();
    format!(
        "# Written by `strata context {vm}`; rewritten each time, removed with the VM's context.\n\
         Host strata-{vm}\n  HostName {ip}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  BatchMode yes\n{through_host}",
        ip = target.addr.ip(),
        port = target.addr.port(),
        user = target.user,
        key = target.key.display(),
        known = known_hosts.display(),
    )
}

/// The docker CLI's meta.json for a context reaching `ssh://strata-VM` (pure).
pub fn docker_meta(vm: &str) -> serde_json::Value {
    serde_json::json!({
        "Name": format!("strata-{vm}"),
        "Metadata": { "Description": format!("Docker in strata VM '{vm}' over SSH") },
        "Endpoints": { "docker": { "Host": format!("ssh://strata-{vm}"), "SkipTLSVerify": false } }
    })
}

/// ~/.ssh/config with the Include line first (pure): ssh applies an Include placed after a
/// Host block only to that host.
pub fn with_include(config: &str) -> Option<String> {
    if config.lines().any(|l| l.trim() == INCLUDE_LINE) {
        return None;
    }
    Some(format!(
        "# strata's per-VM settings (strata context)\n{INCLUDE_LINE}\n\n{config}"
    ))
}

/// Where the two programs look: ssh reads ~/.ssh from the user's passwd entry (not $HOME), the
/// docker CLI reads $DOCKER_CONFIG, else $HOME/.docker. With HOME pointing elsewhere (sudo -E,
/// a CI job) the two differ, and each file must go where its reader looks.
pub struct Homes {
    pub ssh_dir: PathBuf,
    pub docker_config: PathBuf,
}

impl Homes {
    pub fn of_current_user() -> Result<Homes> {
        let uid = nix::unistd::getuid();
        let user = nix::unistd::User::from_uid(uid)
            .map_err(|e| Error::failed(format!("reading the passwd entry of uid {uid}: {e}")))?
            .ok_or_else(|| Error::failed(format!("uid {uid} has no passwd entry")))?;
        let docker_config = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => PathBuf::from(dir),
            None => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| user.dir.clone())
                .join(".docker"),
        };
        Ok(Homes {
            ssh_dir: user.dir.join(".ssh"),
            docker_config,
        })
    }
}

/// Write the snippet, the Include line and the docker context. ~/.ssh/config is read first: if
/// strata cannot read it as text, nothing is written at all. Every file is replaced atomically
/// and keeps its permissions, so an error midway never leaves a config cut short.
pub fn write(vm: &str, target: &Route, known_hosts: &Path, homes: &Homes) -> Result<ContextFiles> {
    if !known_hosts.is_file() {
        return Err(Error::not_found(format!(
            "no pinned host key for '{vm}' at {}",
            known_hosts.display()
        )));
    }
    let ssh_dir = &homes.ssh_dir;
    let config_path = ssh_dir.join("config");
    let config_update = config_with_include(&config_path)?;
    let snippet = snippet_path(homes, vm);
    create_private_dir(snippet.parent().expect("a snippet is inside ~/.ssh/strata"))?;
    atomic_write::replace(
        &snippet,
        ssh_snippet(vm, target, known_hosts).as_bytes(),
        0o600,
    )?;
    let include_added = match config_update {
        Some(updated) => {
            atomic_write::replace(&config_path, updated.as_bytes(), 0o600)?;
            true
        }
        None => false,
    };
    let name = format!("strata-{vm}");
    let meta_dir = meta_dir(homes, vm);
    std::fs::create_dir_all(&meta_dir).context(format!("creating {}", meta_dir.display()))?;
    let meta = meta_dir.join("meta.json");
    // The mode the docker CLI gives the meta.json files it writes itself.
    atomic_write::replace(
        &meta,
        serde_json::to_string(&docker_meta(vm))?.as_bytes(),
        0o644,
    )?;
    Ok(ContextFiles {
        context: name,
        ssh_snippet: snippet,
        docker_meta: meta,
        ssh_config: config_path,
        include_added,
    })
}

/// Remove what `write` wrote for `vm`, when it is strata's for this very VM: the snippet only
/// if it is strata's (its first line) and pins `known_hosts` (a VM of the same name on another
/// host pins its own, and keeps its snippet), and the docker context only with that snippet and
/// only if it is strata's context reaching ssh://strata-VM. The Include line in ~/.ssh/config
/// stays: it serves the other VMs. The files removed.
pub fn remove(vm: &str, known_hosts: &Path, homes: &Homes) -> Result<Vec<PathBuf>> {
    let snippet = snippet_path(homes, vm);
    let text = match std::fs::read_to_string(&snippet) {
        Ok(text) => text,
        // None, or not text strata wrote.
        Err(_) => return Ok(Vec::new()),
    };
    if !is_snippet_of(&text, vm, known_hosts) {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    std::fs::remove_file(&snippet).context(format!("removing {}", snippet.display()))?;
    removed.push(snippet);
    let meta_dir = meta_dir(homes, vm);
    let meta = meta_dir.join("meta.json");
    let ours = std::fs::read(&meta)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|found| found == docker_meta(vm));
    if ours {
        std::fs::remove_file(&meta).context(format!("removing {}", meta.display()))?;
        // Only when empty: anything else in it is not strata's.
        let _ = std::fs::remove_dir(&meta_dir);
        removed.push(meta);
    }
    Ok(removed)
}

/// Where `write` puts the SSH settings for `vm`, and `remove` looks for them.
fn snippet_path(homes: &Homes, vm: &str) -> PathBuf {
    homes.ssh_dir.join("strata").join(format!("{vm}.conf"))
}

/// The docker CLI's folder for context `strata-VM` (named by the sha256 of the context's name).
fn meta_dir(homes: &Homes, vm: &str) -> PathBuf {
    homes
        .docker_config
        .join("contexts/meta")
        .join(crate::digest::sha256_bytes(
            format!("strata-{vm}").as_bytes(),
        ))
}

/// Whether `text` is the snippet strata wrote for `vm` pinning `known_hosts` (pure).
fn is_snippet_of(text: &str, vm: &str, known_hosts: &Path) -> bool {
    let pins = format!("UserKnownHostsFile {}", known_hosts.display());
    text.starts_with(&format!("# Written by `strata context {vm}`;"))
        && text.lines().any(|line| line.trim() == pins)
}

/// The new text of ~/.ssh/config, or None when it already includes strata's snippets. A
/// missing file is empty; one strata cannot read as text is an error, so that it is never
/// mistaken for an empty one and overwritten.
fn config_with_include(path: &Path) -> Result<Option<String>> {
    let hint = format!(
        "nothing was changed; make {} a readable text file, or add the line `{INCLUDE_LINE}` at its top yourself",
        path.display()
    );
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(Error::from(e)
                .context(format!("reading {}", path.display()))
                .with_hint(hint))
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok(with_include(&text)),
        // With the line already there, nothing is rewritten, whatever the encoding.
        Err(e) if with_include(&String::from_utf8_lossy(e.as_bytes())).is_none() => Ok(None),
        Err(_) => Err(Error::bad_input(format!(
            "{} is not UTF-8 text; strata will not rewrite it",
            path.display()
        ))
        .with_hint(hint)),
    }
}

/// ssh refuses settings that others can write, so directories strata makes under ~/.ssh are
/// the user's alone; an existing directory is left as it is.
fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .context(format!("creating {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::remote::Site;

    /// The route to VM `demo` of the tests.
    fn demo_route() -> Route {
        Route {
            addr: "10.78.0.5:22".parse().unwrap(),
            user: "root".into(),
            key: "/var/lib/strata/vms/demo/id_ed25519".into(),
            pinned_host_key: "ssh-ed25519 AAAA".into(),
            via: None,
        }
    }

    #[test]
    fn snippet_pins_key_and_host_key() {
        let target = demo_route();
        let text = ssh_snippet(
            "demo",
            &target,
            Path::new("/var/lib/strata/vms/demo/known_hosts"),
        );
        assert!(
            text.contains("Host strata-demo\n  HostName 10.78.0.5\n"),
            "{text}"
        );
        assert!(text.contains("UserKnownHostsFile /var/lib/strata/vms/demo/known_hosts"));
        assert!(text.contains("StrictHostKeyChecking yes"));
        assert_eq!(
            docker_meta("demo")["Endpoints"]["docker"]["Host"],
            "ssh://strata-demo"
        );
        assert!(!text.contains("ProxyCommand"));
        let Site::Ssh(login) = Site::of_uri("qemu+ssh://root@hv2/system").unwrap() else {
            panic!("an SSH URI")
        };
        let behind = Route {
            via: Some(login),
            ..target
        };
        let text = ssh_snippet("demo", &behind, Path::new("/k"));
        assert!(
            text.ends_with(
                "  ProxyCommand ssh -o StrictHostKeyChecking=yes -p 22 -l 'root' -W %h:%p 'hv2'\n"
            ),
            "{text}"
        );
    }

    /// A user's home in a temporary directory, with a pinned host key for `demo`.
    struct FakeHome {
        dir: PathBuf,
    }

    impl FakeHome {
        fn new(tag: &str) -> FakeHome {
            let dir = std::env::temp_dir().join(format!("strata-ctx-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join(".ssh")).unwrap();
            std::fs::write(dir.join("known_hosts"), "10.78.0.5 ssh-ed25519 AAAA\n").unwrap();
            FakeHome { dir }
        }
        fn config(&self) -> PathBuf {
            self.dir.join(".ssh/config")
        }
        fn homes(&self) -> Homes {
            Homes {
                ssh_dir: self.dir.join(".ssh"),
                docker_config: self.dir.join(".docker"),
            }
        }
        fn write(&self) -> Result<ContextFiles> {
            write(
                "demo",
                &demo_route(),
                &self.dir.join("known_hosts"),
                &self.homes(),
            )
        }
        /// Nothing but what the test set up: no snippet, no docker context.
        fn assert_nothing_written(&self) {
            assert!(!self.dir.join(".ssh/strata").exists());
            assert!(!self.dir.join(".docker").exists());
        }
    }

    impl Drop for FakeHome {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_config_that_is_not_utf8_is_refused_and_left_as_it_was() {
        let home = FakeHome::new("latin1");
        let original = b"Host old\n  # caf\xe9\n  User me\n".to_vec();
        std::fs::write(home.config(), &original).unwrap();
        let err = home.write().unwrap_err();
        assert!(
            err.message().contains(&home.config().display().to_string()),
            "{err}"
        );
        assert!(err.message().contains("not UTF-8"), "{err}");
        assert!(err.hint().unwrap().contains(INCLUDE_LINE), "{err}");
        assert_eq!(std::fs::read(home.config()).unwrap(), original);
        home.assert_nothing_written();
    }

    #[test]
    fn a_config_that_cannot_be_read_is_refused() {
        let home = FakeHome::new("unreadable");
        std::fs::create_dir(home.config()).unwrap();
        let err = home.write().unwrap_err();
        assert!(
            err.message().contains(&home.config().display().to_string()),
            "{err}"
        );
        assert!(err.hint().is_some(), "{err}");
        assert!(home.config().is_dir());
        home.assert_nothing_written();
    }

    #[test]
    fn an_existing_config_keeps_its_text_and_mode() {
        let home = FakeHome::new("existing");
        let original = "Host old\n  User me\n";
        std::fs::write(home.config(), original).unwrap();
        std::fs::set_permissions(
            home.config(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        let files = home.write().unwrap();
        assert!(files.include_added);
        let text = std::fs::read_to_string(home.config()).unwrap();
        assert_eq!(Some(text.clone()), with_include(original));
        assert!(text.ends_with(original), "{text}");
        assert_eq!(mode(&home.config()), 0o644);
        // A second run changes nothing.
        assert!(!home.write().unwrap().include_added);
        assert_eq!(std::fs::read_to_string(home.config()).unwrap(), text);
    }

    #[test]
    fn a_new_config_and_snippet_are_private() {
        let home = FakeHome::new("new");
        let files = home.write().unwrap();
        assert!(files.include_added);
        assert_eq!(mode(&home.config()), 0o600);
        assert_eq!(mode(&files.ssh_snippet), 0o600);
        assert_eq!(mode(&home.dir.join(".ssh/strata")), 0o700);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.docker_meta).unwrap()).unwrap();
        assert_eq!(meta["Name"], "strata-demo");
    }

    #[test]
    fn a_non_utf8_config_that_already_includes_the_snippets_is_fine() {
        let home = FakeHome::new("latin1-included");
        let mut original = format!("{INCLUDE_LINE}\n").into_bytes();
        original.extend_from_slice(b"# caf\xe9\n");
        std::fs::write(home.config(), &original).unwrap();
        assert!(!home.write().unwrap().include_added);
        assert_eq!(std::fs::read(home.config()).unwrap(), original);
    }

    #[test]
    fn the_vms_own_context_is_removed_with_it_and_nothing_else() {
        let home = FakeHome::new("remove");
        let files = home.write().unwrap();
        let config = std::fs::read_to_string(home.config()).unwrap();
        // A VM of the same name on another host pins another key file: kept.
        let elsewhere = home.dir.join("hosts/hv2/known_hosts");
        assert_eq!(
            remove("demo", &elsewhere, &home.homes()).unwrap(),
            [] as [PathBuf; 0]
        );
        assert!(files.ssh_snippet.exists() && files.docker_meta.exists());
        // A docker context of that name that is not strata's: the snippet goes, it stays.
        std::fs::write(
            &files.docker_meta,
            r#"{"Name":"strata-demo","Endpoints":{}}"#,
        )
        .unwrap();
        let known_hosts = home.dir.join("known_hosts");
        let removed = remove("demo", &known_hosts, &home.homes()).unwrap();
        assert_eq!(removed, std::slice::from_ref(&files.ssh_snippet));
        assert!(files.docker_meta.exists());
        // strata's own: both go, the meta folder too; the Include line stays for the others.
        home.write().unwrap();
        let removed = remove("demo", &known_hosts, &home.homes()).unwrap();
        assert_eq!(
            removed,
            [files.ssh_snippet.clone(), files.docker_meta.clone()]
        );
        assert!(!files.docker_meta.parent().unwrap().exists());
        assert_eq!(std::fs::read_to_string(home.config()).unwrap(), config);
        // Nothing left: nothing to do.
        assert!(remove("demo", &known_hosts, &home.homes())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_snippet_is_ours_only_with_our_first_line_and_pin() {
        let k = Path::new("/var/lib/strata/vms/demo/known_hosts");
        let ours = ssh_snippet("demo", &demo_route(), k);
        assert!(is_snippet_of(&ours, "demo", k));
        assert!(!is_snippet_of(&ours, "dem", k));
        assert!(!is_snippet_of(&ours, "demo", Path::new("/other")));
        assert!(!is_snippet_of(&format!("# mine\n{ours}"), "demo", k));
    }

    #[test]
    fn include_goes_first_once() {
        let updated = with_include("Host other\n  User x\n").unwrap();
        assert!(updated.find(INCLUDE_LINE).unwrap() < updated.find("Host other").unwrap());
        assert_eq!(with_include(&updated), None);
    }
}
