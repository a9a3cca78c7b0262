"""The old wrapper's interface, in process: no server to start, poll or stop.

The wrapper this package replaces started ``llama-server``, polled its
health, sent each image as a base64 JPEG over HTTP, and stopped it. Its
users wrote::

    model = SmolVLMModel("smolvlm", config)   # config: the old dict, unchanged
    model.start()
    text = model.caption_image("photo.jpg")
    model.stop()

That code runs unchanged here. ``start`` loads the model into this process,
``stop`` frees it, ``health_check`` is a self-test (a one-token caption of a
generated image), and ``get_server_info`` returns the model's info. The
config dict takes the same keys as before and as ``smolvlm caption
--config``: server-only keys (``port``, ``manage_server``, the JPEG
settings) are accepted with one warning, and an unknown key raises
``ConfigError`` naming it.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, Mapping, Optional

from . import DEFAULT_PROMPT, ConfigError, Model, SmolVLMError, _native

__all__ = ["SmolVLMModel", "ConfigError"]


class SmolVLMModel:
    """The old wrapper's class: ``SmolVLMModel(name, config)``.

    ``name`` identifies the instance, as before; the model is the config's
    ``smolvlm_version`` (a Hub repo or preset; default
    ``SmolVLM-256M-Instruct``). ``timeout`` is the per-image deadline in
    seconds; ``image_processing.smart_crop`` and ``size`` with
    ``preserve_aspect_ratio: false`` shape images as before.
    """

    def __init__(self, name: str = "smolvlm", config: Optional[Mapping[str, Any]] = None, *, offline: bool = False, threads: Optional[int] = None) -> None:
        self.name = name
        self.config = dict(config or {})
        try:
            text = json.dumps(self.config)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config: not JSON-like: {e}") from e
        try:
            repo, timeout, smart_crop, stretch_to, notes = _native.parse_legacy_config(text)
        except ConfigError as e:
            raise ConfigError(f"config: {e}") from None
        for note in notes:
            warnings.warn(f"config: {note}", UserWarning, stacklevel=2)
        self.repo = repo
        self.timeout = timeout
        # The image shaping the old config asked for, applied by the library.
        self._smart_crop = smart_crop
        self._stretch_to = stretch_to
        self._offline = offline
        self._threads = threads
        self._model: Optional[Model] = None

    # The server's lifecycle, now the model's.
    def start(self) -> bool:
        """Loads the model (downloading it on first use). Returns True."""
        if self._model is None:
            model = Model.from_pretrained(self.repo, offline=self._offline, threads=self._threads)
            model._native.set_image_shaping(bool(self._smart_crop), self._stretch_to)
            self._model = model
        return True

    def stop(self) -> None:
        """Frees the model. ``start`` loads it again."""
        self._model = None

    def is_running(self) -> bool:
        """Whether the model is loaded."""
        return self._model is not None

    def health_check(self) -> bool:
        """A self-test: a one-token caption of a generated 64x64 image."""
        if self._model is None:
            return False
        try:
            pixels = _native.Image.rgb(64, 64, bytes([128]) * (64 * 64 * 3))
            self._model.caption(pixels, DEFAULT_PROMPT, max_tokens=1)
            return True
        except SmolVLMError:
            return False

    def get_server_info(self) -> dict:
        """The model's info (files, architecture, tiles, threads); there is no server."""
        return self._require().info()

    def caption_image(self, image: Any, prompt: str = DEFAULT_PROMPT, max_tokens: Optional[int] = None) -> str:
        """Captions one image (a path, bytes, PIL image or numpy array) and
        returns the text. Raises ``ImageError`` or ``CaptionError``."""
        model = self._require()
        return model.caption(image, prompt, max_tokens=max_tokens, timeout=self.timeout).text

    def _require(self) -> Model:
        if self._model is None:
            raise SmolVLMError("the model is not started: call start() first")
        return self._model

    def __enter__(self) -> "SmolVLMModel":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
