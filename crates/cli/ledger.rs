//! What an existing output file already holds, for resuming.
//!
//! Every record holds an image's key and the SHA-256 of its bytes. The key is
//! the image's path relative to its root, `/`-separated (`inputs` computes it,
//! and `--shard` splits by it): the root of a file found in a directory is
//! that directory, of a glob match the pattern's literal prefix, and of a file
//! named directly (an argument, or a line of stdin) its own directory, so its
//! key is its file name. On a re-run an image is skipped only when the last
//! record for its key (and prompt) says it was captioned from the same
//! content (hash) by the same model, prompt and generation options (the
//! record's `asked` fingerprint): an image changed and changed back, or asked
//! with another prompt, model or options, is captioned again and its new
//! record appended. So a folder captioned as `photos/` from one directory
//! and resumed as `/abs/path/photos`, from another directory, or through
//! another mount point of the same tree, ends with one record per image. The
//! record's `path` stays as it was given, for the user. Two roots that hold
//! the same relative path with the same bytes are one image to resume.
//!
//! Records written before they held a key are matched by the path as given,
//! as they were then: such a file resumes when the paths are given the same
//! way. Records written before they held their prompt and fingerprint are
//! taken as the current run's (its first prompt's), so an older file resumes
//! without captioning everything again. The later record wins when several
//! kinds match.
//!
//! An image whose last record is an error is captioned again when the error
//! is transient ([`is_transient`]: a deadline, a cancel, out of memory, a
//! file that could not be read or a sidecar that could not be written), and
//! otherwise skipped (it still counts as failed) unless `--retry-errors` is
//! given: a final error says the image is bad, and it would fail again. A
//! changed file (new hash) is captioned again, and its new record appended:
//! readers take the last record per path.
//!
//! Records are written whole, so a killed process leaves only whole records.
//! Only a cut in the middle of a write (power loss, a full disk) can leave a
//! torn last record: it has no final newline, or does not parse. It is cut
//! off here, with a warning, before anything is appended. A bad record
//! anywhere else is an error: the file is not ours to rewrite.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::args::Format;
use crate::records::{
    CSV_COLUMNS_BEFORE_ASKED, CSV_COLUMNS_BEFORE_DUPLICATE, CSV_COLUMNS_BEFORE_KEY, CSV_HEADER,
    SIDECAR_WRITE,
};

/// The last outcome recorded for an image's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// It has a caption.
    Captioned,
    /// Its last record is an error of this kind.
    Failed(String),
}

/// Whether an error of this recorded kind is retried on resume without
/// `--retry-errors`: the library's transient kinds
/// ([`smolvlm::kind_is_transient`]) and the CLI's `sidecar_write` (a full
/// disk, say). The rest are final.
#[must_use]
pub fn is_transient(kind: &str) -> bool {
    kind == SIDECAR_WRITE || smolvlm::kind_is_transient(kind)
}

/// The last record of an existing output for each (key, prompt), and of
/// older records without a key for each path.
#[derive(Debug)]
pub struct Ledger {
    /// By (key, prompt); records written before they held their prompt
    /// under `None`.
    by_key: HashMap<(String, Option<String>), Seen>,
    /// Records written before they held a key, by path.
    by_path: HashMap<String, Seen>,
    /// How many records the file held.
    pub records: usize,
    /// Set when a torn last record was cut off: what was done.
    pub repaired: Option<String>,
    /// The CSV file's columns: fewer than [`CSV_HEADER`]'s in a file written
    /// before the last columns existed. Rows appended to it leave them out,
    /// so that the file stays one table.
    pub csv_columns: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Self {
            by_key: HashMap::new(),
            by_path: HashMap::new(),
            records: 0,
            repaired: None,
            csv_columns: CSV_HEADER.len(),
        }
    }
}

/// What the run asks of an image, which a record must match to be reused.
#[derive(Debug, Clone, Copy)]
pub struct Asking<'a> {
    /// The prompt as given.
    pub prompt: &'a str,
    /// The run's fingerprint for this prompt (the record's `asked`).
    pub fingerprint: &'a str,
    /// Whether it is the run's first prompt: records written before they
    /// held their prompt are taken as its.
    pub first: bool,
}

/// A record as the ledger keeps it: which record it was (the later wins),
/// and what it says.
#[derive(Debug)]
struct Seen {
    number: usize,
    sha256: String,
    /// `None` in records written before they held one.
    fingerprint: Option<String>,
    prior: Prior,
}

/// The fields of one record that resuming needs.
struct Stored {
    /// `None` in records written before records held a key.
    key: Option<String>,
    path: String,
    sha256: String,
    /// The prompt: in every record since records said what produced them,
    /// and before that in those of a run with several prompts.
    prompt: Option<String>,
    /// What produced it (see [`Asking`]), in records since they said.
    fingerprint: Option<String>,
    prior: Prior,
}

/// An output that cannot be resumed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// It could not be opened, read or truncated.
    #[error("cannot use '{}' for records: {source}", path.display())]
    Io {
        /// The output file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A record before the last does not parse.
    #[error("record {number} of '{}' is not a {format} record ({message}): fix or remove it, or start over with --overwrite", path.display())]
    Corrupt {
        /// The output file.
        path: PathBuf,
        /// The 1-based record (line, for JSONL) number.
        number: usize,
        /// The format expected.
        format: &'static str,
        /// What is wrong.
        message: String,
    },
    /// txt records hold no content hash, so they cannot be resumed.
    #[error("'{}' exists and txt records cannot be resumed (they hold no content hash): pass --overwrite, or use --format jsonl or csv", path.display())]
    NotResumable {
        /// The output file.
        path: PathBuf,
    },
}

/// The fields of a JSONL record that resuming needs.
#[derive(Deserialize)]
struct JsonKey {
    path: String,
    key: Option<String>,
    sha256: Option<String>,
    prompt: Option<String>,
    asked: Option<String>,
    caption: Option<serde::de::IgnoredAny>,
    error: Option<JsonErrorKind>,
}

#[derive(Deserialize)]
struct JsonErrorKind {
    kind: String,
}

/// One record as read: where it starts, and what it says.
type Parsed = (u64, Result<Stored, String>);

impl Ledger {
    /// The outcome the last record for this key (or, in records without a
    /// key, this path) holds, if it is still current: recorded for this
    /// content (`None`: unreadable) and, when `asking` is given, for this
    /// prompt, model and options. `None`: caption it.
    #[must_use]
    pub fn prior(
        &self,
        key: &str,
        path: &str,
        sha256: Option<&str>,
        asking: Option<Asking<'_>>,
    ) -> Option<&Prior> {
        let mut candidates: Vec<&Seen> = Vec::new();
        if let Some(asking) = asking {
            candidates.extend(
                self.by_key
                    .get(&(key.to_owned(), Some(asking.prompt.to_owned()))),
            );
        }
        if asking.is_none_or(|a| a.first) {
            candidates.extend(self.by_key.get(&(key.to_owned(), None)));
            candidates.extend(self.by_path.get(path));
        }
        let last = candidates.into_iter().max_by_key(|seen| seen.number)?;
        if last.sha256 != sha256.unwrap_or_default() {
            return None;
        }
        match (asking, &last.fingerprint) {
            (Some(asking), Some(fingerprint)) if fingerprint != asking.fingerprint => None,
            _ => Some(&last.prior),
        }
    }

    fn insert(&mut self, number: usize, stored: Stored) {
        let seen = Seen {
            number,
            sha256: stored.sha256,
            fingerprint: stored.fingerprint,
            prior: stored.prior,
        };
        // Records are read in order: the later replaces the earlier.
        match stored.key {
            Some(key) => self.by_key.insert((key, stored.prompt), seen),
            None => self.by_path.insert(stored.path, seen),
        };
    }

    /// Reads `path` (which exists) as `format` records, cutting off a torn last record.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] if it cannot be read, holds a bad record before the
    /// last, or is a non-empty txt file.
    pub fn read(path: &Path, format: Format) -> Result<Self, LedgerError> {
        let io = |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            return Ok(Self::default());
        }
        let ends_with_newline = {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            last[0] == b'\n'
        };
        let mut ledger = Self::default();
        let (parsed, name) = match format {
            Format::Jsonl => (read_jsonl(&file).map_err(io)?, "JSONL"),
            Format::Csv => {
                let (parsed, columns) = read_csv(&file);
                ledger.csv_columns = columns;
                (parsed, "CSV")
            }
            Format::Txt => {
                return Err(LedgerError::NotResumable {
                    path: path.to_path_buf(),
                })
            }
        };
        let count = parsed.len();
        for (i, (start, record)) in parsed.into_iter().enumerate() {
            let last = i + 1 == count;
            match record {
                Ok(_) if last && !ends_with_newline => ledger.cut(&file, start, i + 1, path)?,
                Ok(stored) => {
                    ledger.records += 1;
                    ledger.insert(i + 1, stored);
                }
                Err(_) if last => ledger.cut(&file, start, i + 1, path)?,
                Err(message) => {
                    return Err(LedgerError::Corrupt {
                        path: path.to_path_buf(),
                        number: i + 1,
                        format: name,
                        message,
                    })
                }
            }
        }
        Ok(ledger)
    }

    fn cut(&mut self, file: &File, at: u64, number: usize, path: &Path) -> Result<(), LedgerError> {
        file.set_len(at).map_err(|source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.repaired = Some(format!(
            "'{}': record {number} was cut short (an interrupted write); removed it, \
             its image will be captioned again",
            path.display()
        ));
        Ok(())
    }
}

fn read_jsonl(file: &File) -> std::io::Result<Vec<Parsed>> {
    let mut reader = BufReader::new(file);
    let mut parsed = Vec::new();
    let mut offset = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let start = offset;
        offset += n as u64;
        if line.iter().all(u8::is_ascii_whitespace) && line.ends_with(b"\n") {
            continue;
        }
        parsed.push((start, parse_json(&line)));
    }
    Ok(parsed)
}

fn parse_json(line: &[u8]) -> Result<Stored, String> {
    let json: JsonKey = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let prior = match (json.caption, json.error) {
        (_, Some(e)) => Prior::Failed(e.kind),
        (Some(_), None) => Prior::Captioned,
        (None, None) => return Err("it has neither a caption nor an error".to_owned()),
    };
    Ok(Stored {
        key: json.key,
        path: json.path,
        sha256: json.sha256.unwrap_or_default(),
        prompt: json.prompt,
        fingerprint: json.asked,
        prior,
    })
}

/// The records, and how many columns the header has (files written before
/// the last columns existed have [`CSV_COLUMNS_BEFORE_KEY`] or
/// [`CSV_COLUMNS_BEFORE_ASKED`]; they still resume).
fn read_csv(file: &File) -> (Vec<Parsed>, usize) {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::new(file));
    let mut parsed = Vec::new();
    let mut record = csv::StringRecord::new();
    let column = |name| CSV_HEADER.iter().position(|c| *c == name).unwrap_or(0);
    let (path, hash, finish, kind, key, prompt, asked) = (
        column("path"),
        column("sha256"),
        column("finish"),
        column("error_kind"),
        column("key"),
        column("prompt"),
        column("asked"),
    );
    let mut columns = CSV_HEADER.len();
    loop {
        let start = reader.position().byte();
        let result = match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) if start == 0 => {
                if record.iter().eq(CSV_HEADER.iter().copied()) {
                    continue;
                }
                let older = [
                    CSV_COLUMNS_BEFORE_KEY,
                    CSV_COLUMNS_BEFORE_ASKED,
                    CSV_COLUMNS_BEFORE_DUPLICATE,
                ]
                .into_iter()
                .find(|&n| record.iter().eq(CSV_HEADER[..n].iter().copied()));
                if let Some(n) = older {
                    columns = n;
                    continue;
                }
                Err(format!(
                    "the header is not {}: another format? (--format)",
                    CSV_HEADER.join(",")
                ))
            }
            Ok(true) if record.len() != columns => {
                Err(format!("{} fields instead of {columns}", record.len(),))
            }
            Ok(true) => {
                let prior = if !record[kind].is_empty() {
                    Ok(Prior::Failed(record[kind].to_owned()))
                } else if !record[finish].is_empty() {
                    Ok(Prior::Captioned)
                } else {
                    Err("it has neither a caption nor an error".to_owned())
                };
                let field = |i: usize| record.get(i).filter(|v| !v.is_empty()).map(str::to_owned);
                prior.map(|prior| Stored {
                    key: field(key),
                    path: record[path].to_owned(),
                    sha256: record[hash].to_owned(),
                    prompt: field(prompt),
                    fingerprint: field(asked),
                    prior,
                })
            }
            Err(e) => Err(e.to_string()),
        };
        let failed = result.is_err();
        parsed.push((start, result));
        if failed && reader.is_done() {
            break;
        }
    }
    (parsed, columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Captioned, Outcome, Record};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smolvlm-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn record(path: &str, ok: bool) -> Record {
        Record {
            path: path.to_owned(),
            key: format!("k/{path}"),
            sha256: Some(format!("{:0>64}", path.len())),
            asked: None,
            outcome: if ok {
                Outcome::Captioned(Box::new(Captioned {
                    text: "a caption, with \"quotes\"\nand a line break".to_owned(),
                    generated_tokens: 1,
                    prompt_tokens: 2,
                    image_tokens: 3,
                    tiles: 4,
                    finish: "max_tokens",
                    timings: smolvlm::Timings::default(),
                    json: None,
                    video: None,
                    duplicate_of: None,
                }))
            } else {
                Outcome::Failed {
                    kind: "image_format".to_owned(),
                    message: "no".to_owned(),
                }
            },
        }
    }

    fn write(path: &Path, format: Format, records: &[Record], tail: &[u8]) {
        let mut bytes = Vec::new();
        if format == Format::Csv {
            bytes.extend(crate::records::csv_row(&CSV_HEADER).unwrap());
        }
        for r in records {
            bytes.extend(r.encode(format).unwrap());
        }
        bytes.extend_from_slice(tail);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn records_are_read_back_in_both_formats() {
        for format in [Format::Jsonl, Format::Csv] {
            let path = temp(&format!("ok.{format:?}"));
            write(
                &path,
                format,
                &[record("a.jpg", true), record("bb.jpg", false)],
                b"",
            );
            let ledger = Ledger::read(&path, format).unwrap();
            assert_eq!(ledger.records, 2);
            assert!(ledger.repaired.is_none());
            assert_eq!(ledger.csv_columns, CSV_HEADER.len());
            let hash = |p: &str| format!("{:0>64}", p.len());
            // Found by key, wherever the path now is.
            assert_eq!(
                ledger.prior("k/a.jpg", "/elsewhere/a.jpg", Some(&hash("a.jpg")), None),
                Some(&Prior::Captioned)
            );
            assert_eq!(
                ledger.prior("k/bb.jpg", "bb.jpg", Some(&hash("bb.jpg")), None),
                Some(&Prior::Failed("image_format".to_owned()))
            );
            assert_eq!(
                ledger.prior("k/a.jpg", "a.jpg", Some(&hash("bb.jpg")), None),
                None
            );
            // A record with a key is not matched by its path.
            assert_eq!(
                ledger.prior("a.jpg", "a.jpg", Some(&hash("a.jpg")), None),
                None
            );
        }
    }

    #[test]
    fn records_without_a_key_resume_by_path() {
        let hash = "ab".repeat(32);
        let jsonl = temp("old.jsonl");
        std::fs::write(
            &jsonl,
            format!(
                "{{\"path\":\"photos/a.jpg\",\"sha256\":\"{hash}\",\"caption\":\"x\"}}\n\
                 {{\"path\":\"photos/b.jpg\",\"sha256\":\"{hash}\",\"error\":{{\"kind\":\"image_format\",\"message\":\"no\"}}}}\n"
            ),
        )
        .unwrap();
        let ledger = Ledger::read(&jsonl, Format::Jsonl).unwrap();
        assert_eq!(ledger.records, 2);
        assert_eq!(
            ledger.prior("a.jpg", "photos/a.jpg", Some(&hash), None),
            Some(&Prior::Captioned)
        );
        assert_eq!(
            ledger.prior("b.jpg", "photos/b.jpg", Some(&hash), None),
            Some(&Prior::Failed("image_format".to_owned()))
        );
        assert_eq!(
            ledger.prior("a.jpg", "/abs/photos/a.jpg", Some(&hash), None),
            None
        );

        // A CSV file with the header from before the key column.
        let csv = temp("old.csv");
        let mut bytes = crate::records::csv_row(&CSV_HEADER[..CSV_COLUMNS_BEFORE_KEY]).unwrap();
        bytes.extend(
            record("a.jpg", true)
                .to_csv_row(CSV_COLUMNS_BEFORE_KEY)
                .unwrap(),
        );
        std::fs::write(&csv, bytes).unwrap();
        let ledger = Ledger::read(&csv, Format::Csv).unwrap();
        assert_eq!(ledger.csv_columns, CSV_COLUMNS_BEFORE_KEY);
        assert_eq!(
            ledger.prior("k/a.jpg", "a.jpg", Some(&format!("{:0>64}", 5)), None),
            Some(&Prior::Captioned)
        );
        // Its rows keep its column count: a row with a key is a bad record.
        let mut bytes = std::fs::read(&csv).unwrap();
        bytes.extend(record("bb.jpg", true).encode(Format::Csv).unwrap());
        bytes.extend(
            record("a.jpg", true)
                .to_csv_row(CSV_COLUMNS_BEFORE_KEY)
                .unwrap(),
        );
        std::fs::write(&csv, bytes).unwrap();
        assert!(Ledger::read(&csv, Format::Csv).is_err());
    }

    #[test]
    fn the_later_record_wins_between_key_and_path() {
        let hash = "cd".repeat(32);
        let path = temp("mixed.jsonl");
        let mut bytes =
            format!("{{\"path\":\"photos/a.jpg\",\"sha256\":\"{hash}\",\"caption\":\"x\"}}\n")
                .into_bytes();
        let mut failed = record("photos/a.jpg", false);
        failed.key = "a.jpg".to_owned();
        failed.sha256 = Some(hash.clone());
        bytes.extend(failed.encode(Format::Jsonl).unwrap());
        std::fs::write(&path, bytes).unwrap();
        let ledger = Ledger::read(&path, Format::Jsonl).unwrap();
        assert_eq!(
            ledger.prior("a.jpg", "photos/a.jpg", Some(&hash), None),
            Some(&Prior::Failed("image_format".to_owned()))
        );
    }

    fn asked(record: &mut Record, prompt: &str, fingerprint: &str) {
        record.asked = Some(crate::records::Provenance {
            prompt: prompt.to_owned(),
            model: "m".to_owned(),
            fingerprint: fingerprint.to_owned(),
        });
    }

    #[test]
    fn only_the_last_record_for_a_key_counts_and_it_must_match_what_is_asked() {
        let (x, y) = ("1".repeat(64), "2".repeat(64));
        let path = temp("asked.jsonl");
        let mut bytes = Vec::new();
        for sha in [&x, &y] {
            let mut r = record("a.jpg", true);
            r.sha256 = Some(sha.clone());
            asked(&mut r, "Describe.", "f1");
            bytes.extend(r.encode(Format::Jsonl).unwrap());
        }
        std::fs::write(&path, bytes).unwrap();
        let ledger = Ledger::read(&path, Format::Jsonl).unwrap();
        let asking = |prompt, fingerprint, first| {
            Some(Asking {
                prompt,
                fingerprint,
                first,
            })
        };
        let key = "k/a.jpg";
        // Captioned as X, changed to Y, reverted to X: Y's record is the
        // last, so X is captioned again.
        assert_eq!(
            ledger.prior(key, "a.jpg", Some(&x), asking("Describe.", "f1", true)),
            None
        );
        assert_eq!(
            ledger.prior(key, "a.jpg", Some(&y), asking("Describe.", "f1", true)),
            Some(&Prior::Captioned)
        );
        // Another model or options (fingerprint), another prompt: again.
        assert_eq!(
            ledger.prior(key, "a.jpg", Some(&y), asking("Describe.", "f2", true)),
            None
        );
        assert_eq!(
            ledger.prior(key, "a.jpg", Some(&y), asking("Tags.", "f1", true)),
            None
        );
    }

    #[test]
    fn records_without_what_asked_them_are_the_first_prompts() {
        let hash = format!("{:0>64}", 5);
        let path = temp("unasked.jsonl");
        std::fs::write(&path, record("a.jpg", true).encode(Format::Jsonl).unwrap()).unwrap();
        let ledger = Ledger::read(&path, Format::Jsonl).unwrap();
        let asking = |first| {
            Some(Asking {
                prompt: "Tags.",
                fingerprint: "f9",
                first,
            })
        };
        assert_eq!(
            ledger.prior("k/a.jpg", "a.jpg", Some(&hash), asking(true)),
            Some(&Prior::Captioned)
        );
        assert_eq!(
            ledger.prior("k/a.jpg", "a.jpg", Some(&hash), asking(false)),
            None
        );

        // A CSV file with the header from before the prompt and fingerprint
        // columns resumes the same way, and its rows keep its width.
        let csv = temp("unasked.csv");
        let mut bytes = crate::records::csv_row(&CSV_HEADER[..CSV_COLUMNS_BEFORE_ASKED]).unwrap();
        bytes.extend(
            record("a.jpg", true)
                .to_csv_row(CSV_COLUMNS_BEFORE_ASKED)
                .unwrap(),
        );
        std::fs::write(&csv, bytes).unwrap();
        let ledger = Ledger::read(&csv, Format::Csv).unwrap();
        assert_eq!(ledger.csv_columns, CSV_COLUMNS_BEFORE_ASKED);
        assert_eq!(
            ledger.prior("k/a.jpg", "a.jpg", Some(&hash), asking(true)),
            Some(&Prior::Captioned)
        );

        // In today's CSV, prompt and fingerprint are read back.
        let csv = temp("asked.csv");
        let mut r = record("a.jpg", true);
        asked(&mut r, "Tags.", "f9");
        write(&csv, Format::Csv, &[r], b"");
        let ledger = Ledger::read(&csv, Format::Csv).unwrap();
        assert_eq!(
            ledger.prior("k/a.jpg", "a.jpg", Some(&hash), asking(false)),
            Some(&Prior::Captioned)
        );
        let other = Some(Asking {
            prompt: "Tags.",
            fingerprint: "f8",
            first: true,
        });
        assert_eq!(ledger.prior("k/a.jpg", "a.jpg", Some(&hash), other), None);
    }

    #[test]
    fn transient_kinds_are_retried_and_final_ones_are_not() {
        for kind in [
            "deadline_exceeded",
            "cancelled",
            "session",
            "eval",
            "sidecar_write",
        ] {
            assert!(is_transient(kind), "{kind}");
        }
        for kind in [
            "image_format",
            "image_truncated",
            "sidecar_conflict",
            "prompt_too_long",
        ] {
            assert!(!is_transient(kind), "{kind}");
        }
    }

    #[test]
    fn a_torn_last_record_is_cut_off() {
        for format in [Format::Jsonl, Format::Csv] {
            let path = temp(&format!("torn.{format:?}"));
            let whole = record("a.jpg", true).encode(format).unwrap();
            write(
                &path,
                format,
                &[record("a.jpg", true)],
                &whole[..whole.len() / 2],
            );
            let before = std::fs::metadata(&path).unwrap().len();
            let ledger = Ledger::read(&path, format).unwrap();
            assert_eq!(ledger.records, 1, "{format:?}");
            assert!(ledger.repaired.is_some());
            let after = std::fs::metadata(&path).unwrap().len();
            assert_eq!(before - after, (whole.len() / 2) as u64, "{format:?}");
            // The repaired file reads back clean.
            assert!(Ledger::read(&path, format).unwrap().repaired.is_none());
        }
    }

    #[test]
    fn a_bad_record_in_the_middle_is_an_error() {
        let path = temp("bad.jsonl");
        let mut bytes = b"{\"not\": \"a record\"}\n".to_vec();
        bytes.extend(record("a.jpg", true).encode(Format::Jsonl).unwrap());
        std::fs::write(&path, bytes).unwrap();
        let err = Ledger::read(&path, Format::Jsonl).unwrap_err().to_string();
        assert!(
            err.contains("record 1 of") && err.contains("--overwrite"),
            "{err}"
        );
        let csv_as_json = temp("csv-as.jsonl");
        write(&csv_as_json, Format::Csv, &[record("a.jpg", true)], b"");
        assert!(Ledger::read(&csv_as_json, Format::Jsonl).is_err());
    }
}
