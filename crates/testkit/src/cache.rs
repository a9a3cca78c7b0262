//! The on-disk cache of generated pairs, shared by every test process.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::real::{self, ProjectorType, RealShape};
use crate::{generate, TinyModel, TinyModelSpec};

/// Bumped whenever generation changes, so stale pairs are not reused.
pub const FORMAT_VERSION: u32 = 1;

/// Where generated pairs are cached: `<target dir>/smolvlm-testkit`.
///
/// The target dir is `$CARGO_TARGET_DIR` when set at run time (relative to the
/// workspace root if relative), else the workspace's `target/`.
#[must_use]
pub fn cache_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // crates/testkit -> workspace root.
    let workspace = manifest.parent().and_then(Path::parent).unwrap_or(manifest);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    };
    target.join("smolvlm-testkit")
}

/// The default pair ([`TinyModelSpec::default`]), generated once into
/// [`cache_dir`] and reused.
///
/// # Panics
///
/// If the pair cannot be written; this is a test helper, and a test cannot go
/// on without it.
#[must_use]
pub fn tiny_model() -> TinyModel {
    tiny_model_with(&TinyModelSpec::default())
}

/// The pair for `spec`, generated once into a directory of [`cache_dir`] keyed
/// by the spec and [`FORMAT_VERSION`], and reused afterwards.
///
/// Parallel test processes may generate the same pair at once; each writes
/// temporary files and renames them into place, and the bytes are identical,
/// so every reader sees a complete pair.
///
/// # Panics
///
/// If the pair cannot be written (or the spec is invalid); this is a test helper.
#[must_use]
#[allow(clippy::panic)] // a test helper: documented under # Panics
pub fn tiny_model_with(spec: &TinyModelSpec) -> TinyModel {
    let dir = cache_dir().join(cache_key(spec));
    let pair = TinyModel::in_dir(&dir);
    if pair.model.is_file() && pair.mmproj.is_file() {
        return pair;
    }
    generate(spec, &dir).unwrap_or_else(|err| {
        panic!(
            "smolvlm-testkit: cannot generate the tiny model pair in '{}': {err}",
            dir.display()
        )
    })
}

/// The real-size pair of `shape` with an mmproj of type `mmproj`, generated
/// once into `<cache_dir>/real-v<N>-<name>/` and reused afterwards.
///
/// That directory holds `model.gguf` and one file per [`ProjectorType`]
/// ([`ProjectorType::file_name`]); each is written the first time a pair needs
/// it, so the text model is written once for both types. Within a process,
/// generation is serialised, so parallel tests never write (or hold in memory)
/// the same file twice; across processes, temporary files and renames keep
/// every reader's view complete.
///
/// # Panics
///
/// If a file cannot be written; this is a test helper.
#[must_use]
#[allow(clippy::panic)] // a test helper: documented under # Panics
pub fn real_model(shape: RealShape, mmproj: ProjectorType) -> TinyModel {
    static GENERATING: Mutex<()> = Mutex::new(());
    let dir = cache_dir().join(shape.cache_key());
    let pair = real::real_pair_in(&dir, mmproj);
    if pair.model.is_file() && pair.mmproj.is_file() {
        return pair;
    }
    // Files only ever appear complete (renamed into place), so a lock
    // poisoned by a panicking generator is safe to take.
    let _guard = GENERATING.lock().unwrap_or_else(PoisonError::into_inner);
    let result = std::fs::create_dir_all(&dir).and_then(|()| {
        if !pair.model.is_file() {
            real::write_model(shape, &pair.model)?;
        }
        if !pair.mmproj.is_file() {
            real::write_mmproj(shape, mmproj, &pair.mmproj)?;
        }
        Ok(())
    });
    if let Err(err) = result {
        panic!(
            "smolvlm-testkit: cannot generate the {} pair ({mmproj:?} mmproj) in '{}': {err}",
            shape.name(),
            dir.display()
        );
    }
    pair
}

/// Directory name of a spec's pair: the format version and a stable hash of the
/// spec's `Debug` text (which names every field).
fn cache_key(spec: &TinyModelSpec) -> String {
    format!(
        "v{FORMAT_VERSION}-{:016x}",
        fnv1a(format!("{spec:?}").as_bytes())
    )
}

/// FNV-1a, 64-bit: unlike `DefaultHasher`, stable across Rust releases, so the
/// cache key does not change with the toolchain.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_depends_on_every_field() {
        let base = cache_key(&TinyModelSpec::default());
        assert_eq!(base, cache_key(&TinyModelSpec::default()));
        assert_ne!(base, cache_key(&TinyModelSpec::mismatched()));
        assert_ne!(base, cache_key(&TinyModelSpec::without_chat_template()));
        let reseeded = TinyModelSpec {
            seed: 7,
            ..TinyModelSpec::default()
        };
        assert_ne!(base, cache_key(&reseeded));
    }

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
