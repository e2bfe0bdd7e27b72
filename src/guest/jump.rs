//! Guests behind their hypervisor: a guest on a remote host's private network is reached
//! through an SSH session to that host (a direct-tcpip channel to the guest's port), logged in
//! as libvirt logs in for the URI, with the host's key checked against known_hosts first; the
//! guest's own pinned key is then checked on the connection inside, as for a local guest.
//!
//! One tunnel per host and guest address, kept for the rest of the process (a command talks
//! to a guest over several connections); `close_all` ends them before the process exits, so
//! no pump thread is inside libssh2 while it is torn down.

use crate::error::{Error, Result};
use crate::guest::tunnel::{Remote, SocketTunnel};
use crate::host::remote::Login;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, OnceLock};

type Tunnels = Mutex<HashMap<(String, SocketAddr), Arc<SocketTunnel>>>;

static TUNNELS: OnceLock<Tunnels> = OnceLock::new();

fn tunnels() -> &'static Tunnels {
    TUNNELS.get_or_init(Default::default)
}

/// A new connection to `addr` as the host behind `login` reaches it.
pub fn connect(login: &Login, addr: SocketAddr) -> Result<UnixStream> {
    let key = (login.display(), addr);
    let tunnel = {
        let mut open = tunnels()
            .lock()
            .map_err(|_| Error::failed("the jump tunnels' lock is poisoned"))?;
        match open.get(&key) {
            Some(tunnel) => Arc::clone(tunnel),
            None => {
                let made = Arc::new(SocketTunnel::through_host(
                    login,
                    Remote::Tcp(addr.ip().to_string(), addr.port()),
                )?);
                open.insert(key, Arc::clone(&made));
                made
            }
        }
    };
    tunnel
        .connect()
        .map_err(|e| e.context(format!("reaching {addr} through {}", login.display())))
}

/// End every jump tunnel (their pump threads are joined).
pub fn close_all() {
    if let Some(open) = TUNNELS.get() {
        if let Ok(mut open) = open.lock() {
            open.clear();
        }
    }
}
