//! Deterministic synthetic test images, and writers for them.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{Rgb, RgbImage};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// An animated GIF of `frames`, each shown for `delay_ms`: a short video
/// for the video tests.
///
/// # Errors
///
/// The GIF encoder's (none for in-memory output in practice).
pub fn animated_gif(
    frames: impl IntoIterator<Item = image::RgbaImage>,
    delay_ms: u32,
) -> image::ImageResult<Vec<u8>> {
    let mut bytes = Vec::new();
    {
        let mut encoder = GifEncoder::new(&mut bytes);
        for pixels in frames {
            let delay = image::Delay::from_numer_denom_ms(delay_ms, 1);
            encoder.encode_frame(image::Frame::from_parts(pixels, 0, 0, delay))?;
        }
    }
    Ok(bytes)
}

/// A smooth gradient: red grows left to right, green top to bottom, blue
/// toward the top-left corner.
///
/// No rotation or flip maps it onto itself, so a test can tell whether an
/// orientation was applied.
#[must_use]
pub fn gradient(w: u32, h: u32) -> RgbImage {
    let fx = |x: u32| x as f32 / w.saturating_sub(1).max(1) as f32;
    let fy = |y: u32| y as f32 / h.saturating_sub(1).max(1) as f32;
    RgbImage::from_fn(w, h, |x, y| {
        let (u, v) = (fx(x), fy(y));
        let to_u8 = |t: f32| (t.clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb([to_u8(u), to_u8(v), to_u8(1.0 - (u + v) / 2.0)])
    })
}

/// Uniform random pixels from a seeded generator: the same seed gives the same
/// image on every run and platform.
#[must_use]
pub fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut pixels = vec![0u8; w as usize * h as usize * 3];
    rng.fill_bytes(&mut pixels);
    RgbImage::from_raw(w, h, pixels).unwrap_or_else(|| RgbImage::new(w, h))
}

/// Black and white squares of `cell` pixels (at least 1), white at the top left.
#[must_use]
pub fn checkerboard(w: u32, h: u32, cell: u32) -> RgbImage {
    let cell = cell.max(1);
    RgbImage::from_fn(w, h, |x, y| {
        if (x / cell + y / cell).is_multiple_of(2) {
            Rgb([255, 255, 255])
        } else {
            Rgb([0, 0, 0])
        }
    })
}

/// One colour everywhere.
#[must_use]
pub fn solid(w: u32, h: u32, rgb: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(rgb))
}

/// Writes `img` as a PNG file.
///
/// # Errors
///
/// Any I/O or encoding error.
pub fn write_png(img: &RgbImage, path: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    img.write_with_encoder(PngEncoder::new(&mut out))
        .map_err(io::Error::other)?;
    out.flush()
}

/// Writes `img` as a baseline JPEG file with `quality` in 1..=100.
///
/// # Errors
///
/// Any I/O or encoding error.
pub fn write_jpeg(img: &RgbImage, path: &Path, quality: u8) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    img.write_with_encoder(JpegEncoder::new_with_quality(&mut out, quality))
        .map_err(io::Error::other)?;
    out.flush()
}

/// Inserts an EXIF APP1 segment holding only an orientation tag (1..=8)
/// right after a JPEG's SOI marker.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u8) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&[0, orientation, 0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2.min(jpeg.len())].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(
        &u16::try_from(app1.len() + 2)
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&app1);
    out.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_is_asymmetric() {
        let img = gradient(40, 30);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 255]);
        assert_eq!(img.get_pixel(39, 29).0, [255, 255, 0]);
        let rotated = image::imageops::rotate180(&img);
        let flipped = image::imageops::flip_horizontal(&img);
        assert_ne!(img, rotated);
        assert_ne!(img, flipped);
        assert_ne!(img, image::imageops::flip_vertical(&img));
        // Degenerate sizes must not divide by zero.
        assert_eq!(gradient(1, 1).dimensions(), (1, 1));
    }

    #[test]
    fn noise_is_seeded() {
        assert_eq!(noise(16, 8, 1), noise(16, 8, 1));
        assert_ne!(noise(16, 8, 1), noise(16, 8, 2));
    }

    #[test]
    fn checkerboard_and_solid() {
        let board = checkerboard(8, 8, 2);
        assert_eq!(board.get_pixel(0, 0).0, [255; 3]);
        assert_eq!(board.get_pixel(2, 0).0, [0; 3]);
        assert_eq!(board.get_pixel(2, 2).0, [255; 3]);
        assert_eq!(solid(3, 2, [1, 2, 3]).get_pixel(2, 1).0, [1, 2, 3]);
    }

    #[test]
    fn png_round_trip_and_jpeg() {
        let dir = std::env::temp_dir().join(format!("smolvlm-testkit-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = gradient(33, 17);
        let png = dir.join("g.png");
        write_png(&img, &png).unwrap();
        assert_eq!(image::open(&png).unwrap().to_rgb8(), img);
        let jpg = dir.join("g.jpg");
        write_jpeg(&img, &jpg, 90).unwrap();
        assert_eq!(image::open(&jpg).unwrap().to_rgb8().dimensions(), (33, 17));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
