//! Failures of the SFTP client, before they are named by object and
//! turned into a [`BackendError`](crate::BackendError).

use crate::error::RemoteErrorClass;

use super::protocol::{FX_NO_SUCH_FILE, FX_OP_UNSUPPORTED, FX_PERMISSION_DENIED};

#[derive(Debug)]
pub(crate) enum SftpError {
    /// The connection broke (the command exited, a pipe closed): the
    /// session is dropped and the next call reconnects.
    Lost(String),
    /// The command could not connect; `detail` is its own explanation.
    Connect { detail: String, transient: bool },
    /// The server answered with an error status.
    Status { code: u32, message: String, path: String },
    /// The server sent something that is not SFTP v3.
    Protocol(String),
}

impl SftpError {
    pub fn in_path(self, p: &str) -> SftpError {
        match self {
            SftpError::Status { code, message, .. } => {
                SftpError::Status { code, message, path: p.to_string() }
            }
            e => e,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, SftpError::Status { code: FX_NO_SUCH_FILE, .. })
    }

    /// How callers should treat it: a lost connection or a refused one
    /// (server restarting) may pass; a refused login or file permission
    /// needs the user.
    pub fn class(&self) -> RemoteErrorClass {
        match self {
            SftpError::Lost(_) | SftpError::Connect { transient: true, .. } => RemoteErrorClass::Transient,
            SftpError::Connect { detail, .. } if detail.contains("Permission denied") => {
                RemoteErrorClass::Auth
            }
            SftpError::Status { code: FX_PERMISSION_DENIED, .. } => RemoteErrorClass::Auth,
            _ => RemoteErrorClass::Permanent,
        }
    }
}

impl std::fmt::Display for SftpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SftpError::Lost(e) => write!(f, "connection lost ({e})"),
            SftpError::Connect { detail, .. } => write!(f, "cannot connect: {detail}"),
            SftpError::Status { code, message, path } => {
                let what = match *code {
                    FX_NO_SUCH_FILE => "no such file",
                    FX_PERMISSION_DENIED => "permission denied",
                    FX_OP_UNSUPPORTED => "operation not supported by the server",
                    _ => "failure",
                };
                let sep = if path.is_empty() { "" } else { ": " };
                match message.is_empty() || message.eq_ignore_ascii_case(what) {
                    true => write!(f, "{path}{sep}{what}"),
                    false => write!(f, "{path}{sep}{what} ({message})"),
                }
            }
            SftpError::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}
