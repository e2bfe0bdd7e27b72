//! The Docker API of a guest, through bollard with a custom transport: every request is one
//! HTTP/1 exchange on a fresh connection of the SSH socket tunnel to /var/run/docker.sock.
//! Docker's TCP port is never opened, and a dropped SSH session is reopened by the tunnel.

use crate::error::{Error, Result};
use crate::guest::tunnel::SocketTunnel;
use crate::guest::Route;
use bollard::{BollardRequest, Docker};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// API calls that can take long (image loads, container waits) get this many seconds.
const REQUEST_TIMEOUT_SECS: u64 = 300;

/// A Docker client for one guest and the runtime that drives it.
pub struct GuestDocker {
    pub docker: Docker,
    runtime: tokio::runtime::Runtime,
}

impl GuestDocker {
    /// Log into the guest and prepare the client; no Docker request is made yet.
    pub fn connect(target: &Route) -> Result<GuestDocker> {
        GuestDocker::with_tunnel(SocketTunnel::open(target, DOCKER_SOCKET)?)
    }

    /// The same over a session the caller has finished with (saves a login).
    pub fn over(target: &Route, session: ssh2::Session) -> Result<GuestDocker> {
        GuestDocker::with_tunnel(SocketTunnel::over(target, session, DOCKER_SOCKET)?)
    }

    fn with_tunnel(tunnel: SocketTunnel) -> Result<GuestDocker> {
        let tunnel = Arc::new(tunnel);
        let transport = move |request: BollardRequest| {
            let tunnel = Arc::clone(&tunnel);
            async move { exchange(&tunnel, request).await }
        };
        let docker = Docker::connect_with_custom_transport(
            transport,
            Some("http://docker"),
            REQUEST_TIMEOUT_SECS,
            bollard::API_DEFAULT_VERSION,
        )
        .map_err(docker_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(GuestDocker { docker, runtime })
    }

    /// Run one API future to completion.
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}

/// Send one request on a new tunnelled connection. Docker's server wants origin-form request
/// targets and a Host header, which hyper's connection-level client does not add.
async fn exchange(
    tunnel: &SocketTunnel,
    request: BollardRequest,
) -> std::result::Result<hyper::Response<hyper::body::Incoming>, bollard::errors::Error> {
    let stream = tunnel
        .connect()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.set_nonblocking(true)?;
    let stream = tokio::net::UnixStream::from_std(stream)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Upgrades keep attach/exec streams working on the same connection.
    tokio::spawn(connection.with_upgrades());
    let (mut parts, body) = request.into_parts();
    if let Some(origin) = parts.uri.path_and_query().cloned() {
        parts.uri = hyper::Uri::from(origin);
    }
    parts.headers.insert(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_static("docker"),
    );
    Ok(sender
        .send_request(BollardRequest::from_parts(parts, body))
        .await?)
}

/// A bollard error as ours, keeping Docker's own message.
pub fn docker_error(e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message,
        } => Error::failed(format!("Docker answered {status_code}: {message}")),
        other => Error::failed(format!("Docker API: {other}")),
    }
}

/// What an inspect returned; None when Docker has no object of that name.
pub fn found<T>(
    inspected: std::result::Result<T, bollard::errors::Error>,
    kind: &str,
    name: &str,
) -> Result<Option<T>> {
    match inspected {
        Ok(object) => Ok(Some(object)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(docker_error(e).context(format!("looking at {kind} {name}"))),
    }
}

/// The engine is in swarm mode, or on its way into or out of it (pending, locked, error):
/// Docker refuses live-restore then, so a restart of such an engine stops its containers.
pub fn in_swarm_mode(info: &bollard::models::SystemInfo) -> bool {
    use bollard::models::LocalNodeState;
    !matches!(
        info.swarm
            .as_ref()
            .and_then(|s| s.local_node_state.as_ref()),
        None | Some(LocalNodeState::INACTIVE) | Some(LocalNodeState::EMPTY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_in_state(state: &str) -> bollard::models::SystemInfo {
        serde_json::from_value(serde_json::json!({"Swarm": {"LocalNodeState": state}})).unwrap()
    }

    #[test]
    fn only_an_engine_in_no_swarm_is_out_of_swarm_mode() {
        assert!(!in_swarm_mode(&bollard::models::SystemInfo::default()));
        assert!(!in_swarm_mode(&info_in_state("inactive")));
        assert!(!in_swarm_mode(&info_in_state("")));
        for state in ["active", "pending", "locked", "error"] {
            assert!(in_swarm_mode(&info_in_state(state)), "{state}");
        }
    }
}
