"""WorkerPool against ThreadPoolExecutor: throughput, latency and map memory.

Both pools get the same `max_workers`, are created once before the rounds
(thread start-up is not measured) and are measured in the same run, with
their rounds interleaved by the harness.  Peak-memory cases each run in a
fresh interpreter, so that they cannot pollute each other.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial

from safethreads import WorkerPool, executor_map

from ._harness import Case, Result, compare, format_time, progress, table

MAX_WORKERS = 4
N_TASKS = 50_000
N_LATENCY = 2_000
N_MEMORY = 1_000_000


def _noop(x: object = None) -> object:
    return x


def _submit_all(pool: Executor) -> None:
    futures = [pool.submit(_noop, i) for i in range(N_TASKS)]
    for f in futures:
        f.result()


def _map_all(pool: Executor) -> None:
    list(pool.map(_noop, range(N_TASKS)))


def _generic_map_all(pool: Executor) -> None:
    # The path WorkerPool.map takes with chunksize or progress; its own
    # path is kept only while this row shows that it pays.
    list(executor_map(pool, _noop, range(N_TASKS)))


def _latency(pool: Executor) -> None:
    for i in range(N_LATENCY):
        pool.submit(_noop, i).result()


def _speedup(results: list[Result]) -> None:
    base = results[0].median
    for r in results[1:]:
        print(
            f"\n{r.label}: {base / r.median:.2f}× the throughput of {results[0].label}"
        )


def _throughput(rounds: int) -> None:
    tpe = ThreadPoolExecutor(MAX_WORKERS)
    pool = WorkerPool(MAX_WORKERS)
    bare = WorkerPool(MAX_WORKERS, copy_context=False)
    try:
        generic = Case("executor_map(WorkerPool, ...)", partial(_generic_map_all, pool))
        for title, body, extra in (
            (
                f"{N_TASKS:,} no-op tasks: submit all, then result() each",
                _submit_all,
                [],
            ),
            (f"list(pool.map(f, range({N_TASKS:,})))", _map_all, [generic]),
        ):
            results = compare(
                f"{title} (max_workers={MAX_WORKERS})",
                [
                    Case("ThreadPoolExecutor", partial(body, tpe)),
                    Case("WorkerPool", partial(body, pool)),
                    Case("WorkerPool(copy_context=False)", partial(body, bare)),
                    *extra,
                ],
                ops=N_TASKS,
                rounds=rounds,
                unit="task",
            )
            _speedup(results)
        compare(
            f"Single task submit → result() latency ({N_LATENCY:,} in sequence "
            "per round; median of the rounds' means)",
            [
                Case("ThreadPoolExecutor", lambda: _latency(tpe)),
                Case("WorkerPool", lambda: _latency(pool)),
                Case("WorkerPool(copy_context=False)", lambda: _latency(bare)),
            ],
            ops=N_LATENCY,
            rounds=rounds,
            unit="task",
        )
    finally:
        tpe.shutdown()
        pool.shutdown()
        bare.shutdown()


def _count_hook(*_: object) -> None:
    pass


def _observability(rounds: int) -> None:
    """The cost of timing, the watchdog and (no-op) hooks, against everything off."""
    pools = [
        ("WorkerPool (everything off)", WorkerPool(MAX_WORKERS)),
        ("WorkerPool(metrics=True)", WorkerPool(MAX_WORKERS, metrics=True)),
        ("WorkerPool(watchdog=60)", WorkerPool(MAX_WORKERS, watchdog=60)),
        (
            "WorkerPool(metrics=True, watchdog=60)",
            WorkerPool(MAX_WORKERS, metrics=True, watchdog=60),
        ),
        (
            "WorkerPool(metrics=True, watchdog=60, before_task=..., after_task=...)",
            WorkerPool(
                MAX_WORKERS,
                metrics=True,
                watchdog=60,
                before_task=_count_hook,
                after_task=_count_hook,
            ),
        ),
    ]
    try:
        results = compare(
            f"Observability overhead: {N_TASKS:,} no-op tasks, submit all, then "
            f"result() each (max_workers={MAX_WORKERS})",
            [Case(label, partial(_submit_all, pool)) for label, pool in pools],
            ops=N_TASKS,
            rounds=rounds,
            unit="task",
        )
    finally:
        for _, pool in pools:
            pool.shutdown()
    off = compare(
        "Everything off: the statements observability adds to a task's path, "
        "timed alone",
        [
            Case("a task's path without them", partial(_off_path, False)),
            Case("with them (everything off)", partial(_off_path, True)),
        ],
        ops=N_TASKS,
        rounds=rounds,
        unit="task",
    )
    added = off[1].median - off[0].median
    print(
        f"\nWith everything off, observability adds {format_time(added)} per "
        f"task: {added / results[0].median:.1%} of the default pool's "
        f"{format_time(results[0].median)} per no-op task above."
    )


class _PoolAttributes:
    """The two pool attributes a submit reads for observability."""

    def __init__(self) -> None:
        self._observer = None
        self._peak_queued = N_TASKS


def _off_path(observability: bool) -> None:
    """A task's path through `_place` and the worker's loop, reduced to what
    observability adds with everything off: a test of the observer and of
    the queue's peak at submit, two tests and a longer record in the worker.
    """
    pool = _PoolAttributes()
    obs = record_run = None
    future = object()
    completed = failed = depth = 0
    progress: tuple[object, ...]
    if observability:
        for _ in range(N_TASKS):
            if pool._observer is not None:
                raise AssertionError
            if depth > pool._peak_queued:  # noqa: PLR1730 - as in WorkerPool._place
                pool._peak_queued = depth
            if obs is None:
                progress = (completed, failed, future, 0.0)
            if record_run is not None:
                raise AssertionError
            progress = (completed, failed, None, 0.0)
    else:
        for _ in range(N_TASKS):
            progress = (completed, failed, future)
            progress = (completed, failed, None)
    del progress


_MEMORY_CHILD = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
from safethreads import WorkerPool

def vm_hwm_kib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")

def f(x):
    return x

kind, n = sys.argv[1], int(sys.argv[2])
pool = ThreadPoolExecutor(4) if kind == "tpe" else WorkerPool(4)
list(pool.map(f, range(100)))  # start the workers before the baseline
before = vm_hwm_kib()
start = time.perf_counter()
if kind == "wp-bounded":
    results = pool.map(f, range(n), buffersize=8)
else:
    results = pool.map(f, range(n))
total = 0
for r in results:
    total += r
elapsed = time.perf_counter() - start
assert total == n * (n - 1) // 2
pool.shutdown()
print(vm_hwm_kib() - before, elapsed)
"""


def _memory() -> None:
    cases = [
        ("WorkerPool.map(..., buffersize=8)", "wp-bounded"),
        ("WorkerPool.map(...) (eager)", "wp-eager"),
        ("ThreadPoolExecutor.map(...) (eager)", "tpe"),
    ]
    rows = []
    for label, kind in cases:
        progress("m")
        out = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", textwrap.dedent(_MEMORY_CHILD), kind, str(N_MEMORY)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        ).stdout.split()
        growth_kib, elapsed = int(out[0]), float(out[1])
        rows.append(
            [
                label,
                f"{N_MEMORY:,}",
                f"{growth_kib / 1024:,.1f} MB",
                format_time(elapsed),
            ]
        )
    progress("\n")
    print(
        f"\n### Peak RSS growth while consuming map over range({N_MEMORY:,}) "
        "one result at a time (max_workers=4, fresh interpreter per case)\n"
    )
    print(table(["case", "items", "peak RSS growth", "wall time"], rows))
    sys.stdout.flush()


def run(rounds: int) -> None:
    """Throughput and latency against ThreadPoolExecutor; map peak memory."""
    start = time.perf_counter()
    _throughput(rounds)
    _observability(rounds)
    _memory()
    print(f"\n(benchmark took {time.perf_counter() - start:.0f} s)")
