"""Type-checked, never run: the public signatures of the scale-out helpers."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, assert_type

from safethreads import (
    BoundedExecutor,
    FutureGroup,
    ResultStream,
    executor_imap_unordered,
    executor_map,
    submit_task,
)


def check_fanout(pool: cf.ProcessPoolExecutor) -> None:
    def parse(text: str, base: int = 10) -> int:
        return int(text, base)

    assert_type(submit_task(pool, parse, "12", base=8), cf.Future[int])
    stream = executor_map(pool, parse, ["1", "2"], buffersize=2, timeout=5)
    assert_type(stream, ResultStream[int])
    with stream as entered:
        assert_type(entered, ResultStream[int])
        assert_type(next(entered), int)
    assert_type(
        executor_imap_unordered(pool, len, ["a", "bc"], buffersize=1),
        ResultStream[int],
    )

    def bar(done: int, total: int | None) -> None:
        pass

    chunked = executor_map(pool, parse, ["1", "2"], chunksize=64, progress=bar)
    assert_type(chunked, ResultStream[int])
    assert_type(list(chunked), list[int])
    assert_type(
        executor_imap_unordered(pool, len, ["a"], chunksize=8, progress=print),
        ResultStream[int],
    )
    bounded = BoundedExecutor(pool, max_pending=4, on_full="caller_runs")
    assert_type(bounded.map(parse, ["1"], chunksize=2, progress=bar), ResultStream[int])
    assert_type(bounded.submit(parse, "7"), cf.Future[int])
    assert_type(bounded.try_submit(parse, "7"), cf.Future[int] | None)
    assert_type(bounded.map(parse, ["1"], buffersize=1), ResultStream[int])
    with FutureGroup(bounded, timeout=1.0, progress=bar) as group:
        assert_type(group, FutureGroup)
        assert_type(group.submit(parse, "3"), cf.Future[int])
        assert_type(group.add(pool.submit(len, "ab")), cf.Future[int])
        assert_type(group.futures, tuple[cf.Future[Any], ...])
