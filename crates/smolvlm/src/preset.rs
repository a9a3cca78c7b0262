//! Model presets: the SmolVLM GGUF repos that ggml-org publishes, with the
//! defaults that suit each one.
//!
//! The presets are the TOML files in the workspace's `models/` folder,
//! compiled in with `include_str!`, so the library and the CLI need no data
//! files at run time. A preset names a repo, not files: the files are picked
//! from the repo's listing by a [`FileSelector`].

use std::sync::OnceLock;

use serde::Deserialize;

mod selector;

pub use self::selector::{FileSelector, Miss, NoMatch, Quantization, RepoGgufs};

/// The preset used when no model is named: the smallest SmolVLM.
pub const DEFAULT_PRESET: &str = "SmolVLM-256M-Instruct";

/// The quantization picked when neither the source nor its preset names one.
pub const DEFAULT_QUANTIZATION: &str = "Q8_0";

/// The preset files, in the order [`Preset::all`] lists them.
const SOURCES: [(&str, &str); 6] = [
    (
        "smolvlm-256m-instruct.toml",
        include_str!("../../../models/smolvlm-256m-instruct.toml"),
    ),
    (
        "smolvlm-500m-instruct.toml",
        include_str!("../../../models/smolvlm-500m-instruct.toml"),
    ),
    (
        "smolvlm-instruct.toml",
        include_str!("../../../models/smolvlm-instruct.toml"),
    ),
    (
        "smolvlm2-2.2b-instruct.toml",
        include_str!("../../../models/smolvlm2-2.2b-instruct.toml"),
    ),
    (
        "smolvlm2-256m-video-instruct.toml",
        include_str!("../../../models/smolvlm2-256m-video-instruct.toml"),
    ),
    (
        "smolvlm2-500m-video-instruct.toml",
        include_str!("../../../models/smolvlm2-500m-video-instruct.toml"),
    ),
];

/// A named model: where it lives on the Hub and how to run it.
///
/// ```
/// let preset = smolvlm::Preset::find("SmolVLM-256M-Instruct").unwrap();
/// assert_eq!(preset.repo, "ggml-org/SmolVLM-256M-Instruct-GGUF");
/// assert_eq!(preset.quantization, "Q8_0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Preset {
    /// The preset's name, e.g. `SmolVLM-256M-Instruct`.
    pub name: String,
    /// The Hub repo holding its GGUF files, e.g. `ggml-org/SmolVLM-256M-Instruct-GGUF`.
    pub repo: String,
    /// One line on what the model is.
    pub description: String,
    /// The quantization picked by default, e.g. `Q8_0`.
    pub quantization: String,
    /// The recommended instruction.
    pub prompt: String,
    /// The recommended most tokens per caption.
    pub max_tokens: u32,
    /// How the model and mmproj files are found in the repo listing.
    pub files: FileSelector,
}

impl Preset {
    /// Every preset, in a fixed order, the default first.
    #[must_use]
    pub fn all() -> &'static [Preset] {
        static PRESETS: OnceLock<Vec<Preset>> = OnceLock::new();
        PRESETS.get_or_init(|| {
            SOURCES
                .iter()
                .filter_map(|(file, text)| match parse(text) {
                    Ok(preset) => Some(preset),
                    // The unit tests parse every file, so this is a build of broken data.
                    Err(e) => {
                        tracing::error!(file, error = %e, "skipping a preset that does not parse");
                        None
                    }
                })
                .collect()
        })
    }

    /// The preset named `name`, or whose repo is `name`, compared without regard to case.
    #[must_use]
    pub fn find(name: &str) -> Option<&'static Preset> {
        Self::all()
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name) || p.repo.eq_ignore_ascii_case(name))
    }

    /// The names of every preset, comma-separated, for messages.
    #[must_use]
    pub fn names() -> String {
        Self::all()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn parse(text: &str) -> Result<Preset, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_file_parses_and_the_default_comes_first() {
        for (file, text) in SOURCES {
            let preset = parse(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(preset.repo.starts_with("ggml-org/"), "{file}");
            assert!(preset.repo.ends_with(&format!("/{}-GGUF", preset.name)));
            assert_eq!(preset.quantization, DEFAULT_QUANTIZATION);
            assert!(preset.max_tokens > 0);
        }
        assert_eq!(Preset::all().len(), SOURCES.len());
        assert_eq!(Preset::all()[0].name, DEFAULT_PRESET);
    }

    #[test]
    fn presets_are_found_by_name_or_repo_in_any_case() {
        let by_name = Preset::find("smolvlm-500m-instruct").unwrap();
        let by_repo = Preset::find("GGML-ORG/SmolVLM-500M-Instruct-GGUF").unwrap();
        assert_eq!(by_name, by_repo);
        assert!(Preset::find("SmolVLM-9B").is_none());
        assert!(Preset::names().contains("SmolVLM2-2.2B-Instruct"));
    }
}
