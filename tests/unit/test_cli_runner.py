import json

import pytest

from slmops_helpers import cli
from slmops_helpers.config import get_profile
from slmops_helpers.course import runner


def test_cli_unknown_preset_exits_2_with_the_fix(capsys):
    assert cli.main(["prepare", "--model", "nope"]) == 2
    assert "Unknown model preset 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("prepared", [True, False])
def test_cli_doctor_reports_model_state(monkeypatch, tmp_path, capsys, prepared):
    from slmops_helpers import models

    monkeypatch.setattr(models, "prepared_dir", lambda preset: tmp_path / preset.name)
    monkeypatch.setattr(models, "is_prepared", lambda folder: prepared and folder == tmp_path / models.DEFAULT_MODEL)
    monkeypatch.setattr(models, "locate_gguf", lambda gguf: tmp_path / "source.gguf")
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "torch" in out and "RAM" in out
    model_line = next(line for line in out.splitlines() if line.startswith("model "))
    if prepared:
        assert code == 0 and model_line.endswith(f"ready at {tmp_path / models.DEFAULT_MODEL}")
    else:
        assert code == 1 and "NOT prepared (source source.gguf is fine)" in model_line
        assert "Fix: run `slmops prepare`" in model_line


def test_cli_doctor_says_a_hub_model_is_missing_offline(monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", "/nonexistent-hub-cache")
    assert cli.main(["doctor", "--model", "qwen2.5-0.5b-instruct"]) == 1
    assert "NOT ready. Model 'qwen2.5-0.5b-instruct' (Qwen/Qwen2.5-0.5B-Instruct) is not available offline" in (
        capsys.readouterr().out
    )


def test_cli_bad_profile_is_rejected_before_anything_runs(monkeypatch, capsys):
    monkeypatch.setattr(runner, "run_course", lambda *a, **k: pytest.fail("the course ran with a bad profile"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--profile", "fast"])
    assert exit_info.value.code == 2  # argparse's usage error, not a crash (1) or success (0)
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_course_notebooks_are_sequenced(root):
    names = [p.name for p in runner.course_notebooks(root)]
    assert names and names == sorted(names) and names[0].startswith("01_")
    with pytest.raises(ValueError, match="No notebook numbered"):
        runner.course_notebooks(root, only=["99"])


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_run_course_bounds_cells_by_profile(monkeypatch, profile):
    seen = []

    def fake_run_notebook(notebook, output, parameters, timeout_s):
        seen.append((parameters, timeout_s))
        raise InterruptedError  # stop before any metrics are read

    monkeypatch.setattr(runner, "run_notebook", fake_run_notebook)
    with pytest.raises(InterruptedError):
        runner.run_course(profile, only=["01"])
    assert seen == [({"profile": profile}, get_profile(profile).cell_timeout_s)]
    assert (get_profile(profile).cell_timeout_s is None) == (profile == "full")  # an hour-long training cell


def test_cell_times_reads_papermill_metadata(tmp_path):
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "source": ["x = 1\n", "y"],
                "metadata": {
                    "papermill": {"start_time": "2026-01-01T00:00:00.000000", "end_time": "2026-01-01T00:00:02.500000"}
                },
            },
            {"cell_type": "markdown", "source": ["# t"], "metadata": {}},
        ]
    }
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert runner.cell_times(path) == [(0, 2.5, "x = 1")]


@pytest.fixture
def no_training(monkeypatch):
    """`slmops train` must refuse bad input before loading a model or training anything."""
    from slmops_helpers import models, training

    def forbidden(*args, **kwargs):
        raise AssertionError("long work started before the input was checked")

    monkeypatch.setattr(training, "train", forbidden)
    monkeypatch.setattr(models, "_convert_gguf", forbidden)
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_pretrained", forbidden)


@pytest.mark.parametrize(
    "argv, env, message",
    [
        (["method", "--device", "cpu", "--batch-size", "4"], {"WORLD_SIZE": "3"}, "make batch_size a multiple of 3"),
        (["method", "--device", "cpu", "--accumulation", "3"], {}, "accumulation"),
        (["student", "--device", "cpu", "--batch-size", "6"], {"WORLD_SIZE": "4"}, "multiple of 4"),
        (["tuned", "--device", "cpu", "--model", "smollm2-1.7b-instruct"], {}, "sized for a GPU.*Fix: run on a"),
        (["method", "--device", "cpu", "--mixed-precision", "bf16"], {}, "needs the model on a CUDA GPU"),
        (["method", "--device", "cpu", "--model", "smollm2-360m-instruct"], {"HF_HUB_OFFLINE": "1"}, "not available"),
    ],
)
def test_cli_train_refuses_bad_input_before_any_work(no_training, monkeypatch, capsys, argv, env, message):
    import re
    import warnings

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", "/nonexistent-hub-cache")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 CPU processes on 2 cores warn; that is not the point here
        assert cli.main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err


def test_cli_train_refuses_more_gpu_processes_than_gpus(no_training, monkeypatch, capsys):
    import torch

    from slmops_helpers import models

    monkeypatch.setattr(models, "pick_device", lambda preferred=None: "cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: pytest.fail("set_device before the check"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert cli.main(["train", "tuned"]) == 2
    assert "2 processes on this machine, but it has 1 GPU(s)" in capsys.readouterr().err


def test_cli_prepare_exports_needs_the_tuned_model(capsys):
    assert cli.main(["prepare", "--exports"]) == 2
    assert "Fix: add --tuned" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["registry", "list", "--root", "{missing}"],
        ["registry", "show", "some-entry", "--root", "{missing}"],
        ["registry", "promote", "some-entry", "--stage", "production", "--root", "{missing}"],
        ["bench", "--source", "{missing}", "--no-gguf"],
    ],
)
def test_cli_reports_a_missing_folder_as_missing_and_names_it(monkeypatch, tmp_path, capsys, argv):
    from slmops_helpers.deploy import export

    monkeypatch.setattr(export, "prepare_model", lambda name: str(tmp_path / "base"))  # no conversion for bench
    missing = tmp_path / "nowhere"
    assert cli.main([arg.replace("{missing}", str(missing)) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "does not exist" in err, err
    assert not missing.exists()  # promote would otherwise create an empty registry there


def test_a_missing_package_or_registry_is_not_reported_as_empty(tmp_path):
    from slmops_helpers.deploy import package
    from slmops_helpers.pipeline import registry

    missing = tmp_path / "nowhere"
    with pytest.raises(package.PackageError, match=f"No package at {missing}: the folder does not exist"):
        package.verify_package(missing)
    with pytest.raises(registry.RegistryError, match=f"no registry at {missing} \\(the folder does not exist\\)"):
        registry.Registry(missing).get("some-entry")
    missing.mkdir()  # an existing folder without entries is empty, and said to be, with its path
    with pytest.raises(registry.RegistryError, match="known: none yet"):
        registry.Registry(missing).get("some-entry")
    assert registry.format_entries([], missing) == f"The registry at {missing} is empty. " + (
        "Register a package with Registry.register(...)."
    )


@pytest.mark.parametrize("exists", [False, True])
def test_cli_summary_names_the_metrics_folder(monkeypatch, tmp_path, capsys, exists):
    monkeypatch.setattr(cli, "artifacts_dir", lambda: tmp_path)
    if exists:
        (tmp_path / "metrics").mkdir()
    assert cli.main(["summary"]) == 1
    state = "holds no metrics file" if exists else "does not exist"
    assert f"{tmp_path / 'metrics'} {state}" in capsys.readouterr().out


def test_run_only_an_unknown_number_names_the_notebooks_folder(root):
    with pytest.raises(ValueError, match=f"No notebook numbered 99 in {root / 'notebooks'}; available: 01, 02"):
        runner.course_notebooks(root, only=["99", "01"])
