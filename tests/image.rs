//! The image pipeline: orientation, pixel formats, plans against mtmd,
//! budgets, antialiasing and a corpus of bad files.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use smolvlm::image::{ImageOptions, PreparedImage, Preprocessor, TilePlan, VisionParams};
use smolvlm::{Error, ImageError, LoadOptions, Model};
use smolvlm_testkit::images::{checkerboard, gradient, noise, with_exif_orientation};

use crate::util::{files, greedy, model, TempDir};

/// The tiny model's projector: 64-px tiles, 256-px longest edge.
fn tiny_vision() -> VisionParams {
    model().vision()
}

/// SmolVLM-256M's projector: 512-px tiles, 2048-px longest edge.
fn real_vision() -> VisionParams {
    VisionParams {
        tile_size: 512,
        longest_edge: Some(2048),
        tokens_per_tile: 64,
        pixels_per_token: 4096,
        max_tiles: None,
    }
}

fn prepare(
    vision: VisionParams,
    options: ImageOptions,
    bytes: &[u8],
) -> Result<PreparedImage, ImageError> {
    Preprocessor::new(vision, options).prepare(bytes.into())
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

/// An upright image whose eight orientations all differ: a gradient with a
/// bright block in the top-left corner.
fn asymmetric() -> RgbImage {
    let mut img = gradient(96, 64);
    for y in 4..20 {
        for x in 6..30 {
            img.put_pixel(x, y, Rgb([250, 250, 20]));
        }
    }
    img
}

fn oriented(img: &RgbImage, o: Orientation) -> RgbImage {
    let mut d = DynamicImage::ImageRgb8(img.clone());
    d.apply_orientation(o);
    d.into_rgb8()
}

const ORIENTATIONS: [Orientation; 8] = [
    Orientation::NoTransforms,
    Orientation::FlipHorizontal,
    Orientation::Rotate180,
    Orientation::FlipVertical,
    Orientation::Rotate90FlipH,
    Orientation::Rotate90,
    Orientation::Rotate270FlipH,
    Orientation::Rotate270,
];

fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn mean_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

#[test]
fn all_eight_exif_orientations_come_out_upright() {
    let upright = asymmetric();
    for o in ORIENTATIONS {
        // The stored image is the one that `o` turns upright.
        let stored = ORIENTATIONS
            .iter()
            .map(|t| oriented(&upright, *t))
            .find(|s| oriented(s, o) == upright)
            .unwrap();
        let bytes = with_exif_orientation(&jpeg(&stored, 95), o.to_exif());
        let as_is = ImageOptions::default().with_presize(false);
        let got = prepare(tiny_vision(), as_is, &bytes).unwrap();
        // Exactly the decoded stored pixels, turned upright ...
        let decoded = image::load_from_memory(&jpeg(&stored, 95))
            .unwrap()
            .into_rgb8();
        assert_eq!(
            got.image().dimensions(),
            oriented(&decoded, o).dimensions(),
            "orientation {o:?}"
        );
        assert_eq!(*got.image(), oriented(&decoded, o), "orientation {o:?}");
        // ... which is the upright picture up to JPEG loss, and no other orientation of it.
        assert!(mean_diff(got.image(), &upright) < 3.0, "orientation {o:?}");
        for wrong in ORIENTATIONS
            .iter()
            .filter(|w| oriented(&upright, **w) != upright)
        {
            let turned = oriented(&upright, *wrong);
            if turned.dimensions() == got.image().dimensions() {
                assert!(mean_diff(got.image(), &turned) > 10.0, "{o:?} vs {wrong:?}");
            }
        }
        // Resized to the plan, it matches the upright picture prepared the same way.
        let planned = prepare(tiny_vision(), ImageOptions::default(), &bytes).unwrap();
        let reference = Preprocessor::new(tiny_vision(), ImageOptions::default())
            .prepare((&decoded_upright(&stored, o)).into())
            .unwrap();
        assert_eq!(planned.plan(), reference.plan());
        // Rotating after the resize instead of before only changes rounding.
        let (mean, max) = (
            mean_diff(planned.image(), reference.image()),
            max_diff(planned.image(), reference.image()),
        );
        assert!(
            mean < 0.5 && max <= 24,
            "orientation {o:?}: mean {mean}, max {max}"
        );
    }
}

fn decoded_upright(stored: &RgbImage, o: Orientation) -> RgbImage {
    oriented(
        &image::load_from_memory(&jpeg(stored, 95))
            .unwrap()
            .into_rgb8(),
        o,
    )
}

#[test]
fn alpha_is_composited_onto_the_background() {
    // 256x192 is exactly the tiny model's plan for it, so no resize blurs the pixels.
    let mut rgba = RgbaImage::from_pixel(256, 192, Rgba([200, 100, 50, 255]));
    rgba.put_pixel(0, 0, Rgba([200, 100, 50, 0]));
    rgba.put_pixel(1, 0, Rgba([200, 100, 50, 128]));
    let bytes = encode(&DynamicImage::ImageRgba8(rgba), ImageFormat::Png);
    let white = prepare(tiny_vision(), ImageOptions::default(), &bytes).unwrap();
    assert_eq!(white.image().dimensions(), (256, 192));
    assert_eq!(white.image().get_pixel(0, 0), &Rgb([255, 255, 255]));
    assert_eq!(white.image().get_pixel(1, 0), &Rgb([227, 177, 152]));
    assert_eq!(white.image().get_pixel(2, 0), &Rgb([200, 100, 50]));
    let black = prepare(
        tiny_vision(),
        ImageOptions::default().with_background([0, 0, 0]),
        &bytes,
    )
    .unwrap();
    assert_eq!(black.image().get_pixel(0, 0), &Rgb([0, 0, 0]));
    assert_eq!(black.image().get_pixel(1, 0), &Rgb([100, 50, 25]));
}

#[test]
fn grayscale_gray_alpha_and_16_bit_inputs_become_the_right_rgb() {
    let gray = image::GrayImage::from_fn(256, 192, |x, _| image::Luma([x as u8]));
    let got = prepare(
        tiny_vision(),
        ImageOptions::default(),
        &encode(&gray.into(), ImageFormat::Png),
    )
    .unwrap();
    assert_eq!(got.image().get_pixel(77, 5), &Rgb([77, 77, 77]));

    let la = image::GrayAlphaImage::from_pixel(256, 192, image::LumaA([100, 0]));
    let got = prepare(
        tiny_vision(),
        ImageOptions::default(),
        &encode(&la.into(), ImageFormat::Png),
    )
    .unwrap();
    assert_eq!(got.image().get_pixel(3, 3), &Rgb([255, 255, 255]));

    let deep =
        image::ImageBuffer::<Rgb<u16>, _>::from_pixel(256, 192, Rgb([0xABCD, 0x0000, 0xFFFF]));
    let got = prepare(
        tiny_vision(),
        ImageOptions::default(),
        &encode(&deep.into(), ImageFormat::Png),
    )
    .unwrap();
    assert_eq!(got.image().get_pixel(9, 9), &Rgb([0xAB, 0x00, 0xFF]));
}

#[test]
fn plans_equal_what_mtmd_reports_for_six_aspect_ratios_with_and_without_a_budget() {
    let sizes = [
        (512, 512),
        (640, 480),
        (480, 640),
        (1600, 900),
        (200, 800),
        (32, 32),
        (4000, 3000),
        (5000, 500),
    ];
    for max_tiles in [None, Some(1), Some(2), Some(5), Some(9)] {
        let model = Model::load(
            &files(),
            &LoadOptions::default()
                .with_threads(2)
                .with_max_tiles(max_tiles),
        )
        .unwrap();
        let prep = model.preprocessor(ImageOptions::default());
        let mut session = model.session().unwrap();
        for (w, h) in sizes {
            let plan = prep.plan(w, h).unwrap();
            let c = session
                .caption(&noise(w, h, 1), "Hi", &greedy().with_max_tokens(1))
                .unwrap();
            assert_eq!(
                (c.tiles, c.image_tokens),
                (plan.tiles() as usize, plan.image_tokens as usize),
                "{w}x{h} budget {max_tiles:?}"
            );
            if let Some(max) = max_tiles {
                assert!(
                    c.tiles <= max as usize,
                    "{w}x{h}: {} tiles over a budget of {max}",
                    c.tiles
                );
            }
        }
    }
}

#[test]
fn a_1px_checkerboard_downscales_to_flat_grey_where_point_sampling_does_not() {
    let board = checkerboard(4096, 3072, 1);
    let prepared = Preprocessor::new(real_vision(), ImageOptions::default())
        .prepare((&board).into())
        .unwrap();
    assert_eq!(prepared.image().dimensions(), (2048, 1536));
    let (mean, std) = channel_stats(prepared.image());
    for c in 0..3 {
        assert!(
            (mean[c] - 127.5).abs() < 4.0 && std[c] <= 4.0,
            "channel {c}: mean {} std {}",
            mean[c],
            std[c]
        );
    }
    let nearest = image::imageops::resize(&board, 2048, 1536, image::imageops::FilterType::Nearest);
    let (mean, std) = channel_stats(&nearest);
    assert!(
        (mean[0] - 127.5).abs() > 60.0 || std[0] > 4.0,
        "point sampling aliases"
    );
}

fn channel_stats(img: &RgbImage) -> ([f64; 3], [f64; 3]) {
    let n = f64::from(img.width() * img.height());
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    for p in img.pixels() {
        for c in 0..3 {
            sum[c] += f64::from(p[c]);
            sq[c] += f64::from(p[c]).powi(2);
        }
    }
    let mean = sum.map(|s| s / n);
    let std = [0, 1, 2].map(|c| (sq[c] / n - mean[c].powi(2)).max(0.0).sqrt());
    (mean, std)
}

#[test]
fn smart_crop_trims_letterboxing_before_planning() {
    // A 16:9 picture letterboxed into a 4:3 frame plans as 16:9 once trimmed.
    let mut frame = RgbImage::from_pixel(1600, 1200, Rgb([0, 0, 0]));
    let picture = noise(1600, 900, 3);
    image::imageops::replace(&mut frame, &picture, 0, 150);
    let bytes = encode(&frame.into(), ImageFormat::Png);
    let plain = prepare(real_vision(), ImageOptions::default(), &bytes).unwrap();
    let trimmed = prepare(
        real_vision(),
        ImageOptions::default().with_smart_crop(true),
        &bytes,
    )
    .unwrap();
    assert_eq!((plain.plan().cols, plain.plan().rows), (4, 3));
    assert_eq!(
        (trimmed.plan().cols, trimmed.plan().rows),
        (4, 3),
        "1600x900 → 2048x1152 → 4x3 tiles"
    );
    assert_eq!(trimmed.plan().height, 1536);
    let stretched = prepare(
        real_vision(),
        ImageOptions::default().with_stretch_to(Some((1024, 256))),
        &bytes,
    )
    .unwrap();
    assert_eq!((stretched.plan().cols, stretched.plan().rows), (4, 1));
}

#[test]
fn reduced_scale_jpeg_decoding_matches_a_full_decode_closely() {
    let bytes = jpeg(&photo_like(4000, 3000), 90);
    // A 2-tile budget plans 512x512 for it (mtmd's pixel rule): a 1/4 decode;
    // the tiny model plans 256x192: 1/8; SmolVLM's full 2048x1536 allows none.
    let budget = VisionParams {
        max_tiles: Some(2),
        ..real_vision()
    };
    for (vision, scale) in [(budget, 4), (tiny_vision(), 8), (real_vision(), 1)] {
        let fast = prepare(vision, ImageOptions::default(), &bytes).unwrap();
        let full = prepare(
            vision,
            ImageOptions::default().with_fast_jpeg(false),
            &bytes,
        )
        .unwrap();
        assert_eq!(fast.decode_scale(), scale);
        assert_eq!(full.decode_scale(), 1);
        assert_eq!(fast.plan(), full.plan());
        let (mean, max) = (
            mean_diff(fast.image(), full.image()),
            max_diff(fast.image(), full.image()),
        );
        eprintln!("1/{scale} JPEG decode vs full decode, 4000x3000 -> {:?}: mean |diff| {mean:.3} levels, max {max}", fast.image().dimensions());
        assert!(mean < 1.5, "mean |diff| {mean}");
    }
}

/// Smooth regions, edges and fine texture, like a camera photo.
pub fn photo_like(w: u32, h: u32) -> RgbImage {
    let texture = noise(w / 8, h / 8, 11);
    RgbImage::from_fn(w, h, |x, y| {
        let t = texture.get_pixel(x / 8 % texture.width(), y / 8 % texture.height());
        let edge = if (x / 300 + y / 300) % 2 == 0 { 40 } else { 0 };
        Rgb([
            ((x * 200 / w) as u8)
                .saturating_add(edge)
                .saturating_add(t[0] / 8),
            ((y * 200 / h) as u8).saturating_add(t[1] / 8),
            (((x + y) * 120 / (w + h)) as u8)
                .saturating_add(edge)
                .saturating_add(t[2] / 8),
        ])
    })
}

fn expect_err(bytes: &[u8]) -> ImageError {
    match prepare(tiny_vision(), ImageOptions::default(), bytes) {
        Err(e) => e,
        Ok(p) => panic!(
            "expected an error, got a {:?} image",
            p.image().dimensions()
        ),
    }
}

#[test]
fn a_corpus_of_bad_files_gives_specific_errors() {
    let png = encode(&gradient(640, 480).into(), ImageFormat::Png);
    let jpg = jpeg(&noise(640, 480, 2), 90);

    let e = expect_err(&jpg[..jpg.len() / 2]);
    assert!(
        matches!(e, ImageError::Truncated { .. }),
        "truncated JPEG: {e}"
    );
    let e = expect_err(&png[..png.len() / 2]);
    assert!(
        matches!(e, ImageError::Truncated { .. }),
        "truncated PNG: {e}"
    );
    let e = expect_err(b"");
    assert!(matches!(e, ImageError::NoData { .. }), "zero bytes: {e}");
    let e = expect_err(&noise(64, 64, 3).into_raw());
    assert!(
        matches!(e, ImageError::UnknownFormat { .. }),
        "random bytes: {e}"
    );
    let e = expect_err(&png_header(60_000, 60_000));
    assert!(
        matches!(
            e,
            ImageError::TooLarge {
                width: 60_000,
                height: 60_000,
                ..
            }
        ),
        "bomb: {e}"
    );
}

/// A PNG whose IHDR claims `w`x`h`, followed by a small IDAT and IEND: a
/// decompression bomb's header.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    // A stored (uncompressed) zlib block of 16 zero bytes.
    let idat = [
        0x78, 0x01, 0x01, 0x10, 0x00, 0xEF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0x00, 0x00, 0x00, 0x01,
    ];
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &idat), (b"IEND", &[])] {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn an_animated_gif_gives_its_first_frame() {
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        let first = image::Frame::new(RgbaImage::from_pixel(256, 192, Rgba([255, 0, 0, 255])));
        let second = image::Frame::new(RgbaImage::from_pixel(256, 192, Rgba([0, 0, 255, 255])));
        encoder.encode_frames([first, second]).unwrap();
    }
    let got = prepare(tiny_vision(), ImageOptions::default(), &bytes).unwrap();
    assert_eq!(got.image().get_pixel(10, 10), &Rgb([255, 0, 0]));
}

#[test]
fn a_cmyk_jpeg_decodes_to_rgb() {
    // Pure cyan in CMYK is RGB (0, 255, 255).
    let (w, h) = (256u16, 192u16);
    let cmyk: Vec<u8> = (0..usize::from(w) * usize::from(h))
        .flat_map(|_| [255u8, 0, 0, 0])
        .collect();
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 95)
        .encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let got = prepare(tiny_vision(), ImageOptions::default(), &bytes).unwrap();
    let p = got.image().get_pixel(100, 100);
    assert!(p[0] < 40 && p[1] > 215 && p[2] > 215, "{p:?}");
}

#[cfg(unix)]
#[test]
fn files_with_non_utf8_names_decode_and_errors_name_them() {
    use std::os::unix::ffi::OsStrExt;
    let dir = TempDir::new("non-utf8");
    let good = dir.0.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"));
    std::fs::write(&good, encode(&gradient(320, 240).into(), ImageFormat::Png)).unwrap();
    let mut session = model().session().unwrap();
    assert!(session
        .caption(&good, "Describe this image.", &greedy())
        .is_ok());
    let bad = dir.0.join(std::ffi::OsStr::from_bytes(b"bad\xff.jpg"));
    std::fs::write(&bad, b"garbage").unwrap();
    let err = session
        .caption(&bad, "Describe this image.", &greedy())
        .unwrap_err();
    assert!(
        matches!(err, Error::Image(ImageError::UnknownFormat { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("bad\u{fffd}.jpg"), "{err}");
}

#[test]
fn prepared_images_caption_like_raw_inputs() {
    let img = noise(640, 480, 4);
    let prepared = model()
        .preprocessor(ImageOptions::default())
        .prepare((&img).into())
        .unwrap();
    let mut session = model().session().unwrap();
    let direct = session
        .caption(&img, "Describe this image.", &greedy())
        .unwrap();
    let via = session
        .caption(&prepared, "Describe this image.", &greedy())
        .unwrap();
    assert_eq!(direct.tokens, via.tokens);
}

/// The plan of `path` from its header, and from decoding it.
fn header_and_decoded_plans(vision: VisionParams, path: &std::path::Path) -> (TilePlan, TilePlan) {
    let mut preprocessor = Preprocessor::new(vision, ImageOptions::default());
    let header = preprocessor.plan_file(path).unwrap();
    let decoded = preprocessor.prepare(path.into()).unwrap();
    (header, *decoded.plan())
}

#[test]
fn header_plans_equal_decoded_plans_for_pngs_and_jpegs() {
    let dir = TempDir::new("plan-file");
    let budget = VisionParams {
        max_tiles: Some(2),
        ..real_vision()
    };
    for (w, h) in [
        (640, 480),
        (300, 900),
        (32, 32),
        (1600, 900),
        (5000, 500),
        (3, 1),
    ] {
        let img = gradient(w, h);
        for (ext, bytes) in [
            ("png", encode(&img.clone().into(), ImageFormat::Png)),
            ("jpg", jpeg(&img, 90)),
        ] {
            let path = dir.path(&format!("{w}x{h}.{ext}"));
            std::fs::write(&path, bytes).unwrap();
            for vision in [tiny_vision(), real_vision(), budget] {
                let (header, decoded) = header_and_decoded_plans(vision, &path);
                assert_eq!(header, decoded, "{w}x{h} {ext}, {vision:?}");
                assert_eq!(
                    Some(header),
                    Preprocessor::new(vision, ImageOptions::default()).plan(w, h),
                    "{w}x{h} {ext}"
                );
            }
        }
    }
}

#[test]
fn exif_rotated_jpegs_plan_upright_from_their_headers() {
    let dir = TempDir::new("plan-exif");
    let stored = jpeg(&gradient(900, 300), 90);
    let preprocessor = Preprocessor::new(tiny_vision(), ImageOptions::default());
    let (upright, as_stored) = (
        preprocessor.plan(300, 900).unwrap(),
        preprocessor.plan(900, 300).unwrap(),
    );
    assert_ne!(upright, as_stored);
    for orientation in 1..=8 {
        let path = dir.path(&format!("o{orientation}.jpg"));
        std::fs::write(&path, with_exif_orientation(&stored, orientation)).unwrap();
        let (header, decoded) = header_and_decoded_plans(tiny_vision(), &path);
        // Orientations 5 to 8 turn the picture a quarter.
        let expected = if orientation >= 5 { upright } else { as_stored };
        assert_eq!(header, expected, "orientation {orientation}");
        assert_eq!(header, decoded, "orientation {orientation}");
    }
}

#[test]
fn a_header_plan_needs_only_the_header() {
    let dir = TempDir::new("plan-header-only");
    let preprocessor = Preprocessor::new(tiny_vision(), ImageOptions::default());
    let expected = preprocessor.plan(640, 480).unwrap();
    let cut = |bytes: &[u8], name: &str| {
        let path = dir.path(name);
        std::fs::write(&path, &bytes[..bytes.len() * 6 / 10]).unwrap();
        path
    };
    let jpg = cut(&jpeg(&noise(640, 480, 2), 90), "cut.jpg");
    let png = cut(
        &encode(&noise(640, 480, 2).into(), ImageFormat::Png),
        "cut.png",
    );
    for path in [jpg, png] {
        assert_eq!(
            preprocessor.plan_file(&path).unwrap(),
            expected,
            "{}",
            path.display()
        );
        let err = Error::from(
            Preprocessor::new(tiny_vision(), ImageOptions::default())
                .prepare(path.as_path().into())
                .unwrap_err(),
        );
        assert_eq!(err.kind(), "image_truncated", "{err}");
    }
    // The header still has to pass the decode limits.
    let bomb = dir.path("bomb.png");
    std::fs::write(&bomb, png_header(60_000, 60_000)).unwrap();
    let e = preprocessor.plan_file(&bomb).unwrap_err();
    assert!(
        matches!(
            e,
            ImageError::TooLarge {
                width: 60_000,
                height: 60_000,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn header_plans_of_non_images_and_missing_files_are_the_errors_a_caption_gets() {
    let dir = TempDir::new("plan-bad");
    let preprocessor = Preprocessor::new(tiny_vision(), ImageOptions::default());
    let kinds = |path: &std::path::Path| {
        let planned = Error::from(preprocessor.plan_file(path).unwrap_err());
        let decoded = Error::from(
            Preprocessor::new(tiny_vision(), ImageOptions::default())
                .prepare(path.into())
                .unwrap_err(),
        );
        (planned.kind(), decoded.kind(), planned.to_string())
    };
    // Not images, whatever their names say: known by content, not extension.
    let text = dir.path("notes.jpg");
    std::fs::write(&text, "not an image, whatever the name says\n").unwrap();
    let random = dir.path("random.png");
    std::fs::write(&random, noise(64, 64, 3).into_raw()).unwrap();
    for path in [&text, &random] {
        let e = preprocessor.plan_file(path).unwrap_err();
        assert!(matches!(e, ImageError::UnknownFormat { .. }), "{e}");
        let (planned, decoded, message) = kinds(path);
        assert_eq!((planned, decoded), ("image_format", "image_format"));
        assert!(message.contains(&path.display().to_string()), "{message}");
    }
    let empty = dir.path("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let (planned, decoded, _) = kinds(&empty);
    assert_eq!((planned, decoded), ("image_no_data", "image_no_data"));
    let missing = dir.path("missing.png");
    let e = preprocessor.plan_file(&missing).unwrap_err();
    assert!(
        matches!(&e, ImageError::Read { path, .. } if *path == missing),
        "{e}"
    );
    let (planned, decoded, _) = kinds(&missing);
    assert_eq!((planned, decoded), ("image_read", "image_read"));
}
