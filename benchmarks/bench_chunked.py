"""Chunked maps of a no-op: `WorkerPool.map(chunksize=)` against `ThreadPool.imap`.

300,000 calls of a function that returns its argument, in chunks of 256, on
four threads: through `WorkerPool.map` and through `executor_map` over a
`ThreadPoolExecutor` (eager, and bounded with `buffersize=8` chunks), and
through `multiprocessing.pool.ThreadPool.imap` with the same chunk size, the
baseline.  Each round consumes every result in order and checks their sum.
The rows show the time per item; the goal is to be faster than the baseline.
"""

from __future__ import annotations

from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from multiprocessing.pool import ThreadPool

from safethreads import WorkerPool, executor_map

from ._harness import Case, compare

N_ITEMS = 300_000
CHUNKSIZE = 256
WORKERS = 4
BUFFERSIZE = 8


def identity(x: int) -> int:
    return x


def _check(total: int, n: int = N_ITEMS) -> None:
    if total != n * (n - 1) // 2:
        msg = f"wrong sum {total}"
        raise AssertionError(msg)


def _thread_pool_imap(pool: ThreadPool) -> None:
    total = 0
    for r in pool.imap(identity, range(N_ITEMS), chunksize=CHUNKSIZE):
        total += r
    _check(total)


def _pool_map(pool: WorkerPool, buffersize: int | None) -> None:
    total = 0
    for r in pool.map(
        identity, range(N_ITEMS), chunksize=CHUNKSIZE, buffersize=buffersize
    ):
        total += r
    _check(total)


def _executor_map(pool: Executor, buffersize: int | None) -> None:
    total = 0
    for r in executor_map(
        pool, identity, range(N_ITEMS), chunksize=CHUNKSIZE, buffersize=buffersize
    ):
        total += r
    _check(total)


def run(rounds: int) -> None:
    """Print the chunked-map comparison."""
    baseline = ThreadPool(WORKERS)
    workers = WorkerPool(WORKERS)
    threads = ThreadPoolExecutor(WORKERS)
    try:
        compare(
            f"{N_ITEMS:,} calls of a no-op in chunks of {CHUNKSIZE} on "
            f"{WORKERS} threads: time per item",
            [
                Case(
                    f"ThreadPool.imap(chunksize={CHUNKSIZE})",
                    partial(_thread_pool_imap, baseline),
                ),
                Case(
                    f"WorkerPool.map(chunksize={CHUNKSIZE})",
                    partial(_pool_map, workers, None),
                ),
                Case(
                    f"WorkerPool.map(chunksize={CHUNKSIZE}, buffersize={BUFFERSIZE})",
                    partial(_pool_map, workers, BUFFERSIZE),
                ),
                Case(
                    f"executor_map(ThreadPoolExecutor, chunksize={CHUNKSIZE})",
                    partial(_executor_map, threads, None),
                ),
                Case(
                    f"executor_map(ThreadPoolExecutor, chunksize={CHUNKSIZE}, "
                    f"buffersize={BUFFERSIZE})",
                    partial(_executor_map, threads, BUFFERSIZE),
                ),
            ],
            ops=N_ITEMS,
            rounds=rounds,
            unit="item",
        )
    finally:
        baseline.terminate()
        baseline.join()
        workers.shutdown()
        threads.shutdown()
