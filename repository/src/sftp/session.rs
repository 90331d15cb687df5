//! One SFTP session: an `ssh -s sftp` child process (or the command the user
//! configured) spoken to over its stdin and stdout. Requests are pipelined:
//! up to [`WINDOW`] are in flight at once, so a pack upload or a listing of
//! 256 folders costs a few round trips, not one per request.

use std::collections::HashSet;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::SftpError;
use super::protocol::*;

/// Requests in flight at once. The replies to 64 writes (or the requests of
/// 64 reads) are small enough to sit in the pipe and channel buffers, so
/// sender and receiver (one thread) can never block each other.
const WINDOW: usize = 64;

/// Chunk size when the server does not announce its limits: every SFTP
/// server must accept 32 KiB reads and writes.
const DEFAULT_IO: u32 = 32 * 1024;

/// Largest chunk used even if a server allows more.
const MAX_IO: u64 = 255 * 1024;

/// Largest reply accepted (a hostile or broken server cannot make us
/// allocate more).
const MAX_PACKET: u32 = 4 << 20;

/// How much of the command's stderr is kept for error messages.
const STDERR_KEEP: usize = 4096;

/// An open file or directory handle on the server.
pub(crate) struct Handle(Vec<u8>);

/// A connected session.
pub(crate) struct Session {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    next_id: u32,
    /// Replies to drop when they arrive (closes of read handles).
    discard: HashSet<u32>,
    fsync: bool,
    read_chunk: u32,
    write_chunk: u32,
    broken: bool,
}

impl Session {
    /// Spawns `argv` and runs the SFTP handshake. The child gets its own
    /// process group, so a Ctrl-C on the terminal reaches only arch, which
    /// can then finish its index before it exits.
    pub fn connect(argv: &[String]) -> Result<Session, SftpError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| SftpError::Connect { detail: "empty sftp command".into(), transient: false })?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| SftpError::Connect {
                detail: format!("cannot run {program}: {e}"),
                transient: false,
            })?;
        let stdin = BufWriter::with_capacity(256 * 1024, child.stdin.take().expect("piped"));
        let stdout = BufReader::with_capacity(256 * 1024, child.stdout.take().expect("piped"));
        let mut err = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_KEEP {
                    kept.drain(..kept.len() - STDERR_KEEP);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        });
        let mut s = Session {
            child,
            stdin,
            stdout,
            stderr: Some(stderr),
            next_id: 1,
            discard: HashSet::new(),
            fsync: false,
            read_chunk: DEFAULT_IO,
            write_chunk: DEFAULT_IO,
            broken: false,
        };
        match s.handshake() {
            Ok(()) => Ok(s),
            Err(e) => Err(s.connect_error(e)),
        }
    }

    fn handshake(&mut self) -> io::Result<()> {
        self.stdin.write_all(&init_packet())?;
        self.stdin.flush()?;
        let body = self.read_packet()?;
        let (version, ext) = decode_version(&body)?;
        if version < 3 {
            return Err(io::Error::other(format!("server speaks SFTP version {version}, 3 is needed")));
        }
        let has = |n: &str| ext.iter().any(|(name, _)| name == n);
        self.fsync = has("fsync@openssh.com");
        if has("limits@openssh.com") {
            if let Ok(Reply::Extended(data)) =
                self.one(Request::new(SSH_FXP_EXTENDED).str("limits@openssh.com"))
            {
                let mut r = Reader::new(&data);
                let (_packet, read, write) = (r.u64()?, r.u64()?, r.u64()?);
                // Zero means "no limit"; keep every chunk well inside a packet.
                let pick = |v: u64| if v == 0 { MAX_IO } else { v.min(MAX_IO) } as u32;
                self.read_chunk = pick(read).max(DEFAULT_IO);
                self.write_chunk = pick(write).max(DEFAULT_IO);
            }
        }
        Ok(())
    }

    /// Turns a failed handshake into the command's own explanation (ssh
    /// prints why it could not connect and exits 255).
    fn connect_error(&mut self, e: io::Error) -> SftpError {
        self.broken = true;
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => break None,
            }
        };
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let last = stderr
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
            .unwrap_or("")
            .to_string();
        // ssh explains every failure that needs the user (refused key,
        // unknown host, host key mismatch) at its default log level; one
        // that exits 255 silently lost its connection (a server going
        // down during the key exchange, with LogLevel=ERROR).
        let silent_ssh_exit = last.is_empty() && status.and_then(|st| st.code()) == Some(255);
        let transient = is_transient_connect(&last) || silent_ssh_exit;
        let cause = if e.kind() == io::ErrorKind::UnexpectedEof {
            "connection closed".to_string()
        } else {
            e.to_string()
        };
        let detail = match (last.is_empty(), status) {
            (false, _) => last,
            (true, Some(st)) => format!("the sftp command exited ({st}) before the SFTP handshake ({cause})"),
            (true, None) => format!("SFTP handshake failed: {cause}"),
        };
        SftpError::Connect { detail, transient }
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn read_packet(&mut self) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stdout.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len == 0 || len > MAX_PACKET {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("SFTP packet of {len} bytes")));
        }
        let mut body = vec![0u8; len as usize];
        self.stdout.read_exact(&mut body)?;
        Ok(body)
    }

    fn lost(&mut self, e: io::Error) -> SftpError {
        self.broken = true;
        if e.kind() == io::ErrorKind::InvalidData {
            SftpError::Protocol(e.to_string())
        } else {
            SftpError::Lost(e.to_string())
        }
    }

    fn send(&mut self, req: Request) -> Result<u32, SftpError> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let packet = req.finish(id);
        self.stdin.write_all(&packet).map_err(|e| self.lost(e))?;
        Ok(id)
    }

    fn recv(&mut self) -> Result<(u32, Reply), SftpError> {
        self.stdin.flush().map_err(|e| self.lost(e))?;
        loop {
            let body = self.read_packet().map_err(|e| self.lost(e))?;
            let (id, reply) = decode_reply(&body).map_err(|e| self.lost(e))?;
            if !self.discard.remove(&id) {
                return Ok((id, reply));
            }
        }
    }

    /// Sends every request (at most [`WINDOW`] in flight) and returns the
    /// replies in request order.
    pub fn batch<I>(&mut self, reqs: I) -> Result<Vec<Reply>, SftpError>
    where
        I: IntoIterator<Item = Request>,
        I::IntoIter: ExactSizeIterator,
    {
        // Requests are built only as the window opens, so a pack upload
        // holds at most WINDOW chunks of copied data at a time.
        let mut pending = reqs.into_iter();
        let n = pending.len();
        let mut out: Vec<Option<Reply>> = (0..n).map(|_| None).collect();
        let mut ids = Vec::with_capacity(n);
        let mut in_flight = 0usize;
        let mut done = 0usize;
        while done < n {
            while in_flight < WINDOW {
                let Some(r) = pending.next() else { break };
                ids.push(self.send(r)?);
                in_flight += 1;
            }
            let (id, reply) = self.recv()?;
            let Some(slot) = ids.iter().position(|&i| i == id) else {
                self.broken = true;
                return Err(SftpError::Protocol(format!("reply to unknown request {id}")));
            };
            if out[slot].replace(reply).is_some() {
                self.broken = true;
                return Err(SftpError::Protocol(format!("two replies to request {id}")));
            }
            in_flight -= 1;
            done += 1;
        }
        Ok(out.into_iter().map(|r| r.expect("every request answered")).collect())
    }

    fn one(&mut self, req: Request) -> Result<Reply, SftpError> {
        Ok(self.batch([req])?.pop().expect("one reply"))
    }

    /// Sends a request whose reply is dropped unread (closing a handle
    /// that was only read from).
    fn send_and_forget(&mut self, req: Request) -> Result<(), SftpError> {
        let id = self.send(req)?;
        self.discard.insert(id);
        Ok(())
    }

    pub fn stat(&mut self, path: &str) -> Result<Option<Attrs>, SftpError> {
        match self.one(Request::new(SSH_FXP_STAT).str(path))? {
            Reply::Attrs(a) => Ok(Some(a)),
            Reply::Status { code: FX_NO_SUCH_FILE, .. } => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    pub fn open(&mut self, path: &str, flags: u32) -> Result<Handle, SftpError> {
        let req = Request::new(SSH_FXP_OPEN).str(path).u32(flags);
        let req = if flags & FXF_CREAT != 0 { req.perms(0o600) } else { req.no_attrs() };
        match self.one(req)? {
            Reply::Handle(h) => Ok(Handle(h)),
            other => Err(unexpected(other)),
        }
    }

    /// Writes `data` to a new file at `path` (which must not exist), syncs
    /// it where the server can, and closes it.
    pub fn write_new(&mut self, path: &str, data: &[u8]) -> Result<(), SftpError> {
        let h = self.open(path, FXF_WRITE | FXF_CREAT | FXF_EXCL)?;
        let chunk = self.write_chunk as usize;
        let writes = data.chunks(chunk).enumerate().map(|(i, c)| {
            Request::with_capacity(SSH_FXP_WRITE, c.len() + h.0.len() + 16)
                .bytes(&h.0)
                .u64((i * chunk) as u64)
                .bytes(c)
        });
        let written = self.batch(writes);
        let mut reqs = Vec::new();
        if self.fsync {
            reqs.push(Request::new(SSH_FXP_EXTENDED).str("fsync@openssh.com").bytes(&h.0));
        }
        reqs.push(Request::new(SSH_FXP_CLOSE).bytes(&h.0));
        if self.broken {
            return written.map(|_| ());
        }
        // Sync and close even after a failed write, so no handle leaks.
        let closed = self.batch(reqs);
        for r in written? {
            status_ok(r)?;
        }
        for r in closed? {
            status_ok(r)?;
        }
        Ok(())
    }

    /// Reads `length` bytes at `offset` from an open file. Returns fewer
    /// bytes only when the file ends first.
    fn read_at(&mut self, h: &Handle, offset: u64, length: u64) -> Result<Vec<u8>, SftpError> {
        let mut out = Vec::with_capacity(length as usize);
        let chunk = u64::from(self.read_chunk);
        'rounds: while (out.len() as u64) < length {
            let start = offset + out.len() as u64;
            let end = offset + length;
            let reqs: Vec<Request> = (start..end)
                .step_by(chunk as usize)
                .map(|o| Request::new(SSH_FXP_READ).bytes(&h.0).u64(o).u32(chunk.min(end - o) as u32))
                .collect::<Vec<_>>();
            let want: Vec<u64> = (start..end).step_by(chunk as usize).map(|o| chunk.min(end - o)).collect();
            let replies = self.batch(reqs)?;
            // Keep the contiguous prefix; a short chunk (allowed by the
            // protocol) starts the next round where it stopped.
            let mut contiguous = true;
            let mut eof = false;
            for (reply, want) in replies.into_iter().zip(want) {
                match reply {
                    Reply::Data(d) if contiguous => {
                        if d.len() as u64 > want {
                            return Err(SftpError::Protocol("READ returned more than asked".into()));
                        }
                        contiguous = d.len() as u64 == want;
                        out.extend_from_slice(&d);
                    }
                    Reply::Data(_) => {}
                    Reply::Status { code: FX_EOF, .. } => {
                        if contiguous {
                            eof = true;
                        }
                        contiguous = false;
                    }
                    other => return Err(unexpected(other)),
                }
            }
            if eof {
                break 'rounds;
            }
        }
        Ok(out)
    }

    /// Reads a byte range of a file; fewer bytes only at the file's end.
    pub fn read_range(&mut self, path: &str, offset: u64, length: u64) -> Result<Vec<u8>, SftpError> {
        let h = self.open(path, FXF_READ)?;
        let data = self.read_at(&h, offset, length);
        if !self.broken {
            self.send_and_forget(Request::new(SSH_FXP_CLOSE).bytes(&h.0))?;
        }
        data
    }

    /// Reads a whole file.
    pub fn read_file(&mut self, path: &str) -> Result<Vec<u8>, SftpError> {
        let h = self.open(path, FXF_READ)?;
        let data = match self.one(Request::new(SSH_FXP_FSTAT).bytes(&h.0)) {
            Ok(Reply::Attrs(Attrs { size: Some(size), .. })) => self.read_at(&h, 0, size),
            Ok(Reply::Attrs(_)) => Err(SftpError::Protocol("FSTAT without a size".into())),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        };
        if !self.broken {
            self.send_and_forget(Request::new(SSH_FXP_CLOSE).bytes(&h.0))?;
        }
        data
    }

    /// Lists several directories at once. A missing directory lists as
    /// `None`; entries are the server's (including `.` and `..`).
    pub fn list_dirs(&mut self, dirs: &[String]) -> Result<Vec<Option<Vec<NameEntry>>>, SftpError> {
        let opened = self.batch(dirs.iter().map(|d| Request::new(SSH_FXP_OPENDIR).str(d)))?;
        let mut out: Vec<Option<Vec<NameEntry>>> = Vec::with_capacity(dirs.len());
        let mut handles: Vec<(usize, Handle)> = Vec::new();
        let mut first_err = None;
        for (i, r) in opened.into_iter().enumerate() {
            match r {
                Reply::Handle(h) => {
                    handles.push((i, Handle(h)));
                    out.push(Some(Vec::new()));
                }
                Reply::Status { code: FX_NO_SUCH_FILE, .. } => out.push(None),
                other => {
                    first_err.get_or_insert(unexpected(other).in_path(&dirs[i]));
                    out.push(None);
                }
            }
        }
        // One READDIR per open directory per round, until each says EOF.
        let mut reading: Vec<usize> = (0..handles.len()).collect();
        while !reading.is_empty() && first_err.is_none() {
            let reqs = reading.iter().map(|&k| Request::new(SSH_FXP_READDIR).bytes(&handles[k].1 .0));
            let replies = self.batch(reqs)?;
            let mut next = Vec::new();
            for (&k, r) in reading.iter().zip(replies) {
                let i = handles[k].0;
                match r {
                    Reply::Name(entries) => {
                        out[i].as_mut().expect("opened").extend(entries);
                        next.push(k);
                    }
                    Reply::Status { code: FX_EOF, .. } => {}
                    other => {
                        first_err.get_or_insert(unexpected(other).in_path(&dirs[i]));
                    }
                }
            }
            reading = next;
        }
        for (_, h) in &handles {
            self.send_and_forget(Request::new(SSH_FXP_CLOSE).bytes(&h.0))?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Creates directories (mode 0700); returns each one's status reply
    /// (servers answer "failure" for one that already exists).
    pub fn mkdirs(&mut self, paths: &[String]) -> Result<Vec<Result<(), SftpError>>, SftpError> {
        let reqs = paths.iter().map(|p| Request::new(SSH_FXP_MKDIR).str(p).perms(0o700));
        Ok(self.batch(reqs)?.into_iter().map(status_ok).collect())
    }

    pub fn remove(&mut self, path: &str) -> Result<(), SftpError> {
        status_ok(self.one(Request::new(SSH_FXP_REMOVE).str(path))?)
    }

    /// Plain SFTP v3 rename, which fails if `to` exists (this is what
    /// makes objects write-once; posix-rename@openssh.com would replace).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), SftpError> {
        status_ok(self.one(Request::new(SSH_FXP_RENAME).str(from).str(to))?)
    }
}

fn status_ok(r: Reply) -> Result<(), SftpError> {
    match r {
        Reply::Status { code: FX_OK, .. } => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn unexpected(r: Reply) -> SftpError {
    match r {
        Reply::Status { code, message } => SftpError::Status { code, message, path: String::new() },
        other => SftpError::Protocol(format!("unexpected reply {:?}", kind_of(&other))),
    }
}

fn kind_of(r: &Reply) -> &'static str {
    match r {
        Reply::Status { .. } => "STATUS",
        Reply::Handle(_) => "HANDLE",
        Reply::Data(_) => "DATA",
        Reply::Name(_) => "NAME",
        Reply::Attrs(_) => "ATTRS",
        Reply::Extended(_) => "EXTENDED_REPLY",
    }
}

/// Whether ssh's last stderr line describes a condition that may pass
/// (the server is restarting or the network is down), as opposed to one
/// that needs the user (bad key, unknown host, wrong host key).
fn is_transient_connect(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        "connection refused",
        "connection timed out",
        "connection reset",
        "connection closed",
        "network is unreachable",
        "no route to host",
        "broken pipe",
    ]
    .iter()
    .any(|p| l.contains(p))
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing stdin ends a healthy sftp subsystem; a broken or stuck
        // one is killed. Either way the child is reaped and the stderr
        // reader joined.
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}
