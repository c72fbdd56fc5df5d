"""The solution markers of a lab's source notebook, read in one place.

In code cells, each answer sits between marker lines, followed by the starter line(s)
that learners see, written as ``#>`` comments::

    ### BEGIN SOLUTION
    fp16_mib = n_params * 2 / 2**20
    #> fp16_mib = ____  # bytes per weight × weights, in MiB
    ### END SOLUTION

``classify_lines`` tells each line's role; the renderer (``render.py``) builds the
exercise and the solution from it, and ``qN.solution()`` (``solutions.py``) the answer.
"""

from __future__ import annotations

import re

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STARTER = "#>"
# The role of each line of a code cell (see classify_lines).
CODE, ANSWER, STARTER_LINE, MARKER = "code", "answer", "starter", "marker"
# Anything that looks like a marker but is not spelled exactly like one is an error:
# a silently ignored "## begin solution" would leak the answer into the exercise.
_MARKER_LIKE = re.compile(r"^#+\s*(BEGIN|END)\s+SOLUTION\b", re.IGNORECASE)


def _marker_error(where: str, lineno: int, problem: str, fix: str) -> ValueError:
    return ValueError(f"{where}, line {lineno}: {problem}. Fix: {fix}.")


def _uncomment(line: str) -> str:
    """``    #> x = ____`` becomes ``    x = ____``: the ``#>`` keeps its indentation."""
    indent = line[: len(line) - len(line.lstrip())]
    rest = line.lstrip()[len(STARTER) :]
    rest = rest[1:] if rest.startswith(" ") else rest  # one space after "#>" is syntax
    return indent + rest if rest.strip() else ""


def classify_lines(source: str, where: str = "cell") -> list[tuple[str, str]]:
    """Each line of a code cell with its role.

    Args:
        source: the cell's code, possibly with solution blocks.
        where: names the cell in error messages, e.g. "labs/source/01.ipynb, cell index 3".
    Returns:
        ``(text, role)`` per line, in order: CODE (outside any block), ANSWER (inside
        a block), STARTER_LINE (a ``#>`` line, its text already un-commented) or MARKER.
    Raises:
        ValueError: nested or unbalanced markers, a misspelt marker, a ``#>`` line
            outside a block, or a block without any ``#>`` line.
    """
    lines: list[tuple[str, str]] = []
    block_start: int | None = None  # line of the open BEGIN marker; None outside a block
    has_starter = False
    for lineno, line in enumerate(source.split("\n"), start=1):
        text = line.strip()
        if text == BEGIN:
            if block_start is not None:
                raise _marker_error(
                    where,
                    lineno,
                    f"nested '{BEGIN}' (the block opened on line {block_start} is still open)",
                    f"add '{END}' above it",
                )
            block_start, has_starter = lineno, False
            lines.append((line, MARKER))
        elif text == END:
            if block_start is None:
                raise _marker_error(
                    where,
                    lineno,
                    f"'{END}' without a '{BEGIN}' above it",
                    f"add '{BEGIN}' above the answer, or delete this line",
                )
            if not has_starter:
                raise _marker_error(
                    where,
                    block_start,
                    "this solution block has no '#>' line",
                    f"add a starter such as '#> answer = ____' before '{END}'",
                )
            block_start = None
            lines.append((line, MARKER))
        elif _MARKER_LIKE.match(text):
            raise _marker_error(
                where, lineno, f"malformed marker {text!r}", f"write it exactly as '{BEGIN}' or '{END}'"
            )
        elif text.startswith(STARTER):
            if block_start is None:
                raise _marker_error(
                    where,
                    lineno,
                    "'#>' starter line outside a solution block",
                    f"move it between '{BEGIN}' and '{END}'",
                )
            has_starter = True
            lines.append((_uncomment(line), STARTER_LINE))
        else:
            lines.append((line, CODE if block_start is None else ANSWER))
    if block_start is not None:
        raise _marker_error(
            where, block_start, f"'{BEGIN}' without a matching '{END}'", f"add '{END}' after the block's '#>' lines"
        )
    return lines


def split_source(source: str, where: str = "cell") -> tuple[str, str]:
    """Split one code cell's source into its solution and exercise versions.

    * the solution keeps the answer and drops the markers and the ``#>`` lines;
    * the exercise drops the answer and the markers, and un-comments the ``#>`` lines.

    Args:
        source: the cell's code, possibly with solution blocks.
        where: names the cell in error messages, e.g. "labs/source/01.ipynb, cell index 3".
    Returns:
        ``(solution_source, exercise_source)``.
    Raises:
        ValueError: a marker problem (see classify_lines).
    """
    lines = classify_lines(source, where)
    solution = [text for text, role in lines if role in (CODE, ANSWER)]
    exercise = [text for text, role in lines if role in (CODE, STARTER_LINE)]
    return "\n".join(solution), "\n".join(exercise)
