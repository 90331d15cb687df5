//! The SFTP version 3 wire format (draft-ietf-secsh-filexfer-02), client
//! side: request encoding and reply decoding. No I/O happens here.

use std::io;

pub(crate) const SSH_FXP_INIT: u8 = 1;
pub(crate) const SSH_FXP_VERSION: u8 = 2;
pub(crate) const SSH_FXP_OPEN: u8 = 3;
pub(crate) const SSH_FXP_CLOSE: u8 = 4;
pub(crate) const SSH_FXP_READ: u8 = 5;
pub(crate) const SSH_FXP_WRITE: u8 = 6;
pub(crate) const SSH_FXP_FSTAT: u8 = 8;
pub(crate) const SSH_FXP_OPENDIR: u8 = 11;
pub(crate) const SSH_FXP_READDIR: u8 = 12;
pub(crate) const SSH_FXP_REMOVE: u8 = 13;
pub(crate) const SSH_FXP_MKDIR: u8 = 14;
pub(crate) const SSH_FXP_STAT: u8 = 17;
pub(crate) const SSH_FXP_RENAME: u8 = 18;
pub(crate) const SSH_FXP_EXTENDED: u8 = 200;

const SSH_FXP_STATUS: u8 = 101;
const SSH_FXP_HANDLE: u8 = 102;
const SSH_FXP_DATA: u8 = 103;
const SSH_FXP_NAME: u8 = 104;
const SSH_FXP_ATTRS: u8 = 105;
const SSH_FXP_EXTENDED_REPLY: u8 = 201;

pub(crate) const FXF_READ: u32 = 0x01;
pub(crate) const FXF_WRITE: u32 = 0x02;
pub(crate) const FXF_CREAT: u32 = 0x08;
pub(crate) const FXF_EXCL: u32 = 0x20;

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Status codes of an `SSH_FXP_STATUS` reply.
pub(crate) const FX_OK: u32 = 0;
pub(crate) const FX_EOF: u32 = 1;
pub(crate) const FX_NO_SUCH_FILE: u32 = 2;
pub(crate) const FX_PERMISSION_DENIED: u32 = 3;
pub(crate) const FX_OP_UNSUPPORTED: u32 = 8;

/// The directory bit of a POSIX mode.
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;

/// File attributes; only the fields this client uses are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub size: Option<u64>,
    pub permissions: Option<u32>,
}

impl Attrs {
    pub fn is_dir(&self) -> bool {
        self.permissions.is_some_and(|p| p & S_IFMT == S_IFDIR)
    }

    pub fn is_regular(&self) -> bool {
        self.permissions.is_none_or(|p| p & S_IFMT == 0o100000)
    }
}

/// One directory entry of an `SSH_FXP_NAME` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NameEntry {
    pub name: Vec<u8>,
    pub attrs: Attrs,
}

/// A server reply, with its request id taken off.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Status { code: u32, message: String },
    Handle(Vec<u8>),
    Data(Vec<u8>),
    Name(Vec<NameEntry>),
    Attrs(Attrs),
    Extended(Vec<u8>),
}

/// A request body under construction: `uint32 length, byte type, uint32 id`
/// are prepended by [`Request::finish`].
pub(crate) struct Request {
    buf: Vec<u8>,
}

impl Request {
    pub fn new(kind: u8) -> Request {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0, 0, 0, 0, kind, 0, 0, 0, 0]);
        Request { buf }
    }

    /// A request carrying `extra` more bytes than its header (to size the buffer once).
    pub fn with_capacity(kind: u8, extra: usize) -> Request {
        let mut r = Request::new(kind);
        r.buf.reserve(extra);
        r
    }

    pub fn u32(mut self, v: u32) -> Request {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(mut self, v: u64) -> Request {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(mut self, b: &[u8]) -> Request {
        self.buf.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(b);
        self
    }

    pub fn str(self, s: &str) -> Request {
        self.bytes(s.as_bytes())
    }

    /// Attributes that set only the permission bits.
    pub fn perms(self, mode: u32) -> Request {
        self.u32(ATTR_PERMISSIONS).u32(mode)
    }

    pub fn no_attrs(self) -> Request {
        self.u32(0)
    }

    /// The framed packet with request id `id`.
    pub fn finish(mut self, id: u32) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf[5..9].copy_from_slice(&id.to_be_bytes());
        self.buf
    }
}

/// The INIT packet (it has a version where other packets have an id).
pub(crate) fn init_packet() -> Vec<u8> {
    let mut r = Request::new(SSH_FXP_INIT);
    r.buf.truncate(5);
    r.u32(3).finish_raw()
}

impl Request {
    fn finish_raw(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// A cursor over a received packet body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed SFTP reply: {what}"))
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn u8(&mut self) -> io::Result<u8> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| bad("truncated byte"))?;
        self.buf = rest;
        Ok(b)
    }

    pub fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> io::Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(bad("truncated field"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn string(&mut self) -> io::Result<String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }

    pub fn attrs(&mut self) -> io::Result<Attrs> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.take(8)?;
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }
}

/// Decodes a reply packet body (type byte onwards) into its request id and reply.
pub(crate) fn decode_reply(body: &[u8]) -> io::Result<(u32, Reply)> {
    let mut r = Reader::new(body);
    let kind = r.u8()?;
    let id = r.u32()?;
    let reply = match kind {
        SSH_FXP_STATUS => {
            let code = r.u32()?;
            // Servers older than version 3 may omit the message.
            let message = if r.is_empty() { String::new() } else { r.string()? };
            Reply::Status { code, message }
        }
        SSH_FXP_HANDLE => Reply::Handle(r.bytes()?.to_vec()),
        SSH_FXP_DATA => Reply::Data(r.bytes()?.to_vec()),
        SSH_FXP_NAME => {
            let n = r.u32()?;
            let mut v = Vec::with_capacity(n.min(4096) as usize);
            for _ in 0..n {
                let name = r.bytes()?.to_vec();
                r.bytes()?; // the ls -l style long name
                v.push(NameEntry { name, attrs: r.attrs()? });
            }
            Reply::Name(v)
        }
        SSH_FXP_ATTRS => Reply::Attrs(r.attrs()?),
        SSH_FXP_EXTENDED_REPLY => Reply::Extended(r.buf.to_vec()),
        other => return Err(bad(&format!("unexpected packet type {other}"))),
    };
    Ok((id, reply))
}

/// Extensions a server offers: (name, data) pairs.
pub(crate) type Extensions = Vec<(String, Vec<u8>)>;

/// Decodes the VERSION packet body: the version and the extensions offered.
pub(crate) fn decode_version(body: &[u8]) -> io::Result<(u32, Extensions)> {
    let mut r = Reader::new(body);
    if r.u8()? != SSH_FXP_VERSION {
        return Err(bad("expected VERSION"));
    }
    let version = r.u32()?;
    let mut ext = Vec::new();
    while !r.is_empty() {
        let name = r.string()?;
        let data = r.bytes()?.to_vec();
        ext.push((name, data));
    }
    Ok((version, ext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_framing() {
        let p = Request::new(SSH_FXP_OPEN).str("a").u32(FXF_READ).no_attrs().finish(7);
        assert_eq!(p, [0, 0, 0, 18, 3, 0, 0, 0, 7, 0, 0, 0, 1, b'a', 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(init_packet(), [0, 0, 0, 5, 1, 0, 0, 0, 3]);
    }

    #[test]
    fn decode_name_and_status() {
        let mut body = vec![SSH_FXP_NAME, 0, 0, 0, 9, 0, 0, 0, 1];
        body.extend_from_slice(&[0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0]);
        body.extend_from_slice(&(ATTR_SIZE | ATTR_PERMISSIONS).to_be_bytes());
        body.extend_from_slice(&42u64.to_be_bytes());
        body.extend_from_slice(&0o100600u32.to_be_bytes());
        let (id, reply) = decode_reply(&body).unwrap();
        assert_eq!(id, 9);
        assert_eq!(
            reply,
            Reply::Name(vec![NameEntry {
                name: b"ab".to_vec(),
                attrs: Attrs { size: Some(42), permissions: Some(0o100600) }
            }])
        );
        let body = [SSH_FXP_STATUS, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            decode_reply(&body).unwrap(),
            (1, Reply::Status { code: FX_NO_SUCH_FILE, message: String::new() })
        );
        assert!(decode_reply(&[SSH_FXP_DATA, 0, 0, 0, 1, 0, 0, 0, 9, 1]).is_err());
    }
}
