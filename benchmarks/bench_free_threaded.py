"""Throughput with one thread and with two, for the free-threaded build.

Each case runs the same amount of work per thread, first in one thread and
then in two threads started together behind a barrier, and reports the
operations per second of the whole process. "Scaling" is the two-thread
throughput over the one-thread throughput: 2.00x is perfect, 1.00x means the
second thread added nothing, and below 1.00x the threads slow each other
down. On a GIL build nothing scales; the module runs there too, so that the
two builds can be compared in the same units.

The runs of all cases are interleaved round by round, as in the other
benchmarks, and each figure is the median of the rounds.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from functools import partial
from typing import TYPE_CHECKING

from safethreads import LockedDict, WorkerPool

from ._harness import progress, table
from .bench_locked_dict import KEYS, Contender, WithLockDict

if TYPE_CHECKING:
    from collections.abc import Callable

THREADS = (1, 2)
PASSES = 500  # passes over the 1,000 keys per thread and round
N_TASKS = 64  # CPU-bound tasks per worker and round
TASK_LOOPS = 50_000  # iterations of pure-Python arithmetic per task


def in_threads(n: int, work: Callable[[int], None]) -> float:
    """Run `work(index)` in `n` threads started together; return the seconds."""
    barrier = threading.Barrier(n + 1)

    def body(index: int) -> None:
        barrier.wait()
        work(index)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def threads_running(work: Callable[[int], None], n: int) -> float:
    return in_threads(n, work)


def mapping_cases() -> list[tuple[str, Callable[[int], None]]]:
    """Reads and writes over the same 1,000 keys by every thread."""
    data = dict.fromkeys(KEYS, 0)
    contenders: list[tuple[str, Contender]] = [
        ("plain dict (no lock)", dict(data)),
        ("dict + Lock wrapper", WithLockDict(data)),
        ("LockedDict", LockedDict(data)),
    ]
    cases: list[tuple[str, Callable[[int], None]]] = []
    for label, d in contenders:

        def reads(_index: int, d: Contender = d) -> None:
            for _ in range(PASSES):
                for k in KEYS:
                    d[k]

        def writes(index: int, d: Contender = d) -> None:
            for _ in range(PASSES):
                for k in KEYS:
                    d[k] = index

        cases.append((f"{label}: `d[k]`", reads))
        cases.append((f"{label}: `d[k] = v`", writes))
    return cases


def cpu_task() -> int:
    total = 0
    for i in range(TASK_LOOPS):
        total += i * i % 7
    return total


def pool_case(make: Callable[[int], Executor]) -> Callable[[int], float]:
    """Run N_TASKS tasks per worker through a pool of `n` workers."""

    def run(n: int) -> float:
        with make(n) as pool:
            pool.submit(int).result()  # start a worker before the clock
            start = time.perf_counter()
            futures = [pool.submit(cpu_task) for _ in range(N_TASKS * n)]
            wait(futures)
            elapsed = time.perf_counter() - start
            for f in futures:
                f.result()
        return elapsed

    return run


def cpu_loop(n: int) -> float:
    """The tasks' work by hand, N_TASKS tasks per thread: the ceiling."""

    def work(_index: int) -> None:
        for _ in range(N_TASKS):
            cpu_task()

    return in_threads(n, work)


def measure(rounds: int) -> list[tuple[str, str, dict[int, list[float]]]]:
    """Return (label, unit, {threads: [ops per second of each round]})."""
    ops_per_thread = PASSES * len(KEYS)
    runs: list[tuple[str, str, Callable[[int], float]]] = [
        (label, "op", partial(threads_running, work)) for label, work in mapping_cases()
    ]
    runs += [
        ("ceiling: the same tasks in plain threads", "task", cpu_loop),
        ("ThreadPoolExecutor", "task", pool_case(ThreadPoolExecutor)),
        ("WorkerPool", "task", pool_case(WorkerPool)),
    ]
    samples: list[dict[int, list[float]]] = [{n: [] for n in THREADS} for _ in runs]
    for _, _, run in runs:  # warm-up, not recorded
        run(1)
    for r in range(rounds):
        order = list(range(len(runs)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            _, unit, run = runs[i]
            for n in THREADS:
                ops = n * (ops_per_thread if unit == "op" else N_TASKS)
                samples[i][n].append(ops / run(n))
        progress(".")
    progress("\n")
    return [(label, unit, s) for (label, unit, _), s in zip(runs, samples, strict=True)]


def rate(value: float, unit: str) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} M {unit}s/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k {unit}s/s"
    return f"{value:.0f} {unit}s/s"


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def run(rounds: int) -> None:
    """LockedDict and WorkerPool throughput with one and two threads."""
    before = load_average()
    results = measure(rounds)
    after = load_average()
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    build = "GIL enabled" if gil else "free-threaded, GIL disabled"
    headers = ["case", "1 thread", "2 threads", "scaling"]
    for title, unit in (
        (f"`d[k]` and `d[k] = v` on {len(KEYS):,} shared keys", "op"),
        (
            f"CPU-bound tasks ({TASK_LOOPS:,} loop iterations each)",
            "task",
        ),
    ):
        rows = []
        for label, case_unit, samples in results:
            if case_unit != unit:
                continue
            one = statistics.median(samples[1])
            two = statistics.median(samples[2])
            rows.append([label, rate(one, unit), rate(two, unit), f"{two / one:.2f}×"])
        print(f"\n### Scaling from 1 to 2 threads: {title} ({build})\n")
        print(table(headers, rows))
    cpus = os.cpu_count() or 1
    print(
        f"\nLoad average {before:.1f} before the run and {after:.1f} after,"
        f" on {cpus} CPUs."
    )
    if max(before, after) > cpus - 1:
        print(
            "Two threads can only scale with two idle CPUs: on this busy machine the"
            " ceiling row shows how much the hardware allowed."
        )
    sys.stdout.flush()
