//! Videos in a prompt: which frames the model sees (sampled as SmolVLM2's
//! processor samples them, then cut to fit the context), the text around
//! them, and their pixels, each frame one overview image.

use std::sync::Arc;

use image::RgbImage;

use super::ledger::ImageKey;
use crate::error::{Error, Result};
use crate::video::{Video, VideoError, VideoMeta, VideoPiece};

/// What a video of a prompt shows the model: its frames (their indices in
/// the video and their times), and each frame's key once its pixels were
/// seen. A conversation keeps it, so a follow-up shows the same frames
/// without probing or decoding the video again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VideoPlan {
    pub meta: VideoMeta,
    pub indices: Vec<u64>,
    /// How many frames the processor's own rule chose, before any cut to
    /// fit the context.
    pub sampled: usize,
    pub keys: Vec<ImageKey>,
}

impl VideoPlan {
    /// Samples `video` by the processor's rule, at most `max_frames`.
    pub(crate) fn sample(video: &Video, meta: VideoMeta, max_frames: usize) -> Self {
        let indices = video.indices(&meta, max_frames);
        Self {
            sampled: indices.len(),
            meta,
            indices,
            keys: Vec::new(),
        }
    }

    /// The time of each frame, in seconds.
    pub(crate) fn seconds(&self) -> Vec<f64> {
        self.indices
            .iter()
            .map(|&i| i as f64 / self.meta.fps)
            .collect()
    }

    /// The text around the frames and where each frame goes.
    pub(crate) fn pieces(&self) -> Vec<VideoPiece> {
        crate::video::video_pieces(&self.seconds(), self.meta.duration)
    }

    pub(crate) fn frames(&self) -> usize {
        self.indices.len()
    }
}

/// One video of a prompt as the session works with it: its plan, and its
/// frames' pixels (each `tile × tile`) once read.
#[derive(Debug, Default)]
pub(crate) struct PlannedVideo {
    pub plan: Option<Arc<VideoPlan>>,
    pub frames: Option<Vec<RgbImage>>,
}

impl PlannedVideo {
    /// Reads the plan's frames, resized for the model, and checks them
    /// against the keys seen before (a conversation's video read again);
    /// records the keys the first time.
    pub(crate) fn read(&mut self, video: &Video, tile: u32) -> Result<()> {
        if self.frames.is_some() {
            return Ok(());
        }
        let Some(plan) = self.plan.as_mut() else {
            return Err(Error::Internal(
                "a video was read before it was planned".to_owned(),
            ));
        };
        let frames = video.read(&plan.indices, tile)?;
        let keys: Vec<ImageKey> = frames.iter().map(ImageKey::of_rgb).collect();
        if plan.keys.is_empty() {
            Arc::make_mut(plan).keys = keys;
        } else if plan.keys != keys {
            return Err(VideoError::Changed {
                origin: video.origin(),
            }
            .into());
        }
        self.frames = Some(frames);
        Ok(())
    }
}
