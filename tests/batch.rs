//! `smolvlm caption` on folders: records, bad files, kills and interrupts,
//! resume, shards, sidecars and the old Python config, run as the built
//! binary on the tiny model in temporary directories.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use smolvlm_testkit::images::{checkerboard, gradient, noise, solid, write_jpeg, write_png};

use crate::util::{dump, files, TempDir};

/// The binary with the tiny model and a clean environment, in `dir`; one
/// thread unless `args` say otherwise (ggml's threads spin at barriers, so
/// tests running side by side on a small machine would crawl).
fn command(dir: &Path, args: &[&OsStr]) -> Command {
    let f = files();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smolvlm"));
    cmd.current_dir(dir)
        .env_clear()
        .arg("caption")
        .arg("--model")
        .arg(&f.model)
        .arg("--mmproj")
        .arg(&f.mmproj);
    if !args.iter().any(|a| *a == "-t" || *a == "--threads") {
        cmd.args(["--threads", "1"]);
    }
    cmd.args(args);
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    command(dir, &args).output().unwrap()
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    command(dir, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every line of a JSONL file, each of which must parse.
fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!(
                    "line {} of {} does not parse ({e}): {line}",
                    i + 1,
                    path.display()
                )
            })
        })
        .collect()
}

/// How many records each path has.
fn per_path(records: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        *counts
            .entry(r["path"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

/// `n` distinct small PNGs in `dir/name`, named `img000.png`...
fn image_folder(dir: &TempDir, name: &str, n: u32) -> BTreeSet<String> {
    std::fs::create_dir_all(dir.path(name)).unwrap();
    (0..n)
        .map(|i| {
            let rel = format!("{name}/img{i:03}.png");
            write_png(&noise(96, 64, u64::from(i)), &dir.path(&rel)).unwrap();
            rel
        })
        .collect()
}

/// Waits until `path` holds at least `lines` lines, or panics.
fn wait_for_lines(child: &mut Child, path: &Path, lines: usize) {
    let started = Instant::now();
    while std::fs::read_to_string(path).map_or(0, |t| t.lines().count()) < lines {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended too soon"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no records after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_folder_of_good_and_bad_files_gives_one_record_per_image() {
    let dir = TempDir::new("batch-mixed");
    let d = |p: &str| dir.path(&format!("in/{p}"));
    std::fs::create_dir_all(d("sub")).unwrap();
    std::fs::create_dir_all(d(".cache")).unwrap();
    write_png(&gradient(320, 240), &d("good.png")).unwrap();
    write_jpeg(&checkerboard(300, 200, 10), &d("good.jpg"), 90).unwrap();
    write_png(&noise(200, 150, 3), &d("sub/deeper.png")).unwrap();
    // An image without an extension is found by its signature.
    write_png(&solid(64, 64, [10, 200, 30]), &d("no_extension")).unwrap();
    let png = std::fs::read(d("good.png")).unwrap();
    std::fs::write(d("truncated.png"), &png[..png.len() / 2]).unwrap();
    std::fs::write(d("empty.jpg"), b"").unwrap();
    std::fs::write(d("random.jpg"), noise(20, 20, 9).into_raw()).unwrap();
    // Skipped: not an image by name or content; hidden entries.
    std::fs::write(d("notes.txt"), "not an image\n").unwrap();
    write_png(&gradient(32, 32), &d(".hidden.png")).unwrap();
    write_png(&gradient(32, 32), &d(".cache/x.png")).unwrap();

    let out = run(&dir.0, &["-n", "8", "in", "-o", "out.jsonl"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "failures exit 1: {}",
        dump(&out)
    );
    let recs = records(&dir.path("out.jsonl"));
    let kinds: BTreeMap<&str, &str> = recs
        .iter()
        .map(|r| {
            let kind = r["error"]["kind"].as_str().unwrap_or("ok");
            (r["path"].as_str().unwrap(), kind)
        })
        .collect();
    let expected: BTreeMap<&str, &str> = [
        ("in/empty.jpg", "image_no_data"),
        ("in/good.jpg", "ok"),
        ("in/good.png", "ok"),
        ("in/no_extension", "ok"),
        ("in/random.jpg", "image_format"),
        ("in/sub/deeper.png", "ok"),
        ("in/truncated.png", "image_truncated"),
    ]
    .into();
    assert_eq!(kinds, expected, "{}", dump(&out));
    assert_eq!(recs.len(), expected.len());
    for r in &recs {
        assert_eq!(r["sha256"].as_str().unwrap().len(), 64, "{r}");
        if r.get("error").is_none() {
            assert!(
                r["caption"].is_string() && r["generated_tokens"].as_u64() > Some(0),
                "{r}"
            );
            assert!(
                r["tiles"].as_u64() >= Some(1) && r["image_tokens"].as_u64() > Some(0),
                "{r}"
            );
            for stage in [
                "decode", "resize", "tokenize", "encode", "prefill", "generate", "total",
            ] {
                assert!(r["ms"][stage].is_number(), "{stage}: {r}");
            }
        } else {
            assert!(
                r["error"]["message"].as_str().unwrap().contains("in/"),
                "{r}"
            );
            assert!(r.get("caption").is_none());
        }
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 captioned, 3 failed"), "{}", dump(&out));
    assert!(
        stderr.contains("1 non-image file skipped"),
        "{}",
        dump(&out)
    );

    // The same folder again: nothing is captioned twice, and the earlier
    // failures still make the exit code 1.
    let again = run(&dir.0, &["-n", "8", "in", "-o", "out.jsonl"]);
    assert_eq!(again.status.code(), Some(1), "{}", dump(&again));
    assert_eq!(records(&dir.path("out.jsonl")).len(), expected.len());
    assert!(String::from_utf8_lossy(&again.stderr)
        .contains("0 captioned, 3 failed (3 in an earlier run), 4 skipped"));
    // --retry-errors tries the failures again, and only them.
    let retry = run(
        &dir.0,
        &["-n", "8", "in", "-o", "out.jsonl", "--retry-errors"],
    );
    assert_eq!(retry.status.code(), Some(1), "{}", dump(&retry));
    let counts = per_path(&records(&dir.path("out.jsonl")));
    assert_eq!(counts["in/good.png"], 1);
    assert_eq!(counts["in/truncated.png"], 2);
}

#[test]
fn sigkill_mid_run_then_resume_records_every_image_exactly_once() {
    let dir = TempDir::new("batch-kill");
    let all = image_folder(&dir, "set", 16);
    let out = dir.path("out.jsonl");
    // About a quarter of a second per image: slow enough to interrupt.
    let args = ["-n", "400", "--max-tiles", "1", "set", "-o", "out.jsonl"];
    let mut child = spawn(&dir.0, &args);
    wait_for_lines(&mut child, &out, 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = records(&out);
    assert!(before.len() < all.len(), "the kill came after the end");
    // A power cut could also leave half a record: resume cuts it off.
    let mut text = std::fs::read(&out).unwrap();
    text.extend_from_slice(br#"{"path":"set/img0"#);
    std::fs::write(&out, text).unwrap();

    let rest = run(&dir.0, &args);
    assert_eq!(rest.status.code(), Some(0), "{}", dump(&rest));
    assert!(
        String::from_utf8_lossy(&rest.stderr).contains("cut short"),
        "{}",
        dump(&rest)
    );
    let after = records(&out);
    let counts = per_path(&after);
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    // The records of the killed run were kept as they were.
    assert_eq!(&after[..before.len()], &before[..]);
}

#[test]
fn sigint_stops_cleanly_flushes_and_resumes() {
    let dir = TempDir::new("batch-sigint");
    let all = image_folder(&dir, "set", 16);
    let out = dir.path("out.jsonl");
    // About a quarter of a second per image: slow enough to interrupt.
    let args = ["-n", "400", "--max-tiles", "1", "set", "-o", "out.jsonl"];
    let mut child = spawn(&dir.0, &args);
    wait_for_lines(&mut child, &out, 1);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", dump(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("smolvlm: interrupted: "), "{stderr}");
    assert!(
        stderr.contains("run the same command again to resume"),
        "{stderr}"
    );
    let before = records(&out);
    assert!(!before.is_empty() && before.len() < all.len(), "{stderr}");
    // The summary counts exactly what the file holds.
    assert!(
        stderr.contains(&format!("interrupted: {} captioned", before.len())),
        "{stderr}"
    );

    let rest = run(&dir.0, &args);
    assert_eq!(rest.status.code(), Some(0), "{}", dump(&rest));
    let counts = per_path(&records(&out));
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[test]
fn shards_cover_a_folder_exactly_once() {
    let dir = TempDir::new("batch-shards");
    let all = image_folder(&dir, "data", 50);
    let n = 3;
    let mut seen = BTreeMap::new();
    for i in 0..n {
        let shard = format!("{i}/{n}");
        let file = format!("shard{i}.jsonl");
        let out = run(
            &dir.0,
            &[
                "-n",
                "2",
                "--max-tiles",
                "1",
                "--shard",
                &shard,
                "data",
                "-o",
                &file,
            ],
        );
        assert!(out.status.success(), "{}", dump(&out));
        let recs = records(&dir.path(&file));
        assert!(!recs.is_empty(), "shard {shard} is empty");
        for (path, count) in per_path(&recs) {
            *seen.entry(path).or_insert(0) += count;
        }
    }
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), all);
    assert!(seen.values().all(|&c| c == 1), "{seen:?}");

    // The split depends on paths relative to the folder, not on where it lives.
    std::fs::rename(dir.path("data"), dir.path("moved")).unwrap();
    let out = run(
        &dir.0,
        &[
            "-n",
            "2",
            "--max-tiles",
            "1",
            "--shard",
            "1/3",
            "moved",
            "-o",
            "moved1.jsonl",
        ],
    );
    assert!(out.status.success(), "{}", dump(&out));
    let names = |file: &str| -> BTreeSet<String> {
        per_path(&records(&dir.path(file)))
            .into_keys()
            .map(|p| p.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names("moved1.jsonl"), names("shard1.jsonl"));
    let bad = run(&dir.0, &["--shard", "3/3", "moved"]);
    assert_eq!(bad.status.code(), Some(2), "{}", dump(&bad));
}

#[test]
fn the_old_python_config_gives_the_documented_settings() {
    let dir = TempDir::new("batch-config");
    std::fs::write(
        dir.path("old.json"),
        r#"{ "smolvlm_version": "ggml-org/SmolVLM-500M-Instruct-GGUF", "port": 8080,
  "timeout": 60, "manage_server": true,
  "image_processing": { "smart_crop": true, "size": [1024, 1024], "min_size": 512,
    "preserve_aspect_ratio": true, "format": "JPEG", "jpeg_quality": 95, "optimize": true } }"#,
    )
    .unwrap();
    let print = |args: &[&str]| {
        let mut all = vec!["caption", "--print-config"];
        all.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
            .current_dir(&dir.0)
            .env_clear()
            .args(&all)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", dump(&out));
        let settings: Value = serde_json::from_slice(&out.stdout).unwrap();
        (settings, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (s, stderr) = print(&["--config", "old.json"]);
    assert_eq!(s["model"], "ggml-org/SmolVLM-500M-Instruct-GGUF");
    assert_eq!(s["timeout_secs"], 60.0);
    assert_eq!(s["image"]["smart_crop"], true);
    assert!(s["image"]["stretch_to"].is_null());
    // The 500M preset's recommended prompt and length apply to its repo.
    assert_eq!(s["max_tokens"], 256);
    // One warning per group of keys that change nothing.
    assert_eq!(s["warnings"].as_array().unwrap().len(), 3, "{s}");
    for key in [
        "port, manage_server",
        "size, image_processing.min_size",
        "jpeg_quality",
    ] {
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
    assert_eq!(stderr.matches("warning").count(), 3, "{stderr}");

    // Flags override the file.
    let (s, _) = print(&[
        "--config",
        "old.json",
        "--timeout",
        "5",
        "--smart-crop=false",
        "-m",
        "SmolVLM-256M-Instruct",
    ]);
    assert_eq!(s["model"], "SmolVLM-256M-Instruct");
    assert_eq!(s["timeout_secs"], 5.0);
    assert_eq!(s["image"]["smart_crop"], false);

    // TOML with the same keys; a stretch when the aspect ratio is not preserved.
    std::fs::write(
        dir.path("old.toml"),
        "timeout = 30\n[image_processing]\nsize = [640, 480]\npreserve_aspect_ratio = false\n",
    )
    .unwrap();
    let (s, stderr) = print(&["--config", "old.toml"]);
    assert_eq!(s["timeout_secs"], 30.0);
    assert_eq!(s["image"]["stretch_to"], serde_json::json!([640, 480]));
    assert!(!stderr.contains("warning"), "{stderr}");

    // A typo is an error naming the key, and nothing runs.
    std::fs::write(
        dir.path("typo.json"),
        r#"{"image_processing": {"smart_crp": true}}"#,
    )
    .unwrap();
    let out = run(&dir.0, &["--config", "typo.json", "x.png"]);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown key 'image_processing.smart_crp'"),
        "{stderr}"
    );
}

#[test]
fn csv_records_quote_and_resume() {
    let dir = TempDir::new("batch-csv");
    image_folder(&dir, "set", 3);
    std::fs::write(dir.path("set/broken, \"quoted\".png"), b"\x89PNG\r\n\x1a\n").unwrap();
    let out = run(&dir.0, &["-n", "8", "set", "-o", "out.csv"]);
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    let read = || {
        let mut reader = csv::Reader::from_path(dir.path("out.csv")).unwrap();
        let header = reader.headers().unwrap().clone();
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        (header, rows)
    };
    let (header, rows) = read();
    assert_eq!(&header[0], "path");
    assert_eq!(rows.len(), 4);
    let kind = header.iter().position(|h| h == "error_kind").unwrap();
    let broken: Vec<_> = rows.iter().filter(|r| !r[kind].is_empty()).collect();
    assert_eq!(broken.len(), 1);
    assert_eq!(&broken[0][0], "set/broken, \"quoted\".png");
    let again = run(&dir.0, &["-n", "8", "set", "-o", "out.csv"]);
    assert_eq!(again.status.code(), Some(1), "{}", dump(&again));
    assert_eq!(read().1.len(), 4, "nothing is recorded twice");
}

#[test]
fn sidecars_are_written_beside_images_and_skipped_on_rerun() {
    let dir = TempDir::new("batch-sidecar");
    image_folder(&dir, "set", 3);
    // a.png and a.jpg would share a.txt: the second is an error, not an overwrite.
    write_png(&gradient(64, 48), &dir.path("set/a.png")).unwrap();
    write_jpeg(&gradient(64, 48), &dir.path("set/a.jpg"), 90).unwrap();
    let out = run(&dir.0, &["-n", "8", "set", "--sidecar"]);
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("set/a.png: error [sidecar_conflict]"),
        "{}",
        dump(&out)
    );
    for name in ["img000", "img001", "img002", "a"] {
        let text = std::fs::read_to_string(dir.path(&format!("set/{name}.txt"))).unwrap();
        assert!(
            text.ends_with('\n') && text.trim().len() > 1,
            "{name}: {text:?}"
        );
    }
    let again = run(&dir.0, &["-n", "8", "set", "--sidecar"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("0 captioned, 1 failed, 4 skipped"),
        "{}",
        dump(&again)
    );
}

/// How many records each key has; every record must hold one.
fn per_key(records: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in records {
        let key = r["key"].as_str().unwrap_or_else(|| panic!("no key: {r}"));
        *counts.entry(key.to_owned()).or_insert(0) += 1;
    }
    counts
}

/// Runs and asserts the exit code; returns stderr.
fn run_expecting(cwd: &Path, args: &[&str], code: i32) -> String {
    let out = run(cwd, args);
    assert_eq!(out.status.code(), Some(code), "{}", dump(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(unix)]
#[test]
fn resume_survives_another_working_directory_and_mount_point() {
    let dir = TempDir::new("batch-cwd");
    image_folder(&dir, "data/photos", 3);
    std::fs::create_dir_all(dir.path("elsewhere")).unwrap();
    let out = dir.path("out.jsonl");
    let caption = |cwd: &Path, folder: &str| {
        let args = [folder, "-n", "4", "--max-tiles", "1", "-o"];
        let mut args = args.to_vec();
        args.push(out.to_str().unwrap());
        run_expecting(cwd, &args, 0)
    };
    // By relative path, from the folder's parent.
    let first = caption(&dir.path("data"), "photos");
    assert!(
        first.contains(" 3 captioned, 0 failed, 0 skipped"),
        "{first}"
    );
    // A new image; then the folder by absolute path from another directory:
    // only the new image is captioned.
    write_png(&noise(96, 64, 99), &dir.path("data/photos/new.png")).unwrap();
    let absolute = dir.path("data/photos");
    let second = caption(&dir.path("elsewhere"), absolute.to_str().unwrap());
    assert!(
        second.contains(" 1 captioned, 0 failed, 3 skipped"),
        "{second}"
    );
    // The same tree under another mount point (a symbolic link to it).
    std::os::unix::fs::symlink(dir.path("data"), dir.path("mnt")).unwrap();
    let third = caption(&dir.0, "mnt/photos");
    assert!(
        third.contains(" 0 captioned, 0 failed, 4 skipped"),
        "{third}"
    );

    let recs = records(&out);
    let keys = per_key(&recs);
    assert_eq!(
        keys.keys().map(String::as_str).collect::<Vec<_>>(),
        ["img000.png", "img001.png", "img002.png", "new.png"]
    );
    assert!(keys.values().all(|&n| n == 1), "{keys:?}");
    // Paths stay as they were given.
    assert_eq!(recs[0]["path"], "photos/img000.png");
    assert_eq!(recs[3]["path"], absolute.join("new.png").to_str().unwrap());
}

#[test]
fn records_without_a_key_still_resume() {
    let dir = TempDir::new("batch-keyless");
    image_folder(&dir, "set", 2);
    let args = |out: &'static str| ["set", "-n", "4", "--max-tiles", "1", "-o", out];
    run_expecting(&dir.0, &args("out.jsonl"), 0);
    run_expecting(&dir.0, &args("out.csv"), 0);
    // Rewrite both files as a version before keys wrote them.
    let keyless: String = records(&dir.path("out.jsonl"))
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().remove("key").unwrap();
            format!("{r}\n")
        })
        .collect();
    std::fs::write(dir.path("out.jsonl"), keyless).unwrap();
    let rows: Vec<csv::StringRecord> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(dir.path("out.csv"))
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows[0].get(17), Some("key"));
    let mut writer = csv::Writer::from_path(dir.path("out.csv")).unwrap();
    for row in &rows {
        writer.write_record(row.iter().take(17)).unwrap();
    }
    writer.flush().unwrap();
    drop(writer);

    write_png(&noise(96, 64, 77), &dir.path("set/new.png")).unwrap();
    for out in ["out.jsonl", "out.csv"] {
        let stderr = run_expecting(&dir.0, &args(out), 0);
        assert!(
            stderr.contains(" 1 captioned, 0 failed, 2 skipped"),
            "{out}: {stderr}"
        );
    }
    assert_eq!(
        per_path(&records(&dir.path("out.jsonl")))
            .values()
            .sum::<usize>(),
        3
    );
    // The old CSV file stays one table: its new row has no key column either.
    let mut reader = csv::Reader::from_path(dir.path("out.csv")).unwrap();
    assert_eq!(reader.headers().unwrap().len(), 17);
    let rows: Vec<_> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(&rows[2][0], "set/new.png");
}

/// The records for `key`, in file order.
fn of_key<'a>(records: &'a [Value], key: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["key"] == key).collect()
}

#[test]
fn resume_reuses_only_the_last_record_and_only_when_asked_the_same_way() {
    let dir = TempDir::new("batch-asked");
    std::fs::create_dir_all(dir.path("set")).unwrap();
    let (x, y) = (noise(96, 64, 1), noise(96, 64, 2));
    write_png(&x, &dir.path("set/a.png")).unwrap();
    write_png(&gradient(96, 64), &dir.path("set/b.png")).unwrap();
    let common = ["set", "--max-tiles", "1", "-o", "out.jsonl"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        common.iter().chain(extra).copied().collect()
    };
    let base = with(&["-n", "4"]);
    let out = dir.path("out.jsonl");
    run_expecting(&dir.0, &base, 0);
    let first = records(&out);
    assert_eq!(first.len(), 2);
    let x_sha = first[0]["sha256"].clone();
    // Every record says what produced it.
    for r in &first {
        assert_eq!(r["prompt"], "Describe this image.", "{r}");
        assert!(r["model"].as_str().unwrap().starts_with("sha256:"), "{r}");
        assert_eq!(r["asked"].as_str().unwrap().len(), 16, "{r}");
    }
    assert_eq!(first[0]["asked"], first[1]["asked"]);

    // The same command: nothing to do.
    let stderr = run_expecting(&dir.0, &base, 0);
    assert!(
        stderr.contains(" 0 captioned, 0 failed, 2 skipped"),
        "{stderr}"
    );

    // Changed, then changed back: the last record (Y's) is not X's, so X
    // is captioned again, and the last record matches the file.
    write_png(&y, &dir.path("set/a.png")).unwrap();
    run_expecting(&dir.0, &base, 0);
    write_png(&x, &dir.path("set/a.png")).unwrap();
    let stderr = run_expecting(&dir.0, &base, 0);
    assert!(
        stderr.contains(" 1 captioned, 0 failed, 1 skipped"),
        "{stderr}"
    );
    let all = records(&out);
    let a = of_key(&all, "a.png");
    assert_eq!(a.len(), 3);
    assert_eq!(a[2]["sha256"], x_sha);
    assert_eq!(a[2]["caption"], a[0]["caption"]);

    // Another --max-tokens or another model: captioned again.
    let stderr = run_expecting(&dir.0, &with(&["-n", "3"]), 0);
    assert!(
        stderr.contains(" 2 captioned, 0 failed, 0 skipped"),
        "{stderr}"
    );
    let other = crate::util::files_with(&crate::util::wide_heads());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smolvlm"));
    let changed_model = cmd
        .current_dir(&dir.0)
        .env_clear()
        .arg("caption")
        .arg("--model")
        .arg(&other.model)
        .arg("--mmproj")
        .arg(&other.mmproj)
        .args(["--threads", "1"])
        .args(with(&["-n", "3"]))
        .output()
        .unwrap();
    assert!(changed_model.status.success(), "{}", dump(&changed_model));
    assert!(
        String::from_utf8_lossy(&changed_model.stderr)
            .contains(" 2 captioned, 0 failed, 0 skipped"),
        "{}",
        dump(&changed_model)
    );
    let all = records(&out);
    let models: BTreeSet<&str> = all.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models.len(), 2);

    // Another prompt: captioned again; then both prompts: only what is new
    // is asked, and no record is written twice.
    let before = records(&out).len();
    let stderr = run_expecting(&dir.0, &with(&["-n", "3", "-p", "List tags."]), 0);
    assert!(stderr.contains(" 2 captioned"), "{stderr}");
    let two = with(&["-n", "3", "-p", "List tags.", "-p", "Describe this image."]);
    let stderr = run_expecting(&dir.0, &two, 0);
    assert!(
        stderr.contains(" 2 captioned, 0 failed, 2 skipped"),
        "{stderr}"
    );
    let stderr = run_expecting(&dir.0, &two, 0);
    assert!(
        stderr.contains(" 0 captioned, 0 failed, 4 skipped"),
        "{stderr}"
    );
    let all = records(&out);
    assert_eq!(all.len(), before + 4);
    let mut asked_twice = BTreeMap::new();
    for r in &all[before..] {
        *asked_twice
            .entry((r["key"].to_string(), r["prompt"].to_string()))
            .or_insert(0) += 1;
    }
    assert!(asked_twice.values().all(|&n| n == 1), "{asked_twice:?}");
}

#[test]
fn an_empty_sidecar_is_captioned_again_and_a_good_one_is_not() {
    let dir = TempDir::new("batch-empty-sidecar");
    image_folder(&dir, "set", 3);
    let sidecar = |name: &str| dir.path(&format!("set/{name}.txt"));
    let flags = ["set", "-n", "4", "--max-tiles", "1", "--sidecar"];
    run_expecting(&dir.0, &flags, 0);
    // A power cut after the rename can leave a sidecar with no data in it.
    std::fs::write(sidecar("img000"), "kept as it is\n").unwrap();
    std::fs::write(sidecar("img001"), "").unwrap();
    let stderr = run_expecting(&dir.0, &flags, 0);
    assert!(
        stderr.contains(" 1 captioned, 0 failed, 2 skipped"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(sidecar("img000")).unwrap(),
        "kept as it is\n"
    );
    let redone = std::fs::read_to_string(sidecar("img001")).unwrap();
    assert!(
        redone.ends_with('\n') && redone.trim().len() > 1,
        "{redone:?}"
    );

    // With a record file too: a caption record does not make an empty sidecar done.
    let with_records = [
        "set",
        "-n",
        "4",
        "--max-tiles",
        "1",
        "--sidecar",
        "-o",
        "out.jsonl",
    ];
    run_expecting(&dir.0, &with_records, 0);
    std::fs::write(sidecar("img002"), "").unwrap();
    let stderr = run_expecting(&dir.0, &with_records, 0);
    assert!(
        stderr.contains(" 1 captioned, 0 failed, 2 skipped"),
        "{stderr}"
    );
    assert!(std::fs::metadata(sidecar("img002")).unwrap().len() > 1);
    let counts = per_path(&records(&dir.path("out.jsonl")));
    assert_eq!(counts["set/img002.png"], 2, "{counts:?}");
    assert_eq!(counts["set/img000.png"], 1, "{counts:?}");
}

#[test]
fn transient_errors_are_retried_on_resume_and_final_ones_only_when_asked() {
    let dir = TempDir::new("batch-transient");
    image_folder(&dir, "set", 3);
    let args = ["set", "-n", "4", "--max-tiles", "1", "-o", "out.jsonl"];
    run_expecting(&dir.0, &args, 0);
    // As if img000 had met its deadline on a busy machine and img001 were
    // not an image: error records with the files' real hashes.
    let as_failed = |r: &Value, kind: &str| {
        serde_json::json!({
            "path": r["path"], "key": r["key"], "sha256": r["sha256"],
            "error": { "kind": kind, "message": "written by the test" },
        })
    };
    let text: String = records(&dir.path("out.jsonl"))
        .iter()
        .map(|r| match r["key"].as_str().unwrap() {
            "img000.png" => format!("{}\n", as_failed(r, "deadline_exceeded")),
            "img001.png" => format!("{}\n", as_failed(r, "image_format")),
            _ => format!("{r}\n"),
        })
        .collect();
    std::fs::write(dir.path("out.jsonl"), text).unwrap();

    let stderr = run_expecting(&dir.0, &args, 1);
    assert!(
        stderr.contains(" 1 captioned, 1 failed (1 in an earlier run), 1 skipped"),
        "{stderr}"
    );
    let recs = records(&dir.path("out.jsonl"));
    let counts = per_path(&recs);
    assert_eq!(
        (
            counts["set/img000.png"],
            counts["set/img001.png"],
            counts["set/img002.png"]
        ),
        (2, 1, 1)
    );
    assert!(recs.last().unwrap()["caption"].is_string());

    let mut retry = args.to_vec();
    retry.push("--retry-errors");
    let stderr = run_expecting(&dir.0, &retry, 0);
    assert!(
        stderr.contains(" 1 captioned, 0 failed, 2 skipped"),
        "{stderr}"
    );
    assert_eq!(
        per_path(&records(&dir.path("out.jsonl")))["set/img001.png"],
        2
    );
}

#[test]
fn globs_stdin_and_repeats_name_each_image_once() {
    let dir = TempDir::new("batch-inputs");
    image_folder(&dir, "set", 4);
    write_jpeg(&gradient(64, 48), &dir.path("set/photo.jpg"), 90).unwrap();
    let mut child = command(
        &dir.0,
        &[
            "-n",
            "4",
            "set/*.png",
            "-",
            "set/img000.png",
            "./set/img001.png",
        ]
        .map(OsStr::new),
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"set/photo.jpg\nset/img002.png\n\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", dump(&out));
    // Piped stdout gets JSONL.
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let paths: BTreeSet<PathBuf> = per_path(&recs).into_keys().map(PathBuf::from).collect();
    let expected: BTreeSet<PathBuf> = [
        "img000.png",
        "img001.png",
        "img002.png",
        "img003.png",
        "photo.jpg",
    ]
    .iter()
    .map(|n| Path::new("set").join(n))
    .collect();
    assert_eq!(paths, expected);
    assert_eq!(recs.len(), 5);
}

#[test]
fn info_reports_a_passing_self_test() {
    let f = files();
    let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .env_clear()
        .arg("info")
        .arg("--model")
        .arg(&f.model)
        .arg("--mmproj")
        .arg(&f.mmproj)
        .args(["--max-tiles", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", dump(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("max tiles:        1"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("self-test:"))
        .unwrap();
    assert!(
        line.contains(" ok, ") && line.contains("(1 tile, "),
        "{line}"
    );
}

/// The README's throughput table: images/s on one folder of photo-sized
/// JPEGs, sequential (each caption thread prepares, then captions, in
/// turn), pipelined (a prep thread decodes ahead) and two sessions in
/// parallel. Every session has one thread, so the modes differ only in what
/// overlaps. Each mode runs `ROUNDS` times, interleaved, and keeps its best,
/// so a busy machine penalises every mode alike.
///
/// `cargo test --release --test tests batch::throughput -- --ignored --nocapture`
#[test]
#[ignore = "a measurement: run it by hand"]
fn throughput() {
    const IMAGES: u32 = 24;
    const ROUNDS: usize = 3;
    let dir = TempDir::new("batch-throughput");
    std::fs::create_dir_all(dir.path("photos")).unwrap();
    for i in 0..IMAGES {
        // Photo-sized JPEGs, so decoding costs what it does in a real dataset.
        let img = if i % 2 == 0 {
            noise(2048, 1536, u64::from(i))
        } else {
            gradient(2048, 1536)
        };
        write_jpeg(&img, &dir.path(&format!("photos/{i:03}.jpg")), 90).unwrap();
    }
    let modes: [(&str, &[&str]); 4] = [
        ("sequential", &["--prep-threads", "0"]),
        ("pipelined", &["--prep-threads", "1"]),
        ("--parallel 2", &["--prep-threads", "1", "--parallel", "2"]),
        (
            "--parallel 2 --prep-threads 2",
            &["--prep-threads", "2", "--parallel", "2"],
        ),
    ];
    let mut best = [0.0f64; 4];
    for _ in 0..ROUNDS {
        for (m, (name, flags)) in modes.iter().enumerate() {
            let mut args = vec![
                "-t",
                "1",
                "-n",
                "256",
                "photos",
                "-o",
                "t.jsonl",
                "--overwrite",
            ];
            args.extend_from_slice(flags);
            let out = run(&dir.0, &args);
            assert!(out.status.success(), "{}", dump(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let summary = stderr.lines().find(|l| l.contains(" images/s)")).unwrap();
            let rate: f64 = summary
                .rsplit('(')
                .next()
                .and_then(|s| s.split(' ').next())
                .unwrap()
                .parse()
                .unwrap();
            best[m] = best[m].max(rate);
            let mean = stderr
                .lines()
                .find(|l| l.contains("mean per caption"))
                .unwrap();
            eprintln!("{name}: {rate:.2} images/s; {mean}");
        }
    }
    println!("| mode | images/s | vs sequential |\n|---|---|---|");
    for (m, (name, _)) in modes.iter().enumerate() {
        println!("| {name} | {:.2} | {:.2}x |", best[m], best[m] / best[0]);
    }
}

#[test]
fn identical_photos_are_captioned_once_and_their_records_say_so() {
    let dir = TempDir::new("batch-dedupe");
    std::fs::create_dir_all(dir.path("in")).unwrap();
    // 6 copies of one photo and 2 others, named so that the walk (sorted)
    // puts the others between copies.
    let photo = gradient(90, 60);
    let names = [
        "a-copy.png",
        "b-other.png",
        "c-copy.png",
        "d-copy.png",
        "e-other.png",
        "f-copy.png",
        "g-copy.png",
        "h-copy.png",
    ];
    for (i, name) in names.iter().enumerate() {
        let img = match i {
            1 => checkerboard(80, 60, 5),
            4 => noise(70, 50, 9),
            _ => photo.clone(),
        };
        write_png(&img, &dir.path(&format!("in/{name}"))).unwrap();
    }
    let file_name = |r: &Value| {
        let path = r["path"].as_str().unwrap();
        Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    for (parallel, dedupe) in [("1", true), ("2", true), ("1", false)] {
        let out = dir.path(&format!("out-{parallel}-{dedupe}.jsonl"));
        let mut args = vec!["in", "-o", out.to_str().unwrap(), "--parallel", parallel];
        if !dedupe {
            args.push("--no-dedupe");
        }
        let result = run(&dir.0, &args);
        assert!(result.status.success(), "{}", dump(&result));
        let records = records(&out);
        assert_eq!(records.len(), 8);
        let encoded = records
            .iter()
            .filter(|r| r["ms"]["encode"].as_f64().unwrap() > 0.0)
            .count();
        let copies: Vec<&Value> = records
            .iter()
            .filter(|r| r.get("duplicate_of").is_some())
            .collect();
        if dedupe {
            assert_eq!(encoded, 3, "parallel {parallel}");
            assert_eq!(copies.len(), 5);
            for copy in copies {
                assert!(file_name(copy).ends_with("-copy.png"));
                let original = copy["duplicate_of"].as_str().unwrap();
                let first = records.iter().find(|r| r["path"] == original).unwrap();
                assert!(first.get("duplicate_of").is_none());
                assert_eq!(copy["caption"], first["caption"]);
                assert_eq!(copy["image_tokens"], first["image_tokens"]);
            }
        } else {
            // Copies that follow a copy find it in the session's cache.
            assert_eq!(encoded, 5);
            assert!(copies.is_empty());
        }
    }
}
