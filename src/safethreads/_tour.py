"""The tour shown by `python -m safethreads`: each primitive solving its problem."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextvars
import itertools
import threading
import time
from typing import TYPE_CHECKING

from ._errors import PoolFull
from ._result_thread import ResultThread, spawn
from ._worker_pool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main"]


def _heading(title: str) -> None:
    print(f"\n== {title}")


def _result_thread_tour() -> None:
    _heading("ResultThread: a thread that returns a value")

    def total(numbers: list[int]) -> int:
        return sum(numbers)

    plain_results: list[int] = []
    plain = threading.Thread(target=lambda: plain_results.append(total([1, 2, 3])))
    plain.start()
    plain.join()
    print("threading.Thread.join() returns None; the value needs a hand-made")
    print(f"  side channel: {plain_results}")

    t = spawn(total, [1, 2, 3])
    print(f"spawn(total, [1, 2, 3]).result() -> {t.result(timeout=5)}")

    _heading("ResultThread: an exception reaches the caller")

    def parse(text: str) -> int:
        return int(text)

    failing = spawn(parse, "forty-two")
    try:
        failing.result(timeout=5)
    except ValueError as exc:
        print(f"caught in the caller: {type(exc).__name__}: {exc}")
        print(f"  with the note: {exc.__notes__[-1]}")

    _heading("ResultThread: the class-based way")

    class Countdown(ResultThread[list[int]]):
        def __init__(self, start: int) -> None:
            super().__init__(name="countdown")
            self.start_at = start

        def compute(self) -> list[int]:
            return list(range(self.start_at, 0, -1))

    countdown = Countdown(5)
    countdown.start()
    print(f"Countdown(5).result() -> {countdown.result(timeout=5)}")


def _worker_pool_tour() -> None:
    _heading("WorkerPool: reuse a few threads for many tasks")

    def noop(x: int) -> int:
        return x

    n = 20_000
    timings = []
    for label, pool in (
        ("ThreadPoolExecutor", concurrent.futures.ThreadPoolExecutor(4)),
        ("WorkerPool", WorkerPool(4)),
    ):
        with pool:
            start = time.perf_counter()
            futures = [pool.submit(noop, i) for i in range(n)]
            assert sum(f.result() for f in futures) == n * (n - 1) // 2
            timings.append(time.perf_counter() - start)
        print(f"{label:>18}: {n:,} tasks in {timings[-1] * 1e3:.0f} ms")
    print(f"  WorkerPool was {timings[0] / timings[1]:.1f}x faster on this run")

    _heading("WorkerPool: backpressure instead of an unbounded queue")
    release = threading.Event()
    with WorkerPool(1, max_pending=2, on_full="raise") as pool:
        pool.submit(release.wait, 5)
        accepted = 0
        try:
            for i in range(10):
                pool.submit(noop, i)
                accepted += 1
        except PoolFull as exc:
            print(f"accepted {accepted}, then PoolFull: {exc}")
        release.set()

    _heading("WorkerPool: map over an endless input, 8 tasks in flight")
    with WorkerPool(4) as pool:
        squares = pool.map(lambda x: x * x, itertools.count(), buffersize=8)
        print(f"first squares: {[next(squares) for _ in range(6)]}")
        squares.close()  # type: ignore[attr-defined]

    _heading("WorkerPool: a task waiting on a subtask, one worker, no deadlock")
    with WorkerPool(1) as pool:

        def parent() -> int:
            return pool.submit(noop, 41).result(timeout=5) + 1

        print(f"pool.submit(parent).result() -> {pool.submit(parent).result(5)}")

    _heading("WorkerPool: contextvars reach the task")
    user = contextvars.ContextVar("user", default="nobody")
    user.set("ada")
    with WorkerPool(2) as pool:
        print(f"user seen by the task: {pool.submit(user.get).result(timeout=5)!r}")


_SECTIONS: dict[str, Callable[[], None]] = {
    "thread": _result_thread_tour,
    "pool": _worker_pool_tour,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m safethreads",
        description="A short tour of safethreads: each primitive solving the "
        "problem it exists for.",
    )
    parser.add_argument(
        "sections",
        nargs="*",
        choices=[*_SECTIONS, []],
        metavar="SECTION",
        help=f"parts of the tour to show (default: all of {', '.join(_SECTIONS)})",
    )
    args = parser.parse_args(argv)
    for name in args.sections or _SECTIONS:
        _SECTIONS[name]()
    print()
    return 0
