//! The tile plan: which size mtmd's idefics3 preprocessor turns an image
//! into, computed before any pixel is touched.
//!
//! This mirrors `mtmd_image_preprocessor_idefics3::preprocess` and
//! `img_tool::calc_size_preserved_ratio` in llama.cpp's
//! `tools/mtmd/mtmd-image.cpp`, including their float and integer rounding,
//! so that an image resized here to the planned size reaches mtmd at exactly
//! the size it would resize to itself, and mtmd's own (scalar) resize of the
//! tiles becomes a copy.

/// What the vision projector's preprocessing needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionParams {
    /// Side of one tile in pixels (`clip.vision.image_size`).
    pub tile_size: u32,
    /// Longest image edge the preprocessor resizes to (`clip.vision.preproc_image_size`).
    pub longest_edge: Option<u32>,
    /// Image tokens one tile costs.
    pub tokens_per_tile: u32,
    /// Pixels one image token covers: (patch size × merge factor)².
    pub pixels_per_token: u32,
    /// Most tiles per image, when a token budget is set.
    pub max_tiles: Option<u32>,
}

impl VisionParams {
    /// The pixel cap mtmd derives from a token budget (`image_max_pixels`),
    /// or `None` without a budget.
    fn max_pixels(&self) -> Option<u64> {
        self.max_tiles.map(|t| {
            u64::from(t) * u64::from(self.tokens_per_tile) * u64::from(self.pixels_per_token)
        })
    }
}

/// How an image will be tiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePlan {
    /// The size the image is resized to: a whole number of tiles.
    pub width: u32,
    /// The size the image is resized to: a whole number of tiles.
    pub height: u32,
    /// Tiles across.
    pub cols: u32,
    /// Tiles down.
    pub rows: u32,
    /// Image tokens: every tile plus the downscaled overview.
    pub image_tokens: u32,
    /// Where mtmd (like the reference Idefics3 processor) resizes in two
    /// passes, the first pass's size: the longest edge scaled to the
    /// preprocessor's, before stretching to whole tiles.
    pub first_pass: Option<(u32, u32)>,
}

impl TilePlan {
    /// Grid tiles, not counting the overview.
    #[must_use]
    pub fn tiles(&self) -> u32 {
        self.cols * self.rows
    }
}

/// Plans the tiles of a `width` × `height` (upright) image.
///
/// Returns `None` for an empty image or a projector without tiling keys.
///
/// ```
/// use smolvlm::image::{plan, VisionParams};
/// let vision = VisionParams { tile_size: 512, longest_edge: Some(2048), tokens_per_tile: 64, pixels_per_token: 1024, max_tiles: None };
/// let p = plan(4000, 3000, &vision).unwrap();
/// assert_eq!((p.cols, p.rows, p.image_tokens), (4, 3, 832));
/// ```
#[must_use]
pub fn plan(width: u32, height: u32, vision: &VisionParams) -> Option<TilePlan> {
    let tile = vision.tile_size;
    let (mut w, mut h) = mtmd_size(width, height, vision)?;
    let refined = (w, h);
    // mtmd re-plans the image we hand it. On its longest-edge path the
    // planned size maps onto itself; on the pixel-budget path it may not
    // (it can also exceed the budget for panoramas), so follow mtmd's map,
    // squeezing into the budget, until the size is one mtmd keeps as is.
    for _ in 0..16 {
        (w, h) = squeeze(w / tile, h / tile, vision.max_tiles);
        (w, h) = (w * tile, h * tile);
        match mtmd_size(w, h, vision) {
            Some(next) if next != (w, h) => (w, h) = next,
            _ => break,
        }
    }
    let (cols, rows) = (w / tile, h / tile);
    let first_pass = match (vision.longest_edge, vision.max_pixels()) {
        (Some(edge), None) if (w, h) == refined => {
            Some(scaled_to_edge(width, height, edge)).filter(|size| *size != (w, h))
        }
        _ => None,
    };
    Some(TilePlan {
        width: w,
        height: h,
        cols,
        rows,
        image_tokens: (cols * rows + 1) * vision.tokens_per_tile,
        first_pass,
    })
}

/// Drops columns or rows (the longer side first) until the grid fits the budget.
fn squeeze(mut cols: u32, mut rows: u32, max_tiles: Option<u32>) -> (u32, u32) {
    (cols, rows) = (cols.max(1), rows.max(1));
    if let Some(max) = max_tiles {
        while cols * rows > max.max(1) {
            if cols >= rows {
                cols -= 1;
            } else {
                rows -= 1;
            }
        }
    }
    (cols, rows)
}

/// The refined size mtmd computes for an image of this size.
fn mtmd_size(width: u32, height: u32, vision: &VisionParams) -> Option<(u32, u32)> {
    if width == 0 || height == 0 || vision.tile_size == 0 {
        return None;
    }
    Some(match (vision.longest_edge, vision.max_pixels()) {
        (Some(edge), None) if edge > 0 => longest_edge_size(width, height, edge, vision.tile_size),
        (edge, max_pixels) => pixel_budget_size(width, height, edge, max_pixels, vision.tile_size),
    })
}

/// mtmd's simple path: longest side to `edge` (height or width made even),
/// then up to whole tiles.
fn longest_edge_size(width: u32, height: u32, edge: u32, tile: u32) -> (u32, u32) {
    let (w, h) = scaled_to_edge(width, height, edge);
    (
        ceil_tiles(i64::from(w), tile),
        ceil_tiles(i64::from(h), tile),
    )
}

/// The longest side scaled to `edge`, the other made even: mtmd's first
/// resize. In the C++'s types: a double aspect ratio, `(int)` truncation.
fn scaled_to_edge(width: u32, height: u32, edge: u32) -> (u32, u32) {
    let aspect = f64::from(width) / f64::from(height);
    let even = |v: f64| {
        let v = v as u32;
        v + v % 2
    };
    if width >= height {
        (edge, even(f64::from(edge) / aspect))
    } else {
        (even(f64::from(edge) * aspect), edge)
    }
}

fn ceil_tiles(n: i64, tile: u32) -> u32 {
    let tile = i64::from(tile);
    // A very thin image rounds to zero pixels across; mtmd would then cut
    // no tiles on that side, so keep at least one.
    let tiles = ((n + tile - 1) / tile).max(1);
    u32::try_from(tiles * tile).unwrap_or(u32::MAX)
}

/// mtmd's budgeted path (`calc_size_preserved_ratio` with `max_pixels`), in
/// the C++'s `float` arithmetic.
fn pixel_budget_size(
    width: u32,
    height: u32,
    edge: Option<u32>,
    max_pixels: Option<u64>,
    tile: u32,
) -> (u32, u32) {
    let f = tile as f32;
    let ceil_by = |x: f32| ((x / f).ceil() as i64) * i64::from(tile);
    let round_by = |x: f32| ((x / f).round() as i64) * i64::from(tile);
    let floor_by = |x: f32| ((x / f).floor() as i64) * i64::from(tile);
    let (wf, hf) = (width as f32, height as f32);
    let (mut w, mut h) = match edge.filter(|e| *e > 0) {
        Some(edge) => {
            let scale = (edge as f32 / wf).min(edge as f32 / hf);
            (ceil_by(wf * scale), ceil_by(hf * scale))
        }
        None => (
            round_by(wf).max(i64::from(tile)),
            round_by(hf).max(i64::from(tile)),
        ),
    };
    if let Some(max) = max_pixels {
        if (w * h) as u64 > max {
            let beta = (hf * wf / max as f32).sqrt();
            h = floor_by(hf / beta).max(i64::from(tile));
            w = floor_by(wf / beta).max(i64::from(tile));
        }
    }
    let clamp = |v: i64| u32::try_from(v.max(i64::from(tile))).unwrap_or(u32::MAX);
    (clamp(w), clamp(h))
}

/// Whether mtmd, given an image of exactly the planned size, tiles it as
/// planned without resizing the tiles itself. This holds for every size
/// the tests try; where it did not, mtmd would resize the image once more
/// and the caption's tile count (read from mtmd) would tell.
#[must_use]
pub fn is_fixed_point(planned: &TilePlan, vision: &VisionParams) -> bool {
    mtmd_size(planned.width, planned.height, vision) == Some((planned.width, planned.height))
}

/// The largest tile budget that a token budget allows (the overview costs one tile's tokens).
#[must_use]
pub fn tiles_for_tokens(max_image_tokens: u32, tokens_per_tile: u32) -> u32 {
    (max_image_tokens / tokens_per_tile.max(1))
        .saturating_sub(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smolvlm_256m() -> VisionParams {
        VisionParams {
            tile_size: 512,
            longest_edge: Some(2048),
            tokens_per_tile: 64,
            pixels_per_token: 16 * 16 * 4 * 4,
            max_tiles: None,
        }
    }

    fn tiny() -> VisionParams {
        VisionParams {
            tile_size: 64,
            longest_edge: Some(256),
            tokens_per_tile: 4,
            pixels_per_token: 8 * 8 * 4 * 4,
            max_tiles: None,
        }
    }

    #[test]
    fn design_examples() {
        let p = plan(4000, 3000, &smolvlm_256m()).unwrap();
        assert_eq!(
            (p.width, p.height, p.tiles(), p.image_tokens),
            (2048, 1536, 12, 832)
        );
        let p = plan(640, 480, &tiny()).unwrap();
        assert_eq!((p.cols, p.rows, p.image_tokens), (4, 3, 52));
        let p = plan(300, 900, &tiny()).unwrap();
        assert_eq!((p.cols, p.rows, p.image_tokens), (2, 4, 36));
        assert_eq!(plan(0, 10, &tiny()), None);
    }

    #[test]
    fn the_planned_size_is_a_fixed_point_for_every_size() {
        for vision in [tiny(), smolvlm_256m()] {
            for w in (1..=4100).step_by(37) {
                for h in [1, 2, 3, 31, 64, 333, 480, 1000, 3000, 7777] {
                    let p = plan(w, h, &vision).unwrap();
                    assert!(is_fixed_point(&p, &vision), "{w}x{h}: {p:?}");
                }
            }
        }
    }

    #[test]
    fn a_tile_budget_is_respected_for_every_size() {
        for max_tiles in 1..=12 {
            let vision = VisionParams {
                max_tiles: Some(max_tiles),
                ..smolvlm_256m()
            };
            for w in (16..=6000).step_by(211) {
                for h in [16, 100, 480, 1080, 3000, 6000] {
                    let p = plan(w, h, &vision).unwrap();
                    assert!(
                        p.tiles() <= max_tiles.max(1),
                        "{w}x{h} budget {max_tiles}: {p:?}"
                    );
                    assert!(p.tiles() >= 1);
                    assert!(
                        is_fixed_point(&p, &vision),
                        "{w}x{h} budget {max_tiles}: {p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn tokens_to_tiles() {
        assert_eq!(tiles_for_tokens(832, 64), 12);
        assert_eq!(tiles_for_tokens(128, 64), 1);
        assert_eq!(tiles_for_tokens(10, 64), 1);
    }
}
