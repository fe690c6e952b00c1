//! Reading evidence back: one chunk at a time, each checked against its id
//! on the way out (FORMAT.md §12 (read rules)). Used by `custody cat` and by the
//! content phase of `verify`.

use std::io::Write;

use sha2::Digest as _;

use crate::hash::{Blake3Id, Sha256Digest};
use crate::ingest::{CHUNK_MAX, PACK_MAGIC};
use crate::layout;
use crate::segment::{Artifact, ChunkRef};
use crate::store::{OpenFiles, Store, StoreError};

/// Why a chunk could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The frame is not where the reference says, does not decompress within
    /// the declared size, or decompresses to another size.
    #[error("chunk {id} in {object}: {why}")]
    Corrupt {
        /// The chunk id.
        id: String,
        /// `packs/..@offset`, `+skip` in a shared frame.
        object: String,
        /// What is wrong.
        why: String,
    },
    /// The plaintext does not hash to the chunk id.
    #[error("chunk {expected} in {object} hashes to {actual}")]
    HashMismatch {
        /// The chunk id.
        expected: Blake3Id,
        /// What it hashes to.
        actual: Blake3Id,
        /// `packs/..@offset`, `+skip` in a shared frame.
        object: String,
    },
}

/// Where a chunk is, for messages: `packs/..@offset`, and `+skip` for a
/// chunk in a shared frame.
pub(crate) fn chunk_object(c: &ChunkRef) -> String {
    match c.skip {
        None => format!("{}@{}", layout::pack_path(&c.pack), c.offset),
        Some(skip) => format!("{}@{}+{skip}", layout::pack_path(&c.pack), c.offset),
    }
}

fn corrupt(c: &ChunkRef, why: String) -> ChunkError {
    ChunkError::Corrupt {
        id: c.id.to_string(),
        object: chunk_object(c),
        why,
    }
}

/// Where a frame is: pack, offset, stored length.
type FramePlace = (Blake3Id, u64, u32);

/// A reusable chunk reader: one decompressor, one bounded plaintext buffer,
/// one frame buffer, the plaintext of the last shared frame and the pack
/// files it has open (local vaults).
pub struct ChunkReader {
    z: zstd::bulk::Decompressor<'static>,
    buf: Vec<u8>,
    frame: Vec<u8>,
    /// The last shared frame decompressed (pack, offset, stored), and the
    /// length of its plaintext in `shared`, or why it does not decompress:
    /// the chunks of one frame are read one after another, and the frame
    /// is decompressed once for them, sound or not.
    shared_at: Option<(FramePlace, Result<usize, String>)>,
    shared: Vec<u8>,
    files: OpenFiles,
}

impl Default for ChunkReader {
    fn default() -> Self {
        Self::new()
    }
}

/// A frame buffer grown beyond this (only a damaged reference declares such
/// a frame) is not kept for the next chunk.
const FRAME_KEEP: usize = 2 * CHUNK_MAX as usize;

impl ChunkReader {
    /// A reader whose plaintext is at most [`CHUNK_MAX`] bytes.
    pub fn new() -> Self {
        Self {
            z: zstd::bulk::Decompressor::new().expect("zstd decompressor"),
            buf: Vec::new(),
            frame: Vec::new(),
            shared_at: None,
            shared: Vec::new(),
            files: OpenFiles::default(),
        }
    }

    /// Reads, decompresses and checks one chunk; the plaintext is valid until
    /// the next call.
    ///
    /// # Errors
    /// [`ChunkError`]; storage failures other than a short or missing range
    /// are [`ChunkError::Store`].
    pub fn read(&mut self, store: &Store, c: &ChunkRef) -> Result<&[u8], ChunkError> {
        let mut buf = std::mem::take(&mut self.buf);
        let read = self.read_into(store, c, &mut buf);
        self.buf = buf;
        read.map(|n| &self.buf[..n])
    }

    /// As [`ChunkReader::read`], into the front of `out` (grown to the
    /// chunk's size when needed, never beyond [`CHUNK_MAX`]); returns the
    /// plaintext's length.
    ///
    /// # Errors
    /// As [`ChunkReader::read`].
    pub fn read_into(
        &mut self,
        store: &Store,
        c: &ChunkRef,
        out: &mut Vec<u8>,
    ) -> Result<usize, ChunkError> {
        let place = (c.pack, c.offset, c.stored);
        if c.skip.is_some()
            && let Some((at, inflated)) = &self.shared_at
            && *at == place
        {
            let n = inflated.clone().map_err(|why| corrupt(c, why))?;
            let at = in_shared(c, &self.shared[..n])?;
            return Ok(copy_out(&self.shared[at], out));
        }
        let end = check_place(c)?;
        let got = store.read_range_into(
            &mut self.files,
            &layout::pack_path(&c.pack),
            c.offset..end,
            &mut self.frame,
        )?;
        if got != c.stored as usize {
            return Err(corrupt(
                c,
                format!("short read: {got} of {} bytes", c.stored),
            ));
        }
        let plain = if c.skip.is_some() {
            let inflated = inflate_shared(&mut self.z, &self.frame[..got], &mut self.shared);
            self.shared_at = Some((place, inflated.clone()));
            inflated
                .map_err(|why| corrupt(c, why))
                .and_then(|n| in_shared(c, &self.shared[..n]))
                .map(|at| copy_out(&self.shared[at], out))
        } else {
            decode_to(&mut self.z, c, &self.frame[..got], out)
        };
        if self.frame.len() > FRAME_KEEP {
            self.frame = Vec::new();
        }
        plain
    }

    /// Reads the stored zstd frame of chunk `c` from its pack, checking where
    /// it lies (not what it holds: see [`ChunkReader::decode`]).
    ///
    /// # Errors
    /// As [`ChunkReader::read`].
    pub fn fetch(store: &Store, c: &ChunkRef) -> Result<bytes::Bytes, ChunkError> {
        let end = check_place(c)?;
        match store.get_range(&layout::pack_path(&c.pack), c.offset..end) {
            Ok(b) if b.len() == c.stored as usize => Ok(b),
            Ok(b) => Err(corrupt(
                c,
                format!("short read: {} of {} bytes", b.len(), c.stored),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Decompresses `frame` as chunk `c` (exactly one zstd frame, exactly
    /// `c.size` bytes, never more; for a chunk in a shared frame, at most
    /// [`CHUNK_MAX`] bytes holding the chunk at `c.skip`) and checks the
    /// plaintext against `c.id`.
    ///
    /// # Errors
    /// [`ChunkError::Corrupt`] or [`ChunkError::HashMismatch`].
    pub fn decode(&mut self, c: &ChunkRef, frame: &[u8]) -> Result<&[u8], ChunkError> {
        if c.skip.is_none() {
            let n = decode_to(&mut self.z, c, frame, &mut self.buf)?;
            return Ok(&self.buf[..n]);
        }
        // A frame from elsewhere (a bundle): not the cached place's.
        self.shared_at = None;
        let n =
            inflate_shared(&mut self.z, frame, &mut self.shared).map_err(|why| corrupt(c, why))?;
        let at = in_shared(c, &self.shared[..n])?;
        Ok(&self.shared[at])
    }
}

/// Copies a chunk's plaintext to the front of `out`; returns its length.
fn copy_out(plain: &[u8], out: &mut Vec<u8>) -> usize {
    if out.len() < plain.len() {
        out.resize(plain.len(), 0);
    }
    out[..plain.len()].copy_from_slice(plain);
    plain.len()
}

/// Decompresses `frame`, a shared frame, into the front of `out` (grown to
/// [`CHUNK_MAX`] once): exactly one zstd frame, at most [`CHUNK_MAX`] bytes
/// (a frame that inflates further is stopped there). Returns the
/// plaintext's length, or what is wrong with the frame.
fn inflate_shared(
    z: &mut zstd::bulk::Decompressor<'static>,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, String> {
    if zstd::zstd_safe::find_frame_compressed_size(frame).ok() != Some(frame.len()) {
        return Err("is not exactly one zstd frame".into());
    }
    let cap = CHUNK_MAX as usize;
    if out.len() < cap {
        out.resize(cap, 0);
    }
    z.decompress_to_buffer(frame, &mut out[..cap])
        .map_err(|e| format!("its shared frame does not decompress within {cap} bytes: {e}"))
}

/// Where chunk `c` lies in the plaintext of its shared frame, checked
/// against its id.
fn in_shared(c: &ChunkRef, plain: &[u8]) -> Result<std::ops::Range<usize>, ChunkError> {
    let skip = c.skip.unwrap_or(0) as usize;
    let end = skip.saturating_add(c.size as usize);
    if end > plain.len() {
        return Err(corrupt(
            c,
            format!(
                "declares bytes {skip}..{end} of a shared frame that holds {}",
                plain.len()
            ),
        ));
    }
    check_id(c, &plain[skip..end])?;
    Ok(skip..end)
}

/// Whether `plain` hashes to chunk `c`'s id.
fn check_id(c: &ChunkRef, plain: &[u8]) -> Result<(), ChunkError> {
    let actual = Blake3Id::of(plain);
    if actual != c.id {
        return Err(ChunkError::HashMismatch {
            expected: c.id,
            actual,
            object: chunk_object(c),
        });
    }
    Ok(())
}

/// Where chunk `c`'s frame ends in its pack, when its reference places it
/// after the pack magic without overflowing.
fn check_place(c: &ChunkRef) -> Result<u64, ChunkError> {
    if c.offset < PACK_MAGIC.len() as u64 {
        return Err(corrupt(
            c,
            format!("offset {} lies inside the pack magic", c.offset),
        ));
    }
    c.offset
        .checked_add(u64::from(c.stored))
        .ok_or_else(|| corrupt(c, "offset overflows".into()))
}

/// Decompresses `frame` as chunk `c` into the front of `out` (see
/// [`ChunkReader::decode`]); returns the plaintext's length.
fn decode_to(
    z: &mut zstd::bulk::Decompressor<'static>,
    c: &ChunkRef,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, ChunkError> {
    let corrupt = |why: String| corrupt(c, why);
    if c.size > CHUNK_MAX {
        return Err(corrupt(format!(
            "declares {} bytes, more than the {CHUNK_MAX}-byte limit",
            c.size
        )));
    }
    let size = c.size as usize;
    // Exactly one frame (FORMAT.md §12 (read rules)).
    if zstd::zstd_safe::find_frame_compressed_size(frame).ok() != Some(frame.len()) {
        return Err(corrupt("is not exactly one zstd frame".into()));
    }
    if out.len() < size {
        out.resize(size, 0);
    }
    // The output is exactly the declared size: a frame that inflates
    // further is stopped there (a decompression bomb).
    match z.decompress_to_buffer(frame, &mut out[..size]) {
        Ok(n) if n == size => {}
        Ok(n) => return Err(corrupt(format!("inflates to {n} bytes, declared {size}"))),
        Err(e) => {
            return Err(corrupt(format!(
                "does not decompress within its declared {size} bytes: {e}"
            )));
        }
    }
    check_id(c, &out[..size])?;
    Ok(size)
}

/// Why a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A chunk could not be read back.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// Writing the output failed.
    #[error("couldn't write the output: {0}")]
    Write(std::io::Error),
    /// Every chunk checked out but the whole does not match the artifact.
    #[error(
        "restored {path} does not match its recorded digests (size {size}, blake3 {blake3}, sha256 {sha256})"
    )]
    Mismatch {
        /// The artifact.
        path: String,
        /// Bytes restored.
        size: u64,
        /// BLAKE3 of them.
        blake3: Blake3Id,
        /// SHA-256 of them.
        sha256: Sha256Digest,
    },
}

/// Writes artifact `a` to `out`, checking every chunk, then the whole.
///
/// # Errors
/// See [`RestoreError`]; on error, what was written is not the evidence.
pub fn restore(store: &Store, a: &Artifact, out: &mut dyn Write) -> Result<(), RestoreError> {
    let mut r = ChunkReader::new();
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let mut size = 0u64;
    for c in &a.chunks {
        let plain = r.read(store, c)?;
        sha.update(plain);
        b3.update(plain);
        size += plain.len() as u64;
        out.write_all(plain).map_err(RestoreError::Write)?;
    }
    out.flush().map_err(RestoreError::Write)?;
    let (blake3, sha256) = (
        Blake3Id::from(b3.finalize()),
        Sha256Digest(sha.finalize().into()),
    );
    if size != a.size || blake3 != a.blake3 || sha256 != a.sha256 {
        return Err(RestoreError::Mismatch {
            path: a.path.clone(),
            size,
            blake3,
            sha256,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack holding `frames`, stored; the references to its chunks, each
    /// `(plaintext, frame index, skip)`.
    fn stored_pack(
        store: &Store,
        frames: &[Vec<u8>],
        chunks: &[(&[u8], usize, Option<u32>)],
    ) -> Vec<ChunkRef> {
        let mut bytes = PACK_MAGIC.to_vec();
        let mut at = Vec::new();
        for f in frames {
            at.push((bytes.len() as u64, f.len() as u32));
            bytes.extend_from_slice(f);
        }
        let pack = Blake3Id::of(&bytes);
        store
            .put_once(&layout::pack_path(&pack), bytes.into())
            .unwrap();
        chunks
            .iter()
            .map(|&(plain, frame, skip)| ChunkRef {
                id: Blake3Id::of(plain),
                pack,
                offset: at[frame].0,
                stored: at[frame].1,
                size: plain.len() as u32,
                skip,
            })
            .collect()
    }

    /// Chunks of a shared frame read in any order, between chunks of other
    /// frames and after `decode`, are each their own bytes; a damaged shared
    /// frame is a finding for each of its chunks, every time.
    #[test]
    fn shared_frames_read_back_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let (a, b, c): (&[u8], &[u8], &[u8]) = (b"first file\n", b"second file!\n", b"alone\n");
        let shared = zstd::bulk::compress(&[a, b].concat(), 3).unwrap();
        let lone = zstd::bulk::compress(c, 3).unwrap();
        let refs = stored_pack(
            &store,
            &[shared.clone(), lone],
            &[(a, 0, Some(0)), (b, 0, Some(a.len() as u32)), (c, 1, None)],
        );
        let plain = [a, b, c];
        let mut r = ChunkReader::new();
        for k in [1, 0, 2, 0, 1, 1, 2] {
            assert_eq!(r.read(&store, &refs[k]).unwrap(), plain[k], "{k}");
        }
        assert_eq!(r.decode(&refs[0], &shared).unwrap(), a);
        assert_eq!(r.read(&store, &refs[1]).unwrap(), b);
        // The same place with another length is another frame: not cached.
        let longer = ChunkRef {
            stored: refs[1].stored + 1,
            ..refs[1]
        };
        assert!(matches!(
            r.read(&store, &longer),
            Err(ChunkError::Corrupt { .. })
        ));
        assert_eq!(r.read(&store, &refs[0]).unwrap(), a);

        // Not a zstd frame any more: each chunk is corrupt, each time.
        let mut broken = shared.clone();
        broken[0] ^= 1;
        let refs = stored_pack(
            &store,
            &[broken],
            &[(a, 0, Some(0)), (b, 0, Some(a.len() as u32))],
        );
        for k in [0, 1, 0, 1] {
            match r.read(&store, &refs[k]) {
                Err(ChunkError::Corrupt { id, object, why }) => {
                    assert_eq!(id, refs[k].id.to_string());
                    assert!(object.ends_with(&format!("@16+{}", refs[k].skip.unwrap())));
                    assert_eq!(why, "is not exactly one zstd frame");
                }
                other => panic!("{k}: {other:?}"),
            }
        }
    }
}
