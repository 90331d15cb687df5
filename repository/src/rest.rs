//! A repository behind restic's REST protocol v2 (rest-server,
//! `rclone serve restic`).

use crate::backend::{Backend, FileInfo, FileKind};
use crate::backend_url::{BackendOptions, Endpoint};
use crate::error::{BackendError, RemoteErrorClass};
use crate::http::{
    base64, object, range_headers, status_class, uri_encode, Client, HttpReads, RemoteErrors, Reply,
    TransportError,
};
use crate::local::valid_name;

/// Default concurrent requests.
const DEFAULT_CONNECTIONS: usize = 8;

const V2: &str = "application/vnd.x.restic.rest.v2";

/// Objects are `<path>/config`, `<path>/<type>/<name>` (the server keeps
/// its own on-disk layout). The server writes each object whole
/// (rest-server and rclone write to a temporary file and rename).
#[derive(Debug)]
pub(crate) struct RestBackend {
    client: Client,
    base: String,
    auth: Option<String>,
    errors: RemoteErrors,
}

impl RestBackend {
    /// A backend for the repository at `path` on the server.
    pub fn new(
        endpoint: &Endpoint,
        path: &str,
        user: Option<&str>,
        password: Option<&str>,
        location: String,
        opts: &BackendOptions,
    ) -> RestBackend {
        let mut base = endpoint.base();
        if !path.is_empty() {
            base.push('/');
            base.push_str(&uri_encode(path, true));
        }
        let auth =
            user.map(|u| format!("Basic {}", base64(format!("{u}:{}", password.unwrap_or("")).as_bytes())));
        RestBackend {
            client: Client::new(opts, opts.connections_or(DEFAULT_CONNECTIONS)),
            base,
            auth,
            errors: RemoteErrors { location },
        }
    }

    fn url(&self, kind: FileKind, name: &str) -> String {
        match kind {
            FileKind::Config => format!("{}/config", self.base),
            _ => format!("{}/{}/{name}", self.base, kind.dir()),
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        extra: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, TransportError> {
        let mut headers: Vec<(&str, String)> = extra.to_vec();
        if let Some(a) = &self.auth {
            headers.push(("authorization", a.clone()));
        }
        self.client.send(method, url, &headers, body)
    }

    fn checked(&self, op: &'static str, kind: FileKind, name: &str) -> Result<String, BackendError> {
        self.errors.check_name(op, kind, name)?;
        Ok(self.url(kind, name))
    }

    fn head(&self, kind: FileKind, name: &str) -> Result<Option<u64>, BackendError> {
        let url = self.checked("stat", kind, name)?;
        let r = self
            .send("HEAD", &url, &[], None)
            .map_err(|e| self.errors.transport("stat", object(kind, name), e))?;
        match r.status {
            200..=299 => Ok(Some(r.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0))),
            404 => Ok(None),
            _ => Err(self.status_error("stat", object(kind, name), &r)),
        }
    }
}

#[derive(serde::Deserialize)]
struct Entry {
    name: String,
    size: u64,
}

impl HttpReads for RestBackend {
    fn get(&self, kind: FileKind, name: &str, range: Option<(u64, u64)>) -> Result<Reply, BackendError> {
        let url = self.checked("read", kind, name)?;
        let extra = range_headers(range);
        let r = self
            .send("GET", &url, &extra, None)
            .map_err(|e| self.errors.transport("read", object(kind, name), e))?;
        if r.status == 404 {
            return Err(self.errors.not_found(kind, name));
        }
        Ok(r)
    }

    fn status_error(&self, op: &'static str, object: String, r: &Reply) -> BackendError {
        let class = status_class(r.status);
        let mut cause = r.describe();
        if r.status == 401 {
            cause.push_str(" (check the user and password in the rest: URL)");
        } else if r.status == 403 {
            cause.push_str(" (the server refuses this; an append-only server refuses deletes)");
        }
        self.errors.remote(op, object, cause, class)
    }
}

impl Backend for RestBackend {
    fn location(&self) -> &str {
        &self.errors.location
    }

    fn exists(&self) -> Result<bool, BackendError> {
        Ok(self.head(FileKind::Config, "config")?.is_some())
    }

    fn create_layout(&self) -> Result<(), BackendError> {
        let url = format!("{}/?create=true", self.base);
        let r = self
            .send("POST", &url, &[], Some(b""))
            .map_err(|e| self.errors.transport("create", "the repository".into(), e))?;
        if r.ok() {
            Ok(())
        } else {
            Err(self.status_error("create", "the repository".into(), &r))
        }
    }

    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        let url = self.checked("upload", kind, name)?;
        // The protocol has no conditional write: look first so that a
        // config is never replaced. Other names are content-addressed, so
        // rewriting one rewrites the same bytes.
        if kind == FileKind::Config && self.head(kind, name)?.is_some() {
            return Err(BackendError::AlreadyExists {
                kind,
                name: name.to_string(),
                location: self.errors.location.clone(),
            });
        }
        let r = self
            .send("POST", &url, &[], Some(data))
            .map_err(|e| self.errors.transport("upload", object(kind, name), e))?;
        if r.ok() {
            return Ok(());
        }
        // rest-server answers 403 for an object that appeared meanwhile.
        if r.status == 403 && kind != FileKind::Config && self.head(kind, name)?.is_some() {
            return Ok(());
        }
        Err(self.status_error("upload", object(kind, name), &r))
    }

    fn read(&self, kind: FileKind, name: &str) -> Result<Vec<u8>, BackendError> {
        self.read_whole(kind, name)
    }

    fn read_range(
        &self,
        kind: FileKind,
        name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, BackendError> {
        self.read_part(kind, name, offset, length)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<FileInfo>, BackendError> {
        if kind == FileKind::Config {
            return Ok(match self.head(kind, "config")? {
                Some(size) => vec![FileInfo { name: "config".into(), size }],
                None => vec![],
            });
        }
        let what = || format!("the list of {kind} objects");
        let url = format!("{}/{}/", self.base, kind.dir());
        let r = self
            .send("GET", &url, &[("accept", V2.to_string())], None)
            .map_err(|e| self.errors.transport("list", what(), e))?;
        if r.status == 404 {
            return Ok(Vec::new());
        }
        if r.status != 200 {
            return Err(self.status_error("list", what(), &r));
        }
        let entries: Vec<Entry> = serde_json::from_slice(&r.body).map_err(|e| {
            self.errors.remote(
                "list",
                what(),
                format!("the server's answer is not a REST v2 listing ({e}); the server must speak restic's REST protocol v2"),
                RemoteErrorClass::Permanent,
            )
        })?;
        let mut out: Vec<FileInfo> = entries
            .into_iter()
            .filter(|e| valid_name(kind, &e.name))
            .map(|e| FileInfo { name: e.name, size: e.size })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        let url = self.checked("delete", kind, name)?;
        let r = self
            .send("DELETE", &url, &[], None)
            .map_err(|e| self.errors.transport("delete", object(kind, name), e))?;
        match r.status {
            200..=299 => Ok(()),
            404 => Err(self.errors.not_found(kind, name)),
            _ => Err(self.status_error("delete", object(kind, name), &r)),
        }
    }

    fn connections(&self) -> usize {
        self.client.connections()
    }
}
