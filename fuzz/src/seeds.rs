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
