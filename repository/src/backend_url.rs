//! Repository location strings (`/path`, `s3:…`, `rest:…`, `sftp:…`) and
//! the `-o key=value` options that tune how a backend talks to its service.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::check::CancelCheck;
use crate::error::BackendError;
use crate::local::LocalBackend;
use crate::rest::RestBackend;
use crate::retry::{RetryBackend, RetryPolicy};
use crate::s3::S3Backend;
use crate::sftp::{split_words, SftpBackend, SftpOptions, DEFAULT_SFTP_CONNECTIONS};

/// Scheme, host and port of an HTTP service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` (true) or `http`.
    pub https: bool,
    /// Host name or IP address (an IPv6 address without brackets).
    pub host: String,
    /// The port, if given (else 80 or 443).
    pub port: Option<u16>,
}

impl Endpoint {
    /// The port in use: the given one, else the scheme's default.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.https { 443 } else { 80 })
    }

    /// `host[:port]` as sent in the `Host` header (the port only when given).
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }

    /// `scheme://host[:port]`, without a trailing slash.
    pub fn base(&self) -> String {
        format!("{}://{}", if self.https { "https" } else { "http" }, self.authority())
    }
}

/// A parsed repository location. `Display` gives the form used in messages
/// (never containing a password).
#[derive(Clone, PartialEq, Eq)]
pub enum BackendUrl {
    /// A directory on a local (or mounted) file system.
    Local(PathBuf),
    /// `s3:http(s)://host[:port]/bucket[/prefix]`: any S3-compatible
    /// service, addressed path-style.
    S3 {
        /// The service.
        endpoint: Endpoint,
        /// The bucket.
        bucket: String,
        /// Key prefix inside the bucket, without leading or trailing `/`
        /// (empty: the bucket's root).
        prefix: String,
    },
    /// `rest:http(s)://[user:pass@]host[:port]/[path]`: restic's REST
    /// protocol v2 (rest-server, `rclone serve restic`).
    Rest {
        /// The server.
        endpoint: Endpoint,
        /// Path of the repository on the server, without leading or
        /// trailing `/` (empty: the server's root).
        path: String,
        /// HTTP basic-auth user.
        user: Option<String>,
        /// HTTP basic-auth password.
        password: Option<String>,
    },
    /// `sftp:[user@]host[:port]:/path` or `sftp://[user@]host[:port]/path`.
    Sftp {
        /// Login name (default: ssh's).
        user: Option<String>,
        /// Server host.
        host: String,
        /// Server port (default 22).
        port: Option<u16>,
        /// Repository path on the server (relative paths are relative to
        /// the login's home directory).
        path: String,
    },
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BackendUrl({self})")
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendUrl::Local(p) => write!(f, "{}", p.display()),
            BackendUrl::S3 { endpoint, bucket, prefix } => {
                write!(f, "s3:{}/{bucket}", endpoint.base())?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                Ok(())
            }
            BackendUrl::Rest { endpoint, path, user, .. } => {
                let scheme = if endpoint.https { "https" } else { "http" };
                write!(f, "rest:{scheme}://")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                write!(f, "{}/{path}", endpoint.authority())
            }
            BackendUrl::Sftp { user, host, port, path } => {
                f.write_str("sftp:")?;
                if let Some(u) = user {
                    write!(f, "{u}@")?;
                }
                f.write_str(host)?;
                if let Some(p) = port {
                    write!(f, ":{p}")?;
                }
                write!(f, ":{path}")
            }
        }
    }
}

impl std::str::FromStr for BackendUrl {
    type Err = BackendError;
    fn from_str(s: &str) -> Result<BackendUrl, BackendError> {
        BackendUrl::parse(s)
    }
}

/// restic's other schemes: refused by name rather than taken for a local
/// folder called `b2:…`, which is almost certainly not what was meant.
const UNSUPPORTED_SCHEMES: [&str; 6] = ["b2:", "azure:", "gs:", "swift:", "rclone:", "s3://"];

impl BackendUrl {
    /// Parses a repository location. Anything without a known scheme is a
    /// local path (write `./b2:x` for a local folder named `b2:x`).
    pub fn parse(s: &str) -> Result<BackendUrl, BackendError> {
        let bad = |reason: &str| BackendError::InvalidUrl { url: mask_password(s), reason: reason.into() };
        if let Some(rest) = s.strip_prefix("s3:") {
            if rest.starts_with("//") {
                return Err(bad("an S3 location names the service: s3:https://host[:port]/bucket[/prefix] \
                     (for AWS: s3:https://s3.REGION.amazonaws.com/bucket)"));
            }
            const FORM: &str = "expected s3:http(s)://host[:port]/bucket[/prefix]";
            let (https, after) = split_scheme(rest).ok_or_else(|| bad(FORM))?;
            let (authority, path) = after.split_once('/').unwrap_or((after, ""));
            if authority.contains('@') {
                return Err(bad("S3 credentials are not part of the location: set AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, or use a profile in ~/.aws/credentials"));
            }
            let (host, port) = parse_authority(authority).map_err(|r| bad(&format!("{r}; {FORM}")))?;
            let path = path.trim_matches('/');
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            if bucket.is_empty() {
                return Err(bad(&format!("no bucket; {FORM}")));
            }
            if !valid_bucket(bucket) {
                return Err(bad(&format!(
                    "{bucket:?} is not a valid bucket name (letters, digits, '.', '-', '_'; 3 to 63 characters)"
                )));
            }
            let prefix =
                normalize_path(prefix).ok_or_else(|| bad("the prefix has an empty, '.' or '..' segment"))?;
            if prefix.contains(['?', '#']) {
                return Err(bad("the prefix may not contain '?' or '#'"));
            }
            return Ok(BackendUrl::S3 {
                endpoint: Endpoint { https, host, port },
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if let Some(rest) = s.strip_prefix("rest:") {
            const FORM: &str = "expected rest:http(s)://[user:password@]host[:port]/[path]";
            let (https, after) = split_scheme(rest).ok_or_else(|| bad(FORM))?;
            let (authority, path) = after.split_once('/').unwrap_or((after, ""));
            let (userinfo, hostport) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            let (user, password) = match userinfo {
                None => (None, None),
                Some(u) => {
                    let (user, pass) = match u.split_once(':') {
                        Some((a, b)) => (a, Some(b)),
                        None => (u, None),
                    };
                    let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user name"))?;
                    if user.is_empty() {
                        return Err(bad(&format!("empty user name; {FORM}")));
                    }
                    let pass = match pass {
                        Some(p) => {
                            Some(percent_decode(p).ok_or_else(|| bad("bad %-escape in the password"))?)
                        }
                        None => None,
                    };
                    (Some(user), pass)
                }
            };
            let (host, port) = parse_authority(hostport).map_err(|r| bad(&format!("{r}; {FORM}")))?;
            if path.contains(['?', '#']) {
                return Err(bad("the path may not contain '?' or '#'"));
            }
            let path = normalize_path(path.trim_matches('/'))
                .ok_or_else(|| bad("the path has an empty, '.' or '..' segment"))?;
            return Ok(BackendUrl::Rest { endpoint: Endpoint { https, host, port }, path, user, password });
        }
        if let Some(rest) = s.strip_prefix("sftp:") {
            return parse_sftp(rest).map_err(|r| bad(&r));
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Err(bad("say which protocol the server speaks: s3:http(s)://… or rest:http(s)://…"));
        }
        if let Some(scheme) = UNSUPPORTED_SCHEMES.iter().find(|p| s.starts_with(**p)) {
            return Err(bad(&format!(
                "{scheme} repositories are not supported (use s3:, rest: or sftp:, or ./{s} for a local folder)"
            )));
        }
        if s.is_empty() {
            return Err(bad("empty location"));
        }
        Ok(BackendUrl::Local(PathBuf::from(s)))
    }

    /// Whether this is a local directory.
    pub fn is_local(&self) -> bool {
        matches!(self, BackendUrl::Local(_))
    }
}

fn split_scheme(s: &str) -> Option<(bool, &str)> {
    if let Some(r) = s.strip_prefix("https://") {
        Some((true, r))
    } else {
        s.strip_prefix("http://").map(|r| (false, r))
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn parse_authority(a: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("unclosed '[' in the host")?;
        match after {
            "" => (h, None),
            p => (h, Some(p.strip_prefix(':').ok_or("junk after ']' in the host")?)),
        }
    } else {
        match a.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if host.contains(|c: char| c.is_whitespace() || "/?#@[]".contains(c)) {
        return Err(format!("{host:?} is not a valid host"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host.to_string(), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("{p:?} is not a valid port (1 to 65535)")),
    }
}

fn parse_sftp(rest: &str) -> Result<BackendUrl, String> {
    const FORM: &str = "expected sftp:[user@]host[:port]:/path or sftp://[user@]host[:port]/path";
    // URL form: the path starts at the first '/' after the authority.
    let (user_host, port, path) = if let Some(url) = rest.strip_prefix("//") {
        let (authority, path) = url.split_once('/').ok_or_else(|| format!("no path; {FORM}"))?;
        let (uh, port) = match authority.rsplit_once(':') {
            Some((uh, p)) => (uh, Some(parse_port(p).map_err(|e| format!("{e}; {FORM}"))?)),
            None => (authority, None),
        };
        (uh, port, format!("/{path}"))
    } else {
        // scp form: [user@]host[:port]:path (a port is digits between two ':').
        let (uh, tail) = rest.split_once(':').ok_or_else(|| format!("no path; {FORM}"))?;
        match tail.split_once(':') {
            Some((p, path)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                (uh, Some(parse_port(p).map_err(|e| format!("{e}; {FORM}"))?), path.to_string())
            }
            _ => (uh, None, tail.to_string()),
        }
    };
    let (user, host) = match user_host.rsplit_once('@') {
        Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
        Some(_) => return Err(format!("empty user name; {FORM}")),
        None => (None, user_host),
    };
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || "/?#@".contains(c)) {
        return Err(format!("no valid host; {FORM}"));
    }
    if path.is_empty() {
        return Err(format!("no path; {FORM}"));
    }
    Ok(BackendUrl::Sftp { user, host: host.to_string(), port, path })
}

fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_".contains(&c))
}

/// Rejects empty, `.` and `..` segments (the service would either refuse
/// them or resolve them somewhere unexpected).
fn normalize_path(p: &str) -> Option<String> {
    if p.is_empty() {
        return Some(String::new());
    }
    if p.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return None;
    }
    Some(p.to_string())
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The location string with a `user:password@` password replaced by `***`,
/// for error messages.
fn mask_password(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else { return s.to_string() };
    let start = scheme_end + 3;
    let auth_end = s[start..].find('/').map_or(s.len(), |i| start + i);
    match s[start..auth_end].rfind('@') {
        Some(at) => match s[start..start + at].find(':') {
            Some(colon) => format!("{}:***{}", &s[..start + colon], &s[start + at..]),
            None => s.to_string(),
        },
        None => s.to_string(),
    }
}

/// How a backend talks to its service, from `-o key=value` options.
///
/// Keys: `connections` (concurrent requests; default 2 for local, 8 for
/// S3 and REST), `timeout` (a request that makes no progress this long
/// fails as transient; default 60s), `retry.max-time` (stop retrying a
/// call after this long; default 5m), `retry.max-attempts` (default 12),
/// `s3.region`, `s3.profile`, `s3.list-page-size` (keys per listing page,
/// 1 to 1000), `sftp.key` (an identity file for ssh), `sftp.args` (extra
/// ssh arguments), `sftp.command` (replaces the whole ssh command line).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct BackendOptions {
    /// Concurrent requests (0: the backend's default).
    pub connections: usize,
    /// Per-request inactivity timeout (None: 60 s).
    pub timeout: Option<Duration>,
    /// Retry budget per call (None: 5 minutes).
    pub retry_max_time: Option<Duration>,
    /// Most attempts per call (0: 12).
    pub retry_max_attempts: u32,
    /// S3 region for signing (default: AWS_DEFAULT_REGION / AWS_REGION,
    /// the profile's, else `us-east-1`).
    pub s3_region: Option<String>,
    /// Profile in ~/.aws/credentials (default: AWS_PROFILE, else `default`).
    pub s3_profile: Option<String>,
    /// Keys per S3 listing page (0: 1000, the service maximum).
    pub s3_list_page_size: usize,
    /// Stops retry waits early when it returns true (Ctrl-C).
    pub cancel: Option<CancelCheck>,
    /// SFTP: identity file passed to ssh as `-i`.
    pub sftp_key: Option<PathBuf>,
    /// SFTP: extra ssh arguments (split into words as a shell would).
    pub sftp_args: Option<String>,
    /// SFTP: a command line that replaces ssh entirely.
    pub sftp_command: Option<String>,
}

impl fmt::Debug for BackendOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendOptions")
            .field("connections", &self.connections)
            .field("timeout", &self.timeout)
            .field("retry_max_time", &self.retry_max_time)
            .field("retry_max_attempts", &self.retry_max_attempts)
            .field("s3_region", &self.s3_region)
            .field("s3_profile", &self.s3_profile)
            .field("s3_list_page_size", &self.s3_list_page_size)
            .field("sftp_key", &self.sftp_key)
            .field("sftp_args", &self.sftp_args)
            .field("sftp_command", &self.sftp_command)
            .finish_non_exhaustive()
    }
}

/// Every key [`BackendOptions::set`] accepts, for the error message.
const KEYS: &str = "connections, timeout, retry.max-time, retry.max-attempts, s3.region, s3.profile, \
                    s3.list-page-size, sftp.key, sftp.args, sftp.command";

impl BackendOptions {
    /// Parses `key=value` arguments (as given to `-o`), later ones winning.
    pub fn parse<I, S>(args: I) -> Result<BackendOptions, BackendError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut o = BackendOptions::default();
        for a in args {
            let a = a.as_ref();
            let (k, v) = a.split_once('=').ok_or_else(|| BackendError::InvalidOption {
                key: a.to_string(),
                reason: "expected key=value".into(),
            })?;
            o.set(k.trim(), v.trim())?;
        }
        Ok(o)
    }

    /// Sets one option by its key; an unknown key or a bad value is an
    /// error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), BackendError> {
        let bad = |reason: String| BackendError::InvalidOption { key: key.to_string(), reason };
        let count = |lo: usize, hi: usize| match value.parse::<usize>() {
            Ok(n) if (lo..=hi).contains(&n) => Ok(n),
            _ => Err(bad(format!("{value:?} is not a number from {lo} to {hi}"))),
        };
        match key {
            "connections" => self.connections = count(1, 128)?,
            "timeout" => {
                self.timeout =
                    Some(parse_duration(value).filter(|d| !d.is_zero()).ok_or_else(|| {
                        bad(format!("{value:?} is not a duration such as 500ms, 30s or 5m"))
                    })?)
            }
            "retry.max-time" => {
                self.retry_max_time = Some(
                    parse_duration(value)
                        .ok_or_else(|| bad(format!("{value:?} is not a duration such as 0, 30s or 5m")))?,
                )
            }
            "retry.max-attempts" => self.retry_max_attempts = count(1, 1000)? as u32,
            "s3.region" | "s3.profile" if value.is_empty() => return Err(bad("empty value".into())),
            "s3.region" => self.s3_region = Some(value.to_string()),
            "s3.profile" => self.s3_profile = Some(value.to_string()),
            "s3.list-page-size" => self.s3_list_page_size = count(1, 1000)?,
            "sftp.key" | "sftp.command" if value.is_empty() => return Err(bad("empty value".into())),
            "sftp.key" => self.sftp_key = Some(PathBuf::from(value)),
            "sftp.args" => self.sftp_args = Some(value.to_string()),
            "sftp.command" => self.sftp_command = Some(value.to_string()),
            _ => return Err(bad(format!("unknown option; known options: {KEYS}"))),
        }
        Ok(())
    }

    /// Sets [`BackendOptions::connections`].
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }
    /// Sets [`BackendOptions::timeout`].
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Sets [`BackendOptions::retry_max_time`].
    pub fn retry_max_time(mut self, d: Duration) -> Self {
        self.retry_max_time = Some(d);
        self
    }
    /// Sets [`BackendOptions::retry_max_attempts`].
    pub fn retry_max_attempts(mut self, n: u32) -> Self {
        self.retry_max_attempts = n;
        self
    }
    /// Sets [`BackendOptions::s3_region`].
    pub fn s3_region(mut self, r: impl Into<String>) -> Self {
        self.s3_region = Some(r.into());
        self
    }
    /// Sets [`BackendOptions::s3_profile`].
    pub fn s3_profile(mut self, p: impl Into<String>) -> Self {
        self.s3_profile = Some(p.into());
        self
    }
    /// Sets [`BackendOptions::s3_list_page_size`].
    pub fn s3_list_page_size(mut self, n: usize) -> Self {
        self.s3_list_page_size = n;
        self
    }
    /// Stops retry waits when `f` returns true.
    pub fn cancel_when(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.cancel = Some(Arc::new(f));
        self
    }

    /// Connections to use, given the backend's default.
    pub fn connections_or(&self, default: usize) -> usize {
        if self.connections == 0 {
            default
        } else {
            self.connections
        }
    }

    /// The request inactivity timeout.
    pub fn request_timeout(&self) -> Duration {
        self.timeout.unwrap_or(Duration::from_secs(60))
    }

    /// The retry policy these options describe.
    pub fn retry_policy(&self) -> RetryPolicy {
        let mut p = RetryPolicy::default();
        if let Some(t) = self.retry_max_time {
            p.max_time = t;
        }
        if self.retry_max_attempts > 0 {
            p.max_attempts = self.retry_max_attempts;
        }
        p
    }
}

/// "500ms", "30s", "5m", "1h", or a number of seconds.
fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num.trim().parse().ok()?;
    Some(Duration::from_millis(n.checked_mul(unit_ms)?))
}

/// Opens the backend a location names. Remote backends come wrapped in a
/// [`RetryBackend`] configured from `opts` (see [`with_retries`]).
pub fn open_backend(url: &BackendUrl, opts: &BackendOptions) -> Result<Arc<dyn Backend>, BackendError> {
    let location = url.to_string();
    let remote: Arc<dyn Backend> = match url {
        BackendUrl::Local(p) => return Ok(Arc::new(LocalBackend::new(p))),
        BackendUrl::S3 { endpoint, bucket, prefix } => {
            Arc::new(S3Backend::new(endpoint, bucket, prefix, location, opts)?)
        }
        BackendUrl::Rest { endpoint, path, user, password } => {
            Arc::new(RestBackend::new(endpoint, path, user.as_deref(), password.as_deref(), location, opts))
        }
        BackendUrl::Sftp { user, host, port, path } => {
            let mut o = SftpOptions::new(host.clone(), path.clone())
                .connections(opts.connections_or(DEFAULT_SFTP_CONNECTIONS))
                .timeout(opts.request_timeout());
            o.user = user.clone();
            o.port = *port;
            o.key = opts.sftp_key.clone();
            o.command = opts.sftp_command.clone();
            if let Some(a) = &opts.sftp_args {
                o = o.args(
                    split_words(a)
                        .map_err(|reason| BackendError::InvalidOption { key: "sftp.args".into(), reason })?,
                );
            }
            Arc::new(SftpBackend::new(o)?)
        }
    };
    Ok(with_retries(remote, opts))
}

/// Wraps a remote backend so that its transient failures are retried as
/// `opts` says (`retry.max-time`, `retry.max-attempts`, cancellation).
pub fn with_retries(remote: Arc<dyn Backend>, opts: &BackendOptions) -> Arc<dyn Backend> {
    Arc::new(RetryBackend::new(remote, opts.retry_policy(), opts.cancel.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(https: bool, host: &str, port: Option<u16>) -> Endpoint {
        Endpoint { https, host: host.into(), port }
    }

    fn err(s: &str) -> String {
        BackendUrl::parse(s).expect_err(s).to_string()
    }

    #[test]
    fn local_paths() {
        assert_eq!(BackendUrl::parse("/srv/repo").unwrap(), BackendUrl::Local("/srv/repo".into()));
        assert_eq!(BackendUrl::parse("rel/repo").unwrap(), BackendUrl::Local("rel/repo".into()));
        assert_eq!(BackendUrl::parse("./b2:x").unwrap(), BackendUrl::Local("./b2:x".into()));
        assert_eq!(BackendUrl::parse("C:drive").unwrap(), BackendUrl::Local("C:drive".into()));
        assert!(err("").contains("empty"));
        assert!(err("b2:bucket").contains("not supported"));
        assert!(err("http://host/x").contains("s3:http(s)://"));
    }

    #[test]
    fn s3_forms() {
        assert_eq!(
            BackendUrl::parse("s3:http://127.0.0.1:9000/bucket").unwrap(),
            BackendUrl::S3 {
                endpoint: ep(false, "127.0.0.1", Some(9000)),
                bucket: "bucket".into(),
                prefix: "".into()
            }
        );
        let u = BackendUrl::parse("s3:https://s3.eu-west-1.amazonaws.com/my-bkt/a/b/").unwrap();
        assert_eq!(
            u,
            BackendUrl::S3 {
                endpoint: ep(true, "s3.eu-west-1.amazonaws.com", None),
                bucket: "my-bkt".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(u.to_string(), "s3:https://s3.eu-west-1.amazonaws.com/my-bkt/a/b");
        let v6 = BackendUrl::parse("s3:http://[::1]:9000/bkt/p").unwrap();
        assert_eq!(
            v6,
            BackendUrl::S3 {
                endpoint: ep(false, "::1", Some(9000)),
                bucket: "bkt".into(),
                prefix: "p".into()
            }
        );
        assert_eq!(v6.to_string(), "s3:http://[::1]:9000/bkt/p");
        assert!(err("s3://bucket").contains("names the service"));
        assert!(err("s3:bucket").contains("expected s3:http"));
        assert!(err("s3:http://host:9000").contains("no bucket"));
        assert!(err("s3:http://host:9000/").contains("no bucket"));
        assert!(err("s3:http://host:99999/b").contains("not a valid port"));
        assert!(err("s3:http://host:/bkt").contains("not a valid port"));
        assert!(err("s3:http:///bkt").contains("no host"));
        assert!(err("s3:http://key:secret@host/bkt").contains("AWS_ACCESS_KEY_ID"));
        assert!(!err("s3:http://key:secret@host/bkt").contains("secret"), "a secret is never echoed");
        assert!(err("s3:http://host/b").contains("not a valid bucket"));
        assert!(err("s3:http://host/bkt/a//b").contains("segment"));
        assert!(err("s3:http://host/bkt/../b").contains("segment"));
    }

    #[test]
    fn rest_forms() {
        let u = BackendUrl::parse("rest:http://user:p%40ss@localhost:8000/repo/one/").unwrap();
        assert_eq!(
            u,
            BackendUrl::Rest {
                endpoint: ep(false, "localhost", Some(8000)),
                path: "repo/one".into(),
                user: Some("user".into()),
                password: Some("p@ss".into()),
            }
        );
        assert_eq!(u.to_string(), "rest:http://user@localhost:8000/repo/one", "no password in messages");
        assert_eq!(
            BackendUrl::parse("rest:https://host/").unwrap(),
            BackendUrl::Rest {
                endpoint: ep(true, "host", None),
                path: "".into(),
                user: None,
                password: None
            }
        );
        assert_eq!(
            BackendUrl::parse("rest:http://host:8000").unwrap(),
            BackendUrl::Rest {
                endpoint: ep(false, "host", Some(8000)),
                path: "".into(),
                user: None,
                password: None
            }
        );
        assert!(err("rest:host:8000/").contains("expected rest:http"));
        assert!(err("rest:http://u:pw@host:x/").contains("not a valid port"));
        let masked = err("rest:http://u:topsecret@host:x/");
        assert!(!masked.contains("topsecret") && masked.contains("u:***@host"), "{masked}");
        assert!(err("rest:http://:pw@host/").contains("empty user"));
        assert!(err("rest:http://u:%zz@host/").contains("%-escape"));
        assert!(err("rest:http://host/a?b").contains("'?'"));
    }

    #[test]
    fn sftp_forms() {
        let s = |user: Option<&str>, host: &str, port: Option<u16>, path: &str| BackendUrl::Sftp {
            user: user.map(Into::into),
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(
            BackendUrl::parse("sftp:me@host:/srv/repo").unwrap(),
            s(Some("me"), "host", None, "/srv/repo")
        );
        assert_eq!(
            BackendUrl::parse("sftp:host:2222:/srv/repo").unwrap(),
            s(None, "host", Some(2222), "/srv/repo")
        );
        assert_eq!(BackendUrl::parse("sftp:host:repo").unwrap(), s(None, "host", None, "repo"));
        assert_eq!(
            BackendUrl::parse("sftp://me@host:2222/srv/repo").unwrap(),
            s(Some("me"), "host", Some(2222), "/srv/repo")
        );
        assert_eq!(BackendUrl::parse("sftp://host/srv").unwrap(), s(None, "host", None, "/srv"));
        assert_eq!(BackendUrl::parse("sftp:me@host:2222:/r").unwrap().to_string(), "sftp:me@host:2222:/r");
        assert!(err("sftp:host").contains("no path"));
        assert!(err("sftp:host:").contains("no path"));
        assert!(err("sftp:@host:/r").contains("empty user"));
        assert!(err("sftp::/r").contains("no valid host"));
        assert!(err("sftp:host:0:/r").contains("not a valid port"));
        assert!(err("sftp://host").contains("no path"));
    }

    #[test]
    fn options() {
        let o = BackendOptions::parse([
            "connections=4",
            "timeout=500ms",
            "retry.max-time=2s",
            "s3.region=eu-west-1",
            "s3.list-page-size=5",
        ])
        .unwrap();
        assert_eq!(o.connections_or(8), 4);
        assert_eq!(o.request_timeout(), Duration::from_millis(500));
        assert_eq!(o.retry_policy().max_time, Duration::from_secs(2));
        assert_eq!(o.s3_region.as_deref(), Some("eu-west-1"));
        assert_eq!(o.s3_list_page_size, 5);
        assert_eq!(BackendOptions::default().connections_or(8), 8);
        assert_eq!(
            BackendOptions::parse(["retry.max-time=0"]).unwrap().retry_policy().max_time,
            Duration::ZERO
        );
        let e = BackendOptions::parse(["bogus=1"]).unwrap_err().to_string();
        assert!(e.contains("\"bogus\"") && e.contains("known options"), "{e}");
        assert!(BackendOptions::parse(["connections"]).unwrap_err().to_string().contains("key=value"));
        assert!(BackendOptions::parse(["connections=0"])
            .unwrap_err()
            .to_string()
            .contains("\"connections\""));
        assert!(BackendOptions::parse(["timeout=soon"]).is_err());
        assert!(BackendOptions::parse(["timeout=0"]).is_err());
        assert!(BackendOptions::parse(["s3.list-page-size=1001"]).is_err());
    }

    #[test]
    fn sftp_options_reach_the_backend() {
        let u = BackendUrl::parse("sftp:me@host:2222:/r").unwrap();
        let o = BackendOptions::parse(["sftp.key=/k", "sftp.args=-o 'A=b c'", "connections=3"]).unwrap();
        let b = open_backend(&u, &o).unwrap();
        assert_eq!((b.location(), b.connections()), ("sftp:me@host:2222:/r", 3));
        let o = BackendOptions::parse(["sftp.args=-o 'A"]).unwrap();
        assert!(open_backend(&u, &o).unwrap_err().to_string().contains("sftp.args"));
        assert!(BackendOptions::parse(["sftp.key="]).is_err());
    }
}
