//! SSH sessions to guests with a pinned host key: the handshake is refused when the server's
//! key is not the one strata recorded. Commands run with stdout/stderr streamed and the exit
//! status returned. One session per concurrent task (ssh2 serialises channels on a session).

use crate::error::{Context, Error, ErrorKind, Result};
use crate::guest::keys;
use ssh2::Session;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach and log into one guest.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub user: String,
    pub key: PathBuf,
    /// The host key strata expects, as an OpenSSH public key line.
    pub pinned_host_key: String,
}

/// An error saying the guest presented a different host key: never retried.
pub fn is_host_key_mismatch(e: &Error) -> bool {
    e.kind() == ErrorKind::Failed && e.message().contains("host key mismatch")
}

/// Open an authenticated session, refusing a host key other than the pinned one.
pub fn connect(target: &Target, timeout: Duration) -> Result<Session> {
    let tcp = TcpStream::connect_timeout(&target.addr, timeout)
        .context(format!("connecting to {}", target.addr))?;
    tcp.set_read_timeout(Some(timeout.max(Duration::from_secs(10))))?;
    detect_dead_peer(&tcp)?;
    let mut session = Session::new()?;
    session.set_tcp_stream(tcp);
    session.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
    session
        .handshake()
        .context(format!("SSH handshake with {}", target.addr))?;
    let expected = keys::public_key_blob(&target.pinned_host_key)?;
    let presented = session
        .host_key()
        .map(|(blob, _)| blob.to_vec())
        .ok_or_else(|| Error::failed("the guest presented no host key"))?;
    if presented != expected {
        return Err(Error::failed(format!(
            "host key mismatch at {}: expected {}, got {}",
            target.addr,
            keys::fingerprint_of_blob(&expected),
            keys::fingerprint_of_blob(&presented)
        ))
        .with_hint(
            "this is not the guest strata created (or its key was changed); strata will not log in",
        ));
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

/// Write `contents` to `remote` in the guest with `mode`, through a temporary name and a
/// rename, so a dropped connection never leaves a half-written file under the real name.
pub fn upload(session: &Session, contents: &mut dyn Read, remote: &str, mode: i32) -> Result<u64> {
    let sftp = session.sftp()?;
    let partial = format!("{remote}.strata-partial");
    let mut file = sftp
        .open_mode(
            Path::new(&partial),
            ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::TRUNCATE,
            mode,
            ssh2::OpenType::File,
        )
        .context(format!("creating {partial} in the guest"))?;
    // Large writes let libssh2 keep many SFTP packets in flight; io::copy's 8 KiB buffer
    // waits for an acknowledgement per packet.
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = contents.read(&mut buf)?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .context(format!("writing {remote} in the guest"))?;
        written += n as u64;
    }
    drop(file);
    // posix-rename (OpenSSH's extension) replaces an existing file atomically.
    sftp.rename(
        Path::new(&partial),
        Path::new(remote),
        Some(ssh2::RenameFlags::OVERWRITE | ssh2::RenameFlags::ATOMIC | ssh2::RenameFlags::NATIVE),
    )
    .context(format!("renaming {partial} to {remote} in the guest"))?;
    Ok(written)
}

/// A file's contents in the guest, or None when it does not exist.
pub fn read_file(session: &Session, remote: &str) -> Result<Option<Vec<u8>>> {
    let sftp = session.sftp()?;
    let mut file = match sftp.open(Path::new(remote)) {
        Ok(file) => file,
        Err(e) if e.code() == ssh2::ErrorCode::SFTP(2) => return Ok(None),
        Err(e) => return Err(Error::from(e).context(format!("opening {remote} in the guest"))),
    };
    let mut contents = Vec::new();
    file.read_to_end(&mut contents)
        .context(format!("reading {remote} in the guest"))?;
    Ok(Some(contents))
}

#[cfg(test)]
mod tests {
    use super::*;

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
