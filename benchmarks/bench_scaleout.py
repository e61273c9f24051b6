"""The scale-out helpers on top of each executor: per-task overhead and memory.

Overhead: 1 ms tasks (`time.sleep(0.001)`), run through each executor
directly (submit every task, then `result()` each) and through
`executor_map` (bounded and eager) and `FutureGroup`; the ratio column is
each case's time per task relative to the direct use, measured in the same
run with interleaved rounds.  The goal is at most 5 % on 1 ms tasks.

Memory: peak RSS growth (`VmHWM` from `/proc/self/status`, so Linux only)
of the driving process while it consumes a bounded `executor_map` over
one million items one result at a time, each case in a fresh interpreter.
For the Dask case the driving process also hosts the cluster's scheduler.
Process pools and Dask get the items in chunks (`MEMORY_CHUNKSIZE`), as a
program with tiny tasks would; `buffersize` then counts chunks.
`SCALEOUT_MEMORY_ITEMS=N` changes the item count.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from typing import Any

from safethreads import FutureGroup, WorkerPool, executor_map

from ._harness import Case, compare, format_time, progress, table

TASK_MS = 1.0
N_TASKS = {"threads": 400, "WorkerPool": 400, "processes": 200, "dask": 100}
WORKERS = {"threads": 4, "WorkerPool": 4, "processes": 2, "dask": 2}
BUFFERSIZE = 16
N_MEMORY = 1_000_000
# Inputs per task in the memory cases: a task costs about 0.1 ms on a
# process pool and a few ms on a local Dask cluster here, so one million
# single-item tasks would take minutes to hours; chunks keep the whole
# benchmark within a minute, and `buffersize` bounds the chunks in flight.
MEMORY_CHUNKSIZE = {"threads": 1, "WorkerPool": 1, "processes": 100, "dask": 2_000}


def sleep_task(ms: float) -> float:
    time.sleep(ms / 1000)
    return ms


def _direct(pool: Executor, n: int) -> None:
    futures = [pool.submit(sleep_task, TASK_MS) for _ in range(n)]
    for f in futures:
        f.result()


def _bounded_map(pool: Executor, n: int) -> None:
    for _ in executor_map(pool, sleep_task, [TASK_MS] * n, buffersize=BUFFERSIZE):
        pass


def _eager_map(pool: Executor, n: int) -> None:
    for _ in executor_map(pool, sleep_task, [TASK_MS] * n):
        pass


def _group(pool: Executor, n: int) -> None:
    with FutureGroup(pool) as group:
        for _ in range(n):
            group.submit(sleep_task, TASK_MS)


def _dask_available() -> bool:
    try:
        import distributed  # noqa: F401, PLC0415 - optional, users bring it
    except ImportError:
        return False
    return True


def _start_dask(workers: int) -> tuple[Any, Any]:
    from distributed import Client, LocalCluster  # noqa: PLC0415 - optional

    cluster = LocalCluster(  # type: ignore[no-untyped-call]
        n_workers=workers,
        threads_per_worker=2,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        silence_logs=40,  # errors only
    )
    return cluster, Client(cluster)  # type: ignore[no-untyped-call]


def _overhead(kind: str, rounds: int) -> None:
    n = N_TASKS[kind]
    workers = WORKERS[kind]
    cluster = client = None
    pool: Executor
    if kind == "threads":
        pool = ThreadPoolExecutor(workers)
    elif kind == "WorkerPool":
        pool = WorkerPool(workers)
    elif kind == "processes":
        pool = ProcessPoolExecutor(workers)
    else:
        cluster, client = _start_dask(workers)
        pool = client.get_executor()
    direct = "submit + result() (direct)"
    pool_direct: Executor = pool
    if client is not None:
        direct = "submit + result() (direct, pure=False)"
        pool_direct = client.get_executor(pure=False)
    try:
        compare(
            f"{n} tasks of {TASK_MS:g} ms on {kind} ({workers} workers): "
            "library overhead per task",
            [
                Case(direct, partial(_direct, pool_direct, n)),
                Case(
                    f"executor_map(buffersize={BUFFERSIZE})",
                    partial(_bounded_map, pool, n),
                ),
                Case("executor_map (eager)", partial(_eager_map, pool, n)),
                Case("FutureGroup.submit", partial(_group, pool, n)),
            ],
            ops=n,
            rounds=rounds,
            unit="task",
        )
    finally:
        pool.shutdown()
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


_MEMORY_CHILD = """
import sys, time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from safethreads import WorkerPool, executor_map
from benchmarks.bench_scaleout import _start_dask

def vm_hwm_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")

def f(x):
    return x

if __name__ == "__main__":
    kind, n, buffersize, chunksize = sys.argv[1], *map(int, sys.argv[2:5])
    client = cluster = None
    if kind == "threads":
        pool = ThreadPoolExecutor(4)
    elif kind == "WorkerPool":
        pool = WorkerPool(4)
    elif kind == "processes":
        pool = ProcessPoolExecutor(2)
    else:
        cluster, client = _start_dask(2)
        pool = client.get_executor()
    list(executor_map(pool, f, range(200), buffersize=buffersize))  # warm up
    before = vm_hwm_kib()
    start = time.perf_counter()
    total = 0
    results = executor_map(
        pool, f, range(n), buffersize=buffersize, chunksize=chunksize
    )
    for r in results:
        total += r
    elapsed = time.perf_counter() - start
    assert total == n * (n - 1) // 2
    print(vm_hwm_kib() - before, elapsed, flush=True)
    pool.shutdown()
    if client is not None:
        client.close()
        cluster.close()
"""


def _memory(kinds: list[str]) -> None:
    override = os.environ.get("SCALEOUT_MEMORY_ITEMS")
    rows = []
    for kind in kinds:
        n = int(override) if override else N_MEMORY
        chunksize = MEMORY_CHUNKSIZE[kind]
        progress("m")
        out = subprocess.run(  # noqa: S603 - our own interpreter and code
            [
                sys.executable,
                "-c",
                textwrap.dedent(_MEMORY_CHILD),
                kind,
                str(n),
                str(BUFFERSIZE),
                str(chunksize),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=7200,
        ).stdout.split()
        growth_kib, elapsed = int(out[0]), float(out[1])
        rows.append(
            [
                kind,
                f"{n:,}",
                f"{chunksize:,}",
                f"{growth_kib / 1024:,.1f} MB",
                format_time(elapsed),
            ]
        )
    progress("\n")
    print(
        f"\n### Peak RSS growth of the driving process while consuming "
        f"executor_map(f, range(n), buffersize={BUFFERSIZE}, chunksize=...) one "
        "result at a time (fresh interpreter per case)\n"
    )
    print(
        table(["executor", "items", "chunksize", "peak RSS growth", "wall time"], rows)
    )
    sys.stdout.flush()


def run(rounds: int) -> None:
    """Overhead of the bounded map and the scope per executor; map memory."""
    start = time.perf_counter()
    kinds = ["threads", "WorkerPool", "processes"]
    if _dask_available():
        kinds.append("dask")
    else:
        print("\n(Dask distributed is not installed: its cases are skipped)")
    for kind in kinds:
        _overhead(kind, rounds)
    _memory(kinds)
    print(f"\n(benchmark took {time.perf_counter() - start:.0f} s)")
