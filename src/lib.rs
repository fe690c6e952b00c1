//! custody: a tamper-evident evidence vault.
//!
//! A vault is an append-only object store of write-once objects: packs of
//! zstd-compressed, BLAKE3-named chunks, and segments, DSSE envelopes signed
//! with Ed25519, each naming the RFC 6962 leaf hash of the one before, under
//! a C2SP checkpoint. [`preserve::declare`] records an incident and streams
//! its sources into the vault; [`verify::verify`] checks everything and
//! returns typed findings. The format is specified in FORMAT.md.
//!
//! ```
//! use custody::{Declaration, Silent, SourceKind, SourceSpec, Store, Time, Vault, VaultSigner};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("auth.log"), "Failed password for root\n")?;
//! std::fs::create_dir(dir.path().join("vault"))?;
//!
//! let key = VaultSigner::generate("example.org/vault");
//! let store = Store::open(dir.path().join("vault").to_str().unwrap())?;
//! let opts = custody::InitOptions {
//!     origin: key.name().into(),
//!     created_by: "responder".into(),
//!     host: "host".into(),
//!     now: Time::now(),
//!     nonce: "00".repeat(16),
//! };
//! let mut vault = Vault::init(store, &key, opts)?;
//!
//! let summary = custody::preserve::declare(&mut vault, &key, &Declaration {
//!     incident: "INC-1".into(),
//!     title: "example".into(),
//!     severity: None,
//!     discovered_at: None,
//!     description: None,
//!     detection_source: None,
//!     regimes: vec![],
//!     by: "responder".into(),
//!     host: "host".into(),
//!     collector: "host".into(),
//!     sources: vec![SourceSpec {
//!         name: "logs".into(),
//!         kind: SourceKind::Files,
//!         paths: vec![dir.path().join("auth.log").to_string_lossy().into_owned()],
//!         exclude: vec![],
//!         argv: vec![],
//!         timeout_secs: None,
//!         seal_to: vec![],
//!     }],
//!     refuse: vec![],
//! }, &Silent)?;
//! assert_eq!(summary.complete, 1);
//!
//! let report = custody::verify::verify(vault.store(), &Default::default(), &Silent)?;
//! assert!(!report.damaged());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bundle;
pub mod case;
pub mod clocks;
pub mod config;
pub mod coverage;
pub mod doctor;
pub mod dsse;
pub mod hash;
pub mod hold;
pub mod incident;
pub mod ingest;
pub mod keyfind;
pub mod keymaterial;
pub mod keys;
pub mod layout;
pub mod localfile;
pub mod log;
pub mod manifest;
pub mod preserve;
pub mod progress;
pub mod proof;
pub mod report;
pub mod restore;
pub mod s3;
pub mod segment;
pub mod sources;
pub mod store;
pub mod time;
pub mod vault;
pub mod verify;
pub mod witness;

pub use config::Config;
pub use hash::{Blake3Id, Sha256Digest};
pub use keys::{KeyId, VaultSigner};
pub use preserve::{Declaration, Summary};
pub use progress::{Progress, Silent};
pub use segment::{Artifact, Entry, Segment, SourceKind, SourceSpec, Status};
pub use store::Store;
pub use time::Time;
pub use vault::{InitOptions, Vault};
pub use verify::{Finding, Kind, Report};

/// The service's messages and gRPC stubs, generated from
/// `proto/custody/v1/custody.proto` by `build.rs`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("custody.v1");
}
