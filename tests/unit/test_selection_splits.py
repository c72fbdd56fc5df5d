"""Choices read validation tickets only: every selection helper of notebooks 02-05 refuses test rows
before doing any work (the test tickets are scored once, for what was chosen)."""

import pytest

from slmops_helpers import data
from slmops_helpers.deploy import choose, decoding_study, steps
from slmops_helpers.distill import drafting

ROWS = [r for r in data.read_rows() if r["split"] == "validation"][:3]
WITH_TEST = ROWS + [next(r for r in data.read_rows() if r["split"] == "test")]


def _never(*args, **kwargs):
    pytest.fail("the selection did work before refusing the test rows")


def test_refuse_test_rows_names_the_rows_and_the_fix():
    data.refuse_test_rows(ROWS, "anything")  # validation rows pass
    data.refuse_test_rows([{"message": "hand-made"}], "anything")  # rows without a split are not test tickets
    with pytest.raises(
        ValueError, match=rf"Picking x is a choice, and 1 of its rows are test tickets \({WITH_TEST[-1]['id']}"
    ):
        data.refuse_test_rows(WITH_TEST, "Picking x")
    with pytest.raises(ValueError, match=r"Fix: choose on the validation split"):
        data.refuse_test_rows(WITH_TEST, "Picking x")


@pytest.mark.parametrize(
    "select",
    [
        lambda: choose.choose_deploy_source(WITH_TEST, 8),
        lambda: steps.quality_gate([], WITH_TEST, 5, 0.05),
        lambda: decoding_study.run_speculative(None, {}, {}, WITH_TEST, 8, (1, 2)),
        lambda: drafting.student_drafts(None, {}, None, WITH_TEST, 8, (1, 2)),
    ],
    ids=["deploy model", "precision", "speculative gamma", "student draft gamma"],
)
def test_every_selection_refuses_test_rows(select, monkeypatch):
    monkeypatch.setattr(choose, "deploy_candidates", _never)
    with pytest.raises(ValueError, match="is a choice, and 1 of its rows are test tickets"):
        select()


def test_a_report_takes_test_rows_only_and_a_row_without_a_split_is_not_one():
    from slmops_helpers.data import require_test_rows

    require_test_rows([{"id": "t1", "split": "test"}], "The report")  # accepted
    for rows in ([{"id": "v1", "split": "validation"}], [{"id": "x1"}], [{"id": "t1", "split": "test"}, {"id": "x2"}]):
        with pytest.raises(ValueError, match=r"The report scores the test tickets.*Fix: pass test rows"):
            require_test_rows(rows, "The report")
