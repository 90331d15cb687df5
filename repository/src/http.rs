//! The HTTP client shared by the S3 and REST backends: one connection pool
//! per backend, a bound on requests in flight (`-o connections=N`), and
//! the mapping of HTTP outcomes to transient, permanent and auth errors.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use ureq::http::{self, Request};

use crate::backend::{exact_range, FileKind};
use crate::backend_url::BackendOptions;
use crate::error::{BackendError, RemoteErrorClass};
use crate::local::valid_name;

/// Largest response body accepted (a pack is far smaller): bounds memory
/// against a misbehaving server.
const MAX_BODY: u64 = 1 << 31;

/// A response: status, headers and the whole body.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The status line and a short excerpt of the body, for messages.
    pub fn describe(&self) -> String {
        let reason =
            http::StatusCode::from_u16(self.status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        let mut s = format!("{} {reason}", self.status).trim_end().to_string();
        if !text.is_empty() && text.len() < 300 && !text.starts_with('<') {
            s.push_str(": ");
            s.push_str(&text.replace('\n', " "));
        }
        s
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How a status code should be treated.
pub(crate) fn status_class(status: u16) -> RemoteErrorClass {
    match status {
        401 | 403 => RemoteErrorClass::Auth,
        408 | 425 | 429 | 500..=599 => RemoteErrorClass::Transient,
        _ => RemoteErrorClass::Permanent,
    }
}

/// A failure before any HTTP status arrived.
pub(crate) struct TransportError {
    pub cause: String,
    pub class: RemoteErrorClass,
}

/// A counting semaphore: at most `max` requests in flight.
struct Limiter {
    in_use: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

struct Permit<'a>(&'a Limiter);

impl Limiter {
    fn acquire(&self) -> Permit<'_> {
        let mut n = self.in_use.lock();
        while *n >= self.max {
            self.freed.wait(&mut n);
        }
        *n += 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.in_use.lock() -= 1;
        self.0.freed.notify_one();
    }
}

/// An HTTP client bound to one backend.
pub(crate) struct Client {
    agent: ureq::Agent,
    limiter: Limiter,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("connections", &self.limiter.max).finish()
    }
}

impl Client {
    /// A client with `connections` concurrent requests and the timeouts of
    /// `opts`: a connect, or a read or write that makes no progress, taking
    /// longer than the timeout fails the request as transient.
    pub fn new(opts: &BackendOptions, connections: usize) -> Client {
        let t = opts.request_timeout();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(t.min(Duration::from_secs(30))))
            .timeout_per_read(Some(t))
            .timeout_per_write(Some(t))
            .max_idle_connections(connections)
            .max_idle_connections_per_host(connections)
            .max_redirects(0)
            .user_agent(concat!("arch/", env!("CARGO_PKG_VERSION")))
            .build();
        Client {
            agent: config.into(),
            limiter: Limiter { in_use: Mutex::new(0), freed: Condvar::new(), max: connections.max(1) },
        }
    }

    /// The bound on requests in flight.
    pub fn connections(&self) -> usize {
        self.limiter.max
    }

    /// Sends one request and reads the whole response.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, TransportError> {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, v.as_str());
        }
        let _permit = self.limiter.acquire();
        let result = match body {
            Some(data) => b.body(data).map(|r| self.agent.run(r)),
            None => b.body(()).map(|r| self.agent.run(r)),
        };
        let resp = match result {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(transport(e)),
            Err(e) => {
                return Err(TransportError {
                    cause: format!("bad request: {e}"),
                    class: RemoteErrorClass::Permanent,
                })
            }
        };
        // The headers are moved out of the response, not copied.
        let (parts, mut body) = resp.into_parts();
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            body.with_config().limit(MAX_BODY).read_to_vec().map_err(transport)?
        };
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
    }
}

fn transport(e: ureq::Error) -> TransportError {
    use ureq::Error as E;
    let class = match &e {
        E::Io(_) | E::Timeout(_) | E::ConnectionFailed | E::BodyStalled | E::Protocol(_) => {
            RemoteErrorClass::Transient
        }
        _ => RemoteErrorClass::Permanent,
    };
    let cause = match &e {
        E::HostNotFound => "host not found (check the host name in the repository location)".to_string(),
        E::ConnectionFailed => "connection failed (is the server running?)".to_string(),
        E::Io(io) => format!("network error: {io}"),
        E::Timeout(t) => format!("timed out ({t}); raise it with -o timeout=…"),
        other => other.to_string(),
    };
    TransportError { cause, class }
}

/// Builds one remote backend's errors, each naming its location.
#[derive(Debug)]
pub(crate) struct RemoteErrors {
    /// The repository location (without credentials).
    pub location: String,
}

impl RemoteErrors {
    pub fn remote(
        &self,
        op: &'static str,
        object: String,
        cause: String,
        class: RemoteErrorClass,
    ) -> BackendError {
        BackendError::Remote { op, object, location: self.location.clone(), cause, class }
    }

    pub fn transport(&self, op: &'static str, object: String, e: TransportError) -> BackendError {
        self.remote(op, object, e.cause, e.class)
    }

    pub fn not_found(&self, kind: FileKind, name: &str) -> BackendError {
        BackendError::NotFound { kind, name: name.to_string(), location: self.location.clone() }
    }

    /// Refuses a name that is not an object name, before it reaches a URL.
    pub fn check_name(&self, op: &'static str, kind: FileKind, name: &str) -> Result<(), BackendError> {
        if valid_name(kind, name) {
            return Ok(());
        }
        Err(self.remote(op, object(kind, name), "invalid object name".into(), RemoteErrorClass::Permanent))
    }
}

/// An object as messages name it ("config", "pack 1a2b…").
pub(crate) fn object(kind: FileKind, name: &str) -> String {
    match kind {
        FileKind::Config => "config".into(),
        _ => format!("{kind} {name}"),
    }
}

/// The reads every HTTP backend makes the same way, on top of its own GET
/// and its own wording of a bad reply.
pub(crate) trait HttpReads {
    /// GET of the whole object, or of `(offset, length)`; a missing object
    /// is `NotFound`, any other reply is returned.
    fn get(&self, kind: FileKind, name: &str, range: Option<(u64, u64)>) -> Result<Reply, BackendError>;

    /// The error for a reply the operation cannot use.
    fn status_error(&self, op: &'static str, object: String, r: &Reply) -> BackendError;

    /// The whole object (a 200 reply's body).
    fn read_whole(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        let r = self.get(kind, name, None)?;
        if r.status != 200 {
            return Err(self.status_error("read", object(kind, name), &r));
        }
        Ok(r.body)
    }

    /// Exactly `length` bytes at `offset`: 206 carries the range, 200 the
    /// whole object (a server that ignores Range), 416 says the object ends
    /// before `offset` (a short read). Cut in place, without copying.
    fn read_part(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let r = self.get(kind, name, Some((offset, length)))?;
        let body = match r.status {
            206 => r.body,
            200 => {
                let mut body = r.body;
                body.drain(..(offset as usize).min(body.len()));
                body
            }
            416 => Vec::new(),
            _ => return Err(self.status_error("read", object(kind, name), &r)),
        };
        exact_range(body, kind, name, offset, length)
    }
}

/// The extra headers of a GET: a Range header for `(offset, length)`
/// (length > 0), none for the whole object.
pub(crate) fn range_headers(range: Option<(u64, u64)>) -> Vec<(&'static str, String)> {
    range
        .map(|(offset, length)| ("range", format!("bytes={offset}-{}", offset + length - 1)))
        .into_iter()
        .collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters (and
/// `/` when `keep_slash`), as both S3 signing and URLs need.
pub(crate) fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 (for HTTP basic auth).
pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass word"), "dXNlcjpwYXNzIHdvcmQ=");
        assert_eq!(uri_encode("a b/c~d=e", true), "a%20b/c~d%3De");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }

    #[test]
    fn statuses() {
        assert_eq!(status_class(403), RemoteErrorClass::Auth);
        assert_eq!(status_class(503), RemoteErrorClass::Transient);
        assert_eq!(status_class(429), RemoteErrorClass::Transient);
        assert_eq!(status_class(400), RemoteErrorClass::Permanent);
    }
}
