//! Reading video sources: animated GIF/WebP/APNG and still images through the `image` crate,
//! folders of frame images, and any other video file through `ffprobe`/`ffmpeg` (see `ffmpeg.rs`).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use image::codecs::gif::GifDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageError, ImageFormat};
use image::{ImageReader, Limits};
use image::{RgbImage, RgbaImage};

use super::ffmpeg::{extract_video_frames, probe_video, TempFile, INSTALL_FFMPEG};
use super::prompt::{video_pieces, VideoPiece};
use super::sampling::sample_indices;

/// Frame rate given to an animation whose frame delays add up to zero, and to a still image:
/// 0.1 s per frame, what browsers show for GIF delays under 20 ms. Only a zero total triggers
/// it; otherwise fps = frames / (sum of delays), even if some delays are zero.
pub const ZERO_DELAY_FPS: f64 = 10.0;

/// File extensions (compared ASCII case-insensitively) that count as frames in a folder source.
pub const FRAME_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"];

/// Frame count, rate and length of a video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoMeta {
    /// Number of frames.
    pub total_frames: u64,
    /// Frames per second.
    pub fps: f64,
    /// Length in seconds.
    pub duration: f64,
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Position of the frame in the video, from 0.
    pub index: u64,
    /// `index / fps`, as transformers' `VideoMetadata.timestamps` (so uniform, even where an
    /// animation's own frame delays vary).
    pub seconds: f64,
    /// The pixels, any transparency composited onto white.
    pub image: RgbImage,
}

/// Turns each decoded frame into what is kept of it (for the model: its
/// tile), as soon as it is decoded, so that at most one full-size frame is
/// held at a time.
pub(crate) type Shrink<'s> = &'s mut dyn FnMut(RgbImage) -> Result<RgbImage, VideoError>;

/// Where a video comes from.
#[derive(Debug, Clone)]
pub enum VideoSource {
    /// A file: an animated GIF, WebP or PNG (APNG), a still image, or a video that ffmpeg reads.
    File(PathBuf),
    /// The bytes of such a file.
    Bytes(Vec<u8>),
    /// A folder of frame images (see [`FRAME_EXTENSIONS`]), taken in byte order of their file
    /// names, skipping names that start with `.`, shown at `fps` frames per second.
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Frames per second; must be finite and above 0.
        fps: f64,
    },
}

impl VideoSource {
    /// How errors name this source.
    pub(crate) fn origin(&self) -> String {
        match self {
            VideoSource::File(path) => path.display().to_string(),
            VideoSource::Bytes(bytes) => format!("in-memory video ({} bytes)", bytes.len()),
            VideoSource::Folder { dir, .. } => format!("frame folder {}", dir.display()),
        }
    }
}

/// A video's metadata with its sampled frames, as [`load`] returns it.
#[derive(Debug, Clone)]
pub struct SampledVideo {
    /// The whole video's metadata.
    pub meta: VideoMeta,
    /// The sampled frames, in ascending index order.
    pub frames: Vec<Frame>,
}

impl SampledVideo {
    /// The prompt pieces for these frames (see [`video_pieces`]).
    pub fn pieces(&self) -> Vec<VideoPiece> {
        let timestamps: Vec<f64> = self.frames.iter().map(|f| f.seconds).collect();
        video_pieces(&timestamps, self.meta.duration)
    }
}

/// Why a video could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// A file could not be read.
    #[error("cannot read {}: {source}; check that the file exists and is readable", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The data is not a valid image, animation or video.
    #[error(
        "cannot decode {origin}: {message}; check that it is a complete, valid video or image"
    )]
    Decode {
        /// The source.
        origin: String,
        /// What went wrong.
        message: String,
    },
    /// The source holds no frames (or no video stream).
    #[error(
        "{origin} has no video frames; pass a video, animation or image with at least one frame"
    )]
    NoFrames {
        /// The source.
        origin: String,
    },
    /// A folder source could not be listed.
    #[error("cannot list frame folder {}: {source}; check that it exists and is readable", .dir.display())]
    FolderUnreadable {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A folder source holds no frame images.
    #[error("frame folder {} has no frame images (jpg, jpeg, png, webp, bmp, gif, tif, tiff); put the frames there or name another folder", .dir.display())]
    FolderEmpty {
        /// The folder.
        dir: PathBuf,
    },
    /// A frame rate that is not finite and above 0.
    #[error("frame rate {fps} for {origin} is not usable; pass a finite frame rate above 0")]
    BadFps {
        /// The source.
        origin: String,
        /// The rejected frame rate.
        fps: f64,
    },
    /// `ffprobe` or `ffmpeg` is not on PATH.
    #[error("{program} was not found on PATH and is needed to read {origin}; {INSTALL_FFMPEG}")]
    ToolMissing {
        /// `"ffprobe"` or `"ffmpeg"`.
        program: &'static str,
        /// The source.
        origin: String,
    },
    /// `ffprobe` or `ffmpeg` failed.
    #[error("{program} failed on {origin}: {message}; check that the file is a playable video")]
    ToolFailed {
        /// `"ffprobe"` or `"ffmpeg"`.
        program: &'static str,
        /// The source.
        origin: String,
        /// The last line of its error output, or how it could not be run.
        message: String,
    },
    /// A frame index past the end of the video.
    #[error("{origin} has {total} frames, so frame {index} does not exist; ask for indices below {total}")]
    FrameOutOfRange {
        /// The source.
        origin: String,
        /// The index asked for.
        index: u64,
        /// The number of frames.
        total: u64,
    },
    /// In-memory video bytes could not be written to a temporary file for ffmpeg.
    #[error("cannot write temporary file {} for {origin}: {source}; check the temporary directory (TMPDIR) has space and is writable", .path.display())]
    TempFile {
        /// The temporary file.
        path: PathBuf,
        /// The source.
        origin: String,
        /// The I/O error.
        source: io::Error,
    },
    /// Sampling settings that cannot be used (see
    /// [`Video::with_fps`](super::Video::with_fps) and
    /// [`Video::with_max_frames`](super::Video::with_max_frames)).
    #[error("{origin}: cannot sample {what}")]
    BadSampling {
        /// The source.
        origin: String,
        /// What is wrong and what to pass instead.
        what: String,
    },
    /// A conversation's video shows other frames than when it was first
    /// asked about (the file was replaced); the model's memory of it would
    /// no longer match.
    #[error("{origin} changed since the conversation first showed it; start a new conversation (or reset this one) to ask about the new video")]
    Changed {
        /// The source.
        origin: String,
    },
    /// The source is of a kind or variant this module does not read.
    #[error("{origin}: {what}")]
    Unsupported {
        /// The source.
        origin: String,
        /// What is unsupported and what to do instead.
        what: String,
    },
}

impl VideoError {
    /// A stable snake_case name for the kind of error, prefixed `video_`.
    pub fn kind(&self) -> &'static str {
        match self {
            VideoError::Read { .. } => "video_read",
            VideoError::Decode { .. } => "video_decode",
            VideoError::NoFrames { .. } => "video_no_frames",
            VideoError::FolderUnreadable { .. } => "video_folder_unreadable",
            VideoError::FolderEmpty { .. } => "video_folder_empty",
            VideoError::BadFps { .. } => "video_fps",
            VideoError::ToolMissing { .. } => "video_tool_missing",
            VideoError::ToolFailed { .. } => "video_tool_failed",
            VideoError::FrameOutOfRange { .. } => "video_frame_range",
            VideoError::TempFile { .. } => "video_temp_file",
            VideoError::Unsupported { .. } => "video_unsupported",
            VideoError::BadSampling { .. } => "video_sampling",
            VideoError::Changed { .. } => "video_changed",
        }
    }
}

/// Reads the frame count, frame rate and duration of `source`.
///
/// Animations: the frame delays add up to the duration and fps = frames / duration; when they
/// add up to zero (and for still images, which are 1-frame videos) the rate is
/// [`ZERO_DELAY_FPS`]. This decodes every frame once. Folders: one frame per image at the given
/// fps. Other files: `ffprobe`, frames from `nb_frames` (else the counted packets), fps from
/// `avg_frame_rate` (else `r_frame_rate`), and duration = frames / fps, as transformers' PyAV
/// and decord backends compute it.
pub fn probe(source: &VideoSource) -> Result<VideoMeta, VideoError> {
    let path_var = std::env::var_os("PATH");
    let opened = Opened::open(source)?;
    opened.probe(path_var.as_deref())
}

/// Decodes the frames at `indices` (any order, repeats allowed), returning them in ascending
/// index order, one per distinct index. Only these frames are kept in memory: animations are
/// decoded in order (all of them, to learn the frame rate) and folders read only the chosen
/// files; other videos go through one `ffmpeg` run per 2000 indices, after an `ffprobe` run
/// for the frame rate. A folder's frames are turned upright by their EXIF orientation;
/// ffmpeg applies a video's rotation.
pub fn read_frames(source: &VideoSource, indices: &[u64]) -> Result<Vec<Frame>, VideoError> {
    read_frames_shrunk(source, indices, &mut Ok)
}

/// [`read_frames`], each frame passed through `shrink` as it is decoded.
pub(crate) fn read_frames_shrunk(
    source: &VideoSource,
    indices: &[u64],
    shrink: Shrink<'_>,
) -> Result<Vec<Frame>, VideoError> {
    let path_var = std::env::var_os("PATH");
    let opened = Opened::open(source)?;
    let mut wanted = indices.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    opened.frames(&wanted, None, path_var.as_deref(), shrink)
}

/// Probes `source`, samples it with [`sample_indices`] at `fps` frames per second and at most
/// `max_frames` frames (SmolVLM2 uses [`DEFAULT_FPS`](super::DEFAULT_FPS) and
/// [`DEFAULT_MAX_FRAMES`](super::DEFAULT_MAX_FRAMES)), and decodes those frames.
pub fn load(source: &VideoSource, fps: f64, max_frames: usize) -> Result<SampledVideo, VideoError> {
    load_with_path(source, fps, max_frames, std::env::var_os("PATH").as_deref())
}

/// [`load`] with the PATH value to search for ffprobe and ffmpeg.
fn load_with_path(
    source: &VideoSource,
    fps: f64,
    max_frames: usize,
    path_var: Option<&OsStr>,
) -> Result<SampledVideo, VideoError> {
    let opened = Opened::open(source)?;
    let meta = opened.probe(path_var)?;
    let indices = sample_indices(meta.total_frames, meta.fps, meta.duration, fps, max_frames);
    let frames = opened.frames(&indices, Some(meta), path_var, &mut Ok)?;
    Ok(SampledVideo { meta, frames })
}

/// Image data, in memory or in a file.
enum ImageData<'a> {
    Memory(&'a [u8]),
    File(&'a Path),
}

/// A source made ready to read, with the name errors give it.
struct Opened<'a> {
    origin: String,
    kind: Kind<'a>,
}

/// How an opened source is read.
enum Kind<'a> {
    /// A still or animated image that the image crate reads.
    Image(ImageData<'a>, ImageFormat),
    /// A video file for ffmpeg, with the temporary file that holds it if it came as bytes
    /// (removed when this is dropped).
    Video {
        file: PathBuf,
        _temp: Option<TempFile>,
    },
    /// The sorted frame files of a folder, and the frame rate.
    Folder(Vec<PathBuf>, f64),
}

impl<'a> Opened<'a> {
    /// Checks `source` and finds how to read it (by content, not by file name).
    fn open(source: &'a VideoSource) -> Result<Self, VideoError> {
        let origin = source.origin();
        let kind = match source {
            VideoSource::File(path) => {
                let read_err = |source| VideoError::Read {
                    path: path.clone(),
                    source,
                };
                if fs::metadata(path).map_err(read_err)?.is_dir() {
                    let what = "this is a folder; read it as VideoSource::Folder with a frame rate";
                    return Err(VideoError::Unsupported {
                        origin,
                        what: what.to_string(),
                    });
                }
                let mut head = Vec::with_capacity(64);
                File::open(path)
                    .and_then(|f| f.take(64).read_to_end(&mut head))
                    .map_err(read_err)?;
                match image_format(&head) {
                    Some(format) => Kind::Image(ImageData::File(path), format),
                    None => Kind::Video {
                        file: path.clone(),
                        _temp: None,
                    },
                }
            }
            VideoSource::Bytes(bytes) => match image_format(bytes) {
                Some(format) => Kind::Image(ImageData::Memory(bytes), format),
                None => {
                    let temp = TempFile::create(bytes, &origin)?;
                    Kind::Video {
                        file: temp.0.clone(),
                        _temp: Some(temp),
                    }
                }
            },
            VideoSource::Folder { dir, fps } => {
                if !(fps.is_finite() && *fps > 0.0) {
                    return Err(VideoError::BadFps { origin, fps: *fps });
                }
                Kind::Folder(list_frame_files(dir)?, *fps)
            }
        };
        Ok(Opened { origin, kind })
    }

    /// The source's metadata (see [`probe`]).
    fn probe(&self, path_var: Option<&OsStr>) -> Result<VideoMeta, VideoError> {
        let origin = &self.origin;
        match &self.kind {
            Kind::Image(data, format) => {
                scan_image(data, *format, origin, &[], &mut Ok)?.meta(origin)
            }
            Kind::Video { file, .. } => probe_video(file, origin, path_var),
            Kind::Folder(files, fps) => Ok(VideoMeta {
                total_frames: files.len() as u64,
                fps: *fps,
                duration: files.len() as f64 / fps,
            }),
        }
    }

    /// Frames at `wanted` (sorted, distinct); `meta` saves a second probe of a video file.
    fn frames(
        &self,
        wanted: &[u64],
        meta: Option<VideoMeta>,
        path_var: Option<&OsStr>,
        shrink: Shrink<'_>,
    ) -> Result<Vec<Frame>, VideoError> {
        let origin = &self.origin;
        match &self.kind {
            Kind::Image(data, format) => {
                let scan = scan_image(data, *format, origin, wanted, shrink)?;
                let meta = scan.meta(origin)?;
                check_range(wanted, meta.total_frames, origin)?;
                let kept = scan.kept.into_iter();
                Ok(kept.map(|(i, image)| frame(i, meta.fps, image)).collect())
            }
            Kind::Video { file, .. } => {
                let meta = match meta {
                    Some(meta) => meta,
                    None => probe_video(file, origin, path_var)?,
                };
                check_range(wanted, meta.total_frames, origin)?;
                extract_video_frames(file, origin, wanted, meta.fps, path_var, shrink)
            }
            Kind::Folder(files, fps) => {
                check_range(wanted, files.len() as u64, origin)?;
                let mut frames = Vec::with_capacity(wanted.len());
                // Every index is in range after `check_range`.
                for (index, path) in wanted
                    .iter()
                    .filter_map(|&i| Some((i, files.get(i as usize)?)))
                {
                    frames.push(frame(index, *fps, shrink(read_still_file(path)?)?));
                }
                Ok(frames)
            }
        }
    }
}

/// A [`Frame`] at `index` of a video at `fps`.
pub(super) fn frame(index: u64, fps: f64, image: RgbImage) -> Frame {
    Frame {
        index,
        seconds: index as f64 / fps,
        image,
    }
}

/// Fails on the first index of `wanted` (sorted) that is not below `total`.
fn check_range(wanted: &[u64], total: u64, origin: &str) -> Result<(), VideoError> {
    match wanted.last() {
        Some(&index) if index >= total => Err(VideoError::FrameOutOfRange {
            origin: origin.to_string(),
            index,
            total,
        }),
        _ => Ok(()),
    }
}

/// The image format of data starting with `head`, if the image crate can read it.
fn image_format(head: &[u8]) -> Option<ImageFormat> {
    image::guess_format(head)
        .ok()
        .filter(|format| format.reading_enabled())
}

/// An image crate error as a [`VideoError`] naming `origin`.
fn image_error(origin: &str, err: ImageError) -> VideoError {
    match err {
        ImageError::Unsupported(e) => VideoError::Unsupported {
            origin: origin.to_string(),
            what: format!("{e}; convert it to an 8-bit GIF, PNG or a video file"),
        },
        e => VideoError::Decode {
            origin: origin.to_string(),
            message: e.to_string(),
        },
    }
}

/// The frames of an image or animation: count, summed delays and the wanted frames' pixels.
struct Scan {
    total: u64,
    delay_secs: f64,
    kept: Vec<(u64, RgbImage)>,
}

impl Scan {
    /// Metadata from the frame count and summed delays (see [`ZERO_DELAY_FPS`]).
    fn meta(&self, origin: &str) -> Result<VideoMeta, VideoError> {
        if self.total == 0 {
            return Err(VideoError::NoFrames {
                origin: origin.to_string(),
            });
        }
        let frames = self.total as f64;
        Ok(if self.delay_secs.is_finite() && self.delay_secs > 0.0 {
            VideoMeta {
                total_frames: self.total,
                fps: frames / self.delay_secs,
                duration: self.delay_secs,
            }
        } else {
            VideoMeta {
                total_frames: self.total,
                fps: ZERO_DELAY_FPS,
                duration: frames / ZERO_DELAY_FPS,
            }
        })
    }
}

/// Scans the frames of `data` (see [`scan_reader`]).
fn scan_image(
    data: &ImageData<'_>,
    format: ImageFormat,
    origin: &str,
    wanted: &[u64],
    shrink: Shrink<'_>,
) -> Result<Scan, VideoError> {
    match data {
        ImageData::Memory(bytes) => {
            scan_reader(Cursor::new(*bytes), format, origin, wanted, shrink)
        }
        ImageData::File(path) => {
            let file = File::open(path).map_err(|source| VideoError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            scan_reader(BufReader::new(file), format, origin, wanted, shrink)
        }
    }
}

/// Decodes every frame of a GIF, APNG or WebP animation (or the one frame of a still image),
/// adding up the delays and keeping the frames at `wanted` (sorted), each
/// passed through `shrink`. The image crate's default limits (512 MiB per
/// allocation) guard against a canvas too large to decode.
fn scan_reader<'r, R: BufRead + Seek + 'r>(
    reader: R,
    format: ImageFormat,
    origin: &str,
    wanted: &[u64],
    shrink: Shrink<'_>,
) -> Result<Scan, VideoError> {
    let err = |e| image_error(origin, e);
    let still = |image: DynamicImage, shrink: Shrink<'_>| -> Result<Scan, VideoError> {
        let kept = if wanted.contains(&0) {
            vec![(0, shrink(flatten(image))?)]
        } else {
            Vec::new()
        };
        Ok(Scan {
            total: 1,
            delay_secs: 0.0,
            kept,
        })
    };
    let frames = match format {
        ImageFormat::Gif => {
            let mut decoder = GifDecoder::new(reader).map_err(err)?;
            decoder.set_limits(Limits::default()).map_err(err)?;
            decoder.into_frames()
        }
        ImageFormat::Png => {
            let mut decoder = PngDecoder::new(reader).map_err(err)?;
            decoder.set_limits(Limits::default()).map_err(err)?;
            if !decoder.is_apng().map_err(err)? {
                return still(DynamicImage::from_decoder(decoder).map_err(err)?, shrink);
            }
            decoder.apng().map_err(err)?.into_frames()
        }
        ImageFormat::WebP => {
            let mut decoder = WebPDecoder::new(reader).map_err(err)?;
            decoder.set_limits(Limits::default()).map_err(err)?;
            if !decoder.has_animation() {
                return still(DynamicImage::from_decoder(decoder).map_err(err)?, shrink);
            }
            decoder.into_frames()
        }
        other => {
            let image = ImageReader::with_format(reader, other).decode();
            return still(image.map_err(err)?, shrink);
        }
    };
    let mut scan = Scan {
        total: 0,
        delay_secs: 0.0,
        kept: Vec::new(),
    };
    for item in frames {
        let item = item.map_err(err)?;
        let (numer, denom) = item.delay().numer_denom_ms();
        if denom != 0 {
            scan.delay_secs += f64::from(numer) / f64::from(denom) / 1000.0;
        }
        if wanted.binary_search(&scan.total).is_ok() {
            scan.kept
                .push((scan.total, shrink(on_white(item.buffer()))?));
        }
        scan.total += 1;
    }
    Ok(scan)
}

/// RGB pixels of `image`, any transparency composited onto white.
fn flatten(image: DynamicImage) -> RgbImage {
    if image.color().has_alpha() {
        on_white(&image.to_rgba8())
    } else {
        image.to_rgb8()
    }
}

/// `rgba` composited onto a white background.
fn on_white(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let a = u32::from(a);
        let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        image::Rgb([mix(r), mix(g), mix(b)])
    })
}

/// The first frame of the image file at `path`, turned upright by its EXIF
/// orientation (a phone's frames, say) and flattened onto white.
fn read_still_file(path: &Path) -> Result<RgbImage, VideoError> {
    let origin = path.display().to_string();
    let reader = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .map_err(|source| VideoError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let err = |e| image_error(&origin, e);
    let mut decoder = reader.into_decoder().map_err(err)?;
    let orientation = decoder.orientation().map_err(err)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(err)?;
    image.apply_orientation(orientation);
    Ok(flatten(image))
}

/// The frame images of `dir`, sorted by the bytes of their file names.
fn list_frame_files(dir: &Path) -> Result<Vec<PathBuf>, VideoError> {
    let unreadable = |source| VideoError::FolderUnreadable {
        dir: dir.to_path_buf(),
        source,
    };
    let mut named = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        let is_frame = Path::new(&name)
            .extension()
            .and_then(OsStr::to_str)
            .is_some_and(|ext| FRAME_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)));
        let path = entry.path();
        if is_frame && !name.as_encoded_bytes().starts_with(b".") && path.is_file() {
            named.push((name, path));
        }
    }
    if named.is_empty() {
        return Err(VideoError::FolderEmpty {
            dir: dir.to_path_buf(),
        });
    }
    named.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(named.into_iter().map(|(_, path)| path).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use image::Rgba;

    const COLOURS: [[u8; 3]; 6] = [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [0, 255, 255],
        [255, 0, 255],
    ];

    fn solid(c: [u8; 3], alpha: u8) -> RgbaImage {
        RgbaImage::from_pixel(8, 6, Rgba([c[0], c[1], c[2], alpha]))
    }

    fn colour(frame: &Frame) -> [u8; 3] {
        frame.image.get_pixel(3, 2).0
    }

    fn gif(n: usize, delay_ms: u32) -> Vec<u8> {
        let frames = (0..n).map(|i| solid(COLOURS[i % 6], 255));
        smolvlm_testkit::images::animated_gif(frames, delay_ms).unwrap()
    }

    fn encode(image: &RgbaImage, format: ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), format)
            .unwrap();
        bytes
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFF_u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }

    /// A hand-built APNG: each frame's IDAT data from the image crate's PNG encoder,
    /// rewrapped in fcTL/fdAT chunks, every frame shown for `num/den` seconds.
    fn apng(frames: &[RgbaImage], num: u16, den: u16) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut seq = 0_u32;
        for (i, image) in frames.iter().enumerate() {
            let png = encode(image, ImageFormat::Png);
            let mut chunks = Vec::new();
            let mut at = 8;
            while at < png.len() {
                let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
                chunks.push((
                    png[at + 4..at + 8].to_vec(),
                    png[at + 8..at + 8 + len].to_vec(),
                ));
                at += 12 + len;
            }
            if i == 0 {
                chunk(&mut out, b"IHDR", &chunks[0].1);
                let count = (frames.len() as u32).to_be_bytes();
                chunk(&mut out, b"acTL", &[count, [0; 4]].concat());
            }
            let mut fctl = seq.to_be_bytes().to_vec();
            seq += 1;
            for v in [image.width(), image.height(), 0, 0] {
                fctl.extend(v.to_be_bytes());
            }
            fctl.extend(num.to_be_bytes());
            fctl.extend(den.to_be_bytes());
            fctl.extend([0, 0]); // dispose none, blend source
            chunk(&mut out, b"fcTL", &fctl);
            for (_, data) in chunks.iter().filter(|(kind, _)| kind == b"IDAT") {
                if i == 0 {
                    chunk(&mut out, b"IDAT", data);
                } else {
                    let body = [seq.to_be_bytes().as_slice(), data].concat();
                    seq += 1;
                    chunk(&mut out, b"fdAT", &body);
                }
            }
        }
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("videokit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn gif_timing_and_chosen_frames() {
        let bytes = gif(6, 200);
        let dir = scratch("gif");
        let file = dir.join("anim.bin"); // found by content, not by extension
        fs::write(&file, &bytes).unwrap();
        for source in [VideoSource::Bytes(bytes), VideoSource::File(file)] {
            let meta = probe(&source).unwrap();
            assert_eq!(meta.total_frames, 6);
            assert!(
                close(meta.duration, 1.2) && close(meta.fps, 5.0),
                "{meta:?}"
            );
            let frames = read_frames(&source, &[4, 1, 4]).unwrap();
            assert_eq!(frames.iter().map(|f| f.index).collect::<Vec<_>>(), [1, 4]);
            assert_eq!(colour(&frames[0]), COLOURS[1]);
            assert_eq!(colour(&frames[1]), COLOURS[4]);
            assert!(close(frames[1].seconds, 0.8));
            assert_eq!(frames[0].image.dimensions(), (8, 6));
        }
        let err = read_frames(&VideoSource::Bytes(gif(6, 200)), &[6]).unwrap_err();
        assert_eq!(err.kind(), "video_frame_range");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn gif_without_delays_plays_at_ten_fps() {
        let meta = probe(&VideoSource::Bytes(gif(5, 0))).unwrap();
        assert_eq!((meta.total_frames, meta.fps), (5, ZERO_DELAY_FPS));
        assert!(close(meta.duration, 0.5));
    }

    #[test]
    fn apng_timing_alpha_and_frames() {
        let frames = [
            solid(COLOURS[0], 255),
            solid(COLOURS[0], 128),
            solid(COLOURS[2], 255),
        ];
        let source = VideoSource::Bytes(apng(&frames, 1, 4));
        let meta = probe(&source).unwrap();
        assert_eq!(meta.total_frames, 3);
        assert!(
            close(meta.duration, 0.75) && close(meta.fps, 4.0),
            "{meta:?}"
        );
        let got = read_frames(&source, &[1, 2]).unwrap();
        assert_eq!(colour(&got[0]), [255, 127, 127]); // half-transparent red on white
        assert_eq!(colour(&got[1]), COLOURS[2]);
        assert!(close(got[1].seconds, 0.5));
    }

    #[test]
    fn still_images_are_one_frame_videos() {
        // The image crate cannot encode animated WebP, so WebP is tested as a still image.
        let webp = encode(&solid(COLOURS[3], 255), ImageFormat::WebP);
        let clear_png = encode(&solid(COLOURS[0], 0), ImageFormat::Png);
        for (bytes, want) in [(webp, COLOURS[3]), (clear_png, [255, 255, 255])] {
            let source = VideoSource::Bytes(bytes);
            let meta = probe(&source).unwrap();
            assert_eq!((meta.total_frames, meta.fps), (1, ZERO_DELAY_FPS));
            let frames = read_frames(&source, &[0]).unwrap();
            assert_eq!(colour(&frames[0]), want);
        }
    }

    #[test]
    fn load_samples_and_builds_pieces() {
        let video = load(&VideoSource::Bytes(gif(12, 500)), 1.0, 64).unwrap();
        assert!(close(video.meta.duration, 6.0));
        let indices: Vec<u64> = video.frames.iter().map(|f| f.index).collect();
        assert_eq!(indices, [0, 2, 4, 6, 8, 11]);
        assert_eq!(colour(&video.frames[5]), COLOURS[5]);
        let text = super::super::render_video_text(&video.pieces(), "<image>");
        assert!(text.starts_with(
            "You are provided the following series of six frames from a 0:00:06 [H:MM:SS] video.\n\
             \nFrame from 00:00:<fake_token_around_image><global-img><image><fake_token_around_image>"
        ));
        assert!(text.ends_with("\nFrame from 00:05:<fake_token_around_image><global-img><image><fake_token_around_image>\n\n"));
    }

    #[test]
    fn folder_sorted_by_name_bytes_skipping_hidden_and_other_files() {
        let dir = scratch("folder");
        let files = [
            ("b.png", 0),
            ("a.PNG", 1),
            ("10.bmp", 2),
            ("2.png", 3),
            (".hidden.png", 4),
            ("Z.png", 5),
        ];
        for (name, c) in files {
            let format = ImageFormat::from_path(name).unwrap();
            let image = DynamicImage::ImageRgba8(solid(COLOURS[c], 255)).to_rgb8();
            image.save_with_format(dir.join(name), format).unwrap();
        }
        fs::write(dir.join("notes.txt"), "not a frame").unwrap();
        fs::create_dir(dir.join("sub.png")).unwrap();
        let source = VideoSource::Folder {
            dir: dir.clone(),
            fps: 2.0,
        };
        let meta = probe(&source).unwrap();
        assert_eq!(meta.total_frames, 5);
        assert!(close(meta.duration, 2.5));
        let frames = read_frames(&source, &[0, 1, 2, 3, 4]).unwrap();
        // 10.bmp, 2.png, Z.png, a.PNG, b.png
        let got: Vec<[u8; 3]> = frames.iter().map(colour).collect();
        assert_eq!(
            got,
            [COLOURS[2], COLOURS[3], COLOURS[5], COLOURS[1], COLOURS[0]]
        );
        assert!(close(frames[3].seconds, 1.5));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn folder_frames_are_turned_upright_by_their_exif_orientation() {
        let dir = scratch("folder-exif");
        // 40 × 20, left half red: rotated 90° clockwise (orientation 6) it
        // is 20 × 40 with the red half on top.
        let wide = RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([250, 0, 0])
            } else {
                image::Rgb([0, 0, 250])
            }
        });
        let mut jpeg = Vec::new();
        wide.write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        fs::write(
            dir.join("0.jpg"),
            smolvlm_testkit::images::with_exif_orientation(&jpeg, 6),
        )
        .unwrap();
        let source = VideoSource::Folder {
            dir: dir.clone(),
            fps: 1.0,
        };
        let frames = read_frames(&source, &[0]).unwrap();
        let upright = &frames[0].image;
        assert_eq!(upright.dimensions(), (20, 40));
        assert!(upright.get_pixel(10, 5).0[0] > 200, "red on top");
        assert!(upright.get_pixel(10, 35).0[2] > 200, "blue below");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn folder_errors() {
        let dir = scratch("folder-errors");
        for fps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = probe(&VideoSource::Folder {
                dir: dir.clone(),
                fps,
            })
            .unwrap_err();
            assert_eq!(err.kind(), "video_fps");
            assert!(
                err.to_string().contains("finite frame rate above 0"),
                "{err}"
            );
        }
        let empty = probe(&VideoSource::Folder {
            dir: dir.clone(),
            fps: 1.0,
        });
        assert_eq!(empty.unwrap_err().kind(), "video_folder_empty");
        let missing = probe(&VideoSource::Folder {
            dir: dir.join("nope"),
            fps: 1.0,
        });
        assert_eq!(missing.unwrap_err().kind(), "video_folder_unreadable");
        let as_file = probe(&VideoSource::File(dir.clone())).unwrap_err();
        assert_eq!(as_file.kind(), "video_unsupported");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn read_and_decode_errors() {
        let err = probe(&VideoSource::File(PathBuf::from("/no/such/clip.gif"))).unwrap_err();
        assert_eq!(err.kind(), "video_read");
        assert!(err.to_string().contains("/no/such/clip.gif"), "{err}");
        let mut broken = gif(3, 100);
        broken.truncate(40);
        let err = probe(&VideoSource::Bytes(broken)).unwrap_err();
        assert_eq!(err.kind(), "video_decode");
    }

    #[test]
    fn missing_ffmpeg_is_a_typed_error() {
        let empty_dir = scratch("no-tools");
        let dir = scratch("fake-mp4");
        let clip = dir.join("clip.mp4");
        let fake_mp4 = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
        fs::write(&clip, &fake_mp4).unwrap();
        let path_vars = [Some(empty_dir.as_os_str()), Some(OsStr::new("")), None];
        for source in [VideoSource::File(clip), VideoSource::Bytes(fake_mp4)] {
            for path_var in path_vars {
                let err = load_with_path(&source, 1.0, 64, path_var).unwrap_err();
                assert_eq!(err.kind(), "video_tool_missing");
                let text = err.to_string();
                assert!(text.starts_with("ffprobe was not found on PATH"), "{text}");
                assert!(text.contains("apt-get install ffmpeg"), "{text}");
                assert!(
                    text.contains("clip.mp4") || text.contains("in-memory video"),
                    "{text}"
                );
            }
        }
        fs::remove_dir_all(dir).unwrap();
        fs::remove_dir_all(empty_dir).unwrap();
    }
}
