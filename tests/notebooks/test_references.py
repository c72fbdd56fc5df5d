"""Every committed reference record is a full run of its notebook holding the keys the
notebook records today: checked against this session's smoke run of that notebook (run
here if no other test ran it yet, so the check never depends on test order). That every record
is a usable full run with a notebook is checked without a run, in tests/unit/test_repository.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmops_helpers import reference

ROOT = Path(__file__).resolve().parents[2]


def _stems() -> list[str]:
    folder = ROOT / reference.REFERENCE_DIR
    return sorted(p.name.removesuffix(".full.json") for p in folder.glob("*.full.json"))


@pytest.mark.parametrize("stem", _stems())
def test_reference_holds_what_its_notebook_records_today(root, notebook_run, stem):
    ref = reference.read_reference(stem, root)
    assert ref.usable, ref.problem
    stale = reference.stale_keys(notebook_run(stem).metrics, ref)
    assert not stale, f"{stem}'s reference predates {stale}: `{reference.regenerate_command(stem)}` renews it"
