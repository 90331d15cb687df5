//! The SFTP backend: an SFTP version 3 client over the system's ssh.

mod backend;
mod error;
mod protocol;
mod session;

pub use backend::{SftpBackend, SftpOptions, DEFAULT_SFTP_CONNECTIONS};
