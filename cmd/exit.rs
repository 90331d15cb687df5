//! Exit codes (restic's table, which cron users already know).

use arch_archiver::{ArchiveError, RepoError};

pub const OK: i32 = 0;
pub const FATAL: i32 = 1;
pub const PARTIAL: i32 = 3;
pub const NO_REPOSITORY: i32 = 10;
pub const LOCKED: i32 = 11;
pub const WRONG_PASSWORD: i32 = 12;
pub const INTERRUPTED: i32 = 130;

fn repo_code(e: &RepoError) -> Option<i32> {
    match e {
        RepoError::NoRepository { .. } => Some(NO_REPOSITORY),
        RepoError::WrongPassword { .. } => Some(WRONG_PASSWORD),
        RepoError::Locked { .. } => Some(LOCKED),
        _ => None,
    }
}

pub fn code_for(e: &anyhow::Error) -> i32 {
    for cause in e.chain() {
        if let Some(a) = cause.downcast_ref::<ArchiveError>() {
            if a.is_cancelled() {
                return INTERRUPTED;
            }
            if let ArchiveError::Repo(r) = a {
                if let Some(c) = repo_code(r) {
                    return c;
                }
            }
        }
        if let Some(c) = cause.downcast_ref::<RepoError>().and_then(repo_code) {
            return c;
        }
    }
    FATAL
}

/// The error and its causes on one line, without repeating a cause that
/// the previous message already contains.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if out.contains(&s) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s);
    }
    out.replace('\n', " ")
}
