//! Commands over an SSH session (ssh2), for guests and for remote hypervisor hosts alike:
//! run with stdout/stderr read together, the exit status returned, quoting for the far side's
//! POSIX shell, and TCP keepalive so that a peer that vanishes mid-command is noticed.

use crate::error::{Error, Result};
use ssh2::Session;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

/// Commands run with no timeout (package installs take minutes and print nothing), so a guest
/// that vanishes mid-command would leave us waiting forever: TCP keepalive probes notice a
/// silent peer after ~35 s and the next read fails instead.
pub fn detect_dead_peer(tcp: &TcpStream) -> Result<()> {
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

/// Run `command` on the far side, its stdin closed (a command that reads it sees the end at
/// once, as with `ssh -n`). With `stream`, output goes to our stdout/stderr as it comes (and
/// is not kept); otherwise it is collected.
pub fn exec(session: &Session, command: &str, stream: bool) -> Result<Output> {
    exec_with_input(session, command, stream, None)
}

/// `exec`, with what arrives on `input` sent to the command's stdin and its end (the sender
/// dropped) passed on as the end of that stdin, as `ssh HOST CMD < FILE` does.
pub fn exec_with_input(
    session: &Session,
    command: &str,
    stream: bool,
    input: Option<Receiver<Vec<u8>>>,
) -> Result<Output> {
    let mut channel = session.channel_session()?;
    channel.exec(command)?;
    let mut stdin = match input {
        Some(chunks) => StdinFeed::Open {
            chunks,
            pending: Vec::new(),
        },
        None => {
            channel.send_eof()?;
            StdinFeed::Closed
        }
    };
    let mut out = Output::default();
    // Read both streams without blocking on one while the other fills its window.
    session.set_blocking(false);
    let mut buf = [0u8; 32 * 1024];
    let result = (|| -> Result<()> {
        loop {
            let mut progressed = stdin.feed(&mut channel);
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
                            .context("the SSH connection broke while a command ran")
                            .with_hint("is the VM (or host) still running (`strata vm list`)? The command may have finished there or not"))
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

/// The command's stdin: chunks still to send, then its end, sent once.
enum StdinFeed {
    Open {
        chunks: Receiver<Vec<u8>>,
        pending: Vec<u8>,
    },
    /// Every chunk sent; the end still to pass on (the channel's window was full).
    Ending,
    Closed,
}

impl StdinFeed {
    /// Send what the channel takes now without blocking; whether anything moved.
    fn feed(&mut self, channel: &mut ssh2::Channel) -> bool {
        let mut moved = false;
        if let StdinFeed::Open { chunks, pending } = self {
            if pending.is_empty() {
                match chunks.try_recv() {
                    Ok(chunk) => *pending = chunk,
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => *self = StdinFeed::Ending,
                }
            }
        }
        if let StdinFeed::Open { pending, .. } = self {
            match channel.write(pending) {
                Ok(n) => {
                    pending.drain(..n);
                    moved = n > 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // The far side closed its stdin (the command ended or does not read it): the
                // rest has nowhere to go, as with ssh.
                Err(_) => *self = StdinFeed::Closed,
            }
        }
        if let StdinFeed::Ending = self {
            match channel.send_eof() {
                Ok(()) => {
                    *self = StdinFeed::Closed;
                    moved = true;
                }
                // libssh2's EAGAIN: the window is full, try again on the next turn.
                Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                Err(_) => *self = StdinFeed::Closed,
            }
        }
        moved
    }
}

/// Our own stdin as chunks for `exec_with_input`, read on a thread of its own (a read blocks;
/// the thread ends at the end of stdin, or with the process).
pub fn stdin_chunks() -> Receiver<Vec<u8>> {
    let (send, chunks) = std::sync::mpsc::sync_channel(4);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || send.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    chunks
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
