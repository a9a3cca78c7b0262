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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::time::Instant;

    use image::{Rgba, RgbaImage};

    use super::*;
    use crate::prompt::render_media;
    use crate::session::ledger::Item;
    use crate::session::{Media, Timings};
    use crate::{GenerationOptions, LoadOptions, Model, ModelFiles, Prompt, Session};

    fn model() -> Model {
        let pair = smolvlm_testkit::tiny_model();
        let files = ModelFiles::new(pair.model, pair.mmproj);
        Model::load(&files, &LoadOptions::default().with_threads(1)).unwrap()
    }

    /// A GIF of `n` frames, each shown `delay_ms`, each another colour.
    fn gif(n: u32, delay_ms: u32) -> Vec<u8> {
        gif_shifted(n, delay_ms, 0)
    }

    /// [`gif`] with its colours shifted by `shift` frames.
    fn gif_shifted(n: u32, delay_ms: u32, shift: u32) -> Vec<u8> {
        let frames = (0..n).map(|i| {
            let c = ((i + shift) * 40 % 256) as u8;
            RgbaImage::from_pixel(40, 30, Rgba([c, 255 - c, 90, 255]))
        });
        smolvlm_testkit::images::animated_gif(frames, delay_ms).unwrap()
    }

    /// The prompt's tokens as the session lays them out, each frame as the
    /// model's image tokens (`<image>` repeated, as the reference processor
    /// writes them).
    fn laid_out(session: &mut Session, video: &Video, prompt: &str) -> (Vec<i32>, Vec<u64>) {
        let segments = render_media(
            session.model.chat_template(),
            &Prompt::from(prompt),
            &[true],
        )
        .unwrap();
        let media = [Media::video(video)];
        let options = GenerationOptions::default();
        let watchdog = options.watchdog(Instant::now());
        let mut timings = Timings::default();
        let planned = session
            .prepare(&segments, &media, &watchdog, &mut timings)
            .unwrap();
        let items = session.tokenize_prompt(&segments, &planned).unwrap();
        let vocab = session.model.text().vocab();
        let mut image = Vec::new();
        vocab
            .tokenize_into("<image>", &mut image, false, true)
            .unwrap();
        let [image] = image[..] else {
            panic!("<image> is {image:?}")
        };
        let per_frame = session.model.vision().tokens_per_tile as usize;
        let mut tokens = Vec::new();
        for item in &items {
            match item {
                Item::Tokens(t) => tokens.extend(t.iter().map(|t| t.0)),
                Item::Frame { .. } => tokens.extend(std::iter::repeat_n(image.0, per_frame)),
                Item::Image(_) => panic!("a video prompt laid out an image"),
            }
        }
        let plan = planned[0].video.plan.as_ref().unwrap();
        (tokens, plan.indices.clone())
    }

    #[test]
    fn a_video_prompt_is_tokenized_as_the_reference_processor_tokenizes_it() {
        let model = model();
        let mut session = model.session().unwrap();
        // 12 frames of 0.5 s: 6 s at 2 fps, so one frame a second is 6
        // frames, spread as numpy's linspace spreads them.
        let video = Video::bytes(gif(12, 500));
        let (ours, indices) = laid_out(&mut session, &video, "What happens?");
        assert_eq!(indices, [0, 2, 4, 6, 8, 11]);

        // transformers: the chat template renders `<video>`, the processor
        // replaces it with this text, and the tokenizer reads it whole.
        // huggingface/transformers at 06053b84c14d72e9789fbf27844a75aa89b3ded7:
        // - src/transformers/models/smolvlm/video_processing_smolvlm.py
        //   L32-36: DEFAULT_VIDEO_INTRO ("You are provided the following
        //   series of {frame_count} frames from a {video_duration} [H:MM:SS]
        //   video.\n"), DEFAULT_MEDIA_OUTTRO ("\n\n"),
        //   FRAME_TIMESTAMP_MESSAGE ("\nFrame from {timestamp}:");
        //   L215-278 sample_frames (round(fps * duration) frames, at most
        //   num_frames, numpy.linspace over the frames).
        // - src/transformers/models/smolvlm/processing_smolvlm.py
        //   L188-223 expand_text_with_video_tokens: the intro with
        //   num2words(frames) and str(timedelta(seconds)), then per frame
        //   the timestamp message and L73-80 _prompt_single_image
        //   (<fake_token_around_image><global-img>, the image tokens,
        //   <fake_token_around_image>), then the outtro.
        let image = "<image>".repeat(model.vision().tokens_per_tile as usize);
        let mut reference = String::from(
            "<|im_start|>User: You are provided the following series of six frames \
             from a 0:00:06 [H:MM:SS] video.\n",
        );
        for stamp in ["00:00", "00:01", "00:02", "00:03", "00:04", "00:05"] {
            reference.push_str(&format!(
                "\nFrame from {stamp}:<fake_token_around_image><global-img>{image}\
                 <fake_token_around_image>"
            ));
        }
        reference.push_str("\n\nWhat happens?<end_of_utterance>\nAssistant:");
        let vocab = model.text().vocab();
        let mut theirs = Vec::new();
        vocab
            .tokenize_into(&reference, &mut theirs, vocab.adds_bos(), true)
            .unwrap();
        let theirs: Vec<i32> = theirs.iter().map(|t| t.0).collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn frames_are_read_at_the_tile_size_and_keyed() {
        let video = Video::bytes(gif(5, 200));
        let meta = video.probe().unwrap();
        let mut planned = PlannedVideo {
            plan: Some(Arc::new(VideoPlan::sample(&video, meta, 64))),
            frames: None,
        };
        planned.read(&video, 64).unwrap();
        let frames = planned.frames.as_ref().unwrap();
        assert_eq!(frames.len(), 1, "1 s of video at 1 fps is one frame");
        assert_eq!(frames[0].dimensions(), (64, 64));
        let plan = planned.plan.as_ref().unwrap();
        assert_eq!(plan.keys, [ImageKey::of_rgb(&frames[0])]);

        // Read again from other pixels: the keys no longer match.
        let other = Video::bytes(gif_shifted(5, 200, 1));
        let mut again = PlannedVideo {
            plan: planned.plan.clone(),
            frames: None,
        };
        let err = again.read(&other, 64).unwrap_err();
        assert_eq!(err.kind(), "video_changed");
    }
}
