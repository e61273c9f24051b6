"""Static checks of the ThreadGroup and CancelToken signatures (never run)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, assert_type

from safethreads import Cancelled, CancelToken, ResultThread, ThreadGroup


def parse(text: str, base: int = 10) -> int:
    return int(text, base)


def check_thread_group() -> None:
    with ThreadGroup("typed", daemon=False, fail_fast=True, exit_timeout=1.0) as g:
        assert_type(g, ThreadGroup)
        assert_type(g.spawn(parse, "ff", base=16), ResultThread[int])
        assert_type(g.spawn(str, 5), ResultThread[str])
        assert_type(g.add(threading.Thread()), threading.Thread)
        assert_type(g.add(ResultThread(target=parse, args=("1",))), ResultThread[int])
        assert_type(g.join_all(), bool)
        assert_type(g.join_all(0.5, include_daemon=False), bool)
        assert_type(g.cancel(), bool)
        assert_type(g.cancel("reason"), bool)
        assert_type(g.token, CancelToken)
        assert_type(g.name, str)
        assert_type(g.members, tuple[threading.Thread, ...])
        assert_type(g.spawn_named("parser", parse, "ff", base=16), ResultThread[int])
        assert_type(next(g.as_completed(1.0)), ResultThread[Any])
        g.spawn_named("parser", parse, 1)  # type: ignore[arg-type]
        g.spawn(parse, 1)  # type: ignore[arg-type]
        g.spawn(parse, "1", bas=2)  # type: ignore[call-arg]
    assert_type(g.results(), list[Any])
    assert_type(g.results(return_exceptions=True), list[Any])
    assert_type(ThreadGroup(max_concurrency=4, wait_for_daemons=True), ThreadGroup)
    assert_type(ThreadGroup(token=CancelToken()), ThreadGroup)


def check_cancel_token() -> None:
    token = CancelToken()
    assert_type(token.cancel(), bool)
    assert_type(token.cancel("why"), bool)
    assert_type(token.cancelled, bool)
    assert_type(token.reason, object)
    assert_type(token.deadline, float | None)
    assert_type(token.raise_if_cancelled(), None)
    assert_type(token.wait(), bool)
    assert_type(token.wait(0.1), bool)
    assert_type(token.add_callback(lambda: None), Callable[[], bool])
    assert_type(token.child(), CancelToken)
    assert_type(token.child(timeout=1.0), CancelToken)
    assert_type(token.close(), None)
    assert_type(CancelToken.after(1.0), CancelToken)
    assert_type(Cancelled("r").reason, object)


def check_thread_group_observability() -> None:
    from safethreads import RunningTask, ThreadGroupStats

    group = ThreadGroup()
    assert_type(group.stats(), ThreadGroupStats)
    assert_type(group.stats().failed, int)
    assert_type(group.running(), list[RunningTask])
    ThreadGroup(progress=lambda _done, _total: None)
    ThreadGroup(progress=print)
