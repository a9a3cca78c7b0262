//! One-pass SIMD resize to the planned size, then the EXIF orientation.
//!
//! The filter is Lanczos3: the same kernel as mtmd's own resize for
//! idefics3 (`RESIZE_ALGO_LANCZOS`) and as the reference Idefics3 processor
//! (PIL `LANCZOS`), so the model sees what it was trained on; as a
//! convolution over the whole source footprint it also antialiases large
//! downscales (a 1-px checkerboard becomes flat grey, see the tests).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer as Fir};
use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};

use crate::error::ImageError;
use crate::image::decode::swaps_axes;

/// A region of the source to keep, in stored-orientation pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Crop {
    pub left: u32,
    pub top: u32,
    pub width: u32,
    pub height: u32,
}

impl Crop {
    /// All of `img`.
    pub(crate) fn whole(img: &RgbImage) -> Self {
        Self {
            left: 0,
            top: 0,
            width: img.width(),
            height: img.height(),
        }
    }
}

/// A resizer that keeps its scratch buffers between images.
#[derive(Debug, Default)]
pub(crate) struct Resizer {
    fir: Fir,
}

impl Resizer {
    /// Resizes the `crop` of `src` (stored orientation) through each of
    /// `sizes` in turn (upright sizes: mtmd resizes in up to two passes),
    /// then applies `orientation`.
    pub(crate) fn resize(
        &mut self,
        src: &RgbImage,
        crop: Crop,
        orientation: Orientation,
        sizes: &[(u32, u32)],
    ) -> Result<RgbImage, ImageError> {
        let stored = |(w, h): (u32, u32)| {
            if swaps_axes(orientation) {
                (h, w)
            } else {
                (w, h)
            }
        };
        let mut current: Option<RgbImage> = None;
        for &size in sizes {
            let size = stored(size);
            let (from, from_crop) = match &current {
                Some(img) => (img, Crop::whole(img)),
                None => (src, crop),
            };
            if from_crop != Crop::whole(from) || size != from.dimensions() {
                current = Some(self.resize_stored(from, from_crop, size)?);
            }
        }
        let stored = match current {
            Some(img) => img,
            None if crop == Crop::whole(src) => src.clone(),
            None => self.resize_stored(src, crop, (crop.width, crop.height))?,
        };
        Ok(orient(stored, orientation))
    }

    fn resize_stored(
        &mut self,
        src: &RgbImage,
        crop: Crop,
        (dw, dh): (u32, u32),
    ) -> Result<RgbImage, ImageError> {
        let fail = |e: &dyn std::fmt::Display| ImageError::Resize(e.to_string());
        let view = ImageRef::new(src.width(), src.height(), src.as_raw(), PixelType::U8x3)
            .map_err(|e| fail(&e))?;
        let mut dst = Image::new(dw, dh, PixelType::U8x3);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(
                f64::from(crop.left),
                f64::from(crop.top),
                f64::from(crop.width),
                f64::from(crop.height),
            );
        self.fir
            .resize(&view, &mut dst, &options)
            .map_err(|e| fail(&e))?;
        RgbImage::from_raw(dw, dh, dst.into_vec())
            .ok_or_else(|| ImageError::Resize("destination buffer size".to_owned()))
    }
}

/// Turns a stored-orientation image upright.
pub(crate) fn orient(img: RgbImage, orientation: Orientation) -> RgbImage {
    if orientation == Orientation::NoTransforms {
        return img;
    }
    let mut dynamic = DynamicImage::ImageRgb8(img);
    dynamic.apply_orientation(orientation);
    dynamic.into_rgb8()
}
