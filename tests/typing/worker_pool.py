"""Type-checked, never run: the public signatures of WorkerPool."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterator
from typing import assert_type

from safethreads import (
    BrokenWorkerPool,
    PoolFull,
    RunningTask,
    TaskInfo,
    WorkerPool,
    WorkerPoolStats,
)


def check_worker_pool() -> None:
    def parse(text: str, base: int = 10) -> int:
        return int(text, base)

    def combine(a: int, b: str) -> str:
        return f"{a}{b}"

    pool = WorkerPool(
        4,
        max_pending=10,
        on_full="caller_runs",
        thread_name_prefix="p",
        initializer=print,
        initargs=("ready",),
        copy_context=False,
    )
    assert_type(pool, WorkerPool)
    with WorkerPool() as entered:
        assert_type(entered, WorkerPool)
    executor: cf.Executor = pool  # a real Executor

    assert_type(pool.submit(parse, "12"), cf.Future[int])
    assert_type(pool.submit(parse, "ff", base=16), cf.Future[int])
    assert_type(pool.submit(len, "ab"), cf.Future[int])
    assert_type(pool.try_submit(parse, "12"), cf.Future[int] | None)
    pool.submit(parse, 12)  # type: ignore[arg-type]
    pool.submit(parse, "1", bass=2)  # type: ignore[call-arg]

    assert_type(pool.map(parse, ["1", "2"]), Iterator[int])
    assert_type(pool.map(combine, [1], ["a"], buffersize=4), Iterator[str])
    assert_type(pool.map(parse, ["1"], timeout=1.0, chunksize=2), Iterator[int])
    assert_type(pool.imap_unordered(parse, ["1", "2"]), Iterator[int])
    assert_type(
        pool.imap_unordered(parse, ["1"], timeout=2.0, buffersize=8), Iterator[int]
    )
    assert_type(
        pool.imap_unordered(parse, ["1"], chunksize=4, progress=print), Iterator[int]
    )
    assert_type(pool.map(combine, [1], ["a"], progress=print), Iterator[str])

    assert_type(pool.stats(), WorkerPoolStats)
    assert_type(pool.stats().queued, int)
    assert_type(pool.shutdown(), None)
    assert_type(pool.shutdown(wait=False, cancel_futures=True), None)
    WorkerPool(on_full="drop")  # type: ignore[arg-type]

    assert_type(executor.submit(parse, "1"), cf.Future[int])
    err: cf.BrokenExecutor = BrokenWorkerPool("x")
    full: RuntimeError = PoolFull("x")
    assert_type(err, cf.BrokenExecutor)
    assert_type(full, RuntimeError)


def check_worker_pool_observability() -> None:
    def before(task: TaskInfo) -> None:
        assert_type(task.started_at, float)

    def after(task: TaskInfo, error: BaseException | None) -> None:
        assert_type(task.thread_name, str)

    pool = WorkerPool(metrics=True, before_task=before, after_task=after, watchdog=5)
    assert_type(pool.running(), list[RunningTask])
    assert_type(pool.running()[0].elapsed, float | None)
    assert_type(pool.stats().run_time_p99, float | None)
    assert_type(pool.stats().rejected, int)
    WorkerPool(after_task=before)  # type: ignore[arg-type]
