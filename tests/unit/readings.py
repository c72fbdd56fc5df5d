"""Reading a notebook's reading in a test by its numbers and structure (bold verdicts,
parenthesised intervals, table cells), not sentence by sentence: rewording one must not
break a test, a wrong number must."""

from __future__ import annotations

import re


def numbers(text: str) -> list[float]:
    """Every number in ``text``, in order ("95 %" gives 95, "2.5×" 2.5, "1,234" 1234)."""
    return [float(n.replace(",", "")) for n in re.findall(r"[-+]?\d+(?:,\d{3})*(?:\.\d+)?", text)]


def bold(text: str) -> list[str]:
    return re.findall(r"\*\*(.+?)\*\*", text)


def in_parentheses(text: str) -> list[list[float]]:
    """The numbers of each parenthesised aside: where a reading puts a difference's interval."""
    return [numbers(aside) for aside in re.findall(r"\(([^()]*)\)", text)]


def table_cells(table: str) -> dict[str, list[str]]:
    """A Markdown table's body rows: first cell -> the other cells."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in table.splitlines()[2:]]
    return {row[0]: row[1:] for row in rows}
