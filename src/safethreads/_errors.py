"""The exceptions safethreads raises, each refining a standard library meaning."""

from __future__ import annotations

from concurrent.futures import BrokenExecutor

__all__ = ["BrokenWorkerPool", "PoolFull"]


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
