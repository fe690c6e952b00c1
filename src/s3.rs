//! The S3 requests `object_store` does not make (FORMAT.md §11.2): Object
//! Lock on the bucket, legal holds on objects, an object's lock state, the
//! deletion of one version. Each request is built here and signed with
//! `object_store`'s own SigV4 signer ([`AwsAuthorizer`]), with the
//! credentials the store resolved, and sent through the same HTTP stack.
//!
//! Every `PUT` with a body, `object_store`'s included, carries `Content-MD5`
//! ([`Md5Connector`]): S3 requires it on uploads into a bucket with default
//! retention, and the server then checks what it received. The header is not
//! an `x-amz-*` header, so adding it after signing is allowed.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt as _;
use md5::Digest as _;
use object_store::aws::{AwsAuthorizer, AwsCredentialProvider};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpRequest, HttpRequestBody,
    HttpResponse, HttpService, ReqwestConnector,
};

/// The largest response body read from these requests (they are small XML
/// documents); a server sending more is refused.
const MAX_RESPONSE: usize = 64 * 1024;

/// The retention mode of an Object Lock (S3 names them in capitals).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still delete.
    Governance,
    /// Nobody, not even the account's root user, may delete before expiry.
    Compliance,
}

impl LockMode {
    fn wire(self) -> &'static str {
        match self {
            Self::Governance => "GOVERNANCE",
            Self::Compliance => "COMPLIANCE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "GOVERNANCE" => Some(Self::Governance),
            "COMPLIANCE" => Some(Self::Compliance),
            _ => None,
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wire())
    }
}

/// A bucket's Object Lock configuration, as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BucketLock {
    /// Object Lock is enabled (it can only be enabled, never disabled).
    pub enabled: bool,
    /// The default retention applied to every new object version, if any.
    pub default_retention: Option<(LockMode, u32)>,
}

/// One object's lock state, from `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectLock {
    /// `x-amz-object-lock-legal-hold` is `ON`.
    pub legal_hold: bool,
    /// `x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`.
    pub retention: Option<(String, String)>,
    /// `x-amz-version-id`.
    pub version_id: Option<String>,
}

/// A failed request: the action, the object and what the server said.
#[derive(Debug, thiserror::Error)]
#[error("{action} {key}: {what}")]
pub struct S3Error {
    /// What was being done.
    pub action: &'static str,
    /// The key or bucket concerned.
    pub key: String,
    /// The HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The S3 error code (`InvalidRequest`, ...), when the server sent one.
    pub code: Option<String>,
    /// The status, or the transport error, and the server's message.
    pub what: String,
}

/// Signed requests against one bucket (and the vault's prefix in it).
#[derive(Debug)]
pub struct S3Api {
    client: HttpClient,
    credentials: AwsCredentialProvider,
    region: String,
    bucket: String,
    /// `https://host/bucket` (path style) or `https://bucket.host`.
    bucket_url: url::Url,
    prefix: String,
}

/// The parts of the store's configuration these requests need.
pub struct S3Target<'a> {
    /// Bucket name.
    pub bucket: &'a str,
    /// The vault's prefix in it, without slashes at either end.
    pub prefix: &'a str,
    /// The endpoint, when not AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Virtual-hosted-style requests (the endpoint then names the bucket).
    pub virtual_hosted: bool,
    /// Plain http allowed.
    pub allow_http: bool,
}

impl S3Api {
    /// A client for `t`, signing with `credentials`.
    ///
    /// # Errors
    /// A malformed endpoint, or an HTTP client that cannot be built.
    pub fn new(t: &S3Target<'_>, credentials: AwsCredentialProvider) -> Result<Self, String> {
        let base = match (&t.endpoint, t.virtual_hosted) {
            (Some(e), true) => e.clone(),
            (Some(e), false) => format!("{}/{}", e.trim_end_matches('/'), t.bucket),
            (None, true) => format!("https://{}.s3.{}.amazonaws.com", t.bucket, t.region),
            (None, false) => format!("https://s3.{}.amazonaws.com/{}", t.region, t.bucket),
        };
        let bucket_url =
            url::Url::parse(&base).map_err(|e| format!("endpoint {base:?} is not a URL: {e}"))?;
        let client = Md5Connector
            .connect(&ClientOptions::new().with_allow_http(t.allow_http))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            credentials,
            region: t.region.clone(),
            bucket: t.bucket.to_owned(),
            bucket_url,
            prefix: t.prefix.to_owned(),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn object_url(&self, key: &str, query: &str) -> url::Url {
        let mut u = self.bucket_url.clone();
        {
            let mut segs = u
                .path_segments_mut()
                .expect("an http(s) URL has path segments");
            segs.pop_if_empty();
            for s in self.prefix.split('/').filter(|s| !s.is_empty()) {
                segs.push(s);
            }
            for s in key.split('/') {
                segs.push(s);
            }
        }
        u.set_query((!query.is_empty()).then_some(query));
        u
    }

    fn bucket_query(&self, query: &str) -> url::Url {
        let mut u = self.bucket_url.clone();
        u.set_query((!query.is_empty()).then_some(query));
        u
    }

    async fn send(
        &self,
        action: &'static str,
        key: &str,
        method: Method,
        url: url::Url,
        headers: &[(&'static str, String)],
        body: Bytes,
    ) -> Result<(StatusCode, HeaderMap, Bytes), S3Error> {
        let fail = |status: Option<u16>, code: Option<String>, what: String| S3Error {
            action,
            key: key.to_owned(),
            status,
            code,
            what,
        };
        let mut req: HttpRequest = Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(HttpRequestBody::from(body))
            .map_err(|e| fail(None, None, e.to_string()))?;
        for (name, value) in headers {
            let v = HeaderValue::from_str(value).map_err(|e| fail(None, None, e.to_string()))?;
            req.headers_mut().insert(*name, v);
        }
        let cred = self
            .credentials
            .get_credential()
            .await
            .map_err(|e| fail(None, None, format!("no credentials: {e}")))?;
        AwsAuthorizer::new(&cred, "s3", &self.region)
            .try_authorize(&mut req, None)
            .map_err(|e| fail(None, None, format!("couldn't sign the request: {e}")))?;
        let resp = self
            .client
            .execute(req)
            .await
            .map_err(|e| fail(None, None, e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = read_limited(body).await.map_err(|e| fail(None, None, e))?;
        if !parts.status.is_success() {
            let (code, message) = error_of(&body);
            return Err(fail(
                Some(parts.status.as_u16()),
                code.clone(),
                format!(
                    "the server answered {}{}{}",
                    parts.status,
                    code.map(|c| format!(" {c}")).unwrap_or_default(),
                    message.map(|m| format!(": {m}")).unwrap_or_default()
                ),
            ));
        }
        Ok((parts.status, parts.headers, body))
    }

    /// The bucket's Object Lock configuration.
    ///
    /// # Errors
    /// The request failed for another reason than "no configuration".
    pub async fn bucket_lock(&self) -> Result<BucketLock, S3Error> {
        let r = self
            .send(
                "read the Object Lock configuration of bucket",
                &self.bucket,
                Method::GET,
                self.bucket_query("object-lock="),
                &[],
                Bytes::new(),
            )
            .await;
        let body = match r {
            Ok((_, _, b)) => b,
            Err(e) if e.code.as_deref() == Some("ObjectLockConfigurationNotFoundError") => {
                return Ok(BucketLock {
                    enabled: false,
                    default_retention: None,
                });
            }
            Err(e) => return Err(e),
        };
        let bad = |what: String| S3Error {
            action: "read the Object Lock configuration of bucket",
            key: self.bucket.clone(),
            status: None,
            code: None,
            what,
        };
        let c: wire::ObjectLockConfiguration =
            quick_xml::de::from_reader(body.as_ref()).map_err(|e| {
                bad(format!(
                    "the server's answer is not an ObjectLockConfiguration: {e}"
                ))
            })?;
        let default_retention = match c.rule.and_then(|r| r.default_retention) {
            Some(d) => {
                let mode = d
                    .mode
                    .as_deref()
                    .and_then(LockMode::parse)
                    .ok_or_else(|| bad(format!("unknown retention mode {:?}", d.mode)))?;
                let days = match (d.days, d.years) {
                    (Some(days), _) => days,
                    (None, Some(y)) => y.saturating_mul(365),
                    (None, None) => return Err(bad("a default retention without a period".into())),
                };
                Some((mode, days))
            }
            None => None,
        };
        Ok(BucketLock {
            enabled: c.object_lock_enabled.as_deref() == Some("Enabled"),
            default_retention,
        })
    }

    /// Creates the bucket, with Object Lock enabled when `lock` is set (S3
    /// enables it only at creation). A bucket this account already owns is
    /// left as it is: returns `false`.
    ///
    /// # Errors
    /// The bucket exists under another owner, or the request failed.
    pub async fn create_bucket(&self, lock: bool) -> Result<bool, S3Error> {
        let mut headers = Vec::new();
        if lock {
            headers.push(("x-amz-bucket-object-lock-enabled", "true".to_owned()));
        }
        let body = if self.region == "us-east-1" {
            Bytes::new()
        } else {
            Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                self.region
            ))
        };
        match self
            .send(
                "create bucket",
                &self.bucket,
                Method::PUT,
                self.bucket_query(""),
                &headers,
                body,
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code.as_deref() == Some("BucketAlreadyOwnedByYou") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets the bucket's default retention: every new object version is
    /// kept for `days` in `mode`.
    ///
    /// # Errors
    /// The bucket has no Object Lock, or the request failed.
    pub async fn set_default_retention(&self, mode: LockMode, days: u32) -> Result<(), S3Error> {
        let body = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>{}</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
            mode.wire()
        );
        self.send(
            "set the default retention of bucket",
            &self.bucket,
            Method::PUT,
            self.bucket_query("object-lock="),
            &[],
            Bytes::from(body),
        )
        .await
        .map(|_| ())
    }

    /// Places (`on`) or lifts a legal hold on the current version of `key`.
    ///
    /// # Errors
    /// The bucket has no Object Lock, the object does not exist, or the
    /// request failed.
    pub async fn set_legal_hold(&self, key: &str, on: bool) -> Result<(), S3Error> {
        let body = format!(
            "<LegalHold xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Status>{}</Status></LegalHold>",
            if on { "ON" } else { "OFF" }
        );
        self.send(
            if on {
                "place a legal hold on"
            } else {
                "lift the legal hold on"
            },
            key,
            Method::PUT,
            self.object_url(key, "legal-hold="),
            &[],
            Bytes::from(body),
        )
        .await
        .map(|_| ())
    }

    /// The lock state of `key`'s current version; `None` when it does not
    /// exist. Read from `HEAD`'s `x-amz-object-lock-*` headers, which every
    /// server measured reports correctly (moto's `GetObjectRetention` does
    /// not).
    ///
    /// # Errors
    /// The request failed.
    pub async fn object_lock(&self, key: &str) -> Result<Option<ObjectLock>, S3Error> {
        let r = self
            .send(
                "read the lock state of",
                key,
                Method::HEAD,
                self.object_url(key, ""),
                &[],
                Bytes::new(),
            )
            .await;
        let h = match r {
            Ok((_, h, _)) => h,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Some(ObjectLock {
            legal_hold: get("x-amz-object-lock-legal-hold").as_deref() == Some("ON"),
            retention: get("x-amz-object-lock-mode")
                .zip(get("x-amz-object-lock-retain-until-date")),
            version_id: get("x-amz-version-id"),
        }))
    }

    /// Deletes one version of `key` for good (where retention or a legal
    /// hold allows). `custody doctor` uses it to probe that they refuse.
    ///
    /// # Errors
    /// Refused, or the request failed.
    pub async fn delete_version(&self, key: &str, version: &str) -> Result<(), S3Error> {
        let mut u = self.object_url(key, "");
        u.query_pairs_mut().append_pair("versionId", version);
        self.send(
            "delete a version of",
            key,
            Method::DELETE,
            u,
            &[],
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }
}

async fn read_limited(body: object_store::client::HttpResponseBody) -> Result<Bytes, String> {
    let mut stream = body.bytes_stream();
    let mut out = Vec::new();
    use futures::StreamExt as _;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > MAX_RESPONSE {
            return Err(format!(
                "the server's answer is longer than {MAX_RESPONSE} bytes"
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// The `Code` and `Message` of an S3 error document, when there is one.
fn error_of(body: &[u8]) -> (Option<String>, Option<String>) {
    match quick_xml::de::from_reader::<_, wire::Error>(body) {
        Ok(e) => (e.code, e.message),
        Err(_) => (None, None),
    }
}

/// The XML documents read from the server.
mod wire {
    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct ObjectLockConfiguration {
        pub object_lock_enabled: Option<String>,
        pub rule: Option<Rule>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct Rule {
        pub default_retention: Option<DefaultRetention>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct DefaultRetention {
        pub mode: Option<String>,
        pub days: Option<u32>,
        pub years: Option<u32>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    pub struct Error {
        pub code: Option<String>,
        pub message: Option<String>,
    }
}

/// An HTTP connector that adds `Content-MD5` to every `PUT` and `POST` with
/// a body (see the module documentation).
#[derive(Debug, Default, Clone, Copy)]
pub struct Md5Connector;

impl HttpConnector for Md5Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Md5Service(Arc::new(inner))))
    }
}

#[derive(Debug)]
struct Md5Service(Arc<HttpClient>);

#[async_trait::async_trait]
impl HttpService for Md5Service {
    async fn call(&self, mut req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let m = req.method();
        if (m == Method::PUT || m == Method::POST)
            && req.body().content_length() > 0
            && !req.headers().contains_key("content-md5")
        {
            // The body's frames are reference-counted slices: a clone
            // reads them without copying.
            let mut body = req.body().clone();
            let mut md5 = md5::Md5::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    md5.update(&data);
                }
            }
            let v = HeaderValue::from_str(&B64.encode(md5.finalize()))
                .expect("base64 is a valid header value");
            req.headers_mut().insert("content-md5", v);
        }
        self.0.execute(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_configuration_is_read() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>"#;
        let c: wire::ObjectLockConfiguration = quick_xml::de::from_reader(&xml[..]).unwrap();
        assert_eq!(c.object_lock_enabled.as_deref(), Some("Enabled"));
        let d = c.rule.unwrap().default_retention.unwrap();
        assert_eq!(d.mode.as_deref(), Some("COMPLIANCE"));
        assert_eq!(d.days, Some(30));
    }

    #[test]
    fn an_error_document_is_read_and_junk_is_not() {
        let xml = b"<Error><Code>InvalidRequest</Code><Message>Bucket is missing Object Lock Configuration</Message></Error>";
        let (code, msg) = error_of(xml);
        assert_eq!(code.as_deref(), Some("InvalidRequest"));
        assert!(msg.unwrap().contains("Object Lock"));
        assert_eq!(error_of(b"\x00\xff<<"), (None, None));
    }

    #[test]
    fn object_urls_encode_each_segment_under_the_prefix() {
        let creds: AwsCredentialProvider = Arc::new(object_store::StaticCredentialProvider::new(
            object_store::aws::AwsCredential {
                key_id: "k".into(),
                secret_key: "s".into(),
                token: None,
            },
        ));
        let api = S3Api::new(
            &S3Target {
                bucket: "b",
                prefix: "v/one",
                endpoint: Some("http://127.0.0.1:7480/".into()),
                region: "us-east-1".into(),
                virtual_hosted: false,
                allow_http: true,
            },
            creds,
        )
        .unwrap();
        assert_eq!(
            api.object_url("segments/00000001", "legal-hold=").as_str(),
            "http://127.0.0.1:7480/b/v/one/segments/00000001?legal-hold="
        );
        assert_eq!(
            api.bucket_query("object-lock=").as_str(),
            "http://127.0.0.1:7480/b?object-lock="
        );
    }
}
