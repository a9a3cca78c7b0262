//! The `smolvlm` binary, run as a user would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use smolvlm_testkit::images::{gradient, noise, with_exif_orientation, write_jpeg, write_png};

use crate::util::{dump, files, files_with, wide_heads, TempDir};

fn smolvlm(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn caption_args<'a>(
    files: &'a smolvlm::ModelFiles,
    extra: &[&'a std::ffi::OsStr],
) -> Vec<&'a std::ffi::OsStr> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "caption".as_ref(),
        "--model".as_ref(),
        files.model.as_os_str(),
        "--mmproj".as_ref(),
        files.mmproj.as_os_str(),
        "--threads".as_ref(),
        "2".as_ref(),
        "-n".as_ref(),
        "8".as_ref(),
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn captions_one_image_deterministically() {
    let dir = TempDir::new("cli-one");
    let img = dir.path("a.png");
    write_png(&gradient(640, 480), &img).unwrap();
    let f = files();
    let out = smolvlm(&caption_args(&f, &[img.as_os_str()]));
    assert!(out.status.success(), "{}", dump(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "{}", dump(&out));
    assert!(!text.trim().is_empty());
    let again = smolvlm(&caption_args(&f, &[img.as_os_str()]));
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn a_bad_image_among_good_ones_exits_1_and_the_rest_are_captioned() {
    let dir = TempDir::new("cli-mixed");
    let (a, bad, b) = (dir.path("a.png"), dir.path("bad.png"), dir.path("b.png"));
    write_png(&gradient(320, 240), &a).unwrap();
    std::fs::write(&bad, b"not an image").unwrap();
    write_png(&noise(320, 240, 1), &b).unwrap();
    let f = files();
    // Piped stdout gets JSONL records by default; txt keeps `PATH: caption`.
    let out = smolvlm(&caption_args(
        &f,
        &[
            "--format".as_ref(),
            "txt".as_ref(),
            a.as_os_str(),
            bad.as_os_str(),
            b.as_os_str(),
        ],
    ));
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{}", dump(&out));
    assert!(stdout.contains("a.png: ") && stdout.contains("b.png: "));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.png") && stderr.contains("image_format"),
        "{}",
        dump(&out)
    );
}

#[test]
fn raw_prompt_gives_the_mtmd_cli_prompt() {
    let dir = TempDir::new("cli-raw");
    let img = dir.path("a.png");
    write_png(&gradient(640, 480), &img).unwrap();
    let f = files();
    let raw = "<|im_start|>User: <__media__>Describe this image.<end_of_utterance>\\nAssistant:";
    let out = smolvlm(&caption_args(
        &f,
        &["--raw-prompt".as_ref(), raw.as_ref(), img.as_os_str()],
    ));
    assert!(out.status.success(), "{}", dump(&out));
    let plain = smolvlm(&caption_args(&f, &[img.as_os_str()]));
    assert_ne!(
        out.stdout, plain.stdout,
        "the renderings differ by one token, so do the outputs"
    );
}

#[test]
fn a_missing_model_exits_2_with_the_path() {
    let f = files();
    let args: Vec<&std::ffi::OsStr> = vec![
        "caption".as_ref(),
        "--model".as_ref(),
        "/nonexistent/m.gguf".as_ref(),
        "--mmproj".as_ref(),
        f.mmproj.as_os_str(),
        "x.png".as_ref(),
    ];
    let out = smolvlm(&args);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/m.gguf"));
}

#[test]
fn info_prints_the_pair() {
    let f = files();
    let args: Vec<&std::ffi::OsStr> = vec![
        "info".as_ref(),
        "--model".as_ref(),
        f.model.as_os_str(),
        "--mmproj".as_ref(),
        f.mmproj.as_os_str(),
    ];
    let out = smolvlm(&args);
    assert!(out.status.success(), "{}", dump(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("idefics3") && stdout.contains("tokens per tile:  4"),
        "{}",
        dump(&out)
    );
}

/// `caption --plan`'s table: the image rows by path and the summary lines
/// (`total`, `unreadable`, `estimate`) by name, each without its first field.
#[derive(Debug)]
struct PlanTable {
    rows: BTreeMap<String, String>,
    summary: BTreeMap<String, String>,
}

fn plan_table(out: &Output) -> PlanTable {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("image\tsize\tgrid\ttiles\timage_tokens"),
        "{}",
        dump(out)
    );
    let (mut rows, mut summary) = (BTreeMap::new(), BTreeMap::new());
    for line in lines {
        let (first, rest) = line
            .split_once('\t')
            .unwrap_or_else(|| panic!("no tab in '{line}': {}", dump(out)));
        let table = match first {
            "total" | "unreadable" | "estimate" => &mut summary,
            _ => &mut rows,
        };
        let earlier = table.insert(first.to_owned(), rest.to_owned());
        assert!(earlier.is_none(), "'{first}' twice: {}", dump(out));
    }
    PlanTable { rows, summary }
}

/// The tiles and image tokens of a plan row (`size grid tiles image_tokens`).
fn planned_counts(row: &str) -> (u64, u64) {
    let fields: Vec<&str> = row.split('\t').collect();
    assert_eq!(fields.len(), 4, "{row}");
    (fields[2].parse().unwrap(), fields[3].parse().unwrap())
}

/// The tiles and image tokens `smolvlm caption` records for each image it
/// captioned, from its JSONL output.
fn recorded_counts(out: &Output) -> BTreeMap<String, (u64, u64)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|r| r.get("error").is_none())
        .map(|r| {
            let path = r["path"].as_str().unwrap().to_owned();
            (
                path,
                (
                    r["tiles"].as_u64().unwrap(),
                    r["image_tokens"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// A folder with 640x480 and 300x900 PNGs, a JPEG stored 900x300 whose EXIF
/// orientation turns it upright to 300x900, and garbage named `.jpg`.
fn plan_folder(dir: &TempDir) -> [PathBuf; 4] {
    let folder = dir.path("in");
    std::fs::create_dir_all(&folder).unwrap();
    let names = ["a.png", "b.png", "c.jpg", "bad.jpg"].map(|n| folder.join(n));
    write_png(&gradient(640, 480), &names[0]).unwrap();
    write_png(&noise(300, 900, 1), &names[1]).unwrap();
    let stored = dir.path("stored.jpg");
    write_jpeg(&gradient(900, 300), &stored, 90).unwrap();
    std::fs::write(
        &names[2],
        with_exif_orientation(&std::fs::read(&stored).unwrap(), 6),
    )
    .unwrap();
    std::fs::write(&names[3], noise(20, 20, 9).into_raw()).unwrap();
    names
}

fn key(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn plan_rows_equal_what_captioning_records() {
    let dir = TempDir::new("cli-plan");
    let [a, b, c, bad] = plan_folder(&dir);
    let folder = dir.path("in");
    let f = files();
    let out = smolvlm(&caption_args(&f, &["--plan".as_ref(), folder.as_os_str()]));
    assert_eq!(out.status.code(), Some(1), "{}", dump(&out));
    let table = plan_table(&out);
    let keys: Vec<String> = table.rows.keys().cloned().collect();
    let mut expected_keys = [&a, &b, &c, &bad].map(|p| key(p)).to_vec();
    expected_keys.sort();
    assert_eq!(keys, expected_keys, "{}", dump(&out));

    let captioned = smolvlm(&caption_args(&f, &[folder.as_os_str()]));
    assert_eq!(captioned.status.code(), Some(1), "{}", dump(&captioned));
    let recorded = recorded_counts(&captioned);
    assert_eq!(recorded.len(), 3, "{}", dump(&captioned));
    let (mut tiles, mut tokens) = (0, 0);
    for path in [&a, &b, &c] {
        let planned = planned_counts(&table.rows[&key(path)]);
        assert_eq!(
            Some(&planned),
            recorded.get(&key(path)),
            "{}",
            path.display()
        );
        assert!(planned.0 >= 1, "{planned:?}");
        tiles += planned.0;
        tokens += planned.1;
    }
    // Upright, the rotated JPEG is the 300x900 PNG's shape: same size and grid.
    let size_grid = |p: &Path| table.rows[&key(p)].split('\t').take(2).collect::<Vec<_>>();
    assert_eq!(size_grid(&c), size_grid(&b));
    let grid: Vec<u32> = size_grid(&c)[1]
        .split('x')
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(grid[0] < grid[1], "a tall grid: {grid:?}");

    // The bad file's row says what its caption record says.
    let record = String::from_utf8_lossy(&captioned.stdout)
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|r| r["path"] == key(&bad).as_str())
        .unwrap();
    assert_eq!(record["error"]["kind"], "image_format", "{record}");
    assert_eq!(
        table.rows[&key(&bad)],
        format!("error: {}", record["error"]["message"].as_str().unwrap()),
        "{}",
        dump(&out)
    );
    assert_eq!(
        table.summary["total"],
        format!(
            "3 images\t{tiles} tiles + 3 overviews\t{} encodes\t{tokens} image tokens (4 per tile)",
            tiles + 3
        )
    );
    assert_eq!(table.summary["unreadable"], "1 image");
    let estimate = &table.summary["estimate"];
    assert!(
        estimate.starts_with("one tile encode ")
            && estimate.contains(&format!("{} encodes", tiles + 3))
            && estimate.contains("/ 1 session "),
        "{estimate}"
    );

    // Only the good images: exit 0, and nothing unreadable.
    let good = smolvlm(&caption_args(
        &f,
        &[
            "--plan".as_ref(),
            a.as_os_str(),
            b.as_os_str(),
            c.as_os_str(),
        ],
    ));
    assert_eq!(good.status.code(), Some(0), "{}", dump(&good));
    let good_table = plan_table(&good);
    assert_eq!(good_table.rows.len(), 3);
    assert_eq!(good_table.summary["total"], table.summary["total"]);
    assert!(!good_table.summary.contains_key("unreadable"));
}

#[test]
fn plan_rows_follow_the_tile_budget() {
    let dir = TempDir::new("cli-plan-budget");
    let [a, b, c, _] = plan_folder(&dir);
    let f = files();
    let images = [a.as_os_str(), b.as_os_str(), c.as_os_str()];
    let budget: [&std::ffi::OsStr; 2] = ["--max-tiles".as_ref(), "1".as_ref()];
    let mut plan_args = vec!["--plan".as_ref()];
    plan_args.extend_from_slice(&budget);
    plan_args.extend_from_slice(&images);
    let out = smolvlm(&caption_args(&f, &plan_args));
    assert_eq!(out.status.code(), Some(0), "{}", dump(&out));
    let table = plan_table(&out);
    let mut caption = budget.to_vec();
    caption.extend_from_slice(&images);
    let captioned = smolvlm(&caption_args(&f, &caption));
    assert!(captioned.status.success(), "{}", dump(&captioned));
    let recorded = recorded_counts(&captioned);
    assert_eq!(table.rows.len(), 3);
    for (path, row) in &table.rows {
        let planned = planned_counts(row);
        assert_eq!(planned.0, 1, "{path}: {row}");
        assert_eq!(Some(&planned), recorded.get(path), "{path}");
    }
}

/// `smolvlm caption --print-config` on the tiny model with `extra`, as JSON.
fn print_config(extra: &[&str]) -> serde_json::Value {
    let f = files();
    let out = Command::new(env!("CARGO_BIN_EXE_smolvlm"))
        .env_clear()
        .arg("caption")
        .arg("--model")
        .arg(&f.model)
        .arg("--mmproj")
        .arg(&f.mmproj)
        .arg("--print-config")
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", dump(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cores() -> u64 {
    std::thread::available_parallelism().unwrap().get() as u64
}

#[test]
fn parallel_auto_runs_a_session_per_core_up_to_4_and_bad_counts_are_usage_errors() {
    let auto = print_config(&["--parallel", "auto"]);
    let sessions = cores().clamp(1, 4);
    assert_eq!(auto["parallel"], sessions, "{auto}");
    assert_eq!(auto["threads"], (cores() / sessions).max(1), "{auto}");
    let three = print_config(&["--parallel", "3"]);
    assert_eq!(three["parallel"], 3, "{three}");
    assert_eq!(three["threads"], (cores() / 3).max(1), "{three}");

    let dir = TempDir::new("cli-parallel");
    let img = dir.path("a.png");
    write_png(&gradient(320, 240), &img).unwrap();
    let f = files();
    for bad in ["0", "x", ""] {
        let out = smolvlm(&caption_args(
            &f,
            &["--parallel".as_ref(), bad.as_ref(), img.as_os_str()],
        ));
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", dump(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--parallel")
                && stderr.contains(&format!(
                    "'{bad}' is neither 'auto' nor a number of sessions"
                )),
            "{}",
            dump(&out)
        );
        assert!(out.stdout.is_empty(), "{}", dump(&out));
    }
    let run = |parallel: &str| {
        let out = smolvlm(&caption_args(
            &f,
            &[
                "--format".as_ref(),
                "txt".as_ref(),
                "--parallel".as_ref(),
                parallel.as_ref(),
                img.as_os_str(),
            ],
        ));
        assert!(out.status.success(), "{}", dump(&out));
        out.stdout
    };
    assert_eq!(run("auto"), run("1"));
}

#[test]
fn a_quantized_cache_without_flash_attention_is_a_usage_error() {
    let dir = TempDir::new("cli-kv");
    let img = dir.path("a.png");
    write_png(&gradient(320, 240), &img).unwrap();
    let f = files();
    let with = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = extra.iter().map(|a| a.as_ref()).collect();
        args.push(img.as_os_str());
        smolvlm(&caption_args(&f, &args))
    };
    for plan in [&[][..], &["--plan"][..]] {
        let mut args = vec!["--kv-type", "q8_0", "--flash-attn", "off"];
        args.extend_from_slice(plan);
        let out = with(&args);
        assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("kv_cache_type") && stderr.contains("flash attention"),
            "{}",
            dump(&out)
        );
        assert!(out.stdout.is_empty(), "{}", dump(&out));
    }
    let out = with(&["--ubatch-size", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", dump(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ubatch_size"),
        "{}",
        dump(&out)
    );
    // With flash attention on (or left to llama.cpp), the same cache
    // captions, on a pair whose heads its 32-value blocks divide.
    let wide = files_with(&wide_heads());
    let quantized = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = extra.iter().map(|a| a.as_ref()).collect();
        args.push(img.as_os_str());
        let out = smolvlm(&caption_args(&wide, &args));
        assert!(out.status.success(), "{extra:?}: {}", dump(&out));
        out
    };
    let on = quantized(&["--kv-type", "q8_0", "--flash-attn", "on"]);
    let auto = quantized(&["--kv-type", "q8_0"]);
    assert_eq!(on.stdout, auto.stdout, "auto is on for the CPU");
}

#[test]
fn print_config_shows_the_engine_settings() {
    let defaults = print_config(&["--threads", "2"]);
    for (key, value) in [
        ("threads", serde_json::json!(2)),
        ("vision_threads", serde_json::json!(2)),
        ("ubatch_size", serde_json::json!(512)),
        ("flash_attn", serde_json::json!("auto")),
        ("vision_flash_attn", serde_json::json!("auto")),
        ("kv_type", serde_json::json!("f16")),
        ("warmup", serde_json::json!(true)),
    ] {
        assert_eq!(defaults[key], value, "{key}: {defaults}");
    }
    let set = print_config(&[
        "--threads",
        "2",
        "--vision-threads",
        "1",
        "--flash-attn",
        "on",
        "--kv-type",
        "q8_0",
        "--ubatch-size",
        "64",
        "--no-warmup",
    ]);
    for (key, value) in [
        ("threads", serde_json::json!(2)),
        ("vision_threads", serde_json::json!(1)),
        ("ubatch_size", serde_json::json!(64)),
        ("flash_attn", serde_json::json!("on")),
        ("kv_type", serde_json::json!("q8_0")),
        ("warmup", serde_json::json!(false)),
    ] {
        assert_eq!(set[key], value, "{key}: {set}");
    }
    for (flag, value, key, shown) in [
        ("--flash-attn", "off", "flash_attn", "off"),
        ("--vision-flash-attn", "off", "vision_flash_attn", "off"),
        ("--vision-flash-attn", "on", "vision_flash_attn", "on"),
        ("--kv-type", "f32", "kv_type", "f32"),
        ("--kv-type", "bf16", "kv_type", "bf16"),
        ("--kv-type", "q4_0", "kv_type", "q4_0"),
    ] {
        let config = print_config(&[flag, value]);
        assert_eq!(config[key], shown, "{flag} {value}: {config}");
    }
    // The pass size as used: at most the batch size.
    let big = print_config(&["--ubatch-size", "4096"]);
    assert_eq!(big["ubatch_size"], 2048, "{big}");
}

#[test]
fn json_schema_records_hold_the_parsed_value_and_bad_constraints_exit_2_before_any_image() {
    let dir = TempDir::new("cli-json");
    let (a, b) = (dir.path("a.png"), dir.path("b.png"));
    write_png(&gradient(320, 240), &a).unwrap();
    write_png(&noise(320, 240, 2), &b).unwrap();
    let schema = dir.path("schema.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,6}$"}, "maxItems": 2}}, "required": ["tags"]}"#,
    )
    .unwrap();
    let out_file = dir.path("out.jsonl");
    let f = files();
    let mut args = caption_args(&f, &[]);
    // Room for the JSON: replace caption_args' -n 8.
    args.truncate(args.len() - 2);
    args.extend_from_slice(&[
        "-n".as_ref(),
        "200".as_ref(),
        "--temperature".as_ref(),
        "1".as_ref(),
        "--json-schema".as_ref(),
        schema.as_os_str(),
        "-o".as_ref(),
        out_file.as_os_str(),
        a.as_os_str(),
        b.as_os_str(),
    ]);
    let out = smolvlm(&args);
    assert!(out.status.success(), "{}", dump(&out));
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    for record in &records {
        let json = &record["json"];
        assert!(json["tags"].is_array(), "{record}");
        assert_eq!(
            json,
            &serde_json::from_str::<serde_json::Value>(record["caption"].as_str().unwrap())
                .unwrap()
        );
    }

    // A schema that is not JSON, and a grammar the model refuses: exit 2,
    // and no image is captioned (no record file).
    let bad_schema = dir.path("bad.json");
    std::fs::write(&bad_schema, "{not json").unwrap();
    let bad_grammar = dir.path("bad.gbnf");
    std::fs::write(&bad_grammar, "root ::= (").unwrap();
    for (flag, file) in [("--json-schema", &bad_schema), ("--grammar", &bad_grammar)] {
        let none = dir.path("none.jsonl");
        let mut args = caption_args(&f, &[]);
        args.extend_from_slice(&[
            flag.as_ref(),
            file.as_os_str(),
            "-o".as_ref(),
            none.as_os_str(),
            a.as_os_str(),
        ]);
        let out = smolvlm(&args);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", dump(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&flag[2..].replace('-', "_")),
            "{flag}: {}",
            dump(&out)
        );
        let written = std::fs::read_to_string(&none).unwrap_or_default();
        assert!(
            written.is_empty(),
            "{flag}: records were written: {written}"
        );
    }
}
