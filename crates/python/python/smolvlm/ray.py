"""Batch captioning on Ray Data: a callable class for ``Dataset.map_batches``.

    import ray
    from smolvlm.ray import Captioner

    ds = ray.data.read_binary_files("s3://bucket/photos/", include_paths=True)
    ds = ds.map_batches(
        Captioner,
        fn_constructor_kwargs={"model": "SmolVLM-256M-Instruct", "max_tokens": 64},
        concurrency=4,      # actors, each loading the model once
        num_cpus=4,         # cores per actor; the model runs on them
        batch_size=16,
    )
    ds.write_parquet("captions/")

Each actor loads the model once. A batch's column of image bytes (or paths,
or HxWx3 arrays as ``read_images`` gives them) is captioned in order by
``Model.caption_many``, the library's batch engine (the CLI's): the next
images are prepared while one is captioned, and identical images within a
batch are encoded once (a copy's ``seconds`` is 0). The batch gains
``caption``, ``error`` (``None``, or ``"kind: message"``), ``tokens``,
``image_tokens`` and ``seconds`` columns. A bad image is a row with an
error, never a failed task. ``parallel=N`` among the keyword arguments runs
N sessions in the actor (give it ``num_cpus`` to match).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import DEFAULT_PROMPT, Caption, Model

__all__ = ["Captioner"]


class Captioner:
    """Captions one column of a Ray Data batch.

    ``model`` is a preset or Hub repo name, or a local text-model GGUF when
    ``mmproj`` is given. ``column`` holds the images: ``"bytes"`` for
    ``read_binary_files``, ``"image"`` for ``read_images``, or a column of
    paths. ``prompt``, ``max_tokens``, ``temperature``, ``seed``, ``stop``
    and ``timeout`` are as in ``Model.caption``; ``threads`` and
    ``max_tiles`` as in ``Model``; ``offline=True`` uses the Hugging Face
    cache only (set ``HF_HOME`` on the workers to a shared cache).
    """

    def __init__(
        self,
        model: Optional[str] = None,
        mmproj: Optional[str] = None,
        column: str = "bytes",
        prompt: str = DEFAULT_PROMPT,
        offline: bool = False,
        threads: Optional[int] = None,
        max_tiles: Optional[int] = None,
        **generation: Any,
    ) -> None:
        if mmproj is not None:
            if model is None:
                raise ValueError("mmproj is given: model must be the text model's GGUF path")
            self.model = Model(model, mmproj, threads=threads, max_tiles=max_tiles)
        else:
            self.model = Model.from_pretrained(model, offline=offline, threads=threads, max_tiles=max_tiles)
        self.column = column
        self.prompt = prompt
        self.generation = generation

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        if self.column not in batch:
            raise KeyError(f"the batch has no column {self.column!r}; it has {sorted(batch)}")
        images = list(batch[self.column])
        results = self.model.caption_many(images, self.prompt, **self.generation)
        out = dict(batch)
        out["caption"] = [r.text if isinstance(r, Caption) else None for r in results]
        out["error"] = [
            None if isinstance(r, Caption) else f"{getattr(r, 'kind', type(r).__name__)}: {r}"
            for r in results
        ]
        out["tokens"] = [len(r.tokens) if isinstance(r, Caption) else 0 for r in results]
        out["image_tokens"] = [r.image_tokens if isinstance(r, Caption) else 0 for r in results]
        out["seconds"] = [r.timings["total"] if isinstance(r, Caption) else 0.0 for r in results]
        return out
