//! A cheap content fingerprint of a checkpoint, to find checkpoints that hold the same weights.
//!
//! Public suites have served the wrong weights under a step's name (revisions holding the final
//! checkpoint's content). Hashing every byte of a zoo is what `batch`'s content key does; too slow for
//! `inspect`. The fingerprint is the SHA-256 of the tensor index (names, dtypes, shapes, from the header
//! scan), each file's length, and [`SAMPLES`] blocks of [`SAMPLE_BYTES`] bytes read at evenly spaced offsets
//! of each file (the first at its start, the last at its end; a file shorter than all blocks together is
//! read whole): a few small reads per file whatever its size, and no tensor is loaded.
//!
//! Byte-identical checkpoints always have equal fingerprints. Different checkpoints almost never do:
//! training changes every tensor, so every sampled block. Two checkpoints that differ only in bytes no block
//! covers (say, only a small head was trained) would collide; a full content key confirms a duplicate.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::checkpoint::CheckpointScan;
use crate::error::{LoadError, Result};
use crate::problem::{Problem, ProblemKind};
use crate::zoo::Checkpoint;
use crate::zoo::{ForkParent, Zoo};

/// Blocks sampled from each file.
pub const SAMPLES: u64 = 8;
/// Bytes in each sampled block.
pub const SAMPLE_BYTES: u64 = 4096;

/// The fingerprint of one checkpoint (all its files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprints `checkpoint`, whose header `scan` was already read.
    pub fn of(checkpoint: &Checkpoint, scan: &CheckpointScan) -> Result<Self> {
        let mut hash = Sha256::new();
        for tensor in &scan.tensors {
            hash.update(format!("{}\0{}\0{:?}\n", tensor.name, tensor.dtype, tensor.shape));
        }
        let mut block = vec![0u8; SAMPLE_BYTES as usize];
        for path in &checkpoint.files {
            let mut file = File::open(path).map_err(|e| LoadError::io(path, e))?;
            let len = file.metadata().map_err(|e| LoadError::io(path, e))?.len();
            hash.update(len.to_le_bytes());
            for (offset, size) in sample_blocks(len) {
                let buf = &mut block[..size as usize];
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(buf))
                    .map_err(|e| LoadError::io(path, e))?;
                hash.update(&*buf);
            }
        }
        Ok(Self(hash.finalize().into()))
    }

    /// Lowercase hexadecimal.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `(offset, size)` of the blocks sampled from a file of `len` bytes.
fn sample_blocks(len: u64) -> Vec<(u64, u64)> {
    if len <= SAMPLES * SAMPLE_BYTES {
        return (0..len.div_ceil(SAMPLE_BYTES))
            .map(|i| (i * SAMPLE_BYTES, SAMPLE_BYTES.min(len - i * SAMPLE_BYTES)))
            .collect();
    }
    let last = len - SAMPLE_BYTES;
    (0..SAMPLES)
        .map(|i| {
            (
                last / (SAMPLES - 1) * i + last % (SAMPLES - 1) * i / (SAMPLES - 1),
                SAMPLE_BYTES,
            )
        })
        .collect()
}

/// A checkpoint as named in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRef {
    /// Run name.
    pub run: String,
    /// Training step.
    pub step: u64,
    /// Step folder or file.
    pub path: PathBuf,
}

/// Where each run of a zoo starts: its first checkpoint's step and, for a fork, its parent checkpoint.
/// Equal weights there are by design, not a mislabelled copy: runs of one initialisation share their
/// step-0 checkpoint, and a fork child's first checkpoint is its parent's at the fork step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStarts {
    first: HashMap<String, u64>,
    parent: HashMap<String, ForkParent>,
}

impl RunStarts {
    /// The starts of the runs of `zoo`.
    pub fn of(zoo: &Zoo) -> Self {
        Self {
            first: zoo
                .runs
                .iter()
                .filter_map(|r| Some((r.name.clone(), r.checkpoints.first()?.step)))
                .collect(),
            parent: zoo
                .runs
                .iter()
                .filter_map(|r| Some((r.name.clone(), r.parent.clone()?)))
                .collect(),
        }
    }

    /// Starts known only from the checkpoints listed (run, step): each run's smallest step.
    pub fn from_checkpoints<'a>(checkpoints: impl IntoIterator<Item = (&'a str, u64)>) -> Self {
        let mut first: HashMap<String, u64> = HashMap::new();
        for (run, step) in checkpoints {
            let entry = first.entry(run.to_string()).or_insert(step);
            *entry = (*entry).min(step);
        }
        Self {
            first,
            parent: HashMap::new(),
        }
    }

    /// True when checkpoints `a` and `b` (run, step) of two runs are expected to hold the same
    /// weights: the same step, each the first checkpoint of its run or the fork point of the other.
    pub fn shared_start(&self, a: (&str, u64), b: (&str, u64)) -> bool {
        let starts = |x: (&str, u64), other: (&str, u64)| {
            self.first.get(x.0) == Some(&x.1) || self.parent.get(other.0).is_some_and(|p| p.run == x.0 && p.step == x.1)
        };
        a.0 != b.0 && a.1 == b.1 && starts(a, b) && starts(b, a)
    }
}

/// A `duplicate_content` problem for every checkpoint whose key equals an earlier one's, naming both,
/// unless the two are a shared start of their runs ([`RunStarts::shared_start`]). `basis` says what
/// the key is (e.g. "sampled content fingerprint"); any key works, such as a full content hash.
pub fn duplicate_content<K: Ord>(
    entries: impl IntoIterator<Item = (K, CheckpointRef)>,
    basis: &str,
    starts: &RunStarts,
) -> Vec<Problem> {
    let mut first: std::collections::BTreeMap<K, CheckpointRef> = std::collections::BTreeMap::new();
    let mut problems = Vec::new();
    for (key, entry) in entries {
        match first.get(&key) {
            Some(original) if starts.shared_start((&original.run, original.step), (&entry.run, entry.step)) => {}
            Some(original) => problems.push(Problem::new(
                &entry.path,
                ProblemKind::DuplicateContent,
                format!(
                    "{}: run `{}` step {} holds the same weights as run `{}` step {} ({}) (equal {basis}); \
                     one of them is probably served under the wrong name",
                    entry.path.display(),
                    entry.run,
                    entry.step,
                    original.run,
                    original.step,
                    original.path.display()
                ),
            )),
            None => {
                first.insert(key, entry);
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_both_ends_and_stay_in_the_file() {
        for len in [
            0,
            1,
            4096,
            4097,
            SAMPLES * SAMPLE_BYTES,
            SAMPLES * SAMPLE_BYTES + 1,
            1 << 40,
            u64::MAX,
        ] {
            let blocks = sample_blocks(len);
            assert!(blocks.iter().all(|(o, s)| o + s <= len), "{len}: {blocks:?}");
            if len > 0 {
                assert_eq!(blocks[0].0, 0, "{len}");
                assert_eq!(blocks.last().map(|(o, s)| o + s), Some(len), "{len}");
            }
            if len <= SAMPLES * SAMPLE_BYTES {
                assert_eq!(
                    blocks.iter().map(|(_, s)| s).sum::<u64>(),
                    len,
                    "short files are read whole"
                );
            } else {
                assert_eq!(blocks.len() as u64, SAMPLES);
                assert!(blocks.windows(2).all(|w| w[0].0 < w[1].0), "{len}: {blocks:?}");
            }
        }
    }

    #[test]
    fn duplicates_name_the_first_holder() {
        let at = |run: &str, step| CheckpointRef {
            run: run.into(),
            step,
            path: PathBuf::from(format!("{run}/step{step}")),
        };
        let entries = [
            (1, at("a", 0)),
            (2, at("a", 100)),
            (2, at("b", 100)),
            (1, at("b", 0)),
            (2, at("b", 200)),
        ];
        // Runs a and b both start at step 0 from the same weights: by design, not reported.
        let starts = RunStarts::from_checkpoints(entries.iter().map(|(_, c)| (c.run.as_str(), c.step)));
        assert!(starts.shared_start(("a", 0), ("b", 0)));
        assert!(!starts.shared_start(("a", 100), ("b", 100)));
        let problems = duplicate_content(entries.clone(), "key", &starts);
        let described: Vec<(PathBuf, bool)> = problems
            .iter()
            .map(|p| (p.path.clone(), p.kind == ProblemKind::DuplicateContent))
            .collect();
        assert_eq!(
            described,
            [(PathBuf::from("b/step100"), true), (PathBuf::from("b/step200"), true)]
        );
        // Without knowing where runs start, the shared step 0 is reported too.
        assert_eq!(duplicate_content(entries, "key", &RunStarts::default()).len(), 3);
        assert!(
            problems[0].message.contains("run `a` step 100 (a/step100)"),
            "{}",
            problems[0]
        );
        assert!(
            problems[1].message.contains("run `a` step 100 (a/step100)"),
            "{}",
            problems[1]
        );
    }
}
