//! Opening libvirt: --connect, then LIBVIRT_DEFAULT_URI, then qemu:///system. A daemon that is
//! not there gets one error that says how to start it. A daemon that goes away while strata
//! works (an upgrade restarts libvirtd; qemu and the guests keep running) is waited for and
//! reconnected to, for steps that can safely run again.

use crate::error::{Error, ErrorKind, Result};
use std::sync::RwLock;
use std::time::{Duration, Instant};
use virt::connect::Connect;

/// How long a step waits for a libvirtd that went away to come back; STRATA_LIBVIRT_PATIENCE
/// (seconds, 1 to 600) changes it (the fault tests use a short one).
pub fn reconnect_patience() -> Duration {
    let seconds = std::env::var("STRATA_LIBVIRT_PATIENCE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| (1..=600).contains(s))
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// An open libvirt connection, replaced by a new one when libvirtd restarts under it.
/// `Connect` is Send + Sync; share the Libvirt by reference.
pub struct Libvirt {
    conn: RwLock<Connect>,
    pub uri: String,
}

/// The URI when neither --connect nor LIBVIRT_DEFAULT_URI names one.
pub const DEFAULT_URI: &str = "qemu:///system";

/// The URI strata will use, and where it came from.
pub fn resolve_uri(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| {
            std::env::var("LIBVIRT_DEFAULT_URI")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| DEFAULT_URI.to_string())
}

impl Libvirt {
    pub fn open(uri: &str) -> Result<Libvirt> {
        // libvirt prints every error to stderr by default; ours carry it instead.
        virt::error::clear_error_callback();
        match Connect::open(Some(uri)) {
            Ok(conn) => Ok(Libvirt {
                conn: RwLock::new(conn),
                uri: uri.to_string(),
            }),
            Err(e) => Err(Error::new(
                ErrorKind::Unreachable,
                format!("cannot reach libvirt at {uri}: {}", e.message()),
            )
            .with_hint(if uri.starts_with("qemu:///system") {
                "start libvirtd (`libvirtd -d`, or `systemctl start libvirtd`; ./scripts/setup does both) or pass --connect URI"
            } else {
                "check the --connect URI / LIBVIRT_DEFAULT_URI and that its daemon is running"
            })),
        }
    }

    /// True when the hypervisor is another machine (its files, pool and guests are there).
    pub fn is_remote(&self) -> bool {
        crate::host::remote::Site::of_uri(&self.uri)
            .map(|site| !site.is_local())
            .unwrap_or(false)
    }

    /// True for libvirt's in-process test driver, where nothing really boots.
    pub fn is_test_driver(&self) -> bool {
        self.uri.starts_with("test://")
    }

    /// The current connection (a new handle on it; handles looked up from an old connection
    /// die with it, so steps look objects up by name).
    pub fn conn(&self) -> Connect {
        match self.conn.read() {
            Ok(conn) => conn.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Run `step`; when libvirtd went away under it, wait for libvirtd to answer again (up to
    /// `reconnect_patience()`), reconnect and run the step again. Only for steps that are safe to
    /// repeat: they look their objects up by name and skip what is already done.
    ///
    /// "Unreachable" is also what a guest that went away gives (SSH, sockets): the step is
    /// repeated only when libvirt itself stops answering, else it would be repeated forever.
    pub fn resilient<T>(&self, mut step: impl FnMut() -> Result<T>) -> Result<T> {
        let patience = reconnect_patience();
        let deadline = Instant::now() + patience;
        loop {
            match step() {
                Err(e) if e.kind() == ErrorKind::Unreachable && self.went_away() => {
                    self.reconnect(deadline).map_err(|gone| {
                        e.clone().with_hint(format!(
                            "libvirtd went away and did not come back within {} s ({}); what this run made is rolled back by the next strata command once libvirtd runs",
                            patience.as_secs(),
                            gone.message()
                        ))
                    })?;
                }
                other => return other,
            }
        }
    }

    /// Open a new connection once libvirtd answers, trying until `deadline`.
    fn reconnect(&self, deadline: Instant) -> Result<()> {
        loop {
            if let Ok(conn) = Connect::open(Some(&self.uri)) {
                if conn.lib_version().is_ok() {
                    tracing::info!(uri = %self.uri, "libvirt went away; reconnected");
                    match self.conn.write() {
                        Ok(mut current) => *current = conn,
                        Err(poisoned) => *poisoned.into_inner() = conn,
                    }
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Unreachable,
                    format!("libvirt at {} does not answer", self.uri),
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Whether libvirt answers on the current connection.
    pub fn answers(&self) -> bool {
        self.conn().lib_version().is_ok()
    }

    /// Whether libvirtd stopped answering this connection (never for the in-process test
    /// driver, where nothing goes away).
    pub fn went_away(&self) -> bool {
        !self.is_test_driver() && !self.answers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_wins_over_environment_and_default() {
        assert_eq!(resolve_uri(Some("test:///default")), "test:///default");
    }

    #[test]
    fn unreachable_daemon_gets_a_hint() {
        let err = match Libvirt::open("qemu+unix:///system?socket=/nonexistent/strata.sock") {
            Err(e) => e,
            Ok(_) => panic!("opened a socket that does not exist"),
        };
        assert_eq!(err.kind(), ErrorKind::Unreachable);
        assert!(err.message().contains("cannot reach libvirt"), "{err}");
        assert!(err.hint().is_some());
    }
}
