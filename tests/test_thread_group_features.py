"""ThreadGroup features of issue 10: bounded, named, collecting, one deadline.

PT012 is silenced where a group's whole block is the code under test inside
`pytest.raises`: what leaving the block raises is the point of the test.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safethreads import Cancelled, ResultThread, ThreadGroup

if TYPE_CHECKING:
    import random
    from collections.abc import Iterator

TIMEOUT = 10.0  # every wait in these tests is bounded


def fail_with(exc: BaseException) -> NoReturn:
    raise exc


def opens(gate: threading.Event, i: int) -> int:
    gate.wait(TIMEOUT)
    return i


class Gauge:
    """Counts the members running at once and remembers the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards running and peak
        self.running = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.running -= 1


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that stuck members wait on; set at the end of the test."""
    event = threading.Event()
    yield event
    event.set()


class TestMaxConcurrency:
    def test_no_more_than_the_limit_run_at_once(self) -> None:
        """With max_concurrency=3, at most 3 members run and all of them finish."""
        gauge = Gauge()

        def work(i: int) -> int:
            with gauge:
                time.sleep(0.001)
            return i

        with ThreadGroup(max_concurrency=3) as g:
            threads = [g.spawn(work, i) for i in range(30)]
        assert [t.result(timeout=0) for t in threads] == list(range(30))
        assert 1 <= gauge.peak <= 3
        g._check()

    def test_waiting_members_have_no_thread(self, release: threading.Event) -> None:
        """A member over the limit is returned unstarted and starts in spawn order."""
        order: list[int] = []
        with ThreadGroup(max_concurrency=1) as g:
            first = g.spawn(release.wait, TIMEOUT)
            waiting = [g.spawn(order.append, i) for i in range(3)]
            assert first.is_alive()
            assert all(t.ident is None for t in waiting)
            assert len(g.members) == 4
            release.set()
        assert order == [0, 1, 2]

    def test_failure_cancels_waiting_members_without_running_them(self) -> None:
        """On a failure, waiting members end with Cancelled, their function unrun."""
        ran: list[int] = []
        go = threading.Event()

        def fails_when_told() -> NoReturn:
            go.wait(TIMEOUT)
            raise ValueError("boom")

        with (  # noqa: PT012
            pytest.raises(ExceptionGroup) as info,
            ThreadGroup(max_concurrency=1) as g,
        ):
            g.spawn(fails_when_told)
            waiting = [g.spawn(ran.append, i) for i in range(5)]
            go.set()
        assert [str(e) for e in info.value.exceptions] == ["boom"]
        assert ran == []
        assert all(isinstance(t.exception(timeout=0), Cancelled) for t in waiting)
        g._check()

    def test_cancel_reaches_waiting_members(self, release: threading.Event) -> None:
        """cancel() ends waiting members at once, while the running one goes on."""
        with ThreadGroup(max_concurrency=1) as g:
            running = g.spawn(release.wait, TIMEOUT)
            waiting = g.spawn(int, "1")
            g.cancel("stop")
            assert isinstance(waiting.exception(timeout=TIMEOUT), Cancelled)
            assert running.is_alive()
            release.set()
        exc = waiting.exception(timeout=0)
        assert isinstance(exc, Cancelled)
        assert exc.reason == "stop"

    def test_spawn_into_a_full_cancelled_group_does_not_run(
        self, release: threading.Event
    ) -> None:
        """A member spawned into a full group after cancellation is not run."""
        with ThreadGroup(max_concurrency=1) as g:
            g.spawn(release.wait, TIMEOUT)
            g.cancel()
            late = g.spawn(int, "2")
            assert isinstance(late.exception(timeout=TIMEOUT), Cancelled)
            release.set()

    def test_waiting_member_runs_in_spawner_context(self) -> None:
        """A member that waited for a slot sees the context of its spawner."""
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var")
        go = threading.Event()
        with ThreadGroup(max_concurrency=1) as g:
            g.spawn(go.wait, TIMEOUT)
            var.set("spawner")
            later = g.spawn(var.get)
            go.set()
        assert later.result(timeout=0) == "spawner"

    def test_added_threads_do_not_count(self, release: threading.Event) -> None:
        """Threads given to add() start at once, whatever the limit."""
        with ThreadGroup(max_concurrency=1) as g:
            g.spawn(release.wait, TIMEOUT)
            adopted = g.add(ResultThread(target=int, args=("3",)))
            assert adopted.result(timeout=TIMEOUT) == 3
            release.set()

    @pytest.mark.parametrize(
        ("value", "error", "match"),
        [
            (0, ValueError, "max_concurrency must be None or at least 1, not 0"),
            (-2, ValueError, "max_concurrency must be None or at least 1"),
            (1.5, TypeError, "max_concurrency must be None or an int, not float"),
            (True, TypeError, "max_concurrency must be None or an int, not bool"),
        ],
    )
    def test_bad_max_concurrency(
        self, value: object, error: type[Exception], match: str
    ) -> None:
        """A bad limit is refused by the constructor."""
        with pytest.raises(error, match=match):
            ThreadGroup(max_concurrency=value)  # type: ignore[arg-type]


class TestSpawnNamed:
    def test_name_does_not_reach_the_function(self) -> None:
        """spawn_named() names the thread; a `name` keyword goes to the function."""

        def hello(name: str) -> str:
            return f"hello {name}"

        with ThreadGroup("g") as g:
            t = g.spawn_named("worker", hello, name="Ada")
        assert t.name == "worker"
        assert t.result(timeout=0) == "hello Ada"

    def test_name_is_in_the_failure_note(self) -> None:
        """The chosen name is the one the failure's note gives."""
        with (
            pytest.raises(ExceptionGroup) as info,
            ThreadGroup("g") as g,
        ):
            g.spawn_named("loader", fail_with, OSError("disk"))
        (error,) = info.value.exceptions
        assert error.__notes__ == ["raised in thread 'loader'"]

    def test_bad_name(self) -> None:
        """A name that is not a str is refused."""
        with ThreadGroup() as g, pytest.raises(TypeError, match="name must be a str"):
            g.spawn_named(3, int)  # type: ignore[arg-type]


class TestCollecting:
    def test_results_with_exceptions(self) -> None:
        """results(return_exceptions=True) gives each value or exception."""
        g = ThreadGroup(fail_fast=False)
        with pytest.raises(ExceptionGroup), g:  # noqa: PT012
            g.spawn(int, "1")
            g.spawn(int, "x")
            g.spawn(str, 2)
        one, bad, two = g.results(return_exceptions=True)
        assert (one, two) == (1, "2")
        assert isinstance(bad, ValueError)
        with pytest.raises(RuntimeError, match="return_exceptions=True") as info:
            g.results()
        assert info.value.__cause__ is bad

    def test_as_completed_in_completion_order(self) -> None:
        """as_completed() yields members as they finish, while the block runs."""
        gates = [threading.Event() for _ in range(3)]
        got: list[int] = []
        with ThreadGroup() as g:
            for i, gate in enumerate(gates):
                g.spawn(opens, gate, i)
            finished = g.as_completed(TIMEOUT)
            for i in (2, 0, 1):
                gates[i].set()
                got.append(next(finished).result(timeout=0))
            assert next(finished, None) is None
        assert got == [2, 0, 1]

    def test_as_completed_yields_every_member_once(self) -> None:
        """Every member, spawned before or during the iteration, comes once."""
        with ThreadGroup(max_concurrency=4) as g:
            for i in range(20):
                g.spawn(pow, i, 2)
            seen = []
            for t in g.as_completed(TIMEOUT):
                seen.append(t.result(timeout=0))
                if len(seen) == 1:
                    g.spawn(pow, 100, 2)
        assert sorted(seen) == sorted([i * i for i in range(20)] + [10_000])

    def test_as_completed_timeout(self, release: threading.Event) -> None:
        """The iteration raises TimeoutError when its deadline passes."""
        with ThreadGroup() as g:
            g.spawn(int)
            g.spawn(release.wait, TIMEOUT)
            it = g.as_completed(0.05)
            assert next(it).result(timeout=0) == 0
            with pytest.raises(TimeoutError, match="1 member"):
                next(it)
            release.set()

    def test_as_completed_after_the_block(self) -> None:
        """After the block, as_completed() yields the finished members at once."""
        with ThreadGroup() as g:
            g.spawn(int, "4")
            g.add(threading.Thread(target=int))
        assert [t.result(timeout=0) for t in g.as_completed(0)] == [4]

    def test_as_completed_bad_timeout(self) -> None:
        """A bad timeout is refused at the call."""
        with pytest.raises(TypeError, match="timeout must be None or a number"):
            ThreadGroup().as_completed("1")  # type: ignore[arg-type]


class TestOneDeadline:
    def test_wait_for_daemons_waits_for_daemon_members(self) -> None:
        """With wait_for_daemons, the block's end waits for daemon members too."""
        go = threading.Event()
        with ThreadGroup(daemon=True, wait_for_daemons=True) as g:
            t = g.spawn(lambda: go.wait(TIMEOUT))
            g.spawn(go.set)
        assert not t.is_alive()
        assert t.result(timeout=0) is True

    def test_exit_timeout_covers_daemon_members(self, release: threading.Event) -> None:
        """exit_timeout names a stuck daemon member when daemons are waited for."""
        with (
            pytest.raises(TimeoutError, match="thread 'd-0' is stuck"),
            ThreadGroup("d", exit_timeout=0.05, wait_for_daemons=True) as g,
        ):
            g.add(ResultThread(target=release.wait, args=(TIMEOUT,), daemon=True))
        release.set()
        g.join_all(TIMEOUT)


# --- random bounded group programs ------------------------------------------------

# ok: returns; fail: raises ValueError; base: raises an Abort (BaseException);
# cancellable: waits for the token, then raises Cancelled; hold: waits until
# the body lets it go.
KINDS = ("ok", "fail", "base", "cancellable", "hold")


class Abort(BaseException):
    """A BaseException that is not an Exception."""


@st.composite
def bounded_programs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 12))
    kinds = [draw(st.sampled_from(KINDS)) for _ in range(n)]
    return {
        "kinds": kinds,
        "limit": draw(st.integers(1, 4)),
        "fail_fast": draw(st.booleans()),
        "cancel_at": draw(st.none() | st.integers(0, n)),
    }


class BoundedRun:
    """What one bounded program did: who ran, when, and how many at once."""

    def __init__(self, program: dict[str, Any]) -> None:
        self.program = program
        self.gauge = Gauge()
        self.ran: list[int] = []
        self.ran_after: list[int] = []
        self.go = threading.Event()
        self.after_block = threading.Event()
        self.g = ThreadGroup(
            fail_fast=program["fail_fast"], max_concurrency=program["limit"]
        )

    def member(self, kind: str, i: int) -> int:
        with self.gauge:
            self.ran.append(i)
            if kind == "hold":
                self.go.wait(TIMEOUT)
            if kind in FAILING:
                raise FAILING[kind](i)
            if kind == "cancellable":
                self.g.token.wait(TIMEOUT)
                self.g.token.raise_if_cancelled()
        if self.after_block.is_set():
            self.ran_after.append(i)
        return i


FAILING: dict[str, type[BaseException]] = {"fail": ValueError, "base": Abort}


def run_bounded(program: dict[str, Any]) -> None:
    kinds: list[str] = program["kinds"]
    run = BoundedRun(program)
    g = run.g
    caught: BaseExceptionGroup[Any] | None = None
    threads: list[ResultThread[int]] = []
    try:
        with g:
            for i, kind in enumerate(kinds):
                if program["cancel_at"] == i:
                    g.cancel()
                threads.append(g.spawn(run.member, kind, i))
            if program["cancel_at"] == len(kinds):
                g.cancel()
            run.go.set()
            if "cancellable" in kinds and not g.token.cancelled:
                g.cancel()  # or they would wait for the timeout
    except BaseExceptionGroup as group:
        caught = group
    finally:
        run.go.set()
    run.after_block.set()
    check_bounded(run, threads, caught)


def check_bounded(
    run: BoundedRun,
    threads: list[ResultThread[int]],
    caught: BaseExceptionGroup[Any] | None,
) -> None:
    """Nothing ran after the block, the limit held, each failure came once."""
    assert not any(t.is_alive() for t in threads)
    assert run.ran_after == []
    assert run.gauge.peak <= run.program["limit"]
    outcomes = [t.exception(timeout=0) for t in threads]
    failed = [
        (type(e), i)
        for i, e in enumerate(outcomes)
        if isinstance(e, ValueError | Abort)
    ]
    got = [] if caught is None else [(type(e), e.args[0]) for e in caught.exceptions]
    assert got == failed
    for i, exc in enumerate(outcomes):
        if i not in run.ran:  # cancelled before it could start
            assert isinstance(exc, Cancelled)
        elif run.program["kinds"][i] in {"ok", "hold"}:
            assert exc is None
    assert len(run.g.results(return_exceptions=True)) == len(threads)
    run.g._check()


@settings(max_examples=60)
@given(bounded_programs())
def test_random_bounded_group_programs(program: dict[str, Any]) -> None:
    """A random bounded program: limit kept, each failure once, nothing after."""
    run_bounded(program)


# --- stress -----------------------------------------------------------------------


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
def test_stress_bounded_group(stress_rng: random.Random) -> None:
    """2,000 members at most 8 at once: closed-form total and the limit kept."""
    n = 2_000
    gauge = Gauge()
    total = [0]
    lock = threading.Lock()

    def member(i: int) -> int:
        with gauge, lock:
            total[0] += i
        return i

    limit = stress_rng.choice([1, 2, 8])
    with ThreadGroup(max_concurrency=limit) as g:
        for i in range(n):
            g.spawn(member, i)
        consumed = sum(t.result(timeout=0) for t in g.as_completed(TIMEOUT * 6))
    assert total[0] == consumed == n * (n - 1) // 2
    assert gauge.peak <= limit
    g._check()


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
def test_stress_bounded_fail_fast(stress_rng: random.Random) -> None:
    """A failure in a long bounded batch: raised once, the rest cancelled."""
    n = 1_000
    bad = stress_rng.randrange(n)
    ran = [0]
    lock = threading.Lock()

    def member(i: int) -> int:
        with lock:
            ran[0] += 1
        if i == bad:
            raise ValueError(i)
        return i

    with (
        pytest.raises(ExceptionGroup) as info,
        ThreadGroup(max_concurrency=4) as g,
    ):
        threads = [g.spawn(member, i) for i in range(n)]
    assert [e.args[0] for e in info.value.exceptions] == [bad]
    cancelled = sum(isinstance(t.exception(timeout=0), Cancelled) for t in threads)
    assert ran[0] + cancelled == n
    g._check()


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
def test_stress_members_joining_each_other(stress_rng: random.Random) -> None:
    """Many members calling join_all() at once all return; none waits for itself."""
    n = stress_rng.randrange(10, 40)
    go = threading.Event()
    with ThreadGroup() as g:
        joiners = [g.spawn(g.join_all, TIMEOUT) for _ in range(n)]
        workers = [g.spawn(go.wait, TIMEOUT) for _ in range(n)]
        go.set()
    assert all(t.result(timeout=0) is True for t in joiners)
    assert all(t.result(timeout=0) is True for t in workers)
    g._check()
