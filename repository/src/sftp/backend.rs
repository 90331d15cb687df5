use std::path::PathBuf;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::error::SftpError;
use super::protocol::FX_NO_SUCH_FILE;
use super::session::Session;
use crate::backend::{exact_range, Backend, FileInfo, FileKind};
use crate::error::{BackendError, RemoteErrorClass};
use crate::local::valid_name;

/// Connections opened when [`SftpOptions::connections`] is 0: enough to
/// keep the pipeline's uploaders and restore's readers busy without
/// opening many ssh sessions per backup.
pub const DEFAULT_SFTP_CONNECTIONS: usize = 4;

/// Where an SFTP repository is and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SftpOptions {
    /// Login name; `None` leaves it to ssh (its config, then the local user).
    pub user: Option<String>,
    /// Host name or address (or a `Host` alias from ~/.ssh/config).
    pub host: String,
    /// Port; `None` leaves it to ssh.
    pub port: Option<u16>,
    /// The repository folder on the server; relative paths start in the
    /// login's home folder.
    pub path: String,
    /// An identity file passed to ssh as `-i`.
    pub key: Option<PathBuf>,
    /// A command that replaces the whole ssh invocation (it must speak
    /// SFTP on its stdin and stdout), split into words as a shell would.
    pub command: Option<String>,
    /// Extra arguments for ssh, before the host.
    pub args: Vec<String>,
    /// Parallel connections (ssh processes); 0 means
    /// [`DEFAULT_SFTP_CONNECTIONS`].
    pub connections: usize,
    /// A connection that stays silent this long is declared dead (through
    /// ssh keepalives); `None` means 60 s.
    pub timeout: Option<Duration>,
}

impl SftpOptions {
    /// A repository at `path` on `host`.
    pub fn new(host: impl Into<String>, path: impl Into<String>) -> SftpOptions {
        SftpOptions { host: host.into(), path: path.into(), ..Default::default() }
    }

    /// Sets the login name.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Sets the identity file.
    pub fn key(mut self, key: impl Into<PathBuf>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Replaces the ssh command line.
    pub fn command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// Adds ssh arguments.
    pub fn args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.args.extend(args);
        self
    }

    /// Sets the dead-connection timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Sets the number of parallel connections.
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// The command line that is run for each connection.
    pub fn argv(&self) -> Result<Vec<String>, String> {
        if let Some(cmd) = &self.command {
            let argv = split_words(cmd)?;
            if argv.is_empty() {
                return Err("sftp.command is empty".into());
            }
            return Ok(argv);
        }
        if self.host.is_empty() || self.host.starts_with('-') {
            return Err(format!("invalid sftp host {:?}", self.host));
        }
        let mut argv = vec!["ssh".to_string()];
        argv.extend(self.args.iter().cloned());
        // Keepalives make a dead server or network an error after the
        // timeout instead of a hang; ssh keeps the first value given, so
        // the user's own args win.
        let every = (self.timeout.unwrap_or(Duration::from_secs(60)).as_secs() / 4).max(1);
        argv.extend([
            "-o".into(),
            format!("ServerAliveInterval={every}"),
            "-o".into(),
            "ServerAliveCountMax=4".into(),
        ]);
        if let Some(k) = &self.key {
            argv.extend(["-i".to_string(), k.display().to_string()]);
        }
        if let Some(p) = self.port {
            argv.extend(["-p".to_string(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            argv.extend(["-l".to_string(), u.clone()]);
        }
        argv.extend([self.host.clone(), "-s".into(), "sftp".into()]);
        Ok(argv)
    }

    fn location(&self) -> String {
        let user = self.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("sftp:{user}{}{port}:{}", self.host, self.path)
    }
}

/// Splits a command line into words: whitespace separates, single quotes
/// keep everything, double quotes keep all but `\"` and `\\`, a backslash
/// outside quotes escapes the next character.
pub(crate) fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(cur.take()),
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unterminated ' in sftp.command {s:?}")),
                    }
                }
            }
            '"' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => w.push(c),
                            Some(c) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(format!("unterminated \" in sftp.command {s:?}")),
                        },
                        Some(c) => w.push(c),
                        None => return Err(format!("unterminated \" in sftp.command {s:?}")),
                    }
                }
            }
            '\\' => cur.get_or_insert_with(String::new).extend(chars.next()),
            c => cur.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(cur);
    Ok(words)
}

struct PoolState {
    idle: Vec<Session>,
    live: usize,
    /// A connection failure that needs the user (bad key, unknown host):
    /// every later call fails with it at once instead of running ssh again.
    fatal: Option<String>,
}

/// A repository on an SFTP server, reached through the system's ssh client
/// (so keys, agents, ~/.ssh/config and known_hosts work as for `sftp`).
///
/// Objects are written to `.tmp-<name>-<random>` in their folder, synced
/// (where the server offers `fsync@openssh.com`) and renamed into place
/// with SFTP v3 rename, which refuses to replace an existing file: objects
/// stay write-once and a reader never sees a partial one. Up to
/// `connections` ssh processes run in parallel, each with up to 64
/// pipelined requests. A broken connection is an error that
/// [`BackendError::is_transient`] calls transient; the next call reconnects.
pub struct SftpBackend {
    opts: SftpOptions,
    argv: Vec<String>,
    root: String,
    location: String,
    max: usize,
    pool: Mutex<PoolState>,
    freed: Condvar,
}

impl std::fmt::Debug for SftpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpBackend").field("location", &self.location).finish()
    }
}

impl SftpBackend {
    /// A backend for `opts`; nothing is connected until the first call.
    pub fn new(opts: SftpOptions) -> Result<SftpBackend, BackendError> {
        let location = opts.location();
        let argv = opts
            .argv()
            .map_err(|reason| BackendError::InvalidOption { key: "sftp.command".into(), reason })?;
        let root = match opts.path.trim_end_matches('/') {
            "" if opts.path.starts_with('/') => "/".to_string(),
            "" => ".".to_string(),
            p => p.to_string(),
        };
        let max = if opts.connections == 0 { DEFAULT_SFTP_CONNECTIONS } else { opts.connections };
        Ok(SftpBackend {
            opts,
            argv,
            root,
            location,
            max,
            pool: Mutex::new(PoolState { idle: Vec::new(), live: 0, fatal: None }),
            freed: Condvar::new(),
        })
    }

    /// The options this backend was made with.
    pub fn options(&self) -> &SftpOptions {
        &self.opts
    }

    fn join(&self, rel: &str) -> String {
        if self.root == "/" {
            format!("/{rel}")
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    fn dir_of(&self, kind: FileKind, name: &str) -> String {
        match kind {
            FileKind::Config => self.root.clone(),
            FileKind::Pack => self.join(&format!("data/{}", name.get(..2).unwrap_or("xx"))),
            _ => self.join(kind.dir()),
        }
    }

    fn path_of(&self, kind: FileKind, name: &str) -> String {
        match kind {
            FileKind::Config => self.join("config"),
            _ => format!("{}/{name}", self.dir_of(kind, name)),
        }
    }

    fn checkout(&self) -> Result<Session, SftpError> {
        let mut st = self.pool.lock();
        loop {
            if let Some(detail) = &st.fatal {
                return Err(SftpError::Connect { detail: detail.clone(), transient: false });
            }
            if let Some(s) = st.idle.pop() {
                return Ok(s);
            }
            if st.live < self.max {
                st.live += 1;
                drop(st);
                let r = Session::connect(&self.argv);
                if let Err(SftpError::Connect { detail, transient: false }) = &r {
                    self.pool.lock().fatal = Some(detail.clone());
                }
                if r.is_err() {
                    self.pool.lock().live -= 1;
                    self.freed.notify_all();
                }
                return r;
            }
            self.freed.wait(&mut st);
        }
    }

    fn checkin(&self, s: Session) {
        if s.is_broken() {
            drop(s);
            self.pool.lock().live -= 1;
        } else {
            self.pool.lock().idle.push(s);
        }
        self.freed.notify_one();
    }

    fn with<T>(&self, f: impl FnOnce(&mut Session) -> Result<T, SftpError>) -> Result<T, SftpError> {
        let mut s = self.checkout()?;
        let r = f(&mut s);
        self.checkin(s);
        r
    }

    fn err(&self, op: &'static str, kind: FileKind, name: &str, e: SftpError) -> BackendError {
        if e.is_not_found() && !name.is_empty() {
            return BackendError::NotFound { kind, name: name.to_string(), location: self.location.clone() };
        }
        let class = e.class();
        self.remote(op, kind, name, e.to_string(), class)
    }

    fn remote(
        &self,
        op: &'static str,
        kind: FileKind,
        name: &str,
        cause: String,
        class: RemoteErrorClass,
    ) -> BackendError {
        let object = match (kind, name) {
            (FileKind::Config, _) if name.is_empty() => "the repository".to_string(),
            (_, "") => format!("the {kind} objects"),
            (FileKind::Config, _) => "config".to_string(),
            _ => format!("{kind} {}", &name[..name.len().min(16)]),
        };
        BackendError::Remote { op, object, location: self.location.clone(), cause, class }
    }
}

impl Backend for SftpBackend {
    fn location(&self) -> &str {
        &self.location
    }

    fn connections(&self) -> usize {
        self.max
    }

    fn exists(&self) -> Result<bool, BackendError> {
        let path = self.join("config");
        self.with(|s| s.stat(&path))
            .map(|a| a.is_some())
            .map_err(|e| self.err("stat", FileKind::Config, "", e.in_path(&path)))
    }

    fn create_layout(&self) -> Result<(), BackendError> {
        // mkdir -p of the root, then every folder; "failure" for a folder
        // that exists is expected, so the result is checked by listing.
        let mut dirs = Vec::new();
        if self.root != "/" && self.root != "." {
            let mut prefix = String::new();
            for (i, part) in self.root.split('/').enumerate() {
                if i > 0 || self.root.starts_with('/') {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if !part.is_empty() && part != "." {
                    dirs.push(prefix.clone());
                }
            }
        }
        for kind in FileKind::ALL {
            if kind != FileKind::Config {
                dirs.push(self.join(kind.dir()));
            }
        }
        dirs.extend((0..=255u8).map(|i| self.join(&format!("data/{i:02x}"))));
        let fail = |e: SftpError| self.err("create layout", FileKind::Config, "", e);
        let results = self.with(|s| s.mkdirs(&dirs)).map_err(fail)?;
        let failed: Vec<(String, SftpError)> =
            dirs.into_iter().zip(results).filter_map(|(d, r)| r.err().map(|e| (d, e))).collect();
        for (dir, e) in failed {
            match self.with(|s| s.stat(&dir)).map_err(fail)? {
                Some(a) if a.is_dir() => {}
                _ => return Err(fail(e.in_path(&dir))),
            }
        }
        Ok(())
    }

    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        if !valid_name(kind, name) {
            return Err(self.remote(
                "create",
                kind,
                name,
                "invalid object name".into(),
                RemoteErrorClass::Permanent,
            ));
        }
        let dir = self.dir_of(kind, name);
        let path = self.path_of(kind, name);
        let tmp = crate::staging::temp_name(name)
            .map_err(|e| self.remote("create", kind, name, e.to_string(), RemoteErrorClass::Permanent))?;
        let tmp = format!("{dir}/{tmp}");
        let result = self.with(|s| {
            let mut w = s.write_new(&tmp, data);
            if matches!(&w, Err(e) if e.is_not_found()) {
                // A folder that a copy of the repository lost (git keeps no
                // empty folders): make it and try again.
                let _ = s.mkdirs(std::slice::from_ref(&dir))?;
                w = s.write_new(&tmp, data);
            }
            if let Err(e) = w {
                if !s.is_broken() {
                    let _ = s.remove(&tmp);
                }
                return Err(e.in_path(&tmp));
            }
            match s.rename(&tmp, &path) {
                Ok(()) => Ok(true),
                Err(e) => {
                    let _ = s.remove(&tmp);
                    match s.stat(&path)? {
                        Some(_) => Ok(false),
                        None => Err(e.in_path(&path)),
                    }
                }
            }
        });
        match result {
            Ok(true) => Ok(()),
            // Same name, same content; only the config may never be replaced.
            Ok(false) if kind != FileKind::Config => Ok(()),
            Ok(false) => Err(BackendError::AlreadyExists {
                kind,
                name: name.to_string(),
                location: self.location.clone(),
            }),
            Err(e) => Err(self.err("create", kind, name, e)),
        }
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let path = self.path_of(kind, name);
        self.with(|s| s.read_file(&path)).map_err(|e| self.err("read", kind, name, e.in_path(&path)))
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let path = self.path_of(kind, name);
        let buf = self
            .with(|s| s.read_range(&path, offset, length))
            .map_err(|e| self.err("read", kind, name, e.in_path(&path)))?;
        exact_range(buf, kind, name, offset, length)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        let fail = |e: SftpError| self.err("list", kind, "", e);
        if kind == FileKind::Config {
            let path = self.join("config");
            return Ok(match self.with(|s| s.stat(&path)).map_err(fail)? {
                Some(a) => vec![FileInfo { name: "config".into(), size: a.size.unwrap_or(0) }],
                None => vec![],
            });
        }
        let top = self.join(kind.dir());
        let listed = self.with(|s| {
            let dirs = if kind == FileKind::Pack {
                let Some(entries) = s.list_dirs(std::slice::from_ref(&top))?.pop().flatten() else {
                    return Ok(Vec::new());
                };
                let mut subs: Vec<String> = entries
                    .into_iter()
                    // Servers that send no mode bits get the benefit of the doubt.
                    .filter(|e| {
                        e.name.len() == 2
                            && e.name.iter().all(u8::is_ascii_hexdigit)
                            && (e.attrs.permissions.is_none() || e.attrs.is_dir())
                    })
                    .map(|e| format!("{top}/{}", String::from_utf8_lossy(&e.name)))
                    .collect();
                subs.sort();
                subs
            } else {
                vec![top.clone()]
            };
            s.list_dirs(&dirs)
        });
        let mut out = Vec::new();
        for entries in listed.map_err(fail)?.into_iter().flatten() {
            for e in entries {
                let Ok(name) = String::from_utf8(e.name) else { continue };
                if valid_name(kind, &name) && e.attrs.is_regular() {
                    out.push(FileInfo { name, size: e.attrs.size.unwrap_or(0) });
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let path = self.path_of(kind, name);
        self.with(|s| s.remove(&path)).map_err(|e| {
            // OpenSSH reports a missing file as "no such file"; keep the
            // contract's NotFound for it.
            let e = e.in_path(&path);
            if matches!(e, SftpError::Status { code: FX_NO_SUCH_FILE, .. }) {
                BackendError::NotFound { kind, name: name.to_string(), location: self.location.clone() }
            } else {
                self.err("delete", kind, name, e)
            }
        })
    }
}

impl Drop for SftpBackend {
    fn drop(&mut self) {
        // Sessions end (and their ssh processes are reaped) here.
        self.pool.get_mut().idle.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        let o = SftpOptions::new("example.org", "/srv/repo").user("me").port(2222).key("/k");
        assert_eq!(
            o.argv().unwrap().join(" "),
            "ssh -o ServerAliveInterval=15 -o ServerAliveCountMax=4 -i /k -p 2222 -l me example.org -s sftp"
        );
        assert_eq!(o.location(), "sftp:me@example.org:2222:/srv/repo");
        let o = SftpOptions::new("h", "p").command(r#"ssh -o 'A B' "x \"y\"" a\ b -s sftp"#);
        assert_eq!(o.argv().unwrap(), ["ssh", "-o", "A B", "x \"y\"", "a b", "-s", "sftp"]);
        assert!(SftpOptions::new("h", "p").command("ssh 'open").argv().is_err());
        assert!(SftpOptions::new("-oProxyCommand=x", "p").argv().is_err());
    }
}
