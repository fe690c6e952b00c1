//! Reading small local files that steer custody (key files, configs) safely:
//! open once without blocking, check the opened file (not the path again),
//! and read at most a bound.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Why a small file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SmallFileError {
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, device, directory: never read.
    #[error("not a regular file")]
    NotRegular,
    /// Larger than the bound.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
}

/// Opens `path` (without blocking on a FIFO), checks that the opened file is
/// a regular file, and reads at most `max` bytes of it. Returns the metadata
/// of the file actually read.
pub(crate) fn read_small(
    path: &Path,
    max: u64,
) -> Result<(std::fs::Metadata, Vec<u8>), SmallFileError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(SmallFileError::NotRegular);
    }
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(SmallFileError::TooLarge(max));
    }
    Ok((meta, bytes))
}

/// Replaces the file at `path` with `bytes` crash-safely: a new file,
/// synced, renamed over the old one, the directory synced. After a crash
/// either the old content or the new survives, never a torn mix.
///
/// # Errors
/// The I/O error of the step that failed.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Reads a small file holding a secret (a token, a TLS or webhook key),
/// refusing it when group or others may read it.
///
/// # Errors
/// A message naming the file and what is wrong; never its content.
pub fn read_secret(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let (meta, bytes) =
        read_small(path, max).map_err(|e| format!("couldn't read {}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} holds a secret but has mode {mode:03o}: make it 0600 (chmod 600)",
            path.display()
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_fifos_devices_and_large_files() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            read_small(&fifo, 10),
            Err(SmallFileError::NotRegular)
        ));
        assert!(matches!(
            read_small(Path::new("/dev/zero"), 10),
            Err(SmallFileError::NotRegular)
        ));
        let big = d.path().join("big");
        std::fs::write(&big, [0u8; 11]).unwrap();
        assert!(matches!(
            read_small(&big, 10),
            Err(SmallFileError::TooLarge(10))
        ));
        assert_eq!(read_small(&big, 11).unwrap().1.len(), 11);
    }
}
