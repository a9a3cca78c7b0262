//! Video input for SmolVLM2: which frames of a video the model sees, and
//! the text around them, as transformers' `SmolVLMVideoProcessor` and
//! `SmolVLMProcessor` build them.
//!
//! A [`Video`] names the source (a file, its bytes, or a folder of frames)
//! and how to sample it; [`Session::ask_video`](crate::Session::ask_video)
//! and [`Message::video`](crate::Message::video) take one. What the model
//! sees, like the reference processor:
//!
//! - frames sampled at [`DEFAULT_FPS`] (one per second), at most
//!   [`DEFAULT_MAX_FRAMES`] (64), spread evenly over the video and skipping
//!   its first and last second when it is long ([`sample_indices`]);
//!   fewer when the prompt would not fit the context (the session cuts the
//!   count and says so in [`VideoReport`](crate::VideoReport));
//! - each frame resized (Lanczos3, stretched) to one square tile — a video
//!   frame is never split — and encoded as one overview image (64 tokens on
//!   SmolVLM2);
//! - the text "You are provided the following series of sixty-four frames
//!   from a 0:01:10 \[H:MM:SS\] video." and before each frame "Frame from
//!   MM:SS:" ([`video_pieces`]), the frame count in English words as
//!   `num2words` writes them.
//!
//! Sources: animated GIF, WebP and PNG (APNG) and still images are read in
//! process; a folder of frames is read in file-name order at the frame rate
//! you give; any other file (MP4, WebM, MOV, MKV, AVI…) is probed and
//! decoded by the `ffprobe` and `ffmpeg` programs, which must be on `PATH`
//! (without them: [`VideoError::ToolMissing`], which says what to install).
//! Audio is ignored, as SmolVLM2 ignores it.
//!
//! ```no_run
//! # fn main() -> smolvlm::Result<()> {
//! # let model: smolvlm::Model = unimplemented!();
//! use smolvlm::video::Video;
//! let mut session = model.session()?;
//! let video = Video::file("clip.mp4").with_max_frames(16);
//! let caption = session.ask_video(&video, "What happens in this video?", &Default::default())?;
//! println!("{} ({} frames)", caption.text, caption.frames);
//! # Ok(()) }
//! ```
//!
//! Not supported: audio tracks (ignored); a variable frame rate beyond what
//! `ffprobe` reports (frames are picked by index at the average rate it
//! gives, so a clip whose rate changes gets timestamps off by the drift).
//! A frame's transparency is composited on white, as an image's is; the
//! session's [`ImageOptions`](crate::image::ImageOptions) (crop, stretch,
//! tile budget) do not apply to frames, which are always one square tile.

mod clock;
mod ffmpeg;
mod prompt;
mod sampling;
mod source;
mod words;

use std::path::PathBuf;

use image::RgbImage;

pub use self::clock::{duration_text, frame_timestamp};
pub use self::prompt::{
    render_video_text, video_intro, video_pieces, VideoPiece, FAKE_TOKEN_AROUND_IMAGE,
    FRAME_TIMESTAMP_MESSAGE, GLOBAL_IMAGE_TOKEN, MEDIA_OUTTRO, VIDEO_INTRO,
};
pub use self::sampling::{sample_indices, DEFAULT_FPS, DEFAULT_MAX_FRAMES};
pub use self::source::{
    load, probe, read_frames, Frame, SampledVideo, VideoError, VideoMeta, VideoSource,
    FRAME_EXTENSIONS, ZERO_DELAY_FPS,
};
pub use self::words::number_words;

use crate::image::resize::{Crop, Resizer};

/// A video to show the model, and how to sample its frames.
///
/// Cheap to build: nothing is read until a session asks about it. The
/// sampling defaults are SmolVLM2's ([`DEFAULT_FPS`],
/// [`DEFAULT_MAX_FRAMES`]).
///
/// ```
/// use smolvlm::video::Video;
/// let video = Video::file("clip.gif").with_fps(2.0).with_max_frames(8);
/// assert_eq!((video.fps(), video.max_frames()), (2.0, 8));
/// ```
#[derive(Debug, Clone)]
pub struct Video {
    source: VideoSource,
    fps: f64,
    max_frames: usize,
}

impl Video {
    /// The video in a file: an animated GIF, WebP or APNG, a still image,
    /// or anything `ffmpeg` plays. The kind is found from the content, not
    /// the file name.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::from_source(VideoSource::File(path.into()))
    }

    /// A video file's bytes (what [`file`](Self::file) reads). Bytes that
    /// need `ffmpeg` are written to a temporary file for it, removed after.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Self::from_source(VideoSource::Bytes(bytes.into()))
    }

    /// A folder of frame images ([`FRAME_EXTENSIONS`]), in byte order of
    /// their file names (`frame_0001.png`, `frame_0002.png`, …), shown at
    /// `fps` frames per second. Hidden files and other files are skipped.
    pub fn frames_in(dir: impl Into<PathBuf>, fps: f64) -> Self {
        Self::from_source(VideoSource::Folder {
            dir: dir.into(),
            fps,
        })
    }

    /// The video from `source`.
    pub fn from_source(source: VideoSource) -> Self {
        Self {
            source,
            fps: DEFAULT_FPS,
            max_frames: DEFAULT_MAX_FRAMES,
        }
    }

    /// Samples this many frames per second of video (default 1). Must be
    /// finite and above 0, or asking about the video fails with
    /// [`VideoError::BadSampling`].
    pub fn with_fps(mut self, fps: f64) -> Self {
        self.fps = fps;
        self
    }

    /// Samples at most this many frames (default 64); the session samples
    /// fewer when they would not fit the context. Must be at least 1, or
    /// asking about the video fails with [`VideoError::BadSampling`].
    pub fn with_max_frames(mut self, max_frames: usize) -> Self {
        self.max_frames = max_frames;
        self
    }

    /// Frames sampled per second of video.
    pub fn fps(&self) -> f64 {
        self.fps
    }

    /// The most frames sampled.
    pub fn max_frames(&self) -> usize {
        self.max_frames
    }

    /// Where the video comes from.
    pub fn source(&self) -> &VideoSource {
        &self.source
    }

    /// How errors name this video: its path, or its size in bytes.
    pub fn origin(&self) -> String {
        self.source.origin()
    }

    /// The video's frame count, frame rate and length (see [`probe`]), after
    /// checking the sampling settings.
    ///
    /// # Errors
    ///
    /// [`VideoError::BadSampling`] for an unusable [`with_fps`](Self::with_fps)
    /// or [`with_max_frames`](Self::with_max_frames); otherwise as [`probe`].
    pub fn probe(&self) -> Result<VideoMeta, VideoError> {
        if !(self.fps.is_finite() && self.fps > 0.0) {
            return Err(VideoError::BadSampling {
                origin: self.origin(),
                what: format!("sampling rate {} fps; pass a finite rate above 0", self.fps),
            });
        }
        if self.max_frames == 0 {
            return Err(VideoError::BadSampling {
                origin: self.origin(),
                what: "at most 0 frames; ask for at least 1".to_owned(),
            });
        }
        probe(&self.source)
    }

    /// The frames SmolVLM2's sampling rule picks from a video described by
    /// `meta` (from [`probe`](Self::probe)), at this video's rate and frame
    /// limit, before any cut to fit a context: what a caption would show
    /// with room to spare.
    ///
    /// ```
    /// use smolvlm::video::{Video, VideoMeta};
    /// let meta = VideoMeta { total_frames: 300, fps: 30.0, duration: 10.0 };
    /// assert_eq!(Video::file("clip.mp4").sampled_frames(&meta).len(), 10);
    /// ```
    #[must_use]
    pub fn sampled_frames(&self, meta: &VideoMeta) -> Vec<u64> {
        self.indices(meta, self.max_frames)
    }

    /// The frames the processor's rule picks from a video described by
    /// `meta`, at most `max_frames` of them.
    pub(crate) fn indices(&self, meta: &VideoMeta, max_frames: usize) -> Vec<u64> {
        sample_indices(
            meta.total_frames,
            meta.fps,
            meta.duration,
            self.fps,
            max_frames,
        )
    }

    /// The frames at `indices` (ascending, distinct), each resized to
    /// `tile × tile` as it is decoded.
    pub(crate) fn read(&self, indices: &[u64], tile: u32) -> Result<Vec<RgbImage>, VideoError> {
        let mut resizer = Resizer::default();
        let origin = || self.origin();
        let mut shrink = |frame: RgbImage| {
            let crop = Crop::whole(&frame);
            resizer
                .resize(
                    &frame,
                    crop,
                    image::metadata::Orientation::NoTransforms,
                    &[(tile, tile)],
                )
                .map_err(|e| VideoError::Decode {
                    origin: origin(),
                    message: e.to_string(),
                })
        };
        let frames = source::read_frames_shrunk(&self.source, indices, &mut shrink)?;
        Ok(frames.into_iter().map(|f| f.image).collect())
    }
}
