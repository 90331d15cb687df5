//! Secrets and permissions: repository files are created 0600 and folders
//! 0700; the password and the master key never appear in anything the CLI
//! prints (human or `--json` output, progress lines, error messages for a
//! wrong password) nor in any file it writes outside the repository.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::common::{self, ArchEnv};

const SECRET: &str = "pw-Zq8!never-print-me";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The master key, unwrapped from the repository's key file by an
/// independent implementation of the documented key-file format
/// (argon2id, then XChaCha20-Poly1305: nonce || ciphertext || tag).
fn master_key(repo: &Path, password: &str) -> Vec<u8> {
    let entry = std::fs::read_dir(repo.join("keys")).unwrap().next().unwrap().unwrap();
    let kf: serde_json::Value = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
    let p = &kf["params"];
    let params = argon2::Params::new(
        p["memory_kib"].as_u64().unwrap() as u32,
        p["iterations"].as_u64().unwrap() as u32,
        p["parallelism"].as_u64().unwrap() as u32,
        Some(32),
    )
    .unwrap();
    let mut wrap = [0u8; 32];
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(password.as_bytes(), &unhex(kf["salt"].as_str().unwrap()), &mut wrap)
        .unwrap();
    let sealed = unhex(kf["data"].as_str().unwrap());
    let (nonce, rest) = sealed.split_at(24);
    let (ct, tag) = rest.split_at(rest.len() - 16);
    let mut buf = ct.to_vec();
    XChaCha20Poly1305::new_from_slice(&wrap)
        .unwrap()
        .decrypt_inout_detached(
            &XNonce::from(<[u8; 24]>::try_from(nonce).unwrap()),
            b"",
            (&mut buf[..]).into(),
            &Tag::from(<[u8; 16]>::try_from(tag).unwrap()),
        )
        .expect("the key file opens with the password");
    assert_eq!(buf.len(), 32);
    buf
}

#[test]
fn repository_files_are_0600_and_folders_0700() {
    let (_t, work) = common::tempdir();
    let repo = work.join("repo");
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    common::write_random_file(&src.join("f"), 1, 100_000);
    // Run under a permissive umask (set in the child only): it must not
    // widen what arch creates.
    let run = |a: &[&dyn AsRef<std::ffi::OsStr>]| {
        use std::os::unix::process::CommandExt;
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arch"));
        c.args(common::args(a)).env("ARCH_PASSWORD", SECRET).env("HOME", &work).env_remove("ARCH_REPOSITORY");
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            })
        };
        let out = c.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[&"init", &"--repo", &repo]);
    run(&[&"backup", &"--repo", &repo, &src]);
    let mut files = 0;
    let root_mode = std::fs::metadata(&repo).unwrap().permissions().mode() & 0o777;
    assert_eq!(root_mode, 0o700, "{}: {root_mode:o}", repo.display());
    for (path, md) in common::walk(&repo) {
        let mode = md.permissions().mode() & 0o777;
        if md.is_dir() {
            assert_eq!(mode, 0o700, "{}: {mode:o}", path.display());
        } else {
            assert_eq!(mode, 0o600, "{}: {mode:o}", path.display());
            files += 1;
        }
    }
    assert!(files >= 5, "config, key, snapshot, index and a pack: {files}");
}

#[test]
fn password_and_master_key_never_appear_in_output_or_files_outside_the_repository() {
    let (_t, work) = common::tempdir();
    // Every command also writes the log file, which the scan of files
    // outside the repository below covers.
    let log = work.join("logs").join("arch.log");
    let env = ArchEnv::new(&work).var("ARCH_PASSWORD", SECRET).var("ARCH_LOG_FILE", &log);
    let repo = work.join("repo");
    let src = work.join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("docs/a.txt"), "hello\n".repeat(100)).unwrap();
    common::write_random_file(&src.join("blob"), 3, 300_000);
    // The library creates the repository with a cheap KDF (the CLI's init
    // is exercised by the permissions test); every later step is the CLI.
    let opts = arch_archiver::InitOptions::default().kdf(common::fast_kdf());
    arch_archiver::Repository::init(
        std::sync::Arc::new(arch_archiver::LocalBackend::new(&repo)),
        SECRET.as_bytes(),
        &opts,
    )
    .unwrap();
    let mut outputs = Vec::new();
    let mut run = |env: &ArchEnv, a: &[&dyn AsRef<std::ffi::OsStr>], want: i32| {
        let r = env.run(&common::args(a));
        assert_eq!(
            r.code,
            want,
            "{:?}: {}{}",
            a.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
            r.stdout,
            r.stderr
        );
        outputs.push(format!("{}\n{}", r.stdout, r.stderr));
    };
    run(&env, &[&"--json", &"--progress-interval", &"1s", &"backup", &"--repo", &repo, &src], 0);
    run(&env, &[&"backup", &"--repo", &repo, &src], 0);
    run(&env, &[&"--json", &"snapshots", &"--repo", &repo], 0);
    run(&env, &[&"snapshots", &"--repo", &repo], 0);
    run(&env, &[&"--json", &"ls", &"--repo", &repo, &"latest"], 0);
    run(&env, &[&"--json", &"check", &"--repo", &repo, &"--read-data"], 0);
    run(&env, &[&"check", &"--repo", &repo], 0);
    run(&env, &[&"--json", &"stats", &"--repo", &repo], 0);
    run(&env, &[&"key", &"list", &"--repo", &repo], 0);
    run(&env, &[&"--json", &"key", &"list", &"--repo", &repo], 0);
    run(&env, &[&"cat", &"--repo", &repo, &"config"], 0);
    run(&env, &[&"restore", &"--repo", &repo, &"latest", &"--target", &work.join("out")], 0);
    // Wrong passwords, from the environment and from a file: the error
    // must not echo what was typed (nor the right one).
    let wrong = format!("{SECRET}-wrong");
    let bad = env.clone().var("ARCH_PASSWORD", &wrong);
    run(&bad, &[&"snapshots", &"--repo", &repo], 12);
    run(&bad, &[&"--json", &"backup", &"--repo", &repo, &src], 12);
    let pwfile = work.join("pwfile");
    std::fs::write(&pwfile, format!("{wrong}\n")).unwrap();
    let from_file = env.clone().unset("ARCH_PASSWORD");
    run(&from_file, &[&"check", &"--repo", &repo, &"--password-file", &pwfile], 12);

    let key = master_key(&repo, SECRET);
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("password", SECRET.as_bytes().to_vec()),
        ("wrong password", wrong.as_bytes().to_vec()),
        ("master key (hex)", hex(&key).into_bytes()),
        ("master key (raw)", key.clone()),
    ];
    for out in &outputs {
        for (what, n) in &needles {
            assert!(!common::contains_bytes(out.as_bytes(), n), "the {what} appears in output:\n{out}");
        }
    }
    assert!(outputs.iter().any(|o| o.contains("wrong password")), "the wrong-password error is clear");
    // Files arch wrote outside the repository (home, caches, data and
    // config directories), except the password file the test wrote.
    let mut scanned = 0;
    for (path, md) in common::walk(&work) {
        if !md.is_file() || path.starts_with(&repo) || path.starts_with(&src) || path == pwfile {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        for (what, n) in &needles {
            assert!(!common::contains_bytes(&data, n), "the {what} appears in {}", path.display());
        }
        scanned += 1;
    }
    assert!(scanned > 0, "the restore wrote files outside the repository");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("wrong password"), "the log records the failures:\n{logged}");
}
