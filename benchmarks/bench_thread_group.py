"""ThreadGroup against starting and joining ResultThreads by hand.

Two questions: what the scope costs (spawn + block exit for many members,
compared with the hand-written start-all-then-join-all loop), and how
precisely `join_all(timeout)` keeps its one deadline over many stuck members.
"""

from __future__ import annotations

import statistics
import threading
import time

from safethreads import ResultThread, ThreadGroup, spawn

from ._harness import Case, compare, format_time, progress, table

N_MEMBERS = 1_000
N_STUCK = 100
JOIN_TIMEOUT = 0.1
BOUND = 16


def _work(i: int) -> int:
    return i


def by_hand() -> None:
    """Create and start each ResultThread in turn, then retrieve every result.

    The hand-written twin of the group: one thread made and started per
    iteration, as `spawn()` does.
    """
    threads = [spawn(_work, i) for i in range(N_MEMBERS)]
    for t in threads:
        t.result()


def by_hand_precreated() -> None:
    """Create every ResultThread first, then start them all, then retrieve."""
    threads = [ResultThread(target=_work, args=(i,)) for i in range(N_MEMBERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.result()


def bare_threads() -> None:
    """Start every plain Thread, then join every one (no values)."""
    threads = [threading.Thread(target=_work, args=(i,)) for i in range(N_MEMBERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def thread_group() -> None:
    """Spawn every member in a group; leaving the block waits for them."""
    with ThreadGroup() as g:
        for i in range(N_MEMBERS):
            g.spawn(_work, i)
    g.results()


def bounded_group() -> None:
    """Spawn every member in a group that runs at most 16 at once."""
    with ThreadGroup(max_concurrency=BOUND) as g:
        for i in range(N_MEMBERS):
            g.spawn(_work, i)
    g.results()


def overshoot(rounds: int, *, in_main: bool) -> list[float]:
    """Seconds join_all(JOIN_TIMEOUT) overshoots its timeout, per round."""
    release = threading.Event()
    samples: list[float] = []

    def measure(g: ThreadGroup) -> None:
        for _ in range(rounds):
            start = time.monotonic()
            done = g.join_all(JOIN_TIMEOUT)
            samples.append(time.monotonic() - start - JOIN_TIMEOUT)
            assert not done
            progress(".")

    with ThreadGroup() as g:
        for _ in range(N_STUCK):
            g.spawn(release.wait)
        try:
            if in_main:
                measure(g)
            else:
                waiter = ResultThread(target=measure, args=(g,))
                waiter.start()
                waiter.result()
        finally:
            release.set()
    return samples


def run(rounds: int) -> None:
    """Block exit against joining by hand, then join_all's overshoot."""
    compare(
        f"Start {N_MEMBERS:,} threads and wait for all of them",
        [
            Case("spawn() + result() by hand", by_hand),
            Case("ThreadGroup spawn + block exit", thread_group),
            Case(f"ThreadGroup(max_concurrency={BOUND})", bounded_group),
            Case("ResultThreads created first, then started", by_hand_precreated),
            Case("bare Threads by hand (no values)", bare_threads),
        ],
        ops=N_MEMBERS,
        rounds=rounds,
        unit="thread",
    )
    overshoot_rounds = max(rounds, 5) * 3
    rows = []
    for label, in_main in (("main thread", True), ("other thread", False)):
        samples = overshoot(overshoot_rounds, in_main=in_main)
        rows.append(
            [
                label,
                format_time(statistics.median(samples)),
                format_time(max(samples)),
                str(len(samples)),
            ]
        )
    progress("\n")
    print(f"\n### join_all({JOIN_TIMEOUT}) overshoot with {N_STUCK} stuck members\n")
    print(table(["waiting in", "p50 overshoot", "max overshoot", "rounds"], rows))
