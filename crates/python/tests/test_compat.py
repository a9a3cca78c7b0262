"""The old wrapper's interface: its config dict unchanged, its lifecycle."""

import warnings

import pytest

import smolvlm
from smolvlm.compat import ConfigError, SmolVLMModel

OLD = {
    "smolvlm_version": "ggml-org/SmolVLM-500M-Instruct-GGUF",
    "port": 8080,
    "timeout": 60,
    "manage_server": True,
    "image_processing": {
        "smart_crop": True,
        "size": [1024, 1024],
        "min_size": 512,
        "preserve_aspect_ratio": True,
        "format": "JPEG",
        "jpeg_quality": 95,
        "optimize": True,
    },
}


def test_the_old_config_loads_with_the_clis_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SmolVLMModel("smolvlm", OLD)
    messages = [str(w.message) for w in caught]
    assert any("port, manage_server ignored" in m for m in messages), messages
    assert any("format" in m and "jpeg_quality" in m for m in messages), messages
    assert model.repo == "ggml-org/SmolVLM-500M-Instruct-GGUF"
    assert model.timeout == 60
    assert not model.is_running() and not model.health_check()


def test_an_unknown_key_is_an_error_that_names_it():
    with pytest.raises(ConfigError) as info:
        SmolVLMModel("smolvlm", {"image_processing": {"smartcrop": True}})
    assert "image_processing.smartcrop" in str(info.value)
    with pytest.raises(ConfigError):
        SmolVLMModel("smolvlm", {"timeout": "soon"})


def _started(tiny_files, config):
    """A compat model on the tiny local pair (no Hub): what start() loads,
    with the config's image shaping."""
    m = SmolVLMModel("smolvlm", config)
    model = smolvlm.Model(*tiny_files, threads=2)
    model._native.set_image_shaping(bool(m._smart_crop), m._stretch_to)
    m._model = model
    return m


def test_start_caption_health_info_stop(tiny_files, picture, model):
    m = _started(tiny_files, {"timeout": 30})
    assert m.is_running() and m.health_check()
    assert m.get_server_info()["projector"] == "idefics3"
    assert m.caption_image(picture, max_tokens=16) == model.caption(picture, max_tokens=16).text
    m.stop()
    assert not m.is_running()
    with pytest.raises(smolvlm.SmolVLMError):
        m.caption_image(picture)


def test_the_old_image_processing_shapes_images_in_the_library(tiny_files, picture, model):
    from PIL import Image

    framed = Image.new("RGB", (160, 128), (255, 255, 255))
    framed.paste(picture, (32, 32))
    cropped = _started(tiny_files, {"image_processing": {"smart_crop": True}})
    plain = _started(tiny_files, {})
    assert cropped.caption_image(framed, max_tokens=16) == model.caption(picture, max_tokens=16).text
    assert plain.caption_image(framed, max_tokens=16) == model.caption(framed, max_tokens=16).text
