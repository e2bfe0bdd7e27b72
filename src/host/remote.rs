//! Where a libvirt URI's hypervisor is: this machine, or a remote host reached over SSH
//! (`qemu+ssh://USER@HOST:PORT/system?keyfile=FILE&known_hosts=FILE`). For a remote host,
//! the login libvirt itself uses (the URI's user, else ours; its keyfile, else the agent and
//! ~/.ssh's keys) and an SSH session to that host whose key is checked against known_hosts
//! (the URI's file, else ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts) — an unknown or
//! changed key is refused, never accepted blindly.

use crate::error::{Context, Error, ErrorKind, Result};
use crate::ssh_exec::detect_dead_peer;
use ssh2::{CheckResult, KnownHostFileKind, Session};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The SSH login to a remote hypervisor, as its URI gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub host: String,
    pub port: u16,
    /// The URI's `keyfile`: the only key tried when given.
    pub keyfile: Option<PathBuf>,
    /// The URI's `known_hosts`: the only file the host key is checked against when given.
    pub known_hosts: Option<PathBuf>,
}

/// Where a connection URI's hypervisor runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// This machine (a local socket, or libvirt's in-process test driver).
    Local,
    /// A host reached over SSH.
    Ssh(Login),
    /// A host reached another way (TLS, TCP): libvirt works, but strata has no SSH login to
    /// reach that host's files or its guests.
    Other { transport: String },
}

impl Site {
    /// Read a libvirt connection URI. Only the parts strata needs are checked; libvirt checks
    /// the rest when it connects.
    pub fn of_uri(uri: &str) -> Result<Site> {
        let bad = |why: &str| {
            Error::bad_input(format!("libvirt URI '{uri}': {why}")).with_hint(
                "a remote host is written qemu+ssh://USER@HOST[:PORT]/system, e.g. qemu+ssh://root@hv2/system",
            )
        };
        let parsed = url::Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
        let (driver, transport) = match parsed.scheme().split_once('+') {
            Some((driver, transport)) => (driver, Some(transport)),
            None => (parsed.scheme(), None),
        };
        let host = parsed.host_str().unwrap_or_default();
        if driver == "test" || matches!(transport, Some("unix")) {
            return Ok(Site::Local);
        }
        match transport {
            None if host.is_empty() => Ok(Site::Local),
            Some("ssh" | "libssh2" | "libssh") => {
                if host.is_empty() {
                    return Err(bad("an SSH transport needs a host"));
                }
                let mut login = Login {
                    user: match parsed.username() {
                        "" => local_user(),
                        user => percent_decoded(user),
                    },
                    host: host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    port: parsed.port().unwrap_or(22),
                    keyfile: None,
                    known_hosts: None,
                };
                for (key, value) in parsed.query_pairs() {
                    match key.as_ref() {
                        "keyfile" => login.keyfile = Some(PathBuf::from(value.as_ref())),
                        "known_hosts" => login.known_hosts = Some(PathBuf::from(value.as_ref())),
                        _ => {}
                    }
                }
                // These values go into ssh's command line and ssh_config lines (ProxyCommand):
                // a line break or other control character there would be a new directive.
                let paths = [&login.keyfile, &login.known_hosts]
                    .into_iter()
                    .flatten()
                    .map(|p| p.to_string_lossy().into_owned());
                if [login.user.clone(), login.host.clone()]
                    .into_iter()
                    .chain(paths)
                    .any(|value| value.chars().any(char::is_control))
                {
                    return Err(bad(
                        "control characters in the user, host, keyfile or known_hosts",
                    ));
                }
                Ok(Site::Ssh(login))
            }
            other => Ok(Site::Other {
                transport: other.unwrap_or("tls").to_string(),
            }),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Site::Local)
    }

    /// Whether two sites are one machine as far as strata can tell: both this machine, or
    /// the same user, host and port (however the rest of the URI is written).
    pub fn same_machine(&self, other: &Site) -> bool {
        match (self, other) {
            (Site::Local, Site::Local) => true,
            (Site::Ssh(a), Site::Ssh(b)) => {
                (&a.user, &a.host, a.port) == (&b.user, &b.host, b.port)
            }
            _ => false,
        }
    }

    /// The SSH login, or why there is none.
    pub fn login(&self) -> Result<&Login> {
        match self {
            Site::Ssh(login) => Ok(login),
            Site::Local => Err(Error::failed("this machine is not reached over SSH")),
            Site::Other { transport } => Err(Error::bad_input(format!(
                "strata reaches remote hosts over SSH, and this URI's transport is {transport}"
            ))
            .with_hint("connect with qemu+ssh://USER@HOST/system")),
        }
    }
}

fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("u={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// The user strata runs as: the login libvirt's ssh uses when the URI names none.
fn local_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".to_string())
}

fn home_dir() -> PathBuf {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.dir)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

impl Login {
    /// `user@host` (with the port when it is not 22), as messages and ssh(1) name it.
    pub fn display(&self) -> String {
        match self.port {
            22 => format!("{}@{}", self.user, self.host),
            port => format!("{}@{}:{port}", self.user, self.host),
        }
    }

    /// The name of this host's folder in strata's state (VMs' keys and pins): the login as
    /// `display` writes it, with anything but letters, digits and `.@:_-` replaced, so that no
    /// URI becomes a path.
    pub fn folder_name(&self) -> String {
        let name: String = self
            .display()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._@:-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        match name.strip_prefix('.') {
            Some(rest) => format!("_{rest}"),
            None => name,
        }
    }

    /// OpenSSH's ProxyCommand that reaches a guest through this host (`-W %h:%p`), with the
    /// same key and the same known_hosts check as strata's own login: the system ssh client
    /// then logs into the guest with the guest's own pinned key. Written for the shell OpenSSH
    /// runs it with, each value quoted and its '%' doubled (OpenSSH expands %-tokens first).
    pub fn proxy_command(&self) -> String {
        let quote = |value: &str| crate::ssh_exec::sh_quote(&value.replace('%', "%%"));
        let mut words = vec!["ssh".to_string()];
        if let Some(keyfile) = &self.keyfile {
            words.push("-i".into());
            words.push(quote(&keyfile.display().to_string()));
            words.push("-o".into());
            words.push("IdentitiesOnly=yes".into());
        }
        if let Some(known_hosts) = &self.known_hosts {
            words.push("-o".into());
            words.push(quote(&format!(
                "UserKnownHostsFile={}",
                known_hosts.display()
            )));
            words.push("-o".into());
            words.push("GlobalKnownHostsFile=/dev/null".into());
        }
        words.extend([
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-p".into(),
            self.port.to_string(),
            "-l".into(),
            quote(&self.user),
            "-W".into(),
            "%h:%p".into(),
            quote(&self.host),
        ]);
        words.join(" ")
    }

    /// The known_hosts files the host key is checked against.
    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        match &self.known_hosts {
            Some(file) => vec![file.clone()],
            None => vec![
                home_dir().join(".ssh/known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
            ],
        }
    }

    /// Open an authenticated session to the host, its key checked first.
    pub fn connect(&self, timeout: Duration) -> Result<Session> {
        let who = self.display();
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .context(format!("resolving {}", self.host))?
            .next()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Unreachable,
                    format!("{} has no address", self.host),
                )
            })?;
        let tcp = TcpStream::connect_timeout(&addr, timeout)
            .context(format!("connecting to {who} over SSH"))?;
        detect_dead_peer(&tcp)?;
        let mut session = Session::new()?;
        session.set_tcp_stream(tcp);
        session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
        session
            .handshake()
            .map_err(|e| Error::from(e).context(format!("SSH handshake with {who}")))?;
        self.check_host_key(&session)?;
        self.log_in(&session)?;
        // Uploads and commands may take minutes; only the connection is bounded.
        session.set_timeout(0);
        session.set_keepalive(true, 15);
        Ok(session)
    }

    fn check_host_key(&self, session: &Session) -> Result<()> {
        let (key, _) = session
            .host_key()
            .ok_or_else(|| Error::failed(format!("{} presented no host key", self.host)))?;
        let files = self.known_hosts_files();
        let mut known = session.known_hosts()?;
        for file in files.iter().filter(|f| f.exists()) {
            known
                .read_file(file, KnownHostFileKind::OpenSSH)
                .map_err(|e| Error::from(e).context(format!("reading {}", file.display())))?;
        }
        let listed = files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match known.check_port(&self.host, self.port, key) {
            CheckResult::Match => Ok(()),
            CheckResult::Mismatch => Err(Error::new(
                ErrorKind::HostKeyChanged,
                format!(
                    "the host key of {} is not the one in {listed}",
                    self.display()
                ),
            )
            .with_hint(
                "this may not be the host you meant; strata will not log in. If its key really changed, fix the entry with `ssh-keygen -R HOST` and connect once with ssh to check the new one",
            )),
            CheckResult::NotFound | CheckResult::Failure => Err(Error::new(
                ErrorKind::HostKeyChanged,
                format!("the host key of {} is unknown (not in {listed})", self.display()),
            )
            .with_hint(format!(
                "connect once with `ssh {}` and compare the fingerprint it shows with the host's; strata never accepts a key blindly",
                self.display()
            ))),
        }
    }

    fn log_in(&self, session: &Session) -> Result<()> {
        let who = self.display();
        if let Some(keyfile) = &self.keyfile {
            return session
                .userauth_pubkey_file(&self.user, None, keyfile, None)
                .context(format!("logging in to {who} with {}", keyfile.display()));
        }
        if session.userauth_agent(&self.user).is_ok() {
            return Ok(());
        }
        let ssh_dir = home_dir().join(".ssh");
        for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let key = ssh_dir.join(name);
            if key.exists()
                && session
                    .userauth_pubkey_file(&self.user, None, &key, None)
                    .is_ok()
            {
                return Ok(());
            }
        }
        Err(Error::new(
            ErrorKind::Auth,
            format!("{who} refused every key strata has (the agent's and ~/.ssh's)"),
        )
        .with_hint("name the key in the URI (?keyfile=PATH) or load it into ssh-agent"))
    }
}

/// Run `command` on the host; it must succeed.
pub fn run(session: &Session, command: &str) -> Result<String> {
    crate::ssh_exec::run_checked(session, command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_remote_uris_are_told_apart() {
        for local in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system",
            "test:///default",
        ] {
            assert_eq!(Site::of_uri(local).unwrap(), Site::Local, "{local}");
        }
        let site = Site::of_uri(
            "qemu+ssh://admin@hv2.example:2222/system?keyfile=/k/id%20x&known_hosts=/k/kh&no_tty=1",
        )
        .unwrap();
        assert_eq!(
            site,
            Site::Ssh(Login {
                user: "admin".into(),
                host: "hv2.example".into(),
                port: 2222,
                keyfile: Some("/k/id x".into()),
                known_hosts: Some("/k/kh".into()),
            })
        );
        let Site::Ssh(login) = Site::of_uri("qemu+libssh2://[fd00::2]/system").unwrap() else {
            panic!("an SSH URI")
        };
        assert_eq!((login.host.as_str(), login.port), ("fd00::2", 22));
        assert_eq!(login.user, local_user());
        assert_eq!(
            login.known_hosts_files()[0],
            home_dir().join(".ssh/known_hosts")
        );
        assert!(matches!(
            Site::of_uri("qemu+tls://hv2/system").unwrap(),
            Site::Other { .. }
        ));
        assert!(matches!(
            Site::of_uri("qemu://hv2/system").unwrap(),
            Site::Other { .. }
        ));
    }

    #[test]
    fn one_machine_however_its_uri_is_written() {
        let site = |uri: &str| Site::of_uri(uri).unwrap();
        assert!(site("qemu:///system").same_machine(&site("qemu+unix:///system")));
        assert!(site("qemu+ssh://root@hv2/system?keyfile=/k")
            .same_machine(&site("qemu+ssh://root@hv2:22/system")));
        assert!(
            !site("qemu+ssh://root@hv2/system").same_machine(&site("qemu+ssh://root@hv3/system"))
        );
        assert!(!site("qemu+ssh://root@hv2/system").same_machine(&site("qemu:///system")));
    }

    #[test]
    fn a_login_folder_is_one_plain_name() {
        let folder = |uri: &str| Site::of_uri(uri).unwrap().login().unwrap().folder_name();
        assert_eq!(folder("qemu+ssh://root@hv2/system"), "root@hv2");
        assert_eq!(folder("qemu+ssh://admin@hv2:2222/system"), "admin@hv2:2222");
        assert_eq!(folder("qemu+ssh://a%2F..%2Fb@hv2/system"), "a_.._b@hv2");
        let login = Login {
            user: "..".into(),
            host: "x/y".into(),
            port: 22,
            keyfile: None,
            known_hosts: None,
        };
        assert_eq!(login.folder_name(), "_.@x_y");
        assert!(!folder("qemu+ssh://[fd00::2]/system").contains('/'));
    }

    #[test]
    fn the_proxy_command_quotes_what_the_uri_gave() {
        let Site::Ssh(login) = Site::of_uri(
            "qemu+ssh://ad%27min@hv2:2222/system?keyfile=/k/id%20x%25y&known_hosts=/k/kh",
        )
        .unwrap() else {
            panic!("an SSH URI")
        };
        assert_eq!(
            login.proxy_command(),
            "ssh -i '/k/id x%%y' -o IdentitiesOnly=yes -o 'UserKnownHostsFile=/k/kh' \
             -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -p 2222 \
             -l 'ad'\\''min' -W %h:%p 'hv2'"
        );
        let Site::Ssh(plain) = Site::of_uri("qemu+ssh://root@hv3/system").unwrap() else {
            panic!("an SSH URI")
        };
        assert_eq!(
            plain.proxy_command(),
            "ssh -o StrictHostKeyChecking=yes -p 22 -l 'root' -W %h:%p 'hv3'"
        );
    }

    #[test]
    fn a_bad_uri_is_named() {
        for bad in [
            "not a uri",
            "qemu+ssh:///system",
            "qemu+ssh://a%0AProxyCommand%20x@hv2/system",
            "qemu+ssh://root@hv2/system?keyfile=/k%0Ax",
        ] {
            let err = Site::of_uri(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadInput, "{bad}");
            assert!(err.message().contains(bad), "{err}");
            assert!(err.hint().is_some());
        }
        let other = Site::of_uri("qemu+tcp://hv2/system").unwrap();
        assert!(other.login().unwrap_err().message().contains("tcp"));
    }
}
