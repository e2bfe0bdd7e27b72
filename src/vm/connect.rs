//! Opening libvirt: --connect, then LIBVIRT_DEFAULT_URI, then qemu:///system. A daemon that is
//! not there gets one error that says how to start it.

use crate::error::{Error, ErrorKind, Result};
use virt::connect::Connect;

/// An open libvirt connection. `Connect` is Send + Sync; share it by reference.
pub struct Libvirt {
    pub conn: Connect,
    pub uri: String,
}

/// The URI strata will use, and where it came from.
pub fn resolve_uri(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| {
            std::env::var("LIBVIRT_DEFAULT_URI")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "qemu:///system".to_string())
}

impl Libvirt {
    pub fn open(uri: &str) -> Result<Libvirt> {
        // libvirt prints every error to stderr by default; ours carry it instead.
        virt::error::clear_error_callback();
        match Connect::open(Some(uri)) {
            Ok(conn) => Ok(Libvirt {
                conn,
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

    /// True for libvirt's in-process test driver, where nothing really boots.
    pub fn is_test_driver(&self) -> bool {
        self.uri.starts_with("test://")
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
