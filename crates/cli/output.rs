//! Where records and captions go: the record stream (a file or stdout) and
//! sidecar files beside the images.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::args::Format;
use crate::ledger::{Ledger, LedgerError};
use crate::records::{csv_row, Outcome, Record, CSV_HEADER};

/// The record stream.
#[derive(Debug)]
pub struct Sink {
    target: Target,
    format: Format,
    /// txt on stdout for one named image: the caption alone, as before batches existed.
    bare: bool,
}

#[derive(Debug)]
enum Target {
    Stdout,
    File {
        file: File,
        path: PathBuf,
        /// A CSV file's columns: fewer than today's in a file written
        /// before the last ones existed (its rows leave them out).
        csv_columns: usize,
    },
    Nowhere,
}

impl Sink {
    /// Records to stdout; `bare` prints a txt caption without its path.
    #[must_use]
    pub fn stdout(format: Format, bare: bool) -> Self {
        Self {
            target: Target::Stdout,
            format,
            bare,
        }
    }

    /// No record stream (sidecars only); failures are printed on stderr.
    #[must_use]
    pub fn nowhere() -> Self {
        Self {
            target: Target::Nowhere,
            format: Format::Txt,
            bare: false,
        }
    }

    /// Records appended to `path`, with what it already holds; `overwrite`
    /// empties it first. A CSV file gets its header when it is empty.
    ///
    /// # Errors
    ///
    /// [`LedgerError`] if the file cannot be read, resumed or opened.
    pub fn file(
        path: &Path,
        format: Format,
        overwrite: bool,
    ) -> Result<(Self, Ledger), LedgerError> {
        let io = |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let ledger = if !overwrite && path.exists() {
            Ledger::read(path, format)?
        } else {
            File::create(path).map_err(io)?;
            Ledger::default()
        };
        let mut file = File::options().append(true).open(path).map_err(io)?;
        if format == Format::Csv && file.metadata().map_err(io)?.len() == 0 {
            file.write_all(&csv_row(&CSV_HEADER).map_err(io)?)
                .map_err(io)?;
        }
        let target = Target::File {
            file,
            path: path.to_path_buf(),
            csv_columns: ledger.csv_columns,
        };
        Ok((
            Self {
                target,
                format,
                bare: false,
            },
            ledger,
        ))
    }

    /// Writes one record and hands it to the OS at once, so that it survives
    /// the process being killed.
    ///
    /// # Errors
    ///
    /// The I/O error (a full disk, a closed pipe).
    pub fn write(&mut self, record: &Record) -> std::io::Result<()> {
        match &mut self.target {
            Target::Nowhere => {
                // Sidecars only: failures would otherwise go unseen.
                if matches!(record.outcome, Outcome::Failed { .. }) {
                    eprint!("{}", record.to_text_line());
                }
                Ok(())
            }
            // One write_all of the whole record: File is unbuffered, so
            // this is one write(2) call for any record of sane size.
            Target::File {
                file, csv_columns, ..
            } => {
                let bytes = if self.format == Format::Csv {
                    record.to_csv_row(*csv_columns)?
                } else {
                    record.encode(self.format)?
                };
                file.write_all(&bytes)
            }
            Target::Stdout => {
                let bytes = match (self.format, &record.outcome, self.bare) {
                    (Format::Txt, Outcome::Failed { .. }, _) => {
                        // Errors go to stderr in txt, as they always did.
                        eprint!("{}", record.to_text_line());
                        return Ok(());
                    }
                    (Format::Txt, Outcome::Captioned(c), true) => {
                        format!("{}\n", c.text).into_bytes()
                    }
                    (format, _, _) => record.encode(format)?,
                };
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes)?;
                out.flush()
            }
        }
    }

    /// Flushes file records to the disk itself, for a power cut after the run.
    ///
    /// # Errors
    ///
    /// The I/O error.
    pub fn finish(&mut self) -> std::io::Result<()> {
        match &mut self.target {
            Target::File { file, .. } => file.sync_data(),
            _ => Ok(()),
        }
    }

    /// The output file, if records go to one.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match &self.target {
            Target::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// The sidecar of an image: its path with the extension replaced by `.txt`
/// (`photo.jpg` -> `photo.txt`), where dataset tools look for captions.
#[must_use]
pub fn sidecar_path(image: &Path) -> PathBuf {
    image.with_extension("txt")
}

/// Whether an image's sidecar holds a caption: it exists and is not empty.
/// A power cut after a rename whose data never reached the disk can leave a
/// zero-length file; that one is not done.
#[must_use]
pub fn sidecar_done(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// Writes the caption beside its image, atomically and durably: a temporary
/// file in the same directory, synced, renamed over the sidecar, then the
/// directory synced. So the sidecar is whole or absent, and once this
/// returns (and a record says it is done) a power cut does not take it back.
///
/// # Errors
///
/// The I/O error.
pub fn write_sidecar(path: &Path, caption: &str) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    let temp = path.with_file_name(name);
    let result = write_synced(&temp, caption).and_then(|()| std::fs::rename(&temp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result?;
    sync_directory_of(path)
}

/// Writes `caption` and a newline to a new file and waits for the disk.
fn write_synced(path: &Path, caption: &str) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(format!("{caption}\n").as_bytes())?;
    file.sync_all()
}

/// Syncs the directory holding `path`, so a rename into it is on the disk.
#[cfg(unix)]
fn sync_directory_of(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Elsewhere std cannot open a directory to sync it: the file itself is
/// synced, the rename is left to the file system.
#[cfg(not(unix))]
fn sync_directory_of(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecars_replace_the_extension() {
        assert_eq!(sidecar_path(Path::new("a/b.jpg")), Path::new("a/b.txt"));
        assert_eq!(sidecar_path(Path::new("a/b")), Path::new("a/b.txt"));
        assert_eq!(sidecar_path(Path::new("a/b.c.png")), Path::new("a/b.c.txt"));
    }

    #[test]
    fn a_sidecar_is_written_whole() {
        let dir = std::env::temp_dir().join(format!("smolvlm-sidecar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.txt");
        write_sidecar(&path, "first").unwrap();
        write_sidecar(&path, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(sidecar_done(&path));
        std::fs::write(&path, b"").unwrap();
        assert!(!sidecar_done(&path));
        assert!(!sidecar_done(&dir.join("missing.txt")));
        assert!(!sidecar_done(&dir));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
