//! Checks that a (model, mmproj) pair is safe to hand to llama.cpp, from GGUF
//! metadata alone. llama.cpp and clip.cpp abort the process on several of
//! these mistakes, so they must be caught here first.

use std::path::Path;

use crate::error::{FileRole, LoadError};
use crate::gguf::GgufHeader;

/// Projector types this library drives; SmolVLM's mmproj is `idefics3`.
pub(crate) const SUPPORTED_PROJECTORS: &str = "idefics3";

/// What the two headers tell, once checked.
#[derive(Debug, Clone)]
pub(crate) struct PairMeta {
    pub architecture: String,
    pub projector: String,
    pub tile_size: u32,
    pub patch_size: u32,
    pub scale_factor: u32,
    pub longest_edge: Option<u32>,
    /// Encoder layers (`clip.vision.block_count`); 0 when the file does not say.
    pub vision_layers: u32,
}

impl PairMeta {
    /// Image tokens one tile costs: (tile / patch)² patches, merged s² to one.
    pub fn tokens_per_tile(&self) -> u32 {
        // In u64: a hostile header must not overflow (the sizes are checked
        // to divide evenly in `check_pair`, not bounded).
        let side = u64::from(self.tile_size / self.patch_size.max(1));
        let merge = u64::from(self.scale_factor).pow(2).max(1);
        u32::try_from(side * side / merge).unwrap_or(u32::MAX)
    }
}

/// Reads both headers and checks that they form a supported pair.
pub(crate) fn check_pair(model: &Path, mmproj: &Path) -> Result<PairMeta, LoadError> {
    let text = read_header(model, FileRole::Model)?;
    let vision = read_header(mmproj, FileRole::Mmproj)?;
    let gguf = |role| {
        let path = if role == FileRole::Model {
            model
        } else {
            mmproj
        };
        move |source| LoadError::Gguf {
            path: path.to_path_buf(),
            role,
            source,
        }
    };

    let architecture = text
        .str("general.architecture")
        .map_err(gguf(FileRole::Model))?
        .unwrap_or_default()
        .to_owned();
    if architecture == "clip" || architecture.is_empty() && is_projector(&vision) {
        return Err(LoadError::WrongKind {
            path: model.to_path_buf(),
            expected: FileRole::Model,
            found: FileRole::Mmproj,
            architecture,
        });
    }
    if !is_projector(&vision) {
        let found_arch = vision
            .str("general.architecture")
            .ok()
            .flatten()
            .unwrap_or("unknown")
            .to_owned();
        return Err(LoadError::WrongKind {
            path: mmproj.to_path_buf(),
            expected: FileRole::Mmproj,
            found: FileRole::Model,
            architecture: found_arch,
        });
    }

    let model_embd = text
        .uint(&format!("{architecture}.embedding_length"))
        .map_err(gguf(FileRole::Model))?
        .ok_or_else(|| missing(model, FileRole::Model, "embedding_length"))?;

    let projector = projector_type(&vision)
        .map_err(gguf(FileRole::Mmproj))?
        .unwrap_or_default();
    if !SUPPORTED_PROJECTORS.split(", ").any(|p| p == projector) {
        return Err(LoadError::UnsupportedProjector {
            path: mmproj.to_path_buf(),
            projector,
            supported: SUPPORTED_PROJECTORS,
        });
    }

    // idefics3's output size is the second dimension of its one projection matrix.
    let mmproj_embd = vision
        .tensor("mm.model.fc.weight")
        .and_then(|t| t.dims.get(1).copied())
        .ok_or_else(|| missing(mmproj, FileRole::Mmproj, "tensor mm.model.fc.weight"))?;
    if mmproj_embd != model_embd {
        return Err(LoadError::NotAPair {
            model: model.to_path_buf(),
            mmproj: mmproj.to_path_buf(),
            model_embd,
            mmproj_embd,
        });
    }

    let vision_u32 = |key: &str| -> Result<Option<u32>, LoadError> {
        let v = vision.uint(key).map_err(gguf(FileRole::Mmproj))?;
        Ok(v.and_then(|v| u32::try_from(v).ok()))
    };
    let tile_size = vision_u32("clip.vision.image_size")?
        .ok_or_else(|| missing(mmproj, FileRole::Mmproj, "clip.vision.image_size"))?;
    let patch_size = vision_u32("clip.vision.patch_size")?
        .ok_or_else(|| missing(mmproj, FileRole::Mmproj, "clip.vision.patch_size"))?;
    // Without it clip.cpp's pixel shuffle asserts `scale_factor > 1` and aborts.
    let scale_factor = vision_u32("clip.vision.projector.scale_factor")?
        .filter(|s| *s > 1)
        .ok_or_else(|| {
            missing(
                mmproj,
                FileRole::Mmproj,
                "clip.vision.projector.scale_factor (> 1)",
            )
        })?;
    if tile_size == 0 || patch_size == 0 || !tile_size.is_multiple_of(patch_size) {
        return Err(missing(
            mmproj,
            FileRole::Mmproj,
            "a tile size that is a multiple of the patch size",
        ));
    }
    // clip.cpp's pixel shuffle merges scale_factor² patches and asserts that
    // the patch grid divides evenly.
    if !(tile_size / patch_size).is_multiple_of(scale_factor) {
        return Err(missing(
            mmproj,
            FileRole::Mmproj,
            "a patch grid (image_size / patch_size) that the scale factor divides",
        ));
    }

    Ok(PairMeta {
        architecture,
        projector,
        tile_size,
        patch_size,
        scale_factor,
        longest_edge: vision_u32("clip.vision.preproc_image_size")?,
        vision_layers: vision_u32("clip.vision.block_count")?.unwrap_or(0),
    })
}

fn read_header(path: &Path, role: FileRole) -> Result<GgufHeader, LoadError> {
    if !path.is_file() {
        return Err(LoadError::FileNotFound {
            path: path.to_path_buf(),
            role,
        });
    }
    if path.to_str().is_none() {
        return Err(LoadError::NonUtf8Path {
            path: path.to_path_buf(),
        });
    }
    GgufHeader::read(path).map_err(|source| LoadError::Gguf {
        path: path.to_path_buf(),
        role,
        source,
    })
}

fn is_projector(h: &GgufHeader) -> bool {
    h.bool("clip.has_vision_encoder").ok().flatten() == Some(true)
        && projector_type(h).ok().flatten().is_some()
}

fn projector_type(h: &GgufHeader) -> Result<Option<String>, crate::gguf::GgufError> {
    Ok(match h.str("clip.projector_type")? {
        Some(p) => Some(p.to_owned()),
        None => h.str("clip.vision.projector_type")?.map(str::to_owned),
    })
}

fn missing(path: &Path, role: FileRole, what: &'static str) -> LoadError {
    LoadError::Gguf {
        path: path.to_path_buf(),
        role,
        source: crate::gguf::GgufError::Missing(what),
    }
}
