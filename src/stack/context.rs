//! `strata context VM`: a docker CLI context "strata-VM" for the user, reaching the VM's Docker
//! over ssh:// with strata's key and the pinned host key. The SSH settings go into a snippet
//! strata owns (~/.ssh/strata/VM.conf, included from ~/.ssh/config), the context into
//! ~/.docker/contexts the way `docker context create` stores it. Docker's socket stays
//! unexposed: the CLI runs `docker system dial-stdio` in the VM over that SSH login.

use crate::error::{Context, Error, Result};
use crate::guest::Route;
use sha2::{Digest, Sha256};
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

/// The ssh_config snippet for `vm` (pure).
pub fn ssh_snippet(vm: &str, target: &Route, known_hosts: &Path) -> String {
    format!(
        "# Written by `strata context {vm}`; rewritten each time, removed with the VM's context.\n\
         Host strata-{vm}\n  HostName {ip}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  BatchMode yes\n",
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

pub fn write(vm: &str, target: &Route, known_hosts: &Path, homes: &Homes) -> Result<ContextFiles> {
    if !known_hosts.is_file() {
        return Err(Error::not_found(format!(
            "no pinned host key for '{vm}' at {}",
            known_hosts.display()
        )));
    }
    let ssh_dir = &homes.ssh_dir;
    let snippet_dir = ssh_dir.join("strata");
    std::fs::create_dir_all(&snippet_dir).context(format!("creating {}", snippet_dir.display()))?;
    let snippet = snippet_dir.join(format!("{vm}.conf"));
    std::fs::write(&snippet, ssh_snippet(vm, target, known_hosts))
        .context(format!("writing {}", snippet.display()))?;
    let config_path = ssh_dir.join("config");
    let config = std::fs::read_to_string(&config_path).unwrap_or_default();
    let include_added = match with_include(&config) {
        Some(updated) => {
            std::fs::write(&config_path, updated)
                .context(format!("writing {}", config_path.display()))?;
            true
        }
        None => false,
    };
    let name = format!("strata-{vm}");
    let meta_dir = homes
        .docker_config
        .join("contexts/meta")
        .join(format!("{:x}", Sha256::digest(name.as_bytes())));
    std::fs::create_dir_all(&meta_dir).context(format!("creating {}", meta_dir.display()))?;
    let meta = meta_dir.join("meta.json");
    std::fs::write(&meta, serde_json::to_string(&docker_meta(vm))?)
        .context(format!("writing {}", meta.display()))?;
    Ok(ContextFiles {
        context: name,
        ssh_snippet: snippet,
        docker_meta: meta,
        ssh_config: config_path,
        include_added,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_pins_key_and_host_key() {
        let target = Route {
            addr: "10.78.0.5:22".parse().unwrap(),
            user: "root".into(),
            key: "/var/lib/strata/vms/demo/id_ed25519".into(),
            pinned_host_key: "ssh-ed25519 AAAA".into(),
        };
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
    }

    #[test]
    fn include_goes_first_once() {
        let updated = with_include("Host other\n  User x\n").unwrap();
        assert!(updated.find(INCLUDE_LINE).unwrap() < updated.find("Host other").unwrap());
        assert_eq!(with_include(&updated), None);
    }
}
