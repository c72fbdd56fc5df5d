import pytest

from slmops_helpers._io import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    build_directory,
    ensure_writable_dir,
    is_complete,
)


def test_atomic_write_text_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt"]


def test_atomic_write_json_round_trip(tmp_path):
    import json

    path = atomic_write_json(tmp_path / "m.json", {"b": 1, "a": "x"})
    assert json.loads(path.read_text()) == {"a": "x", "b": 1}


def test_atomic_directory_interrupted_leaves_nothing(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(final) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_keeps_old_until_new_is_complete(tmp_path):
    final = tmp_path / "model"
    with atomic_directory(final) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_directory(final) as tmp:
            (tmp / "v").write_text("2")
            raise RuntimeError("boom")
    assert (final / "v").read_text() == "1"
    with atomic_directory(final) as tmp:
        (tmp / "v").write_text("3")
    assert (final / "v").read_text() == "3"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_ensure_writable_dir_names_the_fix(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="set SLMOPS_CACHE"):
        ensure_writable_dir(blocker / "cache", "set SLMOPS_CACHE")
    assert ensure_writable_dir(tmp_path / "ok", "x").is_dir()


def test_build_directory_writes_its_marker_last_and_is_complete_checks_it(tmp_path):
    import json

    final = tmp_path / "build"
    with build_directory(final, "done.json", {"source": "src"}) as tmp:
        (tmp / "model.bin").write_bytes(b"weights")
        (tmp / "logs").mkdir()  # a folder is not a listed file
        assert not (tmp / "done.json").exists()  # not before the build is finished
    assert json.loads((final / "done.json").read_text()) == {"source": "src", "files": {"model.bin": 7}}
    assert is_complete(final, "done.json", "model.bin")
    assert not is_complete(final, "done.json", "model.onnx")  # a required file is missing
    (final / "model.bin").write_bytes(b"cut")
    assert not is_complete(final, "done.json")  # changed since the build: the recorded size says so


def test_an_interrupted_build_leaves_no_complete_folder(tmp_path):
    with pytest.raises(KeyboardInterrupt), build_directory(tmp_path / "build", "done.json", {}) as tmp:
        (tmp / "model.bin").write_bytes(b"half")
        raise KeyboardInterrupt
    assert not (tmp_path / "build").exists() and not is_complete(tmp_path / "build", "done.json")


def test_a_marker_without_a_file_list_means_marker_and_required_files(tmp_path):
    (tmp_path / "done.json").write_text('{"source": "an older build"}')
    assert not is_complete(tmp_path, "done.json", "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert is_complete(tmp_path, "done.json", "model.onnx")
    (tmp_path / "done.json").write_text("not json")
    assert not is_complete(tmp_path, "done.json", "model.onnx")
