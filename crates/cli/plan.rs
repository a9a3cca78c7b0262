//! `smolvlm caption --plan`: what a run would cost, before running it.
//!
//! Reads each image's header only (size and EXIF orientation), plans its
//! tiles as captioning would, and times one tile encode on this machine to
//! estimate the vision encoder's share, which is nearly all of a caption at
//! real scale. A video is probed (its frame count, rate and length) and
//! costs one encode per frame SmolVLM2's sampling rule picks. No image or
//! frame is decoded and nothing else is encoded.

use std::time::Duration;

use smolvlm::video::Video;

use crate::exit::Exit;
use crate::inputs::Inputs;
use crate::settings::Settings;

/// Prints the plan of `inputs` under `settings` to stdout.
pub fn run(settings: &Settings, inputs: &Inputs) -> Exit {
    let model = match settings.model.load() {
        Ok(model) => model,
        Err(message) => return Exit::usage(&message),
    };
    let preprocessor = model.preprocessor(settings.model.image.clone());
    let per_tile = model.vision().tokens_per_tile;

    let (mut planned, mut failed, mut tiles, mut encodes, mut tokens) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    println!("image\tsize\tgrid\ttiles\timage_tokens");
    let (mut videos, mut frames) = (0u64, 0u64);
    for input in &inputs.images {
        let path = input.path.display();
        if input.video {
            // Each sampled frame is one overview encode (fewer when they
            // would not fit the context).
            let video = settings.video.apply(Video::file(&input.path));
            match video.probe() {
                Ok(meta) => {
                    let shown = video.sampled_frames(&meta).len() as u64;
                    videos += 1;
                    frames += shown;
                    encodes += shown;
                    tokens += shown * u64::from(per_tile);
                    println!(
                        "{path}	video {:.1} s	{shown} frames	0	{}",
                        meta.duration,
                        shown * u64::from(per_tile)
                    );
                }
                Err(e) => {
                    failed += 1;
                    println!("{path}	error: {e}");
                }
            }
            continue;
        }
        match preprocessor.plan_file(&input.path) {
            Ok(plan) => {
                planned += 1;
                tiles += u64::from(plan.tiles());
                // idefics3 encodes the overview as one more tile.
                encodes += u64::from(plan.tiles()) + 1;
                tokens += u64::from(plan.image_tokens);
                println!(
                    "{path}\t{}x{}\t{}x{}\t{}\t{}",
                    plan.width,
                    plan.height,
                    plan.cols,
                    plan.rows,
                    plan.tiles(),
                    plan.image_tokens
                );
            }
            Err(e) => {
                failed += 1;
                println!("{path}\terror: {e}");
            }
        }
    }
    let videos_line = if videos > 0 {
        format!(
            ", {videos} video{} of {frames} frame{}",
            plural(videos),
            plural(frames)
        )
    } else {
        String::new()
    };
    println!(
        "total\t{planned} image{}{videos_line}\t{tiles} tiles + {planned} overview{}\t{encodes} encodes\t{tokens} image tokens ({per_tile} per tile)",
        plural(planned),
        plural(planned),
    );
    if failed > 0 {
        println!("unreadable\t{failed} image{}", plural(failed));
    }
    if encodes > 0 {
        match estimate(&model, encodes, settings.parallel) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("smolvlm: cannot time a tile encode: {e}");
                return Exit::Failures;
            }
        }
    }
    if failed > 0 {
        Exit::Failures
    } else {
        Exit::Success
    }
}

/// The estimate line, from one timed tile encode on a session like the run's.
fn estimate(model: &smolvlm::Model, encodes: u64, parallel: usize) -> smolvlm::Result<String> {
    let mut session = model.session()?;
    let per_tile = session.time_tile_encode()?;
    let threads = model.info().vision_threads;
    let sessions = u32::try_from(parallel.max(1)).unwrap_or(u32::MAX);
    let serial = per_tile.saturating_mul(u32::try_from(encodes).unwrap_or(u32::MAX));
    let wall = serial / sessions;
    Ok(format!(
        "estimate\tone tile encode {:.2} s on {threads} thread{}; {encodes} encodes x {:.2} s / {sessions} session{} = {} of vision encoding (text decoding adds a few percent)",
        per_tile.as_secs_f64(),
        plural(u64::from(threads)),
        per_tile.as_secs_f64(),
        plural(u64::from(sessions)),
        human(wall),
    ))
}

fn human(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{:.1} s", d.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
