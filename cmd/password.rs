use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The repository password, from (in order) ARCH_PASSWORD,
/// --password-file / ARCH_PASSWORD_FILE, ARCH_PASSWORD_COMMAND, or a prompt
/// when stdin is a terminal. `confirm` asks twice (for a new repository).
pub fn get(file: Option<&Path>, confirm: bool) -> Result<Vec<u8>> {
    if let Some(p) = std::env::var_os("ARCH_PASSWORD") {
        return non_empty(p.into_encoded_bytes(), "ARCH_PASSWORD");
    }
    if let Some(f) = file {
        let text = std::fs::read(f).with_context(|| format!("cannot read password file {}", f.display()))?;
        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        return non_empty(first.to_vec(), &format!("password file {}", f.display()));
    }
    if let Ok(cmd) = std::env::var("ARCH_PASSWORD_COMMAND") {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .with_context(|| "cannot run ARCH_PASSWORD_COMMAND".to_string())?;
        if !out.status.success() {
            bail!("ARCH_PASSWORD_COMMAND failed with {}", out.status);
        }
        let mut p = out.stdout;
        while p.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            p.pop();
        }
        return non_empty(p, "ARCH_PASSWORD_COMMAND output");
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password given: set ARCH_PASSWORD, ARCH_PASSWORD_FILE or ARCH_PASSWORD_COMMAND, or use --password-file");
    }
    let p = rpassword::prompt_password("enter password for repository: ").context("cannot read password")?;
    if confirm {
        let again = rpassword::prompt_password("enter password again: ").context("cannot read password")?;
        if again != p {
            bail!("passwords do not match");
        }
    }
    non_empty(p.into_bytes(), "the password")
}

fn non_empty(p: Vec<u8>, what: &str) -> Result<Vec<u8>> {
    if p.is_empty() {
        bail!("{what} is empty; an empty password is not allowed");
    }
    Ok(p)
}
