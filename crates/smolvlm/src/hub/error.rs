//! What can go wrong while resolving a model on the Hub or in its cache.

use std::path::PathBuf;

use crate::error::FileRole;
use crate::preset::{Miss, NoMatch};

/// Resolving a model source to a local (model, mmproj) pair failed.
///
/// Every variant names the repo, and the file where there is one, and says
/// what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The name is neither a preset nor a Hub repo id.
    #[error("'{input}' is not a model source: {reason}")]
    InvalidSource {
        /// What was given.
        input: String,
        /// Why it is not usable.
        reason: String,
    },
    /// No preset has this name.
    #[error("there is no preset '{name}' (presets: {known})")]
    UnknownPreset {
        /// The name asked for.
        name: String,
        /// The preset names, comma-separated.
        known: String,
    },
    /// The Hub has no such repo (or hides it without a token).
    #[error("repository '{repo}' was not found at {endpoint}: check the name; a private or gated repo needs a token (HF_TOKEN)")]
    RepoNotFound {
        /// The repo id.
        repo: String,
        /// The Hub endpoint asked.
        endpoint: String,
    },
    /// The repo has no such branch, tag or commit.
    #[error("repository '{repo}' has no revision '{revision}': check the branch, tag or commit")]
    RevisionNotFound {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
    },
    /// The Hub refused access.
    #[error("the Hub refused access to '{repo}' (HTTP {status}): set HF_TOKEN to a token that may read it, and accept the model's terms on its page if it is gated")]
    Unauthorized {
        /// The repo id.
        repo: String,
        /// The HTTP status (401 or 403).
        status: u16,
    },
    /// The repo listing holds no usable pair for the request (see
    /// [`crate::FileSelector`] for the rules); the message lists what it holds.
    #[error("{}", no_matching_file(repo, revision, quantization, miss))]
    NoMatchingFile {
        /// The repo id.
        repo: String,
        /// The revision listed.
        revision: String,
        /// The quantization asked for (or the default one).
        quantization: String,
        /// What is missing, and the repo's GGUF files by kind (boxed to
        /// keep the error small).
        miss: Box<NoMatch>,
    },
    /// Offline, and what is needed is not in the cache.
    #[error("offline, and {what} of '{repo}' (revision '{revision}') is not in the cache at '{}': run `smolvlm fetch {}` while online, or go online (unset HF_HUB_OFFLINE, drop --offline)", cache_dir.display(), fetch_hint(repo, revision, quantization.as_deref()))]
    NotCached {
        /// The repo id.
        repo: String,
        /// The revision asked for.
        revision: String,
        /// The quantization asked for by name, if one was; the fetch hint
        /// repeats it.
        quantization: Option<String>,
        /// What is missing: "the revision", or a file's role, with what the
        /// cached snapshot holds.
        what: String,
        /// The cache directory searched.
        cache_dir: PathBuf,
    },
    /// The Hub could not be reached, and the cache does not hold the model either.
    #[error("cannot reach {url}: {message}; and '{repo}' is not in the cache: check the network (or HF_ENDPOINT), then retry")]
    Network {
        /// The repo id.
        repo: String,
        /// The URL asked.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The Hub answered with an error status.
    #[error("{url} answered HTTP {status} for '{repo}'{}", if *status >= 500 || *status == 429 { ": the Hub is busy or down, retry later" } else { "" })]
    Http {
        /// The repo id.
        repo: String,
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The repo listing could not be understood.
    #[error("the listing of '{repo}' from {url} is not a Hub repo listing: {message}")]
    Listing {
        /// The repo id.
        repo: String,
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// A download failed (after retries).
    #[error("downloading '{file}' of '{repo}' failed: {message}; run again to resume it")]
    Download {
        /// The repo id.
        repo: String,
        /// The file.
        file: String,
        /// What failed.
        message: String,
    },
    /// A downloaded file has the wrong size. It was deleted.
    #[error("'{file}' of '{repo}' has {actual} bytes but the Hub lists {expected}: the download was cut short or the file changed; it was deleted, run again to download it anew")]
    SizeMismatch {
        /// The repo id.
        repo: String,
        /// The file.
        file: String,
        /// Bytes listed.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// A downloaded file's SHA-256 is not the one the Hub lists. It was deleted.
    #[error("'{file}' of '{repo}' has SHA-256 {actual} but the Hub lists {expected}: the download is corrupt; it was deleted, run again to download it anew")]
    ChecksumMismatch {
        /// The repo id.
        repo: String,
        /// The file.
        file: String,
        /// The SHA-256 listed (hex).
        expected: String,
        /// The SHA-256 of the bytes received (hex).
        actual: String,
    },
    /// The cache directory could not be read or written.
    #[error("cache '{}': {source}: check that the cache directory (HF_HOME) is writable", path.display())]
    Cache {
        /// The path that failed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    /// A short, stable name for the error's kind (see [`crate::Error::kind`]).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidSource { .. } => "hub_invalid_source",
            Self::UnknownPreset { .. } => "hub_unknown_preset",
            Self::RepoNotFound { .. } => "hub_repo_not_found",
            Self::RevisionNotFound { .. } => "hub_revision_not_found",
            Self::Unauthorized { .. } => "hub_unauthorized",
            Self::NoMatchingFile { .. } => "hub_no_matching_file",
            Self::NotCached { .. } => "hub_not_cached",
            Self::Network { .. } => "hub_network",
            Self::Http { .. } => "hub_http",
            Self::Listing { .. } => "hub_listing",
            Self::Download { .. } => "hub_download",
            Self::SizeMismatch { .. } => "hub_size_mismatch",
            Self::ChecksumMismatch { .. } => "hub_checksum_mismatch",
            Self::Cache { .. } => "hub_cache",
        }
    }
}

/// The `smolvlm fetch` argument that downloads what is missing.
fn fetch_hint(repo: &str, revision: &str, quantization: Option<&str>) -> String {
    let mut hint = repo.to_owned();
    if revision != "main" {
        hint.push('@');
        hint.push_str(revision);
    }
    if let Some(quantization) = quantization {
        hint.push(':');
        hint.push_str(quantization);
    }
    hint
}

fn no_matching_file(repo: &str, revision: &str, quantization: &str, miss: &NoMatch) -> String {
    let at = format!("repository '{repo}' (revision '{revision}')");
    let holds = &miss.ggufs;
    match &miss.miss {
        Miss::Missing(FileRole::Model) if !holds.splits.is_empty() => format!(
            "{at} has its text model only as split GGUF parts, which are not supported; it holds {holds}: merge the parts with `llama-gguf-split --merge`, then pass the local files with --model and --mmproj"
        ),
        Miss::Missing(FileRole::Model) => format!(
            "{at} has no text model GGUF file; it holds {holds}: it is not a GGUF model repo"
        ),
        Miss::Missing(FileRole::Mmproj) => format!(
            "{at} has no mmproj GGUF file (a .gguf whose name starts with 'mmproj'), so it cannot caption images; it holds {holds}: use a vision model repo, or pass local files with --model and --mmproj"
        ),
        Miss::NoQuantization {
            role: FileRole::Model,
            quantization,
        } => {
            let quants = holds.model_quantizations();
            format!(
                "{at} has several text model GGUFs and none is of quantization {quantization}; it holds {holds}: ask for one by the end of its name, one of {} (e.g. {repo}:{})",
                quants.join(", "),
                quants.first().map_or("", String::as_str),
            )
        }
        Miss::NoQuantization {
            role: FileRole::Mmproj,
            quantization,
        } => format!(
            "{at} has several mmproj GGUFs and none is of quantization {quantization} or its fallbacks; it holds {holds}: ask for a matching quantization, or pass local files with --model and --mmproj"
        ),
        Miss::OtherQuantization { file, found } => format!(
            "{at} has one text model, '{file}', and it is of quantization {found}, not {quantization}; it holds {holds}: ask for {repo}:{found}, or name no quantization"
        ),
    }
}

/// The `what` of [`HubError::NotCached`] when the cached snapshot holds no
/// pair for the request.
pub(crate) fn not_cached_what(miss: &NoMatch, quantization: &str) -> String {
    let what = match &miss.miss {
        Miss::Missing(role) => format!("the {role} GGUF"),
        Miss::NoQuantization { role, quantization } => {
            format!("the {role} for quantization {quantization}")
        }
        Miss::OtherQuantization { .. } => {
            format!("the text model for quantization {quantization}")
        }
    };
    format!("{what} (the cached snapshot holds {})", miss.ggufs)
}
