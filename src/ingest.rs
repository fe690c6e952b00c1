//! The streaming data path (FORMAT.md §6 (packs)): content-defined chunking,
//! hashing, deduplication, parallel compression and pack writing.
//!
//! Shape: the caller's thread reads each item, cuts it with FastCDC, hashes
//! every chunk (BLAKE3, to name and deduplicate it) and the whole item
//! (BLAKE3); a digest thread computes the item's SHA-256 from the same
//! chunks alongside (inline for items under [`OFFLOAD_MIN`], where the
//! hand-off would cost more than it saves). New chunks go through a bounded
//! channel to compression workers, then to one packer thread that appends zstd frames
//! to the current pack and creates it in the store once it reaches
//! [`PACK_TARGET`]. Bounded channels keep memory flat whatever the evidence
//! size: at most [`QUEUE_DEPTH`] units wait per stage, plus one pack, and
//! each worker's one output buffer of a maximal frame. A unit is one
//! chunk, or several small ones gathered until they reach [`UNIT_BYTES`],
//! copied one after the other into the unit's one buffer (small files are
//! one chunk each: batching them spares an allocation, a channel hand-off
//! and a thread wake-up per file). A unit is compressed into one zstd
//! frame: the small files of a unit share it (FORMAT.md §6 (shared
//! frames)), each placed by its `skip` into the frame's plaintext; a chunk
//! of a larger item is a unit of its own.
//!
//! [`Pipeline::flush`] returns once every chunk submitted so far is in a
//! durable pack; only then may a segment reference them.
//!
//! Re-preserving known data: [`Earlier`] remembers which chunk followed
//! which in earlier artifacts. Where the bytes at the current position hash
//! to the chunk that followed last time, the cut is taken from there instead
//! of running FastCDC over them: every byte is still read and hashed (BLAKE3
//! of the chunk, BLAKE3 and SHA-256 of the item), only the cut-point search
//! is skipped, and the cuts are the ones FastCDC would make (see
//! [`Earlier`]). A file of the size its path's last artifact had is first
//! read against that artifact's chunks ([`Pipeline::capture_file`]): if every
//! chunk is the same and nothing follows, its digests are that artifact's and
//! no whole-item hash is computed; at the first difference it is read again
//! from its start as above.
//!
//! Not here: what an item is (`sources`), sealing segments (`preserve`).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, bounded};
use sha2::Digest as _;

use crate::hash::{Blake3Id, Sha256Digest};
use crate::layout;
use crate::segment::{ChunkRef, MAX_ARTIFACT_CHUNKS};
use crate::store::{Put, Store, StoreError};

/// The first bytes of every pack.
pub const PACK_MAGIC: &[u8; 16] = b"custody-pack-v1\n";
/// A pack is created once it holds this many bytes.
pub const PACK_TARGET: usize = 16 << 20;
/// Largest pack a reader accepts.
pub const MAX_PACK_BYTES: u64 = 128 << 20;
/// FastCDC minimum chunk size.
pub const CHUNK_MIN: u32 = 256 << 10;
/// FastCDC average chunk size.
pub const CHUNK_AVG: u32 = 1 << 20;
/// FastCDC maximum chunk size; also the decompression limit of one chunk.
pub const CHUNK_MAX: u32 = 4 << 20;
/// zstd level for chunks.
pub const ZSTD_LEVEL: i32 = 3;
/// Bytes read from an item at a time, then cut into chunks in place.
const READ_WINDOW: usize = 16 << 20;
/// Units waiting per pipeline stage.
const QUEUE_DEPTH: usize = 4;
/// Items of one chunk smaller than this (small files) are sent to
/// compression together, in units of up to twice this many bytes; a larger
/// chunk, or a chunk of a larger item, is a unit of its own.
pub const UNIT_BYTES: usize = 256 << 10;
// A unit's chunks share one frame, whose plaintext is a chunk's at most.
const _: () = assert!(2 * UNIT_BYTES <= CHUNK_MAX as usize);
/// Most units between submission and their place in a pack, beyond one
/// per compression worker: the queues' depth, and as much again for the
/// units that overtook one still being compressed (what the packer holds
/// while it waits).
const IN_FLIGHT: usize = 3 * QUEUE_DEPTH;
/// Items smaller than this are SHA-256-hashed on the caller's thread.
pub const OFFLOAD_MIN: usize = 1 << 20;

/// Counters of one pipeline run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Plaintext bytes chunked.
    pub bytes_read: u64,
    /// Plaintext bytes of new chunks.
    pub bytes_new: u64,
    /// Plaintext bytes already in the vault or earlier in this run.
    pub bytes_deduplicated: u64,
    /// Pack bytes written.
    pub bytes_stored: u64,
    /// Packs created.
    pub packs: u64,
    /// New chunks.
    pub chunks_new: u64,
    /// Chunks cut where an earlier artifact was cut ([`Earlier`]).
    pub chunks_hinted: u64,
    /// Files found, chunk for chunk, to be the last artifact of their path,
    /// whose digests were taken from it ([`Pipeline::capture_file`]).
    pub items_unchanged: u64,
}

/// One item's content as captured.
#[derive(Debug)]
pub struct Captured {
    /// Bytes read.
    pub size: u64,
    /// BLAKE3 of the bytes.
    pub blake3: Blake3Id,
    /// SHA-256 of the bytes; `None` from a pipeline
    /// [`without_sha256`](Pipeline::without_sha256).
    pub sha256: Option<Sha256Digest>,
    /// Chunk ids and sizes, in order.
    pub chunks: Vec<(Blake3Id, u32)>,
    /// The read error that ended the capture early, if any.
    pub error: Option<std::io::Error>,
    /// Whether reading stopped at [`MAX_ARTIFACT_CHUNKS`] with more to come.
    pub truncated: bool,
}

/// The pipeline stopped: its pack writer failed (for example, the disk is
/// full), and nothing more can be stored in this run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PipelineError(pub String);

#[derive(Debug, thiserror::Error)]
enum PackError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{0} already exists with other bytes than its name promises: the vault storage was tampered with; run `custody verify`"
    )]
    Planted(String),
}

/// Chunks sent to compression together: the unit's place in submission
/// order, the chunks' bytes one after the other, and the chunks (id, size)
/// in that order.
type Unit = (u64, Bytes, Vec<(Blake3Id, u32)>);
/// A unit compressed: its frame, and the chunks the frame holds in order
/// (id, size). A unit of several chunks is one frame they share.
type Compressed = (Vec<u8>, Vec<(Blake3Id, u32)>);

enum ToPacker {
    Unit {
        /// Its place in submission order, from 1.
        seq: u64,
        frame: Compressed,
    },
    Flush {
        submitted: u64,
        done: Sender<Result<(), String>>,
    },
    /// A unit could not be compressed: the packer stops with this, as
    /// after a failed write (it would otherwise wait for that unit for
    /// ever).
    Failed(String),
}

/// What earlier artifacts tell a new capture: where known data was cut, and
/// what each path held last.
///
/// **Cuts.** Why a hinted cut equals FastCDC's: FastCDC's decision to cut at
/// `p`, starting from `pos`, depends only on the bytes `pos..p` (a cut before
/// the end of the visible data is a gear-hash match or the maximum size, and
/// the masks it uses at each offset do not depend on how much data follows).
/// So a chunk that was followed by more data in some artifact is a cut of its
/// own bytes: wherever those bytes (same BLAKE3) start at a cut, FastCDC cuts
/// after them again. An artifact's last chunk was cut by its end, not its
/// content, and is never used as a hint.
///
/// **Unchanged files.** A file whose bytes are, chunk for chunk, those of
/// the last artifact of its path has that artifact's digests: chunk ids name
/// content (deduplication rests on it already), so the bytes are the same
/// ([`Pipeline::capture_file`]).
#[derive(Debug, Default)]
pub struct Earlier {
    /// Chunk id to the chunk that followed it, when that one was not last.
    next: HashMap<Blake3Id, (Blake3Id, u32)>,
    /// Artifact path to what is known of it.
    paths: HashMap<String, PathMemo>,
}

#[derive(Debug, Default)]
struct PathMemo {
    /// The first chunk of the path's last artifact of more than one chunk.
    first: Option<(Blake3Id, u32)>,
    /// The path's last artifact whose digests are its chunks' (not failed).
    last: Option<Whole>,
}

/// An earlier artifact's content: its digests and its chunks, in order.
#[derive(Debug)]
struct Whole {
    size: u64,
    blake3: Blake3Id,
    sha256: Sha256Digest,
    chunks: Box<[(Blake3Id, u32)]>,
}

impl Earlier {
    /// Learns one artifact's cuts from its chunk list (id, plaintext size).
    pub fn learn(&mut self, path: &str, chunks: impl ExactSizeIterator<Item = (Blake3Id, u32)>) {
        let n = chunks.len();
        let mut prev: Option<Blake3Id> = None;
        for (i, c) in chunks.enumerate() {
            if i + 1 == n {
                break;
            }
            match prev {
                None => self.memo(path).first = Some(c),
                Some(p) => {
                    self.next.insert(p, c);
                }
            }
            prev = Some(c.0);
        }
    }

    /// Learns an artifact of the whole of `path` whose digests were computed
    /// from its chunks (any artifact but a failed one): the file's content
    /// when it was captured last.
    pub fn learn_whole(
        &mut self,
        path: &str,
        size: u64,
        blake3: Blake3Id,
        sha256: Sha256Digest,
        chunks: impl IntoIterator<Item = (Blake3Id, u32)>,
    ) {
        let chunks: Box<[_]> = chunks.into_iter().collect();
        // Only a chunk list this pipeline could have cut, whose sizes add up
        // to the size recorded (a forged entry may claim anything).
        let sound = !chunks.is_empty()
            && chunks.iter().all(|&(_, n)| (1..=CHUNK_MAX).contains(&n))
            && chunks.iter().map(|&(_, n)| u64::from(n)).sum::<u64>() == size;
        let last = sound.then_some(Whole {
            size,
            blake3,
            sha256,
            chunks,
        });
        if last.is_some() || self.paths.contains_key(path) {
            self.memo(path).last = last;
        }
    }

    fn memo(&mut self, path: &str) -> &mut PathMemo {
        if !self.paths.contains_key(path) {
            return self.paths.entry(path.to_owned()).or_default();
        }
        self.paths.get_mut(path).expect("just looked up")
    }

    fn first(&self, path: &str) -> Option<(Blake3Id, u32)> {
        self.paths.get(path)?.first
    }

    fn after(&self, id: &Blake3Id) -> Option<(Blake3Id, u32)> {
        self.next.get(id).copied()
    }

    fn last(&self, path: &str) -> Option<&Whole> {
        self.paths.get(path)?.last.as_ref()
    }
}

/// A flush asked for with [`Pipeline::flush_later`].
#[must_use = "a flush is only known to be done once waited for"]
pub struct FlushTicket {
    done: Receiver<Result<(), String>>,
    /// Disconnected once the packer has stopped: a flush still in its
    /// channel then gets no answer (and the channel, which the pipeline
    /// keeps, does not drop it), so waiting on `done` alone would block.
    gone: Receiver<()>,
    stopped: Arc<std::sync::OnceLock<String>>,
}

impl FlushTicket {
    /// Waits until every chunk submitted before the ticket was taken is in
    /// a stored pack.
    ///
    /// # Errors
    /// The storage failure that stopped the packer.
    pub fn wait(self) -> Result<(), PipelineError> {
        self.answer().unwrap_or_else(|()| {
            Err(PipelineError(
                self.stopped
                    .get()
                    .cloned()
                    .unwrap_or_else(|| "the pack writer stopped".into()),
            ))
        })
    }

    /// The packer's answer, or `Err(())` if it stopped without one.
    fn answer(&self) -> Result<Result<(), PipelineError>, ()> {
        let answered = crossbeam_channel::select! {
            recv(self.done) -> r => r.ok(),
            // Answered just before it stopped, or never.
            recv(self.gone) -> _ => self.done.try_recv().ok(),
        };
        answered.map(|r| r.map_err(PipelineError)).ok_or(())
    }
}

/// Where chunks are stored: in the vault already, or in a pack the
/// pipeline wrote ([`Pipeline::locator`]).
#[derive(Clone)]
pub struct Locator<'env> {
    known: &'env HashMap<Blake3Id, ChunkRef>,
    placed: Arc<Mutex<HashMap<Blake3Id, ChunkRef>>>,
}

impl Locator<'_> {
    /// The chunk's place, once its pack is stored (after a flush).
    pub fn locate(&self, id: &Blake3Id) -> Option<ChunkRef> {
        locate_in(self.known, &self.placed, id)
    }

    /// The chunks the pipeline stored, taken out (leaving none to locate):
    /// for the vault's chunk index once the run is over, however it ended.
    pub(crate) fn into_placed(self) -> HashMap<Blake3Id, ChunkRef> {
        let mut placed = self
            .placed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut *placed)
    }
}

fn locate_in(
    known: &HashMap<Blake3Id, ChunkRef>,
    placed: &Mutex<HashMap<Blake3Id, ChunkRef>>,
    id: &Blake3Id,
) -> Option<ChunkRef> {
    known
        .get(id)
        .copied()
        .or_else(|| placed.lock().expect("not poisoned").get(id).copied())
}

/// Work for the digest thread: the chunks of one item, then its end.
enum ToDigest {
    Data(Bytes),
    End(Sender<Sha256Digest>),
}

/// The running pipeline; lives inside a [`std::thread::scope`].
pub struct Pipeline<'scope, 'env> {
    to_workers: Option<Sender<Unit>>,
    to_digest: Option<Sender<ToDigest>>,
    /// Whether items are SHA-256-hashed at all.
    sha256: bool,
    to_packer: Sender<ToPacker>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    packer: Option<ScopedJoinHandle<'scope, Result<(), String>>>,
    known: &'env HashMap<Blake3Id, ChunkRef>,
    earlier: Option<&'env Earlier>,
    placed: Arc<Mutex<HashMap<Blake3Id, ChunkRef>>>,
    shared: Arc<Mutex<Stats>>,
    /// One token per unit submitted and not yet placed by the packer.
    in_flight: Sender<()>,
    /// Small chunks not yet submitted, and their bytes one after the other
    /// (copied straight from the read window: no allocation per file).
    unit: Vec<(Blake3Id, u32)>,
    unit_bytes: Vec<u8>,
    /// Why the packer stopped, once it has.
    stopped: Arc<std::sync::OnceLock<String>>,
    /// Disconnected once the packer has stopped (see [`FlushTicket`]).
    gone: Receiver<()>,
    seen: HashSet<Blake3Id>,
    submitted: u64,
    stats: Stats,
    failure: Option<String>,
    window: Vec<u8>,
}

impl<'scope, 'env> Pipeline<'scope, 'env> {
    /// Starts workers and the packer. `known` are chunks already in the vault.
    pub fn start(
        scope: &'scope Scope<'scope, 'env>,
        store: Store,
        known: &'env HashMap<Blake3Id, ChunkRef>,
    ) -> Self {
        let n = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 8);
        let (to_workers, work_rx) = bounded::<Unit>(QUEUE_DEPTH);
        let (to_digest, digest_rx) = bounded::<ToDigest>(QUEUE_DEPTH);
        scope.spawn(move || digest_worker(digest_rx));
        let (to_packer, pack_rx) = bounded::<ToPacker>(QUEUE_DEPTH);
        let workers = (0..n)
            .map(|_| {
                let rx = work_rx.clone();
                let tx = to_packer.clone();
                scope.spawn(move || compress_worker(rx, tx))
            })
            .collect();
        let placed = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::new(Mutex::new(Stats::default()));
        let (in_flight, placing) = bounded::<()>(n + IN_FLIGHT);
        let stopped = Arc::new(std::sync::OnceLock::new());
        // Held by the packer thread, dropped when it ends however it ends.
        let (alive, gone) = bounded::<()>(0);
        let packer = {
            let placed = placed.clone();
            let shared = shared.clone();
            let stopped = stopped.clone();
            scope.spawn(move || {
                let _alive = alive;
                packer(&store, pack_rx, &placing, placed, shared, &stopped)
            })
        };
        Self {
            to_workers: Some(to_workers),
            to_digest: Some(to_digest),
            sha256: true,
            to_packer,
            workers,
            packer: Some(packer),
            known,
            earlier: None,
            placed,
            shared,
            in_flight,
            unit: Vec::new(),
            unit_bytes: Vec::new(),
            stopped,
            gone,
            seen: HashSet::new(),
            submitted: 0,
            stats: Stats::default(),
            failure: None,
            window: Vec::new(),
        }
    }

    /// Uses what earlier artifacts tell ([`Earlier`]) in
    /// [`Pipeline::capture_at`] and [`Pipeline::capture_file`].
    #[must_use]
    pub fn with_earlier(mut self, earlier: &'env Earlier) -> Self {
        self.earlier = Some(earlier);
        self
    }

    /// Captures items without their SHA-256 ([`Captured::sha256`] is
    /// `None`), for an agent: its claim is the BLAKE3 of each chunk and of
    /// the item, and the server computes the SHA-256 from what it received
    /// (FORMAT.md §9.6), so the host being preserved does not pay for it.
    #[must_use]
    pub fn without_sha256(mut self) -> Self {
        self.sha256 = false;
        // The digest thread ends when its channel closes.
        self.to_digest = None;
        self
    }

    /// Queues chunk `id` for compression if neither the vault nor this run
    /// has it yet; blocks when the pipeline is full. Only a chunk that is a
    /// whole item (`whole`) joins the unit being gathered, to share its
    /// frame: a chunk of a larger item is a unit of its own, so an
    /// artifact with a chunk in a shared frame has no other chunk, and a
    /// verifier that takes the artifacts of a frame together decompresses
    /// it once. `owned` is `data` already copied out of the read window,
    /// if it was (for the digest thread).
    ///
    /// # Errors
    /// When the packer has stopped (a storage failure); the cause comes from
    /// [`Pipeline::flush`].
    fn add_hashed(
        &mut self,
        id: Blake3Id,
        data: &[u8],
        owned: Option<Bytes>,
        whole: bool,
    ) -> Result<(Blake3Id, u32), PipelineError> {
        let size = u32::try_from(data.len()).expect("chunks are at most CHUNK_MAX");
        self.stats.bytes_read += u64::from(size);
        if self.known.contains_key(&id) || !self.seen.insert(id) {
            self.stats.bytes_deduplicated += u64::from(size);
            return Ok((id, size));
        }
        self.stats.bytes_new += u64::from(size);
        self.stats.chunks_new += 1;
        // A large chunk is a unit of its own, so a unit holds at most one
        // maximal chunk's bytes, as a single chunk did before units; so is
        // a chunk of a larger item.
        if data.len() >= UNIT_BYTES || !whole {
            self.submit()?;
            let bytes = owned.unwrap_or_else(|| Bytes::copy_from_slice(data));
            self.send_unit(bytes, vec![(id, size)])?;
            return Ok((id, size));
        }
        if self.unit_bytes.capacity() == 0 {
            self.unit_bytes.reserve_exact(2 * UNIT_BYTES);
        }
        self.unit_bytes.extend_from_slice(data);
        self.unit.push((id, size));
        if self.unit_bytes.len() >= UNIT_BYTES {
            self.submit()?;
        }
        Ok((id, size))
    }

    /// Sends the chunks gathered so far to compression, as one unit.
    fn submit(&mut self) -> Result<(), PipelineError> {
        if self.unit.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.unit);
        let bytes = Bytes::from(std::mem::take(&mut self.unit_bytes));
        self.send_unit(bytes, chunks)
    }

    /// Sends one unit to compression; blocks while the pipeline is full.
    fn send_unit(
        &mut self,
        bytes: Bytes,
        chunks: Vec<(Blake3Id, u32)>,
    ) -> Result<(), PipelineError> {
        self.submitted += 1;
        if self.in_flight.send(()).is_err() {
            return Err(PipelineError(self.packer_error()));
        }
        let tx = self.to_workers.as_ref().expect("pipeline running");
        if tx.send((self.submitted, bytes, chunks)).is_err() {
            return Err(PipelineError(self.packer_error()));
        }
        Ok(())
    }

    /// Reads `r` to its end (or first error), chunking and hashing it.
    ///
    /// # Errors
    /// When the pipeline has stopped. Read errors are returned in
    /// [`Captured::error`] with what was read before them.
    pub fn capture(
        &mut self,
        r: impl Read,
        on_bytes: impl FnMut(u64),
    ) -> Result<Captured, PipelineError> {
        self.capture_at(r, None, on_bytes)
    }

    /// [`Pipeline::capture`] of the item found at `path`, cut where earlier
    /// artifacts of the same content were cut (see [`Earlier`]).
    ///
    /// # Errors
    /// As [`Pipeline::capture`].
    pub fn capture_at(
        &mut self,
        mut r: impl Read,
        path: Option<&str>,
        mut on_bytes: impl FnMut(u64),
    ) -> Result<Captured, PipelineError> {
        let cuts = self.earlier;
        let mut hint = cuts.zip(path).and_then(|(c, p)| c.first(p));
        // SHA-256 here, or on the digest thread once the item proves large.
        let mut sha: Option<sha2::Sha256> = None;
        let mut b3 = blake3::Hasher::new();
        // Where the first chunk is in the window while it is held back from
        // `b3`: an item of one chunk (every small file) has the chunk's
        // BLAKE3 as its own, so it is hashed once.
        let mut held: Option<std::ops::Range<usize>> = None;
        let mut chunks = Vec::new();
        let mut size = 0u64;
        let mut error = None;
        let mut truncated = false;
        let mut failed = None;
        // A large reusable window, cut in place: bytes are moved only when
        // a window is refilled (at most one maximal chunk's worth), not per
        // chunk as a small streaming buffer would.
        let mut window = std::mem::take(&mut self.window);
        window.resize(READ_WINDOW, 0);
        let mut len = 0usize;
        let mut eof = false;
        let mut first = true;
        'fill: loop {
            while !eof && len < window.len() {
                match r.read(&mut window[len..]) {
                    Ok(0) => eof = true,
                    Ok(n) => len += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        error = Some(e);
                        eof = true;
                    }
                }
            }
            if first {
                first = false;
                if self.sha256 && (self.to_digest.is_none() || (eof && len < OFFLOAD_MIN)) {
                    sha = Some(sha2::Sha256::new());
                }
            }
            // Made when first needed: it derives its tables, which is most of
            // the cost of a small file's cut.
            let mut cdc = None;
            let mut pos = 0usize;
            // Cut only where a whole maximal chunk is visible, or at the end:
            // the same cut points as reading the item in one piece.
            while pos < len && (eof || len - pos >= CHUNK_MAX as usize) {
                if chunks.len() == MAX_ARTIFACT_CHUNKS {
                    truncated = true;
                    break 'fill;
                }
                // The hinted chunk if the bytes here are that chunk, else
                // FastCDC's cut. A hint comes from the log, which an
                // insider can forge: only a size FastCDC could have cut is
                // taken (an empty chunk would never advance, a larger one
                // than CHUNK_MAX could never be read back).
                let hinted = hint.take().and_then(|(id, n)| {
                    let end = pos + n as usize;
                    ((1..=CHUNK_MAX).contains(&n)
                        && end <= len
                        && Blake3Id::of(&window[pos..end]) == id)
                        .then_some((id, end))
                });
                let (id, end) = match hinted {
                    Some(h) => {
                        self.stats.chunks_hinted += 1;
                        h
                    }
                    None => {
                        // What is left, at the end, when FastCDC would not
                        // cut it (its minimum size).
                        let end = if len - pos <= CHUNK_MIN as usize {
                            len
                        } else {
                            cdc.get_or_insert_with(|| {
                                fastcdc::v2020::FastCDC::new(
                                    &window[..len],
                                    CHUNK_MIN,
                                    CHUNK_AVG,
                                    CHUNK_MAX,
                                )
                            })
                            .cut(pos, len - pos)
                            .1
                        };
                        (Blake3Id::of(&window[pos..end]), end)
                    }
                };
                hint = cuts.and_then(|c| c.after(&id));
                let data = &window[pos..end];
                let mut owned = None;
                match (&mut sha, &self.to_digest) {
                    (Some(h), _) => h.update(data),
                    (None, Some(tx)) => {
                        let b = Bytes::copy_from_slice(data);
                        if tx.send(ToDigest::Data(b.clone())).is_err() {
                            failed = Some(PipelineError("the digest thread stopped".into()));
                            break 'fill;
                        }
                        owned = Some(b);
                    }
                    // Without SHA-256: nothing to do.
                    (None, None) => {}
                }
                if size == 0 && held.is_none() {
                    held = Some(pos..end);
                } else {
                    if let Some(h) = held.take() {
                        b3.update(&window[h]);
                    }
                    b3.update(data);
                }
                size += data.len() as u64;
                on_bytes(data.len() as u64);
                let whole = size == data.len() as u64 && eof && end == len;
                match self.add_hashed(id, data, owned, whole) {
                    Ok(c) => chunks.push(c),
                    Err(e) => {
                        failed = Some(e);
                        break 'fill;
                    }
                }
                pos = end;
            }
            if eof {
                break;
            }
            // The held chunk's bytes are about to move: hash them now. (It
            // has been followed by another before a refill, since a full
            // window holds several maximal chunks; this keeps it so.)
            if let Some(h) = held.take() {
                b3.update(&window[h]);
            }
            window.copy_within(pos..len, 0);
            len -= pos;
        }
        // An item of one chunk has that chunk's BLAKE3; any other is hashed
        // whole.
        let single = matches!((&held, chunks.as_slice()), (Some(_), [_]));
        if let Some(h) = held.filter(|_| !single) {
            b3.update(&window[h]);
        }
        self.window = window;
        // The digest thread's state is per item: end it on every path.
        let sha256 = match sha {
            Some(h) => Some(Sha256Digest(h.finalize().into())),
            None if !self.sha256 => None,
            None => {
                let (tx, rx) = bounded(1);
                let sent = self
                    .to_digest
                    .as_ref()
                    .is_some_and(|d| d.send(ToDigest::End(tx)).is_ok());
                match rx.recv() {
                    Ok(d) if sent => Some(d),
                    _ => {
                        self.to_digest = None;
                        return Err(failed
                            .unwrap_or_else(|| PipelineError("the digest thread stopped".into())));
                    }
                }
            }
        };
        if let Some(e) = failed {
            return Err(e);
        }
        let blake3 = if single {
            chunks[0].0
        } else {
            b3.finalize().into()
        };
        Ok(Captured {
            size,
            blake3,
            sha256,
            chunks,
            error,
            truncated,
        })
    }

    /// [`Pipeline::capture_at`] of a regular file at `path` that had `size`
    /// bytes when opened. When the last artifact of `path` had as many bytes,
    /// the file is first read against that artifact's chunks, each checked
    /// by its BLAKE3 and already in the vault: if every one is there, in
    /// order, and nothing follows, the file's content is that artifact's and
    /// so are its digests, taken from it without hashing the whole again.
    /// At the first difference the file is read again from where it was,
    /// like any other. `size` only chooses to try (a file appended to is not
    /// read twice); it is never taken as evidence of anything.
    ///
    /// # Errors
    /// As [`Pipeline::capture`].
    pub fn capture_file(
        &mut self,
        mut r: impl Read + Seek,
        path: &str,
        size: u64,
        mut on_bytes: impl FnMut(u64),
    ) -> Result<Captured, PipelineError> {
        let last = self
            .earlier
            .and_then(|e| e.last(path))
            .filter(|w| w.size == size);
        if let Some((w, Ok(start))) = last.map(|w| (w, r.stream_position())) {
            let mut shown = 0u64;
            if self.same_as(&mut r, w, &mut |n| {
                shown += n;
                on_bytes(n);
            }) {
                self.stats.bytes_read += w.size;
                self.stats.bytes_deduplicated += w.size;
                self.stats.items_unchanged += 1;
                return Ok(Captured {
                    size: w.size,
                    blake3: w.blake3,
                    sha256: self.sha256.then_some(w.sha256),
                    chunks: w.chunks.to_vec(),
                    error: None,
                    truncated: false,
                });
            }
            // Read again: progress resumes past what was shown already.
            let mut on_bytes = move |n: u64| {
                let skip = n.min(shown);
                shown -= skip;
                if n > skip {
                    on_bytes(n - skip);
                }
            };
            if let Err(e) = r.seek(std::io::SeekFrom::Start(start)) {
                // Nothing was taken from the file yet: a capture of nothing,
                // ended by the error.
                return Ok(Captured {
                    size: 0,
                    blake3: Blake3Id::of(b""),
                    sha256: self.sha256.then(|| Sha256Digest::of(b"")),
                    chunks: Vec::new(),
                    error: Some(e),
                    truncated: false,
                });
            }
            return self.capture_at(r, Some(path), &mut on_bytes);
        }
        self.capture_at(r, Some(path), on_bytes)
    }

    /// Whether `r` holds exactly the chunks of `w`, each in the vault
    /// already, and nothing more; reads until the first difference.
    fn same_as(&mut self, r: &mut impl Read, w: &Whole, on_bytes: &mut impl FnMut(u64)) -> bool {
        let mut window = std::mem::take(&mut self.window);
        window.resize(READ_WINDOW, 0);
        let (mut pos, mut len) = (0usize, 0usize);
        let same = w.chunks.iter().all(|&(id, n)| {
            let n = n as usize;
            if len - pos < n {
                window.copy_within(pos..len, 0);
                (pos, len) = (0, len - pos);
                // At most one maximal chunk more than needed is read, so a
                // file that differs early is not read far ahead.
                let want = (n + CHUNK_MAX as usize).min(window.len());
                if !matches!(fill(r, &mut window[..want], &mut len, n), Ok(true)) || len < n {
                    return false;
                }
            }
            let ok = self.known.contains_key(&id) && Blake3Id::of(&window[pos..pos + n]) == id;
            pos += n;
            on_bytes(n as u64);
            ok
        }) && pos == len
            && matches!(fill(r, &mut window[..1], &mut 0, 1), Ok(false));
        self.window = window;
        same
    }

    /// Waits until every chunk queued so far is in a durable pack, writing
    /// the current partial pack if needed.
    ///
    /// # Errors
    /// The storage failure that stopped the packer.
    pub fn flush(&mut self) -> Result<(), PipelineError> {
        let ticket = self.flush_later()?;
        ticket
            .answer()
            .unwrap_or_else(|()| Err(PipelineError(self.packer_error())))
    }

    /// Asks for a flush without waiting for it: the ticket is done when
    /// every chunk submitted so far is in a stored pack. Reading can go on
    /// meanwhile; tickets complete in the order they were taken.
    ///
    /// # Errors
    /// The storage failure that stopped the packer.
    pub fn flush_later(&mut self) -> Result<FlushTicket, PipelineError> {
        self.submit()?;
        let (done_tx, done_rx) = bounded(1);
        let msg = ToPacker::Flush {
            submitted: self.submitted,
            done: done_tx,
        };
        if self.to_packer.send(msg).is_err() {
            return Err(PipelineError(self.packer_error()));
        }
        Ok(FlushTicket {
            done: done_rx,
            gone: self.gone.clone(),
            stopped: self.stopped.clone(),
        })
    }

    /// Finds where chunks are stored, from another thread.
    pub fn locator(&self) -> Locator<'env> {
        Locator {
            known: self.known,
            placed: self.placed.clone(),
        }
    }

    fn packer_error(&mut self) -> String {
        self.to_workers.take();
        match self.packer.take().map(ScopedJoinHandle::join) {
            Some(Ok(Err(e))) => {
                self.failure = Some(e.clone());
                e
            }
            Some(Err(_)) => "the pack writer panicked".into(),
            _ => self
                .failure
                .clone()
                .unwrap_or_else(|| "the pack writer stopped".into()),
        }
    }

    /// Where a chunk is stored: in the vault already, or in a pack this run
    /// wrote (after a [`Pipeline::flush`]).
    pub fn locate(&self, id: &Blake3Id) -> Option<ChunkRef> {
        locate_in(self.known, &self.placed, id)
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        let shared = *self.shared.lock().expect("not poisoned");
        Stats {
            bytes_stored: shared.bytes_stored,
            packs: shared.packs,
            ..self.stats
        }
    }

    /// Flushes and stops the threads.
    ///
    /// # Errors
    /// As [`Pipeline::flush`].
    pub fn finish(mut self) -> Result<Stats, PipelineError> {
        let flushed = self.flush();
        self.to_workers.take();
        self.to_digest.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let stats = self.stats();
        drop(self.to_packer);
        if let Some(p) = self.packer.take() {
            match p.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(PipelineError(e)),
                Err(_) => return Err(PipelineError("the pack writer panicked".into())),
            }
        }
        flushed.map(|()| stats)
    }
}

/// Reads into `window[*len..]` until at least `want` bytes are there (or
/// the window is full): `Ok(false)` if the reader ended first.
fn fill(
    r: &mut impl Read,
    window: &mut [u8],
    len: &mut usize,
    want: usize,
) -> std::io::Result<bool> {
    while *len < want.min(window.len()) {
        match r.read(&mut window[*len..]) {
            Ok(0) => return Ok(false),
            Ok(n) => *len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn digest_worker(rx: Receiver<ToDigest>) {
    let mut sha = sha2::Sha256::new();
    for m in rx {
        match m {
            ToDigest::Data(b) => sha.update(&b),
            ToDigest::End(reply) => {
                let h = std::mem::replace(&mut sha, sha2::Sha256::new());
                let _ = reply.send(Sha256Digest(h.finalize().into()));
            }
        }
    }
}

/// Compresses each unit into one zstd frame: a unit of several small
/// chunks shares a frame (FORMAT.md §6), which costs one frame's set-up
/// instead of one per chunk and compresses them with each other's history.
fn compress_worker(rx: Receiver<Unit>, tx: Sender<ToPacker>) {
    let mut z = zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd level 3 is valid");
    z.include_contentsize(true)
        .expect("zstd accepts the content-size flag");
    // Room for any frame, reused: each frame sent on is a copy of its
    // length. Sent as zstd returns it, a frame was an allocation of the
    // unit's compression bound, and that memory stayed resident: peak RSS
    // on the bench corpus 99 to 85 MiB. Sending this buffer on when full
    // and making a new one was worse still (1 GiB of random bytes: 130 to
    // 139 MiB, against 101 to 107 with copies).
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(CHUNK_MAX as usize));
    for (seq, bytes, chunks) in rx {
        // What no reader would accept must never be written.
        let frame = if bytes.len() > CHUNK_MAX as usize {
            Err(format!(
                "a unit of {} bytes, more than the {CHUNK_MAX} a frame may hold",
                bytes.len()
            ))
        } else {
            out.clear();
            z.compress_to_buffer(&bytes[..], &mut out)
                .map(|_| out[..].to_vec())
                .map_err(|e| format!("zstd could not compress a unit: {e}"))
        };
        drop(bytes);
        let msg = match frame {
            Ok(frame) => ToPacker::Unit {
                seq,
                frame: (frame, chunks),
            },
            Err(e) => {
                let _ = tx.send(ToPacker::Failed(e));
                return;
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

/// The pack being filled. Its buffer is made with its first frame, so after
/// the previous pack's is freed and from the same memory; made beforehand,
/// two pack buffers were resident in turn.
#[derive(Default)]
struct PackBuf {
    bytes: Vec<u8>,
    /// The chunks in `bytes`, placed but for the pack id.
    entries: Vec<ChunkRef>,
}

impl PackBuf {
    /// Appends a frame; returns its offset in the pack.
    fn append(&mut self, frame: &[u8]) -> u64 {
        if self.bytes.is_empty() {
            // The last frame may take the pack past its target by as much
            // as a frame can hold: a maximal chunk that zstd could not shrink.
            self.bytes
                .reserve_exact(PACK_TARGET + zstd::zstd_safe::compress_bound(CHUNK_MAX as usize));
            self.bytes.extend_from_slice(PACK_MAGIC);
        }
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(frame);
        offset
    }
}

fn packer(
    store: &Store,
    rx: Receiver<ToPacker>,
    placing: &Receiver<()>,
    placed: Arc<Mutex<HashMap<Blake3Id, ChunkRef>>>,
    stats: Arc<Mutex<Stats>>,
    stopped: &std::sync::OnceLock<String>,
) -> Result<(), String> {
    let mut buf = PackBuf::default();
    // Chunks 1..=received are in packs or in `buf`; `early` holds those
    // that overtook one still being compressed (workers run in parallel,
    // and reading goes on past a flush).
    let mut received = 0u64;
    let mut early: HashMap<u64, Compressed> = HashMap::new();
    // Flushes asked for, in order; each is done once the chunks submitted
    // before it have arrived and are written.
    let mut pending: std::collections::VecDeque<(u64, Sender<Result<(), String>>)> =
        std::collections::VecDeque::new();
    let write = |buf: &mut PackBuf| -> Result<(), PackError> {
        if buf.entries.is_empty() {
            return Ok(());
        }
        let full = std::mem::take(buf);
        let id = Blake3Id::of(&full.bytes);
        let len = full.bytes.len() as u64;
        // Durable before any segment can name it (FORMAT.md §11 (write ordering)).
        let key = layout::pack_path(&id);
        let bytes = Bytes::from(full.bytes);
        if store.put_once(&key, bytes.clone())? == Put::AlreadyExists {
            // Same name, so the same bytes, unless someone planted an object
            // under a name they predicted: check before relying on it.
            let existing = store.get(&key, MAX_PACK_BYTES)?;
            if existing.as_deref() != Some(&bytes[..]) {
                return Err(PackError::Planted(key));
            }
        }
        let mut placed = placed.lock().expect("not poisoned");
        for c in full.entries {
            placed.insert(c.id, ChunkRef { pack: id, ..c });
        }
        let mut s = stats.lock().expect("not poisoned");
        s.bytes_stored += len;
        s.packs += 1;
        Ok(())
    };
    // Fails every flush still waiting, and the packer.
    // Tickets still in the channel learn why from `stopped`, set before
    // the packer ends (which wakes their waiters: `FlushTicket::gone`).
    let fail = |pending: &mut std::collections::VecDeque<(u64, Sender<Result<(), String>>)>,
                e: String| {
        let _ = stopped.set(e.clone());
        for (_, done) in pending.drain(..) {
            let _ = done.send(Err(e.clone()));
        }
        Err(e)
    };
    for msg in rx {
        match msg {
            ToPacker::Unit { seq, frame } => {
                early.insert(seq, frame);
            }
            ToPacker::Flush { submitted, done } => pending.push_back((submitted, done)),
            ToPacker::Failed(e) => return fail(&mut pending, e),
        }
        // Chunks go into packs in the order they were submitted, and a
        // flush cuts the pack exactly after the chunks submitted before it:
        // the packs do not depend on which worker finished first.
        loop {
            while pending.front().is_some_and(|(s, _)| *s <= received) {
                let (_, done) = pending.pop_front().expect("checked");
                let r = write(&mut buf).map_err(|e| e.to_string());
                let failed = r.clone().err();
                let _ = done.send(r);
                if let Some(e) = failed {
                    return fail(&mut pending, e);
                }
            }
            let Some(compressed) = early.remove(&(received + 1)) else {
                break;
            };
            received += 1;
            // Its token: one more unit may be submitted.
            let _ = placing.try_recv();
            let (frame, chunks) = compressed;
            let offset = buf.append(&frame);
            let shared = chunks.len() > 1;
            let mut skip = 0u32;
            for (id, size) in chunks {
                buf.entries.push(ChunkRef {
                    id,
                    // Named once the pack is written.
                    pack: Blake3Id([0; 32]),
                    offset,
                    stored: frame.len() as u32,
                    size,
                    skip: shared.then_some(skip),
                });
                skip += size;
            }
            if buf.bytes.len() >= PACK_TARGET
                && let Err(e) = write(&mut buf)
            {
                return fail(&mut pending, e.to_string());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic incompressible bytes (xorshift).
    pub(crate) fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A unit no frame may hold stops the pipeline with why, as a failed
    /// pack write does: the worker sends the failure instead of panicking,
    /// and the packer answers the flush waiting behind the unit with it,
    /// and ends (before, it waited for that unit for ever).
    #[test]
    fn a_unit_that_cannot_be_compressed_stops_the_packer_with_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let (unit_tx, unit_rx) = bounded::<Unit>(1);
        let (pack_tx, pack_rx) = bounded::<ToPacker>(4);
        let (token_tx, placing) = bounded::<()>(4);
        let placed = Arc::new(Mutex::new(HashMap::new()));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let stopped = std::sync::OnceLock::new();
        let (store, placing, stopped) = (&store, &placing, &stopped);
        std::thread::scope(|s| {
            let worker_tx = pack_tx.clone();
            s.spawn(move || compress_worker(unit_rx, worker_tx));
            let packer = s.spawn(move || packer(store, pack_rx, placing, placed, stats, stopped));
            token_tx.send(()).unwrap();
            let (done_tx, done_rx) = bounded(1);
            let flush = ToPacker::Flush {
                submitted: 1,
                done: done_tx,
            };
            pack_tx.send(flush).unwrap();
            // The worker's is the packer's only sender left.
            drop(pack_tx);
            let too_big = Bytes::from(vec![0u8; CHUNK_MAX as usize + 1]);
            let chunks = vec![(Blake3Id::of(&too_big), CHUNK_MAX + 1)];
            unit_tx.send((1, too_big, chunks)).unwrap();
            let answer = done_rx.recv_timeout(std::time::Duration::from_secs(60));
            let why = answer.expect("the flush is answered").unwrap_err();
            assert!(
                why.contains("more than the 4194304 a frame may hold"),
                "{why}"
            );
            assert_eq!(packer.join().unwrap().unwrap_err(), why);
            assert_eq!(stopped.get(), Some(&why));
        });
    }

    /// Cutting in a large window gives exactly the cut points of reading the
    /// item as one stream, across window refills and short reads, and the
    /// item's digests.
    #[test]
    fn window_cuts_match_the_streaming_chunker() {
        struct Dribble<'a>(&'a [u8]);
        impl Read for Dribble<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(777_777);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let known = HashMap::new();
        for (n, seed) in [
            (0, 1),
            (1000, 2),
            (CHUNK_MIN as usize, 5),
            (CHUNK_MIN as usize + 1, 6),
            (CHUNK_MAX as usize + 5, 3),
            (READ_WINDOW * 2 + 12_345, 4),
        ] {
            let data = pseudo_random(n, seed);
            let expected: Vec<usize> =
                fastcdc::v2020::StreamCDC::new(&data[..], CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
                    .map(|c| c.unwrap().length)
                    .collect();
            let got = std::thread::scope(|s| {
                let mut p = Pipeline::start(s, store.clone(), &known);
                let c = p.capture(Dribble(&data), |_| {}).unwrap();
                p.finish().unwrap();
                c
            });
            let sizes: Vec<usize> = got.chunks.iter().map(|(_, s)| *s as usize).collect();
            assert_eq!(sizes, expected, "{n} bytes");
            assert_eq!(got.sha256, Some(Sha256Digest::of(&data)));
            assert_eq!(got.blake3, Blake3Id::of(&data), "{n} bytes");
        }
    }

    /// Large items are SHA-256-hashed on the digest thread, small ones
    /// inline; the digest of each item is its own, in any order of sizes,
    /// also after a read error ends an item early.
    #[test]
    fn offloaded_and_inline_digests_are_each_items_own() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = self.0.read(buf)?;
                Ok(n)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let known = HashMap::new();
        let items = [
            pseudo_random(3 << 20, 2),
            b"tiny".to_vec(),
            pseudo_random(OFFLOAD_MIN - 1, 3),
            pseudo_random(20 << 20, 4),
            Vec::new(),
            pseudo_random(OFFLOAD_MIN, 5),
        ];
        std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known);
            for it in &items {
                let c = p.capture(&it[..], |_| {}).unwrap();
                assert_eq!(c.sha256, Some(Sha256Digest::of(it)), "{} bytes", it.len());
                assert_eq!(c.blake3, Blake3Id::of(it));
            }
            let big = &items[3];
            let c = p.capture(Failing(&big[..]), |_| {}).unwrap();
            assert!(c.error.is_some());
            assert_eq!(c.sha256, Some(Sha256Digest::of(&big[..c.size as usize])));
            let c = p.capture(&items[0][..], |_| {}).unwrap();
            assert_eq!(
                c.sha256,
                Some(Sha256Digest::of(&items[0])),
                "state was reset"
            );
            p.finish().unwrap();
        });
    }

    /// Small chunks travel in units and share a unit's frame: a flush right
    /// after them still finds each in a stored pack, in submission order,
    /// each at its place in its frame, and each reads back.
    #[test]
    fn small_chunks_in_units_are_flushed_and_placed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let known = HashMap::new();
        let items: Vec<Vec<u8>> = (0..300u64)
            .map(|i| pseudo_random(100 + 37 * i as usize, i))
            .collect();
        std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known);
            for (n, it) in items.iter().enumerate() {
                let c = p.capture(&it[..], |_| {}).unwrap();
                if n % 100 == 99 {
                    p.flush().unwrap();
                    let r = p.locate(&c.chunks[0].0).expect("flushed");
                    let mut reader = crate::restore::ChunkReader::new();
                    assert_eq!(reader.read(&store, &r).unwrap(), &it[..]);
                }
            }
            p.flush().unwrap();
            let refs: Vec<ChunkRef> = items
                .iter()
                .map(|it| p.locate(&Blake3Id::of(it)).expect("placed"))
                .collect();
            for w in refs.windows(2) {
                assert!(
                    w[0].pack != w[1].pack || (w[0].offset, w[0].skip) < (w[1].offset, w[1].skip),
                    "chunks are packed in submission order"
                );
                if (w[0].pack, w[0].offset) == (w[1].pack, w[1].offset) {
                    assert_eq!(w[0].stored, w[1].stored, "one frame");
                    assert_eq!(
                        w[1].skip,
                        w[0].skip.map(|k| k + w[0].size),
                        "each chunk follows the one before in its frame"
                    );
                }
            }
            let shared = refs.iter().filter(|r| r.skip.is_some()).count();
            assert!(shared > 250, "small chunks share frames: {shared} of 300");
            // A chunk of a larger item is never in a shared frame, nor is
            // a chunk of UNIT_BYTES or more: the small item between them
            // is alone in its unit.
            let data = pseudo_random(2 * CHUNK_MAX as usize, 99);
            let whole = pseudo_random(UNIT_BYTES, 98);
            let next = pseudo_random(500, 97);
            // Its first cut, then 1000 bytes: a small last chunk.
            let first = p.capture(&data[..], |_| {}).unwrap().chunks[0].1 as usize;
            let large = p.capture(&data[..first + 1000], |_| {}).unwrap();
            let next = p.capture(&next[..], |_| {}).unwrap();
            let whole = p.capture(&whole[..], |_| {}).unwrap();
            p.flush().unwrap();
            assert!(large.chunks.len() > 1);
            let tail = large.chunks.last().unwrap().1 as usize;
            assert!(tail < UNIT_BYTES, "a small last chunk: {tail}");
            for (id, _) in large.chunks.iter().chain(&whole.chunks) {
                assert_eq!(p.locate(id).unwrap().skip, None);
            }
            let next = p.locate(&next.chunks[0].0).unwrap();
            assert_eq!(next.skip, None, "alone in its unit");
            let mut reader = crate::restore::ChunkReader::new();
            for (r, it) in refs.iter().zip(&items) {
                assert_eq!(reader.read(&store, r).unwrap(), &it[..]);
            }
            p.finish().unwrap();
        });
    }

    /// Without SHA-256 (an agent's pipeline), items of every size are
    /// captured, chunked and BLAKE3-hashed as with it, and no SHA-256 is
    /// claimed.
    #[test]
    fn a_pipeline_without_sha256_claims_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let known = HashMap::new();
        let items = [pseudo_random(9 << 20, 6), b"tiny".to_vec(), Vec::new()];
        let with: Vec<Captured> = std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known);
            let c = items
                .iter()
                .map(|it| p.capture(&it[..], |_| {}).unwrap())
                .collect();
            p.finish().unwrap();
            c
        });
        std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known).without_sha256();
            for (it, w) in items.iter().zip(&with) {
                let c = p.capture(&it[..], |_| {}).unwrap();
                assert_eq!(c.sha256, None, "{} bytes", it.len());
                assert_eq!(c.blake3, Blake3Id::of(it));
                assert_eq!((c.size, &c.chunks), (w.size, &w.chunks));
            }
            p.finish().unwrap();
        });
    }

    /// Cuts taken from hints are FastCDC's own: known data, data with an
    /// append, data changed in the middle, a shorter copy and wrong or
    /// forged hints (an empty chunk, one past the maximum size) all cut as
    /// if there were no hints, and known data is cut from them.
    #[test]
    fn hinted_cuts_are_fastcdcs_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let known = HashMap::new();
        let base = pseudo_random(24 << 20, 7);
        let mut appended = base.clone();
        appended.extend(pseudo_random(300 << 10, 8));
        let mut changed = base.clone();
        changed[12 << 20] ^= 1;
        let shorter = base[..20 << 20].to_vec();
        let items = [&base, &appended, &changed, &shorter];
        let plain: Vec<_> = std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known);
            let c = items.map(|it| p.capture(&it[..], |_| {}).unwrap().chunks);
            assert_eq!(p.finish().unwrap().chunks_hinted, 0);
            c.to_vec()
        });
        let n = plain[0].len();
        assert!(n > 8, "{n} chunks: too few to test hints");
        let mut cuts = Earlier::default();
        cuts.learn("base", plain[0].iter().copied());
        // Wrong hints: a first chunk and a successor that are not the bytes.
        let wrong = (Blake3Id::of(b"not these bytes"), plain[0][0].1);
        cuts.learn("wrong", [wrong, plain[0][0]].into_iter());
        cuts.next.insert(plain[0][3].0, wrong);
        // Forged hints of sizes FastCDC never cuts: an empty chunk that
        // follows itself, and a first chunk past the maximum size.
        let none = (Blake3Id::of(b""), 0);
        cuts.learn("empty", [none, none, none].into_iter());
        let huge = 5 << 20;
        let over = (Blake3Id::of(&base[..huge as usize]), huge);
        cuts.learn("huge", [over, plain[0][1]].into_iter());
        for (i, it) in items.iter().enumerate() {
            for path in ["base", "wrong", "empty", "huge"] {
                let (chunks, stats) = std::thread::scope(|s| {
                    let mut p = Pipeline::start(s, store.clone(), &known).with_earlier(&cuts);
                    let c = p.capture_at(&it[..], Some(path), |_| {}).unwrap();
                    (c.chunks, p.finish().unwrap())
                });
                assert_eq!(chunks, plain[i], "item {i} with hints from {path:?}");
                if i == 0 && path == "base" {
                    // Every chunk but those after the wrong hint, and the
                    // last (cut by the end of the data, not a hint).
                    assert_eq!(stats.chunks_hinted, n as u64 - 2);
                }
                if path == "wrong" {
                    assert!(stats.chunks_hinted < n as u64 - 2);
                }
            }
        }
    }

    /// A reader that returns at most 64 KiB at a time.
    struct Short<R>(R);
    impl<R: Read> Read for Short<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(64 << 10);
            self.0.read(&mut buf[..n])
        }
    }
    impl<R: Seek> Seek for Short<R> {
        fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
            self.0.seek(to)
        }
    }

    /// A file read against its path's last artifact gives what a plain
    /// capture gives, whatever changed: unchanged (digests taken from the
    /// artifact), changed in its first, middle or last chunk, grown, cut
    /// short, or with a chunk no longer in the vault; it is read again from
    /// where the reader was, not from its start, in short reads, and
    /// progress counts each byte once. Records this pipeline could not have
    /// made are not learnt.
    #[test]
    fn a_file_is_taken_as_unchanged_only_when_every_chunk_is() {
        use std::io::Cursor;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let base = pseudo_random(19 << 20, 11);
        let empty = HashMap::new();
        // Store the base, and learn it as an earlier artifact.
        let (plain, known) = std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &empty);
            let c = p.capture(&base[..], |_| {}).unwrap();
            p.flush().unwrap();
            let known: HashMap<_, _> = c
                .chunks
                .iter()
                .map(|(id, _)| (*id, p.locate(id).unwrap()))
                .collect();
            p.finish().unwrap();
            (c, known)
        });
        let n = plain.chunks.len();
        assert!(n > 4, "{n} chunks: too few to test");
        let mut earlier = Earlier::default();
        let sha = plain.sha256.unwrap();
        let learn = |e: &mut Earlier, path| {
            e.learn_whole(
                path,
                plain.size,
                plain.blake3,
                sha,
                plain.chunks.iter().copied(),
            );
        };
        learn(&mut earlier, "f");
        let flip = |at: usize| {
            let mut d = base.clone();
            d[at] ^= 1;
            d
        };
        let mut grown = base.clone();
        grown.extend_from_slice(b"more");
        let mut missing = known.clone();
        missing.remove(&plain.chunks[n / 2].0);
        let size = base.len() as u64;
        let cases: [(&str, Vec<u8>, &HashMap<_, _>, bool); 7] = [
            ("unchanged", base.clone(), &known, true),
            ("first chunk changed", flip(10), &known, false),
            ("middle chunk changed", flip(base.len() / 2), &known, false),
            ("last byte changed", flip(base.len() - 1), &known, false),
            ("grown", grown, &known, false),
            ("cut short", base[..base.len() - 1].to_vec(), &known, false),
            ("a chunk not in the vault", base.clone(), &missing, false),
        ];
        for (what, data, known, unchanged) in cases {
            let (c, stats) = std::thread::scope(|s| {
                let mut p = Pipeline::start(s, store.clone(), known).with_earlier(&earlier);
                // The reader is not at its start: the file is what follows.
                let mut framed = b"header".to_vec();
                framed.extend_from_slice(&data);
                let mut r = Cursor::new(framed);
                r.set_position(6);
                // Short reads, as from a pipe-like file.
                let mut shown = 0u64;
                let c = p
                    .capture_file(Short(&mut r), "f", size, |n| shown += n)
                    .unwrap();
                assert_eq!(
                    shown,
                    data.len() as u64,
                    "{what}: progress counts each byte once"
                );
                (c, p.finish().unwrap())
            });
            assert_eq!(stats.items_unchanged, u64::from(unchanged), "{what}");
            assert_eq!(stats.bytes_read, data.len() as u64, "{what}");
            assert_eq!(c.size, data.len() as u64, "{what}");
            assert_eq!(c.blake3, Blake3Id::of(&data), "{what}");
            assert_eq!(c.sha256, Some(Sha256Digest::of(&data)), "{what}");
            assert!(c.error.is_none(), "{what}");
            if unchanged {
                assert_eq!(c.chunks, plain.chunks);
            }
            assert_eq!(
                c.chunks.iter().map(|(_, n)| u64::from(*n)).sum::<u64>(),
                c.size,
                "{what}"
            );
        }
        // A file that cannot be read again is a capture of nothing, ended
        // by the error.
        struct NoRewind(Cursor<Vec<u8>>);
        impl Read for NoRewind {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.0.read(buf)
            }
        }
        impl Seek for NoRewind {
            fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
                match to {
                    std::io::SeekFrom::Current(0) => self.0.seek(to),
                    _ => Err(std::io::Error::other("no rewinding")),
                }
            }
        }
        let c = std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known).with_earlier(&earlier);
            let c = p.capture_file(
                NoRewind(Cursor::new(flip(base.len() / 2))),
                "f",
                size,
                |_| {},
            );
            p.finish().unwrap();
            c.unwrap()
        });
        assert_eq!((c.size, c.chunks.len()), (0, 0));
        assert_eq!(
            c.error.map(|e| e.to_string()).as_deref(),
            Some("no rewinding")
        );
        // A record this pipeline could not have made is not learnt: sizes
        // that do not add up, an empty chunk, one beyond the maximum.
        let mut forged = Earlier::default();
        let chunks = || plain.chunks.iter().copied();
        forged.learn_whole("sum", size + 1, plain.blake3, sha, chunks());
        let empty = (Blake3Id::of(b""), 0);
        forged.learn_whole("empty", size, plain.blake3, sha, chunks().chain([empty]));
        let mut huge: Vec<_> = chunks().collect();
        let grown = size - u64::from(huge[0].1) + u64::from(CHUNK_MAX) + 1;
        huge[0].1 = CHUNK_MAX + 1;
        forged.learn_whole("huge", grown, plain.blake3, sha, huge);
        for path in ["sum", "empty", "huge"] {
            assert!(forged.last(path).is_none(), "{path}");
        }
        // Another size, or another path, is not tried at all.
        std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known).with_earlier(&earlier);
            p.capture_file(Cursor::new(&base), "f", size + 1, |_| {})
                .unwrap();
            p.capture_file(Cursor::new(&base), "g", size, |_| {})
                .unwrap();
            assert_eq!(p.finish().unwrap().items_unchanged, 0);
        });
    }

    #[test]
    fn captures_dedups_and_packs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let known = HashMap::new();
        let data = pseudo_random(6 << 20, 1);
        let (a, b, stats) = std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known);
            let a = p.capture(&data[..], |_| {}).unwrap();
            let b = p.capture(&data[..], |_| {}).unwrap();
            p.flush().unwrap();
            for (id, _) in &a.chunks {
                assert!(p.locate(id).is_some());
            }
            (a, b, p.finish().unwrap())
        });
        assert_eq!(a.size, data.len() as u64);
        assert_eq!(a.blake3, Blake3Id::of(&data));
        assert_eq!(a.sha256, Some(Sha256Digest::of(&data)));
        assert!(a.chunks.len() > 1, "6 MiB is cut into several chunks");
        assert_eq!(a.chunks, b.chunks);
        assert_eq!(
            stats.bytes_deduplicated,
            data.len() as u64,
            "the second copy is free"
        );
        assert_eq!(stats.packs, 1);
        let packs = store.list("packs").unwrap();
        assert_eq!(packs.len(), 1);
        let bytes = store.get(&packs[0].key, MAX_PACK_BYTES).unwrap().unwrap();
        assert!(bytes.starts_with(PACK_MAGIC));
        assert_eq!(
            layout::parse_pack_path(&packs[0].key),
            Some(Blake3Id::of(&bytes))
        );
    }

    /// A pack is the magic and then its frames, one after the other, each
    /// as zstd writes it for its unit's plaintext (a chunk, or small items
    /// one after another), and the placements say exactly where: in the
    /// first pack and in those after a flush wrote a partial one.
    #[test]
    fn packs_are_the_magic_then_each_frame_as_zstd_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().to_str().unwrap()).unwrap();
        let known = HashMap::new();
        let items: Vec<Vec<u8>> = [10_000, 20_000, 3 << 20, 0, 700 << 10, 5_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| pseudo_random(n, 40 + i as u64))
            .collect();
        let mut plain = HashMap::new();
        let mut refs = Vec::new();
        std::thread::scope(|s| {
            let mut p = Pipeline::start(s, store.clone(), &known);
            for (i, item) in items.iter().enumerate() {
                if item.is_empty() {
                    // A partial pack's flush, then one with nothing to write.
                    p.flush().unwrap();
                    p.flush().unwrap();
                    continue;
                }
                let c = p.capture(&item[..], |_| {}).unwrap();
                let mut at = 0;
                for &(id, n) in &c.chunks {
                    plain.insert(id, item[at..at + n as usize].to_vec());
                    at += n as usize;
                }
                refs.extend(c.chunks.iter().map(|&(id, _)| id));
                if i == 1 {
                    p.flush().unwrap();
                }
            }
            p.flush().unwrap();
            let placed: Vec<ChunkRef> = refs.iter().map(|id| p.locate(id).unwrap()).collect();
            p.finish().unwrap();
            let mut z = zstd::bulk::Compressor::new(ZSTD_LEVEL).unwrap();
            z.include_contentsize(true).unwrap();
            let packs = store.list("packs").unwrap();
            assert_eq!(
                packs.len(),
                3,
                "two flushes with chunks before them, and the last"
            );
            for pack in packs {
                let id = layout::parse_pack_path(&pack.key).unwrap();
                let bytes = store.get(&pack.key, MAX_PACK_BYTES).unwrap().unwrap();
                assert!(bytes.starts_with(PACK_MAGIC), "{}", pack.key);
                // Its frames in order, each with the plaintexts it holds.
                let mut frames: Vec<(u64, u32, Vec<u8>)> = Vec::new();
                let mut mine: Vec<&ChunkRef> = placed.iter().filter(|r| r.pack == id).collect();
                mine.sort_by_key(|r| (r.offset, r.skip));
                for r in mine {
                    match frames.last_mut() {
                        Some((o, _, p)) if *o == r.offset => {
                            assert_eq!(r.skip, Some(p.len() as u32));
                            p.extend_from_slice(&plain[&r.id]);
                        }
                        _ => frames.push((r.offset, r.stored, plain[&r.id].clone())),
                    }
                }
                let mut at = PACK_MAGIC.len() as u64;
                for (offset, stored, p) in frames {
                    assert_eq!(offset, at, "frames follow each other from the magic on");
                    let frame = &bytes[offset as usize..(offset + u64::from(stored)) as usize];
                    assert_eq!(frame, &z.compress(&p).unwrap()[..]);
                    at += u64::from(stored);
                }
                assert_eq!(at, bytes.len() as u64, "nothing after the last frame");
            }
        });
        // Every chunk was placed: the small items of the first unit share
        // its frame; the 3 MiB item's chunks have frames of their own.
        assert!(refs.len() >= 5);
    }

    /// Reading goes on past a flush asked for with `flush_later`; each
    /// ticket, once done, covers exactly the chunks before it, and the
    /// packs come out the same whatever the workers' timing.
    #[test]
    fn tickets_cut_packs_where_they_were_taken() {
        let items: Vec<Vec<u8>> = (0..12).map(|i| pseudo_random(700 << 10, 10 + i)).collect();
        let run = || {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path().to_str().unwrap()).unwrap();
            let known = HashMap::new();
            let mut packs = std::thread::scope(|s| {
                let mut p = Pipeline::start(s, store.clone(), &known);
                let locator = p.locator();
                let mut tickets = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let c = p.capture(&item[..], |_| {}).unwrap();
                    if i % 3 == 2 {
                        tickets.push((p.flush_later().unwrap(), c.chunks));
                    }
                }
                for (t, chunks) in tickets {
                    t.wait().unwrap();
                    for (id, _) in &chunks {
                        assert!(locator.locate(id).is_some(), "a chunk before the ticket");
                    }
                }
                p.finish().unwrap();
                store.list("packs").unwrap()
            });
            packs.sort_by(|a, b| a.key.cmp(&b.key));
            packs.into_iter().map(|o| o.key).collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first.len(), 4, "one pack per ticket: {first:?}");
        for _ in 0..3 {
            assert_eq!(run(), first, "packs depend only on what was submitted");
        }
    }
}
