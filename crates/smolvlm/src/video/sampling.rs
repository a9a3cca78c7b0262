//! Frame-index sampling, ported from transformers' `SmolVLMVideoProcessor.sample_frames`.

/// Frames per second that SmolVLM2 samples by default (`video_sampling.fps`).
pub const DEFAULT_FPS: f64 = 1.0;

/// Most frames that SmolVLM2 samples from one video by default (`video_sampling.max_frames`).
pub const DEFAULT_MAX_FRAMES: usize = 64;

/// Seconds skipped at each end of a long video (`skip_secs`, fixed at 1 in transformers).
const SKIP_SECS: f64 = 1.0;

/// Picks the frame indices to feed the model, exactly as transformers 5.x
/// `SmolVLMVideoProcessor.sample_frames` does (with `skip_secs = 1`).
///
/// `total_frames` and `video_fps` describe the video, `duration` is its length in seconds,
/// `fps` is the sampling rate asked for and `max_frames` the most frames to keep
/// (see [`DEFAULT_FPS`] and [`DEFAULT_MAX_FRAMES`]). About `fps * duration` frames
/// (Python `round`, half to even), at least one and at most `max_frames`, are spread evenly
/// with `numpy.linspace` over the video, skipping one second at each end when the video is
/// much longer than the sampling needs; duplicates are removed and the result is sorted.
///
/// Returns an empty list when `total_frames` is 0. Non-finite inputs never panic: where Python
/// would raise, a NaN count becomes one frame and a NaN or infinite index saturates and is then
/// clamped into the video.
pub fn sample_indices(
    total_frames: u64,
    video_fps: f64,
    duration: f64,
    fps: f64,
    max_frames: usize,
) -> Vec<u64> {
    if total_frames == 0 {
        return Vec::new();
    }
    // estimated_frames = int(round(fps * duration)); desired = max(1, min(estimated, num_frames))
    let estimated = (fps * duration).round_ties_even();
    let capped = if estimated.is_nan() {
        0.0
    } else {
        estimated.min(max_frames as f64)
    };
    let desired = if capped < 1.0 { 1 } else { capped as usize };

    let last = i128::from(total_frames - 1);
    let (mut start, mut end) = (0_i128, last);
    if (duration - 2.0 * SKIP_SECS) > (max_frames as f64 * fps) {
        // Python int() truncates toward zero; `as` also saturates and maps NaN to 0.
        start = (SKIP_SECS * video_fps) as i128;
        end = (total_frames as f64 - SKIP_SECS * video_fps) as i128;
    }
    start = start.max(0);
    end = end.min(last);
    if start >= end {
        (start, end) = (0, last);
    }
    // Both bounds now lie in 0..total_frames, so they fit in u64.
    linspace_unique(start as u64, end as u64, desired)
}

/// `np.unique(np.linspace(start, end, n, dtype=int))` for `0 <= start <= end` and `n >= 1`.
fn linspace_unique(start: u64, end: u64, n: usize) -> Vec<u64> {
    if n == 1 {
        return vec![start];
    }
    let (first, stop) = (start as f64, end as f64);
    let step = (stop - first) / (n - 1) as f64;
    let mut out: Vec<u64> = Vec::with_capacity(n.min(4096));
    for i in 0..n {
        let y = if i == n - 1 {
            stop
        } else {
            i as f64 * step + first
        };
        // numpy floors integer-dtype results, then casts.
        let v = y.floor() as u64;
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_values() {
        assert_eq!(
            sample_indices(300, 30.0, 10.0, 1.0, 64),
            vec![0, 33, 66, 99, 132, 166, 199, 232, 265, 299]
        );
        let long = sample_indices(3000, 25.0, 120.0, 1.0, 64);
        assert_eq!(long.len(), 64);
        assert_eq!(long.first(), Some(&25));
        assert_eq!(long.last(), Some(&2975));
        // 2.5 s at 1 fps rounds half to even: 2 frames.
        assert_eq!(sample_indices(75, 30.0, 2.5, 1.0, 64), vec![0, 74]);
        // 3.5 s rounds to 4.
        assert_eq!(sample_indices(105, 30.0, 3.5, 1.0, 64).len(), 4);
        assert_eq!(sample_indices(5, 0.5, 10.0, 1.0, 64), vec![0, 1, 2, 3, 4]);
        assert_eq!(sample_indices(1, 30.0, 1.0 / 30.0, 1.0, 64), vec![0]);
        assert_eq!(sample_indices(1, 10.0, 0.1, 1.0, 64), vec![0]);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert!(sample_indices(0, 30.0, 10.0, 1.0, 64).is_empty());
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -3.0] {
            for (fps, dur, vfps) in [(v, 10.0, 30.0), (1.0, v, 30.0), (1.0, 100.0, v)] {
                let got = sample_indices(300, vfps, dur, fps, 64);
                assert!(!got.is_empty() && got.len() <= 64);
                assert!(got.iter().all(|&i| i < 300));
            }
        }
        // max_frames = 0: one frame, and the 1 s skip applies (as in Python).
        assert_eq!(sample_indices(300, 30.0, 10.0, 1.0, 0), vec![30]);
    }
}
