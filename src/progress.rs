//! Progress callbacks for long work; the CLI draws them, the library only
//! reports.

/// Receives progress from preservation and verification.
pub trait Progress: Sync {
    /// An item is about to be read.
    fn item(&self, _path: &str) {}
    /// `n` more bytes were processed.
    fn bytes(&self, _n: u64) {}
}

/// Progress that reports nothing.
pub struct Silent;
impl Progress for Silent {}
