//! Images as the caller hands them over.

use std::path::Path;

use image::{DynamicImage, RgbImage};

use crate::image::PreparedImage;

/// An image to caption.
///
/// Build one with `From`: a `&Path`, a byte slice holding an encoded image,
/// an `&RgbImage`, a `&DynamicImage`, or a [`PreparedImage`] made ahead of
/// time (for example on another thread) by a [`Preprocessor`](crate::image::Preprocessor).
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
    /// A decoded image of any pixel format, converted to RGB8 (alpha composited).
    Dynamic(&'a DynamicImage),
    /// An image already decoded and resized for this model.
    Prepared(&'a PreparedImage),
}

impl ImageInput<'_> {
    /// Where the image came from, as error messages name it: a quoted path,
    /// or "from memory".
    pub(crate) fn origin(&self) -> String {
        match self {
            Self::Path(path) => format!("'{}'", path.display()),
            _ => "from memory".to_owned(),
        }
    }
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

impl<'a> From<&'a PreparedImage> for ImageInput<'a> {
    fn from(i: &'a PreparedImage) -> Self {
        Self::Prepared(i)
    }
}
