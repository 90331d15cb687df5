//! A repository in an S3 bucket (any S3-compatible service, path-style).

use crate::backend::{Backend, FileInfo, FileKind};
use crate::backend_url::{BackendOptions, Endpoint};
use crate::error::{BackendError, RemoteErrorClass};
use crate::http::{
    object, range_headers, status_class, uri_encode, Client, HttpReads, RemoteErrors, Reply, TransportError,
};
use crate::local::valid_name;
use crate::s3_auth::{self, sha256_hex, Credentials, ToSign};

/// Default concurrent requests: S3 latency is per request, so several in
/// flight keep a link busy.
const DEFAULT_CONNECTIONS: usize = 8;

/// Objects live under `[prefix/]` with the local layout (`config`,
/// `keys/<id>`, `data/<2 hex>/<id>`, …), so a repository can be moved
/// between a folder and a bucket with any sync tool.
///
/// Writes are conditional (`If-None-Match: *`): a config is never
/// replaced, and a second upload of a content-addressed object is a no-op.
/// S3 stores an object whole or not at all, so a reader never sees a
/// partial one.
#[derive(Debug)]
pub(crate) struct S3Backend {
    client: Client,
    endpoint: Endpoint,
    bucket: String,
    prefix: String,
    creds: Credentials,
    region: String,
    page_size: usize,
    errors: RemoteErrors,
}

impl S3Backend {
    /// A backend for `bucket[/prefix]` at `endpoint`; fails if no
    /// credentials are configured.
    pub fn new(
        endpoint: &Endpoint,
        bucket: &str,
        prefix: &str,
        location: String,
        opts: &BackendOptions,
    ) -> Result<S3Backend, BackendError> {
        let (creds, region) = s3_auth::resolve(opts, &s3_auth::ProcessEnv)
            .map_err(|reason| BackendError::Unavailable { location: location.clone(), reason })?;
        Ok(S3Backend {
            client: Client::new(opts, opts.connections_or(DEFAULT_CONNECTIONS)),
            endpoint: endpoint.clone(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            creds,
            region,
            page_size: if opts.s3_list_page_size == 0 { 1000 } else { opts.s3_list_page_size },
            errors: RemoteErrors { location },
        })
    }

    fn key(&self, kind: FileKind, name: &str) -> String {
        let rel = match kind {
            FileKind::Config => "config".to_string(),
            FileKind::Pack => format!("data/{}/{name}", &name[..2]),
            _ => format!("{}/{name}", kind.dir()),
        };
        self.under_prefix(&rel)
    }

    fn under_prefix(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// Sends a signed request for `key` (None: the bucket itself).
    fn send(
        &self,
        method: &str,
        key: Option<&str>,
        query: &[(&str, &str)],
        extra: &[(&str, String)],
        body: Option<&[u8]>,
    ) -> Result<Reply, TransportError> {
        let mut path = format!("/{}", uri_encode(&self.bucket, false));
        if let Some(k) = key {
            path.push('/');
            path.push_str(&uri_encode(k, true));
        }
        let mut q: Vec<String> =
            query.iter().map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false))).collect();
        q.sort();
        let query = q.join("&");
        let payload_hash = sha256_hex(body.unwrap_or_default());
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let host = self.endpoint.authority();
        let signed = s3_auth::sign(
            &ToSign {
                method,
                path: &path,
                query: &query,
                host: &host,
                payload_hash: &payload_hash,
                amz_date: &amz_date,
            },
            &self.creds,
            &self.region,
        );
        let mut headers: Vec<(&str, String)> = signed;
        headers.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let mut url = format!("{}{path}", self.endpoint.base());
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query);
        }
        self.client.send(method, &url, &headers, body)
    }

    fn head(&self, kind: FileKind, name: &str) -> Result<bool, BackendError> {
        let key = self.key(kind, name);
        let r = self
            .send("HEAD", Some(&key), &[], &[], None)
            .map_err(|e| self.errors.transport("stat", object(kind, name), e))?;
        match r.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self.status_error("stat", object(kind, name), &r)),
        }
    }
}

fn key_less(op: &str) -> bool {
    op == "list" || op == "open bucket"
}

impl HttpReads for S3Backend {
    /// GET (whole or a range) of an object, mapping 404 to NotFound.
    fn get(&self, kind: FileKind, name: &str, range: Option<(u64, u64)>) -> Result<Reply, BackendError> {
        self.errors.check_name("read", kind, name)?;
        let key = self.key(kind, name);
        let extra = range_headers(range);
        let r = self
            .send("GET", Some(&key), &[], &extra, None)
            .map_err(|e| self.errors.transport("read", object(kind, name), e))?;
        if r.status == 404
            && first_tag(&String::from_utf8_lossy(&r.body), "Code").as_deref() != Some("NoSuchBucket")
        {
            return Err(self.errors.not_found(kind, name));
        }
        Ok(r)
    }

    /// The error for an unexpected HTTP status, with S3's own error code
    /// and message when the body has them.
    fn status_error(&self, op: &'static str, object: String, r: &Reply) -> BackendError {
        let xml = String::from_utf8_lossy(&r.body);
        let code = first_tag(&xml, "Code").unwrap_or_default();
        let message = first_tag(&xml, "Message").unwrap_or_default();
        let mut class = status_class(r.status);
        // S3 asks callers to retry these.
        if matches!(code.as_str(), "ConditionalRequestConflict" | "OperationAborted" | "SlowDown") {
            class = RemoteErrorClass::Transient;
        }
        let reason = ureq::http::StatusCode::from_u16(r.status).ok().and_then(|s| s.canonical_reason());
        let mut cause = format!("HTTP {} {}", r.status, reason.unwrap_or_default()).trim_end().to_string();
        for part in [code.as_str(), message.as_str()] {
            if !part.is_empty() {
                cause.push_str(": ");
                cause.push_str(part);
            }
        }
        if code == "NoSuchBucket" || (r.status == 404 && key_less(op)) {
            cause =
                format!("bucket {:?} does not exist (create the repository with 'arch init')", self.bucket);
            class = RemoteErrorClass::Permanent;
        } else if class == RemoteErrorClass::Auth {
            cause.push_str(
                " (check the credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the profile, \
                 the region, and the bucket's permissions)",
            );
        }
        self.errors.remote(op, object, cause, class)
    }
}

impl Backend for S3Backend {
    fn location(&self) -> &str {
        &self.errors.location
    }

    fn exists(&self) -> Result<bool, BackendError> {
        // A missing bucket answers 404 too: no repository either way.
        self.head(FileKind::Config, "config")
    }

    fn create_layout(&self) -> Result<(), BackendError> {
        // Folders are implicit in S3; only the bucket may need creating.
        let what = || format!("bucket {}", self.bucket);
        let r = self
            .send("HEAD", None, &[], &[], None)
            .map_err(|e| self.errors.transport("open bucket", what(), e))?;
        if r.ok() {
            return Ok(());
        }
        if r.status != 404 {
            return Err(self.status_error("open bucket", what(), &r));
        }
        let body = (self.region != "us-east-1").then(|| {
            format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            )
        });
        let r = self
            .send("PUT", None, &[], &[], Some(body.as_deref().unwrap_or_default().as_bytes()))
            .map_err(|e| self.errors.transport("create", what(), e))?;
        let code = first_tag(&String::from_utf8_lossy(&r.body), "Code").unwrap_or_default();
        if r.ok() || code == "BucketAlreadyOwnedByYou" {
            Ok(())
        } else {
            Err(self.status_error("create", what(), &r))
        }
    }

    fn create(&self, kind: FileKind, name: &str, data: &[u8]) -> Result<(), BackendError> {
        self.errors.check_name("upload", kind, name)?;
        let key = self.key(kind, name);
        let r = self
            .send("PUT", Some(&key), &[], &[("if-none-match", "*".to_string())], Some(data))
            .map_err(|e| self.errors.transport("upload", object(kind, name), e))?;
        match r.status {
            200..=299 => Ok(()),
            // Already there: content-addressed objects with the same name
            // hold the same bytes; only the config may never be replaced.
            412 if kind == FileKind::Config => Err(BackendError::AlreadyExists {
                kind,
                name: name.to_string(),
                location: self.errors.location.clone(),
            }),
            412 => Ok(()),
            _ => Err(self.status_error("upload", object(kind, name), &r)),
        }
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
        let prefix = match kind {
            FileKind::Config => self.under_prefix("config"),
            _ => self.under_prefix(&format!("{}/", kind.dir())),
        };
        let what = || format!("the list of {kind} objects");
        let page = self.page_size.to_string();
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let mut q = vec![("list-type", "2"), ("prefix", prefix.as_str()), ("max-keys", page.as_str())];
            if let Some(t) = &token {
                q.push(("continuation-token", t.as_str()));
            }
            let r = self
                .send("GET", None, &q, &[], None)
                .map_err(|e| self.errors.transport("list", what(), e))?;
            if r.status != 200 {
                return Err(self.status_error("list", what(), &r));
            }
            let xml = String::from_utf8_lossy(&r.body);
            for entry in blocks(&xml, "Contents") {
                let (Some(key), Some(size)) = (first_tag(entry, "Key"), first_tag(entry, "Size")) else {
                    continue;
                };
                let name = key.rsplit('/').next().unwrap_or_default();
                let Ok(size) = size.parse::<u64>() else { continue };
                if valid_name(kind, name) {
                    out.push(FileInfo { name: name.to_string(), size });
                }
            }
            let truncated = first_tag(&xml, "IsTruncated").as_deref() == Some("true");
            match first_tag(&xml, "NextContinuationToken") {
                Some(t) if truncated && !t.is_empty() => token = Some(t),
                _ if truncated => {
                    return Err(self.errors.remote(
                        "list",
                        what(),
                        "the service sent a truncated listing without a continuation token".into(),
                        RemoteErrorClass::Permanent,
                    ))
                }
                _ => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        Ok(out)
    }

    fn delete(&self, kind: FileKind, name: &str) -> Result<(), BackendError> {
        self.errors.check_name("delete", kind, name)?;
        // S3 deletes missing objects silently; the contract wants NotFound.
        if !self.head(kind, name)? {
            return Err(self.errors.not_found(kind, name));
        }
        let key = self.key(kind, name);
        let r = self
            .send("DELETE", Some(&key), &[], &[], None)
            .map_err(|e| self.errors.transport("delete", object(kind, name), e))?;
        if r.ok() {
            Ok(())
        } else {
            Err(self.status_error("delete", object(kind, name), &r))
        }
    }

    fn connections(&self) -> usize {
        self.client.connections()
    }
}

/// The (unescaped) text of the first `<tag>…</tag>` in `xml`.
fn first_tag(xml: &str, tag: &str) -> Option<String> {
    blocks(xml, tag).next().map(xml_unescape)
}

/// The raw contents of every `<tag>…</tag>` (not nested in each other).
fn blocks<'a>(xml: &'a str, tag: &str) -> impl Iterator<Item = &'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut rest = xml;
    std::iter::from_fn(move || {
        let start = rest.find(&open)? + open.len();
        let len = rest[start..].find(&close)?;
        let inner = &rest[start..start + len];
        rest = &rest[start + len + close.len()..];
        Some(inner)
    })
}

fn xml_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e => e
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&after[..=end]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_helpers() {
        let xml =
            "<R><IsTruncated>true</IsTruncated><Contents><Key>p/data/ab/x</Key><Size>12</Size></Contents>\
                   <Contents><Key>a&amp;b&#x2F;c&#47;</Key><Size>3</Size></Contents>\
                   <NextContinuationToken>t&lt;1&gt;</NextContinuationToken></R>";
        let c: Vec<_> = blocks(xml, "Contents").collect();
        assert_eq!(c.len(), 2);
        assert_eq!(first_tag(c[0], "Key").unwrap(), "p/data/ab/x");
        assert_eq!(first_tag(c[1], "Key").unwrap(), "a&b/c/");
        assert_eq!(first_tag(xml, "NextContinuationToken").unwrap(), "t<1>");
        assert_eq!(first_tag(xml, "Missing"), None);
        assert_eq!(xml_unescape("a &bogus; b & c"), "a &bogus; b & c");
    }
}
