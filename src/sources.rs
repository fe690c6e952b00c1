//! Reading sources into artifacts (FORMAT.md §9 (entries)): files,
//! directories and globs; command output; key files, described key by key
//! and stored in clear only when they hold nothing secret (§9.12).
//!
//! Nothing is skipped silently: a path that does not exist, a glob that
//! matches nothing, an unreadable file or directory, a command that cannot
//! start or fails, each becomes an artifact with status `failed`. Symbolic
//! links are recorded as links and never followed. Files are opened with
//! `O_NOFOLLOW | O_NONBLOCK` and must be regular files (a FIFO or device
//! would block or never end). A file that changes while read is `partial`,
//! with the reason.

use std::collections::HashSet;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::hash::{Blake3Id, Sha256Digest};
use crate::ingest::{Captured, Pipeline, PipelineError};
use crate::keymaterial::{Form, MAX_KEY_FILE};
use crate::progress::Progress;
use crate::segment::{
    Artifact, CommandOutcome, FileMeta, ItemKind, KeyContent, KeyFile, SourceKind, SourceSpec,
    Status, Tool,
};
use crate::time::Time;

/// How long a command source may run when its source sets no `timeout_secs`.
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 3600;

/// Bytes of a command's standard error kept in the log.
pub const STDERR_KEEP: usize = 64 << 10;

/// What every artifact of a run shares.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The incident.
    pub incident: String,
    /// The run id.
    pub run: String,
    /// Host name.
    pub host: String,
    /// Collector name.
    pub collector: String,
    /// Files (device, inode) never to preserve: the vault's own signing key.
    pub refuse: Vec<(u64, u64)>,
}

/// An artifact whose chunk locations are resolved when its segment is sealed.
#[derive(Debug)]
pub struct Pending {
    /// The artifact, with `chunks` still empty.
    pub artifact: Artifact,
    /// Chunk ids and sizes, in order.
    pub chunks: Vec<(Blake3Id, u32)>,
}

/// What a source yields: an artifact, or the description of a key file.
#[derive(Debug)]
pub enum Found {
    /// An artifact.
    Artifact(Box<Pending>),
    /// A key file (FORMAT.md §9.12).
    KeyFile(Box<KeyFile>),
}

impl From<Pending> for Found {
    fn from(p: Pending) -> Self {
        Self::Artifact(Box::new(p))
    }
}

fn empty_capture() -> Captured {
    Captured {
        size: 0,
        blake3: Blake3Id::of(b""),
        sha256: Some(Sha256Digest::of(b"")),
        chunks: Vec::new(),
        error: None,
        truncated: false,
    }
}

struct Item<'a> {
    ctx: &'a RunContext,
    spec: &'a SourceSpec,
    started: Time,
}

impl Item<'_> {
    fn artifact(&self, kind: ItemKind, path: String, cap: Captured) -> Pending {
        let status = if cap.error.is_some() {
            Status::Failed
        } else if cap.truncated {
            Status::Partial
        } else {
            Status::Complete
        };
        let reason = cap.truncated.then(|| {
            format!(
                "stopped at the format-1 limit of {} chunks per artifact: the first {} bytes are preserved",
                crate::segment::MAX_ARTIFACT_CHUNKS,
                cap.size
            )
        });
        let error = cap
            .error
            .as_ref()
            .map(|e| format!("read failed after {} bytes: {e}", cap.size));
        Pending {
            artifact: Artifact {
                incident: self.ctx.incident.clone(),
                run: self.ctx.run.clone(),
                source: self.spec.name.clone(),
                source_kind: self.spec.kind,
                kind,
                path,
                status,
                reason,
                error,
                size: cap.size,
                blake3: cap.blake3,
                // Only an agent's pipeline leaves SHA-256 out: it sends the
                // artifact without `sha256` and the server computes it.
                sha256: cap.sha256.unwrap_or(Sha256Digest([0; 32])),
                chunks: Vec::new(),
                link_target: None,
                offset: None,
                file: None,
                command: None,
                host: self.ctx.host.clone(),
                collector: self.ctx.collector.clone(),
                tool: Tool::this(),
                started_at: self.started.clone(),
                ended_at: Time::now(),
            },
            chunks: cap.chunks,
        }
    }

    /// A key file of this item with nothing read yet: no content, form
    /// `not_key_material`, `withheld`.
    fn key_file(&self, path: String) -> KeyFile {
        KeyFile {
            incident: self.ctx.incident.clone(),
            run: self.ctx.run.clone(),
            source: self.spec.name.clone(),
            path,
            status: Status::Complete,
            reason: None,
            error: None,
            size: 0,
            blake3: Blake3Id::of(b""),
            sha256: Sha256Digest::of(b""),
            file: None,
            form: Form::NotKeyMaterial,
            content: KeyContent::Withheld,
            sealed_to: Vec::new(),
            keys: Vec::new(),
            notes: Vec::new(),
            host: self.ctx.host.clone(),
            collector: self.ctx.collector.clone(),
            tool: Tool::this(),
            started_at: self.started.clone(),
            ended_at: Time::now(),
        }
    }

    fn failed(&self, kind: ItemKind, path: String, error: String) -> Pending {
        let mut p = self.artifact(kind, path, empty_capture());
        p.artifact.status = Status::Failed;
        p.artifact.error = Some(error);
        p
    }
}

/// Preserves every item of `spec`, calling `emit` with each artifact.
///
/// # Errors
/// Only when the pipeline stopped (storage failure); item failures become
/// failed artifacts.
pub fn preserve_source<E: From<PipelineError>>(
    spec: &SourceSpec,
    ctx: &RunContext,
    pipe: &mut Pipeline<'_, '_>,
    progress: &dyn Progress,
    emit: &mut dyn FnMut(&mut Pipeline<'_, '_>, Found) -> Result<(), E>,
) -> Result<(), E> {
    match spec.kind {
        SourceKind::Command => {
            let item = Item {
                ctx,
                spec,
                started: Time::now(),
            };
            progress.item(&command_line(&spec.argv));
            let p = capture_command(&item, pipe, progress)?;
            emit(pipe, p.into())
        }
        SourceKind::Files | SourceKind::Keys => {
            let excludes = build_excludes(&spec.exclude).map_err(|e| E::from(PipelineError(e)))?;
            let mut visited = HashSet::new();
            for pattern in &spec.paths {
                let mut found = 0usize;
                let mut paths = Vec::new();
                expand(pattern, &excludes, &ctx.refuse, &mut paths);
                for entry in paths {
                    found += 1;
                    let item = Item {
                        ctx,
                        spec,
                        started: Time::now(),
                    };
                    match entry {
                        Ok(path) => {
                            if !visited.insert(path.clone()) {
                                continue;
                            }
                            progress.item(&path.to_string_lossy());
                            if spec.kind == SourceKind::Keys {
                                for f in capture_key_file(&item, &path, pipe, progress)? {
                                    emit(pipe, f)?;
                                }
                            } else {
                                let p = capture_path(&item, &path, pipe, progress)?;
                                emit(pipe, p.into())?;
                            }
                        }
                        Err((path, error)) => {
                            emit(
                                pipe,
                                item.failed(
                                    ItemKind::Missing,
                                    path.to_string_lossy().into_owned(),
                                    error,
                                )
                                .into(),
                            )?;
                        }
                    }
                }
                if found == 0 {
                    let item = Item {
                        ctx,
                        spec,
                        started: Time::now(),
                    };
                    emit(
                        pipe,
                        item.failed(
                            ItemKind::Missing,
                            pattern.clone(),
                            "the glob matched nothing".into(),
                        )
                        .into(),
                    )?;
                }
            }
            Ok(())
        }
    }
}

struct Excludes {
    full: globset::GlobSet,
    name: globset::GlobSet,
}

impl Excludes {
    fn matches(&self, p: &Path) -> bool {
        self.full.is_match(p) || p.file_name().is_some_and(|n| self.name.is_match(n))
    }
}

fn build_excludes(globs: &[String]) -> Result<Excludes, String> {
    let mut full = globset::GlobSetBuilder::new();
    let mut name = globset::GlobSetBuilder::new();
    for g in globs {
        let glob = globset::Glob::new(g).map_err(|e| format!("exclude {g:?}: {e}"))?;
        if g.contains('/') {
            full.add(glob)
        } else {
            name.add(glob)
        };
    }
    let built = |b: globset::GlobSetBuilder| b.build().map_err(|e| e.to_string());
    Ok(Excludes {
        full: built(full)?,
        name: built(name)?,
    })
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

type Expanded = Result<PathBuf, (PathBuf, String)>;

/// Expands one path, directory or glob into items (files, links, errors), in
/// a stable order.
fn expand(pattern: &str, excludes: &Excludes, refuse: &[(u64, u64)], out: &mut Vec<Expanded>) {
    // A path that exists is taken literally, even with glob characters in
    // its name (`app[1].log`).
    let literal = std::fs::symlink_metadata(pattern);
    if !is_glob(pattern) || literal.is_ok() {
        let p = PathBuf::from(pattern);
        match literal {
            Err(e) => out.push(Err((p, format!("couldn't read: {e}")))),
            Ok(m) if m.is_dir() => walk(&p, excludes, refuse, None, out),
            // A link named explicitly as a source root is followed (the
            // responder asked for what it points to); links inside are not.
            Ok(m)
                if m.file_type().is_symlink()
                    && std::fs::metadata(&p).is_ok_and(|t| t.is_dir()) =>
            {
                walk(&p, excludes, refuse, None, out);
            }
            Ok(_) => out.push(Ok(p)),
        }
        return;
    }
    // The literal directory prefix of the glob is where the walk starts.
    let base: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| !is_glob(&c.as_os_str().to_string_lossy()))
        .collect();
    let glob = match globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
    {
        Ok(g) => g.compile_matcher(),
        Err(e) => {
            out.push(Err((PathBuf::from(pattern), format!("bad glob: {e}"))));
            return;
        }
    };
    walk(&base, excludes, refuse, Some(&glob), out);
}

fn walk(
    root: &Path,
    excludes: &Excludes,
    refuse: &[(u64, u64)],
    glob: Option<&globset::GlobMatcher>,
    out: &mut Vec<Expanded>,
) {
    let mut matched_dirs: Vec<PathBuf> = Vec::new();
    let it = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter();
    let mut it = it.filter_entry(|e| !(e.depth() > 0 && excludes.matches(e.path())));
    while let Some(entry) = it.next() {
        match entry {
            Err(e) => {
                let path = e.path().map_or_else(|| root.to_owned(), Path::to_path_buf);
                let why = e
                    .io_error()
                    .map_or_else(|| e.to_string(), ToString::to_string);
                out.push(Err((path, format!("couldn't read: {why}"))));
            }
            Ok(e) => {
                let p = e.path();
                let followed_root = e.depth() == 0 && e.path_is_symlink();
                if e.file_type().is_dir() || followed_root {
                    // Never the vault itself: it would preserve its own packs.
                    let meta = if followed_root {
                        std::fs::metadata(p)
                    } else {
                        e.metadata().map_err(Into::into)
                    };
                    let id = meta.map(|m| (m.dev(), m.ino()));
                    if id.is_ok_and(|id| refuse.contains(&id)) {
                        out.push(Err((
                            p.to_owned(),
                            "refused: this directory is the vault itself".into(),
                        )));
                        it.skip_current_dir();
                        continue;
                    }
                }
                if followed_root {
                    // The root link itself: what it points to follows.
                    continue;
                }
                let inside_matched = matched_dirs.iter().any(|d| p.starts_with(d));
                let selected = match glob {
                    None => true,
                    Some(g) => inside_matched || g.is_match(p),
                };
                if e.file_type().is_dir() {
                    if glob.is_some() && !inside_matched && selected && e.depth() > 0 {
                        matched_dirs.push(p.to_owned());
                    }
                    continue;
                }
                if selected && !(e.depth() == 0 && glob.is_some()) {
                    out.push(Ok(p.to_owned()));
                }
            }
        }
    }
}

/// The name of a user (`user`) or group id, looked up once per run: the
/// system's lookup reads and parses /etc/passwd or /etc/group on every call,
/// which cost more than reading a small file.
fn id_name(id: u32, user: bool) -> Option<String> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static NAMES: RefCell<HashMap<(bool, u32), Option<String>>> = RefCell::new(HashMap::new());
    }
    NAMES.with(|names| {
        names
            .borrow_mut()
            .entry((user, id))
            .or_insert_with(|| {
                if user {
                    nix::unistd::User::from_uid(id.into())
                        .ok()
                        .flatten()
                        .map(|u| u.name)
                } else {
                    nix::unistd::Group::from_gid(id.into())
                        .ok()
                        .flatten()
                        .map(|g| g.name)
                }
            })
            .clone()
    })
}

fn file_meta(m: &std::fs::Metadata) -> FileMeta {
    let t = |s: i64, ns: i64| {
        jiff::Timestamp::new(s, ns as i32).map_or_else(|_| Time::from_unix(0), Time::at)
    };
    FileMeta {
        mtime: t(m.mtime(), m.mtime_nsec()),
        ctime: t(m.ctime(), m.ctime_nsec()),
        mode: format!("{:o}", m.mode()),
        uid: m.uid(),
        gid: m.gid(),
        owner: id_name(m.uid(), true),
        group: id_name(m.gid(), false),
        dev: m.dev(),
        ino: m.ino(),
    }
}

fn capture_path(
    item: &Item<'_>,
    path: &Path,
    pipe: &mut Pipeline<'_, '_>,
    progress: &dyn Progress,
) -> Result<Pending, PipelineError> {
    let shown = path.to_string_lossy().into_owned();
    let (mut file, opened) = match open_item(item, path, &shown) {
        Ok(o) => o,
        Err(p) => return Ok(*p),
    };
    let cap = pipe.capture_file(&mut file, &shown, opened.len(), |n| progress.bytes(n))?;
    let reason = read_reason(path, &opened, cap.size);
    let mut p = item.artifact(ItemKind::File, shown, cap);
    p.artifact.file = Some(file_meta(&opened));
    if p.artifact.status == Status::Complete {
        if let Some(r) = reason {
            p.artifact.status = Status::Partial;
            p.artifact.reason = Some(r);
        }
    }
    Ok(p)
}

/// Reads a file of a `keys` source and describes it (FORMAT.md §9.12).
/// The key records always; the bytes in clear only when the file holds
/// public key material and nothing else; sealed to the source's `seal_to`
/// recipients when it holds more; otherwise not at all.
fn capture_key_file(
    item: &Item<'_>,
    path: &Path,
    pipe: &mut Pipeline<'_, '_>,
    progress: &dyn Progress,
) -> Result<Vec<Found>, PipelineError> {
    use sha2::Digest as _;
    let shown = path.to_string_lossy().into_owned();
    let (mut file, opened) = match open_item(item, path, &shown) {
        Ok(o) => o,
        // A link is recorded as a link: it holds no key.
        Err(p) if p.artifact.kind == ItemKind::Symlink && p.artifact.error.is_none() => {
            return Ok(vec![(*p).into()]);
        }
        // A key file that cannot be read (a 0600 key of another user) is
        // still in the snapshot, as failed.
        Err(p) => {
            let mut k = item.key_file(shown);
            k.status = Status::Failed;
            k.error = p.artifact.error;
            k.file = p.artifact.file;
            return Ok(vec![Found::KeyFile(Box::new(k))]);
        }
    };
    // Everything is hashed; at most MAX_KEY_FILE (and one buffer) is kept,
    // zeroed on drop (best effort: a parser may copy it).
    let limit = usize::try_from(MAX_KEY_FILE).unwrap_or(usize::MAX);
    let mut buf = zeroize::Zeroizing::new(vec![0u8; 64 << 10]);
    let expect = usize::try_from(opened.len()).unwrap_or(usize::MAX);
    let mut kept = zeroize::Zeroizing::new(Vec::with_capacity(expect.min(limit) + buf.len()));
    let (mut sha, mut b3) = (sha2::Sha256::new(), blake3::Hasher::new());
    let mut size = 0u64;
    let mut error = None;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sha.update(&buf[..n]);
                b3.update(&buf[..n]);
                size += n as u64;
                if kept.len() <= limit {
                    kept.extend_from_slice(&buf[..n]);
                }
                progress.bytes(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                error = Some(format!("read failed after {size} bytes: {e}"));
                break;
            }
        }
    }
    let reason = read_reason(path, &opened, size);
    let status = match (&error, &reason) {
        (Some(_), _) => Status::Failed,
        (None, Some(_)) => Status::Partial,
        (None, None) => Status::Complete,
    };
    let analysis = if size > MAX_KEY_FILE {
        crate::keymaterial::Analysis {
            form: Form::NotKeyMaterial,
            keys: Vec::new(),
            notes: vec![format!(
                "{size} bytes, more than the {MAX_KEY_FILE} read as key material: not parsed"
            )],
        }
    } else {
        crate::keymaterial::analyze(&kept)
    };
    let mut notes = analysis.notes;
    let seal_to = &item.spec.seal_to;
    let mut out = Vec::new();
    let mut content = KeyContent::Withheld;
    let (kind, bytes) = if analysis.form == Form::Public {
        (Some(ItemKind::File), Some(kept.to_vec()))
    } else if !seal_to.is_empty() && size <= MAX_KEY_FILE {
        match crate::keymaterial::seal(&kept, seal_to) {
            Ok(ct) => (Some(ItemKind::Sealed), Some(ct)),
            Err(e) => {
                notes.push(format!("not sealed: {e}"));
                (None, None)
            }
        }
    } else {
        (None, None)
    };
    if let (Some(kind), Some(bytes)) = (kind, bytes) {
        let cap = pipe.capture(&bytes[..], |_| {})?;
        let mut p = item.artifact(kind, shown.clone(), cap);
        p.artifact.file = Some(file_meta(&opened));
        p.artifact.status = status;
        p.artifact.reason.clone_from(&reason);
        p.artifact.error.clone_from(&error);
        content = if kind == ItemKind::Sealed {
            KeyContent::Sealed
        } else {
            KeyContent::Stored
        };
        out.push(p.into());
    }
    let mut k = item.key_file(shown);
    k.status = status;
    k.reason = reason;
    k.error = error;
    k.size = size;
    k.blake3 = b3.finalize().into();
    k.sha256 = Sha256Digest(sha.finalize().into());
    k.file = Some(file_meta(&opened));
    k.form = analysis.form;
    k.content = content;
    if content == KeyContent::Sealed {
        k.sealed_to.clone_from(seal_to);
    }
    k.keys = analysis.keys;
    k.notes = notes;
    out.push(Found::KeyFile(Box::new(k)));
    Ok(out)
}

/// Opens a path for reading as a regular file, never through a link, and
/// never the vault's own key. A symbolic link, a non-file or a failure comes
/// back as the artifact that records it.
fn open_item(
    item: &Item<'_>,
    path: &Path,
    shown: &str,
) -> Result<(std::fs::File, std::fs::Metadata), Box<Pending>> {
    let shown = shown.to_owned();
    let failed = |kind, error: String, meta: Option<&std::fs::Metadata>| {
        let mut p = item.failed(kind, shown.clone(), error);
        p.artifact.file = meta.map(file_meta);
        Box::new(p)
    };
    let before = std::fs::symlink_metadata(path)
        .map_err(|e| failed(ItemKind::Missing, format!("couldn't stat: {e}"), None))?;
    if before.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map_err(|e| failed(ItemKind::Symlink, format!("couldn't read link: {e}"), None))?;
        let mut p = item.artifact(ItemKind::Symlink, shown, empty_capture());
        p.artifact.link_target = Some(target.to_string_lossy().into_owned());
        p.artifact.file = Some(file_meta(&before));
        return Err(Box::new(p));
    }
    if !before.file_type().is_file() {
        let why = format!("not a regular file (mode {:o})", before.mode());
        return Err(failed(ItemKind::File, why, Some(&before)));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| failed(ItemKind::File, format!("couldn't open: {e}"), Some(&before)))?;
    match file.metadata() {
        Ok(m) if item.ctx.refuse.contains(&(m.dev(), m.ino())) => Err(failed(
            ItemKind::File,
            "refused: this is the vault's own signing key".into(),
            Some(&m),
        )),
        Ok(m) if m.is_file() => Ok((file, m)),
        Ok(_) => Err(failed(
            ItemKind::File,
            "replaced by a non-file while opening".into(),
            None,
        )),
        Err(e) => Err(failed(ItemKind::File, format!("couldn't stat: {e}"), None)),
    }
}

/// [`change_reason`] of a file just read, from one stat of its path: while
/// the path still names the file read (the device and inode it was opened
/// with, which an open file keeps from reuse), that stat is the file's as
/// it is now, so the file is not asked again; otherwise the file was
/// rotated, which is the reason whatever the file is now.
fn read_reason(path: &Path, opened: &std::fs::Metadata, read: u64) -> Option<String> {
    let now_at_path = std::fs::symlink_metadata(path).ok();
    let after = now_at_path
        .as_ref()
        .filter(|m| m.dev() == opened.dev() && m.ino() == opened.ino());
    change_reason(opened, after, now_at_path.as_ref(), read)
}

/// Why a file read is not a faithful snapshot, if it is not.
fn change_reason(
    opened: &std::fs::Metadata,
    after: Option<&std::fs::Metadata>,
    at_path: Option<&std::fs::Metadata>,
    read: u64,
) -> Option<String> {
    let start = opened.len();
    let same_file = at_path.is_some_and(|m| m.dev() == opened.dev() && m.ino() == opened.ino());
    if !same_file {
        return Some(format!(
            "rotated: the path {} during capture ({read} bytes read of {start})",
            if at_path.is_some() {
                "was replaced by another file"
            } else {
                "was removed"
            }
        ));
    }
    let end = after.map_or(read, std::fs::Metadata::len);
    if read < start || end < start {
        return Some(format!(
            "truncated during capture: {start} bytes at start, {end} at end, {read} read"
        ));
    }
    if read > start || end > start {
        return Some(format!(
            "grew during capture: {start} bytes at start, {end} at end, {read} read"
        ));
    }
    let modified =
        after.is_some_and(|a| (a.mtime(), a.mtime_nsec()) != (opened.mtime(), opened.mtime_nsec()));
    modified.then(|| format!("modified during capture (size unchanged, {read} bytes)"))
}

/// The argv as one shell-quoted line, for paths and messages.
pub fn command_line(argv: &[String]) -> String {
    shell_words::join(argv)
}

fn capture_command(
    item: &Item<'_>,
    pipe: &mut Pipeline<'_, '_>,
    progress: &dyn Progress,
) -> Result<Pending, PipelineError> {
    let argv = &item.spec.argv;
    let line = command_line(argv);
    // Its own process group, so that a timeout ends the command and
    // everything it started.
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let mut p = item.failed(
                ItemKind::Command,
                line,
                format!("couldn't start {:?}: {e}", argv[0]),
            );
            p.artifact.command = Some(CommandOutcome {
                argv: argv.clone(),
                exit_code: None,
                signal: None,
                stderr: String::new(),
                stderr_bytes: 0,
            });
            return Ok(p);
        }
    };
    let mut stderr = child.stderr.take().expect("piped");
    let err_thread = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut total = 0u64;
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    total += n as u64;
                    let room = STDERR_KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        (kept, total)
    });
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let kill_group = move || {
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    };
    let limit = std::time::Duration::from_secs(
        item.spec
            .timeout_secs
            .unwrap_or(DEFAULT_COMMAND_TIMEOUT_SECS),
    );
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let watchdog = std::thread::spawn(move || {
        let timed_out = matches!(
            done_rx.recv_timeout(limit),
            Err(crossbeam_channel::RecvTimeoutError::Timeout)
        );
        if timed_out {
            kill_group();
        }
        timed_out
    });
    let stdout = child.stdout.take().expect("piped");
    let cap = pipe.capture(stdout, |n| progress.bytes(n));
    if cap.as_ref().map_or(true, |c| c.truncated) {
        // Nobody reads its output any more.
        kill_group();
    }
    let status = child.wait();
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let (kept, total) = err_thread.join().unwrap_or_default();
    let cap = cap?;
    let mut p = item.artifact(ItemKind::Command, line, cap);
    let (code, signal) = match &status {
        Ok(s) => (s.code(), std::os::unix::process::ExitStatusExt::signal(s)),
        Err(_) => (None, None),
    };
    p.artifact.command = Some(CommandOutcome {
        argv: argv.clone(),
        exit_code: code,
        signal,
        stderr: String::from_utf8_lossy(&kept).into_owned(),
        stderr_bytes: total,
    });
    if p.artifact.status == Status::Complete {
        let failure = match (&status, code, signal) {
            _ if timed_out => Some(format!(
                "timed out after {} s and was killed; the output up to then is preserved",
                limit.as_secs()
            )),
            (Err(e), _, _) => Some(format!("couldn't wait for the command: {e}")),
            (_, Some(0), _) => None,
            (_, Some(c), _) => Some(format!("exited with status {c}")),
            (_, None, Some(s)) => Some(format!("killed by signal {s}")),
            _ => Some("ended without an exit status".into()),
        };
        if let Some(f) = failure {
            p.artifact.status = Status::Failed;
            p.artifact.error = Some(f);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(pattern: &str, exclude: &[&str]) -> Vec<String> {
        let ex =
            build_excludes(&exclude.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let mut out = Vec::new();
        expand(pattern, &ex, &[], &mut out);
        out.into_iter()
            .map(|r| match r {
                Ok(p) => p.to_string_lossy().into_owned(),
                Err((p, e)) => format!("ERR {} {e}", p.display()),
            })
            .collect()
    }

    /// Kept positions come back for the same file, also renamed within
    /// its directory, but not for another file that got its inode.
    #[test]
    fn positions_resume_only_the_same_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("app.log");
        std::fs::write(&f, b"first line\nsecond line\n").unwrap();
        let m = std::fs::metadata(&f).unwrap();
        let mut follow = Follow::default();
        follow.resume([FollowPosition {
            source: "logs".into(),
            path: f.clone(),
            dev: m.dev(),
            ino: m.ino(),
            offset: 11,
            before: None,
        }]);
        let kept = follow.positions();
        assert_eq!(kept.len(), 1);
        assert!(kept[0].before.is_some());
        // Renamed: found again under its new name.
        let rotated = d.path().join("app.log.1");
        std::fs::rename(&f, &rotated).unwrap();
        let mut again = Follow::default();
        again.resume(kept.clone());
        assert_eq!(again.positions()[0].path, rotated);
        assert_eq!(again.positions()[0].offset, 11);
        // Same inode, other bytes (as when an inode is reused): not resumed.
        std::fs::write(&rotated, b"other text!\nsecond line\n").unwrap();
        let mut reused = Follow::default();
        reused.resume(kept);
        assert!(reused.is_empty(), "{:?}", reused.positions());
        // Truncated below its offset while followed: the kept position
        // matches no file, even once it has grown again.
        let g = d.path().join("g.log");
        std::fs::write(&g, b"0123456789abcdef").unwrap();
        let m = std::fs::metadata(&g).unwrap();
        let mut followed = Follow::default();
        followed.resume([FollowPosition {
            source: "logs".into(),
            path: g.clone(),
            dev: m.dev(),
            ino: m.ino(),
            offset: 12,
            before: None,
        }]);
        std::fs::write(&g, b"0123").unwrap();
        let kept = followed.positions();
        assert_eq!(kept[0].before.as_deref(), Some(""));
        std::fs::write(&g, b"0123456789abcdefXYZ").unwrap();
        let mut again = Follow::default();
        again.resume(kept);
        assert!(again.is_empty(), "{:?}", again.positions());
    }

    #[test]
    fn expands_dirs_globs_and_excludes() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("a/b")).unwrap();
        for f in ["a/x.log", "a/y.gz", "a/b/z.log", "top.log"] {
            std::fs::write(r.join(f), f).unwrap();
        }
        std::os::unix::fs::symlink("../top.log", r.join("a/link")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("a/loop")).unwrap();
        let s = |p: &str| r.join(p).to_string_lossy().into_owned();

        assert_eq!(
            paths(&s("a"), &["*.gz"]),
            vec![s("a/b/z.log"), s("a/link"), s("a/loop"), s("a/x.log")]
        );
        assert_eq!(paths(&s("*.log"), &[]), vec![s("top.log")]);
        assert_eq!(paths(&s("a/*.log"), &[]), vec![s("a/x.log")]);
        assert_eq!(
            paths(&s("a/**/*.log"), &[]),
            vec![s("a/b/z.log"), s("a/x.log")]
        );
        assert_eq!(
            paths(&s("a/b"), &["b"]).len(),
            1,
            "excludes don't drop the root itself"
        );
        assert!(paths(&s("nope"), &[])[0].starts_with("ERR"));
    }

    #[test]
    fn change_reasons() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(change_reason(&m, Some(&m), Some(&m), 5), None);
        assert!(
            change_reason(&m, Some(&m), Some(&m), 7)
                .unwrap()
                .starts_with("grew")
        );
        assert!(
            change_reason(&m, Some(&m), Some(&m), 3)
                .unwrap()
                .starts_with("truncated")
        );
        assert!(
            change_reason(&m, Some(&m), None, 5)
                .unwrap()
                .contains("removed")
        );
        std::fs::rename(&p, d.path().join("g")).unwrap();
        std::fs::write(&p, b"new").unwrap();
        let other = std::fs::metadata(&p).unwrap();
        assert!(
            change_reason(&m, Some(&m), Some(&other), 5)
                .unwrap()
                .contains("replaced")
        );
    }

    /// The one stat after a read sees what happened to the file while it
    /// was read, through its path while the path names it.
    #[test]
    fn read_reasons_from_the_file_as_it_is_now() {
        use std::io::Write as _;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let reason = |change: &dyn Fn(&std::fs::File)| {
            std::fs::write(&p, b"12345").unwrap();
            let file = std::fs::File::open(&p).unwrap();
            let opened = file.metadata().unwrap();
            change(&file);
            read_reason(&p, &opened, 5)
        };
        assert_eq!(reason(&|_| {}), None);
        let grew = reason(&|_| {
            let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(b"678").unwrap();
        });
        assert!(grew.unwrap().contains("5 bytes at start, 8 at end"));
        let modified = reason(&|f| {
            let later =
                f.metadata().unwrap().modified().unwrap() + std::time::Duration::from_secs(7);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(later)
                .unwrap();
        });
        assert!(modified.unwrap().starts_with("modified"));
        let rotated = reason(&|_| std::fs::rename(&p, d.path().join("f.1")).unwrap());
        assert!(rotated.unwrap().contains("was removed"));
        let replaced = reason(&|_| {
            std::fs::rename(&p, d.path().join("f.2")).unwrap();
            std::fs::write(&p, b"other").unwrap();
        });
        assert!(replaced.unwrap().contains("replaced by another file"));
    }
}

/// Where following one file got to: the open file (which keeps a rotated
/// file readable after its path names another), its identity, and the
/// next byte to capture.
#[derive(Debug)]
struct Tail {
    file: std::fs::File,
    dev: u64,
    ino: u64,
    offset: u64,
}

/// The files of `files` sources, followed while their incident is held
/// (`custody agent`, FORMAT.md §9.4 `offset`): each [`Follow::tick`]
/// captures what was appended since the last, as artifacts holding a
/// file's bytes `offset..offset + size`. A file rotated away (its path now
/// names another file, or nothing) is read to its end through the handle
/// kept open, then the new file from its first byte. A file truncated in
/// place is `partial` (bytes appended after the last tick and before the
/// truncation are gone) and followed again from byte 0.
#[derive(Debug, Default)]
pub struct Follow {
    /// By source name and path.
    tails: std::collections::BTreeMap<(String, PathBuf), Tail>,
}

/// Where following one file got to, as kept across restarts of an agent
/// ([`Follow::positions`], [`Follow::resume`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FollowPosition {
    /// The source's name.
    pub source: String,
    /// The file's path when last seen.
    pub path: PathBuf,
    /// Its device and inode.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// The next byte to capture.
    pub offset: u64,
    /// SHA-256 (hex) of the up to 4 KiB before `offset`, so that a file
    /// that merely got the same inode later (deleted by a rotation, the
    /// inode reused) is not taken for this one.
    #[serde(default)]
    pub before: Option<String>,
}

/// How many bytes before a position [`FollowPosition::before`] covers.
const BEFORE_BYTES: u64 = 4096;

/// SHA-256 (hex) of `file`'s bytes `offset - 4 KiB .. offset`, if it has
/// them all.
fn bytes_before(file: &std::fs::File, offset: u64) -> Option<String> {
    use std::os::unix::fs::FileExt as _;
    let start = offset.saturating_sub(BEFORE_BYTES);
    let mut buf = vec![0u8; usize::try_from(offset - start).ok()?];
    file.read_exact_at(&mut buf, start).ok()?;
    Some(Sha256Digest::of(&buf).to_string())
}

impl Follow {
    /// Starts from what a run captured: each file artifact whose file is
    /// still there (same device and inode) is followed from where its
    /// capture ended.
    pub fn start_from(&mut self, entries: &[crate::segment::Entry]) {
        let positions = entries.iter().filter_map(|e| {
            let crate::segment::Entry::Artifact(a) = e else {
                return None;
            };
            let meta = a.file.as_ref()?;
            (a.kind == ItemKind::File && a.status != Status::Failed).then(|| FollowPosition {
                source: a.source.clone(),
                path: PathBuf::from(&a.path),
                dev: meta.dev,
                ino: meta.ino,
                offset: a.offset.unwrap_or(0).saturating_add(a.size),
                before: None,
            })
        });
        self.resume(positions);
    }

    /// Where each followed file got to.
    pub fn positions(&self) -> Vec<FollowPosition> {
        self.tails
            .iter()
            .map(|((source, path), t)| FollowPosition {
                source: source.clone(),
                path: path.clone(),
                dev: t.dev,
                ino: t.ino,
                offset: t.offset,
                // Bytes before the offset gone (the file was truncated):
                // a value no file matches, so it is followed anew.
                before: Some(bytes_before(&t.file, t.offset).unwrap_or_default()),
            })
            .collect()
    }

    /// Follows each file of `positions` on from its offset, if it is still
    /// there: at its path, or renamed within the same directory (rotated
    /// while nobody followed it). A later position of the same file wins.
    pub fn resume(&mut self, positions: impl IntoIterator<Item = FollowPosition>) {
        for p in positions {
            let same = |m: &std::fs::Metadata| m.is_file() && m.dev() == p.dev && m.ino() == p.ino;
            let path = if std::fs::symlink_metadata(&p.path).is_ok_and(|m| same(&m)) {
                Some(p.path.clone())
            } else {
                p.path.parent().and_then(|dir| {
                    std::fs::read_dir(dir)
                        .ok()?
                        .filter_map(Result::ok)
                        .find(|e| std::fs::symlink_metadata(e.path()).is_ok_and(|m| same(&m)))
                        .map(|e| e.path())
                })
            };
            let Some(path) = path else { continue };
            let Ok(file) = open_nofollow(&path) else {
                continue;
            };
            // The same inode, but not the same file (reused since): it is
            // followed from its first byte as a new one.
            if p.before.is_some() && bytes_before(&file, p.offset) != p.before {
                continue;
            }
            if file.metadata().is_ok_and(|m| same(&m)) {
                self.tails.insert(
                    (p.source, path),
                    Tail {
                        file,
                        dev: p.dev,
                        ino: p.ino,
                        offset: p.offset,
                    },
                );
            }
        }
    }

    /// Files followed now.
    pub fn len(&self) -> usize {
        self.tails.len()
    }

    /// Whether no file is followed.
    pub fn is_empty(&self) -> bool {
        self.tails.is_empty()
    }

    /// Captures what the `files` source `spec` appended since the last
    /// tick; other kinds of sources are not followed.
    ///
    /// # Errors
    /// Only when the pipeline stopped (storage failure).
    pub fn tick<E: From<PipelineError>>(
        &mut self,
        spec: &SourceSpec,
        ctx: &RunContext,
        pipe: &mut Pipeline<'_, '_>,
        emit: &mut dyn FnMut(&mut Pipeline<'_, '_>, Found) -> Result<(), E>,
    ) -> Result<(), E> {
        if spec.kind != SourceKind::Files {
            return Ok(());
        }
        let excludes = build_excludes(&spec.exclude).map_err(|e| E::from(PipelineError(e)))?;
        let mut now = Vec::new();
        for pattern in &spec.paths {
            expand(pattern, &excludes, &ctx.refuse, &mut now);
        }
        let now: std::collections::BTreeSet<PathBuf> =
            now.into_iter().filter_map(Result::ok).collect();
        let item = Item {
            ctx,
            spec,
            started: Time::now(),
        };
        // Where each path is now, by identity.
        let ids: std::collections::BTreeMap<PathBuf, (u64, u64)> = now
            .iter()
            .filter_map(|p| {
                let m = std::fs::symlink_metadata(p).ok()?;
                m.is_file().then(|| (p.clone(), (m.dev(), m.ino())))
            })
            .collect();
        let mine: Vec<(String, PathBuf)> = self
            .tails
            .keys()
            .filter(|(source, _)| *source == spec.name)
            .cloned()
            .collect();
        for key in mine {
            let Some(t) = self.tails.get(&key) else {
                continue;
            };
            let id = (t.dev, t.ino);
            if ids.get(&key.1) == Some(&id) {
                continue;
            }
            // Renamed (rotated to `app.log.1` within the source): the same
            // file, followed on under its new path.
            let moved = ids
                .iter()
                .find(|(p, i)| {
                    **i == id && !self.tails.contains_key(&(spec.name.clone(), (*p).clone()))
                })
                .map(|(p, _)| p.clone());
            let t = self.tails.remove(&key).expect("present");
            match moved {
                Some(p) => {
                    self.tails.insert((spec.name.clone(), p), t);
                }
                None => {
                    // Rotated away or deleted: read to its end.
                    let piece = tail_piece(&item, pipe, &key.1, t, None, None)?;
                    emit(pipe, piece.into())?;
                }
            }
        }
        for path in now {
            let Ok(at_path) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !at_path.is_file() {
                continue;
            }
            let key = (spec.name.clone(), path.clone());
            let same = self
                .tails
                .get(&key)
                .is_some_and(|t| t.dev == at_path.dev() && t.ino == at_path.ino());
            if !same {
                if let Some(old) = self.tails.remove(&key) {
                    // Rotated since the look above: the rest of the old file first.
                    let piece = tail_piece(&item, pipe, &path, old, None, None)?;
                    emit(pipe, piece.into())?;
                }
                let Ok(file) = open_nofollow(&path) else {
                    continue;
                };
                let Ok(m) = file.metadata() else { continue };
                if !m.is_file() || ctx.refuse.contains(&(m.dev(), m.ino())) {
                    continue;
                }
                self.tails.insert(
                    key.clone(),
                    Tail {
                        file,
                        dev: m.dev(),
                        ino: m.ino(),
                        offset: 0,
                    },
                );
            }
            let Some(t) = self.tails.get_mut(&key) else {
                continue;
            };
            let len = t.file.metadata().map_or(t.offset, |m| m.len());
            let mut truncated = None;
            if len < t.offset {
                truncated = Some(format!(
                    "truncated in place from at least {} to {len} bytes since the last capture (anything appended in between is lost); followed again from byte 0",
                    t.offset
                ));
                t.offset = 0;
            }
            if len == t.offset {
                continue;
            }
            let file = t
                .file
                .try_clone()
                .map_err(|e| E::from(PipelineError(e.to_string())))?;
            let piece = Tail {
                file,
                dev: t.dev,
                ino: t.ino,
                offset: t.offset,
            };
            let p = tail_piece(&item, pipe, &path, piece, Some(len - t.offset), truncated)?;
            t.offset = p.artifact.offset.unwrap_or(0) + p.artifact.size;
            emit(pipe, p.into())?;
        }
        Ok(())
    }
}

fn open_nofollow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
        .open(path)
}

/// The bytes of `t.file` from `t.offset` on: `limit` bytes, or to the end.
fn tail_piece(
    item: &Item<'_>,
    pipe: &mut Pipeline<'_, '_>,
    path: &Path,
    mut t: Tail,
    limit: Option<u64>,
    truncated: Option<String>,
) -> Result<Pending, PipelineError> {
    use std::io::Seek as _;
    let shown = path.to_string_lossy().into_owned();
    let meta = t.file.metadata().ok();
    let cap = match t.file.seek(std::io::SeekFrom::Start(t.offset)) {
        Ok(_) => pipe.capture((&mut t.file).take(limit.unwrap_or(u64::MAX)), |_| {})?,
        Err(e) => Captured {
            error: Some(e),
            ..empty_capture()
        },
    };
    let mut p = item.artifact(ItemKind::File, shown, cap);
    p.artifact.file = meta.as_ref().map(file_meta);
    p.artifact.offset = Some(t.offset);
    if p.artifact.status == Status::Complete
        && let Some(r) = truncated
    {
        p.artifact.status = Status::Partial;
        p.artifact.reason = Some(r);
    }
    Ok(p)
}
