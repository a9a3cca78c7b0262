//! Videos, as SmolVLM2 sees them: frames sampled by its processor's rule,
//! each one overview image after its time, cut to fit the context, in every
//! place a user asks (session, conversation, worker, CLI).
//!
//! The prompt's text is pinned token for token against the reference
//! processor in the library's unit tests (`session::video`); these tests
//! pin what the session does with it.

use std::process::Command;

use image::{Rgba, RgbaImage};
use smolvlm::video::{sample_indices, Video};
use smolvlm::{
    CaptionError, Conversation, Error, Event, GenerationOptions, LoadOptions, Message, Model,
    Progress, Request, Worker,
};
use smolvlm_testkit::images::{animated_gif, gradient, write_png};
use smolvlm_testkit::TinyModelSpec;

use crate::util::{
    assert_captions_like_a_fresh_session, dump, files, files_with, greedy, load, model, TempDir,
};

/// A GIF of `n` frames of `delay_ms` each, every frame another colour.
fn gif(n: u32, delay_ms: u32) -> Vec<u8> {
    gif_from(n, delay_ms, 0)
}

/// [`gif`] with its colours moved on by `offset` frames.
fn gif_from(n: u32, delay_ms: u32, offset: u32) -> Vec<u8> {
    let frames = (offset..offset + n).map(|i| {
        let c = (i * 37 % 256) as u8;
        RgbaImage::from_pixel(48, 36, Rgba([c, 255 - c, (i * 11 % 256) as u8, 255]))
    });
    animated_gif(frames, delay_ms).unwrap()
}

/// How many vision encodes a call began (one per frame, or per tile).
fn encodes_begun(events: &[(usize, usize, usize)]) -> usize {
    events.iter().filter(|(_, _, layer)| *layer == 0).count()
}

/// Asks about `video`, recording each encode's (encode, encodes, layer).
fn ask_counting(
    session: &mut smolvlm::Session,
    video: &Video,
    options: &GenerationOptions,
) -> (
    smolvlm::Result<smolvlm::Caption>,
    Vec<(usize, usize, usize)>,
) {
    let mut events = Vec::new();
    let caption = session.ask_video_observed(video, "What happens?", options, |p| {
        if let Progress::Encoding(at) = p {
            events.push((at.encode, at.encodes, at.layer));
        }
    });
    (caption, events)
}

#[test]
fn each_frame_is_one_overview_encode_and_the_report_says_which() {
    let mut session = model().session().unwrap();
    // 12 frames of 0.5 s: a 6 s video at 2 fps; one frame a second is six.
    let video = Video::bytes(gif(12, 500));
    let (caption, events) = ask_counting(&mut session, &video, &greedy());
    let caption = caption.unwrap();
    let per_frame = model().vision().tokens_per_tile as usize;

    assert_eq!((caption.frames, caption.frames_encoded), (6, 6));
    assert_eq!(encodes_begun(&events), 6, "one encode per frame, no tiles");
    assert!(events.iter().all(|&(_, encodes, _)| encodes == 6));
    assert_eq!(caption.image_tokens, 6 * per_frame);
    assert_eq!(
        (caption.tiles, caption.images, caption.images_encoded),
        (0, 0, 0)
    );

    let [report] = &caption.videos[..] else {
        panic!("{:?}", caption.videos)
    };
    assert_eq!((report.frames, report.sampled), (6, 6));
    assert!(!report.was_cut());
    assert_eq!((report.source_frames, report.source_fps), (12, 2.0));
    assert_eq!(report.seconds, 6.0);
    assert_eq!(report.timestamps, [0.0, 1.0, 2.0, 3.0, 4.0, 5.5]);

    // Deterministic, and a second session answers the same.
    let again = model()
        .session()
        .unwrap()
        .ask_video(&video, "What happens?", &greedy())
        .unwrap();
    assert_eq!(again.tokens, caption.tokens);
    assert_eq!(again.prompt_tokens, caption.prompt_tokens);
}

/// The tiny pair with SmolVLM2's vision geometry: 512-pixel tiles of 16-pixel
/// patches, shuffled by 4, so a frame is 64 tokens as on the real models.
fn frame_geometry_of_smolvlm2() -> TinyModelSpec {
    TinyModelSpec {
        tile_size: 512,
        patch_size: 16,
        scale_factor: 4,
        longest_edge: 2048,
        ..TinyModelSpec::default()
    }
}

#[test]
fn sixty_four_frames_fit_an_8192_token_context_with_room_for_the_answer() {
    let spec = frame_geometry_of_smolvlm2();
    let options = LoadOptions::default()
        .with_threads(2)
        .with_context_size(8192);
    let model = Model::load(&files_with(&spec), &options).unwrap();
    assert_eq!(model.vision().tokens_per_tile, 64);
    let mut session = model.session().unwrap();
    // 100 s at 1 fps: the processor's rule takes 64 frames.
    let video = Video::bytes(gif(100, 1000));
    let options = GenerationOptions::default().with_max_tokens(512);
    let (caption, events) = ask_counting(&mut session, &video, &options);
    let caption = caption.unwrap();
    assert_eq!((caption.frames, caption.frames_encoded), (64, 64));
    assert!(!caption.videos[0].was_cut());
    assert_eq!(encodes_begun(&events), 64);
    assert_eq!(caption.image_tokens, 64 * 64);
    assert!(
        caption.prompt_tokens + 512 <= 8192,
        "{} prompt tokens",
        caption.prompt_tokens
    );
    // The 1 s skip at each end applies to a video this long.
    let indices: Vec<u64> = (caption.videos[0].timestamps.iter())
        .map(|&s| s.round() as u64)
        .collect();
    assert_eq!(indices, sample_indices(100, 1.0, 100.0, 1.0, 64));
    assert_eq!(indices.first(), Some(&1));
}

#[test]
fn a_clip_too_long_for_the_context_is_cut_by_the_rule_and_says_so() {
    let model = load(
        &LoadOptions::default()
            .with_threads(2)
            .with_context_size(512),
    );
    let mut session = model.session().unwrap();
    let video = Video::bytes(gif(100, 1000));
    let (caption, events) = ask_counting(&mut session, &video, &greedy());
    let caption = caption.unwrap();
    let report = &caption.videos[0];
    assert!(report.was_cut());
    assert_eq!(report.sampled, 64);
    assert!(report.frames < 64 && report.frames > 1, "{report:?}");
    assert_eq!(caption.frames_encoded, report.frames);
    assert_eq!(
        encodes_begun(&events),
        report.frames,
        "no encode before the cut"
    );
    assert!(caption.prompt_tokens + 16 <= 512);
    // The frames shown are the processor's rule at the lower maximum.
    let indices: Vec<u64> = report.timestamps.iter().map(|&s| s as u64).collect();
    assert_eq!(indices, sample_indices(100, 1.0, 100.0, 1.0, report.frames));

    // The cut keeps as many frames as fit: one more does not.
    let one_more = Video::bytes(gif(100, 1000)).with_max_frames(report.frames + 1);
    let again = model
        .session()
        .unwrap()
        .ask_video(&one_more, "What happens?", &greedy())
        .unwrap();
    assert_eq!(again.videos[0].frames, report.frames);
    assert!(again.videos[0].was_cut());
}

#[test]
fn a_video_that_cannot_fit_even_one_frame_is_a_typed_error_before_any_encode() {
    let model = load(&LoadOptions::default().with_threads(2).with_context_size(64));
    let mut session = model.session().unwrap();
    // llama.cpp pads a context to a multiple of 256 tokens, so the answer
    // takes almost all of it.
    let options = GenerationOptions::default().with_max_tokens(240);
    let (caption, events) = ask_counting(&mut session, &Video::bytes(gif(4, 500)), &options);
    let err = caption.unwrap_err();
    let Error::Caption(CaptionError::VideoTooLong {
        n_ctx,
        answer: 240,
        tokens,
    }) = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(n_ctx, 256);
    assert!(tokens > 256, "{tokens}");
    assert_eq!(err.kind(), "video_too_long");
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_follow_up_about_a_video_encodes_nothing_and_answers_as_a_fresh_session() {
    let mut session = model().session().unwrap();
    let mut chat = Conversation::new();
    chat.push(
        Message::user()
            .video(Video::bytes(gif(8, 500)))
            .text("What happens?"),
    );
    let first = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((first.frames, first.frames_encoded), (4, 4));

    chat.user_text("And then?");
    let asked = chat.clone();
    let second = session.reply(&mut chat, &greedy()).unwrap();
    assert_eq!((second.frames, second.frames_encoded), (4, 0));
    assert!(second.cached_tokens >= first.prompt_tokens);

    let mut fresh_chat = asked;
    let fresh = model()
        .session()
        .unwrap()
        .reply(&mut fresh_chat, &greedy())
        .unwrap();
    assert_eq!(fresh.frames_encoded, 4);
    assert_eq!(second.tokens, fresh.tokens);
    assert_eq!(second.prompt_tokens, fresh.prompt_tokens);
}

#[test]
fn a_conversation_whose_video_file_changed_says_so() {
    let dir = TempDir::new("video-changed");
    let path = dir.path("clip.gif");
    std::fs::write(&path, gif(8, 500)).unwrap();
    let mut session = model().session().unwrap();
    let mut chat = Conversation::new();
    chat.push(
        Message::user()
            .video(Video::file(&path))
            .text("What happens?"),
    );
    session.reply(&mut chat, &greedy()).unwrap();
    // Another session (no cache) must read the frames again: they differ.
    std::fs::write(&path, gif_from(8, 500, 3)).unwrap();
    chat.user_text("And then?");
    let err = model()
        .session()
        .unwrap()
        .reply(&mut chat, &greedy())
        .unwrap_err();
    assert_eq!(err.kind(), "video_changed");
}

#[test]
fn a_worker_answers_about_a_video() {
    let worker = Worker::new(model(), 1, 4).unwrap();
    let mut job = worker
        .submit(Request::video(Video::bytes(gif(12, 500)), "What happens?").with_options(greedy()))
        .unwrap();
    let mut frames_encoded = 0;
    let caption = loop {
        match job.next_event() {
            Some(Event::Encoding(at)) if at.layer == 0 => frames_encoded += 1,
            Some(Event::Finished(caption)) => break caption,
            Some(Event::Failed(e)) => panic!("{e}"),
            Some(_) => {}
            None => panic!("the job ended without an answer"),
        }
    };
    assert_eq!((caption.frames, frames_encoded), (6, 6));
    let direct = model()
        .session()
        .unwrap()
        .ask_video(&Video::bytes(gif(12, 500)), "What happens?", &greedy())
        .unwrap();
    assert_eq!(caption.tokens, direct.tokens);
}

#[test]
fn a_folder_of_frames_is_a_video_at_its_stated_rate() {
    let dir = TempDir::new("video-folder");
    for i in 0..6 {
        write_png(
            &gradient(40 + i, 30),
            &dir.path(&format!("frame_{i:03}.png")),
        )
        .unwrap();
    }
    std::fs::write(dir.path("notes.txt"), "not a frame").unwrap();
    let video = Video::frames_in(&dir.0, 2.0);
    let caption = model()
        .session()
        .unwrap()
        .ask_video(&video, "What happens?", &greedy())
        .unwrap();
    let report = &caption.videos[0];
    assert_eq!((report.source_frames, report.seconds), (6, 3.0));
    assert_eq!(report.timestamps, [0.0, 1.0, 2.5]);
    assert_eq!(caption.frames_encoded, 3);
}

#[test]
fn bad_videos_are_typed_errors_and_the_session_goes_on() {
    let mut session = model().session().unwrap();
    let cases = [
        (Video::file("/no/such/clip.gif"), "video_read"),
        (Video::bytes(b"GIF89a broken".to_vec()), "video_decode"),
        (
            Video::bytes(gif(4, 100)).with_max_frames(0),
            "video_sampling",
        ),
        (
            Video::bytes(gif(4, 100)).with_fps(f64::NAN),
            "video_sampling",
        ),
        (
            Video::frames_in("/no/such/folder", 1.0),
            "video_folder_unreadable",
        ),
        (Video::frames_in("/tmp", 0.0), "video_fps"),
    ];
    for (video, kind) in cases {
        let err = session
            .ask_video(&video, "What happens?", &greedy())
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(!err.to_string().is_empty());
    }
    assert_captions_like_a_fresh_session(&mut session, &gradient(96, 64));
}

#[test]
fn cli_ask_video_answers_and_records_the_frames() {
    let dir = TempDir::new("video-cli");
    let clip = dir.path("clip.gif");
    std::fs::write(&clip, gif(12, 500)).unwrap();
    let record = dir.path("answer.json");
    let f = files();
    let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .arg("ask")
        .args(["--model".as_ref(), f.model.as_os_str()])
        .args(["--mmproj".as_ref(), f.mmproj.as_os_str()])
        .args(["--threads", "2", "-n", "8", "--video"])
        .arg(&clip)
        .args(["-p", "What happens?", "-o"])
        .arg(&record)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", dump(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).trim().is_empty());
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let per_frame = model().vision().tokens_per_tile;
    assert_eq!(json["video"], clip.to_string_lossy().as_ref());
    assert_eq!(json["frames"], 6);
    assert_eq!(json["seconds"], 6.0);
    assert_eq!(json["image_tokens"], 6 * per_frame);
    assert_eq!(json["tiles"], 0);
    assert!(json.get("frames_sampled").is_none(), "{json}");

    // A folder needs its frame rate: a usage error that says so.
    let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .arg("ask")
        .args(["--model".as_ref(), f.model.as_os_str()])
        .args(["--mmproj".as_ref(), f.mmproj.as_os_str()])
        .arg("--video")
        .arg(&dir.0)
        .args(["-p", "What happens?"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--frame-rate"));
}

/// An MP4 through ffmpeg: ignored in a plain `cargo test` (ffmpeg is not
/// one of the build's needs); `.ci/run` installs ffmpeg and runs it.
#[test]
#[ignore = "needs ffmpeg and ffprobe on PATH"]
fn an_mp4_is_read_through_ffmpeg() {
    let dir = TempDir::new("video-mp4");
    let clip = dir.path("clip.mp4");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=duration=5:size=96x72:rate=10")
        .args(["-pix_fmt", "yuv420p"])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", dump(&made));
    let caption = model()
        .session()
        .unwrap()
        .ask_video(&Video::file(&clip), "What happens?", &greedy())
        .unwrap();
    let report = &caption.videos[0];
    assert_eq!(
        (report.source_frames, report.source_fps, report.seconds),
        (50, 10.0, 5.0)
    );
    assert_eq!(caption.frames_encoded, 5);
    assert_eq!(report.timestamps, [0.0, 1.2, 2.4, 3.6, 4.9]);
    // The same bytes in memory answer the same.
    let from_bytes = model()
        .session()
        .unwrap()
        .ask_video(
            &Video::bytes(std::fs::read(&clip).unwrap()),
            "What happens?",
            &greedy(),
        )
        .unwrap();
    assert_eq!(from_bytes.tokens, caption.tokens);
}

/// `smolvlm caption` over a folder with `FILE` and these flags: its JSONL
/// records by key.
fn caption_folder(
    dir: &TempDir,
    records: &std::path::Path,
    flags: &[&str],
) -> (std::process::Output, Vec<serde_json::Value>) {
    let f = files();
    let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .arg("caption")
        .args(["--model".as_ref(), f.model.as_os_str()])
        .args(["--mmproj".as_ref(), f.mmproj.as_os_str()])
        .args(["--threads", "2", "-n", "8"])
        .args(flags)
        .arg(&dir.0)
        .arg("-o")
        .arg(records)
        .env_clear()
        .output()
        .unwrap();
    let text = std::fs::read_to_string(records).unwrap_or_default();
    let lines = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (out, lines)
}

fn by_key<'a>(records: &'a [serde_json::Value], key: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["key"] == key).collect()
}

#[test]
fn cli_caption_takes_a_folders_videos_only_with_video() {
    let dir = TempDir::new("video-caption");
    write_png(&gradient(96, 72), &dir.path("photo.png")).unwrap();
    std::fs::write(dir.path("clip.gif"), gif(12, 500)).unwrap();
    // Not a real MP4: with --video it is an error record of a video kind
    // (whether or not ffmpeg is here), and the run goes on.
    std::fs::write(dir.path("movie.mp4"), b"not a movie at all").unwrap();
    let records = TempDir::new("video-caption-records");
    let per_frame = model().vision().tokens_per_tile;

    // Without --video the folder captions as it always did: the GIF as one
    // image (its first frame), the MP4 skipped and counted.
    let (out, plain) = caption_folder(&dir, &records.path("plain.jsonl"), &[]);
    assert!(out.status.success(), "{}", dump(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 video skipped (--video captions them)"),
        "{}",
        dump(&out)
    );
    assert_eq!(plain.len(), 2, "{plain:?}");
    let gif_as_image = by_key(&plain, "clip.gif")[0];
    assert!(gif_as_image.get("frames").is_none(), "{gif_as_image}");
    assert!(by_key(&plain, "movie.mp4").is_empty());

    // With --video: one record per video, with its frames and seconds.
    let with = records.path("video.jsonl");
    let (out, videos) = caption_folder(&dir, &with, &["--video"]);
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    assert_eq!(videos.len(), 3, "{videos:?}");
    let clip = by_key(&videos, "clip.gif")[0];
    assert_eq!(clip["frames"], 6, "{clip}");
    assert_eq!(clip["seconds"], 6.0);
    assert_eq!(clip["image_tokens"], 6 * per_frame);
    assert_eq!(clip["tiles"], 0);
    assert!(clip["caption"].as_str().is_some_and(|c| !c.is_empty()));
    let movie = by_key(&videos, "movie.mp4")[0];
    let kind = movie["error"]["kind"].as_str().unwrap();
    assert!(
        ["video_decode", "video_tool_missing", "video_tool_failed"].contains(&kind),
        "{movie}"
    );
    // The photo is captioned as in the run without --video.
    let photo = |records: &[serde_json::Value]| by_key(records, "photo.png")[0]["caption"].clone();
    assert_eq!(photo(&videos), photo(&plain));

    // The video's caption is the library's: the same prompt ("Describe this
    // video." without -p) at the same context.
    let session_caption = load(
        &LoadOptions::default()
            .with_threads(2)
            .with_context_size(8192),
    )
    .session()
    .unwrap()
    .ask_video(
        &Video::file(dir.path("clip.gif")),
        "Describe this video.",
        &GenerationOptions::default().with_max_tokens(8),
    )
    .unwrap();
    assert_eq!(clip["caption"], session_caption.text.trim());

    // Resumed: the captioned video is skipped (the bad one is final).
    let (out, again) = caption_folder(&dir, &with, &["--video"]);
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    assert_eq!(again.len(), 3, "{again:?}");
}
