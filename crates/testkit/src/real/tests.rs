use std::collections::BTreeSet;

use super::vocab::{self, row_col_token};
use super::*;
use crate::quant::{dequantize_q8_0, f16_bits_to_f32, Q8_0_BLOCK_BYTES};
use crate::vocab::{TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL};

/// Within 3% of a published size.
fn assert_near(actual: u64, published: u64, what: &str) {
    let ratio = actual as f64 / published as f64;
    assert!(
        (0.97..=1.03).contains(&ratio),
        "{what}: {actual} bytes vs {published} published ({ratio:.4})"
    );
}

#[test]
fn vocab_has_the_published_special_ids() {
    let v = vocab::vocab();
    assert_eq!(v.tokens.len(), 49280);
    assert_eq!(v.token_types.len(), 49280);
    let at = |id: u32| v.tokens[id as usize].as_str();
    assert_eq!(at(0), "<|endoftext|>");
    assert_eq!(at(1), "<|im_start|>");
    assert_eq!(at(2), "<|im_end|>");
    assert_eq!(at(13), "Ċ");
    assert_eq!(at(vocab::DOUBLE_NEWLINE), "ĊĊ");
    assert_eq!(at(469), "filler469");
    assert_eq!(at(49151), "filler49151");
    assert_eq!(at(49152), "<global-img>");
    assert_eq!(vocab::GLOBAL_IMG, 49152);
    assert_eq!(row_col_token(1, 1), 49153);
    assert_eq!(row_col_token(6, 6), 49188);
    assert_eq!(at(49153), "<row_1_col_1>");
    assert_eq!(at(49154), "<row_1_col_2>");
    assert_eq!(at(49159), "<row_2_col_1>");
    assert_eq!(at(49188), "<row_6_col_6>");
    assert_eq!(at(49189), "<fake_token_around_image>");
    assert_eq!(vocab::FAKE_TOKEN_AROUND_IMAGE, 49189);
    assert_eq!(at(49190), "<image>");
    assert_eq!(vocab::IMAGE, 49190);
    assert_eq!(at(49191), "<reserved_49191>");
    assert_eq!(at(49278), "<reserved_49278>");
    assert_eq!(at(49279), "<end_of_utterance>");
    assert_eq!(vocab::END_OF_UTTERANCE, 49279);

    let unique: BTreeSet<&str> = v.tokens.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), v.tokens.len(), "token texts must be unique");

    // Control: the first three and everything from <global-img> on.
    for (id, &ty) in v.token_types.iter().enumerate() {
        let control = id < 3 || id >= vocab::GLOBAL_IMG as usize;
        let expected = if control {
            TOKEN_TYPE_CONTROL
        } else {
            TOKEN_TYPE_NORMAL
        };
        assert_eq!(ty, expected, "type of {id} {:?}", v.tokens[id]);
    }
    // Every merge result is a token, and the merges are the tiny vocabulary's.
    let tiny = crate::vocab::Vocab::smolvlm();
    assert_eq!(v.merges, tiny.merges);
    for merge in &v.merges {
        assert!(unique.contains(merge.replace(' ', "").as_str()), "{merge}");
    }
}

#[test]
fn vocab_tokenizes_prompts_like_the_tiny_one() {
    let (real, tiny) = (vocab::vocab(), crate::vocab::Vocab::smolvlm());
    for text in [
        "User: ",
        "Describe this image.",
        "\nAssistant:",
        "\n\n",
        "a cat 42",
    ] {
        assert_eq!(real.tokenize(text), tiny.tokenize(text), "{text:?}");
    }
    assert_eq!(real.tokenize("\n\n"), vec![vocab::DOUBLE_NEWLINE]);
}

#[test]
fn quiet_rows_are_controls_and_non_ascii_bytes() {
    let v = vocab::vocab();
    let quiet = text_model::quiet_tokens(&v);
    for id in [0, 1, 2, 49152, 49189, 49190, 49200, 49279] {
        assert!(quiet[id], "{id} is quiet");
    }
    // Byte 0x80 and a tab are not printable ASCII; fillers are.
    for id in [3 + 0x80, 3 + 9] {
        assert!(quiet[id], "{id} is quiet");
    }
    for id in [13, 3 + usize::from(b'a'), 468, 469, 30_000, 49151] {
        assert!(!quiet[id], "{id} is plain text");
    }
}

#[test]
fn shapes_are_valid_specs_with_64_tokens_per_tile() {
    for shape in RealShape::ALL {
        let spec = shape.spec();
        spec.validate().unwrap();
        assert_eq!(spec.tokens_per_tile(), 64, "{shape:?}");
        assert_eq!(
            spec.text_embd / spec.text_heads,
            64,
            "head dim of {shape:?}"
        );
        assert_eq!(spec.mmproj_out_embd, spec.text_embd);
    }
    assert_eq!(RealShape::Smolvlm256M.name(), "SmolVLM-256M-Instruct");
    assert_eq!(RealShape::Smolvlm500M.name(), "SmolVLM-500M-Instruct");
    assert_ne!(
        RealShape::Smolvlm256M.cache_key(),
        RealShape::Smolvlm500M.cache_key()
    );
}

/// The (name, ne, type) of every tensor of a file.
fn layout(infos: &[TensorInfo]) -> Vec<(&str, &[u64], TensorType)> {
    infos
        .iter()
        .map(|t| (t.name.as_str(), t.ne.as_slice(), t.ty))
        .collect()
}

#[test]
fn text_tensors_match_the_published_model() {
    for (shape, embd, blocks, kv, ff, n_params) in [
        (RealShape::Smolvlm256M, 576, 30, 192, 1536, 162_974_016u64),
        (RealShape::Smolvlm500M, 960, 32, 320, 2560, 409_252_800u64),
    ] {
        let (_, plans, quiet) = text_file(shape);
        assert_eq!(quiet.len(), 49280);
        let infos = infos(&plans, TensorType::Q8_0);
        let tensors = layout(&infos);
        assert_eq!(tensors.len(), 3 + 9 * blocks, "{shape:?}");
        use TensorType::{F32, Q8_0};
        let v = 49280;
        assert_eq!(tensors[0], ("token_embd.weight", &[embd, v][..], Q8_0));
        assert_eq!(tensors[1], ("output_norm.weight", &[embd][..], F32));
        assert_eq!(tensors[2], ("output.weight", &[embd, v][..], Q8_0));
        for i in 0..blocks {
            let block = &tensors[3 + 9 * i..3 + 9 * (i + 1)];
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            let expected = [
                (name("attn_norm"), vec![embd], F32),
                (name("attn_q"), vec![embd, embd], Q8_0),
                (name("attn_k"), vec![embd, kv], Q8_0),
                (name("attn_v"), vec![embd, kv], Q8_0),
                (name("attn_output"), vec![embd, embd], Q8_0),
                (name("ffn_norm"), vec![embd], F32),
                (name("ffn_gate"), vec![embd, ff], Q8_0),
                (name("ffn_up"), vec![embd, ff], Q8_0),
                (name("ffn_down"), vec![ff, embd], Q8_0),
            ];
            for (got, (n, ne, ty)) in block.iter().zip(&expected) {
                assert_eq!(*got, (n.as_str(), ne.as_slice(), *ty));
            }
        }
        let total: u64 = infos.iter().map(TensorInfo::n_elements).sum();
        assert_eq!(total, n_params, "{shape:?}");
        // Only the output head has damped rows.
        let quiet: Vec<_> = plans
            .iter()
            .filter(|p| p.quiet_rows)
            .map(|p| &p.name)
            .collect();
        assert_eq!(quiet, ["output.weight"]);
    }
}

#[test]
fn mmproj_tensors_match_the_published_mmproj() {
    for shape in RealShape::ALL {
        let text_embd = u64::from(shape.spec().text_embd);
        for ty in ProjectorType::ALL {
            let (_, plans) = mmproj_file(shape, ty);
            let infos = infos(&plans, ty.tensor_type());
            let tensors = layout(&infos);
            assert_eq!(tensors.len(), 3 + 16 * 12 + 3);
            let find = |name: &str| {
                *tensors
                    .iter()
                    .find(|t| t.0 == name)
                    .unwrap_or_else(|| panic!("{name} missing"))
            };
            let matrix = ty.tensor_type();
            use TensorType::F32;
            assert_eq!(find("v.patch_embd.weight").1, [16, 16, 3, 768]);
            assert_eq!(find("v.patch_embd.weight").2, F32);
            assert_eq!(find("v.patch_embd.bias").2, F32);
            assert_eq!(
                find("v.position_embd.weight"),
                ("v.position_embd.weight", &[768, 1024][..], F32)
            );
            assert_eq!(find("v.blk.11.attn_q.weight").1, [768, 768]);
            assert_eq!(find("v.blk.11.attn_out.weight").2, matrix);
            assert_eq!(
                find("v.blk.0.ffn_up.weight"),
                ("v.blk.0.ffn_up.weight", &[768, 3072][..], matrix)
            );
            assert_eq!(
                find("v.blk.0.ffn_down.weight"),
                ("v.blk.0.ffn_down.weight", &[3072, 768][..], matrix)
            );
            assert_eq!(find("v.post_ln.bias").2, F32);
            assert_eq!(
                find("mm.model.fc.weight"),
                ("mm.model.fc.weight", &[768 * 16, text_embd][..], matrix)
            );
            for (name, ne, t) in &tensors {
                let is_matrix = ne.len() == 2 && *name != "v.position_embd.weight";
                assert_eq!(*t, if is_matrix { matrix } else { F32 }, "{name}");
            }
        }
    }
}

#[test]
fn planned_sizes_are_near_the_published_ones() {
    for shape in RealShape::ALL {
        let model = shape.model_file_len().unwrap();
        assert_near(model, shape.published_model_bytes(), shape.name());
        for ty in ProjectorType::ALL {
            let mmproj = shape.mmproj_file_len(ty).unwrap();
            assert_near(
                mmproj,
                shape.published_mmproj_bytes(ty),
                &format!("{shape:?} {ty:?}"),
            );
        }
    }
}

/// Mean and std of `values`.
fn moments(values: &[f32]) -> (f32, f32) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean as f32, var.sqrt() as f32)
}

#[test]
fn q8_0_fill_has_the_planned_scale_and_damped_rows() {
    // 64 tokens of 256 dims; rows 3 and 10 are quiet.
    let plan = TensorPlan::linear("output.weight", &[256, 64], Role::Matrix, 256).with_quiet_rows();
    let mut quiet = vec![false; 64];
    quiet[3] = true;
    quiet[10] = true;
    let mut buf = Vec::new();
    fill(&plan, TensorType::Q8_0, (1, 2), &quiet, &mut buf);
    assert_eq!(buf.len() as u64, TensorType::Q8_0.byte_len(256 * 64));
    for block in buf.chunks(Q8_0_BLOCK_BYTES) {
        assert!(!block[2..].contains(&0x80), "no quant is -128");
    }
    let values = dequantize_q8_0(&buf);
    let rows: Vec<&[f32]> = values.chunks(256).collect();
    let loud: Vec<f32> = rows
        .iter()
        .enumerate()
        .filter(|(r, _)| !quiet[*r])
        .flat_map(|(_, row)| row.iter().copied())
        .collect();
    let (mean, std) = moments(&loud);
    assert!(mean.abs() < 0.005, "mean {mean}");
    assert!(
        (std / plan.std - 1.0).abs() < 0.03,
        "std {std} vs {}",
        plan.std
    );
    let (_, quiet_std) = moments(rows[3]);
    assert!(quiet_std < plan.std * QUIET_ROW_SCALE * 1.3, "{quiet_std}");

    // Same stream, same bytes; another stream, other bytes.
    let mut again = Vec::new();
    fill(&plan, TensorType::Q8_0, (1, 2), &quiet, &mut again);
    assert_eq!(buf, again);
    let mut other = Vec::new();
    fill(&plan, TensorType::Q8_0, (1, 3), &quiet, &mut other);
    assert_ne!(buf, other);
}

#[test]
fn f16_and_f32_fills_have_the_planned_scale() {
    let matrix = TensorPlan::linear("m", &[128, 128], Role::Matrix, 128);
    let mut buf = Vec::new();
    fill(&matrix, TensorType::F16, (5, 0), &[], &mut buf);
    assert_eq!(buf.len(), 128 * 128 * 2);
    let values: Vec<f32> = buf
        .chunks(2)
        .map(|b| f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]])))
        .collect();
    let (mean, std) = moments(&values);
    assert!(mean.abs() < 0.002, "mean {mean}");
    assert!((std / matrix.std - 1.0).abs() < 0.03, "std {std}");
    let bound = matrix.std * 3f32.sqrt() * 1.001;
    assert!(values.iter().all(|x| x.abs() <= bound));
    let distinct: BTreeSet<u32> = values.iter().map(|x| x.to_bits()).collect();
    assert!(distinct.len() > 1000, "{} distinct values", distinct.len());

    let norm = TensorPlan::vector("n", 4096, crate::init::NORM);
    let mut buf = Vec::new();
    fill(&norm, TensorType::F32, (5, 1), &[], &mut buf);
    let values: Vec<f32> = buf
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (mean, std) = moments(&values);
    assert!(
        (mean - 1.0).abs() < 0.01 && (std - 0.1).abs() < 0.01,
        "{mean} {std}"
    );
}

#[test]
fn q8_0_unit_std_is_exact() {
    // Quants -127..=127, each with probability 1/256, and 0 with 2/256.
    let var: f64 = (-127i32..=127).map(|k| f64::from(k * k)).sum::<f64>() / 256.0;
    assert!((var.sqrt() as f32 - crate::init::Q8_0_UNIT_STD).abs() < 1e-4);
}

#[test]
fn minus_128_never_appears_and_nothing_else_changes() {
    let mut rng = crate::init::BulkRng::stream(9, 9);
    let mut seen_zero_from_80 = false;
    for _ in 0..10_000 {
        let word = rng.next_u64();
        let fixed = crate::init::without_minus_128(word);
        for (a, b) in word.to_le_bytes().into_iter().zip(fixed.to_le_bytes()) {
            if a == 0x80 {
                assert_eq!(b, 0);
                seen_zero_from_80 = true;
            } else {
                assert_eq!(a, b);
            }
        }
    }
    assert!(seen_zero_from_80);
    for word in [0x8080_8080_8080_8080u64, 0x0080_8000_7f81_0180, 0, u64::MAX] {
        let fixed = crate::init::without_minus_128(word);
        for (a, b) in word.to_le_bytes().into_iter().zip(fixed.to_le_bytes()) {
            assert_eq!(b, if a == 0x80 { 0 } else { a }, "{word:#x}");
        }
    }
}
