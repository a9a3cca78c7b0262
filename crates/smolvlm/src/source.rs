//! Where a model pair comes from: a preset, a Hub repo, or local files; and
//! the one-line entry [`Model::from_pretrained`].

use std::fmt;
use std::str::FromStr;

use crate::error::Result;
use crate::hub::{fetch_pair, is_safe_name, HubError, HubOptions, HubPair, PairRequest};
use crate::model::{Model, ModelFiles};
use crate::options::LoadOptions;
use crate::pair::check_pair;
use crate::preset::{FileSelector, Preset, Quantization, DEFAULT_PRESET, DEFAULT_QUANTIZATION};

/// The branch resolved when a source names none.
const DEFAULT_REVISION: &str = "main";

/// Where a (model, mmproj) pair comes from.
///
/// Parse one from a string: a preset name (`SmolVLM-256M-Instruct`), or a
/// Hub repo id with an optional revision and quantization
/// (`owner/name[@revision][:QUANT]`, e.g.
/// `ggml-org/SmolVLM-500M-Instruct-GGUF@main:f16`). A preset name takes the
/// same suffixes. Local files are given as [`ModelSource::Files`].
///
/// ```
/// use smolvlm::ModelSource;
///
/// let preset: ModelSource = "SmolVLM-256M-Instruct".parse()?;
/// assert_eq!(preset, ModelSource::default());
/// let repo: ModelSource = "ggml-org/SmolVLM-500M-Instruct-GGUF:f16".parse()?;
/// assert!(matches!(repo, ModelSource::Hub(ref r) if r.quantization() == Some("f16")));
/// # Ok::<(), smolvlm::HubError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelSource {
    /// A preset, by name (see [`Preset::all`]).
    Preset(String),
    /// A repo on the Hub.
    Hub(HubRepo),
    /// A pair of local files.
    Files(ModelFiles),
}

/// A repo on the Hub, with an optional revision and quantization.
///
/// ```
/// let repo = smolvlm::HubRepo::new("ggml-org/SmolVLM-256M-Instruct-GGUF")
///     .with_revision("main")
///     .with_quantization("f16");
/// assert_eq!(repo.to_string(), "ggml-org/SmolVLM-256M-Instruct-GGUF@main:f16");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRepo {
    repo: String,
    revision: Option<String>,
    quantization: Option<String>,
}

impl HubRepo {
    /// A repo id, `owner/name`, at its `main` branch and its default quantization.
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            revision: None,
            quantization: None,
        }
    }

    /// A branch, tag or commit id (default `main`).
    #[must_use]
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = Some(revision.into());
        self
    }

    /// The quantization to pick, e.g. `Q8_0` or `f16` (default: the preset's,
    /// else `Q8_0`). One given here is asked for by name
    /// ([`crate::Quantization::Explicit`]): a repo whose only text model's
    /// name carries another quantization is refused, where a default would
    /// take it.
    #[must_use]
    pub fn with_quantization(mut self, quantization: impl Into<String>) -> Self {
        self.quantization = Some(quantization.into());
        self
    }

    /// The repo id.
    #[must_use]
    pub fn repo(&self) -> &str {
        &self.repo
    }

    /// The revision, if one was given.
    #[must_use]
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// The quantization, if one was given.
    #[must_use]
    pub fn quantization(&self) -> Option<&str> {
        self.quantization.as_deref()
    }

    fn validate(&self) -> Result<(), HubError> {
        let invalid = |reason: String| HubError::InvalidSource {
            input: self.to_string(),
            reason,
        };
        if !is_repo_id(&self.repo) {
            return Err(invalid(
                "a Hub repo id is owner/name, of letters, digits, '-', '_' and '.'".to_owned(),
            ));
        }
        if let Some(revision) = &self.revision {
            if !is_safe_name(revision) {
                return Err(invalid(format!("'{revision}' is not a valid revision")));
            }
        }
        if let Some(quant) = &self.quantization {
            if quant.is_empty()
                || !quant
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(invalid(format!(
                    "'{quant}' is not a quantization (like Q8_0 or f16)"
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for HubRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo)?;
        if let Some(revision) = &self.revision {
            write!(f, "@{revision}")?;
        }
        if let Some(quant) = &self.quantization {
            write!(f, ":{quant}")?;
        }
        Ok(())
    }
}

impl Default for ModelSource {
    /// The default preset, SmolVLM-256M-Instruct.
    fn default() -> Self {
        Self::Preset(DEFAULT_PRESET.to_owned())
    }
}

impl From<ModelFiles> for ModelSource {
    fn from(files: ModelFiles) -> Self {
        Self::Files(files)
    }
}

impl From<HubRepo> for ModelSource {
    fn from(repo: HubRepo) -> Self {
        Self::Hub(repo)
    }
}

impl FromStr for ModelSource {
    type Err = HubError;

    fn from_str(s: &str) -> Result<Self, HubError> {
        Self::parse(s)
    }
}

impl ModelSource {
    /// Parses a preset name or `owner/name[@revision][:QUANT]`.
    ///
    /// # Errors
    ///
    /// [`HubError::UnknownPreset`] for a bare name that is no preset,
    /// [`HubError::InvalidSource`] for anything else that is not a source
    /// (a local `.gguf` path among them: use [`ModelSource::Files`]).
    pub fn parse(s: &str) -> Result<Self, HubError> {
        let input = s.trim();
        let invalid = |reason: &str| HubError::InvalidSource {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(invalid("it is empty"));
        }
        let looks_like_path = input.to_ascii_lowercase().ends_with(".gguf")
            || input.starts_with(['.', '/', '~'])
            || input.contains('\\')
            || input.split('/').count() > 2;
        if looks_like_path {
            return Err(invalid(
                "it looks like a local file: give the model and mmproj paths together (ModelSource::Files; in the CLI, --model with --mmproj)",
            ));
        }
        // Quantizations and revisions hold no ':' and no '@', so the last of each splits.
        let (rest, quantization) = match input.rsplit_once(':') {
            Some((rest, quant)) => (rest, Some(quant)),
            None => (input, None),
        };
        let (name, revision) = match rest.rsplit_once('@') {
            Some((name, revision)) => (name, Some(revision)),
            None => (rest, None),
        };
        let repo = match Preset::find(name) {
            Some(preset) if revision.is_none() && quantization.is_none() => {
                return Ok(Self::Preset(preset.name.clone()));
            }
            Some(preset) => preset.repo.clone(),
            None if name.contains('/') => name.to_owned(),
            None => {
                return Err(HubError::UnknownPreset {
                    name: name.to_owned(),
                    known: Preset::names(),
                })
            }
        };
        let mut hub = HubRepo::new(repo);
        hub.revision = revision.map(str::to_owned);
        hub.quantization = quantization.map(str::to_owned);
        hub.validate()?;
        Ok(Self::Hub(hub))
    }

    /// Resolves the source to a local pair, downloading into the Hugging Face
    /// cache what it lacks, then checks from GGUF metadata alone that the
    /// pair is complete and belongs together, before any llama.cpp call.
    ///
    /// # Errors
    ///
    /// [`HubError`] when the pair cannot be found, downloaded or verified;
    /// [`crate::LoadError`] when the files are not a usable pair.
    pub fn resolve(&self, hub: &HubOptions) -> Result<ResolvedModel> {
        let (files, preset, pair) = match self {
            Self::Files(files) => (files.clone(), None, None),
            Self::Preset(name) => {
                let preset = Preset::find(name).ok_or_else(|| HubError::UnknownPreset {
                    name: name.clone(),
                    known: Preset::names(),
                })?;
                let pair = fetch(&HubRepo::new(preset.repo.clone()), Some(preset), hub)?;
                (pair.files.clone(), Some(preset), Some(pair))
            }
            Self::Hub(repo) => {
                repo.validate()?;
                let preset = Preset::find(&repo.repo);
                let pair = fetch(repo, preset, hub)?;
                (pair.files.clone(), preset, Some(pair))
            }
        };
        check_pair(&files.model, &files.mmproj)?;
        Ok(ResolvedModel {
            files,
            preset,
            hub: pair,
        })
    }
}

fn fetch(
    repo: &HubRepo,
    preset: Option<&'static Preset>,
    hub: &HubOptions,
) -> Result<HubPair, HubError> {
    let default_selector = FileSelector::default();
    let request = PairRequest {
        repo: &repo.repo,
        revision: repo.revision().unwrap_or(DEFAULT_REVISION),
        quantization: repo.quantization().map_or_else(
            || {
                Quantization::Default(
                    preset.map_or(DEFAULT_QUANTIZATION, |p| p.quantization.as_str()),
                )
            },
            Quantization::Explicit,
        ),
        selector: preset.map_or(&default_selector, |p| &p.files),
    };
    fetch_pair(&request, hub)
}

/// `owner/name`, each part of letters, digits, `-`, `_` and `.`, not starting with `.`.
fn is_repo_id(id: &str) -> bool {
    let mut parts = id.split('/');
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    matches!((parts.next(), parts.next(), parts.next()), (Some(o), Some(n), None) if part_ok(o) && part_ok(n))
}

/// A source resolved to local files that passed the pair checks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResolvedModel {
    /// The local pair, ready for [`Model::load`].
    pub files: ModelFiles,
    /// The preset the source named, or whose repo it named.
    pub preset: Option<&'static Preset>,
    /// Where on the Hub the files came from; `None` for local files.
    pub hub: Option<HubPair>,
}

impl Model {
    /// Loads a model by preset name or Hub repo id, downloading it into the
    /// Hugging Face cache on first use. Hub settings come from the
    /// environment ([`HubOptions::from_env`]); load options are the defaults.
    ///
    /// ```no_run
    /// let model = smolvlm::Model::from_pretrained("ggml-org/SmolVLM-256M-Instruct-GGUF")?;
    /// // or: smolvlm::Model::from_pretrained("SmolVLM-256M-Instruct")?
    /// # Ok::<(), smolvlm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`ModelSource::parse`], [`ModelSource::resolve`] and [`Model::load`].
    pub fn from_pretrained(name: &str) -> Result<Self> {
        Self::from_source(
            &ModelSource::parse(name)?,
            &HubOptions::from_env(),
            &LoadOptions::default(),
        )
    }

    /// Resolves `source` with explicit Hub options, then loads it.
    ///
    /// ```no_run
    /// use smolvlm::{HubOptions, LoadOptions, Model, ModelSource};
    ///
    /// let hub = HubOptions::from_env().with_offline(true);
    /// let model = Model::from_source(&ModelSource::default(), &hub, &LoadOptions::default())?;
    /// # Ok::<(), smolvlm::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// See [`ModelSource::resolve`] and [`Model::load`].
    pub fn from_source(source: &ModelSource, hub: &HubOptions, load: &LoadOptions) -> Result<Self> {
        let resolved = source.resolve(hub)?;
        Self::load(&resolved.files, load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(repo: &str, revision: Option<&str>, quant: Option<&str>) -> ModelSource {
        let mut r = HubRepo::new(repo);
        r.revision = revision.map(str::to_owned);
        r.quantization = quant.map(str::to_owned);
        ModelSource::Hub(r)
    }

    #[test]
    fn sources_parse_from_names_and_repo_ids() {
        let p = |s: &str| ModelSource::parse(s).unwrap();
        assert_eq!(p("SmolVLM-256M-Instruct"), ModelSource::default());
        assert_eq!(
            p("smolvlm-500m-instruct"),
            ModelSource::Preset("SmolVLM-500M-Instruct".into())
        );
        assert_eq!(
            p("ggml-org/SmolVLM-Instruct-GGUF"),
            ModelSource::Preset("SmolVLM-Instruct".into())
        );
        assert_eq!(
            p("SmolVLM-256M-Instruct:f16"),
            hub("ggml-org/SmolVLM-256M-Instruct-GGUF", None, Some("f16"))
        );
        assert_eq!(p("me/my-vlm"), hub("me/my-vlm", None, None));
        assert_eq!(
            p("me/my-vlm@v1.0:Q4_K_M"),
            hub("me/my-vlm", Some("v1.0"), Some("Q4_K_M"))
        );
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            p(&format!("me/my-vlm@{commit}")),
            hub("me/my-vlm", Some(commit), None)
        );
    }

    #[test]
    fn bad_sources_say_why() {
        let kind = |s: &str| ModelSource::parse(s).unwrap_err().kind();
        assert_eq!(kind("SmolVLM-9B"), "hub_unknown_preset");
        for bad in [
            "",
            "model.gguf",
            "./x",
            "/abs/x",
            "a/b/c",
            "me/",
            "/x",
            "me/x@",
            "me/x@../..",
            "me/x:",
            "me/x:Q8-0",
            "me/.x",
            "me x/y",
        ] {
            assert_eq!(kind(bad), "hub_invalid_source", "{bad:?}");
        }
        let e = ModelSource::parse("SmolVLM-9B").unwrap_err().to_string();
        assert!(e.contains("SmolVLM-256M-Instruct"), "{e}");
    }

    #[test]
    fn hub_repos_display_as_they_parse() {
        for s in ["me/x", "me/x@dev", "me/x:f16", "me/x@v1:Q8_0"] {
            let ModelSource::Hub(r) = ModelSource::parse(s).unwrap() else {
                panic!("{s}")
            };
            assert_eq!(r.to_string(), s);
        }
    }
}
