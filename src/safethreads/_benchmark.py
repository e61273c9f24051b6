"""Benchmark harness: interleaved rounds, medians, same-run ratios.

Each case is a callable that does one round of work.  Rounds of all cases in a
comparison are interleaved (in a rotating order), so that a noisy neighbour or
a CPU frequency change hits every case alike; the table reports the median,
min and max per operation, and each case's median relative to the baseline
(the first case) measured in the same run.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence


@dataclass(frozen=True)
class Case:
    """One contender: a label and a callable running one round."""

    label: str
    round: Callable[[], object]


@dataclass(frozen=True)
class Result:
    """Seconds per operation, over all rounds of one case."""

    label: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """Median seconds per operation."""
        return statistics.median(self.samples)


def measure(cases: Sequence[Case], *, ops: int, rounds: int) -> list[Result]:
    """Run every case `rounds` times, interleaved; return per-op timings."""
    samples: list[list[float]] = [[] for _ in cases]
    for case in cases:  # warm-up round, not recorded
        case.round()
    for r in range(rounds):
        order = list(range(len(cases)))
        order = order[r % len(order) :] + order[: r % len(order)]
        for i in order:
            gc.collect()
            start = time.perf_counter()
            cases[i].round()
            samples[i].append((time.perf_counter() - start) / ops)
        progress(".")
    return [Result(c.label, tuple(s)) for c, s in zip(cases, samples, strict=True)]


def progress(mark: str) -> None:
    """Show that a long benchmark is still running (on stderr)."""
    sys.stderr.write(mark)
    sys.stderr.flush()


def format_time(seconds: float) -> str:
    """Format a duration with a readable unit."""
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e9:.0f} ns"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a Markdown table."""
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join(" --- " for _ in headers) + "|")
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


# Every comparison printed in this run, for `python -m benchmarks --json`.
RECORDED: list[dict[str, object]] = []


def report(title: str, results: Sequence[Result], *, unit: str = "op") -> None:
    """Print a comparison table; ratios are against the first result."""
    progress("\n")
    base = results[0].median
    RECORDED.append(
        {
            "title": title,
            "unit": unit,
            "cases": [
                {"label": r.label, "median": r.median, "ratio": r.median / base}
                for r in results
            ],
        }
    )
    rows = [
        [
            r.label,
            format_time(r.median),
            format_time(min(r.samples)),
            format_time(max(r.samples)),
            f"{r.median / base:.2f}×",
        ]
        for r in results
    ]
    headers = ["case", f"median / {unit}", "min", "max", f"vs {results[0].label}"]
    print(f"\n### {title}\n")
    print(table(headers, rows))
    sys.stdout.flush()


def compare(
    title: str,
    cases: Sequence[Case],
    *,
    ops: int,
    rounds: int,
    unit: str = "op",
) -> list[Result]:
    """Measure and print one comparison; return the results."""
    results = measure(cases, ops=ops, rounds=rounds)
    report(title, results, unit=unit)
    return results


# --- the quick suite behind `python -m safethreads bench` --------------------


def _result_thread_cases(n: int) -> tuple[str, list[Case], int, str]:
    import queue  # noqa: PLC0415 - only needed when benchmarking
    import threading  # noqa: PLC0415

    from ._result_thread import ResultThread  # noqa: PLC0415

    def thread_and_queue() -> None:
        for i in range(n):
            q: queue.SimpleQueue[int] = queue.SimpleQueue()
            t = threading.Thread(target=q.put, args=(i,))
            t.start()
            t.join()
            q.get()

    def result_thread() -> None:
        for i in range(n):
            t = ResultThread(target=int, args=(i,))
            t.start()
            t.result()

    return (
        f"Start {n:,} threads, wait, get each value",
        [
            Case("stdlib Thread + SimpleQueue", thread_and_queue),
            Case("ResultThread", result_thread),
        ],
        n,
        "thread",
    )


def _locked_dict_cases(n: int) -> tuple[str, list[Case], int, str]:
    import threading  # noqa: PLC0415 - only needed when benchmarking

    from ._locked_dict import LockedDict  # noqa: PLC0415

    class HandLocked:
        """The hand-written alternative: a dict and a Lock taken per call."""

        def __init__(self, data: dict[int, int]) -> None:
            self._data = data
            self._lock = threading.Lock()

        def __getitem__(self, key: int) -> int:
            with self._lock:
                return self._data[key]

    keys = range(1_000)
    hand = HandLocked(dict.fromkeys(keys, 1))
    locked = LockedDict.fromkeys(keys, 1)

    def read_hand() -> None:
        for _ in range(n // 1_000):
            for k in keys:
                hand[k]

    def read_locked() -> None:
        for _ in range(n // 1_000):
            for k in keys:
                locked[k]

    return (
        f"d[k] on a shared dict, {n:,} reads",
        [
            Case("stdlib dict + Lock (with)", read_hand),
            Case("LockedDict", read_locked),
        ],
        n,
        "read",
    )


def _worker_pool_cases(n: int) -> tuple[str, list[Case], int, str]:
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    from ._worker_pool import WorkerPool  # noqa: PLC0415

    def noop() -> None:
        pass

    def run_tpe() -> None:
        with ThreadPoolExecutor(4) as pool:
            for f in [pool.submit(noop) for _ in range(n)]:
                f.result()

    def run_pool() -> None:
        with WorkerPool(4) as pool:
            for f in [pool.submit(noop) for _ in range(n)]:
                f.result()

    return (
        f"{n:,} no-op tasks on 4 workers, submit all then result()",
        [
            Case("stdlib ThreadPoolExecutor", run_tpe),
            Case("WorkerPool", run_pool),
        ],
        n,
        "task",
    )


def _thread_group_cases(n: int) -> tuple[str, list[Case], int, str]:
    from ._result_thread import spawn  # noqa: PLC0415
    from ._thread_group import ThreadGroup  # noqa: PLC0415

    def by_hand() -> None:
        threads = [spawn(int, i) for i in range(n)]
        for t in threads:
            t.result()

    def group() -> None:
        with ThreadGroup() as g:
            for i in range(n):
                g.spawn(int, i)

    return (
        f"{n:,} threads started and all waited for",
        [
            Case("ResultThreads joined by hand", by_hand),
            Case("ThreadGroup", group),
        ],
        n,
        "thread",
    )


def quick_suite(rounds: int) -> None:
    """Run a short same-run comparison of each primitive with the stdlib."""
    suites = [
        _result_thread_cases(500),
        _locked_dict_cases(100_000),
        _worker_pool_cases(20_000),
        _thread_group_cases(500),
    ]
    for title, cases, ops, unit in suites:
        progress(f"{title} ")
        compare(title, cases, ops=ops, rounds=rounds, unit=unit)
