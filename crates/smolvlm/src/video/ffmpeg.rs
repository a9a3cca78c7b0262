//! Reading video files through the `ffprobe` and `ffmpeg` programs found on PATH.

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use image::RgbImage;

use super::source::{frame, Frame, Shrink, VideoError, VideoMeta};

/// What to tell a user who lacks ffmpeg.
pub(super) const INSTALL_FFMPEG: &str = "install ffmpeg (Debian/Ubuntu: apt-get install ffmpeg; \
     macOS: brew install ffmpeg; Windows: winget install ffmpeg) or convert the video to a GIF \
     or a folder of frame images";

/// `name` (with `.exe` on Windows) in the first directory of `path_var` that holds it as an
/// executable file.
fn find_program(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    let file = if cfg!(windows) {
        format!("{name}.exe")
    } else {
        name.to_string()
    };
    std::env::split_paths(path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(&file))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file with an execute bit.
#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `path` is a file.
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// `program` found on `path_var`, or the error that says how to install it.
fn tool(
    program: &'static str,
    origin: &str,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, VideoError> {
    find_program(program, path_var).ok_or_else(|| VideoError::ToolMissing {
        program,
        origin: origin.to_string(),
    })
}

/// The file as an ffmpeg URL, so that names with `:` or a leading `-` stay file names.
fn file_url(file: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(file.as_os_str());
    url
}

/// The last non-empty line of a program's error output.
fn last_line(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("no error message")
        .to_string()
}

/// Probes `file` with ffprobe (see [`super::probe`] for the rules).
pub(super) fn probe_video(
    file: &Path,
    origin: &str,
    path_var: Option<&OsStr>,
) -> Result<VideoMeta, VideoError> {
    let ffprobe = tool("ffprobe", origin, path_var)?;
    let failed = |message| VideoError::ToolFailed {
        program: "ffprobe",
        origin: origin.to_string(),
        message,
    };
    let output = Command::new(&ffprobe)
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
        ])
        .arg(
            "stream=nb_frames,nb_read_packets,avg_frame_rate,r_frame_rate,duration:format=duration",
        )
        .args(["-of", "json"])
        .arg(file_url(file))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| failed(format!("cannot run {}: {e}", ffprobe.display())))?;
    if !output.status.success() {
        return Err(failed(last_line(&output.stderr)));
    }
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| VideoError::Decode {
            origin: origin.to_string(),
            message: format!("ffprobe printed unreadable JSON ({e})"),
        })?;
    parse_probe(&json, origin)
}

/// Metadata from ffprobe's JSON (see [`super::probe`] for the rules).
fn parse_probe(json: &serde_json::Value, origin: &str) -> Result<VideoMeta, VideoError> {
    let no_frames = || VideoError::NoFrames {
        origin: origin.to_string(),
    };
    let stream = json["streams"].get(0).ok_or_else(no_frames)?;
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => Some(s.trim().to_string()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let count = |key: &str| {
        text(&stream[key])
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&n| n > 0)
    };
    let positive = |x: f64| (x.is_finite() && x > 0.0).then_some(x);
    let rate = |key: &str| {
        let s = text(&stream[key])?;
        let (num, den) = s.split_once('/').unwrap_or((&s, "1"));
        positive(num.parse::<f64>().ok()? / den.parse::<f64>().ok()?)
    };
    let fps = rate("avg_frame_rate")
        .or_else(|| rate("r_frame_rate"))
        .ok_or_else(|| VideoError::Decode {
            origin: origin.to_string(),
            message: "ffprobe reports no frame rate for the video stream".to_string(),
        })?;
    let seconds = [&stream["duration"], &json["format"]["duration"]]
        .into_iter()
        .find_map(|v| {
            text(v)
                .and_then(|s| s.parse::<f64>().ok())
                .and_then(positive)
        });
    let total_frames = count("nb_frames")
        .or_else(|| count("nb_read_packets"))
        .or_else(|| seconds.map(|s| (s * fps).round() as u64).filter(|&n| n > 0))
        .ok_or_else(no_frames)?;
    Ok(VideoMeta {
        total_frames,
        fps,
        duration: total_frames as f64 / fps,
    })
}

/// ffmpeg's `select` filter for `indices` (sorted, distinct): runs become `between`, and the
/// terms are summed as a balanced tree, since ffmpeg rejects a flat sum of more than 100 terms.
fn select_filter(indices: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(i) => *end = i,
            _ => runs.push((i, i)),
        }
    }
    let terms: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                format!("eq(n\\,{a})")
            } else {
                format!("between(n\\,{a}\\,{b})")
            }
        })
        .collect();
    format!("select={}", any_of(&terms))
}

/// `terms` joined with `+`, parenthesised as a balanced tree.
fn any_of(terms: &[String]) -> String {
    match terms {
        [] => "0".to_string(),
        [one] => one.clone(),
        _ => {
            let (left, right) = terms.split_at(terms.len() / 2);
            format!("({})+({})", any_of(left), any_of(right))
        }
    }
}

/// Most indices given to one ffmpeg run, which keeps its command line short
/// (about 20 bytes per index); more indices take more runs.
const INDICES_PER_RUN: usize = 2000;

/// The frames at `wanted` (sorted, distinct, all in range) of `file`, decoded by ffmpeg.
pub(super) fn extract_video_frames(
    file: &Path,
    origin: &str,
    wanted: &[u64],
    fps: f64,
    path_var: Option<&OsStr>,
    shrink: Shrink<'_>,
) -> Result<Vec<Frame>, VideoError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let ffmpeg = tool("ffmpeg", origin, path_var)?;
    // `-fps_mode` is ffmpeg >= 5.1; older ones only know `-vsync`.
    let mut sync_option = "-fps_mode";
    let mut frames = Vec::with_capacity(wanted.len());
    for chunk in wanted.chunks(INDICES_PER_RUN) {
        let run = match run_ffmpeg(&ffmpeg, sync_option, file, origin, chunk, fps, shrink) {
            Err((_, stderr)) if String::from_utf8_lossy(&stderr).contains("fps_mode") => {
                sync_option = "-vsync";
                run_ffmpeg(&ffmpeg, sync_option, file, origin, chunk, fps, shrink)
            }
            other => other,
        };
        frames.extend(run.map_err(|(e, _)| e)?);
    }
    Ok(frames)
}

/// One ffmpeg run that writes the wanted frames as PPM images; on failure also its stderr.
fn run_ffmpeg(
    ffmpeg: &Path,
    sync_option: &str,
    file: &Path,
    origin: &str,
    wanted: &[u64],
    fps: f64,
    shrink: Shrink<'_>,
) -> Result<Vec<Frame>, (VideoError, Vec<u8>)> {
    let failed = |message| VideoError::ToolFailed {
        program: "ffmpeg",
        origin: origin.to_string(),
        message,
    };
    let mut child = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file_url(file))
        .args([
            "-map",
            "0:v:0",
            "-vf",
            &select_filter(wanted),
            sync_option,
            "passthrough",
        ])
        .args(["-frames:v", &wanted.len().to_string(), "-pix_fmt", "rgb24"])
        .args(["-f", "image2pipe", "-vcodec", "ppm", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            (
                failed(format!("cannot run {}: {e}", ffmpeg.display())),
                Vec::new(),
            )
        })?;
    let stderr = child.stderr.take();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = stderr {
            let _ = pipe.read_to_end(&mut text);
        }
        text
    });
    let mut frames = Vec::with_capacity(wanted.len());
    let mut parse_error = None;
    let mut shrink_error = None;
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        while frames.len() < wanted.len() {
            match read_ppm(&mut reader) {
                Ok(Some(image)) => match shrink(image) {
                    Ok(image) => frames.push(frame(wanted[frames.len()], fps, image)),
                    Err(e) => {
                        shrink_error = Some(e);
                        break;
                    }
                },
                Ok(None) => break,
                Err(message) => {
                    parse_error = Some(message);
                    break;
                }
            }
        }
    }
    let status = child.wait();
    let stderr = stderr_reader.join().unwrap_or_default();
    if let Some(e) = shrink_error {
        // ffmpeg was cut off mid-stream by design; its status says nothing.
        return Err((e, stderr));
    }
    match status {
        Err(e) => return Err((failed(format!("cannot wait for ffmpeg: {e}")), stderr)),
        Ok(status) if !status.success() => return Err((failed(last_line(&stderr)), stderr)),
        Ok(_) => {}
    }
    let decode = |message| VideoError::Decode {
        origin: origin.to_string(),
        message,
    };
    if let Some(message) = parse_error {
        return Err((decode(format!("ffmpeg output: {message}")), stderr));
    }
    if frames.len() < wanted.len() {
        let message = format!(
            "ffmpeg decoded only {} of the {} frames asked for (frame {} is missing); \
             the frame count from ffprobe may be too high for this file",
            frames.len(),
            wanted.len(),
            wanted[frames.len()]
        );
        return Err((decode(message), stderr));
    }
    Ok(frames)
}

/// The next binary PPM (P6, maxval 255) image of a stream, or `None` at its end.
fn read_ppm<R: BufRead>(reader: &mut R) -> Result<Option<RgbImage>, String> {
    if reader.fill_buf().map_err(|e| e.to_string())?.is_empty() {
        return Ok(None);
    }
    let magic = ppm_token(reader)?;
    if magic != "P6" {
        return Err(format!("expected a P6 image, found {magic:?}"));
    }
    let mut number = || -> Result<u32, String> {
        let token = ppm_token(reader)?;
        token
            .parse()
            .map_err(|_| format!("bad PPM header number {token:?}"))
    };
    let (width, height, maxval) = (number()?, number()?, number()?);
    if maxval != 255 {
        return Err(format!("expected 8-bit samples, found maxval {maxval}"));
    }
    let len = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3))
        .ok_or_else(|| format!("PPM size {width}x{height} is too large"))?;
    let mut pixels = vec![0; len];
    reader
        .read_exact(&mut pixels)
        .map_err(|e| format!("truncated {width}x{height} PPM image ({e})"))?;
    RgbImage::from_raw(width, height, pixels)
        .map(Some)
        .ok_or_else(|| "bad PPM image size".to_string())
}

/// One PPM header token; skips whitespace and `#` comments before it and the one whitespace byte after it.
fn ppm_token<R: BufRead>(reader: &mut R) -> Result<String, String> {
    let mut next = || -> Result<Option<u8>, String> {
        let byte = reader
            .fill_buf()
            .map_err(|e| e.to_string())?
            .first()
            .copied();
        if byte.is_some() {
            reader.consume(1);
        }
        Ok(byte)
    };
    let mut token = String::new();
    let mut in_comment = false;
    while let Some(byte) = next()? {
        match byte {
            b'\n' | b'\r' if in_comment => in_comment = false,
            _ if in_comment => {}
            b'#' if token.is_empty() => in_comment = true,
            b if b.is_ascii_whitespace() => {
                if !token.is_empty() {
                    return Ok(token);
                }
            }
            b if token.len() < 20 => token.push(char::from(b)),
            _ => return Err("PPM header token too long".to_string()),
        }
    }
    Err("PPM header ended early".to_string())
}

/// A temporary file holding in-memory video bytes, removed when dropped.
pub(super) struct TempFile(pub(super) PathBuf);

impl TempFile {
    /// A new, uniquely named file in the temporary directory holding `bytes`.
    pub(super) fn create(bytes: &[u8], origin: &str) -> Result<Self, VideoError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let fail = |path: PathBuf, source| VideoError::TempFile {
            path,
            origin: origin.to_string(),
            source,
        };
        let mut last_error = io::Error::other("no free temporary file name");
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!("smolvlm-video-{}-{nanos}-{n}.tmp", std::process::id());
            let path = std::env::temp_dir().join(name);
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let temp = TempFile(path);
                    return match file.write_all(bytes).and_then(|()| file.flush()) {
                        Ok(()) => Ok(temp),
                        Err(e) => Err(fail(temp.0.clone(), e)),
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = e,
                Err(e) => return Err(fail(path, e)),
            }
        }
        Err(fail(std::env::temp_dir(), last_error))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::{load, probe, read_frames, VideoSource};
    use super::*;
    use serde_json::json;

    #[test]
    fn select_filter_joins_runs() {
        assert_eq!(
            select_filter(&[0, 1, 2, 5, 7, 8]),
            "select=(between(n\\,0\\,2))+((eq(n\\,5))+(between(n\\,7\\,8)))"
        );
        assert_eq!(select_filter(&[42]), "select=eq(n\\,42)");
    }

    #[test]
    fn ppm_stream() {
        let mut stream = b"P6\n# made by hand\n2 1\n255\n".to_vec();
        stream.extend([1, 2, 3, 4, 5, 6]);
        stream.extend(b"P6 1 2 255\n");
        stream.extend([7, 8, 9, 10, 11, 12]);
        let mut reader = stream.as_slice();
        let first = read_ppm(&mut reader).unwrap().unwrap();
        assert_eq!(
            (first.dimensions(), first.get_pixel(1, 0).0),
            ((2, 1), [4, 5, 6])
        );
        let second = read_ppm(&mut reader).unwrap().unwrap();
        assert_eq!(
            (second.dimensions(), second.get_pixel(0, 1).0),
            ((1, 2), [10, 11, 12])
        );
        assert!(read_ppm(&mut reader).unwrap().is_none());
        assert!(read_ppm(&mut &b"P5 1 1 255\n\0"[..]).is_err());
        assert!(read_ppm(&mut &b"P6 2 2 255\n\0\0\0"[..]).is_err());
    }

    #[test]
    fn probe_json_rules() {
        let meta = |v: serde_json::Value| parse_probe(&v, "clip");
        let mp4 = json!({"streams": [{"nb_frames": "30", "nb_read_packets": "29",
            "avg_frame_rate": "10/1", "r_frame_rate": "20/1"}], "format": {"duration": "3.2"}});
        let got = meta(mp4).unwrap();
        assert_eq!((got.total_frames, got.fps, got.duration), (30, 10.0, 3.0));
        let webm = json!({"streams": [{"nb_read_packets": "48", "avg_frame_rate": "0/0",
            "r_frame_rate": "24000/1001"}]});
        let got = meta(webm).unwrap();
        assert_eq!((got.total_frames, got.fps), (48, 24000.0 / 1001.0));
        assert!((got.duration - 2.002).abs() < 1e-12);
        let only_duration =
            json!({"streams": [{"avg_frame_rate": "25/1"}], "format": {"duration": "2.0"}});
        assert_eq!(meta(only_duration).unwrap().total_frames, 50);
        assert_eq!(
            meta(json!({"streams": []})).unwrap_err().kind(),
            "video_no_frames"
        );
        let no_rate = json!({"streams": [{"nb_frames": "3", "avg_frame_rate": "0/0"}]});
        assert_eq!(meta(no_rate).unwrap_err().kind(), "video_decode");
    }

    #[cfg(unix)]
    #[test]
    fn program_search_uses_the_given_path() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("videokit-{}-bin", std::process::id()));
        let (a, b) = (base.join("a"), base.join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("ffmpeg"), "not executable").unwrap();
        fs::write(b.join("ffmpeg"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(b.join("ffmpeg"), fs::Permissions::from_mode(0o755)).unwrap();
        let path_var = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(
            find_program("ffmpeg", Some(&path_var)),
            Some(b.join("ffmpeg"))
        );
        assert_eq!(find_program("ffprobe", Some(&path_var)), None);
        assert_eq!(find_program("ffmpeg", None), None);
        let err = tool("ffprobe", "clip.mp4", Some(&path_var)).unwrap_err();
        assert_eq!(err.kind(), "video_tool_missing");
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn temp_file_is_removed_on_drop() {
        let temp = TempFile::create(b"bytes", "test").unwrap();
        let path = temp.0.clone();
        assert_eq!(fs::read(&path).unwrap(), b"bytes");
        drop(temp);
        assert!(!path.exists());
    }

    /// Runs ffmpeg in `dir`; the test fails if it does.
    fn ffmpeg(dir: &Path, args: &[&str]) {
        let status = Command::new("ffmpeg")
            .current_dir(dir)
            .args(["-nostdin", "-v", "error", "-y"])
            .args(args)
            .status()
            .expect("ffmpeg on PATH");
        assert!(status.success(), "ffmpeg {args:?}");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("videokit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A lossless (FFV1 in Matroska, so no nb_frames) clip whose frame i is the solid colour
    /// (i % 256, i / 256, 77).
    fn coded_clip(dir: &Path, frames: u32, rate: u32) -> PathBuf {
        for i in 0..frames {
            let colour = image::Rgb([(i % 256) as u8, (i / 256) as u8, 77]);
            RgbImage::from_pixel(16, 12, colour)
                .save(dir.join(format!("f{i:05}.png")))
                .unwrap();
        }
        let rate = rate.to_string();
        ffmpeg(
            dir,
            &[
                "-framerate",
                &rate,
                "-i",
                "f%05d.png",
                "-c:v",
                "ffv1",
                "clip.mkv",
            ],
        );
        dir.join("clip.mkv")
    }

    fn code(frame: &Frame) -> u64 {
        let [r, g, b] = frame.image.get_pixel(5, 5).0;
        assert_eq!(b, 77);
        u64::from(r) + 256 * u64::from(g)
    }

    #[test]
    #[ignore = "needs ffmpeg on PATH"]
    fn mp4_probe_and_extract() {
        let dir = scratch("mp4");
        let args = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=3"];
        ffmpeg(
            &dir,
            &[&args[..], &["-pix_fmt", "yuv420p", "clip.mp4"]].concat(),
        );
        let source = VideoSource::File(dir.join("clip.mp4"));
        let meta = probe(&source).unwrap();
        assert_eq!(
            (meta.total_frames, meta.fps, meta.duration),
            (30, 10.0, 3.0)
        );
        let frames = read_frames(&source, &[29, 0, 5]).unwrap();
        assert_eq!(
            frames.iter().map(|f| f.index).collect::<Vec<_>>(),
            [0, 5, 29]
        );
        assert!(frames.iter().all(|f| f.image.dimensions() == (64, 48)));
        assert_ne!(frames[0].image, frames[1].image);
        assert_ne!(frames[1].image, frames[2].image);
        assert!((frames[2].seconds - 2.9).abs() < 1e-9);
        let video = load(&source, 1.0, 64).unwrap();
        assert_eq!(
            video.frames.iter().map(|f| f.index).collect::<Vec<_>>(),
            [0, 14, 29]
        );
        assert_eq!(video.frames[0].image, frames[0].image);
        let err = read_frames(&source, &[30]).unwrap_err();
        assert_eq!(err.kind(), "video_frame_range");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    #[ignore = "needs ffmpeg on PATH"]
    fn lossless_clip_gives_exactly_the_chosen_frames() {
        let dir = scratch("mkv");
        let clip = coded_clip(&dir, 30, 10);
        let bytes = fs::read(&clip).unwrap();
        for source in [VideoSource::File(clip), VideoSource::Bytes(bytes)] {
            let meta = probe(&source).unwrap();
            assert_eq!(
                (meta.total_frames, meta.fps, meta.duration),
                (30, 10.0, 3.0)
            );
            let frames = read_frames(&source, &[3, 17, 18, 19, 29]).unwrap();
            assert_eq!(
                frames.iter().map(code).collect::<Vec<_>>(),
                [3, 17, 18, 19, 29]
            );
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    #[ignore = "needs ffmpeg on PATH"]
    fn thousands_of_indices() {
        let dir = scratch("thousand");
        let clip = coded_clip(&dir, 2500, 100);
        let source = VideoSource::File(clip);
        assert_eq!(probe(&source).unwrap().total_frames, 2500);
        // Every other frame, with a run of three every seventh: 1000 indices, singles and runs.
        let mut wanted: Vec<u64> = (0..1000).map(|i| i * 2 + u64::from(i % 7 == 0)).collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(1000);
        assert_eq!(wanted.len(), 1000);
        let frames = read_frames(&source, &wanted).unwrap();
        assert_eq!(frames.iter().map(code).collect::<Vec<_>>(), wanted);
        // 2250 indices (runs of nine) take two ffmpeg runs.
        let wanted: Vec<u64> = (0..2500).filter(|i| i % 10 != 0).collect();
        let frames = read_frames(&source, &wanted).unwrap();
        assert_eq!(frames.iter().map(code).collect::<Vec<_>>(), wanted);
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    #[ignore = "needs ffmpeg on PATH"]
    fn old_ffmpeg_without_fps_mode_gets_vsync() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch("old-ffmpeg");
        let clip = coded_clip(&dir, 30, 10);
        let real = find_program("ffmpeg", std::env::var_os("PATH").as_deref()).unwrap();
        let bin = dir.join("bin");
        fs::create_dir(&bin).unwrap();
        let script = format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -fps_mode ] && \
             {{ echo \"Unrecognized option 'fps_mode'.\" >&2; exit 1; }}; done\nexec '{}' \"$@\"\n",
            real.display()
        );
        fs::write(bin.join("ffmpeg"), script).unwrap();
        fs::set_permissions(bin.join("ffmpeg"), fs::Permissions::from_mode(0o755)).unwrap();
        let frames =
            extract_video_frames(&clip, "clip", &[2, 9], 10.0, Some(bin.as_os_str()), &mut Ok)
                .unwrap();
        assert_eq!(frames.iter().map(code).collect::<Vec<_>>(), [2, 9]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    #[ignore = "needs ffmpeg on PATH"]
    fn unreadable_video_names_the_tool_and_file() {
        let dir = scratch("junk");
        let junk = dir.join("junk.mp4");
        fs::write(&junk, [7_u8; 4096]).unwrap();
        let err = probe(&VideoSource::File(junk)).unwrap_err();
        assert_eq!(err.kind(), "video_tool_failed");
        assert!(err.to_string().starts_with("ffprobe failed on "), "{err}");
        assert!(err.to_string().contains("junk.mp4"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }
}
