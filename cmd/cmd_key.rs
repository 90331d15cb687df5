//! `arch key`: manage the passwords (key files) of a repository.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use arch_archiver::{add_key, change_password, find_key, list_keys, remove_key, KdfParams};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::Cli;

/// Manage the repository's passwords. Each password has its own key file;
/// all of them open the same data.
#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
}

#[derive(Subcommand, Debug)]
pub enum KeyAction {
    /// List the key files; the one the given password opens is marked '*'.
    List,
    /// Add a password (new password from ARCH_NEW_PASSWORD,
    /// --new-password-file, or a prompt).
    Add(NewPasswordArgs),
    /// Remove a key file (not the last one, nor the one in use).
    Remove {
        /// Key id (at least 4 hex characters; 'arch key list' shows them).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Change the password in use: add a key for the new password, then
    /// remove the current one.
    Passwd(NewPasswordArgs),
}

#[derive(Args, Debug)]
pub struct NewPasswordArgs {
    /// Read the new password from this file (first line).
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
}

/// The new password: ARCH_NEW_PASSWORD, the file, or a prompt (twice).
fn new_password(args: &NewPasswordArgs) -> Result<Vec<u8>> {
    let p = if let Some(p) = std::env::var_os("ARCH_NEW_PASSWORD") {
        p.into_encoded_bytes()
    } else if let Some(f) = &args.new_password_file {
        let text =
            std::fs::read(f).with_context(|| format!("cannot read new password file {}", f.display()))?;
        let first = text.split(|&b| b == b'\n').next().unwrap_or_default();
        first.strip_suffix(b"\r").unwrap_or(first).to_vec()
    } else if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password("enter new password: ").context("cannot read password")?;
        let again =
            rpassword::prompt_password("enter new password again: ").context("cannot read password")?;
        if again != p {
            bail!("passwords do not match");
        }
        p.into_bytes()
    } else {
        bail!("no new password given: set ARCH_NEW_PASSWORD or use --new-password-file");
    };
    if p.is_empty() {
        bail!("the new password is empty; an empty password is not allowed");
    }
    Ok(p)
}

pub fn run(cli: &Cli, args: &KeyArgs) -> Result<i32> {
    // Read the new password before the (slow) key derivations, so a
    // missing one fails at once.
    let new = match &args.action {
        KeyAction::Add(a) | KeyAction::Passwd(a) => Some(new_password(a)?),
        _ => None,
    };
    // Key management needs no index.
    let repo = crate::repo::open_unindexed(cli)?;
    let current = repo.key_id();
    match &args.action {
        KeyAction::List => {
            let keys = list_keys(&repo)?;
            if cli.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| {
                        json!({"id": id.to_hex(), "short_id": id.short(), "current": *id == current,
                               "created": k.created, "hostname": k.hostname, "username": k.username,
                               "kdf": k.kdf, "params": k.params})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!(" {:<8}  {:<25}  {:<16}  user", "id", "created", "host");
                for (id, k) in &keys {
                    let mark = if *id == current { '*' } else { ' ' };
                    let created = chrono::DateTime::parse_from_rfc3339(&k.created)
                        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|_| k.created.clone());
                    println!("{mark}{:<8}  {:<25}  {:<16}  {}", id.short(), created, k.hostname, k.username);
                }
            }
        }
        KeyAction::Add(_) => {
            let id = add_key(&repo, new.as_deref().unwrap_or_default(), KdfParams::default())?;
            report(cli, "added", &id.to_hex(), &format!("added key {}", id.short()));
        }
        KeyAction::Remove { id } => {
            let id = find_key(&repo, id)?;
            remove_key(&repo, &id, Some(&current))?;
            report(cli, "removed", &id.to_hex(), &format!("removed key {}", id.short()));
        }
        KeyAction::Passwd(_) => {
            let cur = current;
            let id = change_password(&repo, &cur, new.as_deref().unwrap_or_default(), KdfParams::default())?;
            report(
                cli,
                "added",
                &id.to_hex(),
                &format!("password changed: key {} replaces {}", id.short(), cur.short()),
            );
        }
    }
    Ok(crate::exit::OK)
}

fn report(cli: &Cli, what: &str, id: &str, text: &str) {
    if cli.json {
        println!("{}", json!({"message_type": "summary", what: id}));
    } else if !cli.quiet {
        println!("{text}");
    }
}
