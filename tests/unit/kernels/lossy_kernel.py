"""An IPython kernel that loses one end-of-cell message, for the runner's watchdog tests.

A cell whose source contains ``# lose: idle`` runs normally but its status ``idle`` is
never sent; with ``# lose: reply`` its ``execute_reply`` is never sent. Every other
message, and every other cell, is untouched.
"""

from __future__ import annotations

from typing import Any

from ipykernel.ipkernel import IPythonKernel
from ipykernel.kernelapp import IPKernelApp


def _lost(msg_type: str, content: Any, parent: Any) -> bool:
    code = ((parent or {}).get("content") or {}).get("code", "") if isinstance(parent, dict) else ""
    if msg_type == "status" and (content or {}).get("execution_state") == "idle":
        return "# lose: idle" in code
    return msg_type == "execute_reply" and "# lose: reply" in code


class LossyKernel(IPythonKernel):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        send = self.session.send

        def lossy_send(stream: Any, msg_or_type: Any, content: Any = None, parent: Any = None, *a: Any, **kw: Any):
            msg_type = msg_or_type if isinstance(msg_or_type, str) else msg_or_type["header"]["msg_type"]
            if _lost(msg_type, content, parent):
                return None
            return send(stream, msg_or_type, content, parent, *a, **kw)

        self.session.send = lossy_send


if __name__ == "__main__":
    IPKernelApp.launch_instance(kernel_class=LossyKernel)
