//! Talking to the Hub through hf-hub's blocking client: the repo listing,
//! downloads with retries and progress, and verification of what arrived.

use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};
use serde::Deserialize;

use super::cache::{self, RepoCache};
use super::{DownloadEvent, HubError, HubOptions, ProgressFn};

/// One file of a repo listing.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Sibling {
    pub rfilename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

/// What the Hub knows about an LFS file (every GGUF on the Hub is one).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Lfs {
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
}

impl Sibling {
    fn expected_size(&self) -> Option<u64> {
        self.lfs.as_ref().and_then(|l| l.size).or(self.size)
    }

    fn expected_sha256(&self) -> Option<String> {
        self.lfs
            .as_ref()
            .and_then(|l| l.sha256.as_deref())
            .filter(|s| cache::is_sha256(s))
            .map(str::to_ascii_lowercase)
    }
}

/// `GET /api/models/{repo}/revision/{revision}?blobs=true`: the commit and the files.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Listing {
    pub sha: String,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

/// Why a request failed, before it is given a repo's context.
pub(crate) enum Failure {
    /// The server could not be reached at all: the cache may still help.
    Unreachable(String),
    /// Any other failure, already typed.
    Error(HubError),
}

/// A client bound to one repo.
pub(crate) struct Remote<'a> {
    api: Api,
    options: &'a HubOptions,
    repo: &'a str,
}

impl<'a> Remote<'a> {
    pub fn new(options: &'a HubOptions, repo: &'a str) -> Result<Self, HubError> {
        // `from_cache` also reads a token file beside the cache; the explicit
        // `with_token` below replaces it, so only the caller's token is sent.
        let api = ApiBuilder::from_cache(Cache::new(options.cache_dir().to_path_buf()))
            .with_endpoint(options.endpoint().to_owned())
            .with_token(options.token().map(str::to_owned))
            .with_retries(options.retries() as usize)
            .with_progress(false)
            .with_user_agent("smolvlm", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| HubError::Download {
                repo: repo.to_owned(),
                file: String::new(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { api, options, repo })
    }

    fn repo_at(&self, revision: &str) -> ApiRepo {
        self.api.repo(Repo::with_revision(
            self.repo.to_owned(),
            RepoType::Model,
            revision.to_owned(),
        ))
    }

    /// Lists the repo at `revision`, with sizes and SHA-256s.
    pub fn listing(&self, revision: &str) -> Result<Listing, Failure> {
        let request = self.repo_at(revision).info_request().query("blobs", "true");
        let url = request.url().to_owned();
        let response = self.retrying(
            || request.clone().call().map_err(Box::new),
            |e| self.http_failure(&url, revision, "", e),
        )?;
        let body = response.into_string().map_err(|e| {
            Failure::Error(HubError::Listing {
                repo: self.repo.to_owned(),
                url: url.clone(),
                message: e.to_string(),
            })
        })?;
        serde_json::from_str::<Listing>(&body).map_err(|e| {
            Failure::Error(HubError::Listing {
                repo: self.repo.to_owned(),
                url,
                message: e.to_string(),
            })
        })
    }

    /// Downloads `file` of `commit` into the cache, then checks its size and
    /// SHA-256 against the listing. A file that fails is deleted and never
    /// returned: hf-hub downloads into `blobs/<etag>.part` and renames only a
    /// finished transfer, and a transfer that finished short or corrupt is
    /// caught here.
    pub fn download(&self, commit: &str, file: &Sibling) -> Result<PathBuf, Failure> {
        let name = file.rfilename.as_str();
        let url = self.repo_at(commit).url(name);
        let pointer = self.retrying(
            || {
                let progress = ProgressAdapter::new(self.options.progress(), self.repo, name);
                // hf-hub 0.4 unwraps a redirect's Location header and asserts
                // on the cache; a broken server must not take the caller down.
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    self.repo_at(commit).download_with_progress(name, progress)
                }))
                .unwrap_or_else(|panic| {
                    Err(ApiError::IoError(io::Error::other(panic_message(&*panic))))
                })
            },
            |e| self.download_failure(&url, name, e),
        )?;
        self.verify(&pointer, file).map_err(Failure::Error)?;
        Ok(pointer)
    }

    /// The repo id.
    pub fn repo(&self) -> &str {
        self.repo
    }

    /// Checks a file's size against the listing; deletes the file if it is wrong.
    pub fn verify_size(&self, pointer: &Path, file: &Sibling) -> Result<(), HubError> {
        let actual = cache::cached_size(pointer).unwrap_or(0);
        match file.expected_size() {
            Some(expected) if actual != expected => {
                RepoCache::new(self.options.cache_dir(), self.repo).remove(pointer);
                Err(HubError::SizeMismatch {
                    repo: self.repo.to_owned(),
                    file: file.rfilename.clone(),
                    expected,
                    actual,
                })
            }
            _ => Ok(()),
        }
    }

    /// Checks a downloaded file's size and SHA-256 against the listing;
    /// deletes the file if either is wrong.
    fn verify(&self, pointer: &Path, file: &Sibling) -> Result<(), HubError> {
        self.verify_size(pointer, file)?;
        // The listing's SHA-256, else the blob's name when it is one (the
        // etag of an LFS file is its SHA-256).
        let expected = file
            .expected_sha256()
            .or_else(|| cache::blob_etag(pointer).filter(|e| cache::is_sha256(e)));
        if let Some(expected) = expected {
            let _span = tracing::debug_span!("verify", file = %file.rfilename).entered();
            let actual = cache::sha256_file(pointer).map_err(|source| HubError::Cache {
                path: pointer.to_path_buf(),
                source,
            })?;
            if !actual.eq_ignore_ascii_case(&expected) {
                RepoCache::new(self.options.cache_dir(), self.repo).remove(pointer);
                return Err(HubError::ChecksumMismatch {
                    repo: self.repo.to_owned(),
                    file: file.rfilename.clone(),
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent.
    fn retrying<T, E>(
        &self,
        mut attempt: impl FnMut() -> Result<T, E>,
        classify: impl Fn(E) -> (Failure, bool),
    ) -> Result<T, Failure> {
        let mut tries = 0u32;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let (failure, transient) = classify(e);
                    if !transient || tries >= self.options.retries() {
                        return Err(failure);
                    }
                    let wait = Duration::from_millis(250u64 << tries.min(4));
                    tracing::warn!(repo = self.repo, ?wait, "transient Hub failure, retrying");
                    std::thread::sleep(wait);
                    tries += 1;
                }
            }
        }
    }

    /// Types a failed request; the flag says whether retrying may help.
    fn http_failure(
        &self,
        url: &str,
        revision: &str,
        file: &str,
        e: Box<ureq::Error>,
    ) -> (Failure, bool) {
        let repo = self.repo.to_owned();
        match *e {
            ureq::Error::Status(status, response) => {
                let code = response.header("x-error-code").unwrap_or_default();
                let error = match (status, code) {
                    (_, "RevisionNotFound") => HubError::RevisionNotFound {
                        repo,
                        revision: revision.to_owned(),
                    },
                    (_, "RepoNotFound") => HubError::RepoNotFound {
                        repo,
                        endpoint: self.options.endpoint().to_owned(),
                    },
                    (404, _) if file.is_empty() => HubError::RepoNotFound {
                        repo,
                        endpoint: self.options.endpoint().to_owned(),
                    },
                    (401 | 403, _) => HubError::Unauthorized { repo, status },
                    _ => HubError::Http {
                        repo,
                        url: url.to_owned(),
                        status,
                    },
                };
                let transient = status == 429 || status >= 500;
                (Failure::Error(error), transient)
            }
            ureq::Error::Transport(t) => {
                let message = t.to_string();
                match t.kind() {
                    // Nothing listens, or the name does not resolve: retrying
                    // will not help, the cache might.
                    ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns => {
                        (Failure::Unreachable(message), false)
                    }
                    ureq::ErrorKind::Io => (Failure::Unreachable(message), true),
                    _ => (
                        Failure::Error(HubError::Network {
                            repo,
                            url: url.to_owned(),
                            message,
                        }),
                        false,
                    ),
                }
            }
        }
    }

    fn download_failure(&self, url: &str, file: &str, e: ApiError) -> (Failure, bool) {
        let message = match e {
            ApiError::RequestError(e) => return self.http_failure(url, "", file, e),
            ApiError::MissingHeader(h) | ApiError::InvalidHeader(h) => format!(
                "the server's answer lacks a valid '{h}' header (is {} a Hugging Face Hub?)",
                self.options.endpoint()
            ),
            ApiError::TooManyRetries(last) => {
                format!("gave up after {} retries: {last}", self.options.retries())
            }
            ApiError::LockAcquisition(path) => format!(
                "another process holds the download lock '{}'; wait for it",
                path.display()
            ),
            other => other.to_string(),
        };
        let error = HubError::Download {
            repo: self.repo.to_owned(),
            file: file.to_owned(),
            message,
        };
        (Failure::Error(error), false)
    }
}

/// The text of a caught panic, for an error message.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the download client failed on the server's answer ({text})")
}

/// Adapts hf-hub's progress trait to the caller's callback.
struct ProgressAdapter<'a> {
    callback: Option<&'a ProgressFn>,
    repo: &'a str,
    file: &'a str,
    total: u64,
    downloaded: u64,
    started: bool,
}

impl<'a> ProgressAdapter<'a> {
    fn new(callback: Option<&'a ProgressFn>, repo: &'a str, file: &'a str) -> Self {
        Self {
            callback,
            repo,
            file,
            total: 0,
            downloaded: 0,
            started: false,
        }
    }

    fn emit(&self, event: DownloadEvent<'_>) {
        if let Some(callback) = self.callback {
            callback(&event);
        }
    }
}

impl hf_hub::api::Progress for ProgressAdapter<'_> {
    // hf-hub calls `init` again when it resumes, then reports the bytes
    // already on disk through `update`.
    fn init(&mut self, size: usize, _filename: &str) {
        self.total = size as u64;
        self.downloaded = 0;
        if !self.started {
            self.started = true;
            self.emit(DownloadEvent::Started {
                repo: self.repo,
                file: self.file,
                total: self.total,
            });
        }
    }

    fn update(&mut self, size: usize) {
        self.downloaded = self.downloaded.saturating_add(size as u64);
        self.emit(DownloadEvent::Progress {
            repo: self.repo,
            file: self.file,
            downloaded: self.downloaded,
            total: self.total,
        });
    }

    fn finish(&mut self) {
        self.emit(DownloadEvent::Finished {
            repo: self.repo,
            file: self.file,
            total: self.total,
        });
    }
}
