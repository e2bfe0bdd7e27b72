//! SSH sessions to guests along their route, with the pinned host key: the handshake is
//! refused when the server's key is not the one strata recorded. Commands run with
//! stdout/stderr streamed and the exit status returned. One session per concurrent task (ssh2
//! serialises channels on a session).

use crate::error::{Context, Error, ErrorKind, Result};
use crate::guest::keys;
use crate::guest::Route;
use crate::ssh_exec::detect_dead_peer;
pub use crate::ssh_exec::{
    exec, exec_with_input, run_checked, sh_c, sh_quote, stdin_chunks, Output,
};
use ssh2::Session;
use std::net::TcpStream;
use std::time::Duration;

/// An error saying the guest presented a different host key: never retried.
pub fn is_host_key_mismatch(e: &Error) -> bool {
    e.kind() == ErrorKind::HostKeyChanged
}

/// How many times a handshake that timed out is tried on a fresh connection before giving
/// up. Under TCG a guest that is still starting services, or that shares the host's cores
/// with other booting guests, can leave sshd's key exchange unanswered for longer than one
/// timeout (seen at 15 s in the engine benchmark); the next connection is usually answered.
pub const HANDSHAKE_ATTEMPTS: u32 = 3;

/// Open an authenticated session, refusing a host key other than the pinned one. A handshake
/// that times out is tried again, up to [`HANDSHAKE_ATTEMPTS`] times in all; every other
/// failure (refused, unreachable, wrong key, login refused) is returned at once.
pub fn connect(target: &Route, timeout: Duration) -> Result<Session> {
    let mut attempt = 1;
    loop {
        match connect_once(target, timeout) {
            Err(Attempt::TimedOut(_)) if attempt < HANDSHAKE_ATTEMPTS => attempt += 1,
            Err(Attempt::TimedOut(e) | Attempt::Failed(e)) => return Err(e),
            Ok(session) => return Ok(session),
        }
    }
}

/// One connection attempt, for callers that run their own loop (waiting for a boot).
pub fn try_connect(target: &Route, timeout: Duration) -> Result<Session> {
    connect_once(target, timeout).map_err(|(Attempt::TimedOut(e) | Attempt::Failed(e))| e)
}

/// How one attempt failed: a handshake timeout is worth a fresh connection.
enum Attempt {
    TimedOut(Error),
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Attempt::Failed(e)
    }
}

fn connect_once(target: &Route, timeout: Duration) -> std::result::Result<Session, Attempt> {
    let mut session = Session::new().map_err(Error::from)?;
    match &target.via {
        None => {
            let tcp = TcpStream::connect_timeout(&target.addr, timeout)
                .context(format!("connecting to {}", target.addr))?;
            tcp.set_read_timeout(Some(timeout.max(Duration::from_secs(10))))
                .map_err(Error::from)?;
            detect_dead_peer(&tcp)?;
            session.set_tcp_stream(tcp);
        }
        // Through the hypervisor: its session keeps itself alive; this end is a local pipe.
        Some(host) => {
            let pipe = crate::guest::jump::connect(host, target.addr)?;
            pipe.set_read_timeout(Some(timeout.max(Duration::from_secs(10))))
                .map_err(Error::from)?;
            session.set_tcp_stream(pipe);
        }
    }
    session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    // Ask for the pinned key's type: a guest that also holds, say, an ECDSA key from its image
    // would otherwise present that one and fail the pin.
    if let Some(kind) = target.pinned_host_key.split_whitespace().next() {
        session
            .method_pref(ssh2::MethodType::HostKey, kind)
            .map_err(Error::from)?;
    }
    if let Err(e) = session.handshake() {
        // LIBSSH2_ERROR_TIMEOUT (libssh2.h): the guest took the connection but did not answer.
        let timed_out = e.code() == ssh2::ErrorCode::Session(-9);
        let e = Error::from(e).context(format!("SSH handshake with {}", target.addr));
        return Err(if timed_out {
            Attempt::TimedOut(e)
        } else {
            Attempt::Failed(e)
        });
    }
    let expected = keys::public_key_blob(&target.pinned_host_key)?;
    let presented = session
        .host_key()
        .map(|(blob, _)| blob.to_vec())
        .ok_or_else(|| Error::failed("the guest presented no host key"))?;
    if presented != expected {
        return Err(Attempt::Failed(Error::new(
            ErrorKind::HostKeyChanged,
            format!(
                "host key mismatch at {}: expected {}, got {}",
                target.addr,
                keys::fingerprint_of_blob(&expected),
                keys::fingerprint_of_blob(&presented)
            ),
        )
        .with_hint(
            "this is not the guest strata created (or its key was changed); strata will not log in",
        )));
    }
    session
        .userauth_pubkey_file(&target.user, None, &target.key, None)
        .context(format!(
            "logging in as {} with {}",
            target.user,
            target.key.display()
        ))?;
    // Commands may run for minutes (package installs); only the handshake is bounded.
    session.set_timeout(0);
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn route_to(addr: std::net::SocketAddr) -> Route {
        Route {
            addr,
            user: "strata".into(),
            key: "/nonexistent".into(),
            pinned_host_key: "ssh-ed25519 AAAA".into(),
            via: None,
        }
    }

    #[test]
    fn a_silent_server_is_tried_again_then_reported_as_a_handshake_timeout() {
        // A loopback listener that takes connections and never says a word, like sshd in a
        // guest too busy to answer.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let taken = Arc::new(AtomicU32::new(0));
        let counter = taken.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        let Err(err) = connect(&route_to(addr), Duration::from_millis(300)) else {
            panic!("a server that never speaks let us in");
        };
        assert!(err.message().contains("SSH handshake with"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Unreachable);
        assert_eq!(taken.load(Ordering::SeqCst), HANDSHAKE_ATTEMPTS);
    }

    #[test]
    fn a_refused_connection_is_not_tried_again() {
        // Bind then drop: the port is (almost certainly) closed, and the refusal is final.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let Err(err) = try_connect(&route_to(addr), Duration::from_millis(300)) else {
            panic!("a closed port let us in");
        };
        assert!(err.message().contains("connecting to"), "{err}");
        assert_eq!(err.kind(), ErrorKind::Unreachable);
    }
}
