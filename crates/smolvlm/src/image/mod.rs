//! The image path, from bytes to the RGB bitmap mtmd receives: decode
//! (limits, EXIF orientation, alpha), plan (the tile grid mtmd will use),
//! and one SIMD resize straight to the planned size.
//!
//! This module knows nothing of llama.cpp: it needs only the projector's
//! [`VisionParams`].
//!
//! ```
//! use smolvlm::image::{ImageOptions, Preprocessor, VisionParams};
//! let vision = VisionParams { tile_size: 512, longest_edge: Some(2048), tokens_per_tile: 64, pixels_per_token: 4096, max_tiles: None };
//! let mut prep = Preprocessor::new(vision, ImageOptions::default());
//! let photo = image::RgbImage::new(4000, 3000);
//! let prepared = prep.prepare((&photo).into())?;
//! assert_eq!(prepared.image().dimensions(), (2048, 1536));
//! assert_eq!(prepared.plan().tiles(), 12);
//! # Ok::<(), smolvlm::ImageError>(())
//! ```
#![doc = include_str!("../../docs/image.md")]

mod decode;
mod input;
mod jpeg;
mod plan;
pub(crate) mod resize;
mod trim;

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, Instant};

use image::metadata::Orientation;
use image::RgbImage;

pub use self::decode::DecodeLimits;
pub use self::input::ImageInput;
pub use self::plan::{is_fixed_point, plan, tiles_for_tokens, TilePlan, VisionParams};

use self::decode::{decode, flatten, swaps_axes, Decoded, Source, TargetSize};
use self::resize::{Crop, Resizer};
use crate::error::ImageError;

/// How input images are decoded and shaped before planning.
///
/// ```
/// let options = smolvlm::image::ImageOptions::default()
///     .with_background([0, 0, 0])
///     .with_smart_crop(true);
/// assert!(options.smart_crop());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOptions {
    background: [u8; 3],
    limits: DecodeLimits,
    fast_jpeg: bool,
    smart_crop: bool,
    stretch_to: Option<(u32, u32)>,
    presize: bool,
    mtmd_loader: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        Self {
            background: [255, 255, 255],
            limits: DecodeLimits::default(),
            fast_jpeg: true,
            smart_crop: false,
            stretch_to: None,
            presize: true,
            mtmd_loader: false,
        }
    }
}

impl ImageOptions {
    /// Colour transparent pixels are composited onto (default white).
    #[must_use]
    pub fn with_background(mut self, rgb: [u8; 3]) -> Self {
        self.background = rgb;
        self
    }

    /// Decoding limits (size, pixels, allocation).
    #[must_use]
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Decode large JPEGs at 1/2, 1/4 or 1/8 scale in the DCT domain when the
    /// planned size allows it (default on; see the [module docs](self) for
    /// the measured pixel difference).
    #[must_use]
    pub fn with_fast_jpeg(mut self, on: bool) -> Self {
        self.fast_jpeg = on;
        self
    }

    /// Trim uniform borders (letterboxing, margins) before planning
    /// (the old configuration's `smart_crop`; default off).
    #[must_use]
    pub fn with_smart_crop(mut self, on: bool) -> Self {
        self.smart_crop = on;
        self
    }

    /// Stretch every image to this aspect ratio before planning, ignoring its
    /// own (the old configuration's `preserve_aspect_ratio = false` with
    /// `size`); `None` (default) keeps each image's aspect ratio.
    #[must_use]
    pub fn with_stretch_to(mut self, size: Option<(u32, u32)>) -> Self {
        self.stretch_to = size.filter(|(w, h)| *w > 0 && *h > 0);
        self
    }

    /// Resize images to the planned tile grid here (default), or hand them to
    /// mtmd at their decoded size and let its scalar resize do it, as
    /// `llama-mtmd-cli` does (for parity checks and comparisons).
    #[must_use]
    pub fn with_presize(mut self, on: bool) -> Self {
        self.presize = on;
        self
    }

    /// Let mtmd load files and bytes itself (stb_image: no EXIF orientation,
    /// alpha dropped, no decoding limits) and resize them itself, exactly as
    /// `llama-mtmd-cli` does. For parity checks and comparisons; default off.
    /// Decoded inputs ([`ImageInput::Rgb`] and the like) are refused with it.
    #[must_use]
    pub fn with_mtmd_loader(mut self, on: bool) -> Self {
        self.mtmd_loader = on;
        self
    }

    /// Whether mtmd's own loader is used.
    #[must_use]
    pub fn mtmd_loader(&self) -> bool {
        self.mtmd_loader
    }

    /// Whether uniform borders are trimmed.
    #[must_use]
    pub fn smart_crop(&self) -> bool {
        self.smart_crop
    }

    /// The decoding limits.
    #[must_use]
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }
}

/// Time spent preparing one image.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct PrepareTimings {
    /// Reading and decoding (including alpha compositing).
    pub decode: Duration,
    /// Trimming, resizing and orienting.
    pub resize: Duration,
}

/// An image decoded, upright, and resized to exactly the size its tile
/// plan needs. Made by a [`Preprocessor`]; pass it to
/// [`Session::caption`](crate::Session::caption) as input.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedImage {
    rgb: RgbImage,
    plan: TilePlan,
    vision: VisionParams,
    source_size: (u32, u32),
    decode_scale: u32,
    timings: PrepareTimings,
}

impl PreparedImage {
    /// The pixels, at the planned size.
    #[must_use]
    pub fn image(&self) -> &RgbImage {
        &self.rgb
    }

    /// The tile plan.
    #[must_use]
    pub fn plan(&self) -> &TilePlan {
        &self.plan
    }

    /// The upright size of the original image.
    #[must_use]
    pub fn source_size(&self) -> (u32, u32) {
        self.source_size
    }

    /// 1, or the reduced scale (2, 4 or 8) a large JPEG was decoded at.
    #[must_use]
    pub fn decode_scale(&self) -> u32 {
        self.decode_scale
    }

    /// Time spent decoding and resizing.
    #[must_use]
    pub fn timings(&self) -> PrepareTimings {
        self.timings
    }

    /// Whether it was prepared for a projector with these parameters.
    #[must_use]
    pub fn is_for(&self, vision: &VisionParams) -> bool {
        self.vision == *vision
    }
}

/// Prepares images for one model: decode, plan, resize. One per worker
/// thread; it keeps its resize buffers between images. It is `Send`, so
/// preparation can run on other threads than captioning.
#[derive(Debug)]
pub struct Preprocessor {
    vision: VisionParams,
    options: ImageOptions,
    resizer: Resizer,
}

impl Preprocessor {
    /// A preprocessor for a projector's parameters (see
    /// [`Model::vision`](crate::Model::vision)).
    #[must_use]
    pub fn new(vision: VisionParams, options: ImageOptions) -> Self {
        Self {
            vision,
            options,
            resizer: Resizer::default(),
        }
    }

    /// The tile plan of an image of this upright size, before touching pixels.
    #[must_use]
    pub fn plan(&self, width: u32, height: u32) -> Option<TilePlan> {
        let (w, h) = self.options.stretch_to.unwrap_or((width, height));
        plan(w, h, &self.vision)
    }

    /// The tile plan of an image file, from its header alone: it reads the
    /// size and EXIF orientation and decodes no pixel, so it is cheap enough
    /// to plan a whole dataset before captioning it. With smart crop on, the
    /// borders a caption would trim are not known yet: the plan is then for
    /// the untrimmed image, an upper bound.
    ///
    /// # Errors
    ///
    /// [`ImageError`] for a file that cannot be read, is not an image, has an
    /// unreadable header, or is larger than the limits.
    pub fn plan_file(&self, path: &Path) -> Result<TilePlan, ImageError> {
        let (w, h) = decode::probe(path, &self.options.limits)?;
        self.plan(w, h).ok_or(ImageError::Empty {
            width: w,
            height: h,
        })
    }

    /// Decodes, trims, plans and resizes one image.
    ///
    /// # Errors
    ///
    /// [`ImageError`] naming the file (or "from memory") and what is wrong.
    pub fn prepare(&mut self, input: ImageInput<'_>) -> Result<PreparedImage, ImageError> {
        let started = Instant::now();
        let decoded = match input {
            ImageInput::Prepared(p) if p.is_for(&self.vision) => return Ok(p.clone()),
            ImageInput::Prepared(p) => upright(Cow::Borrowed(&p.rgb)),
            ImageInput::Rgb(img) => upright(Cow::Borrowed(img)),
            ImageInput::Dynamic(img) => {
                upright(Cow::Owned(flatten(img.clone(), self.options.background)))
            }
            ImageInput::Path(path) => {
                let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                self.decode_bytes(&bytes, &|| quoted(path))?
            }
            ImageInput::Bytes(bytes) => self.decode_bytes(bytes, &|| "from memory".to_owned())?,
        };
        let decode_time = started.elapsed();
        self.finish(decoded, decode_time, started)
    }

    /// Like [`prepare`](Self::prepare) for the bytes of a file the caller has
    /// already read (to hash it, say): errors name `path` rather than "from
    /// memory", and the file is not read a second time.
    ///
    /// # Errors
    ///
    /// [`ImageError`] naming `path` and what is wrong.
    pub fn prepare_file_bytes(
        &mut self,
        path: &Path,
        bytes: &[u8],
    ) -> Result<PreparedImage, ImageError> {
        let started = Instant::now();
        let decoded = self.decode_bytes(bytes, &|| quoted(path))?;
        let decode_time = started.elapsed();
        self.finish(decoded, decode_time, started)
    }

    fn decode_bytes(
        &self,
        bytes: &[u8],
        origin: &dyn Fn() -> String,
    ) -> Result<Decoded<'static>, ImageError> {
        let target = |w: u32, h: u32| self.plan(w, h).map(|p| (p.width, p.height));
        // Trimming needs full-resolution pixels to find the borders, and
        // without a presize mtmd gets the image as decoded.
        let target: Option<TargetSize<'_>> =
            (self.options.presize && !self.options.smart_crop).then_some(&target);
        decode(&Source { bytes, origin }, &self.options, target)
    }

    fn finish(
        &mut self,
        decoded: Decoded<'_>,
        decode_time: Duration,
        started: Instant,
    ) -> Result<PreparedImage, ImageError> {
        let (w, h) = decoded.rgb.dimensions();
        if w == 0 || h == 0 {
            return Err(ImageError::Empty {
                width: w,
                height: h,
            });
        }
        let crop = if self.options.smart_crop {
            trim::uniform_border(&decoded.rgb)
        } else {
            Crop::whole(&decoded.rgb)
        };
        // Plan from the full-resolution upright size of what is kept, so a
        // reduced-scale JPEG decode plans exactly like a full one.
        let (sw, sh) = decoded.stored_size;
        let kept = (
            u64::from(crop.width) * u64::from(sw) / u64::from(w),
            u64::from(crop.height) * u64::from(sh) / u64::from(h),
        );
        let kept = (
            u32::try_from(kept.0).unwrap_or(u32::MAX).max(1),
            u32::try_from(kept.1).unwrap_or(u32::MAX).max(1),
        );
        let upright_kept = if swaps_axes(decoded.orientation) {
            (kept.1, kept.0)
        } else {
            kept
        };
        let plan = self
            .plan(upright_kept.0, upright_kept.1)
            .ok_or(ImageError::Empty {
                width: w,
                height: h,
            })?;
        let sizes: Vec<(u32, u32)> = if self.options.presize {
            plan.first_pass
                .into_iter()
                .chain([(plan.width, plan.height)])
                .collect()
        } else if swaps_axes(decoded.orientation) {
            vec![(crop.height, crop.width)]
        } else {
            vec![(crop.width, crop.height)]
        };
        let rgb = self
            .resizer
            .resize(&decoded.rgb, crop, decoded.orientation, &sizes)?;
        let source_size = if swaps_axes(decoded.orientation) {
            (sh, sw)
        } else {
            (sw, sh)
        };
        Ok(PreparedImage {
            rgb,
            plan,
            vision: self.vision,
            source_size,
            decode_scale: decoded.scale,
            timings: PrepareTimings {
                decode: decode_time,
                resize: started.elapsed().saturating_sub(decode_time),
            },
        })
    }
}

fn upright(rgb: Cow<'_, RgbImage>) -> Decoded<'_> {
    let stored_size = rgb.dimensions();
    Decoded {
        rgb,
        orientation: Orientation::NoTransforms,
        stored_size,
        scale: 1,
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display())
}
