"""Tasks for the scale-out tests, importable by process-pool and Dask workers.

Tasks that must block until the test lets them go wait for a file to appear:
the file system is the one channel shared by threads, processes and the
workers of a local cluster.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

# Every wait in a task is bounded, so that a broken test cannot leave a
# worker busy for ever.
TASK_WAIT = 30.0


class Payload:
    """A result object that can be watched with a weak reference."""

    def __init__(self, value: int) -> None:
        self.value = value


def square(x: int) -> int:
    return x * x


def make_payload(x: int) -> Payload:
    return Payload(x)


def fresh_token(_: int) -> str:
    """A value unique to each run of the task, even for identical calls."""
    return uuid.uuid4().hex


def where_am_i(_: int) -> int:
    return os.getpid()


def fail_if(x: int, bad: int) -> int:
    if x == bad:
        msg = f"task {x} failed"
        raise ValueError(msg)
    return x


def wait_for_file(path: str, x: int = 0) -> int:
    """Return `x` once `path` exists (or after TASK_WAIT seconds)."""
    deadline = time.monotonic() + TASK_WAIT
    gate = Path(path)
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    return x


def fail_or_wait(x: int, bad: int, path: str) -> int:
    """Fail for `bad`, otherwise wait for the gate file."""
    if x == bad:
        msg = f"task {x} failed"
        raise ValueError(msg)
    return wait_for_file(path, x)


def announce_and_sleep(path: str, seconds: float) -> int:
    """Write this process's pid to `path`, then sleep; return the pid."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(path)
    time.sleep(seconds)
    return os.getpid()


def sleep_ms(ms: float) -> float:
    time.sleep(ms / 1000)
    return ms


def start_local_cluster(n_workers: int, threads_per_worker: int = 1) -> Any:
    """A Dask LocalCluster of worker processes on 127.0.0.1, no dashboard.

    The scheduler's HTTP server (health checks, even without a dashboard)
    gets a free port, so that several clusters may run at once.
    """
    from distributed import LocalCluster

    return LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )


def stop_at(x: int, at: int = 2) -> int:
    """Raise StopIteration for input `at`: a task's error, not an end."""
    if x == at:
        raise StopIteration(x)
    return x
