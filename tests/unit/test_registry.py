import json
import multiprocessing
import os

import pytest

from slmops_helpers import cli
from slmops_helpers.pipeline import registry
from slmops_helpers.pipeline.registry import Registry, RegistryError, sha256_data, sha256_file


@pytest.fixture
def package(tmp_path):
    folder = tmp_path / "pkg"
    (folder / "onnx").mkdir(parents=True)
    (folder / "onnx" / "model.onnx").write_bytes(b"weights" * 100)
    (folder / "genai_config.json").write_text('{"model": 1}')
    return folder


def _register(reg, name="support-assistant", **kwargs):
    return reg.register(name, base_model="smollm2-135m-instruct", **kwargs)


def test_register_versions_and_lineage(tmp_path, package):
    reg = Registry(tmp_path / "reg")
    first = _register(reg, files=[package], metrics={"score": 61.5, "size_mib": 86.0}, data_hash=sha256_data([1]))
    second = _register(reg, files=[package / "onnx" / "model.onnx"], parent=first.id, hyperparameters={"r": 8})
    other = _register(reg, name="teacher")
    assert (first.id, second.id, other.id) == ("support-assistant-v1", "support-assistant-v2", "teacher-v1")
    assert first.stage == "candidate" and first.metrics["score"] == 61.5
    assert len(first.files) == 2 and len(second.files) == 1
    model = str((package / "onnx" / "model.onnx").resolve())
    assert first.files[model] == sha256_file(model)
    assert [e.id for e in reg.entries(name="support-assistant")] == [first.id, second.id]
    assert [e.id for e in reg.lineage(second.id)] == [second.id, first.id]
    assert reg.get(second.id).hyperparameters == {"r": 8}
    assert reg.latest("support-assistant").id == second.id


def test_promote_to_production_archives_the_previous_one(tmp_path):
    reg = Registry(tmp_path)
    v1, v2 = _register(reg), _register(reg)
    reg.promote(v1.id, "production")
    promoted = reg.promote(v2.id, "production")
    assert promoted.stage == "production"
    assert reg.get(v1.id).stage == "archived"
    assert [h["stage"] for h in reg.get(v1.id).history] == ["candidate", "production", "archived"]
    assert [e.id for e in reg.entries(stage="production")] == [v2.id]


def test_verify_names_missing_and_changed_files(tmp_path, package):
    reg = Registry(tmp_path / "reg")
    entry = _register(reg, files=[package])
    assert reg.verify(entry.id) == entry
    (package / "genai_config.json").write_text('{"model": 2}')
    (package / "onnx" / "model.onnx").unlink()
    with pytest.raises(RegistryError) as err:
        reg.verify(entry)
    message = str(err.value)
    assert "changed: " in message and "genai_config.json" in message
    assert "missing: " in message and "model.onnx" in message
    assert "Fix:" in message


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r.promote("support-assistant-v1", "shipped"), "Unknown stage 'shipped'"),
        (lambda r: r.get("nope-v9"), r"No registry entry 'nope-v9'.*support-assistant-v1"),
        (lambda r: _register(r, name="bad name!"), "must be letters"),
        (lambda r: _register(r, parent="ghost-v1"), "Parent 'ghost-v1' is not in the registry"),
        (lambda r: r.register("x", base_model=""), "needs base_model"),
    ],
)
def test_bad_requests_are_named(tmp_path, call, message):
    reg = Registry(tmp_path)
    _register(reg)
    with pytest.raises(RegistryError, match=message):
        call(reg)
    assert [e.id for e in reg.entries()] == ["support-assistant-v1"]  # nothing half-registered


def test_missing_package_and_non_flat_metrics_are_refused(tmp_path):
    reg = Registry(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _register(reg, files=[tmp_path / "nowhere"])
    with pytest.raises(TypeError, match="flat"):
        _register(reg, metrics={"scores": [1, 2]})
    assert reg.entries() == []


def test_a_failed_write_leaves_the_index_as_it_was(tmp_path, monkeypatch):
    reg = Registry(tmp_path)
    _register(reg)
    before = reg.index_path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        _register(reg)
    monkeypatch.undo()
    assert reg.index_path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".index.lock", "index.json"]  # no temp file left


def test_corrupt_index_is_a_clear_error(tmp_path):
    (tmp_path / "index.json").write_text('{"format": 1, "entries": {')
    with pytest.raises(RegistryError, match="not valid JSON"):
        Registry(tmp_path).entries()


def _register_many(root: str, worker: int, count: int) -> None:
    reg = Registry(root)
    for i in range(count):
        reg.register("shared", base_model="m", metrics={"worker": worker, "i": i})
        reg.register(f"w{worker}", base_model="m")


def test_concurrent_writers_lose_nothing(tmp_path):
    workers, count = 4, 8
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register_many, args=(str(tmp_path), w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * workers
    index = json.loads((tmp_path / "index.json").read_text())  # valid JSON
    shared = [e for e in index["entries"].values() if e["name"] == "shared"]
    assert sorted(e["version"] for e in shared) == list(range(1, workers * count + 1))
    assert sorted((e["metrics"]["worker"], e["metrics"]["i"]) for e in shared) == [
        (w, i) for w in range(workers) for i in range(count)
    ]
    for w in range(workers):
        assert [e.version for e in Registry(tmp_path).entries(name=f"w{w}")] == list(range(1, count + 1))


def test_cli_registry_commands(tmp_path, package, capsys):
    reg = Registry(tmp_path / "reg")
    entry = _register(reg, files=[package], metrics={"score": 60.0})
    root = ["--root", str(tmp_path / "reg")]
    assert cli.main(["registry", "list", *root]) == 0
    assert entry.id in capsys.readouterr().out
    assert cli.main(["registry", "show", entry.id, *root]) == 0
    assert "score" in capsys.readouterr().out
    assert cli.main(["registry", "promote", entry.id, "--stage", "staging", *root]) == 0
    assert reg.get(entry.id).stage == "staging"
    assert cli.main(["registry", "verify", entry.id, *root]) == 0
    assert "match their sha256" in capsys.readouterr().out
    (package / "genai_config.json").write_text("tampered")
    assert cli.main(["registry", "verify", entry.id, *root]) == 2
    assert "changed:" in capsys.readouterr().err
    assert cli.main(["registry", "promote", entry.id, *root]) == 2
    assert "needs --stage" in capsys.readouterr().err
    assert cli.main(["registry", "show", *root]) == 2
    assert cli.main(["registry", "show", "nope-v1", *root]) == 2


def test_empty_registry_lists_a_hint(tmp_path, capsys):
    assert registry.run_command("list", root=tmp_path) == 0
    assert "empty" in capsys.readouterr().out
