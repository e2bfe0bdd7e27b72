//! Waiting for a new guest: TCP port 22 answers, then an SSH handshake with the pinned host
//! key and a login succeed. A wrong host key ends the wait at once.

use crate::error::{Error, Result};
use crate::guest::{ssh, Route};
use ssh2::Session;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Wait until the guest accepts our login. `still_booting` is polled between attempts: its
/// error (Ctrl-C, the VM stopped) ends the wait at once instead of at the timeout.
pub fn wait_for_ssh(
    target: &Route,
    timeout: Duration,
    still_booting: &dyn Fn() -> Result<()>,
) -> Result<Session> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("port 22 never answered");
    while Instant::now() < deadline {
        still_booting()?;
        // Behind a remote hypervisor the guest's address is not routed here: the login through
        // the host's jump is the probe (a closed port fails the channel at once).
        let port_open = target.via.is_some()
            || TcpStream::connect_timeout(&target.addr, Duration::from_millis(500)).is_ok();
        if port_open {
            match ssh::try_connect(target, Duration::from_secs(10)) {
                Ok(session) => return Ok(session),
                Err(e) if ssh::is_host_key_mismatch(&e) => return Err(e),
                Err(e) => last_error = e.to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(Error::failed(format!(
        "{} did not become reachable over SSH within {}s (last: {last_error})",
        target.addr,
        timeout.as_secs()
    ))
    .with_hint("under TCG a boot takes tens of seconds: raise --ssh-timeout, or look at the console output"))
}
