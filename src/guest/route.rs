//! The route to a guest: the address strata reserved for it, the user and key to log in with,
//! the host key pinned at its creation, and the hypervisor to go through when the guest is on
//! a remote host. Every way into a guest (SSH commands, SFTP, the docker.sock tunnel, port
//! forwards, the system ssh client) starts from a Route, so that the same pin is enforced
//! everywhere; a VM's route is read from libvirt (strata's record of the VM) and from the
//! pinned key strata keeps beside it.

use crate::error::{Error, Result};
use crate::host::remote::{Login, Site};
use crate::state::Paths;
use crate::vm::{domain, Libvirt};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How to reach and log into one guest.
#[derive(Debug, Clone)]
pub struct Route {
    pub addr: SocketAddr,
    pub user: String,
    pub key: PathBuf,
    /// The host key strata expects, as an OpenSSH public key line.
    pub pinned_host_key: String,
    /// The remote hypervisor the guest is reached through (its private network is not
    /// routed here); None for a guest of this machine.
    pub via: Option<Login>,
}

impl Route {
    /// The route to a running strata VM.
    pub fn of_vm(lv: &Libvirt, paths: &Paths, name: &str) -> Result<Route> {
        let (_, info) = domain::lookup(&lv.conn(), name)?;
        if info.state != "running" {
            return Err(Error::bad_input(format!("VM '{name}' is {}", info.state))
                .with_hint(format!("start it with `strata vm start {name}`")));
        }
        Ok(Route {
            addr: SocketAddr::from((info.record.ip, 22)),
            user: info.record.user.clone(),
            key: info.record.key.clone(),
            pinned_host_key: pinned_key_from_known_hosts(&paths.vm_known_hosts(name))?,
            via: hypervisor_login(lv)?,
        })
    }
}

/// `--explain`: the login (`guest` and `guest_script` in the script) through which the steps
/// that follow run commands in `vm`. A VM on another host is reached through that host, which
/// is not explained yet: the explanation of `what` ends there.
pub fn explain_login(
    lv: &Libvirt,
    paths: &Paths,
    route: &Route,
    vm: &str,
    what: &str,
) -> Result<()> {
    if !crate::explain::is_on() {
        return Ok(());
    }
    if lv.is_remote() {
        return crate::explain::stop_here(&format!(
            "{what} in {vm} on a remote host is not explained yet"
        ));
    }
    crate::explain::step(
        crate::explain::Step::GuestLogin,
        &serde_json::json!({
            "name": vm,
            "ip": route.addr.ip().to_string(),
            "user": route.user,
            "key": route.key,
            "known_hosts": paths.vm_known_hosts(vm),
        }),
    )
}

/// `--explain`: the wait until `vm` at `ip` answers SSH as `user` with `key` and the host key
/// pinned in its known_hosts, for up to `timeout`, as strata waits after starting it.
pub fn explain_wait_for_ssh(
    paths: &Paths,
    vm: &str,
    ip: std::net::IpAddr,
    user: &str,
    key: &Path,
    timeout: std::time::Duration,
) -> Result<()> {
    crate::explain::step(
        crate::explain::Step::VmWaitForSsh,
        &serde_json::json!({
            "name": vm,
            "ip": ip.to_string(),
            "user": user,
            "key": key,
            "known_hosts": paths.vm_known_hosts(vm),
            "timeout": timeout.as_secs(),
        }),
    )
}

/// The SSH login to `lv`'s host when it is remote: the jump to its guests.
pub fn hypervisor_login(lv: &Libvirt) -> Result<Option<Login>> {
    let site = Site::of_uri(&lv.uri)?;
    if site.is_local() {
        return Ok(None);
    }
    Ok(Some(site.login()?.clone()))
}

/// An OpenSSH known_hosts line pinning `host_key` for `ip`, so the system ssh client (used for
/// interactive sessions) enforces the same pin.
pub fn known_hosts_line(ip: &str, host_key: &str) -> String {
    let mut fields = host_key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let blob = fields.next().unwrap_or_default();
    format!("{ip} {kind} {blob}\n")
}

/// Read the pinned key back from a known_hosts file written by `known_hosts_line`.
pub fn pinned_key_from_known_hosts(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::from(e).context(format!("reading pinned host key {}", path.display()))
    })?;
    parse_known_hosts(path, &text)
}

/// The pinned key ("TYPE BASE64") on the first line of a known_hosts text read from `path`.
pub fn parse_known_hosts(path: &Path, text: &str) -> Result<String> {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.len() < 3 {
        return Err(Error::failed(format!(
            "{} holds no host key",
            path.display()
        )));
    }
    Ok(format!("{} {}", fields[1], fields[2]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::keys;

    #[test]
    fn known_hosts_round_trip() {
        let dir = std::env::temp_dir().join(format!("strata-kh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("known_hosts");
        let pair = keys::generate("c").unwrap();
        std::fs::write(&path, known_hosts_line("10.0.0.2", &pair.public_openssh)).unwrap();
        let back = pinned_key_from_known_hosts(&path).unwrap();
        assert_eq!(
            keys::public_key_blob(&back).unwrap(),
            keys::public_key_blob(&pair.public_openssh).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
