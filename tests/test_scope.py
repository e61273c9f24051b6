"""ThreadGroup and FutureGroup end their blocks by the same rules.

Each test runs one scenario on both groups and expects the same shape of
outcome: which exception propagates, what a group holds and in what order,
and what the notes on a propagating exception name.  PT012 is silenced where
a group's whole block is the code under test inside `pytest.raises`.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from safethreads import FutureGroup, ThreadGroup

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

TIMEOUT = 10.0  # every wait in these tests is bounded


class BodyError(Exception):
    """Raised by a group's body in these tests."""


class Stop(BaseException):
    """A BaseException that is not an Exception, nor an interrupt."""


def fail_with(exc: BaseException) -> NoReturn:
    raise exc


class Scope:
    """One group type behind the few calls the scenarios need."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # as the group's message words it
        # A pool per group, so that no group's members queue behind another
        # test's (a parallel test run shares fixtures between threads).
        self.pools: list[cf.ThreadPoolExecutor] = []
        # The group each thread opened: a parallel test run shares fixtures
        # between the threads running one test.
        self._opened = threading.local()

    @property
    def _group(self) -> ThreadGroup | FutureGroup | None:
        group: ThreadGroup | FutureGroup | None = getattr(self._opened, "group", None)
        return group

    def open(
        self,
        name: str,
        *,
        timeout: float | None = None,
        progress: Callable[[int, int | None], object] | None = None,
    ) -> AbstractContextManager[Any]:
        """A new group of this type, to enter with `with`."""
        group: ThreadGroup | FutureGroup
        if self.kind == "thread group":
            group = ThreadGroup(name, exit_timeout=timeout, progress=progress)
        else:
            pool = cf.ThreadPoolExecutor(4)
            self.pools.append(pool)
            group = FutureGroup(pool, name=name, timeout=timeout, progress=progress)
        self._opened.group = group
        return group

    def run(self, fn: Callable[..., object], *args: object) -> None:
        """Start `fn(*args)` as a member of the open group."""
        group = self._group
        if isinstance(group, ThreadGroup):
            group.spawn(fn, *args)
        else:
            assert group is not None
            group.submit(fn, *args)

    def finished(self) -> bool:
        """Whether every member has finished (after the block)."""
        group = self._group
        if isinstance(group, ThreadGroup):
            return not any(t.is_alive() for t in group.members)
        assert group is not None
        return all(f.done() for f in group.futures)


@pytest.fixture(params=["thread group", "future group"])
def scope(request: pytest.FixtureRequest) -> Iterator[Scope]:
    """Each group type in turn."""
    scope = Scope(request.param)
    yield scope
    for pool in scope.pools:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that stuck members wait on; set at the end of the test."""
    event = threading.Event()
    yield event
    event.set()


class TestSharedEnding:
    """The outcome of a block, by the rules of `_scope`, for both groups."""

    def test_body_error_member_failure_and_timeout_in_that_order(
        self, scope: Scope, release: threading.Event
    ) -> None:
        """Body error first, then the member's failure, then the timeout error."""
        failed = threading.Event()

        def member() -> NoReturn:
            failed.set()
            raise ValueError("member")

        with pytest.raises(ExceptionGroup) as info, scope.open("g", timeout=0.3):  # noqa: PT012
            scope.run(release.wait, TIMEOUT)
            scope.run(member)
            assert failed.wait(TIMEOUT)
            raise BodyError("body")
        group = info.value
        assert str(group).startswith(f"unhandled errors in {scope.kind} 'g'")
        kinds = [type(e) for e in group.exceptions]
        assert kinds == [BodyError, ValueError, TimeoutError]
        assert group.__cause__ is None
        assert group.__suppress_context__

    def test_a_lone_timeout_is_raised_alone(
        self, scope: Scope, release: threading.Event
    ) -> None:
        """No other error: the timeout error itself, not a group of one."""
        with (
            pytest.raises(TimeoutError, match="'g' did not finish within"),
            scope.open("g", timeout=0.1),
        ):
            scope.run(release.wait, TIMEOUT)

    def test_progress_error_comes_after_the_body_and_before_the_members(
        self, scope: Scope
    ) -> None:
        """The progress callback's error sits between the body's and the members'."""

        failed = threading.Event()

        def progress(done: int, total: int | None) -> None:
            raise LookupError("progress")

        def member() -> NoReturn:
            failed.set()
            raise ValueError("member")

        with (  # noqa: PT012
            pytest.raises(BaseExceptionGroup) as info,
            scope.open("g", progress=progress),
        ):
            scope.run(member)
            assert failed.wait(TIMEOUT)  # started: the body's error cancels no more
            raise BodyError("body")
        kinds = [type(e) for e in info.value.exceptions]
        assert kinds == [BodyError, LookupError, ValueError]

    def test_body_system_exit_propagates_with_a_note_on_failures(
        self, scope: Scope
    ) -> None:
        """The body's SystemExit propagates itself, naming the failure it hides."""
        with pytest.raises(SystemExit) as info, scope.open("g"):  # noqa: PT012
            scope.run(fail_with, ValueError("member"))
            raise SystemExit(3)
        assert info.value.code == 3
        notes = "\n".join(info.value.__notes__)
        assert "group 'g' also had 1 member failure(s), not raised" in notes
        assert "ValueError: member" in notes

    def test_base_exception_from_progress_propagates_after_the_wait(
        self, scope: Scope
    ) -> None:
        """A progress callback's BaseException waits for the members, then propagates.

        Regression: a `ThreadGroup` let it escape the block at once, its
        members still running and their failures lost.
        """
        release = threading.Event()
        failed = threading.Event()

        def progress(done: int, total: int | None) -> None:
            release.set()  # the slow member may end now
            raise Stop

        def member() -> NoReturn:
            failed.set()
            raise ValueError("member")

        with pytest.raises(Stop) as info, scope.open("g", progress=progress):  # noqa: PT012
            scope.run(release.wait, TIMEOUT)
            scope.run(member)
            assert failed.wait(TIMEOUT)  # started: the cancellation cannot stop it
        assert scope.finished(), "the block ended before its members"
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "ValueError: member" in notes
