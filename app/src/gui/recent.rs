//! Recently opened zoo folders, remembered across sessions through eframe's storage.

use std::path::{Path, PathBuf};

/// Storage key of the list.
const STORAGE_KEY: &str = "lineage.recent_folders";
/// How many folders are remembered.
pub const MAX_RECENT: usize = 8;

/// Most recent first, no duplicates, at most [`MAX_RECENT`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecentFolders(Vec<PathBuf>);

impl RecentFolders {
    /// The list stored by a previous session (empty if none).
    pub fn load(storage: Option<&dyn eframe::Storage>) -> Self {
        storage
            .and_then(|s| eframe::get_value(s, STORAGE_KEY))
            .unwrap_or_default()
    }

    /// Stores the list for the next session.
    pub fn save(&self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, self);
    }

    /// Puts `dir` first.
    pub fn push(&mut self, dir: &Path) {
        self.0.retain(|d| d != dir);
        self.0.insert(0, dir.to_path_buf());
        self.0.truncate(MAX_RECENT);
    }

    /// The folders, most recent first.
    pub fn folders(&self) -> &[PathBuf] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_recent_first_without_duplicates_and_bounded() {
        let mut recent = RecentFolders::default();
        for i in 0..10 {
            recent.push(Path::new(&format!("/zoo{i}")));
        }
        recent.push(Path::new("/zoo5"));
        let names: Vec<String> = recent.folders().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(names.len(), MAX_RECENT);
        assert_eq!(names[0], "/zoo5");
        assert_eq!(names[1], "/zoo9");
        assert_eq!(names.iter().filter(|n| *n == "/zoo5").count(), 1);
        assert!(!names.contains(&"/zoo0".to_string()));
    }

    #[test]
    fn round_trips_through_storage() {
        #[derive(Default)]
        struct Memory(std::collections::HashMap<String, String>);
        impl eframe::Storage for Memory {
            fn get_string(&self, key: &str) -> Option<String> {
                self.0.get(key).cloned()
            }
            fn set_string(&mut self, key: &str, value: String) {
                self.0.insert(key.to_string(), value);
            }
            fn remove_string(&mut self, key: &str) {
                self.0.remove(key);
            }
            fn flush(&mut self) {}
        }
        let mut recent = RecentFolders::default();
        recent.push(Path::new("/a"));
        recent.push(Path::new("/b"));
        let mut storage = Memory::default();
        recent.save(&mut storage);
        assert_eq!(RecentFolders::load(Some(&storage)), recent);
        assert_eq!(RecentFolders::load(None), RecentFolders::default());
    }
}
