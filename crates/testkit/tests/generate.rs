//! Generation is deterministic, cached, and rejects specs llama.cpp would refuse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use smolvlm_testkit::{cache_dir, generate, tiny_model, TinyModelSpec};

/// A fresh directory under the system temp dir, unique to this process and test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smolvlm-testkit-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

#[test]
fn output_is_byte_identical_and_small() {
    let (a, b) = (scratch("gen-a"), scratch("gen-b"));
    let started = Instant::now();
    let first = generate(&TinyModelSpec::default(), &a).unwrap();
    let elapsed = started.elapsed();
    let second = generate(&TinyModelSpec::default(), &b).unwrap();

    for (x, y) in [
        (&first.model, &second.model),
        (&first.mmproj, &second.mmproj),
    ] {
        let (x, y) = (fs::read(x).unwrap(), fs::read(y).unwrap());
        assert_eq!(x, y, "same spec, same bytes");
        assert!(x.len() < 4 << 20, "a few MB at most, got {}", x.len());
    }
    // Generous bound so a loaded CI machine does not flake; it takes ~10 ms.
    assert!(elapsed.as_secs() < 5, "generation took {elapsed:?}");

    let reseeded = TinyModelSpec {
        seed: 1,
        ..TinyModelSpec::default()
    };
    let c = scratch("gen-c");
    let third = generate(&reseeded, &c).unwrap();
    assert_ne!(
        fs::read(&first.model).unwrap(),
        fs::read(&third.model).unwrap()
    );
    // Nothing but the two files is left behind (no temporary files).
    let mut names: Vec<_> = fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["mmproj.gguf", "model.gguf"]);
    for dir in [a, b, c] {
        fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn cached_pair_is_reused() {
    let pair = tiny_model();
    assert!(pair.model.starts_with(cache_dir()));
    let modified = fs::metadata(&pair.model).unwrap().modified().unwrap();
    let again = tiny_model();
    assert_eq!(again.model, pair.model);
    assert_eq!(
        fs::metadata(&again.model).unwrap().modified().unwrap(),
        modified
    );
}

#[test]
fn invalid_specs_are_rejected() {
    let dir = scratch("invalid");
    let bad = [
        TinyModelSpec {
            text_heads: 3,
            ..TinyModelSpec::default()
        },
        TinyModelSpec {
            vision_ff: 32,
            ..TinyModelSpec::default()
        },
        TinyModelSpec {
            scale_factor: 1,
            ..TinyModelSpec::default()
        },
        TinyModelSpec {
            patch_size: 7,
            ..TinyModelSpec::default()
        },
    ];
    for spec in bad {
        let err = generate(&spec, &dir).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{spec:?}");
    }
    assert!(!dir.exists(), "nothing is written for an invalid spec");
}
