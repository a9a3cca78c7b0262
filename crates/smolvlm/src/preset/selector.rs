//! Picking a (model, mmproj) pair from a repo listing by the shape of the
//! names, not by hard-coded file names.

use std::fmt;

use serde::Deserialize;

use crate::error::FileRole;

/// How a (model, mmproj) pair is picked from a repo listing, without
/// hard-coded file names.
///
/// The listing's `.gguf` files are sorted into three kinds:
/// - **mmproj files**: names that start with `mmproj_prefix` (in any case);
/// - **split parts** (`X-00001-of-00002.gguf`): not supported, set aside
///   (merge them with `llama-gguf-split --merge` and use local files);
/// - **text models**: every other `.gguf` file.
///
/// A file's quantization is the last `-` or `.` separated part of its name
/// before `.gguf` (`SmolVLM-256M-Instruct-Q8_0.gguf` is `Q8_0`), compared
/// without regard to case.
///
/// The quantization decides only where there is a choice:
/// - **The text model.** The only one is taken, whatever its name. The one
///   exception: a quantization asked for by name ([`Quantization::Explicit`])
///   that the name contradicts. `X-Q8_0.gguf` is refused for `Q4_K_M`, as the
///   repo has no `Q4_K_M` model; a name that carries no quantization
///   (`model.gguf`, `finetune-v2.gguf`) is taken, with a debug log. Among
///   several, the one of the wanted quantization is taken (the shortest name,
///   then the first in byte order, so the choice is stable).
/// - **The mmproj.** The only one is taken, whatever its name. Among several,
///   the one of the text model's quantization is preferred (of the wanted
///   quantization when the model's name carries none), then those of
///   `mmproj_fallback`, in order.
///
/// So a repo of one text model and one mmproj (`model.gguf` and
/// `mmproj.gguf`) is that pair, whatever the default quantization.
///
/// ```
/// use smolvlm::{FileSelector, Quantization};
///
/// let selector = FileSelector::default();
/// let listing = ["README.md", "mmproj-X-f16.gguf", "X-Q8_0.gguf", "X-f16.gguf"];
/// let want = Quantization::Default("Q8_0");
/// assert_eq!(selector.select(&listing, want), Ok(("X-Q8_0.gguf", "mmproj-X-f16.gguf")));
/// let plain = ["model.gguf", "mmproj.gguf"];
/// assert_eq!(selector.select(&plain, want), Ok(("model.gguf", "mmproj.gguf")));
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

/// The quantization a pair is picked for, and whether it was asked for by
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quantization<'a> {
    /// Asked for by name (`owner/name:Q4_K_M`): it chooses among several
    /// files, and a repo's only text model whose name carries another
    /// quantization is refused.
    Explicit(&'a str),
    /// A default (the preset's, else [`crate::DEFAULT_QUANTIZATION`]): it only
    /// chooses among several files.
    Default(&'a str),
}

impl Quantization<'_> {
    /// The quantization's name, e.g. `Q8_0`.
    #[must_use]
    pub fn name(&self) -> &str {
        match *self {
            Self::Explicit(name) | Self::Default(name) => name,
        }
    }

    /// Whether it was asked for by name.
    #[must_use]
    pub fn is_explicit(&self) -> bool {
        matches!(self, Self::Explicit(_))
    }
}

/// Why [`FileSelector::select`] found no pair, with what the listing holds so
/// that a message can say what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NoMatch {
    /// What is missing or wrong.
    pub miss: Miss,
    /// The listing's GGUF files, by kind.
    pub ggufs: RepoGgufs,
}

/// What [`FileSelector::select`] could not find.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Miss {
    /// The listing has no GGUF file for this role (split parts aside).
    Missing(FileRole),
    /// Several files could fill the role and none is of the quantization (for
    /// the mmproj: nor of a fallback).
    NoQuantization {
        /// The role with several candidates.
        role: FileRole,
        /// The quantization looked for.
        quantization: String,
    },
    /// The only text model's name carries another quantization than the one
    /// asked for by name.
    OtherQuantization {
        /// The text model's name.
        file: String,
        /// The quantization its name carries.
        found: String,
    },
}

/// A listing's `.gguf` files by kind, each list sorted; shown as what a repo
/// holds in error messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepoGgufs {
    /// Text model files.
    pub models: Vec<String>,
    /// Files whose name starts with the mmproj prefix.
    pub mmprojs: Vec<String>,
    /// Parts of split GGUFs (`-00001-of-00002.gguf`), which are not supported.
    pub splits: Vec<String>,
}

impl RepoGgufs {
    /// What the text models' names end with: the values `:QUANT` can ask
    /// for, sorted and without repeats.
    #[must_use]
    pub fn model_quantizations(&self) -> Vec<String> {
        let mut quants: Vec<String> = self
            .models
            .iter()
            .filter_map(|f| quant_of(f))
            .filter(|q| q.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
            .map(str::to_owned)
            .collect();
        quants.sort();
        quants.dedup();
        quants
    }
}

impl fmt::Display for RepoGgufs {
    /// `text model 'a.gguf'; mmproj 'mmproj.gguf'; split parts (not
    /// supported) 'b-00001-of-00002.gguf'`, or `no .gguf file`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds = [
            ("text model", "", &self.models),
            ("mmproj", "", &self.mmprojs),
            ("split GGUF part", " (not supported)", &self.splits),
        ];
        let mut first = true;
        for (kind, note, names) in kinds {
            if names.is_empty() {
                continue;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            let plural = if names.len() > 1 { "s" } else { "" };
            write!(f, "{kind}{plural}{note} ")?;
            for (i, name) in names.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                write!(f, "{sep}'{name}'")?;
            }
        }
        if first {
            f.write_str("no .gguf file")?;
        }
        Ok(())
    }
}

/// The listing's GGUF files by kind, borrowed from the listing.
struct Kinds<'a> {
    models: Vec<&'a str>,
    mmprojs: Vec<&'a str>,
    splits: Vec<&'a str>,
}

impl Kinds<'_> {
    fn to_owned_ggufs(&self) -> RepoGgufs {
        let owned = |names: &[&str]| {
            let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            names.sort();
            names
        };
        RepoGgufs {
            models: owned(&self.models),
            mmprojs: owned(&self.mmprojs),
            splits: owned(&self.splits),
        }
    }
}

impl FileSelector {
    /// Picks the (model, mmproj) file names from `listing`, by the rules
    /// above.
    ///
    /// # Errors
    ///
    /// [`NoMatch`] saying what is missing and what the listing holds.
    pub fn select<'a>(
        &self,
        listing: &[&'a str],
        quantization: Quantization<'_>,
    ) -> Result<(&'a str, &'a str), NoMatch> {
        let kinds = self.sort(listing);
        let no_match = |miss: Miss| NoMatch {
            miss,
            ggufs: kinds.to_owned_ggufs(),
        };
        // A missing role is told before any quantization: nothing asked for fixes it.
        for (role, files) in [
            (FileRole::Model, &kinds.models),
            (FileRole::Mmproj, &kinds.mmprojs),
        ] {
            if files.is_empty() {
                return Err(no_match(Miss::Missing(role)));
            }
        }
        let model = pick_model(&kinds.models, quantization).map_err(no_match)?;
        // The mmproj follows the model's quantization when its name carries one.
        let wanted = carried_quant(model).unwrap_or(quantization.name());
        let mmproj = self.pick_mmproj(&kinds.mmprojs, wanted).map_err(no_match)?;
        Ok((model, mmproj))
    }

    fn sort<'a>(&self, listing: &[&'a str]) -> Kinds<'a> {
        let mut kinds = Kinds {
            models: Vec::new(),
            mmprojs: Vec::new(),
            splits: Vec::new(),
        };
        for &name in listing {
            let Some(stem) = gguf_stem(name) else {
                continue;
            };
            if is_split_part(stem) {
                kinds.splits.push(name);
            } else if self.is_mmproj(file_name(name)) {
                kinds.mmprojs.push(name);
            } else {
                kinds.models.push(name);
            }
        }
        kinds
    }

    fn pick_mmproj<'a>(&self, mmprojs: &[&'a str], wanted: &str) -> Result<&'a str, Miss> {
        if let [only] = mmprojs {
            return Ok(only);
        }
        std::iter::once(wanted)
            .chain(self.mmproj_fallback.iter().map(String::as_str))
            .find_map(|q| shortest(mmprojs.iter().copied().filter(|f| has_quant(f, q))))
            .ok_or_else(|| Miss::NoQuantization {
                role: FileRole::Mmproj,
                quantization: wanted.to_owned(),
            })
    }

    fn is_mmproj(&self, name: &str) -> bool {
        let prefix = self.mmproj_prefix.as_bytes();
        name.as_bytes()
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    }
}

/// The text model: the only one (unless its name contradicts a quantization
/// asked for by name), else the one of the quantization.
fn pick_model<'a>(models: &[&'a str], quantization: Quantization<'_>) -> Result<&'a str, Miss> {
    let wanted = quantization.name();
    if let [only] = models {
        match carried_quant(only) {
            Some(found) if found.eq_ignore_ascii_case(wanted) => {}
            Some(found) if quantization.is_explicit() => {
                return Err(Miss::OtherQuantization {
                    file: (*only).to_owned(),
                    found: found.to_owned(),
                });
            }
            Some(found) => tracing::debug!(
                file = only,
                found,
                default = wanted,
                "the repo's only text model is not of the default quantization; taking it"
            ),
            None => tracing::debug!(
                file = only,
                quantization = wanted,
                "the repo's only text model carries no quantization in its name; taking it"
            ),
        }
        return Ok(only);
    }
    shortest(models.iter().copied().filter(|f| has_quant(f, wanted))).ok_or_else(|| {
        Miss::NoQuantization {
            role: FileRole::Model,
            quantization: wanted.to_owned(),
        }
    })
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

/// Whether a stem ends like a split part: `-00001-of-00002`, as
/// `llama-gguf-split` names them.
fn is_split_part(stem: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((head, total)) = stem.rsplit_once("-of-") else {
        return false;
    };
    let Some((_, index)) = head.rsplit_once('-') else {
        return false;
    };
    digits(index) && digits(total)
}

/// The end of a file's name: `X-Q8_0.gguf` gives `Q8_0`, `model.gguf` gives `model`.
fn quant_of(path: &str) -> Option<&str> {
    gguf_stem(path)?.rsplit(['-', '.']).next()
}

/// The quantization a name carries, if its end looks like one (`Q8_0`,
/// `IQ4_XS`, `TQ1_0`, `f16`, `bf16`, `MXFP4`); `model.gguf` carries none.
fn carried_quant(path: &str) -> Option<&str> {
    quant_of(path).filter(|q| is_quant_name(q))
}

/// Whether a name is one of ggml's quantization type names.
fn is_quant_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let after_q = upper
        .strip_prefix('Q')
        .or_else(|| upper.strip_prefix("IQ"))
        .or_else(|| upper.strip_prefix("TQ"));
    match after_q {
        Some(rest) => {
            rest.starts_with(|c: char| c.is_ascii_digit())
                && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        None => {
            matches!(upper.as_str(), "F16" | "F32" | "F64" | "BF16") || upper.starts_with("MXFP")
        }
    }
}

fn has_quant(path: &str, quantization: &str) -> bool {
    quant_of(path).is_some_and(|q| q.eq_ignore_ascii_case(quantization))
}

fn shortest<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    names.min_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
}

#[cfg(test)]
mod tests;
