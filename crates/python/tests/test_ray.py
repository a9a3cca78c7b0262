"""Ray Data on a local cluster: 40 images (and one bad file) captioned by 2
actors, written to Parquet; every image is captioned exactly once, as a
plain model captions it, and the bad file is a row with an error."""

import pathlib

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[data]'); CI installs it")
import pyarrow.parquet as pq  # noqa: E402  (ray[data] brings pyarrow)

import smolvlm  # noqa: E402
from smolvlm.ray import Captioner  # noqa: E402

from conftest import gradient  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    # Logical CPUs: 2 actors hold one each, and the read tasks need their own.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_forty_images_on_two_actors_are_each_captioned_once(cluster, tiny_files, model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    expected = {}
    for i in range(40):
        path = images / f"img-{i:02}.png"
        gradient(40 + i, 30 + (i * 7) % 50).save(path)
        expected[str(path)] = model.caption(str(path), max_tokens=8).text
    bad = images / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")

    ds = ray.data.read_binary_files(str(images), include_paths=True)
    ds = ds.map_batches(
        Captioner,
        fn_constructor_kwargs={
            "model": tiny_files[0],
            "mmproj": tiny_files[1],
            "column": "bytes",
            "threads": 1,
            "max_tokens": 8,
        },
        concurrency=2,
        num_cpus=1,
        batch_size=8,
    )
    out = tmp_path / "captions"
    ds.drop_columns(["bytes"]).write_parquet(str(out))

    table = pq.read_table(str(out)).to_pylist()
    paths = [pathlib.Path(row["path"]).name for row in table]
    assert sorted(paths) == sorted([f"img-{i:02}.png" for i in range(40)] + ["broken.png"])
    for row in table:
        name = pathlib.Path(row["path"]).name
        if name == "broken.png":
            assert row["caption"] is None
            assert row["error"].startswith("image_decode: "), row["error"]
        else:
            assert row["error"] is None, row["error"]
            assert row["caption"] == expected[str(images / name)], name
            assert 0 < row["tokens"] <= 8 and row["image_tokens"] > 0


def test_a_batch_of_paths_and_of_decoded_arrays(tiny_files, model, picture, tmp_path):
    """The callable alone: a column of paths, and read_images' HxWx3 arrays."""
    import numpy

    path = tmp_path / "p.png"
    picture.save(path)
    captioner = Captioner(model=tiny_files[0], mmproj=tiny_files[1], column="path", max_tokens=8)
    out = captioner({"path": numpy.array([str(path), str(tmp_path / "gone.png")])})
    want = model.caption(picture, max_tokens=8).text
    assert out["caption"] == [want, None]
    assert out["error"][0] is None and out["error"][1].startswith("image_read: ")
    arrays = Captioner(model=tiny_files[0], mmproj=tiny_files[1], column="image", max_tokens=8)
    batch = {"image": numpy.stack([numpy.asarray(picture)] * 3)}
    assert arrays(batch)["caption"] == [want] * 3
    with pytest.raises(KeyError):
        arrays({"bytes": numpy.array([b""])})
