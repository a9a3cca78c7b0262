//! `smolvlm info`: the in-process successor of the old server's info and
//! health check. What the model is, how it runs, and a one-image self-test.

use std::time::Instant;

use image::{Rgb, RgbImage};
use smolvlm::{GenerationOptions, Model};

use crate::args::InfoArgs;
use crate::exit::Exit;
use crate::model::ModelSettings;

/// Tokens the self-test generates: enough to run the sampling loop.
const SELF_TEST_TOKENS: u32 = 8;

/// Runs `smolvlm info`.
pub fn info(args: &InfoArgs) -> Exit {
    let settings = match ModelSettings::resolve(&args.model, 1, None, None) {
        Ok(s) => s,
        Err(message) => return Exit::usage(&message),
    };
    for warning in &settings.warnings {
        eprintln!("smolvlm: warning: {warning}");
    }
    let started = Instant::now();
    let model = match settings.load() {
        Ok(m) => m,
        Err(message) => return Exit::usage(&message),
    };
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    print_model(&model, &settings);
    println!("load:             {load_ms:.0} ms");
    if args.no_self_test {
        return Exit::Success;
    }
    self_test(&model, &settings)
}

fn print_model(model: &Model, settings: &ModelSettings) {
    let i = model.info();
    let edge = i.longest_edge.map_or("unset".to_owned(), |e| e.to_string());
    println!("model:            {}", i.files.model.display());
    println!("mmproj:           {}", i.files.mmproj.display());
    println!("architecture:     {}", i.architecture);
    println!("parameters:       {}", i.parameters);
    println!(
        "context length:   {} (session {})",
        i.context_length, i.context_size
    );
    println!("vocabulary:       {}", i.vocab_size);
    println!("embedding:        {}", i.embedding_size);
    println!("projector:        {}", i.projector);
    println!("tile size:        {} px", i.tile_size);
    println!("longest edge:     {edge}");
    println!("tokens per tile:  {}", i.tokens_per_tile);
    println!(
        "max tiles:        {}",
        settings
            .load
            .max_tiles()
            .map_or("unlimited".to_owned(), |t| t.to_string())
    );
    println!(
        "chat template:    {}",
        if i.has_chat_template {
            "yes"
        } else {
            "no (built-in SmolVLM template)"
        }
    );
    println!("backend:          {}", i.backend.join(", "));
    println!(
        "gpu offload:      {}",
        if i.gpu_offload { "yes" } else { "no" }
    );
    println!("threads:          {}", i.threads);
    println!("vision threads:   {}", i.vision_threads);
    println!(
        "smart crop:       {}",
        if settings.smart_crop { "on" } else { "off" }
    );
    if let Some(timeout) = settings.timeout {
        println!("timeout:          {} s", timeout.as_secs_f64());
    }
}

/// Captions a generated 640x480 gradient and reports whether it worked and
/// how long it took: the health check the old server answered over HTTP.
fn self_test(model: &Model, settings: &ModelSettings) -> Exit {
    let image = RgbImage::from_fn(640, 480, |x, y| {
        Rgb([
            (x * 255 / 639) as u8,
            (y * 255 / 479) as u8,
            (255 - (x + y) * 255 / 1118) as u8,
        ])
    });
    let mut options = GenerationOptions::default().with_max_tokens(SELF_TEST_TOKENS);
    if let Some(deadline) = settings.timeout {
        options = options.with_deadline(deadline);
    }
    let started = Instant::now();
    let result = model.session().and_then(|mut session| {
        session.set_image_options(settings.image.clone());
        session.caption(&image, "Describe this image.", &options)
    });
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match result {
        Ok(c) => {
            println!(
                "self-test:        ok, {ms:.0} ms ({} tile{}, {} image tokens, {} tokens generated; encode {:.0} ms, generate {:.0} ms)",
                c.tiles,
                if c.tiles == 1 { "" } else { "s" },
                c.image_tokens,
                c.tokens.len(),
                c.timings.encode.as_secs_f64() * 1e3,
                c.timings.generate.as_secs_f64() * 1e3,
            );
            Exit::Success
        }
        Err(e) => {
            println!(
                "self-test:        FAILED after {ms:.0} ms [{}]: {e}",
                e.kind()
            );
            Exit::Failures
        }
    }
}
