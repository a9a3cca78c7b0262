//! What a session tells its caller: progress as it works, and the caption
//! (or token count) with what it cost.

use std::time::Duration;

/// What a caption has done so far, told as it happens by
/// [`Session::caption_observed`](crate::Session::caption_observed).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Progress<'a> {
    /// The image is prepared and the prompt tokenized: what it will cost.
    /// The vision encode comes next, one encode per tile plus the overview:
    /// nearly all of a caption's time at real scale.
    Tokenized {
        /// Tokens in the prompt, image tokens included.
        prompt_tokens: usize,
        /// Image embedding tokens.
        image_tokens: usize,
        /// Grid tiles (the overview not counted).
        tiles: usize,
    },
    /// The vision encoder moved: an encode began (`layer == 0`) or finished
    /// one of its layers. Told for every encode of every image the call
    /// encodes (images already in the session's cache are not encoded).
    Encoding(EncodeProgress),
    /// The prompt, image included, is evaluated; generation starts.
    Prefilled {
        /// Time in the vision encoder.
        encode: Duration,
        /// Time evaluating the prompt in the text decoder.
        prefill: Duration,
    },
    /// A piece of generated text, as
    /// [`Session::caption_streaming`](crate::Session::caption_streaming)
    /// gives it (never empty).
    Text(&'a str),
}

/// Where the vision encoder is within one call: which image, which encode
/// of that image (its tiles, then the overview), which layer.
///
/// ```
/// # fn show(p: smolvlm::EncodeProgress) {
/// println!(
///     "image {} of {}: encode {} of {}, layer {} of {} ({:.0} % of the image)",
///     p.image, p.images, p.encode, p.encodes, p.layer, p.layers, p.image_fraction() * 100.0
/// );
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeProgress {
    /// The image being encoded, from 1, among those this call encodes.
    pub image: usize,
    /// Images this call encodes.
    pub images: usize,
    /// The encode within the image, from 1: each grid tile, then the
    /// overview (SmolVLM encodes every tile and the overview separately).
    pub encode: usize,
    /// Encodes this image takes: its tiles plus the overview. A video is
    /// one image here, of one encode per frame shown.
    pub encodes: usize,
    /// Encoder layers finished in this encode (0 when it begins).
    pub layer: usize,
    /// Layers of the encoder (12 for SmolVLM's SigLIP-B/16); 0 when the
    /// projector does not say.
    pub layers: usize,
}

impl EncodeProgress {
    /// How much of this image's encoding is done, from 0 to 1.
    #[must_use]
    pub fn image_fraction(&self) -> f32 {
        if self.encodes == 0 {
            return 0.0;
        }
        let within = if self.layers == 0 {
            0.0
        } else {
            self.layer.min(self.layers) as f32 / self.layers as f32
        };
        ((self.encode.saturating_sub(1)) as f32 + within) / self.encodes as f32
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    EndOfText,
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop string was produced (and cut from the text).
    Stop,
    /// The context filled up.
    ContextFull,
}

/// Time spent in each stage of one caption.
///
/// For an input that was already a
/// [`PreparedImage`](crate::image::PreparedImage), `decode` and `resize` are
/// the times its preparation took, wherever it ran (a batch prepares images on
/// another thread), and `total`, the time of this call, does not include
/// them. For every other input the stages add up to at most `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Timings {
    /// Reading and decoding the image.
    pub decode: Duration,
    /// Resizing it to the planned tile grid (and turning it upright).
    pub resize: Duration,
    /// Rendering the prompt; mtmd's image preprocessing and tokenization.
    pub tokenize: Duration,
    /// The vision encoder alone, over every tile and the overview. Each
    /// session has its own encoder, so no caption waits for another's.
    pub encode: Duration,
    /// The text decoder's prompt evaluation: text tokens and the image
    /// embeddings the encoder produced.
    pub prefill: Duration,
    /// Sampling and evaluating the generated tokens.
    pub generate: Duration,
    /// The whole call.
    pub total: Duration,
}

/// One image's caption and what it cost.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Caption {
    /// The generated text (stop string excluded).
    pub text: String,
    /// The generated token ids, in order.
    pub tokens: Vec<i32>,
    /// Tokens in the prompt, image tokens included.
    pub prompt_tokens: usize,
    /// Image embedding tokens in the prompt.
    pub image_tokens: usize,
    /// Image tiles encoded, not counting the downscaled overview that
    /// idefics3 (SmolVLM) adds to every image.
    pub tiles: usize,
    /// Why generation ended.
    pub finish: FinishReason,
    /// Time per stage.
    pub timings: Timings,
    /// The output parsed as JSON, with
    /// [`GenerationOptions::with_json_schema`](crate::GenerationOptions::with_json_schema);
    /// `None` otherwise.
    pub json: Option<serde_json::Value>,
    /// Whether the prompt had images and none was encoded again: an earlier
    /// call of this session had the same images (the same pixels after
    /// preparation) after the same text, so their tokens were still in the
    /// KV cache. Then `timings.encode` is zero.
    pub reused_image: bool,
    /// Images in the prompt.
    pub images: usize,
    /// Of those, how many the vision encoder encoded in this call; the
    /// others were in the KV cache already.
    pub images_encoded: usize,
    /// Prompt tokens (positions) whose KV entries this call reused from the
    /// last one instead of evaluating them: the part of the prompt that
    /// began the same way. A follow-up in a conversation reuses all of it
    /// but its new turn.
    pub cached_tokens: usize,
    /// Video frames in the prompt (each one overview image, counted in
    /// `image_tokens`, never in `tiles`).
    pub frames: usize,
    /// Of those, how many the vision encoder encoded in this call.
    pub frames_encoded: usize,
    /// Each video of the prompt, in order: what was sampled and shown.
    pub videos: Vec<VideoReport>,
}

/// What a video of a prompt showed the model.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct VideoReport {
    /// Frames shown to the model.
    pub frames: usize,
    /// Frames SmolVLM2's sampling rule chose (at most its frame limit),
    /// before any cut to fit the context: more than `frames` when frames
    /// were cut.
    pub sampled: usize,
    /// The video's duration in seconds.
    pub seconds: f64,
    /// Frames in the video.
    pub source_frames: u64,
    /// The video's frame rate.
    pub source_fps: f64,
    /// The time of each frame shown, in seconds.
    pub timestamps: Vec<f64>,
}

impl VideoReport {
    pub(crate) fn of(plan: &super::VideoPlan) -> Self {
        Self {
            frames: plan.frames(),
            sampled: plan.sampled,
            seconds: plan.meta.duration,
            source_frames: plan.meta.total_frames,
            source_fps: plan.meta.fps,
            timestamps: plan.seconds(),
        }
    }

    /// Whether frames were cut to fit the context.
    #[must_use]
    pub fn was_cut(&self) -> bool {
        self.frames < self.sampled
    }
}

/// What an image and prompt cost in tokens, from
/// [`Session::tokenize`](crate::Session::tokenize).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TokenCount {
    /// Tokens in the prompt, image tokens included.
    pub prompt_tokens: usize,
    /// Image embedding tokens.
    pub image_tokens: usize,
    /// Grid tiles (the overview not counted).
    pub tiles: usize,
    /// Time per stage (decode, resize, tokenize, total; the rest are zero).
    pub timings: Timings,
}

#[cfg(test)]
mod tests {
    use super::EncodeProgress;

    #[test]
    fn an_image_fraction_counts_encodes_and_layers() {
        let at = |encode, layer| EncodeProgress {
            image: 1,
            images: 1,
            encode,
            encodes: 4,
            layer,
            layers: 12,
        };
        assert_eq!(at(1, 0).image_fraction(), 0.0);
        assert_eq!(at(1, 6).image_fraction(), 0.125);
        assert_eq!(at(2, 12).image_fraction(), 0.5);
        assert_eq!(at(4, 12).image_fraction(), 1.0);
        let unknown = EncodeProgress {
            layers: 0,
            ..at(3, 5)
        };
        assert_eq!(unknown.image_fraction(), 0.5);
    }
}
