//! Turning `PATH...` into the list of images to caption.
//!
//! - A file named on the command line (or on stdin) is always an input, even
//!   if it is not an image: the user asked for it, so it gets a record (an
//!   error one if it cannot be decoded). A path that does not exist gets an
//!   `image_read` error record the same way.
//! - A directory is walked recursively, in sorted order, following symbolic
//!   links and skipping hidden entries (names starting with `.`, such as
//!   macOS's `._photo.jpg`). A file found there is an input if its name has
//!   an image extension or its first bytes are an image signature, and it is
//!   not a `.txt`, `.json`, `.jsonl` or `.csv` file (what this tool writes);
//!   anything else (captions, notes, the output file) is skipped and counted.
//! - Video files (by extension: MP4, M4V, WebM, MOV, MKV, AVI) are inputs
//!   too: found in a directory or by a glob only with `--video` (otherwise
//!   skipped and counted, so photo folders caption as before), named
//!   directly always. With `--video` a GIF is a video as well (all its
//!   frames, not the first).
//! - A glob pattern (`*`, `?`, `[`) that is not an existing path expands to
//!   its matches, which are filtered like a directory's files.
//! - `-` reads paths from stdin, one per line; each is a file or a directory.
//!
//! Each input also gets a key: its path relative to the root it was found
//! under, with `/` separators. The root of a file found in a directory is that
//! directory; of a glob match, the pattern's literal prefix; of a file named
//! directly (on the command line or stdin), its own directory, so its key is
//! its file name. The key does not depend on the working directory or on where
//! the dataset is mounted: `--shard` splits by it, so every worker of an array
//! job computes the same split, and resume matches records by it (with the
//! content hash), so a folder resumes from any directory or mount point.

use std::collections::HashSet;
use std::io::{BufRead, Read};
use std::path::{Component, Path, PathBuf};

use crate::shard::Shard;

/// One image to caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The file, as found.
    pub path: PathBuf,
    /// The path relative to its root, `/`-separated: what `--shard` and
    /// resume know the image by.
    pub key: String,
    /// Captioned as a video: its frames, not one image.
    pub video: bool,
}

/// What the arguments expanded to.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The images, in argument order (each directory sorted), without duplicates.
    pub images: Vec<Input>,
    /// Files found in directories or by globs that are not images (videos
    /// without `--video` not counted).
    pub not_images: usize,
    /// Videos found in directories or by globs and skipped: no `--video`.
    pub videos_skipped: usize,
    /// Images left to other shards.
    pub other_shards: usize,
    /// Problems that did not stop the walk (an unreadable directory, a
    /// pattern matching nothing), one line each.
    pub warnings: Vec<String>,
}

/// Arguments that cannot be expanded at all.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A glob pattern does not parse.
    #[error("bad glob pattern '{pattern}': {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// stdin could not be read.
    #[error("cannot read paths from stdin: {0}")]
    Stdin(#[source] std::io::Error),
}

/// Extensions of the formats the decoder handles (compared case-insensitively).
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "jpe", "jfif", "png", "gif", "webp", "bmp", "dib", "tif", "tiff",
];

/// Extensions of the video files taken as videos (compared case-insensitively).
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "m4v", "webm", "mov", "mkv", "avi"];

/// Expands `args` (reading stdin for `-`), keeping only `shard`'s images;
/// `videos` is `--video`.
///
/// # Errors
///
/// [`InputError`] for a malformed glob pattern or an unreadable stdin.
pub fn collect(
    args: &[PathBuf],
    stdin: impl BufRead,
    shard: Option<Shard>,
    videos: bool,
) -> Result<Inputs, InputError> {
    let mut collector = Collector {
        shard,
        videos,
        seen: HashSet::new(),
        inputs: Inputs::default(),
    };
    let mut stdin = Some(stdin);
    for arg in args {
        if arg.as_os_str() == "-" {
            // stdin can be read once; a second '-' adds nothing.
            if let Some(stdin) = stdin.take() {
                collector.stdin(stdin)?;
            }
        } else {
            collector.argument(arg)?;
        }
    }
    Ok(collector.inputs)
}

struct Collector {
    shard: Option<Shard>,
    videos: bool,
    seen: HashSet<PathBuf>,
    inputs: Inputs,
}

impl Collector {
    fn argument(&mut self, arg: &Path) -> Result<(), InputError> {
        if arg.is_dir() {
            self.walk(arg, arg);
        } else if !arg.exists() && has_glob_chars(arg) {
            self.glob(arg)?;
        } else {
            self.named(arg);
        }
        Ok(())
    }

    fn stdin(&mut self, stdin: impl BufRead) -> Result<(), InputError> {
        for line in stdin.split(b'\n') {
            let line = line.map_err(InputError::Stdin)?;
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let path = Path::new(line);
            if path.is_dir() {
                self.walk(path, path);
            } else {
                self.named(path);
            }
        }
        Ok(())
    }

    /// A file the user named: always an input, keyed by its file name.
    fn named(&mut self, path: &Path) {
        let path = normalize(path);
        let key = path
            .file_name()
            .map_or_else(|| key_of(&path), |name| name.to_string_lossy().into_owned());
        self.push(path, key, false);
    }

    fn walk(&mut self, dir: &Path, root: &Path) {
        let walker = walkdir::WalkDir::new(dir)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !is_hidden(e.file_name()));
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_file() => {
                    let path = normalize(e.path());
                    let rel = path.strip_prefix(normalize(root)).unwrap_or(&path);
                    let key = key_of(rel);
                    self.push(path, key, true);
                }
                Ok(_) => {}
                Err(e) => self.inputs.warnings.push(format!("skipped: {e}")),
            }
        }
    }

    fn glob(&mut self, pattern: &Path) -> Result<(), InputError> {
        let text = pattern.to_string_lossy();
        let matches = glob::glob(&text).map_err(|e| InputError::Pattern {
            pattern: text.to_string(),
            message: e.to_string(),
        })?;
        let root = literal_prefix(pattern);
        let mut any = false;
        for entry in matches {
            any = true;
            match entry {
                Ok(path) if path.is_dir() => self.walk(&path, &root),
                Ok(path) => {
                    let path = normalize(&path);
                    let rel = path.strip_prefix(&root).unwrap_or(&path);
                    let key = key_of(rel);
                    self.push(path, key, true);
                }
                Err(e) => self.inputs.warnings.push(format!("skipped: {e}")),
            }
        }
        if !any {
            self.inputs
                .warnings
                .push(format!("pattern '{text}' matched nothing"));
        }
        Ok(())
    }

    /// Adds an input unless it was seen, is another shard's, or (when found
    /// rather than named) is not an image.
    fn push(&mut self, path: PathBuf, key: String, found: bool) {
        if self.seen.contains(&path) {
            return;
        }
        if self.shard.is_some_and(|s| !s.contains(&key)) {
            self.inputs.other_shards += 1;
            self.seen.insert(path);
            return;
        }
        let video = match video_kind(&path) {
            Some(Video::File) => self.videos || !found,
            Some(Video::Gif) => self.videos,
            None => false,
        };
        if found && !video && !looks_like_image(&path) {
            if video_kind(&path) == Some(Video::File) {
                self.inputs.videos_skipped += 1;
            } else {
                self.inputs.not_images += 1;
            }
            self.seen.insert(path);
            return;
        }
        self.seen.insert(path.clone());
        self.inputs.images.push(Input { path, key, video });
    }
}

/// What kind of video a file's extension says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Video {
    /// A video container (read through ffmpeg, except the image crate's formats).
    File,
    /// A GIF: a video only with `--video`.
    Gif,
}

fn video_kind(path: &Path) -> Option<Video> {
    let extension = path.extension().and_then(|e| e.to_str())?;
    if VIDEO_EXTENSIONS
        .iter()
        .any(|x| x.eq_ignore_ascii_case(extension))
    {
        Some(Video::File)
    } else if extension.eq_ignore_ascii_case("gif") {
        Some(Video::Gif)
    } else {
        None
    }
}

/// Extensions of what `smolvlm caption` itself writes (records, sidecars):
/// never taken from a directory, whatever their first bytes look like.
const OUTPUT_EXTENSIONS: &[&str] = &["txt", "json", "jsonl", "csv"];

/// An image extension, or the first bytes of a format the decoder handles.
#[must_use]
pub fn looks_like_image(path: &Path) -> bool {
    let extension = path.extension().and_then(|e| e.to_str());
    let is_one_of =
        |list: &[&str]| extension.is_some_and(|e| list.iter().any(|x| x.eq_ignore_ascii_case(e)));
    if is_one_of(OUTPUT_EXTENSIONS) {
        return false;
    }
    is_one_of(IMAGE_EXTENSIONS) || sniff(path)
}

/// Whether the file starts with the signature of JPEG, PNG, GIF, WebP, BMP or TIFF.
/// A file that cannot be read is not one (a named file would get a record).
fn sniff(path: &Path) -> bool {
    let mut head = [0u8; 14];
    let n = std::fs::File::open(path)
        .and_then(|f| f.take(14).read(&mut head))
        .unwrap_or(0);
    is_image_signature(&head[..n])
}

fn is_image_signature(h: &[u8]) -> bool {
    h.starts_with(&[0xFF, 0xD8, 0xFF])
        || h.starts_with(b"\x89PNG\r\n\x1a\n")
        || h.starts_with(b"GIF87a")
        || h.starts_with(b"GIF89a")
        || (h.len() >= 12 && h.starts_with(b"RIFF") && &h[8..12] == b"WEBP")
        // "BM" alone is too weak (a text starting "BMW"): the header's
        // reserved bytes are zero too.
        || (h.len() >= 14 && h.starts_with(b"BM") && h[6..10] == [0, 0, 0, 0])
        || h.starts_with(b"II*\0")
        || h.starts_with(b"MM\0*")
}

fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

fn has_glob_chars(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

/// The leading components of a pattern that hold no glob characters.
fn literal_prefix(pattern: &Path) -> PathBuf {
    let mut prefix = PathBuf::new();
    for c in pattern.components() {
        if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            break;
        }
        prefix.push(c);
    }
    normalize(&prefix)
}

/// The path without `.` components, so `./a.png` and `a.png` are one input.
fn normalize(path: &Path) -> PathBuf {
    let normal: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    if normal.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        normal
    }
}

/// A `/`-separated key, the same on every platform.
fn key_of(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_recognised() {
        assert!(is_image_signature(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(is_image_signature(b"\x89PNG\r\n\x1a\n...."));
        assert!(is_image_signature(b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!is_image_signature(b"RIFF\0\0\0\0WAVEfmt "));
        assert!(!is_image_signature(b"hello world"));
        assert!(is_image_signature(b"BM\x36\x00\x0c\x00\0\0\0\0\x36\0\0\0"));
        assert!(!is_image_signature(b"BMW parked on a street"));
        assert!(!is_image_signature(b""));
    }

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(key_of(Path::new("a/b/c.jpg")), "a/b/c.jpg");
        assert_eq!(normalize(Path::new("./a/./b.png")), Path::new("a/b.png"));
        assert_eq!(
            literal_prefix(Path::new("data/set/**/*.jpg")),
            Path::new("data/set")
        );
        assert_eq!(literal_prefix(Path::new("*.jpg")), Path::new("."));
    }

    #[test]
    fn a_named_file_is_keyed_by_its_file_name() {
        let args = [
            PathBuf::from("./photos/a.jpg"),
            PathBuf::from("/mnt/other/photos/b.jpg"),
        ];
        let inputs = collect(&args, &b""[..], None, false).unwrap();
        let keys: Vec<&str> = inputs.images.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["a.jpg", "b.jpg"]);
        assert_eq!(inputs.images[0].path, Path::new("photos/a.jpg"));
        assert!(!inputs.images[0].video);
    }

    #[test]
    fn videos_are_taken_from_folders_only_when_asked() {
        let dir = std::env::temp_dir().join(format!("smolvlm-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a.jpg", "b.MP4", "c.gif", "d.webm", "notes.md"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let found = |videos: bool| {
            let inputs = collect(std::slice::from_ref(&dir), &b""[..], None, videos).unwrap();
            let listed: Vec<(String, bool)> = inputs
                .images
                .iter()
                .map(|i| (i.key.clone(), i.video))
                .collect();
            (listed, inputs.videos_skipped, inputs.not_images)
        };
        let photos = |names: &[(&str, bool)]| -> Vec<(String, bool)> {
            names.iter().map(|&(n, v)| (n.to_owned(), v)).collect()
        };
        assert_eq!(
            found(false),
            (photos(&[("a.jpg", false), ("c.gif", false)]), 2, 1)
        );
        assert_eq!(
            found(true),
            (
                photos(&[
                    ("a.jpg", false),
                    ("b.MP4", true),
                    ("c.gif", true),
                    ("d.webm", true)
                ]),
                0,
                1
            )
        );
        // Named on the command line, a video file is a video either way.
        let named = collect(&[dir.join("b.MP4")], &b""[..], None, false).unwrap();
        assert!(named.images[0].video);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
