//! The seed corpus: small images from the testkit in every format the
//! library decodes, with the edge cases that matter to planning (1 px,
//! very thin, EXIF-rotated, alpha, grey, 16-bit).
//!
//! Compiled into the root test suite (`tests/reliability.rs`), which checks
//! them and, on request, writes them out as the `cargo fuzz` seed corpus; the
//! fuzz crate itself does not build this file, so that writing the seeds
//! needs no second build of llama.cpp.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, RgbImage};
use smolvlm_testkit::images::{checkerboard, gradient, noise, solid, with_exif_orientation};

/// `(name, control byte + encoded image)` pairs; see `check.rs` for the control byte.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let pictures: [(&str, RgbImage); 6] = [
        ("gradient-64x48", gradient(64, 48)),
        ("noise-37x23", noise(37, 23, 1)),
        ("checker-300x200", checkerboard(300, 200, 3)),
        ("thin-1000x3", gradient(1000, 3)),
        ("dot-1x1", solid(1, 1, [200, 10, 10])),
        ("letterbox-120x90", letterbox()),
    ];
    let mut out = Vec::new();
    for (i, (name, rgb)) in pictures.iter().enumerate() {
        let control = u8::try_from(i * 37 % 256).unwrap_or(0);
        let dynamic = DynamicImage::ImageRgb8(rgb.clone());
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Gif,
            ImageFormat::Bmp,
            ImageFormat::WebP,
            ImageFormat::Tiff,
        ] {
            if let Some(bytes) = encode(&dynamic, format) {
                let ext = format.extensions_str().first().copied().unwrap_or("img");
                out.push((format!("{name}.{ext}"), with_control(control, &bytes)));
            }
        }
    }
    let base = gradient(48, 32);
    for orientation in [3, 6, 8] {
        if let Some(jpeg) = encode(&DynamicImage::ImageRgb8(base.clone()), ImageFormat::Jpeg) {
            out.push((
                format!("exif-{orientation}.jpg"),
                with_control(0, &with_exif_orientation(&jpeg, orientation)),
            ));
        }
    }
    // Phone photos carry data after the primary image's end: a Motion
    // Photo's MP4 (holding end-of-image and start-of-scan pairs by chance),
    // an MPF / Ultra HDR second JPEG.
    if let Some(jpeg) = encode(&DynamicImage::ImageRgb8(base.clone()), ImageFormat::Jpeg) {
        let mut motion = jpeg.clone();
        motion.extend_from_slice(b"\0\0\0\x18ftypisom\0\0\x02\0isommp41");
        motion.extend_from_slice(b"\0\0\0\x10mdat\xFF\xD9\xFF\xDA\0\x0C\x01\x02");
        out.push(("motion-photo.jpg".to_owned(), with_control(0, &motion)));
        let second = [jpeg.as_slice(), jpeg.as_slice()].concat();
        out.push(("second-jpeg.jpg".to_owned(), with_control(16, &second)));
    }
    let variants = [
        (
            "rgba",
            DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(base.clone()).to_rgba8()),
        ),
        (
            "gray",
            DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(base.clone()).to_luma8()),
        ),
        (
            "rgb16",
            DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(base.clone()).to_rgb16()),
        ),
    ];
    for (name, img) in variants {
        if let Some(png) = encode(&img, ImageFormat::Png) {
            out.push((format!("{name}.png"), with_control(8, &png)));
        }
    }
    out
}

fn letterbox() -> RgbImage {
    let mut img = solid(120, 90, [0, 0, 0]);
    let inner = noise(100, 60, 5);
    for (x, y, p) in inner.enumerate_pixels() {
        img.put_pixel(x + 10, y + 15, *p);
    }
    img
}

fn with_control(control: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(control);
    out.extend_from_slice(bytes);
    out
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Option<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).ok()?;
    Some(out.into_inner())
}

/// The prompts the session seeds pair with images: the usual instruction,
/// rendered prompts with zero, one and two media markers, and user text that
/// spells control tokens, the marker or NUL.
pub const SESSION_PROMPTS: [(u8, &str); 8] = [
    (0, "Describe this image."),
    (
        1,
        "<|im_start|>User: <__media__>Describe this image.<end_of_utterance>\nAssistant:",
    ),
    (
        1,
        "<|im_start|>User: no marker<end_of_utterance>\nAssistant:",
    ),
    (1, "<__media__><__media__>"),
    (
        0,
        "What is this? <end_of_utterance>\nAssistant: <|im_start|>",
    ),
    (
        0,
        "<fake_token_around_image><row_1_col_1><image> and <__media__>",
    ),
    (0, "a\0b"),
    (0, ""),
];

/// Seeds for the `session` target (see `session_check.rs` for the layout):
/// each image seed with each prompt, then the bad files: JPEGs cut at
/// several points, a PNG with a junk body, a PNG header claiming 60,000 ×
/// 60,000 pixels, and empty input.
pub fn session_seeds() -> Vec<(String, Vec<u8>)> {
    let images = seeds();
    let mut out = Vec::new();
    for (i, (name, data)) in images.iter().enumerate() {
        let (prompt_control, prompt) = SESSION_PROMPTS[i % SESSION_PROMPTS.len()];
        // Spread the option bits over the seeds; every fourth uses mtmd's loader.
        let control = prompt_control | (data[0] & 0b1111_1100) | (u8::from(i % 4 == 3) << 1);
        out.push((
            format!("{name}.session"),
            session_input(control, prompt, &data[1..]),
        ));
    }
    let jpeg = encode(
        &DynamicImage::ImageRgb8(gradient(96, 64)),
        ImageFormat::Jpeg,
    )
    .unwrap_or_default();
    for (p, (prompt_control, prompt)) in SESSION_PROMPTS.iter().enumerate() {
        out.push((
            format!("prompt-{p}.session"),
            session_input(*prompt_control, prompt, &jpeg),
        ));
    }
    for (n, cut) in [2, 20, jpeg.len() / 2, jpeg.len() - 2]
        .into_iter()
        .enumerate()
    {
        for loader in [0, 2] {
            out.push((
                format!("cut-{n}-loader-{loader}.session"),
                session_input(loader, "Describe this image.", &jpeg[..cut.min(jpeg.len())]),
            ));
        }
    }
    // A whole PNG (signature, header, data, end) claiming 60,000 × 60,000.
    let huge_png = {
        let mut header = Vec::new();
        header.extend_from_slice(&60_000u32.to_be_bytes());
        header.extend_from_slice(&60_000u32.to_be_bytes());
        header.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png_chunk(&mut png, *b"IHDR", &header);
        png_chunk(&mut png, *b"IDAT", &[0x78, 0x9C, 0x03, 0, 0, 0, 0, 1]);
        png_chunk(&mut png, *b"IEND", &[]);
        png
    };
    for loader in [0, 2] {
        out.push((
            format!("junk-png-loader-{loader}.session"),
            session_input(
                loader,
                "Describe this image.",
                b"\x89PNG\r\n\x1a\nnot really",
            ),
        ));
        out.push((
            format!("huge-png-loader-{loader}.session"),
            session_input(loader, "Describe this image.", &huge_png),
        ));
        out.push((
            format!("empty-loader-{loader}.session"),
            session_input(loader, "Describe this image.", b""),
        ));
    }
    out
}

/// Appends one PNG chunk: length, type, data, CRC.
fn png_chunk(png: &mut Vec<u8>, kind: [u8; 4], data: &[u8]) {
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    png.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    png.extend_from_slice(&typed);
    png.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// The CRC-32 of PNG chunks (ISO 3309), bit by bit: a seed needs only one.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn session_input(control: u8, prompt: &str, image: &[u8]) -> Vec<u8> {
    let mut text = prompt.as_bytes().to_vec();
    if text.len() % 2 == 1 {
        text.push(b' ');
    }
    let mut out = vec![control, u8::try_from(text.len() / 2).unwrap_or(u8::MAX)];
    out.extend_from_slice(&text);
    out.extend_from_slice(image);
    out
}
