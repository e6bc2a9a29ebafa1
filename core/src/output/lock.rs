//! Claiming an output folder before any work: it must exist (or be creatable) and be writable, and
//! one process at a time writes it. The claim is an OS file lock on `OUT/.lineage.lock` (released by
//! the OS when the process ends, however it ends), and the file names the holder for the message a
//! second process gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::CoreError;

/// Name of the lock file inside an output folder.
pub const LOCK_FILE: &str = ".lineage.lock";

/// An output folder claimed by this process until the value is dropped.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    _file: File,
}

impl OutputLock {
    /// Creates `dir` if needed, checks it is writable, and claims it; another live lineage process
    /// holding it is [`CoreError::OutputInUse`], naming that process.
    pub fn claim(dir: &Path) -> Result<Self, CoreError> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| CoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "a process that has not yet written its name".to_string(),
                    h => h.to_string(),
                };
                return Err(CoreError::OutputInUse {
                    path: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(CoreError::io(&path, e)),
        }
        let me = format!("pid {} since {}", std::process::id(), unix_seconds());
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| CoreError::io(&path, e))?;
        Ok(Self { path, _file: file })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out/nested");
        let first = OutputLock::claim(&out).unwrap();
        assert!(first.path().exists());
        let err = OutputLock::claim(&out).unwrap_err().to_string();
        assert!(
            err.contains("another lineage run") && err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        OutputLock::claim(&out).expect("free again once dropped");
    }

    #[test]
    fn a_file_in_the_way_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("taken");
        std::fs::write(&file, "not a folder").unwrap();
        let err = OutputLock::claim(&file).unwrap_err().to_string();
        assert!(err.contains("taken"), "{err}");
    }
}
