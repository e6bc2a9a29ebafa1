//! Named eval sets: `--data id=mnli.parquet --data ood=hans.parquet`. The first set (or the one
//! chosen with `--basins-on`) gives the barriers and basins; every checkpoint is evaluated on all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// An eval data file and the name its rows carry in the tables' `set` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalSet {
    /// Name (`id`, `ood`, `hans`).
    pub name: String,
    /// Data file (`.safetensors`, `.npz` or `.parquet`).
    pub path: PathBuf,
}

impl EvalSet {
    /// Reads `NAME=PATH`, or a bare `PATH` (named after its file, see [`set_name`]). A text whose
    /// part before `=` is not a plain name (letters, digits, `_`, `-`, `.`), or that names an
    /// existing file as a whole (`epoch=3.parquet`), is a bare path.
    pub fn parse(text: &str) -> Self {
        let named = text.split_once('=').filter(|(name, _)| {
            !name.is_empty()
                && name.chars().all(|c| c.is_alphanumeric() || "_-.".contains(c))
                && !Path::new(text).exists()
        });
        match named {
            Some((name, path)) => Self {
                name: name.to_string(),
                path: PathBuf::from(path),
            },
            None => Self::unnamed(Path::new(text)),
        }
    }

    /// The set of the file `path`, named after it.
    pub fn unnamed(path: &Path) -> Self {
        Self {
            name: set_name(path),
            path: path.to_path_buf(),
        }
    }
}

/// The name of an unnamed eval set: its file's stem (`digits_eval` for `data/digits_eval.npz`).
pub fn set_name(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_bare_sets() {
        assert_eq!(
            EvalSet::parse("ood=data/hans.parquet"),
            EvalSet {
                name: "ood".into(),
                path: "data/hans.parquet".into()
            }
        );
        assert_eq!(EvalSet::parse("data/hans.parquet").name, "hans");
        // A path with `=` in a folder name stays a path.
        let odd = EvalSet::parse("runs/epoch=3/eval.npz");
        assert_eq!(
            (odd.name.as_str(), odd.path.as_path()),
            ("eval", Path::new("runs/epoch=3/eval.npz"))
        );
    }
}
