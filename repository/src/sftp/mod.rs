//! The SFTP backend: an SFTP version 3 client over the system's ssh.

mod backend;
mod error;
mod protocol;
mod session;

pub(crate) use backend::split_words;
pub use backend::{SftpBackend, SftpOptions, DEFAULT_SFTP_CONNECTIONS};
