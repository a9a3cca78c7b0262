//! The Hugging Face cache layout, read and repaired without the network.
//!
//! ```text
//! <cache>/models--<owner>--<name>/
//!     refs/<revision>              the commit a branch or tag pointed to
//!     blobs/<etag>                 file contents (<etag> is the SHA-256 of LFS files)
//!     snapshots/<commit>/<file>    symlinks into blobs/
//! ```
//!
//! hf-hub writes this layout; offline lookups and the clean-up of bad
//! downloads are done here because hf-hub has no API for them.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::HubError;

/// One repo's folder in the cache.
#[derive(Debug, Clone)]
pub(crate) struct RepoCache {
    root: PathBuf,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, repo: &str) -> Self {
        Self {
            root: cache_dir.join(format!("models--{}", repo.replace('/', "--"))),
        }
    }

    /// The commit `revision` stands for in the cache: itself when it is a
    /// commit with a snapshot, else what `refs/<revision>` records.
    pub fn commit(&self, revision: &str) -> Option<String> {
        if is_commit(revision) && self.root.join("snapshots").join(revision).is_dir() {
            return Some(revision.to_owned());
        }
        let commit = fs::read_to_string(self.root.join("refs").join(revision)).ok()?;
        let commit = commit.trim();
        (!commit.is_empty() && !commit.contains(['/', '\\', '.'])).then(|| commit.to_owned())
    }

    /// Records that `revision` points to `commit`, as `refs/<revision>`.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        if revision == commit {
            return Ok(());
        }
        let path = self.root.join("refs").join(revision);
        write_atomically(&path, commit.as_bytes())
            .map_err(|source| HubError::Cache { path, source })
    }

    /// The snapshot entry of `file` at `commit` (a symlink into `blobs/`).
    pub fn pointer(&self, commit: &str, file: &str) -> PathBuf {
        self.root.join("snapshots").join(commit).join(file)
    }

    /// The files of a snapshot whose contents are present, as repo-relative
    /// names (top level only: SmolVLM repos are flat).
    pub fn snapshot_files(&self, commit: &str) -> Vec<String> {
        let dir = self.root.join("snapshots").join(commit);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            // `is_file` follows the symlink: a dangling pointer is not a cached file.
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    /// Deletes a file's pointer and its blob, so a bad download is never
    /// found again. Errors are ignored: there is nothing better to do.
    pub fn remove(&self, pointer: &Path) {
        if let Ok(blob) = fs::canonicalize(pointer) {
            if blob.starts_with(&self.root) {
                let _ = fs::remove_file(blob);
            }
        }
        let _ = fs::remove_file(pointer);
    }
}

/// Size of the file behind `pointer`, if it resolves to a file.
pub(crate) fn cached_size(pointer: &Path) -> Option<u64> {
    fs::metadata(pointer)
        .ok()
        .filter(fs::Metadata::is_file)
        .map(|m| m.len())
}

/// The etag a pointer's blob is named by (hf-hub names blobs by etag).
pub(crate) fn blob_etag(pointer: &Path) -> Option<String> {
    let blob = fs::canonicalize(pointer).ok()?;
    Some(blob.file_name()?.to_str()?.to_owned())
}

/// Whether a string is a full 40-hex-digit git commit id.
pub(crate) fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether a string is a 64-hex-digit SHA-256 (the etag of an LFS file).
pub(crate) fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The SHA-256 of a file, as lowercase hex.
pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Writes under a temporary name beside `path`, then renames over it, so a
/// reader never sees half a ref.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_folder_and_ref_follow_the_hf_layout() {
        let dir = std::env::temp_dir().join(format!("smolvlm-cache-unit-{}", std::process::id()));
        let cache = RepoCache::new(&dir, "ggml-org/SmolVLM-256M-Instruct-GGUF");
        assert!(cache
            .pointer("abc", "x.gguf")
            .ends_with("models--ggml-org--SmolVLM-256M-Instruct-GGUF/snapshots/abc/x.gguf"));
        assert_eq!(cache.commit("main"), None);
        let commit = "0123456789abcdef0123456789abcdef01234567";
        cache.write_ref("main", commit).unwrap();
        assert_eq!(cache.commit("main").as_deref(), Some(commit));
        assert_eq!(cache.commit(commit), None, "no snapshot yet");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn sha256_of_a_file() {
        let path = std::env::temp_dir().join(format!("smolvlm-sha-unit-{}", std::process::id()));
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let _ = fs::remove_file(&path);
        assert!(is_sha256(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ));
        assert!(!is_commit("main") && is_commit(&"a".repeat(40)));
    }
}
