//! One fuzz input through the image path: decode, plan, resize.
//!
//! Shared, as a source file, by the `cargo fuzz` target (`fuzz_targets/prepare.rs`)
//! and by the stable-Rust replay and mutation test in `tests/reliability.rs`,
//! so that both check exactly the same thing.
//!
//! The first byte picks the projector parameters and options; the rest is the
//! encoded image. An input must give a [`PreparedImage`] that keeps the plan's
//! promises, or a typed [`ImageError`]; never a panic, a hang or an
//! internal-error variant.

use smolvlm::image::{
    is_fixed_point, DecodeLimits, ImageOptions, PreparedImage, Preprocessor, VisionParams,
};
use smolvlm::ImageError;

/// Limits small enough that the fuzzer spends its time on parsing rather
/// than on decoding legitimately huge images.
pub fn limits() -> DecodeLimits {
    DecodeLimits {
        max_width: 8192,
        max_height: 8192,
        max_pixels: 8 << 20,
        max_alloc: 256 << 20,
    }
}

/// The projector parameters and options the control byte selects.
pub fn setup(control: u8) -> (VisionParams, ImageOptions) {
    let mut vision = match control & 0b11 {
        // The tiny test model.
        0 => VisionParams {
            tile_size: 64,
            longest_edge: Some(256),
            tokens_per_tile: 4,
            pixels_per_token: 1024,
            max_tiles: None,
        },
        // SmolVLM 256M/500M.
        1 => VisionParams {
            tile_size: 512,
            longest_edge: Some(2048),
            tokens_per_tile: 64,
            pixels_per_token: 4096,
            max_tiles: None,
        },
        // SmolVLM 2.2B.
        2 => VisionParams {
            tile_size: 384,
            longest_edge: Some(1536),
            tokens_per_tile: 81,
            pixels_per_token: 1764,
            max_tiles: None,
        },
        // A tile budget: mtmd's pixel-count path.
        _ => VisionParams {
            tile_size: 64,
            longest_edge: Some(256),
            tokens_per_tile: 4,
            pixels_per_token: 1024,
            max_tiles: Some(u32::from(control >> 5) + 1),
        },
    };
    if control & 0b11 != 3 && control & 0x80 != 0 {
        vision.max_tiles = Some(u32::from((control >> 5) & 0b11) + 1);
    }
    let options = ImageOptions::default()
        .with_limits(limits())
        .with_presize(control & 0b100 == 0)
        .with_smart_crop(control & 0b1000 != 0)
        .with_fast_jpeg(control & 0b1_0000 == 0);
    (vision, options)
}

/// Runs one input; panics (with the input's description) on a broken promise.
pub fn check(data: &[u8]) {
    let Some((&control, bytes)) = data.split_first() else {
        return;
    };
    let (vision, options) = setup(control);
    let presize = control & 0b100 == 0;
    let mut prep = Preprocessor::new(vision, options);
    match prep.prepare(bytes.into()) {
        Ok(prepared) => check_prepared(&prepared, &vision, presize, control),
        Err(ImageError::Resize(e)) => panic!("internal resize error (control {control:#04x}): {e}"),
        Err(e) => {
            // Every message must render.
            let _ = e.to_string();
        }
    }
}

fn check_prepared(prepared: &PreparedImage, vision: &VisionParams, presize: bool, control: u8) {
    let plan = prepared.plan();
    let (w, h) = prepared.image().dimensions();
    assert!(
        w > 0 && h > 0,
        "empty output {w}x{h} (control {control:#04x})"
    );
    assert!(plan.tiles() >= 1, "no tiles: {plan:?}");
    assert_eq!(
        (plan.width, plan.height),
        (plan.cols * vision.tile_size, plan.rows * vision.tile_size),
        "the plan is not a whole number of tiles (control {control:#04x})"
    );
    assert_eq!(
        plan.image_tokens,
        (plan.tiles() + 1) * vision.tokens_per_tile,
        "image tokens: {plan:?}"
    );
    if let Some(max) = vision.max_tiles {
        assert!(plan.tiles() <= max, "{plan:?} exceeds the budget {max}");
    }
    assert!(
        is_fixed_point(plan, vision),
        "mtmd would resize the planned size again: {plan:?} (control {control:#04x})"
    );
    if presize {
        assert_eq!(
            (w, h),
            (plan.width, plan.height),
            "the image is not at its planned size (control {control:#04x})"
        );
    }
}
