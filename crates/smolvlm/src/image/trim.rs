//! `smart_crop`: trimming uniform borders (letterboxing, scanner margins)
//! before planning, so the tiles cover the picture rather than the bars.

use image::RgbImage;

use crate::image::resize::Crop;

/// How far a channel may stray from the border colour and still count as border.
const TOLERANCE: u8 = 12;

/// The region left after removing rows and columns that match the colour of
/// the top-left pixel. The whole image when nothing (or everything) matches.
pub(crate) fn uniform_border(img: &RgbImage) -> Crop {
    let (w, h) = img.dimensions();
    let whole = Crop::whole(img);
    let Some(&border) = img.get_pixel_checked(0, 0) else {
        return whole;
    };
    let near = |x: u32, y: u32| {
        let p = img.get_pixel(x, y);
        (0..3).all(|c| p[c].abs_diff(border[c]) <= TOLERANCE)
    };
    let row = |y: u32| (0..w).all(|x| near(x, y));
    let col = |x: u32, top: u32, bottom: u32| (top..bottom).all(|y| near(x, y));

    let top = (0..h).find(|&y| !row(y)).unwrap_or(h);
    if top == h {
        return whole;
    }
    let bottom = (top..h).rev().find(|&y| !row(y)).map_or(h, |y| y + 1);
    let left = (0..w).find(|&x| !col(x, top, bottom)).unwrap_or(0);
    let right = (left..w)
        .rev()
        .find(|&x| !col(x, top, bottom))
        .map_or(w, |x| x + 1);
    Crop {
        left,
        top,
        width: right - left,
        height: bottom - top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_bars_are_trimmed() {
        let mut img = RgbImage::from_pixel(100, 80, image::Rgb([0, 0, 0]));
        for y in 10..70 {
            for x in 5..95 {
                img.put_pixel(x, y, image::Rgb([(x * 2) as u8, (y * 3) as u8, 100]));
            }
        }
        let crop = uniform_border(&img);
        assert_eq!(
            (crop.left, crop.top, crop.width, crop.height),
            (5, 10, 90, 60)
        );
    }

    #[test]
    fn uniform_or_borderless_images_are_kept_whole() {
        let flat = RgbImage::from_pixel(10, 10, image::Rgb([7, 7, 7]));
        assert_eq!(uniform_border(&flat).width, 10);
        let mut busy = RgbImage::from_pixel(10, 10, image::Rgb([7, 7, 7]));
        busy.put_pixel(9, 0, image::Rgb([255, 0, 0]));
        busy.put_pixel(0, 9, image::Rgb([255, 0, 0]));
        let crop = uniform_border(&busy);
        assert_eq!((crop.width, crop.height), (10, 10));
    }
}
