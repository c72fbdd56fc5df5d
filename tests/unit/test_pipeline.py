"""The capstone's pipeline steps (slmops_helpers.pipeline.stages) on tiny models and packages."""

from __future__ import annotations

import json

import pytest

from slmops_helpers import data, distill
from slmops_helpers.deploy import export
from slmops_helpers.deploy.package import PackageError, verify_package, write_package
from slmops_helpers.pipeline import stages


def _row(**overrides):
    row = {
        "variant": "candidate",
        "size_mib": 103.2,
        "load_s": 0.6,
        "ttft_ms": 300.0,
        "ms_per_token_p50": 10.0,
        "ms_per_token_p95": 12.0,
        "tok_s": 95.0,
        "peak_mib": 300.0,
        "agreement": 0.8,
        "score": 40.0,
    }
    return row | overrides


def test_gate_metrics_use_the_gate_names():
    metrics = stages.gate_metrics(_row())
    assert metrics["score"] == 40.0 and metrics["size_mib"] == 103.2
    assert metrics["ms_per_token_p50"] == 10.0 and metrics["peak_mib"] == 300.0
    assert set(metrics) == set(stages.GATE_KEYS)
    row = _row()
    del row["score"]
    with pytest.raises(ValueError, match=r"lacks \['score'\]"):
        stages.gate_metrics(row)


def _table():
    return [
        _row(variant="production", score=45.0, peak_mib=765.0, size_mib=258.0),
        _row(variant="candidate", score=44.0, peak_mib=760.0, size_mib=258.0),
        _row(variant="over_quantized", score=30.0, peak_mib=300.0, size_mib=90.0),
    ]


def test_rollout_variants_offer_only_the_builds_that_passed_the_gate():
    variants = stages.rollout_variants(_table(), {"candidate": True, "over_quantized": False})
    assert [v.name for v in variants] == ["candidate"]  # the refused build reaches no device
    (candidate,) = variants
    assert (candidate.score, candidate.peak_mib, candidate.size_mib) == (44.0, 760.0, 258.0)  # its own measurement
    both = stages.rollout_variants(_table(), {"candidate": True, "over_quantized": True})
    assert [v.name for v in both] == ["candidate", "over_quantized"]


def test_rollout_variants_refuse_an_unmeasured_build_or_an_empty_release():
    with pytest.raises(ValueError, match=r"No measurement of build\(s\) \['hotfix'\]"):
        stages.rollout_variants(_table(), {"hotfix": True})
    with pytest.raises(ValueError, match="No build of this release passed the gate"):
        stages.rollout_variants(_table(), {"candidate": False})


def test_devices_that_no_gated_build_fits_are_unserved_not_given_a_refused_one():
    """The issue's failure: gateways and hubs fit only the small build; when it is refused they must
    be unserved, not handed it."""
    from slmops_helpers import fleet
    from slmops_helpers.pipeline import rollout

    config = fleet.FleetConfig(
        devices=100,
        classes=(
            fleet.DeviceClass("gateway", 0.6, 1024, ram_budget=0.35),  # 358 MiB: only the 300 MiB build fits
            fleet.DeviceClass("tablet", 0.4, 4096, ram_budget=0.25),  # 1024 MiB: both fit
        ),
    )
    devices = fleet.build_fleet(config)
    refused = stages.rollout_variants(_table(), {"candidate": True, "over_quantized": False})
    picked = fleet.pick_variants(devices, refused)
    assert (picked[devices.device_class == 0] == -1).all() and (picked[devices.device_class == 1] == 0).all()
    plan = rollout.RolloutConfig(stages=(rollout.Stage("all", 1.0, 24, 0.5, 1.0),))
    result = rollout.simulate_rollout(devices, refused, plan)
    assert sum(s.unserved for s in result.stages) == 60
    passed = stages.rollout_variants(_table(), {"candidate": True, "over_quantized": True})
    assert (fleet.pick_variants(devices, passed) >= 0).all()


def test_feedback_round_trip_and_summary(tmp_path):
    records = [
        {"device": 1, "device_class": "home hub", "variant": "onnx_int4", "stage": "canary", "kind": "failed"},
        {"device": 2, "device_class": "tablet", "variant": "onnx_int4", "stage": "wider", "kind": "low_confidence"},
        {
            "device": 3,
            "device_class": "home hub",
            "variant": "onnx_int4",
            "stage": "wider",
            "kind": "failed",
            "prompt": "é",
        },
    ]
    path = stages.write_feedback(records, tmp_path / "feedback.jsonl")
    assert stages.read_feedback(path) == records
    assert len(path.read_text().splitlines()) == 3
    summary = stages.feedback_summary(records)
    assert summary == {
        "kind": {"failed": 2, "low_confidence": 1},
        "device_class": {"home hub": 2, "tablet": 1},
        "stage": {"canary": 1, "wider": 2},
    }
    assert stages.read_feedback(stages.write_feedback([], tmp_path / "empty.jsonl")) == []


def test_copy_package_verifies_both_ends(tiny_package, tmp_path):
    copy = stages.copy_package(tiny_package, tmp_path / "copy")
    assert verify_package(copy)["files"] == verify_package(tiny_package)["files"]
    again = stages.copy_package(tiny_package, tmp_path / "copy")  # replacing an existing copy is fine
    assert again == copy
    broken = stages.copy_package(tiny_package, tmp_path / "broken")
    (broken / "tokenizer.json").write_text("{}")
    with pytest.raises(PackageError, match="tokenizer.json differs"):
        stages.copy_package(broken, tmp_path / "from_broken")
    assert not (tmp_path / "from_broken").exists()


def _fake_package(tmp_path, source, name="pkg"):
    lineage = {"base_model": "tiny", "source_fingerprint": export.source_fingerprint(source)}
    onnx_dir = tmp_path / f"{name}_onnx"
    onnx_dir.mkdir()
    (onnx_dir / "model.onnx").write_bytes(b"not really onnx")
    (onnx_dir / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    return write_package(onnx_dir, tmp_path / name, "tiny", "1.0.0", lineage)


def test_find_production_follows_the_manifest_to_its_source(tmp_path, tiny_source, monkeypatch):
    import shutil

    from slmops_helpers import finetune

    merged = tmp_path / "03_fine_tuning" / "merged_lora"
    shutil.copytree(tiny_source, merged)
    monkeypatch.setattr(finetune, "tuned_dir", lambda *a, **k: tmp_path / "no_tuned_model")
    package = _fake_package(tmp_path, merged)
    shutil.copytree(package, tmp_path / "04_deployment" / "package")
    prod = stages.find_production(tmp_path)
    assert prod.package == tmp_path / "04_deployment" / "package" and prod.source == merged
    assert prod.manifest["lineage"]["base_model"] == "tiny"


def test_find_production_without_a_matching_package_falls_back(tmp_path, tiny_source, monkeypatch):
    import shutil

    from slmops_helpers import finetune

    monkeypatch.setattr(finetune, "tuned_dir", lambda *a, **k: tmp_path / "no_tuned_model")
    monkeypatch.setattr(export, "deploy_source", lambda explicit=None: (tiny_source, "the fallback"))
    assert stages.find_production(tmp_path) == stages.Production(None, tiny_source, "the fallback", None)
    # a package whose source folder is gone (or was retrained) does not count as production
    package = _fake_package(tmp_path, tiny_source)
    shutil.copytree(package, tmp_path / "04_deployment" / "package")
    assert stages.find_production(tmp_path).package is None
    # nor does a package that fails verification
    merged = tmp_path / "03_fine_tuning" / "merged_lora"
    shutil.copytree(tiny_source, merged)
    (tmp_path / "04_deployment" / "package" / "model.onnx").write_bytes(b"tampered")
    assert stages.find_production(tmp_path).package is None


def test_cached_teacher_outputs_reads_what_generate_wrote_and_never_generates(tiny_model, tiny_tokenizer, tmp_path):
    prompts = ["the hub is offline", "billing help"]
    written = distill.generate_teacher_outputs(tiny_model, tiny_tokenizer, prompts, 4, cache_root=tmp_path)
    cached = stages.cached_teacher_outputs(tiny_model, prompts, 4, cache_root=tmp_path)
    assert cached.texts == written.texts and cached.finished == written.finished
    assert (cached.n_cached, cached.n_generated, cached.folder) == (2, 0, written.folder)
    assert stages.cached_teacher_outputs(tiny_model, [*prompts, "wifi setup"], 4, cache_root=tmp_path) is None
    assert stages.cached_teacher_outputs(tiny_model, prompts, 5, cache_root=tmp_path) is None  # other settings
    assert not any(p.name.startswith(".") for p in written.folder.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="No prompts"):
        stages.cached_teacher_outputs(tiny_model, [], 4, cache_root=tmp_path)


def test_fine_tune_and_merge_returns_a_plain_model_with_parity(tiny_model, tiny_tokenizer, tmp_path):
    from slmops_helpers import training
    from slmops_helpers.finetune import MethodConfig

    model = tiny_model
    rows = list(data.load_splits()["train"])[:4]
    examples = [training.encode_example(tiny_tokenizer, r, max_length=256) for r in rows]
    spec = MethodConfig("lora", rank=2, alpha=4, targets=("q_proj", "v_proj"))
    config = training.TrainConfig(lr=1e-2, max_steps=2, batch_size=2, eval_every=2)
    merged, run, parity = stages.fine_tune_and_merge(model, tiny_tokenizer, spec, config, examples, examples, rows[:2])
    assert run.steps == 2 and parity.exact
    assert not any("lora" in name for name, _ in merged.named_parameters())
    folder = stages.save_model(merged, tiny_tokenizer, tmp_path / "merged")
    assert (folder / "config.json").is_file() and export.source_fingerprint(folder)
    assert json.loads((folder / "config.json").read_text())["num_hidden_layers"] == 2


def test_measure_packages_best_of_interleaved_rounds(tiny_package, tmp_path):
    other = stages.copy_package(tiny_package, tmp_path / "other")
    from slmops_helpers.deploy.bench import BenchConfig

    rows = list(data.load_splits()["test"])[:2]
    settings = BenchConfig(["the hub is offline", "billing help"], 6, "the hub is offline", 4, 2)
    table = stages.measure_packages({"a": tiny_package, "b": other}, settings, rows, speed_rounds=2)
    assert [r["variant"] for r in table] == ["a", "b"]
    assert table[0]["agreement"] == 1.0 and table[1]["agreement"] == 1.0  # same weights, same greedy tokens
    for row in table:
        assert row["ms_per_token_p95"] >= row["ms_per_token_p50"] > 0 and row["tok_s"] > 0
        assert 0 <= stages.gate_metrics(row)["score"] <= 100
    speed = stages.interleaved_speed({"a": tiny_package, "b": other}, "the hub is offline", 4, rounds=2)
    assert set(speed) == {"a", "b"} and all(s["ms_per_token_p50"] > 0 and s["tok_s"] > 0 for s in speed.values())
    with pytest.raises(ValueError, match="rounds"):
        stages.interleaved_speed({"a": tiny_package}, "the hub is offline", 4, rounds=0)
    with pytest.raises(ValueError, match="speed_rounds"):
        stages.measure_packages({"a": tiny_package}, settings, rows, speed_rounds=0)
    with pytest.raises(ValueError, match="No packages"):
        stages.measure_packages({}, settings, rows)
