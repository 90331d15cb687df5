//! S3 credentials (environment or ~/.aws profile) and AWS Signature V4.

use std::path::PathBuf;

use ring::{digest, hmac};
use zeroize::Zeroizing;

use crate::backend_url::BackendOptions;
use crate::hex;

/// An access key, its secret and an optional session token.
pub(crate) struct Credentials {
    pub access_key: String,
    pub secret_key: Zeroizing<String>,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// Where settings come from: the process environment, or a fixed map in
/// tests.
pub(crate) trait Env {
    fn var(&self, k: &str) -> Option<String>;
}

/// The process environment (empty values count as unset).
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, k: &str) -> Option<String> {
        std::env::var(k).ok().filter(|v| !v.is_empty())
    }
}

/// The credentials and region to use: `-o s3.profile` first, then
/// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), then the
/// profile AWS_PROFILE (or `default`) of AWS_SHARED_CREDENTIALS_FILE (or
/// ~/.aws/credentials). The region: `-o s3.region`, AWS_DEFAULT_REGION,
/// AWS_REGION, the profile's `region` (credentials file, then
/// AWS_CONFIG_FILE or ~/.aws/config), else `us-east-1`.
pub(crate) fn resolve(opts: &BackendOptions, env: &dyn Env) -> Result<(Credentials, String), String> {
    let home = env.var("HOME").map(PathBuf::from);
    let creds_file = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
    let config_file = env
        .var("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
    let profile =
        opts.s3_profile.clone().or_else(|| env.var("AWS_PROFILE")).unwrap_or_else(|| "default".into());
    let read = |p: &Option<PathBuf>| p.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    let creds_text = read(&creds_file);
    let section = creds_text.as_deref().map(|t| ini_section(t, &profile)).unwrap_or_default();
    let get = |k: &str| section.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());

    let from_env = match (env.var("AWS_ACCESS_KEY_ID"), env.var("AWS_SECRET_ACCESS_KEY")) {
        (Some(a), Some(s)) => Some(Credentials {
            access_key: a,
            secret_key: Zeroizing::new(s),
            session_token: env.var("AWS_SESSION_TOKEN"),
        }),
        (Some(_), None) => return Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not".into()),
        (None, Some(_)) => return Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not".into()),
        (None, None) => None,
    };
    let from_profile = match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(a), Some(s)) => Some(Credentials {
            access_key: a,
            secret_key: Zeroizing::new(s),
            session_token: get("aws_session_token"),
        }),
        _ => None,
    };
    let where_ = || match &creds_file {
        Some(p) => p.display().to_string(),
        None => "~/.aws/credentials".into(),
    };
    let creds = if opts.s3_profile.is_some() {
        from_profile.ok_or_else(|| format!("no credentials for profile {profile:?} in {}", where_()))?
    } else {
        from_env.or(from_profile).ok_or_else(|| {
            format!(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add profile {profile:?} to {}",
                where_()
            )
        })?
    };
    let region = opts
        .s3_region
        .clone()
        .or_else(|| env.var("AWS_DEFAULT_REGION"))
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| get("region"))
        .or_else(|| {
            let text = read(&config_file)?;
            let name =
                if profile == "default" { "default".to_string() } else { format!("profile {profile}") };
            ini_section(&text, &name).into_iter().find(|(k, _)| k == "region").map(|(_, v)| v)
        })
        .unwrap_or_else(|| "us-east-1".into());
    Ok((creds, region))
}

/// The `key = value` lines of `[name]` in an INI file.
fn ini_section(text: &str, name: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = h.trim() == name;
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

/// A request to sign: everything Signature V4 covers.
pub(crate) struct ToSign<'a> {
    pub method: &'a str,
    /// The URI-encoded path.
    pub path: &'a str,
    /// The canonical (sorted, encoded) query string.
    pub query: &'a str,
    /// `Host` header value.
    pub host: &'a str,
    /// Hex SHA-256 of the body.
    pub payload_hash: &'a str,
    /// `YYYYMMDDTHHMMSSZ`.
    pub amz_date: &'a str,
}

/// The headers that sign `req` (Signature V4, service `s3`): x-amz-date,
/// x-amz-content-sha256, the session token if any, and Authorization.
pub(crate) fn sign(req: &ToSign, creds: &Credentials, region: &str) -> Vec<(&'static str, String)> {
    let mut headers: Vec<(&'static str, String)> = vec![
        ("host", req.host.to_string()),
        ("x-amz-content-sha256", req.payload_hash.to_string()),
        ("x-amz-date", req.amz_date.to_string()),
    ];
    if let Some(t) = &creds.session_token {
        headers.push(("x-amz-security-token", t.clone()));
    }
    let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    let signed = signed.join(";");
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{}\n", v.trim())).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        req.method, req.path, req.query, req.payload_hash
    );
    let date = &req.amz_date[..8];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{}\n{scope}\n{}", req.amz_date, sha256_hex(canonical.as_bytes()));
    let mut key = hmac_sha256(format!("AWS4{}", creds.secret_key.as_str()).as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(&hmac_sha256(&key, string_to_sign.as_bytes()));
    headers.push((
        "authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            creds.access_key
        ),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct MapEnv(HashMap<&'static str, String>);
    impl Env for MapEnv {
        fn var(&self, k: &str) -> Option<String> {
            self.0.get(k).cloned()
        }
    }

    #[test]
    fn signature_matches_the_aws_documentation_example() {
        let creds = Credentials {
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: Zeroizing::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
        };
        // The "GET Bucket lifecycle" example of the S3 Signature V4
        // documentation signs exactly host, x-amz-content-sha256, x-amz-date.
        let req = ToSign {
            method: "GET",
            path: "/",
            query: "lifecycle=",
            host: "examplebucket.s3.amazonaws.com",
            payload_hash: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            amz_date: "20130524T000000Z",
        };
        let h = sign(&req, &creds, "us-east-1");
        let auth = &h.iter().find(|(k, _)| *k == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        );
    }

    #[test]
    fn credentials_from_env_then_profile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".aws")).unwrap();
        std::fs::write(
            dir.path().join(".aws/credentials"),
            "[default]\naws_access_key_id = DEF\naws_secret_access_key = defsecret\n\n\
             [work]\naws_access_key_id=WORK\naws_secret_access_key=worksecret\naws_session_token=tok\n",
        )
        .unwrap();
        std::fs::write(dir.path().join(".aws/config"), "[profile work]\nregion = eu-central-1\n").unwrap();
        let home = dir.path().display().to_string();
        let env = |pairs: &[(&'static str, &str)]| {
            let mut m: HashMap<&'static str, String> =
                pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
            m.insert("HOME", home.clone());
            MapEnv(m)
        };
        let o = BackendOptions::default();
        let (c, r) = resolve(&o, &env(&[])).unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.secret_key.as_str(), r.as_str()),
            ("DEF", "defsecret", "us-east-1")
        );
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", "ENV"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_DEFAULT_REGION", "r1"),
        ]);
        let (c, r) = resolve(&o, &e).unwrap();
        assert_eq!((c.access_key.as_str(), r.as_str()), ("ENV", "r1"));
        let (c, r) = resolve(&o, &env(&[("AWS_PROFILE", "work")])).unwrap();
        assert_eq!(
            (c.access_key.as_str(), c.session_token.as_deref(), r.as_str()),
            ("WORK", Some("tok"), "eu-central-1")
        );
        let o2 = BackendOptions::default().s3_profile("work").s3_region("here");
        let (c, r) = resolve(&o2, &e).unwrap();
        assert_eq!(
            (c.access_key.as_str(), r.as_str()),
            ("WORK", "here"),
            "an explicit profile wins over the env"
        );
        let e = resolve(&BackendOptions::default().s3_profile("nope"), &env(&[])).unwrap_err();
        assert!(e.contains("\"nope\""), "{e}");
        let e = resolve(&o, &env(&[("AWS_ACCESS_KEY_ID", "A")])).unwrap_err();
        assert!(e.contains("AWS_SECRET_ACCESS_KEY is not"), "{e}");
        let e = resolve(&o, &MapEnv(HashMap::from([("HOME", "/nonexistent".to_string())]))).unwrap_err();
        assert!(e.contains("no S3 credentials"), "{e}");
    }
}
