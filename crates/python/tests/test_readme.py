"""The README's Python snippets run as written: each ```python block is run
from the repository root, with the Hub served locally (the tiny model as
ggml-org/SmolVLM-256M-Instruct-GGUF) and a fresh Hugging Face cache."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from fake_hub import FakeHub

ROOT = pathlib.Path(__file__).resolve().parents[3]


def snippets():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def hub(tiny_files):
    model, mmproj = (pathlib.Path(p).read_bytes() for p in tiny_files)
    served = FakeHub({
        "ggml-org/SmolVLM-256M-Instruct-GGUF": {
            "SmolVLM-256M-Instruct-Q8_0.gguf": model,
            "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf": mmproj,
            "README.md": b"# the tiny test pair\n",
        }
    })
    yield served
    served.close()


def test_the_readme_has_the_three_snippets():
    blocks = snippets()
    assert len(blocks) == 3, [b[:60] for b in blocks]
    assert "Model.from_pretrained" in blocks[0]
    assert "smolvlm.compat" in blocks[1]
    assert "smolvlm.ray" in blocks[2]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["plain", "old-interface", "ray"])
def test_a_readme_snippet_runs_as_written(index, hub, tmp_path):
    if index == 2:
        pytest.importorskip("ray", reason="ray is not installed; CI installs it")
    env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="0")
    env.pop("HF_TOKEN", None)
    # Relative paths as from the repository root; outputs stay in tmp_path.
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    run = subprocess.run(
        [sys.executable, "-c", snippets()[index]],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-4000:]}"
    if index == 0:
        # The error kind, then the chat's two answers, then the video's frames.
        assert "image_read 0\n" in run.stdout, run.stdout
        assert run.stdout.endswith("6 6.0\n"), run.stdout
    if index == 1:
        assert "port ignored" in run.stderr, run.stderr
    if index == 2:
        import pyarrow.parquet as pq

        rows = pq.read_table(str(tmp_path / "captions")).to_pylist()
        assert [pathlib.Path(r["path"]).name for r in rows] == ["coffee.jpg"], rows
        assert rows[0]["error"] is None and rows[0]["caption"], rows
