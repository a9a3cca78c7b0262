//! Models from the Hub: resolution, download, cache, offline mode and
//! verification, against a Hub on 127.0.0.1 that each test starts itself
//! (`hub_server`). Every test has its own cache directory; none reads or sets
//! the process environment.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use smolvlm::{
    DownloadEvent, Error, FileRole, GenerationOptions, HubError, HubOptions, LoadError,
    LoadOptions, Miss, Model, ModelSource, ResolvedModel,
};
use smolvlm_testkit::images::{gradient, write_png};
use smolvlm_testkit::{tiny_model, tiny_model_with, TinyModelSpec};

use crate::hub_server::{commit, FakeFile, Fault, HubServer};
use crate::util::{dump, model, TempDir};

pub(crate) const REPO: &str = "test-org/SmolVLM-Tiny-GGUF";
pub(crate) const MODEL: &str = "SmolVLM-Tiny-Q8_0.gguf";
pub(crate) const MMPROJ: &str = "mmproj-SmolVLM-Tiny-Q8_0.gguf";

/// The tiny pair's bytes under Hub-like names.
pub(crate) fn tiny_files() -> (FakeFile, FakeFile) {
    let pair = tiny_model();
    (
        FakeFile::new(MODEL, std::fs::read(pair.model).unwrap()),
        FakeFile::new(MMPROJ, std::fs::read(pair.mmproj).unwrap()),
    )
}

/// A Hub whose `REPO` holds the tiny pair at `main` = commit 1.
pub(crate) fn hub_with_tiny() -> HubServer {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    server.add_commit(REPO, &["main"], &commit(1), vec![model, mmproj]);
    server
}

/// Options that use `cache` and `server`, nothing from the environment.
pub(crate) fn options(server: &HubServer, cache: &TempDir) -> HubOptions {
    HubOptions::new(cache.path("hub"))
        .with_endpoint(server.url())
        .with_retries(1)
}

pub(crate) fn resolve(source: &str, options: &HubOptions) -> Result<ResolvedModel, Error> {
    ModelSource::parse(source)?.resolve(options)
}

pub(crate) fn hub_err(result: Result<ResolvedModel, Error>) -> HubError {
    match result {
        Err(Error::Hub(e)) => e,
        other => panic!("expected a Hub error, got {other:?}"),
    }
}

fn short() -> GenerationOptions {
    GenerationOptions::default().with_max_tokens(8)
}

/// What the tiny model says, loaded from local paths.
pub(crate) fn local_tokens() -> Vec<i32> {
    model()
        .session()
        .unwrap()
        .caption(&gradient(640, 480), "Describe this image.", &short())
        .unwrap()
        .tokens
}

pub(crate) fn tokens_of(model: &Model) -> Vec<i32> {
    model
        .session()
        .unwrap()
        .caption(&gradient(640, 480), "Describe this image.", &short())
        .unwrap()
        .tokens
}

fn snapshot(cache: &TempDir, commit: &str, file: &str) -> std::path::PathBuf {
    cache
        .path("hub")
        .join("models--test-org--SmolVLM-Tiny-GGUF/snapshots")
        .join(commit)
        .join(file)
}

fn blobs(cache: &TempDir) -> Vec<String> {
    let dir = cache
        .path("hub")
        .join("models--test-org--SmolVLM-Tiny-GGUF/blobs");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_first_download_lands_in_the_hf_cache_and_captions() {
    let server = hub_with_tiny();
    let cache = TempDir::new("hub-first");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let options = options(&server, &cache).with_progress(move |e: &DownloadEvent<'_>| {
        let line = match *e {
            DownloadEvent::Started { file, total, .. } => format!("start {file} {total}"),
            DownloadEvent::Progress {
                file, downloaded, ..
            } => format!("at {file} {downloaded}"),
            DownloadEvent::Finished { file, total, .. } => format!("done {file} {total}"),
            _ => "other".to_owned(),
        };
        sink.lock().unwrap().push(line);
    });

    let resolved = resolve(REPO, &options).unwrap();
    let hub = resolved.hub.as_ref().unwrap();
    assert!(hub.downloaded);
    assert_eq!(
        (
            hub.commit.as_str(),
            hub.model_file.as_str(),
            hub.mmproj_file.as_str()
        ),
        (commit(1).as_str(), MODEL, MMPROJ)
    );
    assert_eq!(resolved.files.model, snapshot(&cache, &commit(1), MODEL));
    assert_eq!(resolved.files.mmproj, snapshot(&cache, &commit(1), MMPROJ));
    let refs = cache
        .path("hub")
        .join("models--test-org--SmolVLM-Tiny-GGUF/refs/main");
    assert_eq!(std::fs::read_to_string(refs).unwrap(), commit(1));
    let (model_file, mmproj_file) = tiny_files();
    assert_eq!(
        std::fs::read(&resolved.files.model).unwrap(),
        *model_file.bytes
    );
    // Blobs are named by SHA-256, as hf-hub and huggingface_hub name LFS blobs.
    let mut expected = vec![model_file.sha256.clone(), mmproj_file.sha256.clone()];
    expected.sort();
    let stored: Vec<String> = blobs(&cache)
        .into_iter()
        .filter(|b| !b.ends_with(".lock"))
        .collect();
    assert_eq!(stored, expected);

    let events = events.lock().unwrap().clone();
    for (file, len) in [
        (MODEL, model_file.bytes.len()),
        (MMPROJ, mmproj_file.bytes.len()),
    ] {
        assert!(
            events.contains(&format!("start {file} {len}")),
            "{events:?}"
        );
        assert!(events.contains(&format!("at {file} {len}")), "{events:?}");
        assert!(events.contains(&format!("done {file} {len}")), "{events:?}");
    }

    let model = Model::from_source(
        &ModelSource::parse(REPO).unwrap(),
        &options,
        &LoadOptions::default().with_threads(2),
    )
    .unwrap();
    assert_eq!(tokens_of(&model), local_tokens());
}

#[test]
fn a_second_run_comes_from_the_cache_even_with_the_server_stopped() {
    let mut server = hub_with_tiny();
    let cache = TempDir::new("hub-second");
    let options = options(&server, &cache);
    let first = resolve(REPO, &options).unwrap();
    let before = server.requests().len();

    // Online with everything cached: one listing request, no file transfer.
    let second = resolve(REPO, &options).unwrap();
    assert!(!second.hub.as_ref().unwrap().downloaded);
    assert_eq!(second.files, first.files);
    let new: Vec<String> = server.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].starts_with("/api/models/"), "{new:?}");

    // The Hub is gone: the cached copy is used, without --offline.
    server.stop();
    let third = resolve(REPO, &options).unwrap();
    assert_eq!(third.files, first.files);
    let model = Model::from_source(
        &ModelSource::parse(REPO).unwrap(),
        &options,
        &LoadOptions::default().with_threads(2),
    )
    .unwrap();
    assert_eq!(tokens_of(&model), local_tokens());

    // A repo that was never cached is a network error naming the repo.
    let e = hub_err(resolve("test-org/Other-GGUF", &options));
    assert!(matches!(e, HubError::Network { .. }), "{e}");
    assert!(e.to_string().contains("test-org/Other-GGUF"), "{e}");
}

#[test]
fn offline_mode_reads_the_cache_and_never_the_network() {
    let server = hub_with_tiny();
    let cache = TempDir::new("hub-offline");
    let offline = options(&server, &cache).with_offline(true);

    let e = hub_err(resolve(REPO, &offline));
    assert!(matches!(e, HubError::NotCached { .. }), "{e}");
    assert_eq!(
        Error::from(HubError::NotCached {
            repo: String::new(),
            revision: String::new(),
            quantization: None,
            what: String::new(),
            cache_dir: Default::default(),
        })
        .kind(),
        "hub_not_cached"
    );
    let message = e.to_string();
    assert!(
        message.contains(REPO) && message.contains("smolvlm fetch"),
        "{message}"
    );
    assert!(
        message.contains(&cache.path("hub").display().to_string()),
        "{message}"
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());

    let online = resolve(REPO, &options(&server, &cache)).unwrap();
    let seen = server.requests().len();
    let cached = resolve(REPO, &offline).unwrap();
    assert_eq!(cached.files, online.files);
    assert_eq!(cached.hub.as_ref().unwrap().commit, commit(1));
    assert_eq!(server.requests().len(), seen, "offline made a request");

    // A quantization that was never downloaded is not there offline.
    let e = hub_err(resolve(&format!("{REPO}:f16"), &offline));
    assert!(
        matches!(e, HubError::NotCached { ref what, .. } if what.contains("f16")),
        "{e}"
    );
}

#[test]
fn an_unknown_repo_or_revision_is_named() {
    let server = hub_with_tiny();
    let cache = TempDir::new("hub-unknown");
    let options = options(&server, &cache);
    let e = hub_err(resolve("test-org/No-Such-GGUF", &options));
    assert!(
        matches!(e, HubError::RepoNotFound { ref repo, .. } if repo == "test-org/No-Such-GGUF"),
        "{e}"
    );
    assert_eq!(Error::from(e).kind(), "hub_repo_not_found");

    let e = hub_err(resolve(&format!("{REPO}@no-such-branch"), &options));
    assert!(
        matches!(e, HubError::RevisionNotFound { ref revision, .. } if revision == "no-such-branch"),
        "{e}"
    );
    let e = hub_err(resolve("SmolVLM-9000B", &options));
    assert!(matches!(e, HubError::UnknownPreset { .. }), "{e}");
}

#[test]
fn a_repo_without_an_mmproj_says_so() {
    let server = HubServer::start();
    let (model, _) = tiny_files();
    server.add_commit("test-org/TextOnly-GGUF", &["main"], &commit(7), vec![model]);
    let cache = TempDir::new("hub-no-mmproj");
    let e = hub_err(resolve("test-org/TextOnly-GGUF", &options(&server, &cache)));
    match &e {
        HubError::NoMatchingFile { miss, .. } => {
            assert_eq!(miss.miss, Miss::Missing(FileRole::Mmproj));
            assert_eq!(miss.ggufs.models, [MODEL]);
            assert!(miss.ggufs.mmprojs.is_empty());
        }
        other => panic!("expected NoMatchingFile for the mmproj, got {other}"),
    }
    // The message lists what the repo holds.
    let message = e.to_string();
    assert!(
        message.contains("no mmproj") && message.contains(&format!("text model '{MODEL}'")),
        "{message}"
    );
    assert!(
        !cache
            .path("hub")
            .join("models--test-org--TextOnly-GGUF/snapshots")
            .exists(),
        "nothing is downloaded when the pair is incomplete"
    );
}

#[test]
fn a_pinned_revision_or_tag_resolves_its_own_commit() {
    let server = hub_with_tiny();
    // An older commit, tagged v0.1, whose mmproj exists only as f16.
    let (model, mmproj) = tiny_files();
    let old_mmproj = FakeFile::new("mmproj-SmolVLM-Tiny-f16.gguf", mmproj.bytes.to_vec());
    server.add_commit(REPO, &["v0.1"], &commit(2), vec![model, old_mmproj]);
    let cache = TempDir::new("hub-pinned");
    let options = options(&server, &cache);

    let pinned = resolve(&format!("{REPO}@{}", commit(2)), &options).unwrap();
    let hub = pinned.hub.as_ref().unwrap();
    assert_eq!(hub.commit, commit(2));
    assert_eq!(
        hub.mmproj_file, "mmproj-SmolVLM-Tiny-f16.gguf",
        "the f16 fallback"
    );
    assert_eq!(
        pinned.files.mmproj,
        snapshot(&cache, &commit(2), "mmproj-SmolVLM-Tiny-f16.gguf")
    );

    let tagged = resolve(&format!("{REPO}@v0.1"), &options).unwrap();
    assert_eq!(tagged.files, pinned.files);
    assert!(!tagged.hub.as_ref().unwrap().downloaded);
    let main = resolve(REPO, &options).unwrap();
    assert_eq!(main.hub.as_ref().unwrap().commit, commit(1));
    assert_ne!(main.files, pinned.files);

    // Offline, the tag and the commit still resolve to their snapshot.
    let offline = options.clone().with_offline(true);
    assert_eq!(
        resolve(&format!("{REPO}@v0.1"), &offline).unwrap().files,
        pinned.files
    );
    assert_eq!(
        resolve(&format!("{REPO}@{}", commit(2)), &offline)
            .unwrap()
            .files,
        pinned.files
    );
    assert_eq!(resolve(REPO, &offline).unwrap().files, main.files);
}

#[test]
fn the_quantization_picks_the_files_and_a_missing_one_lists_what_there_is() {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    let f16 = FakeFile::new("SmolVLM-Tiny-f16.gguf", model.bytes.to_vec());
    let mmproj_f16 = FakeFile::new("mmproj-SmolVLM-Tiny-f16.gguf", mmproj.bytes.to_vec());
    server.add_commit(
        REPO,
        &["main"],
        &commit(3),
        vec![model, mmproj, f16, mmproj_f16],
    );
    let cache = TempDir::new("hub-quant");
    let options = options(&server, &cache);

    let picked = resolve(&format!("{REPO}:F16"), &options).unwrap();
    let hub = picked.hub.as_ref().unwrap();
    assert_eq!(
        (hub.model_file.as_str(), hub.mmproj_file.as_str()),
        ("SmolVLM-Tiny-f16.gguf", "mmproj-SmolVLM-Tiny-f16.gguf")
    );
    let e = hub_err(resolve(&format!("{REPO}:Q4_K_M"), &options));
    match &e {
        HubError::NoMatchingFile { miss, .. } => {
            assert!(
                matches!(miss.miss, Miss::NoQuantization { role: FileRole::Model, ref quantization } if quantization == "Q4_K_M"),
                "{e}"
            );
            assert_eq!(miss.ggufs.model_quantizations(), ["Q8_0", "f16"]);
        }
        other => panic!("expected NoMatchingFile for the model, got {other}"),
    }
    let message = e.to_string();
    assert!(message.contains(&format!("{REPO}:Q8_0")), "{message}");
    assert!(
        message.contains("'SmolVLM-Tiny-f16.gguf'") && message.contains(&format!("'{MODEL}'")),
        "{message}"
    );
}

#[test]
fn a_truncated_transfer_is_retried_and_resumed() {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    let len = model.bytes.len();
    let model = model.with_fault(Fault::truncate_first(1));
    server.add_commit(REPO, &["main"], &commit(1), vec![model.clone(), mmproj]);
    let cache = TempDir::new("hub-truncated");

    let resolved = resolve(REPO, &options(&server, &cache).with_retries(2)).unwrap();
    assert_eq!(std::fs::read(&resolved.files.model).unwrap(), *model.bytes);
    // The second transfer asked only for the bytes that were missing.
    let model_cdn = format!("/cdn/{REPO}/{}/{MODEL}", commit(1));
    let resumed = server
        .requests()
        .iter()
        .filter(|r| r.path == model_cdn)
        .filter_map(|r| r.range.clone())
        .any(|range| range == format!("bytes={}-", len / 2));
    assert!(resumed, "{:#?}", server.requests());
}

#[test]
fn a_transfer_that_keeps_failing_is_an_error_and_nothing_is_cached() {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    let model = model.with_fault(Fault::truncate_first(usize::MAX));
    server.add_commit(REPO, &["main"], &commit(1), vec![model, mmproj]);
    let cache = TempDir::new("hub-failing");
    let options = options(&server, &cache).with_retries(1);

    let e = hub_err(resolve(REPO, &options));
    assert!(
        matches!(e, HubError::Download { ref file, .. } if file == MODEL),
        "{e}"
    );
    assert_eq!(Error::from(e).kind(), "hub_download");
    assert!(!snapshot(&cache, &commit(1), MODEL).exists());
    let e = hub_err(resolve(REPO, &options.with_offline(true)));
    assert!(matches!(e, HubError::NotCached { .. }), "{e}");
}

#[test]
fn a_short_transfer_without_a_length_is_caught_by_the_size_check() {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    let model = model.with_fault(Fault::ShortWithoutLength);
    server.add_commit(REPO, &["main"], &commit(1), vec![model.clone(), mmproj]);
    let cache = TempDir::new("hub-short");
    let options = options(&server, &cache);

    let e = hub_err(resolve(REPO, &options));
    match &e {
        HubError::SizeMismatch {
            file,
            expected,
            actual,
            ..
        } => {
            assert_eq!(file, MODEL);
            assert_eq!(*expected, model.bytes.len() as u64);
            assert!(actual < expected);
        }
        other => panic!("expected SizeMismatch, got {other}"),
    }
    // The short file was deleted, pointer and blob.
    let pointer = snapshot(&cache, &commit(1), MODEL);
    assert!(
        std::fs::symlink_metadata(&pointer).is_err(),
        "{}",
        pointer.display()
    );
    assert!(!blobs(&cache).contains(&model.sha256));
    let e = hub_err(resolve(REPO, &options.with_offline(true)));
    assert!(matches!(e, HubError::NotCached { .. }), "{e}");
}

#[test]
fn bytes_that_do_not_match_their_checksum_are_rejected_then_fetched_anew() {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    let corrupt = model.clone().with_fault(Fault::Corrupt);
    server.add_commit(REPO, &["main"], &commit(1), vec![corrupt, mmproj.clone()]);
    let cache = TempDir::new("hub-corrupt");
    let options = options(&server, &cache);

    let e = hub_err(resolve(REPO, &options));
    match &e {
        HubError::ChecksumMismatch {
            file,
            expected,
            actual,
            ..
        } => {
            assert_eq!(
                (file.as_str(), expected.as_str()),
                (MODEL, model.sha256.as_str())
            );
            assert_ne!(actual, expected);
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert_eq!(Error::from(e).kind(), "hub_checksum_mismatch");
    assert!(std::fs::symlink_metadata(snapshot(&cache, &commit(1), MODEL)).is_err());
    assert!(!blobs(&cache).contains(&model.sha256));

    // Once the Hub serves good bytes, the next run downloads them.
    server.add_commit(REPO, &["main"], &commit(1), vec![model.clone(), mmproj]);
    let resolved = resolve(REPO, &options).unwrap();
    assert_eq!(std::fs::read(&resolved.files.model).unwrap(), *model.bytes);
}

#[test]
fn a_broken_redirect_is_an_error_not_a_panic() {
    let server = HubServer::start();
    let (model, mmproj) = tiny_files();
    let model = model.with_fault(Fault::RedirectWithoutLocation);
    server.add_commit(REPO, &["main"], &commit(1), vec![model, mmproj]);
    let cache = TempDir::new("hub-redirect");
    let e = hub_err(resolve(REPO, &options(&server, &cache)));
    assert!(
        matches!(e, HubError::Download { ref file, .. } if file == MODEL),
        "{e}"
    );
}

#[test]
fn a_cached_file_whose_blob_vanished_is_downloaded_again() {
    let server = hub_with_tiny();
    let cache = TempDir::new("hub-vanished");
    let options = options(&server, &cache);
    let first = resolve(REPO, &options).unwrap();
    std::fs::remove_file(std::fs::canonicalize(&first.files.model).unwrap()).unwrap();
    let second = resolve(REPO, &options).unwrap();
    assert!(second.hub.as_ref().unwrap().downloaded);
    assert_eq!(
        std::fs::read(&second.files.model).unwrap(),
        *tiny_files().0.bytes
    );
}

#[test]
fn pairs_from_the_hub_go_through_the_pair_checks() {
    let server = hub_with_tiny();
    let bad = tiny_model_with(&TinyModelSpec::mismatched());
    server.add_commit(
        "test-org/Mismatched-GGUF",
        &["main"],
        &commit(4),
        vec![
            FakeFile::new(MODEL, std::fs::read(&bad.model).unwrap()),
            FakeFile::new(MMPROJ, std::fs::read(&bad.mmproj).unwrap()),
        ],
    );
    let (model, _) = tiny_files();
    server.add_commit(
        "test-org/TextAsMmproj-GGUF",
        &["main"],
        &commit(5),
        vec![model.clone(), FakeFile::new(MMPROJ, model.bytes.to_vec())],
    );
    let cache = TempDir::new("hub-mismatch");
    let options = options(&server, &cache);
    let load = LoadOptions::default().with_threads(2);

    let source = ModelSource::parse("test-org/Mismatched-GGUF").unwrap();
    match Model::from_source(&source, &options, &load) {
        Err(Error::Load(LoadError::NotAPair {
            model_embd,
            mmproj_embd,
            ..
        })) => assert_eq!((model_embd, mmproj_embd), (64, 96)),
        other => panic!("expected NotAPair, got {other:?}"),
    }
    match resolve("test-org/TextAsMmproj-GGUF", &options) {
        Err(Error::Load(LoadError::WrongKind {
            expected: FileRole::Mmproj,
            ..
        })) => {}
        other => panic!("expected WrongKind, got {other:?}"),
    }
    // The process is alive and a good pair still loads.
    let good = Model::from_source(&ModelSource::parse(REPO).unwrap(), &options, &load).unwrap();
    assert_eq!(tokens_of(&good), local_tokens());
}

#[test]
fn the_token_is_sent_only_when_given() {
    let server = hub_with_tiny();
    let cache = TempDir::new("hub-token");
    // hf-hub would read a token file beside the cache; explicit options win.
    std::fs::write(cache.path("token"), "hf_from_file").unwrap();
    resolve(REPO, &options(&server, &cache)).unwrap();
    assert!(
        server.requests().iter().all(|r| r.authorization.is_none()),
        "{:#?}",
        server.requests()
    );

    let server = hub_with_tiny();
    let cache = TempDir::new("hub-token-2");
    let with_token = options(&server, &cache).with_token(Some("hf_secret".to_owned()));
    assert!(!format!("{with_token:?}").contains("hf_secret"));
    resolve(REPO, &with_token).unwrap();
    let requests = server.requests();
    assert!(requests.len() >= 3, "{requests:#?}");
    assert!(
        requests
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer hf_secret")),
        "{requests:#?}"
    );
}

pub(crate) fn smolvlm(args: &[&str], hf_home: &Path, endpoint: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_smolvlm"));
    command.args(args).env_clear().env("HF_HOME", hf_home);
    if let Some(endpoint) = endpoint {
        command.env("HF_ENDPOINT", endpoint);
    }
    command.output().unwrap()
}

#[test]
fn cli_fetch_downloads_and_prints_the_paths_then_caption_runs_offline() {
    let server = hub_with_tiny();
    let home = TempDir::new("hub-cli");
    let url = server.url();

    let out = smolvlm(&["fetch", REPO], &home.0, Some(&url));
    assert!(out.status.success(), "{}", dump(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path_of = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|p| std::path::PathBuf::from(p.trim()))
            .unwrap_or_else(|| panic!("no '{label}' line\n{}", dump(&out)))
    };
    let (model_path, mmproj_path) = (path_of("model:"), path_of("mmproj:"));
    assert!(model_path.starts_with(home.path("hub")), "{}", dump(&out));
    assert!(
        model_path.is_file() && mmproj_path.is_file(),
        "{}",
        dump(&out)
    );
    assert!(stdout.contains("downloaded"), "{}", dump(&out));
    let again = smolvlm(&["fetch", REPO], &home.0, Some(&url));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already cached"),
        "{}",
        dump(&again)
    );

    // Offline, with no endpoint at all: the cache serves the caption.
    let img = home.path("a.png");
    write_png(&gradient(640, 480), &img).unwrap();
    let args = [
        "caption",
        "--model",
        REPO,
        "--offline",
        "--threads",
        "2",
        "-n",
        "8",
    ];
    let mut with_img: Vec<&str> = args.to_vec();
    with_img.push(img.to_str().unwrap());
    let out = smolvlm(&with_img, &home.0, None);
    assert!(out.status.success(), "{}", dump(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    // A record names the Hub pair it came from: repo, commit and files.
    with_img.extend(["--format", "jsonl"]);
    let out = smolvlm(&with_img, &home.0, None);
    assert!(out.status.success(), "{}", dump(&out));
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let model = record["model"].as_str().unwrap_or_default();
    // "revision:  main (commit abc...)"
    let commit = stdout
        .lines()
        .find_map(|l| l.split("(commit ").nth(1))
        .map(|rest| rest.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("no commit\n{stdout}"));
    assert!(
        model.starts_with(&format!("{REPO}@{commit}:")) && model.contains(".gguf+"),
        "{record}"
    );

    let out = smolvlm(&["info", "--model", REPO, "--offline"], &home.0, None);
    assert!(out.status.success(), "{}", dump(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("idefics3"));
}

#[test]
fn cli_resolution_errors_exit_2_with_the_reason() {
    let server = hub_with_tiny();
    let home = TempDir::new("hub-cli-errors");
    let url = server.url();

    let out = smolvlm(&["fetch", "test-org/No-Such-GGUF"], &home.0, Some(&url));
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("test-org/No-Such-GGUF") && stderr.contains("not found"),
        "{}",
        dump(&out)
    );

    let out = smolvlm(&["fetch", "--offline", REPO], &home.0, Some(&url));
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("offline"),
        "{}",
        dump(&out)
    );

    // HF_HUB_OFFLINE in the child's environment is offline too.
    let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .args(["fetch", REPO])
        .env_clear()
        .env("HF_HOME", &home.0)
        .env("HF_ENDPOINT", &url)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    assert!(server.requests().len() == 1, "{:#?}", server.requests());

    // A local model file needs its mmproj.
    let local = tiny_model();
    let model_arg = local.model.to_str().unwrap();
    let out = smolvlm(&["info", "--model", model_arg], &home.0, None);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--mmproj"),
        "{}",
        dump(&out)
    );
}
