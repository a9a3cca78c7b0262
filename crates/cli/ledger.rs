//! What an existing output file already holds, for resuming.
//!
//! Every record names an image's path and the SHA-256 of its bytes. On a
//! re-run an image whose (path, hash) has a caption record is skipped; one
//! whose last record is an error is skipped too (and still counts as failed)
//! unless `--retry-errors` is given. A changed file (new hash) is captioned
//! again, and its new record appended: readers take the last record per path.
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
use crate::records::CSV_HEADER;

/// The last outcome recorded for an image's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// It has a caption.
    Captioned,
    /// Its last record is an error of this kind.
    Failed(String),
}

/// The records of an existing output, by (path, sha256).
#[derive(Debug, Default)]
pub struct Ledger {
    entries: HashMap<(String, String), Prior>,
    /// How many records the file held.
    pub records: usize,
    /// Set when a torn last record was cut off: what was done.
    pub repaired: Option<String>,
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
    sha256: Option<String>,
    caption: Option<serde::de::IgnoredAny>,
    error: Option<JsonErrorKind>,
}

#[derive(Deserialize)]
struct JsonErrorKind {
    kind: String,
}

/// One record as read: where it starts, and what it says.
type Parsed = (u64, Result<(String, String, Prior), String>);

impl Ledger {
    /// What was recorded for this content at this path.
    #[must_use]
    pub fn prior(&self, path: &str, sha256: Option<&str>) -> Option<&Prior> {
        self.entries
            .get(&(path.to_owned(), sha256.unwrap_or_default().to_owned()))
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
        let (parsed, name) = match format {
            Format::Jsonl => (read_jsonl(&file).map_err(io)?, "JSONL"),
            Format::Csv => (read_csv(&file), "CSV"),
            Format::Txt => {
                return Err(LedgerError::NotResumable {
                    path: path.to_path_buf(),
                })
            }
        };
        let mut ledger = Self::default();
        let count = parsed.len();
        for (i, (start, record)) in parsed.into_iter().enumerate() {
            let last = i + 1 == count;
            match record {
                Ok(_) if last && !ends_with_newline => ledger.cut(&file, start, i + 1, path)?,
                Ok((p, hash, prior)) => {
                    ledger.records += 1;
                    ledger.entries.insert((p, hash), prior);
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

fn parse_json(line: &[u8]) -> Result<(String, String, Prior), String> {
    let key: JsonKey = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let prior = match (key.caption, key.error) {
        (_, Some(e)) => Prior::Failed(e.kind),
        (Some(_), None) => Prior::Captioned,
        (None, None) => return Err("it has neither a caption nor an error".to_owned()),
    };
    Ok((key.path, key.sha256.unwrap_or_default(), prior))
}

fn read_csv(file: &File) -> Vec<Parsed> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::new(file));
    let mut parsed = Vec::new();
    let mut record = csv::StringRecord::new();
    let column = |name| CSV_HEADER.iter().position(|c| *c == name).unwrap_or(0);
    let (path, hash, finish, kind) = (
        column("path"),
        column("sha256"),
        column("finish"),
        column("error_kind"),
    );
    loop {
        let start = reader.position().byte();
        let result = match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) if start == 0 => {
                if record.iter().eq(CSV_HEADER.iter().copied()) {
                    continue;
                }
                Err(format!(
                    "the header is not {}: another format? (--format)",
                    CSV_HEADER.join(",")
                ))
            }
            Ok(true) if record.len() != CSV_HEADER.len() => Err(format!(
                "{} fields instead of {}",
                record.len(),
                CSV_HEADER.len()
            )),
            Ok(true) if !record[kind].is_empty() => Ok((
                record[path].to_owned(),
                record[hash].to_owned(),
                Prior::Failed(record[kind].to_owned()),
            )),
            Ok(true) if !record[finish].is_empty() => Ok((
                record[path].to_owned(),
                record[hash].to_owned(),
                Prior::Captioned,
            )),
            Ok(true) => Err("it has neither a caption nor an error".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        let failed = result.is_err();
        parsed.push((start, result));
        if failed && reader.is_done() {
            break;
        }
    }
    parsed
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
            sha256: Some(format!("{:0>64}", path.len())),
            outcome: if ok {
                Outcome::Captioned(Captioned {
                    text: "a caption, with \"quotes\"\nand a line break".to_owned(),
                    generated_tokens: 1,
                    prompt_tokens: 2,
                    image_tokens: 3,
                    tiles: 4,
                    finish: "max_tokens",
                    timings: smolvlm::Timings::default(),
                })
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
            let hash = |p: &str| format!("{:0>64}", p.len());
            assert_eq!(
                ledger.prior("a.jpg", Some(&hash("a.jpg"))),
                Some(&Prior::Captioned)
            );
            assert_eq!(
                ledger.prior("bb.jpg", Some(&hash("bb.jpg"))),
                Some(&Prior::Failed("image_format".to_owned()))
            );
            assert_eq!(ledger.prior("a.jpg", Some(&hash("bb.jpg"))), None);
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
