//! A real SFTP server for tests: Debian's OpenSSH sshd on 127.0.0.1 with a
//! generated host key and client key, serving `internal-sftp` (not the
//! sftp-server binary, which sshd would start through the login shell and
//! its ~/.bashrc, whose slow or locked commands would stall every session).
//!
//! `SftpServer::start()` returns `None` (after printing a note) when sshd
//! is not installed, unless ARCH_REQUIRE_SERVERS=1 (CI), where it panics.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arch_archiver::SftpOptions;

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd; killed and reaped when dropped.
pub struct SftpServer {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    /// The port it listens on (kept across [`SftpServer::restart`]).
    pub port: u16,
    /// The login name (the user running the tests).
    pub user: String,
    /// The client's private key, accepted by the server.
    pub key: PathBuf,
}

/// Generates an ed25519 key pair without a passphrase at `path`.
pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

impl SftpServer {
    /// Starts a server, or returns `None` if sshd is missing and servers
    /// are not required.
    pub fn start() -> Option<SftpServer> {
        if !Path::new(SSHD).exists() || Command::new("ssh").arg("-V").output().is_err() {
            if std::env::var("ARCH_REQUIRE_SERVERS").as_deref() == Ok("1") {
                panic!("{SSHD} or ssh is missing and ARCH_REQUIRE_SERVERS=1: apt-get install openssh-server openssh-client");
            }
            eprintln!("note: skipping an SFTP test: {SSHD} not installed (apt-get install openssh-server)");
            return None;
        }
        // sshd refuses to start without its privilege-separation folder.
        let _ = fs::create_dir_all("/run/sshd");
        let t = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(t.path()).unwrap();
        keygen(&dir.join("host_key"));
        keygen(&dir.join("client_key"));
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let mut s = SftpServer {
            child: None,
            _dir: t,
            key: dir.join("client_key"),
            dir,
            port: crate::servers::free_port(),
            user,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let config = self.dir.join("sshd_config");
        fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\n\
                 Subsystem sftp internal-sftp\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 StrictModes no\nAuthorizedKeysFile {d}/client_key.pub\nPidFile none\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nLogLevel VERBOSE\n",
                port = self.port,
                d = self.dir.display()
            ),
        )
        .unwrap();
        let log = fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited ({st}): {}", self.log());
            }
            assert!(Instant::now() < deadline, "sshd did not listen within 10 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("sshd.log")
    }

    /// sshd's log so far: connections and logins.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the server (and with it every session it serves).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Killing the listener leaves its per-connection children
            // serving; a dead server kills them too (found by parent id).
            for pid in descendants(c.id()) {
                // SAFETY: plain kill(2) of a process this server started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// ssh arguments a client needs: this server's key, no host-key prompt.
    pub fn ssh_args(&self) -> String {
        "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR"
            .into()
    }

    /// The repository URL for `path` on this server.
    pub fn url(&self, path: &Path) -> String {
        format!("sftp:{}@127.0.0.1:{}:{}", self.user, self.port, path.display())
    }

    /// The `-o` options the CLI needs for this server.
    pub fn cli_options(&self) -> Vec<String> {
        vec![
            "-o".into(),
            format!("sftp.key={}", self.key.display()),
            "-o".into(),
            format!("sftp.args={}", self.ssh_args()),
        ]
    }

    /// Library options for a repository at `path`.
    pub fn options(&self, path: &Path) -> SftpOptions {
        SftpOptions::new("127.0.0.1", path.display().to_string())
            .user(self.user.clone())
            .port(self.port)
            .key(&self.key)
            .args(self.ssh_args().split(' ').map(String::from))
    }
}

/// Every process below `pid` (children first found, deepest last).
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // Fields after the parenthesised command name: state, ppid, ...
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1));
            if ppid.and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
                out.push(child);
                queue.push(child);
            }
        }
    }
    out
}

impl Drop for SftpServer {
    fn drop(&mut self) {
        self.kill();
    }
}
