"""Python's caption_many against the CLI on the same images, in one run.

Both load the model and caption the same folder with one session, the same
prompt, length, tile budget and threads; the ratio of their wall times
(load included, each in a fresh process) is the figure. By default the
model is the testkit's shape-identical SmolVLM-256M-Instruct (random
weights, the published shapes), written by `cargo test --release --workspace`
under target/smolvlm-testkit/.

usage (from the repository root, with the package installed):
    python benches/python_throughput.py [--images 20] [--max-tiles 1] [--threads 2]
"""

import argparse
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL = ROOT / "target" / "smolvlm-testkit" / "real-v1-smolvlm-256m-instruct"

PYTHON_RUN = """
import sys, time
t0 = time.perf_counter()
import smolvlm
model = smolvlm.Model(sys.argv[1], sys.argv[2], threads=int(sys.argv[4]), max_tiles=int(sys.argv[5]))
t1 = time.perf_counter()
import pathlib
paths = sorted(str(p) for p in pathlib.Path(sys.argv[3]).glob("*.jpg"))
results = model.caption_many(paths, max_tokens=16)
t2 = time.perf_counter()
assert all(isinstance(r, smolvlm.Caption) for r in results), results
print(t1 - t0, t2 - t1)
"""


def photos(folder: pathlib.Path, n: int) -> None:
    """n 1600x1200 JPEGs: smooth gradients with noise, like photos to the encoder."""
    from PIL import Image

    rng = random.Random(7)
    for i in range(n):
        small = Image.new("RGB", (16, 12))
        small.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(16 * 12)])
        img = small.resize((1600, 1200), Image.BICUBIC)
        img.save(folder / f"photo-{i:02}.jpg", quality=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--max-tiles", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=str(REAL / "model.gguf"))
    ap.add_argument("--mmproj", default=str(REAL / "mmproj-q8_0.gguf"))
    args = ap.parse_args()
    cli = ROOT / "target" / "release" / "smolvlm"
    for path in (args.model, args.mmproj, cli):
        if not pathlib.Path(path).is_file():
            sys.exit(f"{path} is missing: run `cargo test --release --workspace` first")

    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "images"
        folder.mkdir()
        photos(folder, args.images)

        t = time.perf_counter()
        subprocess.run(
            [str(cli), "caption", str(folder), "-m", args.model, "--mmproj", args.mmproj,
             "--max-tiles", str(args.max_tiles), "-n", "16", "--threads", str(args.threads),
             "--parallel", "1", "-o", str(pathlib.Path(tmp) / "cli.jsonl"), "--quiet"],
            check=True,
        )
        cli_s = time.perf_counter() - t
        records = [json.loads(l) for l in (pathlib.Path(tmp) / "cli.jsonl").read_text().splitlines()]
        assert len(records) == args.images and all("caption" in r for r in records)

        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", PYTHON_RUN, args.model, args.mmproj, str(folder),
             str(args.threads), str(args.max_tiles)],
            check=True, capture_output=True, text=True,
        )
        py_s = time.perf_counter() - t
        load_s, caption_s = (float(x) for x in out.stdout.split())

    print(f"{args.images} images, 1600x1200 JPEG, --max-tiles {args.max_tiles}, 16 tokens, "
          f"{args.threads} threads, one session; model {pathlib.Path(args.model).parent.name}")
    print(f"CLI    (process, load included): {cli_s:7.1f} s  {args.images / cli_s * 60:6.2f} images/min")
    print(f"Python (process, load included): {py_s:7.1f} s  {args.images / py_s * 60:6.2f} images/min"
          f"  (load {load_s:.1f} s, caption_many {caption_s:.1f} s)")
    print(f"Python / CLI throughput: {cli_s / py_s:.3f}x")


if __name__ == "__main__":
    main()
