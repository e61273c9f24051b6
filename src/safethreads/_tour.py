"""The tour shown by `python -m safethreads`: each primitive solving its problem."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextvars
import itertools
import sys
import threading
import time
from typing import TYPE_CHECKING

from ._errors import Cancelled, PoolFull
from ._locked_dict import MISSING, LockedDict, Missing
from ._result_thread import ResultThread, spawn
from ._thread_group import ThreadGroup
from ._worker_pool import WorkerPool

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping, Sequence

    from ._cancel import CancelToken

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


def _churn(shared: MutableMapping[int, int], stop: threading.Event) -> None:
    """Keep adding and removing keys until `stop` is set."""
    n = len(shared)
    while not stop.is_set():
        shared[n] = 1
        del shared[n - 10_000]
        n += 1


def _count_failed_passes(shared: Mapping[int, int], passes: int) -> int:
    """Iterate `shared` while another thread changes it; count the failures."""
    stop = threading.Event()
    writer = threading.Thread(target=_churn, args=(shared, stop), name="churn")
    writer.start()
    failed = 0
    try:
        for _ in range(passes):
            try:
                total = 0
                for value in shared.values():
                    total += value
            except RuntimeError:
                failed += 1
    finally:
        stop.set()
        writer.join()
    return failed


def _locked_dict_tour() -> None:
    _heading("LockedDict: iterate while other threads write")
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, as a busy server does
    try:
        plain = _count_failed_passes(dict.fromkeys(range(10_000), 1), 30)
        locked = _count_failed_passes(LockedDict.fromkeys(range(10_000), 1), 30)
    finally:
        sys.setswitchinterval(old_interval)
    print("a plain dict, iterated while another thread adds and removes keys:")
    print(f"  {plain} of 30 passes died with 'dictionary changed size'")
    print(f"a LockedDict, same writer: {locked} of 30 passes failed (a snapshot)")

    _heading("LockedDict: atomic read-modify-write")

    def bump(n: int | Missing) -> int:
        return 1 if n is MISSING else n + 1

    hits: LockedDict[str, int] = LockedDict()
    workers = [
        spawn(lambda: [hits.compute("home", bump) for _ in range(5_000)])
        for _ in range(4)
    ]
    for w in workers:
        w.result(timeout=30)
    print(f"4 threads x 5,000 compute() increments -> {hits['home']:,}")

    accounts = LockedDict(alice=100, bob=50)
    with accounts.locked() as m:  # a multi-step transaction
        m["alice"] -= 30
        m["bob"] += 30
    print(f"transfer inside 'with d.locked()': {accounts}")


def _thread_group_tour() -> None:
    _heading("ThreadGroup: no thread outlives its block, no failure is lost")

    def download(name: str, token: CancelToken) -> str:
        if name == "broken.txt":
            msg = f"{name}: connection reset"
            raise ConnectionError(msg)
        # A slow download that checks the token while it waits.
        if token.wait(timeout=5):
            token.raise_if_cancelled()
        return f"{name}: done"

    g = ThreadGroup("download")
    try:
        with g:
            for name in ["a.txt", "b.txt", "broken.txt"]:
                g.spawn(download, name, g.token)
    except* ConnectionError as group:
        for exc in group.exceptions:
            print(f"raised at the end of the block: {exc!r}, {exc.__notes__[-1]}")
    print(f"the failure cancelled the siblings: {g.token.reason}")
    alive = [t.name for t in g.members if t.is_alive()]
    print(f"members still running after the block: {alive}")

    _heading("ThreadGroup: one deadline for all members")
    release = threading.Event()
    with ThreadGroup("stuck") as g:
        for _ in range(20):
            g.spawn(release.wait)
        start = time.monotonic()
        finished = g.join_all(timeout=0.2)
        elapsed = time.monotonic() - start
        release.set()
    print(f"join_all(0.2) over 20 stuck threads -> {finished} after {elapsed:.2f} s")
    print("  (a loop of Thread.join(0.2) would have taken 20 x 0.2 = 4 s)")

    _bounded_group_tour()

    _heading("ThreadGroup: daemon members are not waited for")
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(0.05):  # runs for as long as the service does
            pass

    with ThreadGroup("service") as g:
        work = g.spawn(sum, range(1_000))
        beat = g.add(threading.Thread(target=heartbeat, name="heartbeat", daemon=True))
    print(f"after the block: the non-daemon member finished -> {work.result(0)}")
    print(f"  the daemon member {beat.name!r} is still running -> {beat.is_alive()}")
    stop.set()
    beat.join(timeout=5)


def _bounded_group_tour() -> None:
    _heading("ThreadGroup: 40 jobs, at most 4 at a time, outcomes as they finish")
    running = [0, 0]  # now, peak
    count_lock = threading.Lock()

    def job(i: int) -> int:
        with count_lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.002)
        with count_lock:
            running[0] -= 1
        if i == 25:
            msg = f"job {i} failed"
            raise ValueError(msg)
        return i * i

    g = ThreadGroup("jobs", max_concurrency=4)
    first: list[int] = []
    try:
        with g:
            for i in range(40):
                g.spawn_named(f"job-{i}", job, i)
            for t in g.as_completed(timeout=30):
                if t.exception(timeout=0) is None and len(first) < 3:
                    first.append(t.result(timeout=0))
    except* ValueError as group:
        print(f"raised at the end: {group.exceptions[0]!r}")
    outcomes = g.results(return_exceptions=True)
    ran = sum(isinstance(o, int) for o in outcomes)
    skipped = sum(isinstance(o, Cancelled) for o in outcomes)
    print(f"first results, in the order they finished: {first}")
    print(f"most jobs running at once: {running[1]} (max_concurrency=4)")
    print(f"results(return_exceptions=True): {ran} values, 1 error, and {skipped} jobs")
    print("  that never started: the failure cancelled them (fail_fast)")


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
    "dict": _locked_dict_tour,
    "group": _thread_group_tour,
    "pool": _worker_pool_tour,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour or the quick benchmark; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m safethreads",
        description="A short tour of safethreads: each primitive solving the "
        "problem it exists for. Without a command, the whole tour runs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    tour = commands.add_parser("tour", help="walk through the primitives (default)")
    tour.add_argument(
        "sections",
        nargs="*",
        choices=[*_SECTIONS, []],
        metavar="SECTION",
        help=f"parts of the tour to show (default: all of {', '.join(_SECTIONS)})",
    )
    bench = commands.add_parser(
        "bench", help="compare each primitive with the standard library, same run"
    )
    bench.add_argument(
        "--rounds", type=int, default=5, help="rounds per case (default: 5)"
    )
    args = parser.parse_args(argv)
    if args.command == "bench":
        from ._benchmark import quick_suite  # noqa: PLC0415 - not needed otherwise

        print("Median per operation over interleaved rounds; ratios vs the stdlib")
        quick_suite(args.rounds)
        return 0
    for name in getattr(args, "sections", None) or _SECTIONS:
        _SECTIONS[name]()
    print()
    return 0
