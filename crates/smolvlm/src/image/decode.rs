//! Decoding files and bytes into RGB8, within limits, keeping the EXIF
//! orientation to apply after the resize (rotating the small image is cheaper).

use std::borrow::Cow;
use std::io::Cursor;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use crate::error::ImageError;
use crate::image::jpeg::{describe_trailer, primary_end, JpegEnd};
use crate::image::ImageOptions;

/// Limits checked against an image's header before its pixels are decoded,
/// so a decompression bomb or a huge header is refused before any large
/// allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Widest image accepted, in pixels (default 30 000).
    pub max_width: u32,
    /// Tallest image accepted, in pixels (default 30 000).
    pub max_height: u32,
    /// Most pixels accepted (default 120 megapixels).
    pub max_pixels: u64,
    /// Most bytes a decoder may allocate (default 1 GiB).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_width: 30_000,
            max_height: 30_000,
            max_pixels: 120_000_000,
            max_alloc: 1 << 30,
        }
    }
}

/// A decoded image, still in its stored orientation.
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    pub rgb: Cow<'a, RgbImage>,
    pub orientation: Orientation,
    /// The full-resolution stored size, before any reduced-scale decode.
    pub stored_size: (u32, u32),
    /// 1, or the DCT-domain reduction a JPEG was decoded at (2, 4 or 8).
    pub scale: u32,
}

/// Maps an image's upright full size to the size it will be resized to.
pub(crate) type TargetSize<'a> = &'a dyn Fn(u32, u32) -> Option<(u32, u32)>;

/// What the caller wants decoded: bytes and where they came from.
pub(crate) struct Source<'a> {
    pub bytes: &'a [u8],
    pub origin: &'a dyn Fn() -> String,
}

/// Decodes `src`. `target` maps the upright full size to the size the image
/// will be resized to, when known before decoding; JPEGs at least twice that
/// size are then decoded at 1/2, 1/4 or 1/8 scale in the DCT domain.
pub(crate) fn decode(
    src: &Source<'_>,
    options: &ImageOptions,
    target: Option<TargetSize<'_>>,
) -> Result<Decoded<'static>, ImageError> {
    if src.bytes.is_empty() {
        return Err(ImageError::NoData {
            origin: (src.origin)(),
        });
    }
    let format = image::guess_format(src.bytes).map_err(|_| ImageError::UnknownFormat {
        origin: (src.origin)(),
    })?;
    let primary;
    let src = if format == ImageFormat::Jpeg {
        primary = jpeg_primary(src)?;
        &primary
    } else {
        src
    };
    if format == ImageFormat::Jpeg && options.fast_jpeg {
        if let Some(target) = target {
            if let Some(decoded) = decode_jpeg_scaled(src, &options.limits, target)? {
                return Ok(decoded);
            }
        }
    }
    decode_full(src, format, options)
}

fn decode_full(
    src: &Source<'_>,
    format: ImageFormat,
    options: &ImageOptions,
) -> Result<Decoded<'static>, ImageError> {
    // Read the header's size first, without limits, so an oversized image
    // is reported with its size (the decoders' own limit errors do not say).
    let (w, h) = ImageReader::with_format(Cursor::new(src.bytes), format)
        .into_dimensions()
        .map_err(|e| limit_or(e, src, &options.limits))?;
    check_size(w, h, src, &options.limits)?;
    let mut reader = ImageReader::with_format(Cursor::new(src.bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(options.limits.max_width);
    limits.max_image_height = Some(options.limits.max_height);
    limits.max_alloc = Some(options.limits.max_alloc);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| limit_or(e, src, &options.limits))?;
    let (w, h) = decoder.dimensions();
    check_size(w, h, src, &options.limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(w, h, src, &options.limits),
        other => decode_error(other, src),
    })?;
    Ok(Decoded {
        rgb: Cow::Owned(flatten(img, options.background)),
        orientation,
        stored_size: (w, h),
        scale: 1,
    })
}

/// Decodes a JPEG at the smallest DCT scale that still covers the target;
/// `None` when no reduction applies (or the colour type needs the full decoder).
fn decode_jpeg_scaled(
    src: &Source<'_>,
    limits: &DecodeLimits,
    target: TargetSize<'_>,
) -> Result<Option<Decoded<'static>>, ImageError> {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(src.bytes));
    if decoder.read_info().is_err() {
        // Let the main decoder report the error in its own words.
        return Ok(None);
    }
    let Some(info) = decoder.info() else {
        return Ok(None);
    };
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    check_size(w, h, src, limits)?;
    if !matches!(
        info.pixel_format,
        jpeg_decoder::PixelFormat::RGB24 | jpeg_decoder::PixelFormat::L8
    ) {
        return Ok(None);
    }
    let orientation = decoder
        .exif_data()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let swaps = swaps_axes(orientation);
    let (uw, uh) = if swaps { (h, w) } else { (w, h) };
    let Some((tw, th)) = target(uw, uh) else {
        return Ok(None);
    };
    let (tw, th) = if swaps { (th, tw) } else { (tw, th) };
    let Some(scale) = [8u32, 4, 2]
        .into_iter()
        .find(|s| w.div_ceil(*s) >= tw && h.div_ceil(*s) >= th)
    else {
        return Ok(None);
    };
    let request = |v: u32| u16::try_from(v.div_ceil(scale)).unwrap_or(u16::MAX);
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    let Ok((sw, sh)) = decoder.scale(request(w), request(h)) else {
        return Ok(None);
    };
    let Ok(pixels) = decoder.decode() else {
        return Ok(None);
    };
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(sw, sh, pixels)
            .map(|g| DynamicImage::ImageLuma8(g).into_rgb8()),
        _ => RgbImage::from_raw(sw, sh, pixels),
    };
    Ok(rgb.map(|rgb| Decoded {
        rgb: Cow::Owned(rgb),
        orientation,
        stored_size: (w, h),
        scale,
    }))
}

/// The primary image of a JPEG: the bytes up to its end-of-image marker.
/// What follows (a Motion Photo's MP4, an Ultra HDR gain map) is logged and
/// left out, so that the decoders see the primary image alone.
///
/// JPEG decoders fill a truncated scan with grey instead of failing, so a
/// primary image that ends early is refused here as truncated.
fn jpeg_primary<'a>(src: &Source<'a>) -> Result<Source<'a>, ImageError> {
    match primary_end(src.bytes) {
        JpegEnd::Complete(end) => {
            let (primary, trailer) = src.bytes.split_at(end.min(src.bytes.len()));
            if !trailer.is_empty() {
                tracing::debug!(
                    origin = %(src.origin)(),
                    "{}",
                    describe_trailer(trailer)
                );
            }
            Ok(Source {
                bytes: primary,
                origin: src.origin,
            })
        }
        JpegEnd::Truncated => Err(ImageError::Truncated {
            origin: (src.origin)(),
        }),
        // The decoder says what is wrong in its own words.
        JpegEnd::Malformed => Ok(Source {
            bytes: src.bytes,
            origin: src.origin,
        }),
    }
}

/// An image file's upright size, read from its header alone: no pixel is
/// decoded, and the EXIF orientation is applied.
pub(crate) fn probe(
    path: &std::path::Path,
    limits: &DecodeLimits,
) -> Result<(u32, u32), ImageError> {
    let origin = || format!("'{}'", path.display());
    let src = Source {
        bytes: &[],
        origin: &origin,
    };
    let read = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    if file.metadata().map_err(read)?.len() == 0 {
        return Err(ImageError::NoData { origin: origin() });
    }
    // The format from the content alone, as `decode` finds it: a file's
    // extension must not turn "not an image" into a decode error.
    let reader = ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(read)?;
    if reader.format().is_none() {
        return Err(ImageError::UnknownFormat { origin: origin() });
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| limit_or(e, &src, limits))?;
    let (w, h) = decoder.dimensions();
    check_size(w, h, &src, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok(if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    })
}

/// Whether applying `o` swaps width and height.
pub(crate) fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// RGB8, with any alpha composited onto `background`.
pub(crate) fn flatten(img: DynamicImage, background: [u8; 3]) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for px in rgba.pixels() {
        let a = u32::from(px[3]);
        for c in 0..3 {
            let v = (u32::from(px[c]) * a + u32::from(background[c]) * (255 - a) + 127) / 255;
            out.push(v as u8);
        }
    }
    RgbImage::from_raw(w, h, out).unwrap_or_default()
}

fn check_size(w: u32, h: u32, src: &Source<'_>, limits: &DecodeLimits) -> Result<(), ImageError> {
    if w == 0 || h == 0 {
        return Err(ImageError::Empty {
            width: w,
            height: h,
        });
    }
    if w > limits.max_width
        || h > limits.max_height
        || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(too_large(w, h, src, limits));
    }
    Ok(())
}

fn too_large(w: u32, h: u32, src: &Source<'_>, limits: &DecodeLimits) -> ImageError {
    ImageError::TooLarge {
        origin: (src.origin)(),
        width: w,
        height: h,
        limits: *limits,
    }
}

fn limit_or(e: image::ImageError, src: &Source<'_>, limits: &DecodeLimits) -> ImageError {
    match e {
        image::ImageError::Limits(_) => ImageError::TooLarge {
            origin: (src.origin)(),
            width: 0,
            height: 0,
            limits: *limits,
        },
        other => decode_error(other, src),
    }
}

fn decode_error(e: image::ImageError, src: &Source<'_>) -> ImageError {
    match e {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Truncated {
                origin: (src.origin)(),
            }
        }
        other => ImageError::Decode {
            origin: (src.origin)(),
            source: other,
        },
    }
}
