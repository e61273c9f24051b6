"""The exceptions safethreads raises, each refining a standard library meaning."""

from __future__ import annotations

from concurrent.futures import BrokenExecutor
from typing import final

__all__ = ["BrokenWorkerPool", "Cancelled", "PoolFull"]


class BrokenWorkerPool(BrokenExecutor):
    """A `WorkerPool` can no longer run tasks.

    Raised by `submit` and set on every pending future when a worker's
    `initializer` raised (the initializer's exception is the `__cause__`), or
    when the pool was inherited by a child process through `os.fork()`.
    """


class PoolFull(RuntimeError):  # noqa: N818 - a state, like queue.Full
    """A `WorkerPool` with `on_full="raise"` has `max_pending` tasks queued.

    The task was not scheduled; retry later, or use `try_submit`, which
    returns `None` instead of raising.
    """


@final
class Cancelled(Exception):  # noqa: N818 - the name states what happened, like trio's
    """Raised by `CancelToken.raise_if_cancelled()` once the token is cancelled.

    It derives from `Exception`, not `BaseException` as `asyncio.CancelledError`
    does, on purpose.  An asyncio cancellation is delivered once, at one
    `await`; code that swallows it with `except Exception` loses it for good,
    which is why asyncio hides it from such handlers.  A `CancelToken` is
    level-triggered instead: once cancelled it stays cancelled, so a handler
    that swallows one `Cancelled` sees it again at the next check.  Being an
    `Exception` lets it travel through `concurrent.futures`, `ExceptionGroup`
    and ordinary `except Exception` error handling like any other error.

    It does not derive from `concurrent.futures.CancelledError`, which means
    "this future was cancelled before it ran" and is tied to
    `Future.cancelled()`; here the work itself chose to stop.

    Attributes:
        reason: The reason given to `CancelToken.cancel()`, or `None`.
    """

    def __init__(self, reason: object = None) -> None:
        """Create the exception for a cancellation with the given `reason`."""
        if reason is None:
            super().__init__()
        else:
            super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        """Describe the cancellation and its reason."""
        if self.reason is None:
            return "the operation was cancelled"
        return f"the operation was cancelled: {self.reason}"
