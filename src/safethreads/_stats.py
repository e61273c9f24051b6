"""Statistics snapshots, imported on first use.

`dataclasses` imports `inspect`, which costs more at import time than the rest
of the package together, so the snapshot classes live here and are loaded by
the first `stats()` call or the first access to `safethreads.WorkerPoolStats`,
never by `import safethreads`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

__all__ = ["ThreadGroupStats", "WorkerPoolStats"]


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
        started: Tasks that started to run (in a worker, a helping worker or
            a submitter): `running + completed + failed` less the tasks the
            pool failed before they started (a broken pool).
        rejected: Submits refused: `PoolFull`, `try_submit` returning
            `None`, and submits to a pool shut down or broken.  Not part of
            `submitted`.
        peak_workers: The most worker threads alive at once so far.
        peak_queued: The longest the queue has been, as seen by each submit
            that queued a task (workers take tasks without the pool lock, so
            a peak shorter than an instant is not seen).
        queue_wait_p50: Median seconds from submit to start over the last
            1024 tasks run; `None` without `metrics=True` or before any.
        queue_wait_p99: 99th percentile of the same.
        run_time_p50: Median seconds a task ran, over the last 1024 tasks.
        run_time_p99: 99th percentile of the same.
    """

    workers: int
    idle: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    submitted: int = 0
    started: int = 0
    rejected: int = 0
    peak_workers: int = 0
    peak_queued: int = 0
    queue_wait_p50: float | None = None
    queue_wait_p99: float | None = None
    run_time_p50: float | None = None
    run_time_p99: float | None = None


@final
@dataclass(frozen=True, slots=True)
class ThreadGroupStats:
    """A snapshot of a `ThreadGroup`'s members, taken under its lock by `stats()`.

    The member counts always add up: `members == pending + running + finished`.

    Attributes:
        members: Members spawned or added so far.
        pending: Members waiting for a slot (`max_concurrency`), not started.
        running: Members started and not finished.
        finished: Members whose thread has finished, however it ended.
        failed: Finished members whose failure the group took (it raises
            them when the block ends); a member ended by the group's own
            cancellation (`Cancelled`) is not counted.
    """

    members: int
    pending: int
    running: int
    finished: int
    failed: int


# Whichever imports this module first, reprs and pickles name the public path.
WorkerPoolStats.__module__ = "safethreads"
ThreadGroupStats.__module__ = "safethreads"
