//! `--config FILE`: the old Python wrapper's configuration, read unchanged.
//!
//! ```json
//! { "smolvlm_version": "ggml-org/SmolVLM-500M-Instruct-GGUF", "port": 8080,
//!   "timeout": 60, "manage_server": true,
//!   "image_processing": { "smart_crop": true, "size": [1024, 1024], "min_size": 512,
//!     "preserve_aspect_ratio": true, "format": "JPEG", "jpeg_quality": 95, "optimize": true } }
//! ```
//!
//! JSON, or TOML with the same keys. Every key is optional. A key the old
//! wrapper did not have is an error that names it (nested keys too), so a
//! typo cannot silently leave a setting at its default. Keys that only made
//! sense with a server are accepted and reported once as ignored.

use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;
use smolvlm::image::ImageOptions;

/// The old configuration's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacyConfig {
    /// The model repo: a Hub repo id or a preset name.
    pub smolvlm_version: Option<String>,
    /// The per-image deadline in seconds.
    pub timeout: Option<f64>,
    /// How images are shaped before the model sees them.
    pub image_processing: Option<ImageProcessing>,
    /// The server's port: no server, no port.
    port: Option<IgnoredAny>,
    /// Whether the wrapper started the server: there is none.
    manage_server: Option<IgnoredAny>,
}

/// The old configuration's `image_processing` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageProcessing {
    /// Trim uniform borders.
    pub smart_crop: Option<bool>,
    /// The target size; meaningful only with `preserve_aspect_ratio = false`.
    pub size: Option<(u32, u32)>,
    /// Whether `size` keeps the aspect ratio.
    pub preserve_aspect_ratio: Option<bool>,
    /// The smallest side; mtmd's tile grid decides the size now.
    min_size: Option<IgnoredAny>,
    /// The JPEG round-trip's settings: there is no round-trip any more.
    format: Option<IgnoredAny>,
    jpeg_quality: Option<IgnoredAny>,
    optimize: Option<IgnoredAny>,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config '{}': {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("config '{}': {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl LegacyConfig {
    /// Reads a JSON or TOML config: by extension, else by its first character.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file and, for a bad or unknown key, the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, is_toml(path, &text)).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    pub(crate) fn parse(text: &str, toml: bool) -> Result<Self, String> {
        if toml {
            let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
            serde_path_to_error::deserialize(de).map_err(|e| describe(e.path(), e.inner()))
        } else {
            let mut de = serde_json::Deserializer::from_str(text);
            let config: Self = serde_path_to_error::deserialize(&mut de)
                .map_err(|e| describe(e.path(), e.inner()))?;
            de.end().map_err(|e| e.to_string())?;
            Ok(config)
        }
    }

    /// The image options the config asks for, on top of the defaults.
    #[must_use]
    pub fn smart_crop(&self) -> Option<bool> {
        self.image_processing.as_ref().and_then(|p| p.smart_crop)
    }

    /// `size` with `preserve_aspect_ratio = false`: stretch every image to that aspect ratio.
    #[must_use]
    pub fn stretch_to(&self) -> Option<(u32, u32)> {
        let p = self.image_processing.as_ref()?;
        match (p.preserve_aspect_ratio, p.size) {
            (Some(false), Some(size)) => Some(size),
            _ => None,
        }
    }

    /// Applies the config's image settings to `options`.
    #[must_use]
    pub fn apply_image(&self, mut options: ImageOptions) -> ImageOptions {
        if let Some(on) = self.smart_crop() {
            options = options.with_smart_crop(on);
        }
        if let Some(size) = self.stretch_to() {
            options = options.with_stretch_to(Some(size));
        }
        options
    }

    /// The keys that are accepted but change nothing, in groups, each with
    /// the reason: one warning per group.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let server: Vec<&str> = [
            ("port", self.port.is_some()),
            ("manage_server", self.manage_server.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !server.is_empty() {
            warnings.push(format!(
                "{} ignored: smolvlm runs the model in-process, there is no server",
                server.join(", ")
            ));
        }
        let Some(p) = &self.image_processing else {
            return warnings;
        };
        let preserve = p.preserve_aspect_ratio.unwrap_or(true);
        let mut no_effect = Vec::new();
        if preserve && p.size.is_some() {
            no_effect.push("image_processing.size");
        }
        if p.min_size.is_some() {
            no_effect.push("image_processing.min_size");
        }
        if !no_effect.is_empty() {
            warnings.push(format!(
                "{} accepted, no effect: mtmd scales every image to the model's own \
                 longest edge and tile grid",
                no_effect.join(", ")
            ));
        }
        if !preserve && p.size.is_none() {
            warnings.push(
                "image_processing.preserve_aspect_ratio = false without size: no effect".to_owned(),
            );
        }
        let jpeg: Vec<&str> = [
            ("image_processing.format", p.format.is_some()),
            ("image_processing.jpeg_quality", p.jpeg_quality.is_some()),
            ("image_processing.optimize", p.optimize.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        if !jpeg.is_empty() {
            warnings.push(format!(
                "{} ignored: images go to the model as raw RGB, with no JPEG round-trip",
                jpeg.join(", ")
            ));
        }
        warnings
    }
}

/// TOML by extension, JSON by extension; otherwise JSON if it starts with `{`.
fn is_toml(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("toml") => true,
        Some(e) if e.eq_ignore_ascii_case("json") => false,
        _ => !text.trim_start().starts_with('{'),
    }
}

/// The deserializer's message, with the dotted path of the key it is about.
fn describe(path: &serde_path_to_error::Path, inner: &dyn std::fmt::Display) -> String {
    let message = inner.to_string();
    let path = path.to_string();
    // serde says "unknown field `k`, expected one of ..."; JSON appends
    // "at line L column C", TOML puts its location and a snippet first.
    let Some(start) = message.find("unknown field `") else {
        return if path == "." || path.is_empty() {
            message
        } else {
            format!("key '{path}': {message}")
        };
    };
    let unknown = message[start..].lines().next().unwrap_or_default();
    let expected = unknown
        .split_once(", expected ")
        .map_or("", |(_, e)| e.split(" at line").next().unwrap_or(e));
    let location = message
        .find("at line ")
        .map(|i| message[i..].lines().next().unwrap_or_default())
        .unwrap_or_default();
    format!("unknown key '{path}' {location}: remove it or fix its spelling (expected {expected})")
        .replace(" :", ":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = r#"{ "smolvlm_version": "ggml-org/SmolVLM-500M-Instruct-GGUF", "port": 8080,
      "timeout": 60, "manage_server": true,
      "image_processing": { "smart_crop": true, "size": [1024, 1024], "min_size": 512,
        "preserve_aspect_ratio": true, "format": "JPEG", "jpeg_quality": 95, "optimize": true } }"#;

    #[test]
    fn the_old_json_loads_with_three_warnings() {
        let c = LegacyConfig::parse(OLD, false).unwrap();
        assert_eq!(
            c.smolvlm_version.as_deref(),
            Some("ggml-org/SmolVLM-500M-Instruct-GGUF")
        );
        assert_eq!(c.timeout, Some(60.0));
        assert_eq!(c.smart_crop(), Some(true));
        assert_eq!(c.stretch_to(), None);
        let w = c.warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("port, manage_server ignored"), "{w:?}");
        assert!(w[1].contains("size, image_processing.min_size accepted, no effect"));
        assert!(w[2]
            .contains("format, image_processing.jpeg_quality, image_processing.optimize ignored"));
    }

    #[test]
    fn the_same_keys_load_from_toml() {
        let toml = r#"
            smolvlm_version = "SmolVLM-500M-Instruct"
            timeout = 30
            [image_processing]
            size = [640, 480]
            preserve_aspect_ratio = false
        "#;
        let c = LegacyConfig::parse(toml, true).unwrap();
        assert_eq!(c.timeout, Some(30.0));
        assert_eq!(c.stretch_to(), Some((640, 480)));
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn unknown_keys_are_named_top_level_and_nested() {
        let err = LegacyConfig::parse(r#"{"smolvlm_verison": "x"}"#, false).unwrap_err();
        assert!(err.contains("unknown key 'smolvlm_verison'"), "{err}");
        let err =
            LegacyConfig::parse(r#"{"image_processing": {"smart_crp": true}}"#, false).unwrap_err();
        assert!(err.contains("'image_processing.smart_crp'"), "{err}");
        let err = LegacyConfig::parse("[image_processing]\nsmart_crp = true\n", true).unwrap_err();
        assert!(err.contains("'image_processing.smart_crp'"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let err = LegacyConfig::parse(r#"{"timeout": "sixty"}"#, false).unwrap_err();
        assert!(err.contains("key 'timeout'"), "{err}");
        let err = LegacyConfig::parse(r#"{"timeout": 1} trailing"#, false).unwrap_err();
        assert!(err.contains("trailing"), "{err}");
    }

    #[test]
    fn format_is_picked_by_extension_then_content() {
        assert!(is_toml(Path::new("a.toml"), "{"));
        assert!(!is_toml(Path::new("a.json"), "x = 1"));
        assert!(!is_toml(Path::new("config"), "  {\"timeout\": 1}"));
        assert!(is_toml(Path::new("config"), "timeout = 1"));
    }
}
