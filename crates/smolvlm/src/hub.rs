//! Model pairs from the Hugging Face Hub: list a repo, pick the pair, download
//! it into the Hugging Face cache (or find it there offline), verify it.
//!
//! The transport is hf-hub's blocking client, which also owns the cache
//! layout it writes. Around it this module adds what hf-hub lacks: sizes and
//! SHA-256s checked against the listing before a file is used, offline
//! lookups, a fallback to the cache when the Hub cannot be reached, and typed
//! errors. It knows nothing of images or of llama.cpp.

mod cache;
mod error;
mod remote;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use self::cache::RepoCache;
use self::error::not_cached_what;
pub use self::error::HubError;
use self::remote::{Failure, Remote, Sibling};
use crate::model::ModelFiles;
use crate::preset::{FileSelector, Quantization};

/// The public Hugging Face Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The progress callback's type.
pub(crate) type ProgressFn = dyn Fn(&DownloadEvent<'_>) + Send + Sync;

/// What a download is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownloadEvent<'a> {
    /// A file's download begins.
    Started {
        /// The repo id.
        repo: &'a str,
        /// The file.
        file: &'a str,
        /// Its size in bytes.
        total: u64,
    },
    /// More bytes arrived. After a resume, `downloaded` starts at what was
    /// already on disk.
    Progress {
        /// The repo id.
        repo: &'a str,
        /// The file.
        file: &'a str,
        /// Bytes on disk so far.
        downloaded: u64,
        /// The file's size in bytes.
        total: u64,
    },
    /// All bytes arrived (they are verified next).
    Finished {
        /// The repo id.
        repo: &'a str,
        /// The file.
        file: &'a str,
        /// Its size in bytes.
        total: u64,
    },
}

/// Where models come from and where they are kept: the Hub endpoint, the
/// cache directory, the token, offline mode, retries, and a progress callback.
///
/// [`HubOptions::from_env`] reads the usual Hugging Face variables; every
/// setting can also be given explicitly, and [`HubOptions::new`] reads nothing
/// from the environment.
///
/// ```
/// let options = smolvlm::HubOptions::new("/tmp/hf-cache")
///     .with_endpoint("http://127.0.0.1:8080")
///     .with_offline(true);
/// assert_eq!(options.endpoint(), "http://127.0.0.1:8080");
/// assert!(options.offline());
/// ```
#[derive(Clone)]
pub struct HubOptions {
    endpoint: String,
    cache_dir: PathBuf,
    token: Option<String>,
    offline: bool,
    retries: u32,
    progress: Option<Arc<ProgressFn>>,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("offline", &self.offline)
            .field("retries", &self.retries)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl HubOptions {
    /// Options that use the Hub cache at `cache_dir` (the `hub` folder of
    /// `HF_HOME`), the public Hub, no token, online, and 3 retries. Nothing is
    /// read from the environment.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            cache_dir: cache_dir.into(),
            token: None,
            offline: false,
            retries: 3,
            progress: None,
        }
    }

    /// Options from the environment, as the Python `huggingface_hub` reads it:
    ///
    /// - cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    ///   `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`;
    /// - endpoint: `HF_ENDPOINT`, else the public Hub;
    /// - token: `HF_TOKEN`, else the token file `HF_HOME/token` that
    ///   `huggingface-cli login` writes;
    /// - offline: `HF_HUB_OFFLINE` set to `1`, `true`, `yes` or `on`.
    ///
    /// This is the only place the library reads these variables.
    #[must_use]
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`HubOptions::from_env`] over any source of variables (tests use a map).
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let hf_home = var("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("huggingface")))
            .or_else(|| {
                var("HOME")
                    .or_else(|| var("USERPROFILE"))
                    .map(|h| PathBuf::from(h).join(".cache").join("huggingface"))
            })
            .unwrap_or_else(|| PathBuf::from(".cache").join("huggingface"));
        let cache_dir = var("HF_HUB_CACHE").map_or_else(|| hf_home.join("hub"), PathBuf::from);
        let token = var("HF_TOKEN").or_else(|| {
            std::fs::read_to_string(hf_home.join("token"))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let mut options = Self::new(cache_dir).with_offline(offline);
        options.token = token.map(|t| t.trim().to_owned());
        if let Some(endpoint) = var("HF_ENDPOINT") {
            options = options.with_endpoint(endpoint);
        }
        options
    }

    /// The Hub's base URL (default `https://huggingface.co`); a mirror or a test server.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into().trim_end_matches('/').to_owned();
        self
    }

    /// The Hub cache directory (the `hub` folder of `HF_HOME`).
    #[must_use]
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = dir.into();
        self
    }

    /// A Hub access token, for private or gated repos; `None` sends none.
    #[must_use]
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Offline: resolve from the cache only and never touch the network.
    #[must_use]
    pub fn with_offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// How often a transient failure (a dropped connection, HTTP 429 or 5xx)
    /// is retried (default 3). Interrupted downloads resume where they stopped.
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// A callback told of every download's progress; the CLI draws a bar with it.
    /// It is called from the thread that resolves the model.
    #[must_use]
    pub fn with_progress(
        mut self,
        callback: impl Fn(&DownloadEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// The Hub's base URL.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The Hub cache directory.
    #[must_use]
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Whether resolution is from the cache only.
    #[must_use]
    pub fn offline(&self) -> bool {
        self.offline
    }

    /// Whether a token will be sent.
    #[must_use]
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// How often a transient failure is retried.
    #[must_use]
    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(crate) fn progress(&self) -> Option<&ProgressFn> {
        self.progress.as_deref()
    }
}

/// A pair resolved from a Hub repo, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubPair {
    /// The repo id.
    pub repo: String,
    /// The revision asked for (a branch, tag or commit).
    pub revision: String,
    /// The commit it resolved to.
    pub commit: String,
    /// The quantization asked for, or the default one. A repo's only pair is
    /// taken whatever its names carry (see [`FileSelector`]), so the files may
    /// be of another quantization, or name none.
    pub quantization: String,
    /// The text model's name in the repo.
    pub model_file: String,
    /// The mmproj's name in the repo.
    pub mmproj_file: String,
    /// The local paths, in the cache's `snapshots/` folder.
    pub files: ModelFiles,
    /// Whether a file was downloaded by this call (otherwise all came from the cache).
    pub downloaded: bool,
}

/// What to fetch: a repo at a revision, a quantization, and how to pick files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PairRequest<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub quantization: Quantization<'a>,
    pub selector: &'a FileSelector,
}

/// Resolves a pair: from the cache when offline; otherwise lists the repo,
/// picks the files, and downloads whatever the cache lacks. If the Hub cannot
/// be reached at all, a cached copy of the revision is used instead.
pub(crate) fn fetch_pair(req: &PairRequest<'_>, options: &HubOptions) -> Result<HubPair, HubError> {
    let _span = tracing::info_span!("fetch", repo = req.repo, revision = req.revision).entered();
    let cache = RepoCache::new(options.cache_dir(), req.repo);
    if options.offline() {
        return from_cache(req, &cache, options);
    }
    let remote = Remote::new(options, req.repo)?;
    let listing = match remote.listing(req.revision) {
        Ok(listing) => listing,
        Err(Failure::Error(e)) => return Err(e),
        Err(Failure::Unreachable(message)) => {
            return match from_cache(req, &cache, options) {
                Ok(pair) => {
                    tracing::warn!(repo = req.repo, %message, "the Hub is unreachable; using the cached copy");
                    Ok(pair)
                }
                Err(_) => Err(HubError::Network {
                    repo: req.repo.to_owned(),
                    url: options.endpoint().to_owned(),
                    message,
                }),
            };
        }
    };
    let listing_error = |message: String| HubError::Listing {
        repo: req.repo.to_owned(),
        url: options.endpoint().to_owned(),
        message,
    };
    if !is_safe_name(&listing.sha) || listing.sha.contains('/') {
        return Err(listing_error(format!(
            "'{}' is not a commit id",
            listing.sha
        )));
    }
    let names: Vec<&str> = listing
        .siblings
        .iter()
        .map(|s| s.rfilename.as_str())
        .collect();
    let (model_name, mmproj_name) =
        req.selector
            .select(&names, req.quantization)
            .map_err(|miss| HubError::NoMatchingFile {
                repo: req.repo.to_owned(),
                revision: req.revision.to_owned(),
                quantization: req.quantization.name().to_owned(),
                miss: Box::new(miss),
            })?;
    let sibling = |name: &str| {
        listing
            .siblings
            .iter()
            .find(|s| s.rfilename == name && is_safe_name(name))
            .ok_or_else(|| listing_error(format!("unsafe file name '{name}'")))
    };
    let (model_file, mmproj_file) = (sibling(model_name)?, sibling(mmproj_name)?);

    let (model, model_downloaded) = get(&remote, &cache, &listing.sha, model_file, options)?;
    let (mmproj, mmproj_downloaded) = get(&remote, &cache, &listing.sha, mmproj_file, options)?;
    cache.write_ref(req.revision, &listing.sha)?;
    Ok(HubPair {
        repo: req.repo.to_owned(),
        revision: req.revision.to_owned(),
        commit: listing.sha.clone(),
        quantization: req.quantization.name().to_owned(),
        model_file: model_file.rfilename.clone(),
        mmproj_file: mmproj_file.rfilename.clone(),
        files: ModelFiles::new(model, mmproj),
        downloaded: model_downloaded || mmproj_downloaded,
    })
}

/// One file: the cached copy if its size is right, else a fresh download.
fn get(
    remote: &Remote<'_>,
    cache: &RepoCache,
    commit: &str,
    file: &Sibling,
    options: &HubOptions,
) -> Result<(PathBuf, bool), HubError> {
    let pointer = cache.pointer(commit, &file.rfilename);
    if cache::cached_size(&pointer).is_some() {
        // The SHA-256 was checked when the file was downloaded; a cache hit
        // checks the size only, so loading a 2 GB model stays instant.
        match remote.verify_size(&pointer, file) {
            Ok(()) => return Ok((pointer, false)),
            Err(e) => tracing::warn!(error = %e, "the cached copy is bad; downloading again"),
        }
    }
    if std::fs::symlink_metadata(&pointer).is_ok() {
        // A pointer whose blob is gone: hf-hub would fail to link over it.
        let _ = std::fs::remove_file(&pointer);
    }
    tracing::info!(file = %file.rfilename, "downloading");
    remote
        .download(commit, file)
        .map(|path| (path, true))
        .map_err(|failure| match failure {
            Failure::Error(e) => e,
            Failure::Unreachable(message) => HubError::Network {
                repo: remote.repo().to_owned(),
                url: options.endpoint().to_owned(),
                message,
            },
        })
}

/// Offline resolution: the revision's cached snapshot, files picked from what
/// it holds by the same rules as online. The snapshot holds only what was
/// downloaded, so a default quantization takes its only pair, whichever that is.
fn from_cache(
    req: &PairRequest<'_>,
    cache: &RepoCache,
    options: &HubOptions,
) -> Result<HubPair, HubError> {
    let not_cached = |what: String| HubError::NotCached {
        repo: req.repo.to_owned(),
        revision: req.revision.to_owned(),
        quantization: req
            .quantization
            .is_explicit()
            .then(|| req.quantization.name().to_owned()),
        what,
        cache_dir: options.cache_dir().to_path_buf(),
    };
    let commit = cache
        .commit(req.revision)
        .ok_or_else(|| not_cached("the revision".to_owned()))?;
    let files = cache.snapshot_files(&commit);
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    let (model, mmproj) = req
        .selector
        .select(&names, req.quantization)
        .map_err(|miss| not_cached(not_cached_what(&miss, req.quantization.name())))?;
    Ok(HubPair {
        repo: req.repo.to_owned(),
        revision: req.revision.to_owned(),
        commit: commit.clone(),
        quantization: req.quantization.name().to_owned(),
        model_file: model.to_owned(),
        mmproj_file: mmproj.to_owned(),
        files: ModelFiles::new(
            cache.pointer(&commit, model),
            cache.pointer(&commit, mmproj),
        ),
        downloaded: false,
    })
}

/// Whether a name from the Hub (or the caller) stays inside its cache folder.
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> HubOptions {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        HubOptions::from_vars(|k| vars.get(k).cloned())
    }

    #[test]
    fn the_environment_is_read_as_huggingface_hub_reads_it() {
        let o = from(&[("HOME", "/home/u")]);
        assert_eq!(o.cache_dir(), Path::new("/home/u/.cache/huggingface/hub"));
        assert_eq!(o.endpoint(), DEFAULT_ENDPOINT);
        assert!(!o.offline() && !o.has_token());

        let o = from(&[
            ("HOME", "/home/u"),
            ("HF_HOME", "/data/hf"),
            ("HF_ENDPOINT", "http://mirror.local/"),
            ("HF_TOKEN", " hf_abc "),
            ("HF_HUB_OFFLINE", "1"),
        ]);
        assert_eq!(o.cache_dir(), Path::new("/data/hf/hub"));
        assert_eq!(o.endpoint(), "http://mirror.local");
        assert_eq!(o.token(), Some("hf_abc"));
        assert!(o.offline());

        let o = from(&[("HF_HUB_CACHE", "/c"), ("HF_HUB_OFFLINE", "0")]);
        assert_eq!(o.cache_dir(), Path::new("/c"));
        assert!(!o.offline());
        let o = from(&[("XDG_CACHE_HOME", "/x"), ("HF_HUB_OFFLINE", "TRUE")]);
        assert_eq!(o.cache_dir(), Path::new("/x/huggingface/hub"));
        assert!(o.offline());
    }

    #[test]
    fn the_token_file_is_read_when_hf_token_is_unset_and_never_printed() {
        let home = std::env::temp_dir().join(format!("smolvlm-hf-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("token"), "hf_from_file\n").unwrap();
        let o = from(&[("HF_HOME", home.to_str().unwrap())]);
        assert_eq!(o.token(), Some("hf_from_file"));
        assert!(!format!("{o:?}").contains("hf_from_file"));
        let o = o.with_token(None);
        assert!(!o.has_token());
        let _ = std::fs::remove_dir_all(&home);
    }

    #[test]
    fn names_that_leave_the_cache_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a\\b", "a//b", "."] {
            assert!(!is_safe_name(bad), "{bad}");
        }
        for good in ["x.gguf", "sub/x.gguf", "v1.0", "refs/pr/1"] {
            assert!(is_safe_name(good), "{good}");
        }
    }
}
