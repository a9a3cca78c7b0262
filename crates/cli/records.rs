//! One record per image, and how each format writes it.
//!
//! A record is encoded into one buffer and written with one call, so a run
//! killed at any moment leaves only whole records behind (see `ledger` for
//! the torn tail a power cut could leave).

use std::time::Duration;

use serde::Serialize;
use smolvlm::{Caption, FinishReason, Timings};

use crate::args::Format;

/// The error kind of a caption whose sidecar could not be written (a full
/// disk, a read-only folder): transient, so resume tries it again.
pub const SIDECAR_WRITE: &str = "sidecar_write";

/// The error kind of an image whose sidecar would be another image's: final.
pub const SIDECAR_CONFLICT: &str = "sidecar_conflict";

/// What happened to one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The image's path, as found (lossily UTF-8).
    pub path: String,
    /// The image's path relative to its root (see `inputs`), which resume
    /// matches on: the same from any working directory or mount point.
    pub key: String,
    /// SHA-256 of the file's bytes, lowercase hex; `None` if it could not be read.
    pub sha256: Option<String>,
    /// What produced it; `None` for a record that no run's settings
    /// produce (a sidecar conflict).
    pub asked: Option<Provenance>,
    /// The caption, or why there is none.
    pub outcome: Outcome,
}

/// What produced a record, which resume compares with the run's own: the
/// prompt, the model pair, and a fingerprint of those and of every option
/// that changes the text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// The prompt as given (a raw prompt's text as given).
    pub prompt: String,
    /// The model pair: `REPO@COMMIT` for a Hub model, the SHA-256 of the
    /// two files (16 hex digits each) for local files.
    pub model: String,
    /// SHA-256 (16 hex digits) of the model, the prompt and the options
    /// that change the text.
    pub fingerprint: String,
}

/// A caption or an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The image was captioned.
    Captioned(Box<Captioned>),
    /// It could not be: the library's error kind and message.
    Failed {
        /// `smolvlm::Error::kind()`.
        kind: String,
        /// The error's message.
        message: String,
    },
}

/// The caption and what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Captioned {
    /// The caption, trimmed.
    pub text: String,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Prompt tokens, image tokens included.
    pub prompt_tokens: usize,
    /// Image tokens.
    pub image_tokens: usize,
    /// Grid tiles (the overview not counted).
    pub tiles: usize,
    /// Why generation ended.
    pub finish: &'static str,
    /// Per-stage times.
    pub timings: Timings,
    /// The caption parsed as JSON, under `--json-schema`.
    pub json: Option<serde_json::Value>,
    /// For a video: frames shown, frames its sampling rule chose (more when
    /// frames were cut to fit the context), and its duration in seconds.
    pub video: Option<(usize, usize, f64)>,
    /// The path of an identical image (the same decoded pixels) captioned
    /// earlier in the run, whose caption this is a copy of.
    pub duplicate_of: Option<String>,
}

impl Captioned {
    /// The record fields of a library caption.
    #[must_use]
    pub fn from_caption(c: &Caption) -> Self {
        Self {
            text: c.text.trim().to_owned(),
            generated_tokens: c.tokens.len(),
            prompt_tokens: c.prompt_tokens,
            image_tokens: c.image_tokens,
            tiles: c.tiles,
            finish: finish_name(c.finish),
            timings: c.timings,
            json: c.json.clone(),
            video: (!c.videos.is_empty()).then(|| {
                let frames = c.videos.iter().map(|v| v.frames).sum();
                let sampled = c.videos.iter().map(|v| v.sampled).sum();
                let seconds = c.videos.iter().map(|v| v.seconds).sum();
                (frames, sampled, seconds)
            }),
            duplicate_of: None,
        }
    }
}

fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::EndOfText => "end_of_text",
        FinishReason::MaxTokens => "max_tokens",
        FinishReason::Stop => "stop",
        FinishReason::ContextFull => "context_full",
        _ => "other",
    }
}

/// Milliseconds, rounded to microseconds.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The JSONL shape of a record.
#[derive(Serialize)]
struct JsonRecord<'a> {
    path: &'a str,
    key: &'a str,
    sha256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asked: Option<&'a str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    answer: Option<JsonAnswer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonError<'a>>,
}

/// A caption's fields in a JSON record (also `ask -o`'s).
#[derive(Serialize)]
struct JsonAnswer<'a> {
    caption: &'a str,
    generated_tokens: usize,
    prompt_tokens: usize,
    image_tokens: usize,
    tiles: usize,
    finish: &'a str,
    ms: JsonTimings,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<&'a serde_json::Value>,
    /// A video's frames shown and duration.
    #[serde(skip_serializing_if = "Option::is_none")]
    frames: Option<usize>,
    /// Frames its sampling rule chose, when fewer were shown (cut to fit
    /// the context).
    #[serde(skip_serializing_if = "Option::is_none")]
    frames_sampled: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    /// The identical image this caption was copied from.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate_of: Option<&'a str>,
}

impl<'a> JsonAnswer<'a> {
    fn new(c: &'a Captioned) -> Self {
        Self {
            caption: &c.text,
            generated_tokens: c.generated_tokens,
            prompt_tokens: c.prompt_tokens,
            image_tokens: c.image_tokens,
            tiles: c.tiles,
            finish: c.finish,
            ms: JsonTimings::new(&c.timings),
            json: c.json.as_ref(),
            frames: c.video.map(|(frames, _, _)| frames),
            frames_sampled: c
                .video
                .and_then(|(frames, sampled, _)| (sampled > frames).then_some(sampled)),
            seconds: c.video.map(|(_, _, seconds)| (seconds * 1e3).round() / 1e3),
            duplicate_of: c.duplicate_of.as_deref(),
        }
    }
}

/// A caption's record fields as a JSON object.
#[must_use]
pub fn caption_json(c: &Captioned) -> serde_json::Value {
    serde_json::to_value(JsonAnswer::new(c)).unwrap_or_default()
}

#[derive(Serialize)]
struct JsonTimings {
    decode: f64,
    resize: f64,
    tokenize: f64,
    encode: f64,
    prefill: f64,
    generate: f64,
    total: f64,
}

#[derive(Serialize)]
struct JsonError<'a> {
    kind: &'a str,
    message: &'a str,
}

impl JsonTimings {
    fn new(t: &Timings) -> Self {
        Self {
            decode: ms(t.decode),
            resize: ms(t.resize),
            tokenize: ms(t.tokenize),
            encode: ms(t.encode),
            prefill: ms(t.prefill),
            generate: ms(t.generate),
            total: ms(t.total),
        }
    }
}

/// The CSV columns, in order. New columns go last so that files written
/// before they existed keep their layout: rows appended to such a file leave
/// them out (the first [`CSV_COLUMNS_BEFORE_KEY`] or
/// [`CSV_COLUMNS_BEFORE_ASKED`] columns).
pub const CSV_HEADER: [&str; 22] = [
    "path",
    "sha256",
    "caption",
    "generated_tokens",
    "prompt_tokens",
    "image_tokens",
    "tiles",
    "finish",
    "decode_ms",
    "resize_ms",
    "tokenize_ms",
    "encode_ms",
    "prefill_ms",
    "generate_ms",
    "total_ms",
    "error_kind",
    "error_message",
    "key",
    "prompt",
    "model",
    "asked",
    "duplicate_of",
];

/// How many columns CSV files had before records held a key.
pub const CSV_COLUMNS_BEFORE_KEY: usize = 17;

/// How many columns CSV files had before records said what produced them.
pub const CSV_COLUMNS_BEFORE_ASKED: usize = 18;

/// How many columns CSV files had before records named the image a caption
/// was copied from.
pub const CSV_COLUMNS_BEFORE_DUPLICATE: usize = 21;

impl Record {
    /// The record in `format`, ending with a newline.
    ///
    /// # Errors
    ///
    /// Only if serialization itself fails (it does not for these types).
    pub fn encode(&self, format: Format) -> std::io::Result<Vec<u8>> {
        match format {
            Format::Jsonl => self.to_json_line(),
            Format::Csv => self.to_csv_row(CSV_HEADER.len()),
            Format::Txt => Ok(self.to_text_line().into_bytes()),
        }
    }

    fn to_json_line(&self) -> std::io::Result<Vec<u8>> {
        let asked = self.asked.as_ref();
        let (answer, error) = match &self.outcome {
            Outcome::Captioned(c) => (Some(JsonAnswer::new(c)), None),
            Outcome::Failed { kind, message } => (None, Some(JsonError { kind, message })),
        };
        let json = JsonRecord {
            path: &self.path,
            key: &self.key,
            sha256: self.sha256.as_deref(),
            prompt: asked.map(|a| a.prompt.as_str()),
            model: asked.map(|a| a.model.as_str()),
            asked: asked.map(|a| a.fingerprint.as_str()),
            answer,
            error,
        };
        let mut line = serde_json::to_vec(&json)?;
        line.push(b'\n');
        Ok(line)
    }

    /// The CSV row, its first `columns` columns: all of them, or as many as
    /// the header of an older file has ([`CSV_COLUMNS_BEFORE_KEY`],
    /// [`CSV_COLUMNS_BEFORE_ASKED`]).
    ///
    /// # Errors
    ///
    /// Only if serialization itself fails (it does not for these types).
    pub fn to_csv_row(&self, columns: usize) -> std::io::Result<Vec<u8>> {
        let mut fields: Vec<String> =
            vec![self.path.clone(), self.sha256.clone().unwrap_or_default()];
        match &self.outcome {
            Outcome::Captioned(c) => {
                let t = &c.timings;
                fields.extend([
                    c.text.clone(),
                    c.generated_tokens.to_string(),
                    c.prompt_tokens.to_string(),
                    c.image_tokens.to_string(),
                    c.tiles.to_string(),
                    c.finish.to_owned(),
                ]);
                fields.extend(
                    [
                        t.decode, t.resize, t.tokenize, t.encode, t.prefill, t.generate, t.total,
                    ]
                    .map(|d| ms(d).to_string()),
                );
                fields.extend([String::new(), String::new()]);
            }
            Outcome::Failed { kind, message } => {
                fields.extend(std::iter::repeat_n(String::new(), 13));
                fields.extend([kind.clone(), message.clone()]);
            }
        }
        fields.push(self.key.clone());
        let asked = self.asked.clone().unwrap_or_default();
        fields.extend([asked.prompt, asked.model, asked.fingerprint]);
        fields.push(match &self.outcome {
            Outcome::Captioned(c) => c.duplicate_of.clone().unwrap_or_default(),
            Outcome::Failed { .. } => String::new(),
        });
        fields.truncate(columns);
        csv_row(&fields)
    }

    /// `PATH: caption` or `PATH: error [kind]: message`, line breaks folded.
    #[must_use]
    pub fn to_text_line(&self) -> String {
        match &self.outcome {
            Outcome::Captioned(c) => format!("{}: {}\n", self.path, one_line(&c.text)),
            Outcome::Failed { kind, message } => {
                format!("{}: error [{kind}]: {}\n", self.path, one_line(message))
            }
        }
    }
}

/// One CSV row with the `csv` crate's quoting (quotes, commas, line breaks).
pub fn csv_row<S: AsRef<[u8]>>(fields: &[S]) -> std::io::Result<Vec<u8>> {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    writer.write_record(fields).map_err(std::io::Error::other)?;
    writer
        .into_inner()
        .map_err(|e| std::io::Error::other(e.to_string()))
}

fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captioned(text: &str) -> Record {
        Record {
            path: "a/b, \"c\".jpg".to_owned(),
            key: "b, \"c\".jpg".to_owned(),
            sha256: Some("ab".repeat(32)),
            asked: Some(Provenance {
                prompt: "Describe, \"this\".".to_owned(),
                model: "org/repo@abc".to_owned(),
                fingerprint: "0123456789abcdef".to_owned(),
            }),
            outcome: Outcome::Captioned(Box::new(Captioned {
                text: text.to_owned(),
                generated_tokens: 3,
                prompt_tokens: 93,
                image_tokens: 52,
                tiles: 12,
                finish: "end_of_text",
                timings: Timings::default(),
                json: None,
                video: None,
                duplicate_of: None,
            })),
        }
    }

    #[test]
    fn csv_quotes_commas_quotes_and_line_breaks() {
        let row = captioned("two\nlines, \"quoted\"")
            .encode(Format::Csv)
            .unwrap();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&row[..]);
        let rec = reader.records().next().unwrap().unwrap();
        assert_eq!(rec.len(), CSV_HEADER.len());
        assert_eq!(&rec[0], "a/b, \"c\".jpg");
        assert_eq!(&rec[2], "two\nlines, \"quoted\"");
        assert_eq!(&rec[7], "end_of_text");
        assert_eq!(&rec[17], "b, \"c\".jpg");
        assert_eq!(&rec[18], "Describe, \"this\".");
        assert_eq!((&rec[19], &rec[20]), ("org/repo@abc", "0123456789abcdef"));
        for columns in [CSV_COLUMNS_BEFORE_KEY, CSV_COLUMNS_BEFORE_ASKED] {
            let old = captioned("x").to_csv_row(columns).unwrap();
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(&old[..]);
            let rec = reader.records().next().unwrap().unwrap();
            assert_eq!(rec.len(), columns);
        }
    }

    #[test]
    fn json_lines_are_one_line_and_errors_replace_the_caption() {
        let line = captioned("x\ny").encode(Format::Jsonl).unwrap();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["caption"], "x\ny");
        assert_eq!(v["tiles"], 12);
        assert_eq!(v["key"], "b, \"c\".jpg");
        assert_eq!(v["prompt"], "Describe, \"this\".");
        assert_eq!(
            (&v["model"], &v["asked"]),
            (&"org/repo@abc".into(), &"0123456789abcdef".into())
        );
        assert!(v.get("error").is_none());
        let failed = Record {
            path: "p.jpg".to_owned(),
            key: "p.jpg".to_owned(),
            sha256: None,
            asked: None,
            outcome: Outcome::Failed {
                kind: "image_truncated".to_owned(),
                message: "cut".to_owned(),
            },
        };
        let v: serde_json::Value =
            serde_json::from_slice(&failed.encode(Format::Jsonl).unwrap()).unwrap();
        assert_eq!(v["error"]["kind"], "image_truncated");
        assert!(v.get("caption").is_none() && v["sha256"].is_null());
        assert_eq!(
            failed.to_text_line(),
            "p.jpg: error [image_truncated]: cut\n"
        );
    }
}
