//! Append-only result stores that survive being killed at any moment.
//!
//! Each store is a JSON-lines file; one line holds one finished unit of work (`{"key":..,"value":..}`),
//! written with a single `write` and flushed. A line cut short by a crash is dropped (and the file
//! trimmed back to its last complete line) when the store is reopened, so a restarted run redoes
//! exactly the unfinished units and never duplicates a finished one.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::CoreError;

#[derive(Serialize, serde::Deserialize)]
struct Line<T> {
    key: String,
    value: T,
}

/// A persistent key -> value map backed by an append-only JSON-lines file.
pub struct JsonlStore<T> {
    path: PathBuf,
    file: Mutex<File>,
    records: Mutex<HashMap<String, T>>,
}

impl<T: Serialize + DeserializeOwned + Clone> JsonlStore<T> {
    /// Opens or creates the store, loading every complete record.
    pub fn open(path: &Path) -> Result<Self, CoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(|e| CoreError::io(path, e))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(|e| CoreError::io(path, e))?;
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            // A line cut short by a kill: trim it so the next append starts on a fresh line.
            file.set_len(complete as u64).map_err(|e| CoreError::io(path, e))?;
            file.seek(SeekFrom::End(0)).map_err(|e| CoreError::io(path, e))?;
        }
        let mut records = HashMap::new();
        for line in text[..complete].split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // A line from an older, incompatible version is skipped and recomputed.
            if let Ok(Line { key, value }) = serde_json::from_slice::<Line<T>>(line) {
                records.insert(key, value);
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            records: Mutex::new(records),
        })
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<T> {
        self.records.lock().expect("store poisoned").get(key).cloned()
    }

    /// True when `key` is stored.
    pub fn contains(&self, key: &str) -> bool {
        self.records.lock().expect("store poisoned").contains_key(key)
    }

    /// Stores `value` under `key` durably (one line, flushed). A key already present is not written again.
    pub fn insert(&self, key: &str, value: &T) -> Result<(), CoreError> {
        let mut records = self.records.lock().expect("store poisoned");
        if records.contains_key(key) {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&Line {
            key: key.to_string(),
            value,
        })
        .map_err(|e| CoreError::io(&self.path, e.into()))?;
        line.push(b'\n');
        let mut file = self.file.lock().expect("store poisoned");
        file.write_all(&line).map_err(|e| CoreError::io(&self.path, e))?;
        file.flush().map_err(|e| CoreError::io(&self.path, e))?;
        records.insert(key.to_string(), value.clone());
        Ok(())
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.lock().expect("store poisoned").len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of all records.
    pub fn records(&self) -> impl Iterator<Item = (String, T)> {
        self.records.lock().expect("store poisoned").clone().into_iter()
    }
}

/// Serde for an `f64` that may be NaN or infinite (a diverged model's loss): finite values are JSON
/// numbers, the others the strings `"NaN"`, `"inf"` and `"-inf"`, so they survive the store (plain
/// JSON would write `null` and the unit would be recomputed on every run).
pub mod any_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `value` as a number, or as `"NaN"` / `"inf"` / `"-inf"`.
    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        match *value {
            v if v.is_finite() => serializer.serialize_f64(v),
            v if v.is_nan() => serializer.serialize_str("NaN"),
            v if v > 0.0 => serializer.serialize_str("inf"),
            _ => serializer.serialize_str("-inf"),
        }
    }

    /// Reads what [`serialize`] writes.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Text(String),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "NaN" => Ok(f64::NAN),
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!("not a number: {other:?}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_persist_and_a_cut_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        {
            let store = JsonlStore::<f64>::open(&path).unwrap();
            store.insert("a", &1.5).unwrap();
            store.insert("b", &2.5).unwrap();
            store.insert("a", &9.0).unwrap();
            assert_eq!(store.len(), 2);
        }
        // Simulate a kill in the middle of writing a third line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"key":"c","va"#).unwrap();
        drop(f);
        let store = JsonlStore::<f64>::open(&path).unwrap();
        assert_eq!(store.get("a"), Some(1.5));
        assert_eq!(store.get("b"), Some(2.5));
        assert!(!store.contains("c"));
        store.insert("c", &3.5).unwrap();
        drop(store);
        let store = JsonlStore::<f64>::open(&path).unwrap();
        assert_eq!(store.len(), 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }

    #[test]
    fn non_finite_values_survive_the_store() {
        #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
        struct Value(#[serde(with = "super::any_f64")] f64);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 3.5e38, -0.25];
        {
            let store = JsonlStore::<Value>::open(&path).unwrap();
            for (i, v) in values.iter().enumerate() {
                store.insert(&i.to_string(), &Value(*v)).unwrap();
            }
        }
        let store = JsonlStore::<Value>::open(&path).unwrap();
        assert_eq!(store.len(), values.len(), "every value read back");
        for (i, v) in values.iter().enumerate() {
            let back = store.get(&i.to_string()).unwrap().0;
            assert!(back == *v || (back.is_nan() && v.is_nan()), "{v} came back as {back}");
        }
    }
}
