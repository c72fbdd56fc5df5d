import json

import pytest

from slmops_helpers import cli, runner


def test_cli_unknown_preset_exits_2_with_the_fix(capsys):
    assert cli.main(["prepare", "--model", "nope"]) == 2
    assert "Unknown model preset 'nope'" in capsys.readouterr().err


def test_cli_doctor_reports_model_state(capsys):
    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert "torch" in out and "RAM" in out and "model" in out
    assert (code == 0) == ("ready at" in out)


def test_cli_bad_profile_is_rejected():
    with pytest.raises(SystemExit):
        cli.main(["run", "--profile", "fast"])


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
    assert seen == [({"profile": profile}, runner.CELL_TIMEOUT_S[profile])]
    assert (runner.CELL_TIMEOUT_S[profile] is None) == (profile == "full")  # an hour-long training cell


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
