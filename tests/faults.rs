//! A fault-injecting store (sunlight's and tessera's habit): fail the Nth
//! put, persist it and still report failure, or persist it and stop the
//! process right after (every later request fails); flag any overwrite of
//! an immutable object. After every fault the vault must verify, and a later
//! declare must complete.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use custody::keys::VaultSigner;
use custody::preserve::{self, Declaration, DeclareError};
use custody::progress::Silent;
use custody::segment::{SourceKind, SourceSpec};
use custody::store::Store;
use custody::time::Time;
use custody::vault::{InitOptions, Vault};
use custody::verify::{self, Severity};

use crate::common::noise;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    /// The Nth put fails and writes nothing.
    Fail,
    /// The Nth put is persisted, but the caller is told it failed.
    PersistThenFail,
    /// The Nth put is persisted and acknowledged, and then the process is
    /// gone: every later request of this store fails.
    StopAfter,
}

#[derive(Debug)]
struct FaultyStore {
    inner: Arc<InMemory>,
    puts: AtomicUsize,
    fault_at: Option<(usize, Fault)>,
    overwrites: Mutex<Vec<String>>,
    stopped: std::sync::atomic::AtomicBool,
    /// When set, the faulty put waits for a message on it first.
    held: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Segment puts so far.
    segment_puts: AtomicUsize,
    /// When set: the segment put of that number (from 0) says it is
    /// reached, then waits for a message before it puts.
    pause: Mutex<Option<Pause>>,
}

#[derive(Debug)]
struct Pause {
    at: usize,
    reached: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore")
    }
}

impl FaultyStore {
    fn new(inner: Arc<InMemory>, fault_at: Option<(usize, Fault)>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            puts: AtomicUsize::new(0),
            fault_at,
            overwrites: Mutex::new(Vec::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            held: Mutex::new(None),
            segment_puts: AtomicUsize::new(0),
            pause: Mutex::new(None),
        })
    }

    fn check_alive(&self, location: &str) -> Result<()> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "FaultyStore",
                source: format!("process stopped before touching {location}").into(),
            });
        }
        Ok(())
    }
}

fn disk_full(location: &Path) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: Box::new(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("No space left on device writing {location}"),
        )),
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.check_alive(location.as_ref())?;
        let n = self.puts.fetch_add(1, Ordering::SeqCst);
        if location.as_ref().starts_with("segments/") {
            let k = self.segment_puts.fetch_add(1, Ordering::SeqCst);
            let mut pause = self.pause.lock().unwrap();
            if pause.as_ref().is_some_and(|p| p.at == k) {
                let p = pause.take().unwrap();
                drop(pause);
                p.reached.send(()).unwrap();
                p.release.recv().unwrap();
            }
        }
        if location.as_ref() != "checkpoint" && !matches!(opts.mode, PutMode::Create) {
            self.overwrites.lock().unwrap().push(location.to_string());
        }
        match self.fault_at {
            Some((at, Fault::Fail)) if at == n => {
                let held = self.held.lock().unwrap().take();
                if let Some(release) = held {
                    let _ = release.recv();
                }
                Err(disk_full(location))
            }
            Some((at, Fault::PersistThenFail)) if at == n => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(disk_full(location))
            }
            Some((at, Fault::StopAfter)) if at == n => {
                let r = self.inner.put_opts(location, payload, opts).await;
                self.stopped.store(true, Ordering::SeqCst);
                r
            }
            _ => self.inner.put_opts(location, payload, opts).await,
        }
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.overwrites
            .lock()
            .unwrap()
            .push(format!("multipart {location}"));
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.check_alive(location.as_ref())?;
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.overwrites.lock().unwrap().push("delete".into());
        self.inner.delete_stream(locations)
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        use futures::StreamExt as _;
        match self.check_alive("the listing") {
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            Ok(()) => self.inner.list(prefix),
        }
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.check_alive("the listing")?;
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> Result<()> {
        self.overwrites
            .lock()
            .unwrap()
            .push(format!("copy to {to}"));
        self.inner.copy_opts(from, to, options).await
    }
}

fn signer() -> VaultSigner {
    VaultSigner::from_seed("faults.custody.example/vault", [0x42; 32])
}

fn declaration(dir: &std::path::Path, incident: &str) -> Declaration {
    Declaration {
        incident: incident.into(),
        title: "fault".into(),
        severity: None,
        discovered_at: None,
        description: None,
        detection_source: None,
        regimes: vec![],
        by: "tester".into(),
        host: "h".into(),
        collector: "h".into(),
        sources: vec![SourceSpec {
            name: "data".into(),
            kind: SourceKind::Files,
            paths: vec![dir.to_string_lossy().into_owned()],
            exclude: vec![],
            argv: vec![],
            timeout_secs: None,
            seal_to: vec![],
        }],
        refuse: vec![],
    }
}

#[track_caller]
fn assert_verifies(inner: &Arc<InMemory>, context: &str) {
    let store = Store::from_object_store(FaultyStore::new(inner.clone(), None), "memory");
    let report = verify::verify(&store, &verify::Options::default(), &Silent).unwrap();
    let damage: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Damage)
        .collect();
    assert!(damage.is_empty(), "{context}: {damage:#?}");
}

/// Puts a full declare makes against a fresh vault.
fn count_puts(data: &std::path::Path) -> usize {
    let inner = Arc::new(InMemory::new());
    let counting = FaultyStore::new(inner.clone(), None);
    let init = Store::from_object_store(counting.clone(), "memory");
    let mut v = Vault::init(init, &signer(), init_opts()).unwrap();
    let before = counting.puts.load(Ordering::SeqCst);
    preserve::declare(&mut v, &signer(), &declaration(data, "INC-0"), &Silent).unwrap();
    counting.puts.load(Ordering::SeqCst) - before
}

fn init_opts() -> InitOptions {
    InitOptions {
        origin: signer().name().into(),
        created_by: "t".into(),
        host: "h".into(),
        now: Time::from_unix(1_800_000_000),
        nonce: "ab".repeat(16),
    }
}

/// A flush asked for while the pack writer is in a write that fails is
/// answered with that failure, like the flush the write was for: the
/// writer stops with the later request still in its channel, which the
/// pipeline keeps open, and a waiter must not wait for an answer that will
/// never come (a declare on a failing store would hang instead of saying
/// why it stopped).
#[test]
fn a_flush_queued_behind_a_failing_pack_write_gets_the_failure() {
    use custody::ingest::Pipeline;
    let faulty = FaultyStore::new(Arc::new(InMemory::new()), Some((0, Fault::Fail)));
    let (release, held) = std::sync::mpsc::channel();
    *faulty.held.lock().unwrap() = Some(held);
    let store = Store::from_object_store(faulty.clone(), "memory");
    let known = std::collections::HashMap::new();
    std::thread::scope(|s| {
        let mut p = Pipeline::start(s, store, &known);
        p.capture(&b"first\n"[..], |_| {}).unwrap();
        let first = p.flush_later().unwrap();
        while faulty.puts.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // The writer is inside the put of the first pack.
        p.capture(&b"second\n"[..], |_| {}).unwrap();
        let second = p.flush_later().unwrap();
        release.send(()).unwrap();
        // Detached, so that a waiter that never returns fails the test
        // rather than hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send((first.wait(), second.wait()));
        });
        let (a, b) = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("both flushes are answered");
        for r in [a, b] {
            let e = r.expect_err("the pack was not written");
            assert!(e.0.contains("No space left"), "{e}");
        }
        let e = p.flush().expect_err("the writer has stopped");
        assert!(e.0.contains("No space left"), "{e}");
    });
}

#[test]
fn crash_matrix_every_put_fails_in_turn() {
    let data = tempfile::tempdir().unwrap();
    // Enough for two packs and several segments (SEAL_BYTES forces a middle seal
    // only with many entries, so use a few big files and some small ones).
    std::fs::write(data.path().join("big1"), crate::common::noise(20 << 20, 1)).unwrap();
    std::fs::write(
        data.path().join("big2"),
        crate::common::log_text(3 << 20, 2),
    )
    .unwrap();
    // Enough small files that their entries are sealed in a middle segment
    // (preserve::SEAL_BYTES), so faults hit that path too.
    for i in 0..2600 {
        std::fs::write(data.path().join(format!("s{i:05}")), format!("small {i}\n")).unwrap();
    }
    let total = count_puts(data.path());
    // Three segments with their checkpoints, three packs at least.
    assert!(total >= 9, "a declare makes several puts ({total})");
    eprintln!("crash matrix over {total} puts");
    for at in 0..total {
        for fault in [Fault::Fail, Fault::PersistThenFail, Fault::StopAfter] {
            let ctx = format!("fault {fault:?} at put {at} of {total}");
            let inner = Arc::new(InMemory::new());
            let clean = Store::from_object_store(FaultyStore::new(inner.clone(), None), "memory");
            Vault::init(clean, &signer(), init_opts()).unwrap();

            let faulty = FaultyStore::new(inner.clone(), Some((at, fault)));
            let store = Store::from_object_store(faulty.clone(), "memory");
            let mut v = Vault::open(store).unwrap();
            let r = preserve::declare(
                &mut v,
                &signer(),
                &declaration(data.path(), "INC-1"),
                &Silent,
            );
            match r {
                // The process is gone: whatever it was told, what it left
                // must verify and be recoverable (below).
                _ if fault == Fault::StopAfter => {}
                Err(DeclareError::Pipeline(msg)) => {
                    assert!(msg.contains("No space left"), "{ctx}: {msg}")
                }
                Err(DeclareError::Vault(e)) => {
                    assert!(e.to_string().contains("No space left"), "{ctx}: {e}")
                }
                Err(e) => panic!("{ctx}: unexpected error {e}"),
                // A failed checkpoint update loses nothing: the run goes on
                // and says so.
                Ok(s) => assert!(
                    s.warnings
                        .iter()
                        .any(|w| w.contains("checkpoint was not updated")
                            && w.contains("No space left")),
                    "{ctx}: the fault was not reported: {:?}",
                    s.warnings
                ),
            }
            assert!(
                faulty.overwrites.lock().unwrap().is_empty(),
                "{ctx}: immutable objects overwritten"
            );
            assert_verifies(&inner, &ctx);

            // Recovery: the next declare, on a healthy store, completes.
            let healthy = FaultyStore::new(inner.clone(), None);
            let mut v = Vault::open(Store::from_object_store(healthy.clone(), "memory")).unwrap();
            let s = preserve::declare(
                &mut v,
                &signer(),
                &declaration(data.path(), "INC-1"),
                &Silent,
            )
            .unwrap();
            assert_eq!(s.failed + s.partial, 0, "{ctx}");
            assert_eq!(s.complete, 2602, "{ctx}: every file preserved whole");
            assert!(healthy.overwrites.lock().unwrap().is_empty(), "{ctx}");
            assert_verifies(&inner, &format!("{ctx}, after recovery"));
        }
    }
}

/// A declare deduplicates against the vault's chunk index taken out of the
/// vault for the run, not a copy of it, and gives it back however the run
/// ends: a later declare on the same vault, after one that failed
/// part-way, still finds every chunk stored before.
#[test]
fn the_chunk_index_is_given_back_after_a_failed_declare() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mut seed = 0;
    for (dir, files) in [(a.path(), 3), (b.path(), 2)] {
        for i in 0..files {
            seed += 2;
            std::fs::write(dir.join(format!("f{i}")), noise(700 << 10, seed)).unwrap();
            std::fs::write(dir.join(format!("s{i}")), noise(3000, seed + 1)).unwrap();
        }
    }
    let first_puts = count_puts(a.path());
    let inner = Arc::new(InMemory::new());
    let clean = Store::from_object_store(FaultyStore::new(inner.clone(), None), "memory");
    Vault::init(clean, &signer(), init_opts()).unwrap();
    // The second declare's third put fails: after its first segment and
    // checkpoint, so while the index is out.
    let faulty = FaultyStore::new(inner.clone(), Some((first_puts + 2, Fault::Fail)));
    let mut v = Vault::open(Store::from_object_store(faulty, "memory")).unwrap();

    let first =
        preserve::declare(&mut v, &signer(), &declaration(a.path(), "INC-0"), &Silent).unwrap();
    assert_eq!(first.stats.bytes_deduplicated, 0);
    let stored = v.index().chunks.len();
    assert!(
        stored >= 6,
        "every chunk of the first run is indexed ({stored})"
    );

    let failed = preserve::declare(&mut v, &signer(), &declaration(b.path(), "INC-1"), &Silent);
    assert!(failed.is_err(), "the fault stops the second declare");
    assert!(v.index().chunks.len() >= stored, "the index is back");

    let again =
        preserve::declare(&mut v, &signer(), &declaration(a.path(), "INC-2"), &Silent).unwrap();
    assert_eq!(again.stats.bytes_read, first.stats.bytes_read);
    assert_eq!(
        again.stats.bytes_deduplicated, again.stats.bytes_read,
        "everything the first declare stored is found again"
    );
    assert_verifies(&inner, "after the failed declare and the third");
}

/// Three files `PREFIX0` to `PREFIX2` of `size` bytes of noise in `dir`,
/// of seeds from `seed` on (odd: `noise` makes the same bytes of 2k and
/// 2k+1).
fn write_noise(dir: &std::path::Path, prefix: &str, size: usize, seed: u64) {
    for i in 0..3 {
        let bytes = noise(size, 2 * (seed + i) + 1);
        std::fs::write(dir.join(format!("{prefix}{i}")), bytes).unwrap();
    }
}

/// While a declare runs, the vault neither gathers the run's chunks (the
/// run gives them back with the index it took) nor learns its artifacts
/// (what earlier artifacts tell is read afresh from the log when next
/// taken). After each declare, the same `Vault` knows what a fresh open
/// of its log knows: the same chunk index, and, two declares later, every
/// file of the first as the last content of its path. So does a vault
/// opened lean, which gathers neither until a declare reads them.
#[test]
fn after_declares_a_vault_knows_what_its_log_tells() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, seed) in [(a.path(), 10), (b.path(), 20)] {
        write_noise(dir, "f", 700 << 10, seed);
        write_noise(dir, "s", 3000, seed + 5);
    }
    let inner = Arc::new(InMemory::new());
    let store = || Store::from_object_store(FaultyStore::new(inner.clone(), None), "memory");
    Vault::init(store(), &signer(), init_opts()).unwrap();
    let mut v = Vault::open(store()).unwrap();
    let mut runs = Vec::new();
    let mut before = 0;
    for (i, dir) in [a.path(), b.path(), a.path()].into_iter().enumerate() {
        let d = declaration(dir, &format!("INC-{i}"));
        runs.push(preserve::declare(&mut v, &signer(), &d, &Silent).unwrap());
        let fresh = Vault::open(store()).unwrap();
        let stored = v.index().chunks.len();
        if i < 2 {
            assert!(stored > before, "declare {i} stored new chunks");
        }
        before = stored;
        assert_eq!(
            v.index().chunks,
            fresh.index().chunks,
            "after declare {i}, the chunk index is the log's"
        );
    }
    let third = &runs[2].stats;
    assert_eq!(
        third.items_unchanged, 6,
        "each file of the first declare is its path's last content"
    );
    assert_eq!(third.bytes_new, 0);

    // A lean vault gathers neither, and reads both from the log to declare.
    let mut lean = Vault::open_lean(store(), |_, _| {}).unwrap();
    assert!(lean.index().chunks.is_empty() && lean.index().earlier.is_none());
    let d = declaration(a.path(), "INC-3");
    let fourth = preserve::declare(&mut lean, &signer(), &d, &Silent)
        .unwrap()
        .stats;
    assert_eq!((fourth.items_unchanged, fourth.bytes_new), (6, 0));
    let fresh = Vault::open(store()).unwrap();
    assert_eq!(lean.index().chunks, fresh.index().chunks);
    assert_verifies(&inner, "after four declares");
}

/// Segments another writer appends while a declare runs are read by the
/// declaring vault as it appends (its put of a segment number finds it
/// taken). Their chunks are gathered while the run has the index, and the
/// index given back is the log's: the run's chunks, the other writer's and
/// those before.
#[test]
fn chunks_another_writer_appends_during_a_declare_are_indexed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, seed) in [(a.path(), 20), (b.path(), 30)] {
        write_noise(dir, "f", 300 << 10, seed);
    }
    let inner = Arc::new(InMemory::new());
    let clean = || Store::from_object_store(FaultyStore::new(inner.clone(), None), "memory");
    Vault::init(clean(), &signer(), init_opts()).unwrap();
    let paused = FaultyStore::new(inner.clone(), None);
    let (reached_tx, reached) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    // Segment put 0 is the run's first segment; 1 is a segment of its
    // artifacts, put while the index is taken.
    *paused.pause.lock().unwrap() = Some(Pause {
        at: 1,
        reached: reached_tx,
        release: release_rx,
    });
    let mut v = Vault::open(Store::from_object_store(paused, "memory")).unwrap();
    let declaring = std::thread::spawn(move || {
        let d = declaration(a.path(), "INC-A");
        let s = preserve::declare(&mut v, &signer(), &d, &Silent).map(|s| s.stats);
        (v, s)
    });
    reached.recv().unwrap();
    let mut other = Vault::open(clean()).unwrap();
    let theirs = preserve::declare(
        &mut other,
        &signer(),
        &declaration(b.path(), "INC-B"),
        &Silent,
    )
    .unwrap();
    assert!(theirs.stats.bytes_new > 0);
    release.send(()).unwrap();
    let (v, ours) = declaring.join().unwrap();
    assert!(ours.unwrap().bytes_new > 0);
    let fresh = Vault::open(clean()).unwrap();
    assert_eq!(
        v.size(),
        fresh.size(),
        "the declaring vault read the other's segments"
    );
    assert_eq!(
        v.index().chunks,
        fresh.index().chunks,
        "the index has both runs' chunks"
    );
    assert_verifies(&inner, "after two writers");
}

/// A declare on a vault opened before reads the log again for what earlier
/// artifacts tell; a log that no longer extends the one it read (here,
/// replaced by a new vault under the same name and key) is refused before
/// anything is written, not taken as hints.
#[test]
fn a_declare_refuses_a_log_replaced_under_it() {
    use futures::StreamExt as _;
    use object_store::ObjectStoreExt as _;
    let a = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("f"), noise(300 << 10, 81)).unwrap();
    let inner = Arc::new(InMemory::new());
    let store = || Store::from_object_store(FaultyStore::new(inner.clone(), None), "memory");
    Vault::init(store(), &signer(), init_opts()).unwrap();
    let mut v = Vault::open(store()).unwrap();
    preserve::declare(&mut v, &signer(), &declaration(a.path(), "INC-0"), &Silent).unwrap();

    let all: Vec<_> = futures::executor::block_on(inner.list(None).collect::<Vec<_>>());
    for meta in all {
        futures::executor::block_on(inner.delete(&meta.unwrap().location)).unwrap();
    }
    Vault::init(store(), &signer(), init_opts()).unwrap();
    let err = preserve::declare(&mut v, &signer(), &declaration(a.path(), "INC-1"), &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not extend the one read before"), "{err}");
    let after = Vault::open(store()).unwrap();
    assert_eq!(after.size(), 1, "nothing was written to the new log");
}
