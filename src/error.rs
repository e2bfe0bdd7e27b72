//! The one error type of strata. Every error says what went wrong and, where there is one,
//! what the user can do about it (the hint), and keeps a kind that callers match on instead
//! of parsing text: libvirt's, SSH's and Docker's errors are converted here with their kind
//! (an unreachable daemon, a refused login and a changed host key each stay what they are).
//! Lower layers attach context as errors rise. There is no second error channel: facts that
//! could not be read carry this type too.

use std::fmt;

/// An error with a message for the user and an optional hint saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    hint: Option<String>,
    kind: ErrorKind,
}

/// Coarse classes that callers (and tests) can match on without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input (flags, files) is wrong; nothing was changed.
    BadInput,
    /// Something named does not exist.
    NotFound,
    /// Something with that name already exists.
    AlreadyExists,
    /// A daemon, service or guest strata needs is not reachable (or the connection broke).
    Unreachable,
    /// A login was refused (SSH authentication).
    Auth,
    /// The guest presented another host key than the one strata pinned: never retried.
    HostKeyChanged,
    /// The user pressed Ctrl-C or the process was asked to stop.
    Interrupted,
    /// Anything else: a failure while carrying out a step.
    Failed,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            message: message.into(),
            hint: None,
            kind,
        }
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Failed, message)
    }
    pub fn interrupted() -> Self {
        Self::new(ErrorKind::Interrupted, "interrupted")
            .with_hint("everything this command had created so far was removed")
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Add to the hint (after what it already says) instead of replacing it.
    pub fn and_hint(mut self, more: impl Into<String>) -> Self {
        let more = more.into();
        self.hint = Some(match self.hint.take() {
            Some(first) => format!("{first}; {more}"),
            None => more,
        });
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Prefix the message with what was being done, keeping kind and hint.
    pub fn context(mut self, doing: impl fmt::Display) -> Self {
        self.message = format!("{doing}: {}", self.message);
        self
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Interrupted => 130,
            ErrorKind::BadInput | ErrorKind::NotFound | ErrorKind::AlreadyExists => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// An error read as the one line that says what went wrong (its message, without the hint):
/// what a check shows as the reason it could not look.
impl AsRef<str> for Error {
    fn as_ref(&self) -> &str {
        &self.message
    }
}

/// Attach "while doing X" context to any error convertible into ours.
pub trait Context<T> {
    fn context(self, doing: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, doing: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(doing))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        use std::io::ErrorKind as Io;
        let kind = match e.kind() {
            Io::NotFound => ErrorKind::NotFound,
            Io::AlreadyExists => ErrorKind::AlreadyExists,
            Io::Interrupted => ErrorKind::Interrupted,
            Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::TimedOut
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::BrokenPipe => ErrorKind::Unreachable,
            _ => ErrorKind::Failed,
        };
        Error::new(kind, e.to_string())
    }
}

impl From<virt::error::Error> for Error {
    fn from(e: virt::error::Error) -> Self {
        use virt::error::{ErrorDomain as D, ErrorNumber as N};
        let kind = match e.code().known() {
            Some(N::NoDomain | N::NoNetwork | N::NoStoragePool | N::NoStorageVolume) => {
                ErrorKind::NotFound
            }
            Some(N::NoConnect | N::InvalidConn) => ErrorKind::Unreachable,
            _ if e.domain().known() == Some(D::Rpc) => ErrorKind::Unreachable,
            _ => ErrorKind::Failed,
        };
        Error::new(kind, format!("libvirt: {}", e.message()))
    }
}

impl From<ssh2::Error> for Error {
    fn from(e: ssh2::Error) -> Self {
        // libssh2's error codes (libssh2.h): the ones a caller must tell apart.
        let kind = match e.code() {
            ssh2::ErrorCode::Session(-18 | -19) => ErrorKind::Auth,
            ssh2::ErrorCode::Session(-7 | -9 | -13 | -30 | -43) => ErrorKind::Unreachable,
            _ => ErrorKind::Failed,
        };
        Error::new(kind, format!("ssh: {}", e.message()))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::failed(format!("json: {e}"))
    }
}

impl From<minijinja::Error> for Error {
    fn from(e: minijinja::Error) -> Self {
        let mut msg = format!("template: {e}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(&format!(": {s}"));
            source = s.source();
        }
        Error::bad_input(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_hint_on_its_own_line() {
        let e = Error::bad_input("bad size '12Q'").with_hint("use a number with K, M, G or T");
        assert_eq!(
            e.to_string(),
            "bad size '12Q'\n  hint: use a number with K, M, G or T"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn ssh_errors_keep_their_kind() {
        let auth = ssh2::Error::new(ssh2::ErrorCode::Session(-18), "Authentication failed");
        assert_eq!(Error::from(auth).kind(), ErrorKind::Auth);
        let gone = ssh2::Error::new(ssh2::ErrorCode::Session(-13), "socket disconnect");
        assert_eq!(Error::from(gone).kind(), ErrorKind::Unreachable);
        let other = ssh2::Error::new(ssh2::ErrorCode::Session(-21), "channel failure");
        assert_eq!(Error::from(other).kind(), ErrorKind::Failed);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Error::from(refused).kind(), ErrorKind::Unreachable);
    }

    #[test]
    fn context_keeps_kind_and_hint() {
        let r: Result<()> = Err(Error::not_found("no such network 'x'").with_hint("create it"));
        let e = r.context("creating vm 'a'").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.message(), "creating vm 'a': no such network 'x'");
        assert_eq!(e.hint(), Some("create it"));
    }
}
