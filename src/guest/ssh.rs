//! SSH sessions to guests along their route, with the pinned host key: the handshake is
//! refused when the server's key is not the one strata recorded. Commands run with
//! stdout/stderr streamed and the exit status returned. One session per concurrent task (ssh2
//! serialises channels on a session).

use crate::error::{Context, Error, ErrorKind, Result};
use crate::guest::keys;
use crate::guest::Route;
use ssh2::Session;
use std::io::{Read, Write};
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
    let tcp = TcpStream::connect_timeout(&target.addr, timeout)
        .context(format!("connecting to {}", target.addr))?;
    tcp.set_read_timeout(Some(timeout.max(Duration::from_secs(10))))
        .map_err(Error::from)?;
    detect_dead_peer(&tcp)?;
    let mut session = Session::new().map_err(Error::from)?;
    session.set_tcp_stream(tcp);
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

/// Commands run with no timeout (package installs take minutes and print nothing), so a guest
/// that vanishes mid-command would leave us waiting forever: TCP keepalive probes notice a
/// silent peer after ~35 s and the next read fails instead.
fn detect_dead_peer(tcp: &TcpStream) -> Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let set =
        |r: nix::Result<()>| r.map_err(|e| Error::failed(format!("setting TCP keepalive: {e}")));
    set(setsockopt(tcp, sockopt::KeepAlive, &true))?;
    set(setsockopt(tcp, sockopt::TcpKeepIdle, &15))?;
    set(setsockopt(tcp, sockopt::TcpKeepInterval, &5))?;
    set(setsockopt(tcp, sockopt::TcpKeepCount, &4))?;
    Ok(())
}

/// What a command printed and how it ended.
#[derive(Debug, Default)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Run `command` in the guest. With `stream`, output goes to our stdout/stderr as it comes
/// (and is not kept); otherwise it is collected.
pub fn exec(session: &Session, command: &str, stream: bool) -> Result<Output> {
    let mut channel = session.channel_session()?;
    channel.exec(command)?;
    let mut out = Output::default();
    // Read both streams without blocking on one while the other fills its window.
    session.set_blocking(false);
    let mut buf = [0u8; 32 * 1024];
    let result = (|| -> Result<()> {
        loop {
            let mut progressed = false;
            for is_stderr in [false, true] {
                let read = if is_stderr {
                    channel.stderr().read(&mut buf)
                } else {
                    channel.read(&mut buf)
                };
                match read {
                    Ok(0) => {}
                    Ok(n) => {
                        progressed = true;
                        let chunk = &buf[..n];
                        match (stream, is_stderr) {
                            (true, false) => {
                                let mut o = std::io::stdout().lock();
                                o.write_all(chunk)?;
                                o.flush()?;
                            }
                            (true, true) => std::io::stderr().write_all(chunk)?,
                            (false, false) => out.stdout.extend_from_slice(chunk),
                            (false, true) => out.stderr.extend_from_slice(chunk),
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        return Err(Error::from(e)
                            .context("the connection to the guest broke while a command ran")
                            .with_hint("is the VM still running (`strata vm list`)? The command may have finished in the guest or not"))
                    }
                }
            }
            if !progressed {
                if channel.eof() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    })();
    session.set_blocking(true);
    result?;
    channel.wait_close()?;
    out.status = channel.exit_status()?;
    Ok(out)
}

/// Run a command that must succeed; its stderr becomes the error.
pub fn run_checked(session: &Session, command: &str) -> Result<String> {
    let out = exec(session, command, false)?;
    if out.status != 0 {
        return Err(Error::failed(format!(
            "`{command}` exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `script` as one argument for `sh -c`, quoted for the remote shell.
pub fn sh_c(script: &str) -> String {
    format!("sh -c {}", sh_quote(script))
}

/// `word` in single quotes for a POSIX shell (a quote inside becomes '\'').
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
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
