"""Reporting of failures that nobody retrieved.

A failed thread or task whose outcome is never looked at would otherwise vanish
without a trace.  Whoever stores a failure also creates a `FailureReport`; reading
the outcome dismisses it, and a report still armed when it is garbage-collected
hands the exception to `threading.excepthook`, exactly as an unhandled exception
in a plain `threading.Thread` would be shown.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FailureReport"]


@final
class FailureReport:
    """Reports `exc` through `threading.excepthook` unless dismissed first.

    Only the owner of the outcome touches a report, and `__del__` runs when no
    reference is left, so no lock is needed: the two can never overlap.
    """

    __slots__ = ("_exc", "_pid", "_thread")

    def __init__(self, exc: BaseException, thread: threading.Thread | None) -> None:
        self._exc: BaseException | None = exc
        self._thread = thread
        # A fork() child inherits the report; only the process that stored
        # the failure reports it, so it is never reported twice.
        self._pid = os.getpid()

    def dismiss(self) -> None:
        """Mark the failure as seen; nothing will be reported."""
        self._exc = None

    def __del__(self) -> None:
        exc = self._exc
        if exc is None or self._pid != os.getpid():
            return
        self._exc = None
        # Looked up at call time so that a hook installed later (by a test, a
        # logging framework, or pytest) receives the report.
        hook: Callable[[threading.ExceptHookArgs], object] | None = getattr(
            threading, "excepthook", None
        )
        if hook is None:  # the interpreter is tearing the module down
            return
        hook(
            threading.ExceptHookArgs((type(exc), exc, exc.__traceback__, self._thread))
        )
