"""A papermill engine that notices a lost end-of-cell message and names the cell.

The kernel ends every cell with two messages: a status ``idle`` on IOPub and an
``execute_reply`` on the shell channel. nbclient waits for the reply up to the whole cell
timeout (30 minutes on the smoke profile), so a reply that never reaches the client turns
into half an hour of a "running" cell and then a failure that blames the cell; that is
what a stalled widget cell looked like in CI (jupyter/nbclient#312, nteract/papermill#723).

Here, once one of the two has come, the other gets ``STALL_S`` seconds; past that the run
fails with ``NotebookStalled``, naming the cell and the message that was lost. A genuinely
long cell (training) sends neither until it ends, so it still runs for as long as it needs.
Imported by ``runner.run_notebook`` only, since it pulls in papermill.

It leans on nbclient 0.11's client (pinned in pyproject): ``process_message`` sees every
IOPub message of a cell, ``async_execute_cell`` runs one cell, ``task_poll_for_reply`` is the
wait for the reply, and cancelling it surfaces as ``DeadKernelError``. The lossy-kernel
tests (``tests/unit/test_runner_watchdog.py``) fail if an upgrade changes any of that.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, logger, papermill_engines
from traitlets import Integer

ENGINE = "slmops-watchdog"
# The kernel sends the two messages back to back; a minute covers a loaded 2-core machine
# draining a cell's large outputs (plots, tables) before the idle.
STALL_S = 60


class NotebookStalled(RuntimeError):
    """A cell ended on the kernel's side, but one of its two end-of-cell messages never came."""


def describe_cell(index: int, source: str, lines: int = 3) -> str:
    """``cell #N`` and the first lines of its source, for error messages."""
    head = "\n".join(f"    {line}" for line in source.strip().splitlines()[:lines])
    return f"cell #{index}, which starts:\n{head}"


class WatchdogClient(PapermillNotebookClient):
    """papermill's client, plus the end-of-cell watchdog of the module docstring."""

    stall_s = Integer(STALL_S, help="seconds the second end-of-cell message may lag the first").tag(config=True)

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle":
            self._idle_at = monotonic()
        return super().process_message(msg, cell, cell_index)

    async def async_execute_cell(self, cell: Any, cell_index: int, *args: Any, **kwargs: Any) -> Any:
        self._idle_at: float | None = None
        self._stalled: NotebookStalled | None = None
        watchdog = asyncio.ensure_future(self._watch_reply(cell, cell_index))
        try:
            return await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        except DeadKernelError:  # nbclient's reading of a cancelled wait for the reply
            if self._stalled is not None:
                raise self._stalled from None
            raise
        except CellTimeoutError as err:
            if "IOPub" not in str(err):
                raise  # the cell itself ran past the cell timeout
            raise NotebookStalled(
                f"{describe_cell(cell_index, cell.source)}\nstalled: the kernel sent its execute_reply, but its "
                f"'idle' status on IOPub did not come within {self.iopub_timeout} s (a lost message)."
            ) from None
        finally:
            watchdog.cancel()

    # nbclient binds its blocking twin to its own coroutine; papermill calls the twin.
    execute_cell = run_sync(async_execute_cell)

    async def _watch_reply(self, cell: Any, cell_index: int) -> None:
        while self._idle_at is None or monotonic() - self._idle_at < self.stall_s:
            await asyncio.sleep(0.5)
        self._stalled = NotebookStalled(
            f"{describe_cell(cell_index, cell.source)}\nstalled: the kernel reported the cell done ('idle' on "
            f"IOPub), but its execute_reply did not come within {self.stall_s} s (a lost message)."
        )
        if self.task_poll_for_reply is not None:
            self.task_poll_for_reply.cancel()


class WatchdogEngine(NBClientEngine):
    """papermill's nbclient engine with ``WatchdogClient``; ``stall_s`` also bounds the idle wait."""

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str,
        start_timeout: int = 60,
        execution_timeout: int | None = None,
        stall_s: int = STALL_S,
        **kwargs: Any,
    ) -> Any:
        kwargs.pop("input_path", None)
        return WatchdogClient(
            nb_man,
            kernel_name=kernel_name,
            startup_timeout=start_timeout,
            timeout=execution_timeout,
            iopub_timeout=stall_s,
            stall_s=stall_s,
            log=logger,
            **kwargs,
        ).execute()


def register_engine() -> None:
    """Make ``ENGINE`` available to ``papermill.execute_notebook(engine_name=...)`` (idempotent)."""
    papermill_engines.register(ENGINE, WatchdogEngine)
