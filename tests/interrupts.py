"""Helper for tests that strike Ctrl-C at every line of the library."""

from __future__ import annotations

import linecache
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safethreads

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

_LIBRARY = str(Path(safethreads.__file__).parent)


def _is_library(frame: FrameType) -> bool:
    return frame.f_code.co_filename.startswith(_LIBRARY)


def interrupt_at_line(k: int, action: Callable[[], object]) -> bool:
    """Run `action()`, raising `KeyboardInterrupt` at its k-th library line.

    Only lines of the library run by the calling thread count.  A line that
    opens a `with` block is skipped: the tracer reports it again when the
    block is left, at a point where no real signal is ever raised.

    Returns:
        Whether the interrupt was raised (`False`: `action` has fewer lines,
        so a loop over k is done).
    """
    count = 0
    struck = False

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count, struck
        del arg
        if event == "line" and not struck:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if not line.lstrip().startswith("with "):
                count += 1
                if count == k:
                    struck = True
                    raise KeyboardInterrupt
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if not _is_library(frame):
            return None
        return local(frame, event, arg) if event == "line" else local

    sys.settrace(tracer)
    try:
        action()
    except KeyboardInterrupt:
        if not struck:
            raise
    finally:
        sys.settrace(None)
    return struck
