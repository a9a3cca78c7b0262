//! Model presets: the SmolVLM GGUF repos that ggml-org publishes, with the
//! defaults that suit each one.
//!
//! The presets are the TOML files in the workspace's `models/` folder,
//! compiled in with `include_str!`, so the library and the CLI need no data
//! files at run time. A preset names a repo, not files: the files are picked
//! from the repo's listing by a [`FileSelector`].

use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::FileRole;

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

/// How a (model, mmproj) pair is picked from a repo listing, without
/// hard-coded file names.
///
/// - The mmproj is a `.gguf` file whose name starts with `mmproj_prefix`.
///   The one of the wanted quantization is preferred, then those of
///   `mmproj_fallback`, in order.
/// - The text model is any other `.gguf` file of the wanted quantization.
/// - A file's quantization is the last `-` or `.` separated part of its
///   name before `.gguf` (`SmolVLM-256M-Instruct-Q8_0.gguf` is `Q8_0`),
///   compared without regard to case.
///
/// ```
/// let selector = smolvlm::FileSelector::default();
/// let listing = ["README.md", "mmproj-X-f16.gguf", "X-Q8_0.gguf", "X-f16.gguf"];
/// assert_eq!(selector.select(&listing, "Q8_0"), Ok(("X-Q8_0.gguf", "mmproj-X-f16.gguf")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileSelector {
    /// The prefix that marks the mmproj file.
    pub mmproj_prefix: String,
    /// mmproj quantizations to try, in order, when none matches the model's.
    pub mmproj_fallback: Vec<String>,
}

impl Default for FileSelector {
    fn default() -> Self {
        Self {
            mmproj_prefix: "mmproj".to_owned(),
            mmproj_fallback: vec!["f16".to_owned()],
        }
    }
}

/// Why [`FileSelector::select`] found no file for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMatch {
    /// Which file is missing.
    pub role: FileRole,
    /// What the listing offers instead: the quantizations of the text models
    /// when the model is missing, the mmproj files when the mmproj is.
    pub available: Vec<String>,
}

impl FileSelector {
    /// Picks the (model, mmproj) file names for `quantization` from `listing`.
    ///
    /// When several text models match, the shortest name wins (then the
    /// first in byte order), so the choice is stable.
    ///
    /// # Errors
    ///
    /// [`NoMatch`] naming the missing role and what the listing offers instead.
    pub fn select<'a>(
        &self,
        listing: &[&'a str],
        quantization: &str,
    ) -> Result<(&'a str, &'a str), NoMatch> {
        let ggufs = listing.iter().copied().filter(|f| gguf_stem(f).is_some());
        let (mmprojs, models): (Vec<&str>, Vec<&str>) =
            ggufs.partition(|f| self.is_mmproj(file_name(f)));

        let model = shortest(
            models
                .iter()
                .copied()
                .filter(|f| has_quant(f, quantization)),
        )
        .ok_or_else(|| {
            let mut quants: Vec<String> = models
                .iter()
                .filter_map(|f| quant_of(f))
                .map(str::to_owned)
                .collect();
            quants.sort();
            quants.dedup();
            NoMatch {
                role: FileRole::Model,
                available: quants,
            }
        })?;

        let mmproj = std::iter::once(quantization)
            .chain(self.mmproj_fallback.iter().map(String::as_str))
            .find_map(|q| shortest(mmprojs.iter().copied().filter(|f| has_quant(f, q))))
            .ok_or_else(|| NoMatch {
                role: FileRole::Mmproj,
                available: mmprojs.iter().map(|f| (*f).to_owned()).collect(),
            })?;
        Ok((model, mmproj))
    }

    fn is_mmproj(&self, name: &str) -> bool {
        let prefix = self.mmproj_prefix.as_bytes();
        name.len() >= prefix.len() && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix)
    }
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

/// The last path component of a repo file name.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The name without `.gguf`, if it is a GGUF file.
fn gguf_stem(path: &str) -> Option<&str> {
    let name = file_name(path);
    let cut = name.len().checked_sub(".gguf".len())?;
    let (stem, ext) = (name.get(..cut)?, name.get(cut..)?);
    (ext.eq_ignore_ascii_case(".gguf") && !stem.is_empty()).then_some(stem)
}

/// The quantization a file name ends with: `X-Q8_0.gguf` is `Q8_0`.
fn quant_of(path: &str) -> Option<&str> {
    gguf_stem(path)?.rsplit(['-', '.']).next()
}

fn has_quant(path: &str, quantization: &str) -> bool {
    quant_of(path).is_some_and(|q| q.eq_ignore_ascii_case(quantization))
}

fn shortest<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names.min_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
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

    #[test]
    fn the_real_listings_give_the_expected_pairs() {
        let s = FileSelector::default();
        let listing = [
            ".gitattributes",
            "README.md",
            "SmolVLM-256M-Instruct-Q8_0.gguf",
            "SmolVLM-256M-Instruct-f16.gguf",
            "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
            "mmproj-SmolVLM-256M-Instruct-f16.gguf",
        ];
        assert_eq!(
            s.select(&listing, "Q8_0"),
            Ok((
                "SmolVLM-256M-Instruct-Q8_0.gguf",
                "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf"
            ))
        );
        assert_eq!(
            s.select(&listing, "F16"),
            Ok((
                "SmolVLM-256M-Instruct-f16.gguf",
                "mmproj-SmolVLM-256M-Instruct-f16.gguf"
            ))
        );
    }

    #[test]
    fn the_mmproj_falls_back_to_f16_and_misses_say_what_there_is() {
        let s = FileSelector::default();
        let listing = ["M-Q4_K_M.gguf", "M-Q8_0.gguf", "mmproj-M-f16.gguf"];
        assert_eq!(
            s.select(&listing, "q4_k_m"),
            Ok(("M-Q4_K_M.gguf", "mmproj-M-f16.gguf"))
        );
        assert_eq!(
            s.select(&listing, "Q2_K"),
            Err(NoMatch {
                role: FileRole::Model,
                available: vec!["Q4_K_M".into(), "Q8_0".into()]
            })
        );
        assert_eq!(
            s.select(&["M-Q8_0.gguf", "README.md"], "Q8_0"),
            Err(NoMatch {
                role: FileRole::Mmproj,
                available: vec![]
            })
        );
        // An mmproj of another quantization is not taken unless it is a fallback.
        assert_eq!(
            s.select(&["M-Q8_0.gguf", "mmproj-M-Q4_0.gguf"], "Q8_0")
                .unwrap_err()
                .available,
            vec!["mmproj-M-Q4_0.gguf".to_owned()]
        );
    }

    #[test]
    fn odd_names_neither_panic_nor_match() {
        for name in [".gguf", "gguf", "", "-.gguf", "é.gguf", "x.GGUF"] {
            let _ = quant_of(name);
        }
        assert_eq!(quant_of("x.GGUF"), Some("x"));
        assert_eq!(quant_of("a/b/model.Q8_0.gguf"), Some("Q8_0"));
        assert_eq!(
            FileSelector::default().select(&["a-Q8_0.gguf", "b-Q8_0.gguf"], "Q8_0"),
            Err(NoMatch {
                role: FileRole::Mmproj,
                available: vec![]
            })
        );
    }
}
