//! Which pair a Hub repo resolves to when its files are not named the
//! ggml-org way: a repo's only pair is taken whatever its names, the
//! quantization decides only where there is a choice, and a refusal lists what
//! the repo holds. Against the local Hub of `hub_server`, online then offline.

use smolvlm::{Error, FileRole, HubError, LoadOptions, Miss, Model, ModelSource};

use crate::hub::{
    hub_err, hub_with_tiny, local_tokens, options, resolve, smolvlm, tiny_files, tokens_of, MMPROJ,
    MODEL, REPO,
};
use crate::hub_server::{commit, FakeFile, HubServer};
use crate::util::{dump, TempDir};

/// A Hub whose `repo` holds, at `main`, the tiny pair's bytes under each of
/// `models` and `mmprojs` (and a README).
fn hub_with(repo: &str, models: &[&str], mmprojs: &[&str]) -> HubServer {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    let mut files = vec![FakeFile::new("README.md", b"# a fine-tune\n".to_vec())];
    files.extend(
        models
            .iter()
            .map(|n| FakeFile::new(n, model.bytes.to_vec())),
    );
    files.extend(
        mmprojs
            .iter()
            .map(|n| FakeFile::new(n, mmproj.bytes.to_vec())),
    );
    server.add_commit(repo, &["main"], &commit(9), files);
    server
}

fn no_match(e: &HubError) -> &smolvlm::NoMatch {
    match e {
        HubError::NoMatchingFile { miss, .. } => miss,
        other => panic!("expected NoMatchingFile, got {other}"),
    }
}

fn load(source: &str, options: &smolvlm::HubOptions) -> Model {
    Model::from_source(
        &ModelSource::parse(source).unwrap(),
        options,
        &LoadOptions::default().with_threads(2),
    )
    .unwrap()
}

#[test]
fn a_sole_pair_resolves_and_loads_whatever_its_names_online_then_offline() {
    for (repo, model, mmproj) in [
        ("test-org/Plain-GGUF", "model.gguf", "mmproj.gguf"),
        (
            "test-org/Finetune-GGUF",
            "finetune-v2.gguf",
            "mmproj-finetune.gguf",
        ),
    ] {
        let server = hub_with(repo, &[model], &[mmproj]);
        let cache = TempDir::new("hub-sole-pair");
        let online = options(&server, &cache);
        let offline = online.clone().with_offline(true);

        // Nothing cached yet: the fetch hint names no quantization, since none was asked for.
        let e = hub_err(resolve(repo, &offline));
        assert!(matches!(e, HubError::NotCached { .. }), "{e}");
        assert!(
            e.to_string().contains(&format!("smolvlm fetch {repo}`")),
            "{e}"
        );

        let resolved = resolve(repo, &online).unwrap();
        let hub = resolved.hub.as_ref().unwrap();
        assert_eq!(
            (hub.model_file.as_str(), hub.mmproj_file.as_str()),
            (model, mmproj),
            "{repo}"
        );
        assert!(hub.downloaded);
        assert_eq!(tokens_of(&load(repo, &online)), local_tokens(), "{repo}");

        // A quantization asked for by name that the names do not carry is no obstacle.
        let asked = resolve(&format!("{repo}:Q4_K_M"), &online).unwrap();
        assert_eq!(asked.files, resolved.files);

        let seen = server.requests().len();
        let cached = resolve(repo, &offline).unwrap();
        assert_eq!(cached.files, resolved.files, "{repo}");
        assert_eq!(tokens_of(&load(repo, &offline)), local_tokens(), "{repo}");
        assert_eq!(
            resolve(&format!("{repo}:Q4_K_M"), &offline).unwrap().files,
            resolved.files
        );
        assert_eq!(server.requests().len(), seen, "offline made a request");
    }
}

#[test]
fn two_text_models_and_one_mmproj_follow_the_quantization() {
    let repo = "test-org/TwoQuants-GGUF";
    let server = hub_with(
        repo,
        &["Tiny-Q8_0.gguf", "Tiny-f16.gguf"],
        &["mmproj-Tiny.gguf"],
    );
    let cache = TempDir::new("hub-two-quants");
    let online = options(&server, &cache);

    let pick = |source: &str, options: &smolvlm::HubOptions| {
        let r = resolve(source, options).unwrap();
        let hub = r.hub.unwrap();
        (hub.model_file, hub.mmproj_file)
    };
    let pair = |m: &str| (m.to_owned(), "mmproj-Tiny.gguf".to_owned());
    assert_eq!(pick(repo, &online), pair("Tiny-Q8_0.gguf"));
    assert_eq!(pick(&format!("{repo}:F16"), &online), pair("Tiny-f16.gguf"));

    let e = hub_err(resolve(&format!("{repo}:Q4_K_M"), &online));
    let miss = no_match(&e);
    assert_eq!(
        miss.miss,
        Miss::NoQuantization {
            role: FileRole::Model,
            quantization: "Q4_K_M".into()
        }
    );
    let message = e.to_string();
    for needle in [
        "'Tiny-Q8_0.gguf'",
        "'Tiny-f16.gguf'",
        "mmproj 'mmproj-Tiny.gguf'",
        &format!("{repo}:Q8_0"),
    ] {
        assert!(message.contains(needle), "{needle}: {message}");
    }

    // Offline, the same rule over the cached snapshot: both models are there.
    let offline = online.with_offline(true);
    assert_eq!(pick(repo, &offline), pair("Tiny-Q8_0.gguf"));
    assert_eq!(
        pick(&format!("{repo}:f16"), &offline),
        pair("Tiny-f16.gguf")
    );
    let e = hub_err(resolve(&format!("{repo}:Q4_K_M"), &offline));
    match &e {
        HubError::NotCached { what, .. } => {
            assert!(
                what.contains("Q4_K_M") && what.contains("'Tiny-f16.gguf'"),
                "{e}"
            );
        }
        other => panic!("expected NotCached, got {other}"),
    }
}

#[test]
fn two_text_models_without_a_quantization_match_are_both_named() {
    let repo = "test-org/TwoPlain-GGUF";
    let server = hub_with(repo, &["model.gguf", "model-v2.gguf"], &["mmproj.gguf"]);
    let cache = TempDir::new("hub-two-plain");
    let online = options(&server, &cache);

    let e = hub_err(resolve(repo, &online));
    assert!(
        matches!(
            no_match(&e).miss,
            Miss::NoQuantization {
                role: FileRole::Model,
                ..
            }
        ),
        "{e}"
    );
    let message = e.to_string();
    assert!(
        message.contains("text models 'model-v2.gguf', 'model.gguf'")
            && message.contains("mmproj 'mmproj.gguf'")
            && message.contains("Q8_0"),
        "{message}"
    );
    assert!(
        !cache
            .path("hub")
            .join("models--test-org--TwoPlain-GGUF/snapshots")
            .exists(),
        "nothing is downloaded when there is no pair"
    );
    // The end of a name picks one, with the repo's only mmproj.
    let r = resolve(&format!("{repo}:v2"), &online).unwrap();
    let hub = r.hub.unwrap();
    assert_eq!(
        (hub.model_file.as_str(), hub.mmproj_file.as_str()),
        ("model-v2.gguf", "mmproj.gguf")
    );
}

#[test]
fn a_sole_pair_of_another_quantization_asked_for_by_name_is_refused() {
    let server = hub_with_tiny();
    let cache = TempDir::new("hub-other-quant");
    let online = options(&server, &cache);

    let e = hub_err(resolve(&format!("{REPO}:Q4_K_M"), &online));
    assert_eq!(
        no_match(&e).miss,
        Miss::OtherQuantization {
            file: MODEL.into(),
            found: "Q8_0".into()
        }
    );
    let message = e.to_string();
    assert!(
        message.contains("of quantization Q8_0, not Q4_K_M")
            && message.contains(&format!("{REPO}:Q8_0"))
            && message.contains(MMPROJ),
        "{message}"
    );
    assert_eq!(Error::from(e).kind(), "hub_no_matching_file");
    // Not asked for by name, the default takes the pair; and offline likewise.
    let pair = resolve(REPO, &online).unwrap();
    let offline = online.with_offline(true);
    assert_eq!(resolve(REPO, &offline).unwrap().files, pair.files);
    let e = hub_err(resolve(&format!("{REPO}:Q4_K_M"), &offline));
    assert!(
        matches!(e, HubError::NotCached { ref what, .. } if what.contains("Q4_K_M") && what.contains(MODEL)),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains(&format!("smolvlm fetch {REPO}:Q4_K_M")),
        "{e}"
    );
}

#[test]
fn split_parts_are_named_as_unsupported() {
    let repo = "test-org/Split-GGUF";
    let parts = [
        "Tiny-Q8_0-00001-of-00002.gguf",
        "Tiny-Q8_0-00002-of-00002.gguf",
    ];
    let server = hub_with(repo, &parts, &["mmproj-Tiny.gguf"]);
    let cache = TempDir::new("hub-split");

    let e = hub_err(resolve(repo, &options(&server, &cache)));
    let miss = no_match(&e);
    assert_eq!(miss.miss, Miss::Missing(FileRole::Model));
    assert_eq!(miss.ggufs.splits, parts);
    let message = e.to_string();
    assert!(
        message.contains("split GGUF parts (not supported) 'Tiny-Q8_0-00001-of-00002.gguf'")
            && message.contains("llama-gguf-split --merge"),
        "{message}"
    );
}

#[test]
fn cli_fetch_takes_a_sole_pair_and_lists_the_files_when_there_is_none() {
    let repo = "test-org/Plain-GGUF";
    let server = hub_with(repo, &["model.gguf"], &["mmproj.gguf"]);
    server.add_commit(
        "test-org/TwoPlain-GGUF",
        &["main"],
        &commit(10),
        vec![
            FakeFile::new("model.gguf", tiny_files().0.bytes.to_vec()),
            FakeFile::new("model-v2.gguf", tiny_files().0.bytes.to_vec()),
            FakeFile::new("mmproj.gguf", tiny_files().1.bytes.to_vec()),
        ],
    );
    let home = TempDir::new("hub-cli-plain");
    let url = server.url();

    let out = smolvlm(&["fetch", repo], &home.0, Some(&url));
    assert!(out.status.success(), "{}", dump(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("model.gguf"),
        "{}",
        dump(&out)
    );
    let out = smolvlm(&["info", "--model", repo, "--offline"], &home.0, None);
    assert!(out.status.success(), "{}", dump(&out));

    let out = smolvlm(&["fetch", "test-org/TwoPlain-GGUF"], &home.0, Some(&url));
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'model-v2.gguf', 'model.gguf'") && stderr.contains("mmproj 'mmproj.gguf'"),
        "{}",
        dump(&out)
    );
}
