use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

use crate::cli::Cli;

/// The repository password, from (in order) ARCH_PASSWORD,
/// --password-file / ARCH_PASSWORD_FILE, --password-command /
/// ARCH_PASSWORD_COMMAND, or a prompt when stdin is a terminal. `confirm`
/// asks twice (for a new repository).
pub fn get(cli: &Cli, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
    get_with(
        "ARCH_PASSWORD",
        cli.password_file.as_deref(),
        cli.password_command.clone(),
        confirm,
        "repository",
    )
}

/// The password of a second repository (`copy --from-repo`), from
/// ARCH_FROM_PASSWORD, --from-password-file / ARCH_FROM_PASSWORD_FILE,
/// ARCH_FROM_PASSWORD_COMMAND, or a prompt.
pub fn get_source(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    let command = std::env::var("ARCH_FROM_PASSWORD_COMMAND").ok();
    get_with("ARCH_FROM_PASSWORD", file, command, false, "source repository")
}

fn get_with(
    var: &str,
    file: Option<&Path>,
    command: Option<String>,
    confirm: bool,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(p) = std::env::var_os(var) {
        return non_empty(p.into_encoded_bytes(), var);
    }
    if let Some(f) = file {
        let text = Zeroizing::new(
            std::fs::read(f).with_context(|| format!("cannot read password file {}", f.display()))?,
        );
        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
        let first = first.strip_suffix(b"\r").unwrap_or(first);
        return non_empty(first.to_vec(), &format!("password file {}", f.display()));
    }
    let command_var = format!("{var}_COMMAND");
    if let Some(cmd) = command {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("cannot run {command_var}"))?;
        if !out.status.success() {
            bail!("{command_var} failed with {}", out.status);
        }
        let mut p = Zeroizing::new(out.stdout);
        while p.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            p.pop();
        }
        return non_empty(std::mem::take(&mut *p), &format!("{command_var} output"));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password given for the {what}: set {var}, {var}_FILE or {var}_COMMAND, or use a password file option");
    }
    let mut p = Zeroizing::new(
        rpassword::prompt_password(format!("enter password for the {what}: "))
            .context("cannot read password")?,
    );
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("enter password again: ").context("cannot read password")?,
        );
        if again != p {
            bail!("passwords do not match");
        }
    }
    non_empty(std::mem::take(&mut *p).into_bytes(), "the password")
}

/// Takes ownership of the password bytes so they are wiped when dropped.
fn non_empty(p: Vec<u8>, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let p = Zeroizing::new(p);
    if p.is_empty() {
        bail!("{what} is empty; an empty password is not allowed");
    }
    Ok(p)
}
