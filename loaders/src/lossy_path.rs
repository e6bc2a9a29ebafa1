//! Paths in JSON (every `PathBuf` this crate serializes, manifests aside): written as UTF-8 strings,
//! with bytes that are not UTF-8 replaced by U+FFFD, so a zoo holding a non-UTF-8 file name still
//! gets its JSON report (serde's own `Path` impl refuses such names). The `non_utf8_name` problem names the file.

use std::path::{Path, PathBuf};

use serde::Serializer;

/// One path, lossily.
pub fn path<S: Serializer>(path: &Path, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&path.to_string_lossy())
}

/// An optional path, lossily.
pub fn option<S: Serializer>(path: &Option<PathBuf>, serializer: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => self::path(p, serializer),
        None => serializer.serialize_none(),
    }
}

/// A list of paths, lossily.
pub fn list<S: Serializer>(paths: &[PathBuf], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(paths.iter().map(|p| p.to_string_lossy()))
}

#[cfg(all(test, unix))]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[derive(serde::Serialize)]
    struct Paths {
        #[serde(serialize_with = "path")]
        one: PathBuf,
        #[serde(serialize_with = "option")]
        maybe: Option<PathBuf>,
        #[serde(serialize_with = "list")]
        many: Vec<PathBuf>,
    }

    #[test]
    fn non_utf8_names_are_written_lossily() {
        let odd = PathBuf::from(OsStr::from_bytes(b"zoo/seed\xff/step1"));
        let json = serde_json::to_string(&Paths {
            one: odd.clone(),
            maybe: Some(odd.clone()),
            many: vec![odd, PathBuf::from("plain")],
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"one":"zoo/seed\u{fffd}/step1","maybe":"zoo/seed\u{fffd}/step1","many":["zoo/seed\u{fffd}/step1","plain"]}"#
                .replace("\\u{fffd}", "\u{fffd}")
        );
    }
}
