//! Forwarding over SSH: each `connect()` hands out the local end of a socket pair whose other
//! end is pumped to a fresh ssh2 channel: direct-streamlocal to a socket inside the guest
//! (Docker's /var/run/docker.sock), or direct-tcpip to a port the guest can reach (a service
//! published on the VM's loopback). Nothing listens on the host unless a caller does, and
//! nothing goes over the network except the SSH connection itself.
//!
//! One thread owns the SSH session, because ssh2 serialises everything on a session anyway; it
//! pumps all open connections without blocking. When opening a channel fails because the
//! session died (the guest rebooted, the connection was cut), the thread logs in again and
//! retries once, so a long-lived client heals on its next request instead of failing silently.

use crate::error::{Error, Result};
use crate::guest::{ssh, Route};
use crate::host::remote::Login;
use ssh2::{Channel, Session};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);

/// How long one blocking step of the pump (opening or closing a channel) may wait for the
/// guest. Without a bound, a session whose TCP connection lives on while sshd no longer
/// answers would stall the pump, and every caller with it, forever.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a caller waits for the pump to hand over a connection: a channel that times out,
/// a new login (every handshake attempt of it) and a second channel, with room to spare.
const OPEN_DEADLINE: Duration = Duration::from_secs(
    2 * CHANNEL_TIMEOUT.as_secs() + ssh::HANDSHAKE_ATTEMPTS as u64 * LOGIN_TIMEOUT.as_secs() + 15,
);

/// A running tunnel to one socket in one guest. Dropping it closes the connections still
/// open and waits for the pump thread: libssh2 must not be used after the process starts to
/// exit (it is torn down at exit, and a session freed after that crashes).
pub struct SocketTunnel {
    requests: Option<mpsc::Sender<Request>>,
    stop: Arc<AtomicBool>,
    pump: Option<thread::JoinHandle<()>>,
    remote: Remote,
    addr: String,
    /// Where the far end is opened ("in the guest at …", "from the host …"), for errors.
    place: String,
}

/// Whom a tunnel's SSH session is with, and how to log in again when it is lost: a guest
/// (channels lead to what the guest reaches), or a remote hypervisor (channels lead to what
/// that host reaches: the guests on its private networks).
#[derive(Debug, Clone)]
enum Origin {
    Guest(Route),
    Host(Login),
}

impl Origin {
    fn login(&self) -> Result<Session> {
        match self {
            Origin::Guest(route) => ssh::connect(route, LOGIN_TIMEOUT),
            Origin::Host(login) => login.connect(LOGIN_TIMEOUT),
        }
    }

    fn addr(&self) -> String {
        match self {
            Origin::Guest(route) => route.addr.to_string(),
            Origin::Host(login) => login.display(),
        }
    }

    /// Where the tunnel's far end is opened, as an error says it.
    fn place(&self) -> String {
        match self {
            Origin::Guest(route) => format!("in the guest at {}", route.addr),
            Origin::Host(login) => format!("from the host {}", login.display()),
        }
    }

    /// What a refused channel most likely means.
    fn refusal_hint(&self) -> &'static str {
        match self {
            Origin::Guest(_) => {
                "is the service listening on that socket in the guest? (strata engine install)"
            }
            Origin::Host(_) => {
                "nothing listens there yet: is the guest booted and its SSH server up?"
            }
        }
    }
}

/// Where the channels of a tunnel lead, inside the guest.
#[derive(Debug, Clone)]
pub enum Remote {
    Socket(String),
    Tcp(String, u16),
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Socket(path) => write!(f, "{path}"),
            Remote::Tcp(host, port) => write!(f, "{host}:{port}"),
        }
    }
}

impl Remote {
    fn open(&self, session: &Session) -> std::result::Result<Channel, ssh2::Error> {
        match self {
            Remote::Socket(path) => session.channel_direct_streamlocal(path, None),
            Remote::Tcp(host, port) => session.channel_direct_tcpip(host, *port, None),
        }
    }
}

struct Request {
    local: UnixStream,
    reply: mpsc::Sender<Result<()>>,
}

impl SocketTunnel {
    /// Log in now (so a wrong key or an unreachable guest is reported here, not on the first
    /// request) and start the pump thread.
    pub fn open(target: &Route, remote_socket: &str) -> Result<SocketTunnel> {
        SocketTunnel::to(target, Remote::Socket(remote_socket.to_string()))
    }

    /// The same for any remote end.
    pub fn to(target: &Route, remote: Remote) -> Result<SocketTunnel> {
        let session = ssh::connect(target, LOGIN_TIMEOUT)?;
        SocketTunnel::start(Origin::Guest(target.clone()), session, remote)
    }

    /// Start the pump on a session the caller has finished with (saves a login).
    pub fn over(target: &Route, session: Session, remote_socket: &str) -> Result<SocketTunnel> {
        SocketTunnel::start(
            Origin::Guest(target.clone()),
            session,
            Remote::Socket(remote_socket.to_string()),
        )
    }

    /// A tunnel through a remote hypervisor to a port it reaches (a guest's SSH port on one of
    /// its networks): the jump to guests behind their host.
    pub fn through_host(login: &Login, remote: Remote) -> Result<SocketTunnel> {
        let session = login.connect(LOGIN_TIMEOUT)?;
        SocketTunnel::start(Origin::Host(login.clone()), session, remote)
    }

    fn start(origin: Origin, session: Session, remote: Remote) -> Result<SocketTunnel> {
        bound_blocking_steps(&session);
        let (requests, incoming) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let addr = origin.addr();
        let place = origin.place();
        let pump = Pump {
            origin,
            remote: remote.clone(),
            session,
            pipes: Vec::new(),
            stop: Arc::clone(&stop),
        };
        let pump = thread::Builder::new()
            .name(format!("tunnel {addr}"))
            .spawn(move || pump.run(incoming))?;
        Ok(SocketTunnel {
            requests: Some(requests),
            stop,
            pump: Some(pump),
            remote,
            addr,
            place,
        })
    }

    /// A new connection to the guest's socket.
    pub fn connect(&self) -> Result<UnixStream> {
        let (ours, theirs) = UnixStream::pair()?;
        let (reply, answer) = mpsc::channel();
        let gone = || Error::failed(format!("the SSH tunnel to {} has stopped", self.addr));
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(Request {
                local: theirs,
                reply,
            })
            .map_err(|_| gone())?;
        let handed = answer.recv_timeout(OPEN_DEADLINE).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => Error::failed(format!(
                "the SSH tunnel to {} gave no connection to {} within {} s",
                self.addr,
                self.remote,
                OPEN_DEADLINE.as_secs()
            ))
            .with_hint(
                "is the VM still running and answering SSH (`strata vm list`, `strata vm ssh`)?",
            ),
            mpsc::RecvTimeoutError::Disconnected => gone(),
        })?;
        handed.map_err(|e| e.context(format!("opening {} {}", self.remote, self.place)))?;
        Ok(ours)
    }
}

impl Drop for SocketTunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Closing the request channel wakes a pump that waits for work.
        self.requests.take();
        if let Some(pump) = self.pump.take() {
            let _ = pump.join();
        }
    }
}

/// One forwarded connection: bytes waiting in each direction and who has finished sending.
struct Pipe {
    local: UnixStream,
    channel: Channel,
    to_guest: Vec<u8>,
    to_local: Vec<u8>,
    local_done: bool,
    eof_sent: bool,
    guest_done: bool,
    broken: bool,
}

struct Pump {
    origin: Origin,
    remote: Remote,
    session: Session,
    pipes: Vec<Pipe>,
    stop: Arc<AtomicBool>,
}

impl Pump {
    fn run(mut self, incoming: mpsc::Receiver<Request>) {
        let mut idle = Duration::from_micros(100);
        while !self.stop.load(Ordering::SeqCst) {
            // With nothing to pump, sleep until someone asks for a connection; the tunnel is
            // dropped when the sender side is, and then the thread ends.
            if self.pipes.is_empty() {
                match incoming.recv() {
                    Ok(request) => self.accept(request),
                    Err(_) => return,
                }
            }
            while let Ok(request) = incoming.try_recv() {
                self.accept(request);
            }
            self.session.set_blocking(false);
            let mut progressed = false;
            for pipe in &mut self.pipes {
                progressed |= pipe.pump();
            }
            self.session.set_blocking(true);
            self.pipes.retain_mut(|pipe| {
                let finished =
                    pipe.broken || (pipe.eof_sent && pipe.guest_done && pipe.to_local.is_empty());
                if finished {
                    let _ = pipe.channel.close();
                }
                !finished
            });
            // Sleep a little when nothing moved, more the longer nothing moves, so an open but
            // quiet connection (a log stream) does not spin a core.
            if progressed {
                idle = Duration::from_micros(100);
            } else {
                thread::sleep(idle);
                idle = (idle * 2).min(Duration::from_millis(20));
            }
        }
    }

    fn accept(&mut self, request: Request) {
        let result = self.open_pipe(request.local);
        let _ = request.reply.send(result);
    }

    fn open_pipe(&mut self, local: UnixStream) -> Result<()> {
        local.set_nonblocking(true)?;
        let channel = match self.remote.open(&self.session) {
            Ok(channel) => channel,
            Err(first) => {
                // A refused socket (Docker not running) is not a dead session: only then is
                // the error final. Anything else (the peer went away, a broken pipe, "Unexpected
                // error" after sshd was killed; a keepalive on a dead TCP connection can still
                // "succeed") means logging in again.
                if is_channel_refusal(&first) && self.session_alive() {
                    return Err(Error::from(first).with_hint(self.origin.refusal_hint()));
                }
                tracing::info!(addr = %self.origin.addr(), "SSH session lost; logging in again");
                self.session = self.origin.login()?;
                bound_blocking_steps(&self.session);
                // Channels of the old session died with it.
                self.pipes.clear();
                self.remote.open(&self.session)?
            }
        };
        self.pipes.push(Pipe {
            local,
            channel,
            to_guest: Vec::new(),
            to_local: Vec::new(),
            local_done: false,
            eof_sent: false,
            guest_done: false,
            broken: false,
        });
        Ok(())
    }

    fn session_alive(&self) -> bool {
        self.session.keepalive_send().is_ok()
    }
}

/// ssh::connect leaves a session unbounded for long commands; the pump's blocking steps are
/// short, so they get CHANNEL_TIMEOUT (non-blocking reads and writes are not affected).
fn bound_blocking_steps(session: &Session) {
    session.set_timeout(CHANNEL_TIMEOUT.as_millis() as u32);
}

/// libssh2's LIBSSH2_ERROR_CHANNEL_FAILURE: the server answered and refused the channel.
fn is_channel_refusal(e: &ssh2::Error) -> bool {
    matches!(e.code(), ssh2::ErrorCode::Session(-21))
}

impl Pipe {
    /// Move what can move without blocking; true when any byte moved.
    fn pump(&mut self) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let mut progressed = false;
        if self.to_guest.is_empty() && !self.local_done {
            match fill(&mut self.local, &mut self.to_guest, &mut buf) {
                Moved::End => self.local_done = true,
                other => progressed |= self.note(other),
            }
        }
        let moved = drain(&mut self.channel, &mut self.to_guest);
        progressed |= self.note(moved);
        if self.local_done && self.to_guest.is_empty() && !self.eof_sent {
            match self.channel.send_eof() {
                Ok(()) => self.eof_sent = true,
                Err(e) => {
                    if std::io::Error::from(e).kind() != IoKind::WouldBlock {
                        self.broken = true;
                    }
                }
            }
        }
        if self.to_local.is_empty() && !self.guest_done {
            match fill(&mut self.channel, &mut self.to_local, &mut buf) {
                Moved::End => self.guest_done = self.channel.eof(),
                other => progressed |= self.note(other),
            }
        }
        // A failed write to the local side means the client went away: nothing more to do.
        let moved = drain(&mut self.local, &mut self.to_local);
        progressed |= self.note(moved);
        if self.guest_done && self.to_local.is_empty() {
            let _ = self.local.shutdown(std::net::Shutdown::Write);
        }
        progressed
    }

    /// Record a broken side; true when bytes moved.
    fn note(&mut self, moved: Moved) -> bool {
        match moved {
            Moved::Bytes(n) => n > 0,
            Moved::Broken => {
                self.broken = true;
                false
            }
            Moved::Nothing | Moved::End => false,
        }
    }
}

/// What one non-blocking read or write did.
enum Moved {
    Bytes(usize),
    Nothing,
    End,
    Broken,
}

fn moved(result: std::io::Result<usize>) -> Moved {
    match result {
        Ok(0) => Moved::End,
        Ok(n) => Moved::Bytes(n),
        Err(e) if e.kind() == IoKind::WouldBlock => Moved::Nothing,
        Err(_) => Moved::Broken,
    }
}

/// Read what `from` has into the empty `pending`.
fn fill(from: &mut impl Read, pending: &mut Vec<u8>, buf: &mut [u8]) -> Moved {
    let result = moved(from.read(buf));
    if let Moved::Bytes(n) = result {
        pending.extend_from_slice(&buf[..n]);
    }
    result
}

/// Write as much of `pending` as `to` takes.
fn drain(to: &mut impl Write, pending: &mut Vec<u8>) -> Moved {
    if pending.is_empty() {
        return Moved::Nothing;
    }
    let result = moved(to.write(pending));
    if let Moved::Bytes(n) = result {
        pending.drain(..n);
    }
    result
}
