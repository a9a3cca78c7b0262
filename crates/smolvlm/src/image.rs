//! Images as the caller hands them over, turned into upright RGB8.
//!
//! Files and bytes are decoded with the `image` crate and turned upright
//! according to their EXIF orientation (llama.cpp's own loader ignores it).
//! Alpha is dropped, as mtmd's loader does.

use std::borrow::Cow;
use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

use crate::error::ImageError;

/// An image to caption.
///
/// Build one with `From`: a `&Path`, a byte slice holding an encoded image,
/// an `&RgbImage` or a `&DynamicImage`.
///
/// ```
/// let pixels = image::RgbImage::new(4, 3);
/// let input = smolvlm::ImageInput::from(&pixels);
/// assert!(matches!(input, smolvlm::ImageInput::Rgb(_)));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ImageInput<'a> {
    /// An image file.
    Path(&'a Path),
    /// An encoded image in memory (JPEG, PNG, WebP, GIF, BMP, TIFF).
    Bytes(&'a [u8]),
    /// Decoded RGB8 pixels, used as they are.
    Rgb(&'a RgbImage),
    /// A decoded image of any pixel format, converted to RGB8.
    Dynamic(&'a DynamicImage),
}

impl<'a> From<&'a Path> for ImageInput<'a> {
    fn from(p: &'a Path) -> Self {
        Self::Path(p)
    }
}

impl<'a> From<&'a std::path::PathBuf> for ImageInput<'a> {
    fn from(p: &'a std::path::PathBuf) -> Self {
        Self::Path(p)
    }
}

impl<'a> From<&'a [u8]> for ImageInput<'a> {
    fn from(b: &'a [u8]) -> Self {
        Self::Bytes(b)
    }
}

impl<'a> From<&'a Vec<u8>> for ImageInput<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Self::Bytes(b)
    }
}

impl<'a> From<&'a RgbImage> for ImageInput<'a> {
    fn from(i: &'a RgbImage) -> Self {
        Self::Rgb(i)
    }
}

impl<'a> From<&'a DynamicImage> for ImageInput<'a> {
    fn from(i: &'a DynamicImage) -> Self {
        Self::Dynamic(i)
    }
}

impl ImageInput<'_> {
    /// The image as upright RGB8 with at least one pixel.
    ///
    /// # Errors
    ///
    /// [`ImageError`] if the file cannot be read or decoded, or the image is empty.
    pub fn to_rgb(&self) -> Result<Cow<'_, RgbImage>, ImageError> {
        let rgb = match *self {
            Self::Rgb(img) => Cow::Borrowed(img),
            Self::Dynamic(img) => Cow::Owned(img.to_rgb8()),
            Self::Path(path) => {
                let bytes = std::fs::read(path).map_err(|source| ImageError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                Cow::Owned(decode(&bytes, || format!("'{}'", path.display()))?)
            }
            Self::Bytes(bytes) => Cow::Owned(decode(bytes, || "from memory".to_owned())?),
        };
        if rgb.width() == 0 || rgb.height() == 0 {
            return Err(ImageError::Empty {
                width: rgb.width(),
                height: rgb.height(),
            });
        }
        Ok(rgb)
    }
}

fn decode(bytes: &[u8], origin: impl Fn() -> String) -> Result<RgbImage, ImageError> {
    let err = |source| ImageError::Decode {
        origin: origin(),
        source,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(image::ImageError::IoError(e)))?;
    let mut decoder = reader.into_decoder().map_err(err)?;
    let orientation = decoder.orientation().map_err(err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(err)?;
    img.apply_orientation(orientation);
    Ok(img.to_rgb8())
}
