"""Every committed reference record is a full run of its notebook holding the keys the
notebook records today. Runs after the notebook tests (file order), on their metrics."""

from __future__ import annotations

import pytest

from slmops_helpers import reference
from slmops_helpers.metrics import metrics_path, read_metrics

pytestmark = pytest.mark.slow


def _stems(root):
    return sorted(p.name.removesuffix(".full.json") for p in (root / reference.REFERENCE_DIR).glob("*.full.json"))


def test_references_match_their_notebooks(root):
    stems = _stems(root)
    notebooks = {p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert set(stems) <= notebooks, f"references without a notebook: {set(stems) - notebooks}"
    for stem in stems:
        ref = reference.read_reference(stem, root)
        assert ref.usable, ref.problem
        if not metrics_path(stem).is_file():
            pytest.skip(f"no smoke metrics of {stem} yet: run the notebook tests first")
        stale = reference.stale_keys(read_metrics(stem), ref)
        assert not stale, f"{stem}'s reference predates {stale}: `{reference.regenerate_command(stem)}` renews it"
