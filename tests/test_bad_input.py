"""Bad input fails at the call that made the mistake, with a clear message."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import pytest

from safethreads import CancelToken, LockedDict, ResultThread, ThreadGroup, WorkerPool

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

NOT_CALLABLE: Any = 42
TIMEOUT = 10.0


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    with WorkerPool(1) as p:
        yield p


@pytest.fixture
def running() -> Iterator[ResultThread[bool]]:
    """A thread that runs until the test ends."""
    release = threading.Event()
    t = ResultThread(target=release.wait, args=(TIMEOUT,))
    t.start()
    yield t
    release.set()
    t.join(TIMEOUT)


class TestNotCallable:
    def test_result_thread_target(self) -> None:
        """ResultThread(target=...) refuses a non-callable at construction."""
        with pytest.raises(TypeError, match="target must be callable, not int"):
            ResultThread(target=NOT_CALLABLE)

    def test_group_spawn(self) -> None:
        """ThreadGroup.spawn refuses a non-callable before starting anything."""
        with ThreadGroup("g") as g:
            with pytest.raises(TypeError, match="fn must be callable, not int"):
                g.spawn(NOT_CALLABLE)
            assert g.members == ()

    @pytest.mark.parametrize(
        "call",
        [
            lambda p: p.submit(NOT_CALLABLE),
            lambda p: p.try_submit(NOT_CALLABLE),
            lambda p: p.map(NOT_CALLABLE, [1]),
            lambda p: p.imap_unordered(NOT_CALLABLE, [1]),
        ],
        ids=["submit", "try_submit", "map", "imap_unordered"],
    )
    def test_pool_calls(
        self, pool: WorkerPool, call: Callable[[WorkerPool], object]
    ) -> None:
        """WorkerPool refuses a non-callable where it is passed, not in a worker."""
        with pytest.raises(TypeError, match="fn must be callable, not int"):
            call(pool)
        assert pool.stats().completed == 0

    def test_locked_dict_callbacks(self) -> None:
        """LockedDict refuses non-callable callbacks, even when unused."""
        d = LockedDict(k=1)
        with pytest.raises(TypeError, match="factory must be callable, not int"):
            d.get_or_set("k", NOT_CALLABLE)
        with pytest.raises(TypeError, match="fn must be callable, not int"):
            d.compute("k", NOT_CALLABLE)
        assert d == {"k": 1}


BAD_TIMEOUTS = [
    pytest.param(
        "1", TypeError, "must be None or a number of seconds, not str", id="str"
    ),
    pytest.param(True, TypeError, "not bool", id="bool"),
    pytest.param(math.nan, ValueError, "not NaN", id="nan"),
]


class TestBadTimeouts:
    @pytest.mark.parametrize(("timeout", "error", "message"), BAD_TIMEOUTS)
    def test_result_thread(
        self,
        running: ResultThread[bool],
        timeout: Any,
        error: type[Exception],
        message: str,
    ) -> None:
        """result() and exception() check their timeout."""
        with pytest.raises(error, match=message):
            running.result(timeout=timeout)
        with pytest.raises(error, match=message):
            running.exception(timeout=timeout)

    @pytest.mark.parametrize(("timeout", "error", "message"), BAD_TIMEOUTS)
    def test_pool_future_and_map(
        self, pool: WorkerPool, timeout: Any, error: type[Exception], message: str
    ) -> None:
        """A waiting future, map and imap_unordered check their timeout."""
        release = threading.Event()
        future = pool.submit(release.wait, TIMEOUT)
        try:
            with pytest.raises(error, match=message):
                future.result(timeout=timeout)
            with pytest.raises(error, match=message):
                pool.map(abs, [1], timeout=timeout)
            with pytest.raises(error, match=message):
                pool.imap_unordered(abs, [1], timeout=timeout)
        finally:
            release.set()
        assert future.result(timeout=TIMEOUT) is True

    @pytest.mark.parametrize(("timeout", "error", "message"), BAD_TIMEOUTS)
    def test_cancel_token(
        self, timeout: Any, error: type[Exception], message: str
    ) -> None:
        """CancelToken.wait and child check their timeout."""
        token = CancelToken()
        with pytest.raises(error, match=message):
            token.wait(timeout)
        with pytest.raises(error, match=message):
            token.child(timeout=timeout)

    def test_cancel_token_after(self) -> None:
        """CancelToken.after needs a number of seconds."""
        with pytest.raises(TypeError, match="seconds must be a number of seconds"):
            CancelToken.after(None)  # type: ignore[arg-type]
        with pytest.raises(
            ValueError, match="seconds must be a number of seconds, not NaN"
        ):
            CancelToken.after(math.nan)

    @pytest.mark.parametrize(("timeout", "error", "message"), BAD_TIMEOUTS)
    def test_thread_group(
        self, timeout: Any, error: type[Exception], message: str
    ) -> None:
        """ThreadGroup checks exit_timeout and join_all's timeout."""
        with pytest.raises(error, match=message):
            ThreadGroup(exit_timeout=timeout)
        with pytest.raises(error, match=message):
            ThreadGroup().join_all(timeout)
