//! A local port forward to the guest over SSH (`strata vm forward VM 8080`): a listener on the
//! host's loopback whose connections are carried through the SSH tunnel to a port the guest
//! reaches (its own 127.0.0.1 by default, where stacks publish their ports). No traffic goes
//! anywhere but to the VM, and only inside the SSH connection.

use crate::error::{Error, Result};
use crate::guest::tunnel::{Remote, SocketTunnel};
use crate::guest::Route;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;

/// A running forward; dropping it stops accepting (open connections finish on their own).
pub struct Forward {
    pub local: std::net::SocketAddr,
    pub remote: String,
    listener: TcpListener,
    tunnel: Arc<SocketTunnel>,
}

impl Forward {
    /// Log in and listen on 127.0.0.1:`local_port` (0: any free port).
    pub fn open(
        target: &Route,
        local_port: u16,
        remote_host: &str,
        remote_port: u16,
    ) -> Result<Forward> {
        let listener = TcpListener::bind(("127.0.0.1", local_port)).map_err(|e| {
            Error::from(e)
                .context(format!("listening on 127.0.0.1:{local_port}"))
                .with_hint("choose another local port: LOCAL:REMOTE")
        })?;
        let remote = Remote::Tcp(remote_host.to_string(), remote_port);
        let tunnel = Arc::new(SocketTunnel::to(target, remote.clone())?);
        Ok(Forward {
            local: listener.local_addr()?,
            remote: remote.to_string(),
            listener,
            tunnel,
        })
    }

    /// Serve connections on a background thread for as long as the process runs.
    pub fn spawn(self) -> Result<std::net::SocketAddr> {
        let local = self.local;
        thread::Builder::new()
            .name(format!("forward {local}"))
            .spawn(move || self.serve())?;
        Ok(local)
    }

    /// Accept connections until the listener fails.
    pub fn serve(self) {
        for client in self.listener.incoming() {
            let Ok(client) = client else { continue };
            match self.tunnel.connect() {
                Ok(channel) => splice(client, channel),
                Err(e) => {
                    tracing::warn!("forward to {}: {e}", self.remote);
                    let _ = client.shutdown(Shutdown::Both);
                }
            }
        }
    }
}

/// Copy both ways between a TCP client and a tunnel connection, each way on its own thread,
/// passing the end of one direction on as a half close.
fn splice(client: TcpStream, channel: UnixStream) {
    let (Ok(client_back), Ok(channel_back)) = (client.try_clone(), channel.try_clone()) else {
        return;
    };
    thread::spawn(move || {
        copy_then_close(client, channel, |c: &UnixStream| {
            c.shutdown(Shutdown::Write)
        })
    });
    thread::spawn(move || {
        copy_then_close(channel_back, client_back, |c: &TcpStream| {
            c.shutdown(Shutdown::Write)
        })
    });
}

fn copy_then_close<R: Read, W: Write>(
    mut from: R,
    mut to: W,
    close: impl Fn(&W) -> std::io::Result<()>,
) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = close(&to);
}
