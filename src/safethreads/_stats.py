"""Statistics snapshots, imported on first use.

`dataclasses` imports `inspect`, which costs more at import time than the rest
of the package together, so the snapshot classes live here and are loaded by
the first `stats()` call or the first access to `safethreads.WorkerPoolStats`,
never by `import safethreads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ["WorkerPoolStats"]


@final
@dataclass(frozen=True, slots=True)
class WorkerPoolStats:
    """A snapshot of a `WorkerPool`, taken under its lock by `stats()`.

    The task counts always add up:
    `submitted == queued + running + completed + failed + cancelled`.

    Attributes:
        workers: Worker threads alive.
        idle: Workers parked, waiting for a task.
        queued: Tasks accepted and not yet started, finished or cancelled
            (a task a worker is about to start or has just finished is
            counted here for an instant).
        running: Tasks running now (in workers, helping workers or callers).
        completed: Tasks that returned.
        failed: Tasks that raised, or that the pool failed (broken pool).
        cancelled: Tasks cancelled before they started.
        submitted: Tasks accepted by `submit`, `try_submit` and `map`.
    """

    workers: int
    idle: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    submitted: int = 0


# Whichever imports this module first, reprs and pickles name the public path.
WorkerPoolStats.__module__ = "safethreads"
