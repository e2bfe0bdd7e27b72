//! Talking to a guest along its route: the address, user, login key and pinned host key
//! (route), SSH keys strata generates (the VM's login key and its host key, so the host key is
//! pinned before first contact), sessions that refuse a changed host key, command execution
//! with streamed output and exit codes, files over SFTP, readiness (TCP 22, then a
//! handshake), what the guest is (facts), and the tunnels to sockets and ports inside it (the
//! Docker API, port forwards); guests on a remote host through their hypervisor (jump).

pub mod docker;
pub mod facts;
pub mod forward;
pub mod jump;
pub mod keys;
pub mod readiness;
pub mod route;
pub mod sftp;
pub mod ssh;
pub mod tunnel;

pub use route::Route;
