//! The selection rules over real and made-up listings.

use super::*;

const DEFAULT: Quantization<'static> = Quantization::Default("Q8_0");

fn select<'a>(listing: &[&'a str], q: Quantization<'_>) -> Result<(&'a str, &'a str), Miss> {
    FileSelector::default()
        .select(listing, q)
        .map_err(|e| e.miss)
}

#[test]
fn the_real_listings_give_the_expected_pairs() {
    let listing = [
        ".gitattributes",
        "README.md",
        "SmolVLM-256M-Instruct-Q8_0.gguf",
        "SmolVLM-256M-Instruct-f16.gguf",
        "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
        "mmproj-SmolVLM-256M-Instruct-f16.gguf",
    ];
    assert_eq!(
        select(&listing, DEFAULT),
        Ok((
            "SmolVLM-256M-Instruct-Q8_0.gguf",
            "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf"
        ))
    );
    assert_eq!(
        select(&listing, Quantization::Explicit("F16")),
        Ok((
            "SmolVLM-256M-Instruct-f16.gguf",
            "mmproj-SmolVLM-256M-Instruct-f16.gguf"
        ))
    );
}

#[test]
fn a_sole_pair_is_taken_whatever_its_names() {
    for (model, mmproj) in [
        ("model.gguf", "mmproj.gguf"),
        ("finetune-v2.gguf", "mmproj-finetune.gguf"),
        ("X-f16.gguf", "MMPROJ-X-Q4_0.gguf"),
        ("sub/model.gguf", "sub/mmproj.gguf"),
    ] {
        let listing = ["README.md", mmproj, model, "config.json"];
        for q in [DEFAULT, Quantization::Default("f16")] {
            assert_eq!(
                select(&listing, q),
                Ok((model, mmproj)),
                "{listing:?} {q:?}"
            );
        }
    }
    // What the issue saw: `:model` now finds the mmproj too.
    assert_eq!(
        select(
            &["model.gguf", "mmproj.gguf"],
            Quantization::Explicit("model")
        ),
        Ok(("model.gguf", "mmproj.gguf"))
    );
    // Asked for by name, a quantization the names do not carry is no obstacle.
    assert_eq!(
        select(
            &["model.gguf", "mmproj.gguf"],
            Quantization::Explicit("Q4_K_M")
        ),
        Ok(("model.gguf", "mmproj.gguf"))
    );
    // The mmproj's name does not matter: the text model's decides.
    assert_eq!(
        select(
            &["X-Q4_K_M.gguf", "mmproj-X-f16.gguf"],
            Quantization::Explicit("q4_k_m")
        ),
        Ok(("X-Q4_K_M.gguf", "mmproj-X-f16.gguf"))
    );
}

#[test]
fn a_sole_pair_of_another_quantization_asked_for_by_name_is_refused() {
    let listing = ["X-Q8_0.gguf", "mmproj-X-Q8_0.gguf"];
    assert_eq!(
        select(&listing, Quantization::Explicit("Q4_K_M")),
        Err(Miss::OtherQuantization {
            file: "X-Q8_0.gguf".into(),
            found: "Q8_0".into()
        })
    );
    assert_eq!(
        select(&listing, Quantization::Default("Q4_K_M")),
        Ok(("X-Q8_0.gguf", "mmproj-X-Q8_0.gguf"))
    );
    assert_eq!(
        select(&listing, Quantization::Explicit("q8_0")),
        Ok(("X-Q8_0.gguf", "mmproj-X-Q8_0.gguf"))
    );
}

#[test]
fn with_a_choice_the_quantization_decides() {
    let listing = ["M-Q4_K_M.gguf", "M-Q8_0.gguf", "mmproj-M-f16.gguf"];
    assert_eq!(
        select(&listing, Quantization::Explicit("q4_k_m")),
        Ok(("M-Q4_K_M.gguf", "mmproj-M-f16.gguf"))
    );
    assert_eq!(
        select(&listing, DEFAULT),
        Ok(("M-Q8_0.gguf", "mmproj-M-f16.gguf"))
    );
    let e = FileSelector::default()
        .select(&listing, Quantization::Default("Q2_K"))
        .unwrap_err();
    assert_eq!(
        e.miss,
        Miss::NoQuantization {
            role: FileRole::Model,
            quantization: "Q2_K".into()
        }
    );
    assert_eq!(e.ggufs.model_quantizations(), ["Q4_K_M", "Q8_0"]);
    assert_eq!(e.ggufs.mmprojs, ["mmproj-M-f16.gguf"]);

    // Two plain names and no match: both are listed.
    let e = FileSelector::default()
        .select(&["model.gguf", "model-v2.gguf", "mmproj.gguf"], DEFAULT)
        .unwrap_err();
    assert!(matches!(
        e.miss,
        Miss::NoQuantization {
            role: FileRole::Model,
            ..
        }
    ));
    assert_eq!(e.ggufs.models, ["model-v2.gguf", "model.gguf"]);
    assert_eq!(
        e.ggufs.to_string(),
        "text models 'model-v2.gguf', 'model.gguf'; mmproj 'mmproj.gguf'"
    );
    // ... and the end of a name picks one, with the only mmproj.
    assert_eq!(
        select(
            &["model.gguf", "model-v2.gguf", "mmproj.gguf"],
            Quantization::Explicit("v2")
        ),
        Ok(("model-v2.gguf", "mmproj.gguf"))
    );
}

#[test]
fn several_mmprojs_follow_the_models_quantization_then_the_fallbacks() {
    let listing = ["model.gguf", "mmproj-Q8_0.gguf", "mmproj-f16.gguf"];
    assert_eq!(
        select(&listing, DEFAULT),
        Ok(("model.gguf", "mmproj-Q8_0.gguf"))
    );
    assert_eq!(
        select(&listing, Quantization::Default("Q4_0")),
        Ok(("model.gguf", "mmproj-f16.gguf"))
    );
    // The only model is f16: its mmproj is preferred over the default's.
    let listing = ["X-f16.gguf", "mmproj-X-Q8_0.gguf", "mmproj-X-f16.gguf"];
    assert_eq!(
        select(&listing, DEFAULT),
        Ok(("X-f16.gguf", "mmproj-X-f16.gguf"))
    );
    // Several mmprojs, none of the quantization nor a fallback.
    assert_eq!(
        select(&["M-Q8_0.gguf", "mmproj-a.gguf", "mmproj-b.gguf"], DEFAULT),
        Err(Miss::NoQuantization {
            role: FileRole::Mmproj,
            quantization: "Q8_0".into()
        })
    );
}

#[test]
fn missing_roles_and_split_parts_are_named() {
    let e = FileSelector::default()
        .select(&["M-Q8_0.gguf", "README.md"], DEFAULT)
        .unwrap_err();
    assert_eq!(e.miss, Miss::Missing(FileRole::Mmproj));
    assert_eq!(e.ggufs.to_string(), "text model 'M-Q8_0.gguf'");
    assert_eq!(
        select(&["a-Q8_0.gguf", "b-Q8_0.gguf"], DEFAULT),
        Err(Miss::Missing(FileRole::Mmproj))
    );

    let listing = [
        "M-Q8_0-00002-of-00002.gguf",
        "M-Q8_0-00001-of-00002.gguf",
        "mmproj-M-f16.gguf",
    ];
    let e = FileSelector::default()
        .select(&listing, DEFAULT)
        .unwrap_err();
    assert_eq!(e.miss, Miss::Missing(FileRole::Model));
    assert_eq!(
        e.ggufs.to_string(),
        "mmproj 'mmproj-M-f16.gguf'; split GGUF parts (not supported) \
         'M-Q8_0-00001-of-00002.gguf', 'M-Q8_0-00002-of-00002.gguf'"
    );
    // Beside a whole model, split parts are set aside.
    let mut with_whole = listing.to_vec();
    with_whole.push("M-f16.gguf");
    assert_eq!(
        select(&with_whole, DEFAULT),
        Ok(("M-f16.gguf", "mmproj-M-f16.gguf"))
    );

    let e = FileSelector::default()
        .select(&["README.md"], DEFAULT)
        .unwrap_err();
    assert_eq!(e.miss, Miss::Missing(FileRole::Model));
    assert_eq!(e.ggufs.to_string(), "no .gguf file");
}

#[test]
fn odd_names_neither_panic_nor_match() {
    for name in [
        ".gguf",
        "gguf",
        "",
        "-.gguf",
        "é.gguf",
        "x.GGUF",
        "-of-.gguf",
        "mmpro",
    ] {
        let _ = quant_of(name);
        let _ = carried_quant(name);
        let _ = FileSelector::default().select(&[name], DEFAULT);
    }
    assert_eq!(quant_of("x.GGUF"), Some("x"));
    assert_eq!(quant_of("a/b/model.Q8_0.gguf"), Some("Q8_0"));
    assert!(!is_split_part("x-of-2") && !is_split_part("x--of-") && is_split_part("x-1-of-2"));
    for q in [
        "Q8_0", "q4_k_m", "IQ4_XS", "TQ1_0", "F16", "bf16", "MXFP4", "Q4_0_4_4",
    ] {
        assert!(is_quant_name(q), "{q}");
    }
    for q in ["model", "v2", "finetune", "Q", "IQ", "QAT", "f8x", "mmproj"] {
        assert!(!is_quant_name(q), "{q}");
    }
}
