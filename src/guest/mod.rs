//! Talking to a guest: SSH keys strata generates (the VM's login key and its host key, so the
//! host key is pinned before first contact), sessions that refuse a changed host key, command
//! execution with streamed output and exit codes, and readiness (TCP 22, then a handshake).

pub mod docker;
pub mod forward;
pub mod keys;
pub mod readiness;
pub mod ssh;
pub mod tunnel;
