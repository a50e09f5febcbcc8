//! [`Served`]: how many `Add` calls a server answered, optionally kept in a file that
//! outlives the server, so a count can be read even after a SIGKILL.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Every count is written at offset 0 with this width (right-aligned digits and a newline),
/// so a new value always covers the old one completely.
const WIDTH: usize = 20;

/// Counts the `Add` calls a server answered. Clones of an [`AdderService`] share one.
///
/// With a file ([`Served::with_file`]) the count is rewritten there before each answer
/// leaves the handler, so every reply a client received is in the file, whatever happens to
/// the process afterwards: the kernel keeps what was written even when the process is
/// killed. A call the file counts may still be lost on the way back (the process died
/// before sending it); the client counts that one as failed.
///
/// [`AdderService`]: crate::AdderService
#[derive(Debug, Default)]
pub struct Served {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    count: u64,
    file: Option<(File, PathBuf)>,
    /// Whether a failed write was already logged (once is enough).
    write_failed: bool,
}

// === impl Served ===

impl Served {
    /// A count kept in memory only.
    pub fn new() -> Self {
        Served::default()
    }

    /// A count also kept in `path` (created or truncated; `0` is written at once).
    pub fn with_file(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let file = File::create(&path)?;
        file.write_all_at(&encode(0), 0)?;
        Ok(Served {
            inner: Mutex::new(Inner {
                count: 0,
                file: Some((file, path)),
                write_failed: false,
            }),
        })
    }

    /// The calls answered so far.
    pub fn count(&self) -> u64 {
        self.lock().count
    }

    /// Counts one answered call (and writes the new count to the file, if any).
    pub(crate) fn record(&self) {
        let mut inner = self.lock();
        inner.count += 1;
        let count = inner.count;
        // Under the lock, so the file never goes back to an older count.
        let failed = match &inner.file {
            Some((file, path)) => match file.write_all_at(&encode(count), 0) {
                Ok(()) => None,
                Err(err) => Some(format!("{}: {err}", path.display())),
            },
            None => None,
        };
        if let Some(err) = failed
            && !inner.write_failed
        {
            inner.write_failed = true;
            tracing::warn!(error = %err, "could not write the served count");
        }
    }

    /// Reads a count that [`Served::with_file`] keeps in `path`.
    pub fn read_file(path: &Path) -> io::Result<u64> {
        let text = std::fs::read_to_string(path)?;
        text.trim().parse().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not a count ({e}): {text:?}", path.display()),
            )
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn encode(count: u64) -> Vec<u8> {
    format!("{count:>WIDTH$}\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_holds_the_latest_count_even_when_it_has_fewer_digits_than_an_older_one() {
        let dir = std::env::temp_dir().join(format!("served-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("count");
        std::fs::write(&path, "999999999999\n").unwrap();
        let served = Served::with_file(&path).unwrap();
        assert_eq!(Served::read_file(&path).unwrap(), 0, "expected 0 at start");
        for _ in 0..12 {
            served.record();
        }
        assert_eq!(served.count(), 12, "expected 12 counted in memory");
        assert_eq!(
            Served::read_file(&path).unwrap(),
            12,
            "expected 12 in the file"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_that_holds_no_count_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("served-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("count");
        std::fs::write(&path, "twelve").unwrap();
        let err = Served::read_file(&path).unwrap_err();
        assert!(
            err.to_string().contains("not a count"),
            "expected a clear error, got {err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
