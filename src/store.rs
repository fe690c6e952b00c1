//! The vault's object store (FORMAT.md §4 (layout), §11 (write ordering)): a small,
//! synchronous face over `object_store`, so that `file://` and `s3://`
//! vaults share one code path.
//!
//! Contracts:
//! - [`Store::put_once`] is a conditional create; when it returns `Created`
//!   the object is durable (the local backend fsyncs the file and its
//!   directory). An object that already exists is never overwritten.
//! - [`Store::get`] refuses objects larger than the caller's limit before
//!   reading them, so untrusted sizes never drive an allocation.
//! - [`Store::replace_pointer`] is the only overwrite, used for the
//!   `checkpoint` hint; on a local vault it is serialised with an advisory
//!   lock, on S3 it is a compare-and-swap (`If-Match` on the ETag read), so
//!   that a slower writer cannot move it backwards.
//!
//! Not here: what the objects mean (see `vault`, `verify`).

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload};

/// A storage failure, naming the object and the action.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("couldn't {action} {key}: {source}")]
    Backend {
        /// What was being done.
        action: &'static str,
        /// The object key.
        key: String,
        /// The backend's error.
        source: object_store::Error,
    },
    /// The object is larger than a reader of its kind accepts.
    #[error("{key} is {size} bytes, more than the {max} bytes allowed for it")]
    TooLarge {
        /// The object key.
        key: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The object is a directory, link, FIFO or device, not a file (local
    /// vaults): opening it could follow it elsewhere or block forever.
    #[error("{key} is not a regular file ({what})")]
    NotRegular {
        /// The object key.
        key: String,
        /// What it is instead.
        what: String,
    },
    /// An S3 request object_store does not make failed.
    #[error("couldn't {0}")]
    S3(#[from] crate::s3::S3Error),
    /// The caller stopped waiting (see [`crate::progress::Progress::cancelled`]).
    #[error("cancelled: nobody waits for the result")]
    Cancelled,
    /// The vault location is not usable.
    #[error("vault location {location}: {why}")]
    Location {
        /// As given.
        location: String,
        /// What is wrong.
        why: String,
    },
}

/// Outcome of a conditional create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// This call created the object.
    Created,
    /// Something already existed under the key; nothing was written.
    AlreadyExists,
}

/// Whether the store keeps an object from being changed or removed
/// (FORMAT.md §11.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// Under a legal hold (S3), or read-only (local).
    Held,
    /// Not protected: what the store reports.
    Open(String),
    /// No such object.
    Missing,
}

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Why it is not a plain object, if it is not (local vaults: a link, a
    /// FIFO, a device, an unreadable directory, a name that is not UTF-8).
    pub irregular: Option<String>,
}

/// Settings of an `s3://` vault beyond the usual `AWS_*` environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`), which they override.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible server (for example
    /// `http://127.0.0.1:7480`); default AWS.
    pub endpoint: Option<String>,
    /// Region; default from the environment, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain `http://` endpoints (loopback tests only).
    pub allow_http: Option<bool>,
}

/// The vault's storage; clones share the backend and the I/O runtime.
#[derive(Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    rt: Arc<tokio::runtime::Runtime>,
    location: String,
    local_root: Option<PathBuf>,
    /// S3 servers that match `If-Match` only against the unquoted ETag
    /// (Ceph RGW 16): learned on the first refused compare-and-swap.
    etag_unquoted: Arc<std::sync::atomic::AtomicBool>,
    /// The operator vouches that this is the only writer (FORMAT.md §11.1):
    /// the pointer is then replaced without compare-and-swap.
    single_writer: Arc<std::sync::atomic::AtomicBool>,
    /// Requests object_store does not make (`s3://` vaults only).
    s3: Option<Arc<crate::s3::S3Api>>,
    /// The bucket's Object Lock configuration, once read.
    lock_conf: Arc<std::sync::Mutex<Option<crate::s3::BucketLock>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.location)
    }
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("custody-io")
            .enable_all()
            .build()
            .expect("a tokio runtime starts"),
    )
}

/// Turns `--vault` (a path or a `file://` URL) into a local directory.
///
/// # Errors
/// Other URL schemes, and malformed `file://` URLs.
pub fn local_dir(location: &str) -> Result<PathBuf, StoreError> {
    let bad = |why: &str| StoreError::Location {
        location: location.to_owned(),
        why: why.to_owned(),
    };
    if let Some((scheme, _)) = location.split_once("://") {
        return match scheme {
            "file" => url::Url::parse(location)
                .ok()
                .and_then(|u| u.to_file_path().ok())
                .ok_or_else(|| bad("not a valid file:// URL (it needs an absolute path)")),
            "s3" => Err(bad("an s3:// vault is not a local directory")),
            other => Err(bad(&format!(
                "unsupported scheme {other}://; use a path, a file:// URL or s3://bucket/prefix"
            ))),
        };
    }
    if location.is_empty() {
        return Err(bad("empty path"));
    }
    Ok(PathBuf::from(location))
}

impl Store {
    /// Opens the store at `location` (a directory path or `file://` URL). The
    /// directory must exist.
    ///
    /// # Errors
    /// [`StoreError::Location`] when the location is unusable.
    pub fn open(location: &str) -> Result<Self, StoreError> {
        Self::open_with(location, &S3Settings::default())
    }

    /// Opens the store at `location`: a directory path, a `file://` URL, or
    /// `s3://bucket[/prefix]` with `s3` settings over the environment's.
    ///
    /// # Errors
    /// [`StoreError::Location`] when the location is unusable.
    pub fn open_with(location: &str, s3: &S3Settings) -> Result<Self, StoreError> {
        if location.starts_with("s3://") {
            return Self::open_s3(location, s3);
        }
        let dir = local_dir(location)?;
        let bad = |why: String| StoreError::Location {
            location: location.to_owned(),
            why,
        };
        if !dir.is_dir() {
            return Err(bad("no such directory".into()));
        }
        let dir = dir.canonicalize().map_err(|e| bad(e.to_string()))?;
        let fs = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| bad(e.to_string()))?
            .with_fsync(true);
        Ok(Self {
            inner: Arc::new(fs),
            rt: runtime(),
            location: dir.display().to_string(),
            local_root: Some(dir),
            etag_unquoted: Arc::default(),
            single_writer: Arc::default(),
            s3: None,
            lock_conf: Arc::default(),
        })
    }

    fn open_s3(location: &str, s3: &S3Settings) -> Result<Self, StoreError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let bad = |why: String| StoreError::Location {
            location: location.to_owned(),
            why,
        };
        let rest = &location["s3://".len()..];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        if bucket.is_empty() {
            return Err(bad(
                "no bucket: use s3://bucket or s3://bucket/prefix".into()
            ));
        }
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(bad("the prefix must be plain path segments".into()));
        }
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &s3.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &s3.region {
            b = b.with_region(r);
        } else if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            b = b.with_region("us-east-1");
        }
        if let Some(h) = s3.allow_http {
            b = b.with_allow_http(h);
        }
        b = b.with_http_connector(crate::s3::Md5Connector);
        let conf = |k: AmazonS3ConfigKey| b.get_config_value(&k);
        let target = crate::s3::S3Target {
            bucket,
            prefix,
            endpoint: conf(AmazonS3ConfigKey::Endpoint),
            region: conf(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into()),
            virtual_hosted: conf(AmazonS3ConfigKey::VirtualHostedStyleRequest).as_deref()
                == Some("true"),
            allow_http: conf(AmazonS3ConfigKey::Client(
                object_store::ClientConfigKey::AllowHttp,
            ))
            .as_deref()
                == Some("true"),
        };
        let s3store = b.build().map_err(|e| bad(e.to_string()))?;
        let api = crate::s3::S3Api::new(&target, Arc::clone(s3store.credentials())).map_err(bad)?;
        let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(s3store, prefix))
        };
        Ok(Self {
            inner,
            rt: runtime(),
            location: format!(
                "s3://{bucket}{}{prefix}",
                if prefix.is_empty() { "" } else { "/" }
            ),
            local_root: None,
            etag_unquoted: Arc::default(),
            single_writer: Arc::default(),
            s3: Some(Arc::new(api)),
            lock_conf: Arc::default(),
        })
    }

    /// Wraps any object store (tests inject faults this way).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, location: &str) -> Self {
        Self {
            inner,
            rt: runtime(),
            location: location.to_owned(),
            local_root: None,
            etag_unquoted: Arc::default(),
            single_writer: Arc::default(),
            s3: None,
            lock_conf: Arc::default(),
        }
    }

    /// Declares this the only writer of the vault (FORMAT.md §11.1).
    pub fn set_single_writer(&self, on: bool) {
        self.single_writer
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`Store::set_single_writer`] was set.
    pub fn single_writer(&self) -> bool {
        self.single_writer
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why this store cannot protect objects itself, or `None` when it can:
    /// a local vault (read-only files) or an S3 bucket with Object Lock.
    ///
    /// # Errors
    /// The bucket's configuration could not be read.
    pub fn hold_support(&self) -> Result<Option<String>, StoreError> {
        if self.local_root.is_some() {
            return Ok(None);
        }
        let Some(api) = &self.s3 else {
            return Ok(Some(format!(
                "{} cannot protect objects (not a local or S3 vault)",
                self.location
            )));
        };
        let lock = self.bucket_lock()?.expect("an S3 store reads its bucket");
        Ok((!lock.enabled).then(|| {
            format!(
                "bucket {} has no Object Lock, so objects cannot be put under legal hold (S3 enables it only when a bucket is created: see custody init --help)",
                api.bucket()
            )
        }))
    }

    /// The Object Lock configuration of an `s3://` vault's bucket (read
    /// once per process); `None` for other stores.
    ///
    /// # Errors
    /// The request failed.
    pub fn bucket_lock(&self) -> Result<Option<crate::s3::BucketLock>, StoreError> {
        let Some(api) = &self.s3 else {
            return Ok(None);
        };
        let mut cached = self.lock_conf.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = cached.as_ref() {
            return Ok(Some(l.clone()));
        }
        let l = self.rt.block_on(api.bucket_lock())?;
        *cached = Some(l.clone());
        Ok(Some(l))
    }

    /// Creates an `s3://` vault's bucket, with Object Lock when `lock` is
    /// set; `false` when this account already owns it (left as it is).
    ///
    /// # Errors
    /// Not an `s3://` vault, or the request failed.
    pub fn create_bucket(&self, lock: bool) -> Result<bool, StoreError> {
        let api = self.s3_api("create a bucket")?;
        Ok(self.rt.block_on(api.create_bucket(lock))?)
    }

    /// Sets the default retention of an `s3://` vault's bucket.
    ///
    /// # Errors
    /// Not an `s3://` vault, the bucket has no Object Lock, or the request
    /// failed.
    pub fn set_default_retention(
        &self,
        mode: crate::s3::LockMode,
        days: u32,
    ) -> Result<(), StoreError> {
        let api = self.s3_api("set a default retention")?;
        self.rt.block_on(api.set_default_retention(mode, days))?;
        *self.lock_conf.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(())
    }

    /// The lock state of an object of an `s3://` vault (`None` elsewhere,
    /// and when it does not exist).
    ///
    /// # Errors
    /// The request failed.
    pub fn object_lock(&self, key: &str) -> Result<Option<crate::s3::ObjectLock>, StoreError> {
        match &self.s3 {
            Some(api) => Ok(self.rt.block_on(api.object_lock(key))?),
            None => Ok(None),
        }
    }

    /// Deletes one version of an object of an `s3://` vault for good.
    ///
    /// # Errors
    /// Refused by the server, or not an `s3://` vault.
    pub fn delete_version(&self, key: &str, version: &str) -> Result<(), StoreError> {
        let api = self.s3_api("delete a version")?;
        Ok(self.rt.block_on(api.delete_version(key, version))?)
    }

    fn s3_api(&self, what: &str) -> Result<&crate::s3::S3Api, StoreError> {
        self.s3.as_deref().ok_or_else(|| StoreError::Location {
            location: self.location.clone(),
            why: format!("only an s3:// vault can {what}"),
        })
    }

    /// Places (`on`) or lifts the store's protection of `key`: a legal hold
    /// on S3; on a local vault, the file's write permissions are removed
    /// (or the owner's restored), through a handle opened without
    /// following links. Returns whether anything changed.
    ///
    /// # Errors
    /// The object is missing or not a regular file, or the store refused.
    pub fn set_hold(&self, key: &str, on: bool) -> Result<bool, StoreError> {
        if let Some(api) = &self.s3 {
            let before = self.rt.block_on(api.object_lock(key))?;
            if before.as_ref().is_some_and(|l| l.legal_hold == on) {
                return Ok(false);
            }
            self.rt.block_on(api.set_legal_hold(key, on))?;
            return Ok(true);
        }
        use std::os::unix::fs::PermissionsExt as _;
        let (f, mode) = self.open_local_regular(key)?;
        let new = if on { mode & !0o222 } else { mode | 0o200 };
        if new == mode {
            return Ok(false);
        }
        f.set_permissions(std::fs::Permissions::from_mode(new))
            .map_err(|e| self.io_error("change the permissions of", key, e))?;
        Ok(true)
    }

    /// Whether the store protects `key` (see [`Store::set_hold`]).
    ///
    /// # Errors
    /// The store could not be asked, or this store cannot protect objects.
    pub fn protection(&self, key: &str) -> Result<Protection, StoreError> {
        if let Some(api) = &self.s3 {
            return Ok(match self.rt.block_on(api.object_lock(key))? {
                None => Protection::Missing,
                Some(l) if l.legal_hold => Protection::Held,
                Some(l) => Protection::Open(match l.retention {
                    Some((mode, until)) => format!(
                        "no legal hold (only a {mode} retention until {until}, which expires)"
                    ),
                    None => "no legal hold and no retention".into(),
                }),
            });
        }
        match self.open_local_regular(key) {
            Ok((_, mode)) if mode & 0o222 == 0 => Ok(Protection::Held),
            Ok((_, mode)) => Ok(Protection::Open(format!(
                "the file is writable (mode {:o})",
                mode & 0o7777
            ))),
            Err(StoreError::Backend {
                source: object_store::Error::NotFound { .. },
                ..
            }) => Ok(Protection::Missing),
            Err(e) => Err(e),
        }
    }

    fn io_error(&self, action: &'static str, key: &str, e: std::io::Error) -> StoreError {
        let path = self.local_root.as_ref().map(|r| r.join(key));
        let source = if e.kind() == std::io::ErrorKind::NotFound {
            object_store::Error::NotFound {
                path: path.map(|p| p.display().to_string()).unwrap_or_default(),
                source: Box::new(e),
            }
        } else {
            object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            }
        };
        StoreError::Backend {
            action,
            key: key.to_owned(),
            source,
        }
    }

    /// Opens a local vault's object without following links or blocking,
    /// and checks that it is a regular file; returns it and its mode.
    fn open_local_regular(&self, key: &str) -> Result<(std::fs::File, u32), StoreError> {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let Some(root) = &self.local_root else {
            return Err(StoreError::Location {
                location: self.location.clone(),
                why: "not a local vault".into(),
            });
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(root.join(key))
            .map_err(|e| self.io_error("open", key, e))?;
        let meta = f.metadata().map_err(|e| self.io_error("read", key, e))?;
        if !meta.is_file() {
            return Err(StoreError::NotRegular {
                key: key.to_owned(),
                what: "not a regular file".into(),
            });
        }
        Ok((f, meta.permissions().mode()))
    }

    /// Where the store is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The local directory, for a `file://` vault.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    fn backend(action: &'static str, key: &str) -> impl FnOnce(object_store::Error) -> StoreError {
        let key = key.to_owned();
        move |source| StoreError::Backend {
            action,
            key,
            source,
        }
    }

    /// Creates `key` with `bytes` unless something already exists there.
    ///
    /// # Errors
    /// Backend failures other than "already exists".
    pub fn put_once(&self, key: &str, bytes: Bytes) -> Result<Put, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let r = self.rt.block_on(self.inner.put_opts(
            &Path::from(key),
            PutPayload::from_bytes(bytes),
            opts,
        ));
        match r {
            Ok(_) => Ok(Put::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Put::AlreadyExists),
            Err(e) => Err(Self::backend("write", key)(e)),
        }
    }

    /// Reads `key` whole, if it exists and is at most `max` bytes.
    ///
    /// # Errors
    /// [`StoreError::TooLarge`], or backend failures other than "not found".
    pub fn get(&self, key: &str, max: u64) -> Result<Option<Bytes>, StoreError> {
        if !self.check_regular(key)? {
            return Ok(None);
        }
        let path = Path::from(key);
        self.rt.block_on(async {
            let r = match self.inner.get(&path).await {
                Ok(r) => r,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(Self::backend("read", key)(e)),
            };
            if r.meta.size > max {
                return Err(StoreError::TooLarge {
                    key: key.to_owned(),
                    size: r.meta.size,
                    max,
                });
            }
            let bytes = r.bytes().await.map_err(Self::backend("read", key))?;
            // The backend may have grown the object between metadata and body.
            if bytes.len() as u64 > max {
                return Err(StoreError::TooLarge {
                    key: key.to_owned(),
                    size: bytes.len() as u64,
                    max,
                });
            }
            Ok(Some(bytes))
        })
    }

    /// Reads a byte range of `key`.
    ///
    /// # Errors
    /// Backend failures, including a range beyond the object.
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.check_regular(key)?;
        self.rt
            .block_on(self.inner.get_range(&Path::from(key), range))
            .map_err(Self::backend("read", key))
    }

    /// Reads `range` of `key` into the front of `buf` (growing it when
    /// needed) and returns how many bytes were read: fewer than asked when
    /// the object ends first. On a local vault the file is opened once per
    /// `files` cache with the checks of [`Store::get`] (a regular file,
    /// never through a link, re-checked on the opened file) and then read
    /// with `pread`; other stores go through [`Store::get_range`].
    ///
    /// # Errors
    /// As [`Store::get_range`], and [`StoreError::NotRegular`].
    pub fn read_range_into(
        &self,
        files: &mut OpenFiles,
        key: &str,
        range: Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<usize, StoreError> {
        use std::os::unix::fs::FileExt as _;
        let Some(root) = &self.local_root else {
            let b = self.get_range(key, range)?;
            if buf.len() < b.len() {
                buf.resize(b.len(), 0);
            }
            buf[..b.len()].copy_from_slice(&b);
            return Ok(b.len());
        };
        let open = files.open(root, key)?;
        if range.end > open.len {
            // Perhaps it grew since it was opened: ask again.
            open.len = open
                .file
                .metadata()
                .map_err(|e| Self::backend("read", key)(local_error(key, e)))?
                .len();
        }
        // Never a buffer for more than the file holds.
        let len = usize::try_from(range.end.min(open.len).saturating_sub(range.start))
            .expect("a file's length fits in memory's address space");
        let file = &open.file;
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let mut done = 0;
        while done < len {
            match file.read_at(&mut buf[done..len], range.start + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Self::backend("read", key)(local_error(key, e))),
            }
        }
        Ok(done)
    }

    /// Reads `key` whole, if it exists and is at most `max` bytes, handing
    /// it to `consume` piece by piece (on a local vault through one reused
    /// buffer, so a large object costs no allocation of its size). Returns
    /// the number of bytes read, or `None` when there is no such object.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub fn read_each(
        &self,
        key: &str,
        max: u64,
        buf: &mut Vec<u8>,
        mut consume: impl FnMut(&[u8]),
    ) -> Result<Option<u64>, StoreError> {
        use std::io::Read as _;
        let Some(root) = &self.local_root else {
            return Ok(self.get(key, max)?.map(|b| {
                consume(&b);
                b.len() as u64
            }));
        };
        let mut files = OpenFiles::default();
        let mut file = match files.open(root, key) {
            Ok(f) => &f.file,
            Err(StoreError::Backend {
                source: object_store::Error::NotFound { .. },
                ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let size = file
            .metadata()
            .map_err(|e| Self::backend("read", key)(local_error(key, e)))?
            .len();
        if size > max {
            return Err(StoreError::TooLarge {
                key: key.to_owned(),
                size,
                max,
            });
        }
        if buf.len() < READ_PIECE {
            buf.resize(READ_PIECE, 0);
        }
        let mut total = 0u64;
        loop {
            let n = match file.read(&mut buf[..READ_PIECE]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Self::backend("read", key)(local_error(key, e))),
            };
            total += n as u64;
            // The file may have grown since it was measured.
            if total > max {
                return Err(StoreError::TooLarge {
                    key: key.to_owned(),
                    size: total,
                    max,
                });
            }
            consume(&buf[..n]);
        }
        Ok(Some(total))
    }

    /// Whether `key` exists, and its size.
    ///
    /// # Errors
    /// Backend failures other than "not found".
    pub fn head(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match self.rt.block_on(self.inner.head(&Path::from(key))) {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::backend("stat", key)(e)),
        }
    }

    /// Local vaults: whether `key` exists, refusing anything but a regular
    /// file. Other stores: always true (their objects are plain).
    fn check_regular(&self, key: &str) -> Result<bool, StoreError> {
        let Some(root) = &self.local_root else {
            return Ok(true);
        };
        match std::fs::symlink_metadata(root.join(key)) {
            Ok(m) if m.file_type().is_file() => Ok(true),
            Ok(m) => Err(StoreError::NotRegular {
                key: key.to_owned(),
                what: file_type_name(&m),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::NotRegular {
                key: key.to_owned(),
                what: format!("cannot stat: {e}"),
            }),
        }
    }

    /// Every object under `prefix`, sorted by key. On a local vault the
    /// directory is walked without following links, and anything that is not
    /// a regular file is listed with [`Listed::irregular`] set, so that a
    /// planted link, FIFO or badly named file is reported, not followed.
    ///
    /// # Errors
    /// Backend failures.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        if let Some(root) = &self.local_root {
            return Ok(list_local(root, prefix));
        }
        let p = Path::from(prefix);
        let mut out: Vec<Listed> = self
            .rt
            .block_on(self.inner.list(Some(&p)).try_collect::<Vec<_>>())
            .map_err(Self::backend("list", prefix))?
            .into_iter()
            .map(|m| Listed {
                key: m.location.to_string(),
                size: m.size,
                irregular: None,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Replaces the pointer object `key` when `should_replace(current)` says
    /// so, atomically with respect to other writers of this vault on this
    /// host. Returns whether it wrote.
    ///
    /// # Errors
    /// Backend or lock failures.
    pub fn replace_pointer(
        &self,
        key: &str,
        bytes: Bytes,
        max: u64,
        mut should_replace: impl FnMut(Option<&[u8]>) -> bool,
    ) -> Result<bool, StoreError> {
        let Some(root) = &self.local_root else {
            return self.swap_pointer(key, bytes, max, should_replace);
        };
        let _lock = LocalLock::acquire(&root.join(crate::layout::LOCAL_LOCK)).map_err(|e| {
            StoreError::Location {
                location: self.location.clone(),
                why: format!("couldn't lock: {e}"),
            }
        })?;
        let current = match self.get(key, max) {
            Ok(c) => c,
            // An oversized pointer is damage; replacing it is the repair.
            Err(StoreError::TooLarge { .. }) => None,
            Err(e) => return Err(e),
        };
        if !should_replace(current.as_deref()) {
            return Ok(false);
        }
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..Default::default()
        };
        self.rt
            .block_on(
                self.inner
                    .put_opts(&Path::from(key), PutPayload::from_bytes(bytes), opts),
            )
            .map_err(Self::backend("write", key))?;
        Ok(true)
    }

    /// [`Store::replace_pointer`] on an object store: read the pointer and
    /// its ETag, decide, then write only if the ETag is still the one read
    /// (`If-Match`), or only if there is still none (`If-None-Match: *`);
    /// on a lost race, read again and decide again.
    fn swap_pointer(
        &self,
        key: &str,
        bytes: Bytes,
        max: u64,
        mut should_replace: impl FnMut(Option<&[u8]>) -> bool,
    ) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering;
        const ATTEMPTS: u32 = 32;
        let path = Path::from(key);
        for _ in 0..ATTEMPTS {
            let (current, e_tag) = self.rt.block_on(async {
                match self.inner.get(&path).await {
                    Ok(r) if r.meta.size > max => Ok((None, r.meta.e_tag.clone())),
                    Ok(r) => {
                        let tag = r.meta.e_tag.clone();
                        let b = r.bytes().await.map_err(Self::backend("read", key))?;
                        Ok((Some(b), tag))
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok((None, None)),
                    Err(e) => Err(Self::backend("read", key)(e)),
                }
            })?;
            let exists = e_tag.is_some();
            if !should_replace(current.as_deref().filter(|b| b.len() as u64 <= max)) {
                return Ok(false);
            }
            let mode = match &e_tag {
                _ if self.single_writer() => PutMode::Overwrite,
                None => PutMode::Create,
                Some(t) => {
                    let t = if self.etag_unquoted.load(Ordering::Relaxed) {
                        t.trim_matches('"').to_owned()
                    } else {
                        t.clone()
                    };
                    PutMode::Update(object_store::UpdateVersion {
                        e_tag: Some(t),
                        version: None,
                    })
                }
            };
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            let r = self.rt.block_on(self.inner.put_opts(
                &path,
                PutPayload::from_bytes(bytes.clone()),
                opts,
            ));
            match r {
                Ok(_) => return Ok(true),
                Err(object_store::Error::Precondition { .. })
                | Err(object_store::Error::AlreadyExists { .. }) => {
                    // Someone else moved it, or the server compares the
                    // ETag unquoted: if the object is unchanged, it is the
                    // latter (FORMAT.md §11 (S3)).
                    if exists && !self.etag_unquoted.load(Ordering::Relaxed) {
                        let now = self
                            .rt
                            .block_on(self.inner.head(&path))
                            .map(|m| m.e_tag)
                            .ok()
                            .flatten();
                        if now == e_tag {
                            self.etag_unquoted.store(true, Ordering::Relaxed);
                        }
                    }
                }
                Err(e) => return Err(Self::backend("write", key)(e)),
            }
        }
        Err(StoreError::Location {
            location: self.location.clone(),
            why: format!("{key} kept changing under {ATTEMPTS} compare-and-swap attempts"),
        })
    }
}

/// How much [`Store::read_each`] reads at a time from a local file.
const READ_PIECE: usize = 1 << 20;

/// How many local files one [`OpenFiles`] keeps open.
const OPEN_FILES: usize = 8;

/// Local files kept open between reads of one thread (see
/// [`Store::read_range_into`]), most recently used last.
#[derive(Debug, Default)]
pub struct OpenFiles {
    open: Vec<OpenFile>,
}

impl OpenFiles {
    /// The open file of `key` under `root`, opening it when needed: only a
    /// regular file, never through a link (as [`Store::get`] checks), and
    /// the opened file is checked again so that a swap in between is
    /// caught.
    fn open(&mut self, root: &FsPath, key: &str) -> Result<&mut OpenFile, StoreError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = root.join(key);
        if let Some(i) = self.open.iter().position(|o| o.path == path) {
            let hit = self.open.remove(i);
            self.open.push(hit);
        } else {
            let not_regular = |m: &std::fs::Metadata| StoreError::NotRegular {
                key: key.to_owned(),
                what: file_type_name(m),
            };
            // As check_regular: never open anything but a regular file (a
            // device or FIFO is not even opened).
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_file() => {}
                Ok(m) => return Err(not_regular(&m)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Store::backend("read", key)(local_error(key, e)));
                }
                Err(e) => {
                    return Err(StoreError::NotRegular {
                        key: key.to_owned(),
                        what: format!("cannot stat: {e}"),
                    });
                }
            }
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(
                    (nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits(),
                )
                .open(&path)
                .map_err(|e| Store::backend("read", key)(local_error(key, e)))?;
            let m = file
                .metadata()
                .map_err(|e| Store::backend("read", key)(local_error(key, e)))?;
            if !m.file_type().is_file() {
                return Err(not_regular(&m));
            }
            if self.open.len() == OPEN_FILES {
                self.open.remove(0);
            }
            self.open.push(OpenFile {
                path,
                file,
                len: m.len(),
            });
        }
        Ok(self.open.last_mut().expect("just pushed"))
    }
}

/// A local file kept open, with its length when last asked.
#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
}

/// A local I/O error as the backend's error type (a missing file is
/// `NotFound`, as `object_store` reports it).
fn local_error(key: &str, e: std::io::Error) -> object_store::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path: key.to_owned(),
            source: Box::new(e),
        }
    } else {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        }
    }
}

fn file_type_name(m: &std::fs::Metadata) -> String {
    use std::os::unix::fs::FileTypeExt as _;
    let t = m.file_type();
    let name = if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a file"
    };
    name.to_owned()
}

fn list_local(root: &FsPath, prefix: &str) -> Vec<Listed> {
    let start = if prefix.is_empty() {
        root.to_path_buf()
    } else {
        root.join(prefix)
    };
    if !start.exists() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&start)
        .follow_links(false)
        .follow_root_links(false)
        .min_depth(1)
    {
        let rel = |p: &FsPath| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        match entry {
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) => {
                let key = rel(e.path());
                let meta = e.metadata().ok();
                let size = meta.as_ref().map_or(0, std::fs::Metadata::len);
                let irregular = if e.path().to_str().is_none() {
                    Some("its name is not UTF-8".to_owned())
                } else {
                    meta.as_ref()
                        .filter(|m| !m.file_type().is_file())
                        .map(file_type_name)
                };
                out.push(Listed {
                    key,
                    size,
                    irregular,
                });
            }
            Err(err) => {
                let key = err.path().map_or_else(|| prefix.to_owned(), rel);
                out.push(Listed {
                    key,
                    size: 0,
                    irregular: Some(format!("cannot be listed: {err}")),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// An exclusive advisory lock on a file, released on drop.
struct LocalLock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

impl LocalLock {
    fn acquire(path: &FsPath) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Never through a planted link: a writer may run as root.
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
            .open(path)?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(LocalLock)
            .map_err(|(_, e)| std::io::Error::from(e))
    }
}

/// Probes of what the backend enforces (`custody doctor`): raw operations
/// the vault itself never uses this way.
impl Store {
    /// Reads `key` with its ETag.
    ///
    /// # Errors
    /// Backend failures other than "not found".
    pub fn get_tagged(
        &self,
        key: &str,
        max: u64,
    ) -> Result<Option<(Bytes, Option<String>)>, StoreError> {
        let path = Path::from(key);
        self.rt.block_on(async {
            match self.inner.get(&path).await {
                Ok(r) if r.meta.size > max => Err(StoreError::TooLarge {
                    key: key.to_owned(),
                    size: r.meta.size,
                    max,
                }),
                Ok(r) => {
                    let tag = r.meta.e_tag.clone();
                    let b = r.bytes().await.map_err(Self::backend("read", key))?;
                    Ok(Some((b, tag)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(Self::backend("read", key)(e)),
            }
        })
    }

    /// Writes `key` only if its ETag is still `e_tag` (as given, quoted or
    /// not). Returns whether the server accepted the write.
    ///
    /// # Errors
    /// Backend failures other than a refused precondition.
    pub fn put_if_match(&self, key: &str, bytes: Bytes, e_tag: &str) -> Result<bool, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(e_tag.to_owned()),
                version: None,
            }),
            ..Default::default()
        };
        match self.rt.block_on(self.inner.put_opts(
            &Path::from(key),
            PutPayload::from_bytes(bytes),
            opts,
        )) {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(Self::backend("write", key)(e)),
        }
    }

    /// Overwrites `key` unconditionally. Returns whether the backend let it.
    ///
    /// # Errors
    /// Backend failures other than a refusal.
    pub fn overwrite(&self, key: &str, bytes: Bytes) -> Result<bool, StoreError> {
        match self.rt.block_on(
            self.inner
                .put(&Path::from(key), PutPayload::from_bytes(bytes)),
        ) {
            Ok(_) => Ok(true),
            Err(object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) if refused(&e) => Ok(false),
            Err(e) => Err(Self::backend("write", key)(e)),
        }
    }

    /// Deletes `key`. Returns whether the backend let it (on a versioned
    /// bucket a delete only adds a marker: see [`Store::get`] afterwards).
    ///
    /// # Errors
    /// Backend failures other than a refusal.
    pub fn delete(&self, key: &str) -> Result<bool, StoreError> {
        match self.rt.block_on(self.inner.delete(&Path::from(key))) {
            Ok(()) => Ok(true),
            Err(e) if refused(&e) => Ok(false),
            Err(e) => Err(Self::backend("delete", key)(e)),
        }
    }
}

/// Whether the backend refused an overwrite or a delete (retention, a legal
/// hold, missing rights) rather than failing: S3 answers 403, which
/// object_store reports as a permission error or, for some servers, as a
/// generic error naming the status.
fn refused(e: &object_store::Error) -> bool {
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => true,
        object_store::Error::Generic { source, .. } => source.to_string().contains("403"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_are_checked_before_any_request() {
        let s = S3Settings::default();
        for bad in ["s3://", "s3:///p", "s3://b/../p", "s3://b/x//y"] {
            assert!(Store::open_with(bad, &s).is_err(), "{bad}");
        }
        let st = Store::open_with("s3://bucket/some/prefix/", &s).unwrap();
        assert_eq!(st.location(), "s3://bucket/some/prefix");
        assert!(st.local_root().is_none());
    }

    #[test]
    fn local_dir_accepts_paths_and_file_urls_only() {
        assert_eq!(local_dir("/tmp/v").unwrap(), PathBuf::from("/tmp/v"));
        assert_eq!(local_dir("file:///tmp/v").unwrap(), PathBuf::from("/tmp/v"));
        assert!(local_dir("file://relative").is_err());
        assert!(
            local_dir("s3://bucket/p")
                .unwrap_err()
                .to_string()
                .contains("not a local directory")
        );
        assert!(local_dir("gs://b").is_err());
        assert!(local_dir("").is_err());
    }

    /// The local fast paths check what `get` checks: a regular file, never
    /// through a link, nothing opened that is a FIFO; ranges past the end
    /// read short; sizes are bounded.
    #[test]
    fn local_reads_refuse_what_get_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        s.put_once("a/b", Bytes::from_static(b"0123456789"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("a/b"), dir.path().join("a/link")).unwrap();
        nix::unistd::mkfifo(&dir.path().join("a/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut files = OpenFiles::default();
        let mut buf = Vec::new();
        let mut range = |key: &str, r: Range<u64>| {
            s.read_range_into(&mut files, key, r, &mut buf)
                .map(|n| buf[..n].to_vec())
        };
        assert_eq!(range("a/b", 2..5).unwrap(), b"234");
        assert_eq!(range("a/b", 8..20).unwrap(), b"89", "short at the end");
        assert_eq!(range("a/b", 0..10).unwrap(), b"0123456789");
        assert!(matches!(
            range("a/link", 0..1),
            Err(StoreError::NotRegular { .. })
        ));
        assert!(matches!(
            range("a/fifo", 0..1),
            Err(StoreError::NotRegular { .. })
        ));
        assert!(matches!(
            range("a", 0..1),
            Err(StoreError::NotRegular { .. })
        ));
        assert!(matches!(
            range("a/none", 0..1),
            Err(StoreError::Backend {
                source: object_store::Error::NotFound { .. },
                ..
            })
        ));

        let whole = |key: &str, max: u64| {
            let mut got = Vec::new();
            let n = s.read_each(key, max, &mut Vec::new(), |p| got.extend_from_slice(p))?;
            Ok::<_, StoreError>(n.map(|n| (n, got)))
        };
        assert_eq!(
            whole("a/b", 10).unwrap(),
            Some((10, b"0123456789".to_vec()))
        );
        assert!(matches!(
            whole("a/b", 9),
            Err(StoreError::TooLarge { size: 10, .. })
        ));
        assert_eq!(whole("a/none", 10).unwrap(), None);
        assert!(matches!(
            whole("a/link", 10),
            Err(StoreError::NotRegular { .. })
        ));
        assert!(matches!(
            whole("a/fifo", 10),
            Err(StoreError::NotRegular { .. })
        ));
    }

    #[test]
    fn put_once_never_overwrites_and_get_bounds_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(
            s.put_once("a/b", Bytes::from_static(b"one")).unwrap(),
            Put::Created
        );
        assert_eq!(
            s.put_once("a/b", Bytes::from_static(b"two")).unwrap(),
            Put::AlreadyExists
        );
        assert_eq!(
            s.get("a/b", 10).unwrap().unwrap(),
            Bytes::from_static(b"one")
        );
        assert!(matches!(
            s.get("a/b", 2),
            Err(StoreError::TooLarge { size: 3, .. })
        ));
        assert_eq!(s.get("nope", 10).unwrap(), None);
        assert_eq!(
            s.list("a").unwrap(),
            vec![Listed {
                key: "a/b".into(),
                size: 3,
                irregular: None,
            }]
        );
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("a/link")).unwrap();
        let listed = s.list("a").unwrap();
        assert_eq!(listed[1].irregular.as_deref(), Some("a symbolic link"));
        assert!(matches!(
            s.get("a/link", 1 << 20),
            Err(StoreError::NotRegular { .. })
        ));
        assert_eq!(s.get_range("a/b", 1..3).unwrap(), Bytes::from_static(b"ne"));
        assert!(
            s.replace_pointer("p", Bytes::from_static(b"1"), 10, |c| c.is_none())
                .unwrap()
        );
        assert!(
            !s.replace_pointer("p", Bytes::from_static(b"2"), 10, |c| c.is_none())
                .unwrap()
        );
        assert_eq!(s.get("p", 10).unwrap().unwrap(), Bytes::from_static(b"1"));
    }
}
