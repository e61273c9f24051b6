"""ResultThread against a bare Thread and the hand-written Thread + Queue."""

from __future__ import annotations

import queue
import threading

from safethreads import ResultThread

from ._harness import Case, compare

N_THREADS = 2_000


def _work(i: int) -> int:
    return i


def bare_thread() -> None:
    """Start and join threads; the value is not retrieved (the floor)."""
    for i in range(N_THREADS):
        t = threading.Thread(target=_work, args=(i,))
        t.start()
        t.join()


def thread_and_queue() -> None:
    """The hand-written pattern: the target puts its value on a queue."""
    for i in range(N_THREADS):
        q: queue.Queue[int] = queue.Queue()
        t = threading.Thread(target=lambda q=q, i=i: q.put(_work(i)))
        t.start()
        t.join()
        q.get()


def result_thread() -> None:
    """ResultThread: start, then result() waits and returns the value."""
    for i in range(N_THREADS):
        t = ResultThread(target=_work, args=(i,))
        t.start()
        t.result()


def run(rounds: int) -> None:
    """Start + join + retrieve the value, per thread."""
    compare(
        f"Start, join and retrieve the value of {N_THREADS:,} threads",
        [
            Case("bare Thread (no value)", bare_thread),
            Case("Thread + queue.Queue", thread_and_queue),
            Case("ResultThread", result_thread),
        ],
        ops=N_THREADS,
        rounds=rounds,
        unit="thread",
    )
