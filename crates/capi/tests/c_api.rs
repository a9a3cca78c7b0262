//! The C ABI from C: `tests/c/caption.c` is compiled with the system C
//! compiler against the committed header, linked against the shared library
//! (and, in a second test, the static one), and run on the tiny test model.
//! Its answers must equal the Rust library's for the same inputs.
//!
//! With `SMOLVLM_C_WRAPPER` set (a command and its arguments, split on
//! whitespace), the program runs under it: `.ci/run` sets it to valgrind's
//! memcheck, which fails the run on any memory error or definite leak.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use smolvlm::{GenerationOptions, LoadOptions, Model, ModelFiles};

const MAX_TOKENS: u32 = 16;

/// Where cargo put this crate's libraries: next to this test's executable.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    assert!(
        deps.join("libsmolvlm_capi.so").exists(),
        "no libsmolvlm_capi.so in {}",
        deps.display()
    );
    deps
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiles `tests/c/caption.c` into `dir`, linked as `link` says.
fn compile(dir: &Path, link: &[&str]) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = dir.join("caption");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let output = Command::new(&cc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-O1",
        ])
        .arg("-I")
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c/caption.c"))
        .arg("-o")
        .arg(&exe)
        .args(link)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}`: {e}"));
    assert!(
        output.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

/// The inputs: a PNG photo-like gradient, a file that is not an image, and
/// a video (an animated GIF of 6 frames of 1 s, another colour each).
fn images(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let good = dir.join("gradient.png");
    smolvlm_testkit::images::write_png(&smolvlm_testkit::images::gradient(96, 64), &good).unwrap();
    let bad = dir.join("bad.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nnot really a PNG").unwrap();
    let video = dir.join("clip.gif");
    let frames = (0..VIDEO_FRAMES).map(|i| {
        let shade = (i * 40) as u8;
        image::RgbaImage::from_fn(48, 32, |x, _| {
            image::Rgba([shade, 255 - shade, (x * 5) as u8, 255])
        })
    });
    std::fs::write(
        &video,
        smolvlm_testkit::images::animated_gif(frames, 1000).unwrap(),
    )
    .unwrap();
    (good, bad, video)
}

/// Frames of the test video: one a second, so each is sampled.
const VIDEO_FRAMES: u32 = 6;

/// The program's command: itself, or under `SMOLVLM_C_WRAPPER`.
///
/// Without `LD_LIBRARY_PATH`: cargo sets it for tests with `target/release`
/// ahead of `target/release/deps`, and the copy of the shared library there
/// is the one the last `cargo build` left, not this test's. The loader
/// takes `LD_LIBRARY_PATH` before the program's run path, so a stale library
/// would answer.
fn command(exe: &Path) -> Command {
    let wrapper = std::env::var("SMOLVLM_C_WRAPPER").unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let mut cmd = match words.next() {
        Some(program) => {
            let mut cmd = Command::new(program);
            cmd.args(words).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.env_remove("LD_LIBRARY_PATH");
    cmd
}

/// Runs the program; returns its lines as label -> (status, rest).
fn run(exe: &Path, good: &Path, bad: &Path, video: &Path) -> HashMap<String, (String, String)> {
    let pair = smolvlm_testkit::tiny_model();
    let output = command(exe)
        .arg(&pair.model)
        .arg(&pair.mmproj)
        .arg(good)
        .arg(bad)
        .arg(video)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the C program failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            Some((
                parts.next()?.to_owned(),
                (
                    parts.next()?.to_owned(),
                    parts.next().unwrap_or("").to_owned(),
                ),
            ))
        })
        .collect()
}

/// What the Rust library says for the same inputs.
struct Expected {
    file: String,
    /// The file's encodes: its tiles and the overview.
    file_encodes: usize,
    rgb: String,
    video: String,
}

fn expected(good: &Path, video: &Path) -> Expected {
    let pair = smolvlm_testkit::tiny_model();
    let model = Model::load(
        &ModelFiles::new(pair.model, pair.mmproj),
        &LoadOptions::default().with_threads(2),
    )
    .unwrap();
    let mut session = model.session().unwrap();
    let options = GenerationOptions::default().with_max_tokens(MAX_TOKENS);
    let caption = session
        .caption(good, "Describe this image.", &options)
        .unwrap();
    let (file, file_encodes) = (caption.text, caption.tiles + 1);
    let pixels = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    });
    let rgb = session
        .caption(&pixels, "Describe this image.", &options)
        .unwrap()
        .text;
    let video = session
        .ask_video(
            &smolvlm::video::Video::file(video),
            "What happens?",
            &options,
        )
        .unwrap()
        .text;
    Expected {
        file,
        file_encodes,
        rgb,
        video,
    }
}

fn check(lines: &HashMap<String, (String, String)>, expected: &Expected) {
    let get = |label: &str| {
        lines
            .get(label)
            .unwrap_or_else(|| panic!("no `{label}` line in {lines:?}"))
            .clone()
    };
    let ok = |label: &str| {
        let (status, rest) = get(label);
        assert_eq!(status, "ok", "{label}: {rest}");
        rest
    };
    let error = |label: &str| {
        let (status, rest) = get(label);
        assert_eq!(status, "error", "{label} succeeded: {rest}");
        let mut parts = rest.splitn(3, '\t');
        let kind = parts.next().unwrap_or("").to_owned();
        let transient = parts.next().unwrap_or("") == "1";
        let message = parts.next().unwrap_or("").to_owned();
        assert!(!message.is_empty(), "{label}: an empty message");
        (kind, transient, message)
    };

    assert_eq!(ok("version"), env!("CARGO_PKG_VERSION"));
    // Each encode is told as it begins and after each of the tiny
    // encoder's 2 layers.
    let progress = ok("progress");
    let encodes = expected.file_encodes;
    assert_eq!(
        progress,
        format!("{}\t{encodes}\t2\t1.00", encodes * 3),
        "calls, encodes, layers, last fraction"
    );
    let (kind, transient, _) = error("progress-cancel");
    assert_eq!((kind.as_str(), transient), ("cancelled", true));
    assert_eq!(
        ok("progress-stopped-at"),
        "3.1",
        "a cancel set from the progress callback stops the encode at that layer"
    );
    assert!(!expected.file.is_empty());
    assert_eq!(ok("file"), expected.file, "C and Rust captions differ");
    assert_eq!(ok("stream"), expected.file, "the streamed pieces");
    assert_eq!(ok("stream-returned"), expected.file);
    assert!(ok("stream-pieces").parse::<u32>().unwrap() >= 1);
    assert_eq!(ok("bytes"), expected.file);
    assert_eq!(ok("rgb"), expected.rgb);
    assert_eq!(ok("after-model-free"), expected.file);

    assert!(!expected.video.is_empty());
    assert_eq!(ok("video"), expected.video, "C and Rust answers differ");
    assert_eq!(
        ok("video-encodes"),
        format!("{VIDEO_FRAMES}\t{VIDEO_FRAMES}"),
        "encodes begun, and encodes of the video: one overview per frame, no tile"
    );
    assert_eq!(error("video-bad").0, "video_decode");
    let (kind, _, message) = error("video-null");
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("video_path"), "{message}");

    // The batch call: in order, the copy answered from the first image, bad
    // files as their own results.
    assert_eq!(ok("batch"), "4\t4\t1", "reported, callbacks, in order");
    assert_eq!(ok("batch-0"), expected.file);
    assert_eq!(ok("batch-0-copy-of"), "-1");
    assert_eq!(error("batch-1").0, "image_decode");
    assert_eq!(ok("batch-2"), expected.file);
    assert_eq!(ok("batch-2-copy-of"), "0", "the same pixels as image 0");
    assert_eq!(error("batch-3").0, "image_read");
    let (status, rest) = get("batch-null-path");
    assert_eq!(status, "error");
    assert!(
        rest.starts_with("invalid_argument\tpaths[1] is NULL"),
        "{rest}"
    );

    let (kind, transient, _) = error("cancel");
    assert_eq!((kind.as_str(), transient), ("cancelled", true));
    assert_eq!(
        ok("cancel-pieces"),
        "1",
        "the cancel from the other thread must stop generation at the next token"
    );
    // A callback that calls into its own session gets `session_busy`
    // (never a second `&mut` of the session), and its caption finishes.
    assert_eq!(ok("reentered"), "session_busy");
    assert_eq!(ok("reentered-outer"), expected.file);
    assert_eq!(error("bad").0, "image_decode");
    let (kind, transient, message) = error("missing");
    assert_eq!((kind.as_str(), transient), ("image_read", true));
    assert!(message.contains("/nonexistent/image.png"), "{message}");
    let (kind, _, message) = error("null-path");
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("image_path"), "{message}");
    assert_eq!(error("null-session").0, "invalid_argument");
    assert_eq!(error("zero-tokens").0, "invalid_option");
    assert_eq!(
        get("load-missing"),
        ("error".to_owned(), "file_not_found".to_owned())
    );
    ok("done");
}

#[test]
fn a_c_program_linked_against_the_shared_library_captions_like_rust() {
    let dir = scratch("c-api-shared");
    let lib = library_dir();
    let exe = compile(
        &dir,
        &[
            &format!("-L{}", lib.display()),
            "-lsmolvlm_capi",
            &format!("-Wl,-rpath,{}", lib.display()),
            "-lpthread",
        ],
    );
    let (good, bad, video) = images(&dir);
    check(&run(&exe, &good, &bad, &video), &expected(&good, &video));
}

#[test]
fn a_c_program_linked_against_the_static_library_captions_like_rust() {
    let dir = scratch("c-api-static");
    let archive = library_dir().join("libsmolvlm_capi.a");
    assert!(archive.exists(), "no {}", archive.display());
    let exe = compile(
        &dir,
        &[
            archive.to_str().unwrap(),
            "-lstdc++",
            "-lgomp",
            "-lm",
            "-lpthread",
            "-ldl",
        ],
    );
    let (good, bad, video) = images(&dir);
    check(&run(&exe, &good, &bad, &video), &expected(&good, &video));
}
