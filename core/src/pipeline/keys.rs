//! Content keys: SHA-256 digests identifying checkpoints, eval data and options, so cached
//! results survive moved folders and are never reused for changed inputs.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::CoreError;
use crate::pipeline::store::JsonlStore;

/// A hex SHA-256 digest.
pub type Key = String;

/// SHA-256 of a file's bytes, streamed.
pub fn hash_file(path: &Path) -> Result<Key, CoreError> {
    let mut file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| CoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 over several parts, each length-prefixed so that concatenations cannot collide.
pub fn hash_parts<S: AsRef<[u8]>>(parts: &[S]) -> Key {
    let mut hasher = Sha256::new();
    for part in parts {
        let part = part.as_ref();
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A memoised file digest: valid while the file keeps its size and modification time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct FileDigest {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
    sha256: Key,
}

/// Computes file digests once: later runs reuse them while size and mtime are unchanged.
pub struct FileKeys {
    store: JsonlStore<FileDigest>,
    memo: Mutex<HashMap<PathBuf, FileDigest>>,
}

impl FileKeys {
    /// Opens (or creates) the digest memo at `path`.
    pub fn open(path: &Path) -> Result<Self, CoreError> {
        let store = JsonlStore::<FileDigest>::open(path)?;
        let memo = store.records().map(|(_, d)| (d.path.clone(), d.clone())).collect();
        Ok(Self {
            store,
            memo: Mutex::new(memo),
        })
    }

    /// The SHA-256 of `path`, hashing it only when it is new or changed.
    pub fn key(&self, path: &Path) -> Result<Key, CoreError> {
        let canonical = path.canonicalize().map_err(|e| CoreError::io(path, e))?;
        let meta = std::fs::metadata(&canonical).map_err(|e| CoreError::io(path, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        if let Some(d) = self.memo.lock().expect("key memo poisoned").get(&canonical)
            && d.size == meta.len()
            && d.mtime_ns == mtime_ns
        {
            return Ok(d.sha256.clone());
        }
        let digest = FileDigest {
            path: canonical.clone(),
            size: meta.len(),
            mtime_ns,
            sha256: hash_file(&canonical)?,
        };
        let id = hash_parts(&[
            canonical.to_string_lossy().as_bytes(),
            &meta.len().to_le_bytes(),
            &mtime_ns.to_le_bytes(),
        ]);
        self.store.insert(&id, &digest)?;
        let key = digest.sha256.clone();
        self.memo.lock().expect("key memo poisoned").insert(canonical, digest);
        Ok(key)
    }

    /// The key of a checkpoint stored in one or several files (shards, in order).
    pub fn checkpoint_key(&self, files: &[PathBuf]) -> Result<Key, CoreError> {
        let keys = files.iter().map(|f| self.key(f)).collect::<Result<Vec<_>, _>>()?;
        Ok(if keys.len() == 1 {
            keys.into_iter().next().unwrap_or_default()
        } else {
            hash_parts(&keys)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(hash_parts(&["ab", "c"]), hash_parts(&["a", "bc"]));
        assert_eq!(hash_parts(&["x"]), hash_parts(&["x"]));
    }

    #[test]
    fn file_keys_follow_content_and_are_memoised() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.bin");
        std::fs::write(&file, b"hello").unwrap();
        let keys = FileKeys::open(&dir.path().join("keys.jsonl")).unwrap();
        let k1 = keys.key(&file).unwrap();
        assert_eq!(k1, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"world").unwrap();
        let k2 = keys.key(&file).unwrap();
        assert_ne!(k1, k2);
        drop(keys);
        let reopened = FileKeys::open(&dir.path().join("keys.jsonl")).unwrap();
        assert_eq!(reopened.memo.lock().unwrap().len(), 1);
        assert_eq!(reopened.key(&file).unwrap(), k2);
    }
}
