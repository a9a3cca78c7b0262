//! The text that SmolVLM's processor (transformers `processing_smolvlm.py`) puts in place of one video.

use super::clock::{duration_text, frame_timestamp};
use super::words::number_words;

/// Opening line of a video; `{frame_count}` is the frame count in words and `{video_duration}`
/// the whole seconds of the video as `H:MM:SS` (transformers `DEFAULT_VIDEO_INTRO`).
pub const VIDEO_INTRO: &str =
    "You are provided the following series of {frame_count} frames from a {video_duration} [H:MM:SS] video.\n";

/// Text before each frame; `{timestamp}` is the frame's `MM:SS` (transformers `FRAME_TIMESTAMP_MESSAGE`).
pub const FRAME_TIMESTAMP_MESSAGE: &str = "\nFrame from {timestamp}:";

/// Text after the last frame (transformers `DEFAULT_MEDIA_OUTTRO`).
pub const MEDIA_OUTTRO: &str = "\n\n";

/// Token on both sides of each frame's image tokens.
pub const FAKE_TOKEN_AROUND_IMAGE: &str = "<fake_token_around_image>";

/// Token that opens a frame's (unsplit, global) image.
pub const GLOBAL_IMAGE_TOKEN: &str = "<global-img>";

/// One piece of a video's prompt, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPiece {
    /// Plain text to tokenize, wrapper tokens around the frames included.
    Text(String),
    /// The image embeddings of the frame with this position (0-based) among the sampled frames.
    Frame(usize),
}

/// The intro line for `frame_count` frames of a video lasting `duration` seconds
/// (truncated to whole seconds as Python's `int()` does; negative or NaN counts as 0).
pub fn video_intro(frame_count: usize, duration: f64) -> String {
    let whole = if duration.is_nan() || duration <= 0.0 {
        0
    } else {
        duration as u64
    };
    VIDEO_INTRO
        .replace("{frame_count}", &number_words(frame_count as u64))
        .replace("{video_duration}", &duration_text(whole))
}

/// The prompt pieces for one video whose sampled frames lie at `timestamps` (seconds) and
/// that lasts `duration` seconds: `Text(intro + "\nFrame from 00:00:<fake_token_around_image><global-img>")`,
/// `Frame(0)`, `Text("<fake_token_around_image>\nFrame from 00:01:<fake_token_around_image><global-img>")`,
/// `Frame(1)`, ..., `Frame(n - 1)`, `Text("<fake_token_around_image>\n\n")`.
pub fn video_pieces(timestamps: &[f64], duration: f64) -> Vec<VideoPiece> {
    let mut pieces = Vec::with_capacity(2 * timestamps.len() + 1);
    let mut text = video_intro(timestamps.len(), duration);
    for (i, &seconds) in timestamps.iter().enumerate() {
        text.push_str(&FRAME_TIMESTAMP_MESSAGE.replace("{timestamp}", &frame_timestamp(seconds)));
        text.push_str(FAKE_TOKEN_AROUND_IMAGE);
        text.push_str(GLOBAL_IMAGE_TOKEN);
        pieces.push(VideoPiece::Text(std::mem::take(&mut text)));
        pieces.push(VideoPiece::Frame(i));
        text.push_str(FAKE_TOKEN_AROUND_IMAGE);
    }
    text.push_str(MEDIA_OUTTRO);
    pieces.push(VideoPiece::Text(text));
    pieces
}

/// Joins `pieces` into one string, writing `image_text` (for example `"<image>"` 64 times)
/// for each frame's image tokens.
pub fn render_video_text(pieces: &[VideoPiece], image_text: &str) -> String {
    pieces
        .iter()
        .map(|piece| match piece {
            VideoPiece::Text(text) => text.as_str(),
            VideoPiece::Frame(_) => image_text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_frames_of_three_seconds() {
        let pieces = video_pieces(&[0.0, 1.5, 2.9], 3.0);
        assert_eq!(pieces.len(), 7);
        assert_eq!(pieces[1], VideoPiece::Frame(0));
        assert_eq!(pieces[5], VideoPiece::Frame(2));
        let image = "<image>".repeat(64);
        let frame = |ts: &str| {
            format!(
                "\nFrame from {ts}:<fake_token_around_image><global-img>{image}<fake_token_around_image>"
            )
        };
        let expected = format!(
            "You are provided the following series of three frames from a 0:00:03 [H:MM:SS] video.\n{}{}{}\n\n",
            frame("00:00"),
            frame("00:01"),
            frame("00:02")
        );
        assert_eq!(render_video_text(&pieces, &image), expected);
    }

    #[test]
    fn long_clip_and_no_frames() {
        let intro = video_intro(64, 4501.7);
        assert_eq!(
            intro,
            "You are provided the following series of sixty-four frames from a 1:15:01 [H:MM:SS] video.\n"
        );
        assert_eq!(
            video_pieces(&[], 0.5),
            vec![VideoPiece::Text(
                "You are provided the following series of zero frames from a 0:00:00 [H:MM:SS] video.\n\n\n"
                    .to_string()
            )]
        );
    }
}
