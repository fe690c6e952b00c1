//! Progress callbacks for long work; the CLI draws them, the library only
//! reports.

/// Receives progress from preservation and verification.
pub trait Progress: Sync {
    /// An item is about to be read.
    fn item(&self, _path: &str) {}
    /// `n` more bytes were processed.
    fn bytes(&self, _n: u64) {}
    /// Whether nobody waits for the result any more: long work checks it
    /// between items and ends with [`crate::store::StoreError::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
}

/// Progress that reports nothing.
pub struct Silent;
impl Progress for Silent {}

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
