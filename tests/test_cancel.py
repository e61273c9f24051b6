"""CancelToken and Cancelled: a one-way, thread-safe cancellation signal."""

from __future__ import annotations

import contextlib
import functools
import gc
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from child_process import SIGINT_PRELUDE
from interrupts import interrupt_at_line
from safethreads import (
    Cancelled,
    CancelToken,
    ResultThread,
    ThreadGroup,
    WorkerPool,
    spawn,
)
from safethreads._cancel import DEADLINE_REASON, bind_token, current_token

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

TIMEOUT = 10.0  # every wait in these tests is bounded


def deadline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "safethreads-deadline"]


class TestCancelled:
    def test_is_an_exception(self) -> None:
        """Cancelled is an Exception, so `except Exception` handlers see it."""
        assert issubclass(Cancelled, Exception)
        assert not issubclass(Cancelled, KeyboardInterrupt)

    def test_message_and_reason(self) -> None:
        """The message names the reason; the reason is kept as an attribute."""
        assert str(Cancelled()) == "the operation was cancelled"
        exc = Cancelled("user asked")
        assert str(exc) == "the operation was cancelled: user asked"
        assert exc.reason == "user asked"

    def test_pickles_with_reason(self) -> None:
        """A Cancelled survives pickling with its reason (process pools)."""
        copy = pickle.loads(pickle.dumps(Cancelled("r")))  # noqa: S301 - our own data
        assert isinstance(copy, Cancelled)
        assert copy.reason == "r"
        assert pickle.loads(pickle.dumps(Cancelled())).reason is None  # noqa: S301


class TestCancel:
    def test_new_token_is_active(self) -> None:
        """A new token is not cancelled, has no reason and raises nothing."""
        token = CancelToken()
        assert not token.cancelled
        assert token.reason is None
        assert token.deadline is None
        token.raise_if_cancelled()
        assert repr(token) == "<CancelToken active>"
        token._check()

    def test_cancel_once_first_reason_wins(self) -> None:
        """cancel() returns True once; the first reason is kept."""
        token = CancelToken()
        assert token.cancel("first") is True
        assert token.cancel("second") is False
        assert token.cancelled
        assert token.reason == "first"
        assert repr(token) == "<CancelToken cancelled reason='first'>"
        token._check()

    def test_raise_if_cancelled(self) -> None:
        """raise_if_cancelled() raises Cancelled carrying the token's reason."""
        token = CancelToken()
        token.cancel("stop now")
        with pytest.raises(Cancelled, match="cancelled: stop now") as info:
            token.raise_if_cancelled()
        assert info.value.reason == "stop now"

    @pytest.mark.usefixtures("fast_switching")
    def test_concurrent_cancel_has_one_winner(self) -> None:
        """Of many racing cancel() calls exactly one wins, and its reason sticks."""
        for _ in range(20):
            token = CancelToken()
            barrier = threading.Barrier(8)

            def race(i: int, token: CancelToken = token, b: Any = barrier) -> bool:
                b.wait(TIMEOUT)
                return token.cancel(i)

            threads = [spawn(race, i) for i in range(8)]
            wins = [i for i, t in enumerate(threads) if t.result(timeout=TIMEOUT)]
            assert len(wins) == 1
            assert token.reason == wins[0]
            token._check()


class TestWait:
    def test_wait_times_out(self) -> None:
        """wait(timeout) returns False when nobody cancels."""
        token = CancelToken()
        start = time.monotonic()
        assert token.wait(0.05) is False
        assert time.monotonic() - start >= 0.05
        assert token.wait(0) is False
        assert token.wait(-1) is False

    def test_wait_returns_when_cancelled_elsewhere(self) -> None:
        """wait() wakes up when another thread cancels the token."""
        token = CancelToken()
        waiting = threading.Event()

        def waiter() -> bool:
            waiting.set()
            return token.wait(TIMEOUT)

        t = spawn(waiter)
        assert waiting.wait(TIMEOUT)
        token.cancel()
        assert t.result(timeout=TIMEOUT) is True

    def test_wait_in_main_thread_without_timeout(self) -> None:
        """wait() without a timeout in the main thread returns on cancellation."""
        token = CancelToken()
        canceller = threading.Timer(0.05, token.cancel)
        canceller.start()
        try:
            assert token.wait() is True
        finally:
            canceller.join(TIMEOUT)

    @pytest.mark.subprocess
    def test_ctrl_c_interrupts_wait(self) -> None:
        """Ctrl-C interrupts wait() in the main thread with KeyboardInterrupt."""
        code = textwrap.dedent(
            """
            import sys
            from safethreads import CancelToken
            try:
                print("ready", flush=True)
                CancelToken().wait()
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                sys.exit(3)
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", SIGINT_PRELUDE + code],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(TIMEOUT)
        assert out.strip() == "interrupted"
        assert proc.returncode == 3


class TestCallbacks:
    def test_callbacks_run_once_in_order_in_cancelling_thread(self) -> None:
        """Callbacks run once each, in registration order, in the cancelling thread."""
        token = CancelToken()
        calls: list[tuple[int, threading.Thread]] = []

        def record(i: int) -> None:
            calls.append((i, threading.current_thread()))

        for i in range(3):
            token.add_callback(functools.partial(record, i))

        def cancel_twice() -> None:
            token.cancel()
            token.cancel()

        t = spawn(cancel_twice)
        t.result(timeout=TIMEOUT)
        assert [i for i, _ in calls] == [0, 1, 2]
        assert all(thread is t for _, thread in calls)
        token._check()

    def test_callback_added_after_cancel_runs_at_once(self) -> None:
        """A callback added to a cancelled token runs immediately, in the caller."""
        token = CancelToken()
        token.cancel()
        calls: list[threading.Thread] = []
        remove = token.add_callback(lambda: calls.append(threading.current_thread()))
        assert calls == [threading.current_thread()]
        assert remove() is False

    def test_remove_before_cancel(self) -> None:
        """A removed callback does not run; remove() says whether it removed."""
        token = CancelToken()
        calls: list[str] = []
        remove = token.add_callback(lambda: calls.append("a"))
        token.add_callback(lambda: calls.append("b"))
        assert remove() is True
        assert remove() is False
        token.cancel()
        assert calls == ["b"]

    def test_raising_callbacks_are_gathered(self) -> None:
        """Every callback runs; cancel() raises a group of their exceptions."""
        token = CancelToken()
        calls: list[str] = []

        def boom(msg: str) -> Callable[[], None]:
            def callback() -> None:
                calls.append(msg)
                raise ValueError(msg)

            return callback

        token.add_callback(boom("a"))
        token.add_callback(lambda: calls.append("ok"))
        token.add_callback(boom("b"))
        with pytest.raises(ExceptionGroup, match="2 cancel callback") as info:
            token.cancel("why")
        assert calls == ["a", "ok", "b"]
        assert [str(e) for e in info.value.exceptions] == ["a", "b"]
        assert token.cancelled
        assert token.reason == "why"
        assert token.cancel() is False  # the callbacks do not run again

    def test_callback_may_use_the_token(self) -> None:
        """A callback may read and cancel its own token without deadlocking."""
        token = CancelToken()
        seen: list[object] = []
        token.add_callback(lambda: seen.append((token.cancelled, token.reason)))
        token.add_callback(lambda: seen.append(token.cancel("again")))
        token.cancel("once")
        assert seen == [(True, "once"), False]

    @pytest.mark.usefixtures("fast_switching")
    def test_concurrent_add_and_cancel_runs_each_exactly_once(
        self, stress_rng: random.Random
    ) -> None:
        """Callbacks added while another thread cancels each run exactly once."""
        for _ in range(10):
            add_while_cancelling(stress_rng, n_adders=4, per_adder=50)


def add_while_cancelling(rng: random.Random, *, n_adders: int, per_adder: int) -> None:
    token = CancelToken()
    counts = [0] * (n_adders * per_adder)
    lock = threading.Lock()
    go = threading.Barrier(n_adders + 1)

    def bump(i: int) -> None:
        with lock:
            counts[i] += 1

    def adder(a: int) -> None:
        go.wait(TIMEOUT)
        for k in range(per_adder):
            token.add_callback(functools.partial(bump, a * per_adder + k))

    threads = [spawn(adder, a) for a in range(n_adders)]
    go.wait(TIMEOUT)
    time.sleep(rng.random() * 1e-3)  # vary where the cancel lands
    token.cancel()
    for t in threads:
        t.result(timeout=TIMEOUT)
    assert counts == [1] * (n_adders * per_adder)
    token._check()


class TestChildren:
    def test_parent_cancel_reaches_child_not_reverse(self) -> None:
        """Cancelling a parent cancels its children; a child does not cancel up."""
        parent = CancelToken()
        a, b = parent.child(), parent.child()
        grandchild = a.child()
        b.cancel("b only")
        assert not parent.cancelled
        assert not a.cancelled
        parent.cancel("all")
        assert a.reason == "all"
        assert grandchild.reason == "all"
        assert b.reason == "b only"

    def test_child_of_cancelled_parent_is_cancelled(self) -> None:
        """A child made from a cancelled token starts cancelled, with its reason."""
        parent = CancelToken()
        parent.cancel("gone")
        child = parent.child()
        assert child.cancelled
        assert child.reason == "gone"
        child._check()

    def test_collected_child_leaves_no_link(self) -> None:
        """A garbage-collected child is removed from its parent's callbacks."""
        parent = CancelToken()
        for _ in range(100):
            parent.child()
        gc.collect()
        assert parent._callbacks == {}

    def test_a_collection_inside_the_parents_lock_does_not_deadlock(self) -> None:
        """A child collected while this thread holds its parent's lock.

        Any allocation can start a collection, including those `child()`
        makes with the parent's lock held; the collected child's link is then
        dropped without waiting for that lock, and the parent stays usable.
        """
        parent = CancelToken()
        cycle: list[object] = [parent.child()]
        cycle.append(cycle)  # the child is reachable only from a cycle
        del cycle
        collected = threading.Event()

        def collect_inside_the_lock() -> None:
            with parent._lock:  # as child() holds it around its allocations
                gc.collect()
            collected.set()

        worker = threading.Thread(target=collect_inside_the_lock, daemon=True)
        worker.start()
        worker.join(2.0)  # the worker runs no more than one collection
        assert collected.is_set(), "the collection deadlocked on the parent's lock"
        child = parent.child()  # the collected child's link is gone by now
        assert len(parent._callbacks) == 1
        parent.cancel("done")
        assert child.cancelled
        parent._check()

    def test_a_ctrl_c_in_a_collected_childs_unlinking_leaves_no_lock_held(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Ctrl-C striking as the unlinking of a collected child runs.

        CPython drops an exception raised in a weakref callback, a Ctrl-C
        included, so nothing may be left for it to undo: a Ctrl-C raised
        right after a call returns (here, on the return of the first call
        that touches the parent's lock) must not leave that lock held, or
        every later use of the parent blocks for good.
        """
        dropped: list[BaseException | None] = []
        monkeypatch.setattr(
            sys, "unraisablehook", lambda u: dropped.append(u.exc_value)
        )
        parent = CancelToken()
        child = parent.child()

        def profile(frame: Any, event: str, arg: Any) -> None:
            if (
                event == "c_return"
                and frame.f_code.co_name == "unlink_collected"
                and getattr(arg, "__self__", None) is parent._lock
            ):
                sys.setprofile(None)
                raise KeyboardInterrupt

        sys.setprofile(profile)
        try:
            del child  # its weakref callback runs here, and is interrupted
        finally:
            sys.setprofile(None)
        assert all(isinstance(e, KeyboardInterrupt) for e in dropped)
        done = threading.Event()

        def use_the_parent() -> None:
            parent.child()
            parent.cancel("done")
            done.set()

        worker = threading.Thread(target=use_the_parent, daemon=True)
        worker.start()
        worker.join(2.0)
        stuck = not done.is_set()
        if stuck:
            parent._lock.release()  # lets the worker end
            worker.join(TIMEOUT)
        assert not stuck, "the parent's lock was left held by the interrupted unlink"
        parent._check()

    def test_closed_and_cancelled_children_are_unlinked(self) -> None:
        """close() and cancel() detach a child; the parent then no longer reaches it."""
        parent = CancelToken()
        closed, cancelled, linked = parent.child(), parent.child(), parent.child()
        closed.close()
        closed.close()  # idempotent
        cancelled.cancel()
        assert len(parent._callbacks) == 1
        parent.cancel()
        assert not closed.cancelled
        assert linked.cancelled
        for token in (parent, closed, cancelled, linked):
            token._check()

    def test_child_callback_errors_reach_parent_cancel(self) -> None:
        """Errors of a child's callbacks come out of the parent's cancel()."""
        parent = CancelToken()
        child = parent.child()

        def fail() -> None:
            raise KeyError("child callback")

        child.add_callback(fail)
        with pytest.raises(ExceptionGroup, match="1 cancel callback") as info:
            parent.cancel()
        (inner,) = info.value.exceptions
        assert isinstance(inner, ExceptionGroup)
        assert isinstance(inner.exceptions[0], KeyError)
        assert child.cancelled

    def test_grandchild_of_dropped_child_is_cancelled(self) -> None:
        """root.child().child() is reached by root.cancel() (issue 10, #4)."""
        root = CancelToken()
        grandchild = root.child().child()  # the middle token is not kept
        gc.collect()
        root.cancel("all")
        assert grandchild.cancelled
        assert grandchild.reason == "all"

    def test_chain_of_dropped_tokens_is_collected_with_its_leaf(self) -> None:
        """A leaf keeps its ancestors alive, and nothing more: dropping it frees all."""
        root = CancelToken()
        leaf = root.child().child().child()
        gc.collect()
        assert len(root._callbacks) == 1
        del leaf
        gc.collect()
        assert root._callbacks == {}


class TestDeadlines:
    def test_after_expires(self) -> None:
        """A token made with after() is cancelled once its deadline passes."""
        token = CancelToken.after(0.05)
        assert token.deadline is not None
        assert not token.cancelled
        start = time.monotonic()
        assert token.wait(TIMEOUT) is True
        assert time.monotonic() - start >= 0.04
        assert token.reason == DEADLINE_REASON
        with pytest.raises(Cancelled, match="deadline expired"):
            token.raise_if_cancelled()
        token._check()

    def test_zero_or_negative_is_already_expired(self) -> None:
        """after(0) and after(-1) give tokens that are already cancelled."""
        assert CancelToken.after(0).cancelled
        assert CancelToken.after(-1).wait(0) is True

    def test_wait_timeout_shorter_than_deadline(self) -> None:
        """wait(timeout) still returns False when the timeout comes first."""
        token = CancelToken.after(TIMEOUT)
        assert token.wait(0.01) is False
        assert not token.cancelled

    def test_child_inherits_earlier_deadline(self) -> None:
        """A child's deadline is the earlier of its own and its parent's."""
        parent = CancelToken.after(100)
        assert parent.deadline is not None
        assert parent.child().deadline == parent.deadline
        short = parent.child(timeout=1)
        assert short.deadline is not None
        assert short.deadline < parent.deadline
        assert CancelToken().child(timeout=0).cancelled

    def test_callback_fires_at_deadline_without_polling(self) -> None:
        """A callback on a deadline token runs at the deadline with nobody polling."""
        token = CancelToken.after(0.05)
        fired = threading.Event()
        token.add_callback(fired.set)
        assert fired.wait(TIMEOUT)
        assert token.reason == DEADLINE_REASON

    def test_deadline_thread_ends_with_token(self) -> None:
        """The deadline thread ends when its token is cancelled or collected."""
        before = len(deadline_threads())
        cancelled = CancelToken.after(100)
        cancelled.add_callback(lambda: None)
        collected = CancelToken.after(100)
        collected.add_callback(lambda: None)
        assert len(deadline_threads()) == before + 2
        cancelled.cancel()
        del collected
        gc.collect()
        end = time.monotonic() + TIMEOUT
        while len(deadline_threads()) > before and time.monotonic() < end:
            time.sleep(0.01)
        assert len(deadline_threads()) == before

    def test_no_thread_without_callbacks(self) -> None:
        """A deadline alone starts no thread; the checks compare clocks."""
        before = len(deadline_threads())
        token = CancelToken.after(100)
        token.child().add_callback(lambda: None)  # the child has the deadline too
        assert len(deadline_threads()) == before + 1
        del token
        gc.collect()

    def test_deadline_callback_errors_go_to_excepthook(
        self, reported: list[Any]
    ) -> None:
        """A callback failing at a deadline is reported through excepthook."""
        token = CancelToken.after(0.02)

        def fail() -> None:
            raise OSError("at deadline")

        token.add_callback(fail)
        token.wait(TIMEOUT)
        end = time.monotonic() + TIMEOUT
        while not reported and time.monotonic() < end:
            time.sleep(0.01)
        assert len(reported) == 1
        assert isinstance(reported[0].exc_value, OSError)


class TestWithThreads:
    @pytest.mark.stress
    @pytest.mark.usefixtures("fast_switching")
    def test_children_made_and_collected_everywhere_leave_only_live_links(
        self,
    ) -> None:
        """Threads make children of one parent while collections free others.

        With the collection threshold low, collections start inside
        `child()` with the parent's lock held, in this thread or another.
        Nothing hangs, and once the dropped children are collected the parent
        links exactly the live ones.
        """
        parent = CancelToken()
        kept: list[list[CancelToken]] = [[] for _ in range(4)]

        def make(mine: list[CancelToken]) -> None:
            for i in range(300):
                child = parent.child()
                if i % 30 == 0:
                    mine.append(child)
                else:
                    cycle: list[object] = [child]
                    cycle.append(cycle)  # freed only by a collection

        old = gc.get_threshold()
        gc.set_threshold(5, 1, 1)
        try:
            threads = [ResultThread(target=make, args=(k,)) for k in kept]
            for t in threads:
                t.start()
            for t in threads:
                t.result(timeout=TIMEOUT)
        finally:
            gc.set_threshold(*old)
        gc.collect()
        last = parent.child()  # drops any link left for it
        live = [c for mine in kept for c in mine]
        assert len(parent._callbacks) == len(live) + 1
        parent.cancel("done")
        assert last.cancelled
        assert all(c.cancelled for c in live)
        parent._check()

    def test_result_thread_stops_on_cancel(self) -> None:
        """A ResultThread target given a token stops when it is cancelled."""

        def worker(token: CancelToken, started: threading.Event) -> int:
            n = 0
            started.set()
            while not token.wait(0.001):
                n += 1
            token.raise_if_cancelled()
            return n

        token = CancelToken()
        started = threading.Event()
        t = ResultThread(target=worker, args=(token, started))
        t.start()
        assert started.wait(TIMEOUT)
        token.cancel("done")
        with pytest.raises(Cancelled, match="done"):
            t.result(timeout=TIMEOUT)

    @pytest.mark.parametrize("pool_type", [WorkerPool, ThreadPoolExecutor])
    def test_pool_tasks_share_a_token(self, pool_type: type[Executor]) -> None:
        """Tasks of a WorkerPool (or any executor) stop on a shared token."""
        token = CancelToken()
        started = threading.Barrier(5)

        def task(i: int) -> int:
            started.wait(TIMEOUT)
            token.wait(TIMEOUT)
            token.raise_if_cancelled()
            return i

        with pool_type(max_workers=4) as pool:  # type: ignore[call-arg]
            futures = [pool.submit(task, i) for i in range(4)]
            started.wait(TIMEOUT)
            token.cancel("shutdown")
            for f in futures:
                assert isinstance(f.exception(timeout=TIMEOUT), Cancelled)


class TokenMachine(RuleBasedStateMachine):
    """A token against a model: a flag, a reason and a set of armed callbacks."""

    callbacks = Bundle("callbacks")

    def __init__(self) -> None:
        super().__init__()
        self.token = CancelToken()
        self.model_cancelled = False
        self.model_reason: object = None
        self.fired: list[int] = []
        self.armed: set[int] = set()
        self.expected_fired: list[int] = []
        self.next_id = 0
        # (child, still linked, made from a cancelled parent)
        self.children: list[tuple[CancelToken, bool, bool]] = []

    @rule(target=callbacks)
    def add(self) -> tuple[int, Callable[[], bool]]:
        i = self.next_id
        self.next_id += 1
        remove = self.token.add_callback(lambda: self.fired.append(i))
        if self.model_cancelled:
            self.expected_fired.append(i)
        else:
            self.armed.add(i)
        return i, remove

    @rule(entry=consumes(callbacks))
    def remove(self, entry: tuple[int, Callable[[], bool]]) -> None:
        i, remove = entry
        assert remove() is (i in self.armed)
        self.armed.discard(i)

    @rule(reason=st.one_of(st.none(), st.integers(0, 3)))
    def cancel(self, reason: int | None) -> None:
        assert self.token.cancel(reason) is (not self.model_cancelled)
        if not self.model_cancelled:
            self.model_cancelled = True
            self.model_reason = reason
            self.expected_fired.extend(sorted(self.armed))
            self.armed.clear()

    @rule(close=st.booleans())
    def child(self, close: bool) -> None:
        child = self.token.child()
        if close:
            child.close()
        self.children.append((child, not close, self.model_cancelled))

    @rule(depth=st.integers(2, 4))
    def descendant(self, depth: int) -> None:
        # Only the leaf is kept: the tokens in between, freed by reference
        # counting as soon as they are dropped, must still link it.
        leaf = self.token
        for _ in range(depth):
            leaf = leaf.child()
        self.children.append((leaf, True, self.model_cancelled))

    @invariant()
    def matches_model(self) -> None:
        assert self.token.cancelled is self.model_cancelled
        assert self.token.reason == self.model_reason
        assert self.fired == self.expected_fired
        for child, linked, born_cancelled in self.children:
            assert child.cancelled is (
                born_cancelled or (linked and self.model_cancelled)
            )
            child._check()
        self.token._check()


TestTokenModel = TokenMachine.TestCase


def make_children_while_cancelling(rng: random.Random) -> None:
    parent = CancelToken()
    go = threading.Barrier(5)

    def maker() -> list[CancelToken]:
        go.wait(TIMEOUT)
        return [parent.child() for _ in range(200)]

    threads = [spawn(maker) for _ in range(4)]
    go.wait(TIMEOUT)
    time.sleep(rng.random() * 2e-3)  # vary where the cancel lands
    parent.cancel("stop")
    made = [c for t in threads for c in t.result(timeout=TIMEOUT)]
    assert len(made) == 800
    assert all(c.cancelled and c.reason == "stop" for c in made)
    parent._check()


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
def test_stress_children_and_cancel(stress_rng: random.Random) -> None:
    """Children made while the parent is cancelled all end up cancelled."""
    for _ in range(5):
        make_children_while_cancelling(stress_rng)


class TestInterruptInCallbacks:
    def test_keyboard_interrupt_is_raised_as_is(self) -> None:
        """A KeyboardInterrupt during callbacks is raised unwrapped, after all ran."""
        token = CancelToken()
        calls: list[str] = []

        def interrupted() -> None:
            calls.append("interrupted")
            raise KeyboardInterrupt

        def failing() -> None:
            calls.append("failing")
            raise ValueError("also")

        token.add_callback(interrupted)
        token.add_callback(failing)
        with pytest.raises(KeyboardInterrupt) as info:
            token.cancel()
        assert calls == ["interrupted", "failing"]
        assert info.value.__notes__ == [
            "cancel callbacks also raised: ValueError: also"
        ]
        assert token.cancelled


def _blocked(release: threading.Event) -> ResultThread[bool]:
    """A thread that runs until `release` is set (bounded by TIMEOUT)."""
    return spawn(release.wait, TIMEOUT)


class TestCancellableWaits:
    """A wait made while a token is in force raises Cancelled when it is cancelled."""

    def test_result_with_explicit_token(self) -> None:
        """result(cancel=token) raises Cancelled with the token's reason."""
        release = threading.Event()
        t = _blocked(release)
        token = CancelToken()
        threading.Timer(0.05, token.cancel, ("stop",)).start()
        with pytest.raises(Cancelled, match="stop"):
            t.result(timeout=TIMEOUT, cancel=token)
        assert token._callbacks == {}
        release.set()
        assert t.result(timeout=TIMEOUT) is True

    def test_exception_with_bound_token(self) -> None:
        """exception() of a waiter with a bound token raises Cancelled."""
        release = threading.Event()
        t = _blocked(release)
        token = CancelToken()
        threading.Timer(0.05, token.cancel).start()
        with bind_token(token), pytest.raises(Cancelled):
            t.exception(timeout=TIMEOUT)
        release.set()
        assert t.exception(timeout=TIMEOUT) is None

    def test_already_cancelled_token_raises_before_blocking(self) -> None:
        """A wait that would block raises at once if the token is cancelled."""
        release = threading.Event()
        t = _blocked(release)
        token = CancelToken()
        token.cancel()
        start = time.monotonic()
        with pytest.raises(Cancelled):
            t.result(timeout=TIMEOUT, cancel=token)
        assert time.monotonic() - start < TIMEOUT / 2
        release.set()

    def test_outcome_that_exists_wins_over_cancellation(self) -> None:
        """A wait that need not block returns the outcome even when cancelled."""
        t = spawn(int, "7")
        assert t.result(timeout=TIMEOUT) == 7
        token = CancelToken()
        token.cancel()
        assert t.result(cancel=token) == 7
        with bind_token(token):
            assert t.result() == 7

    def test_timeout_still_applies(self) -> None:
        """With a token that is not cancelled, the timeout still raises TimeoutError."""
        release = threading.Event()
        t = _blocked(release)
        token = CancelToken()
        with pytest.raises(TimeoutError):
            t.result(timeout=0.05, cancel=token)
        assert token._callbacks == {}
        release.set()

    def test_deadline_token_ends_the_wait(self) -> None:
        """A token with a deadline ends a result() wait when the deadline passes."""
        release = threading.Event()
        t = _blocked(release)
        start = time.monotonic()
        with pytest.raises(Cancelled, match=DEADLINE_REASON):
            t.result(timeout=TIMEOUT, cancel=CancelToken.after(0.05))
        assert 0.04 <= time.monotonic() - start < TIMEOUT / 2
        release.set()
        assert t.result(timeout=TIMEOUT) is True

    def test_token_wait_interrupted_by_another_token(self) -> None:
        """token.wait(cancel=other) raises Cancelled when `other` is cancelled."""
        token, other = CancelToken(), CancelToken()
        threading.Timer(0.05, other.cancel, ("other",)).start()
        with pytest.raises(Cancelled, match="other"):
            token.wait(TIMEOUT, cancel=other)
        assert not token.cancelled
        assert token._callbacks == {}
        assert other._callbacks == {}

    def test_token_wait_on_its_own_bound_token_returns_true(self) -> None:
        """Waiting on the bound token itself returns True, as before."""
        token = CancelToken()
        threading.Timer(0.05, token.cancel).start()
        with bind_token(token):
            assert token.wait(TIMEOUT) is True

    def test_token_wait_of_a_cancelled_child_returns_true(self) -> None:
        """A child of the bound token is cancelled with it: wait() returns True."""
        parent = CancelToken()
        child = parent.child()
        threading.Timer(0.05, parent.cancel).start()
        with bind_token(parent):
            assert child.wait(TIMEOUT) is True

    def test_binding_is_per_thread_and_nests(self) -> None:
        """bind_token binds for the calling thread only, and restores on exit."""
        a, b = CancelToken(), CancelToken()
        assert current_token() is None
        with bind_token(a):
            assert current_token() is a
            assert spawn(current_token).result(timeout=TIMEOUT) is None
            with bind_token(b):
                assert current_token() is b
            assert current_token() is a
        assert current_token() is None

    def test_callback_errors_do_not_stop_the_wake_up(self) -> None:
        """A cancel callback raising BaseException does not keep a waiter asleep."""
        release = threading.Event()
        t = _blocked(release)
        token = CancelToken()

        def bad() -> None:
            raise SystemExit(3)

        token.add_callback(bad)
        waiting = spawn(t.result, TIMEOUT, cancel=token)
        while token._callbacks.keys() == {0}:
            time.sleep(0.001)  # until the waiter has registered
        with pytest.raises(BaseExceptionGroup):
            token.cancel()
        assert isinstance(waiting.exception(timeout=TIMEOUT), Cancelled)
        release.set()

    def test_pool_future_in_group_member_is_cancelled(self) -> None:
        """A group member blocked in a WorkerPool future's result() wakes up."""
        release = threading.Event()
        with WorkerPool(max_workers=1) as pool:
            future = pool.submit(release.wait, TIMEOUT)
            with ThreadGroup(fail_fast=False) as g:
                member = g.spawn(future.result, TIMEOUT)
                # Whether the member is waiting yet or not, it raises.
                g.cancel("stop")
            assert isinstance(member.exception(timeout=0), Cancelled)
            release.set()
            assert future.result(timeout=TIMEOUT) is True

    def test_group_member_waits_are_cancelled(self) -> None:
        """Members blocked in result(), join_all() and token.wait() all wake up."""
        release = threading.Event()
        outside = _blocked(release)
        other = CancelToken()
        stubborn_release = threading.Event()
        started = threading.Barrier(4)

        def wait_result() -> bool:
            started.wait(TIMEOUT)
            return outside.result(timeout=TIMEOUT)

        def wait_token() -> bool:
            started.wait(TIMEOUT)
            return other.wait(TIMEOUT)

        with ThreadGroup(fail_fast=False) as g:
            # Ignores the token, so that join_all() has someone to wait for.
            stubborn = g.spawn(stubborn_release.wait, TIMEOUT)
            members = [g.spawn(wait_result), g.spawn(wait_token)]

            def wait_all() -> bool:
                started.wait(TIMEOUT)
                return g.join_all(TIMEOUT)

            members.append(g.spawn(wait_all))
            started.wait(TIMEOUT)
            start = time.monotonic()
            g.cancel("stop")
            for m in members:
                m.join(TIMEOUT)
            elapsed = time.monotonic() - start
            stubborn_release.set()
        assert elapsed < TIMEOUT / 2
        for m in members:
            assert isinstance(m.exception(timeout=0), Cancelled), m.name
        assert stubborn.result(timeout=0) is True
        release.set()

    def test_added_threads_run_with_the_group_token(self) -> None:
        """Unstarted threads given to add() get the group's token bound too."""
        seen: list[CancelToken | None] = []
        with ThreadGroup() as g:
            g.add(ResultThread(target=lambda: seen.append(current_token())))
            g.add(threading.Thread(target=lambda: seen.append(current_token())))
            g.spawn(lambda: seen.append(current_token()))
        assert seen == [g.token] * 3
        assert current_token() is None

    def test_owner_and_plain_threads_are_not_bound(self) -> None:
        """Only members are bound: not the owner, nor threads members spawn."""
        with ThreadGroup() as g:
            assert current_token() is None
            inner = g.spawn(lambda: spawn(current_token).result(timeout=TIMEOUT))
        assert inner.result(timeout=0) is None

    def test_members_joining_each_other_are_woken_by_cancel(self) -> None:
        """Members in g.join_all(), each waiting for the other, stop on cancel."""
        started = threading.Barrier(3)

        def join_everyone(g: ThreadGroup) -> bool:
            started.wait(TIMEOUT)
            return g.join_all(TIMEOUT)

        start = time.monotonic()
        with ThreadGroup(fail_fast=False) as g:
            a = g.spawn(join_everyone, g)
            b = g.spawn(join_everyone, g)
            started.wait(TIMEOUT)
            g.cancel("deadlock broken")
        assert time.monotonic() - start < TIMEOUT / 2
        # Each either raised Cancelled or returned True: a member's
        # join_all() skips members that are themselves waiting for the group,
        # so both may have returned before the cancel (seen on 3.13t).
        outcomes = [a.exception(timeout=0), b.exception(timeout=0)]
        for t, o in zip((a, b), outcomes, strict=True):
            assert isinstance(o, Cancelled) or t.result(timeout=0) is True

    def test_join_all_with_explicit_token(self) -> None:
        """join_all(cancel=token) raises Cancelled when the token is cancelled."""
        release = threading.Event()
        token = CancelToken()
        with ThreadGroup() as g:
            g.spawn(release.wait, TIMEOUT)
            threading.Timer(0.05, token.cancel).start()
            with pytest.raises(Cancelled):
                g.join_all(TIMEOUT, cancel=token)
            release.set()

    @pytest.mark.stress
    def test_cancel_racing_the_start_of_a_wait(
        self, stress_rng: random.Random, fast_switching: None
    ) -> None:
        """However cancel() and a wait interleave, the waiter raises Cancelled."""
        del fast_switching
        release = threading.Event()
        t = _blocked(release)
        for _ in range(200):
            token = CancelToken()
            barrier = threading.Barrier(2)

            def waiter(
                token: CancelToken = token, barrier: threading.Barrier = barrier
            ) -> None:
                barrier.wait(TIMEOUT)
                t.result(timeout=TIMEOUT, cancel=token)

            w = spawn(waiter)
            barrier.wait(TIMEOUT)
            if stress_rng.random() < 0.5:
                time.sleep(0)
            token.cancel()
            assert isinstance(w.exception(timeout=TIMEOUT), Cancelled)
            assert token._callbacks == {}
        release.set()
        t.result(timeout=TIMEOUT)

    @pytest.mark.subprocess
    def test_ctrl_c_during_a_cancellable_wait(self) -> None:
        """Ctrl-C in a cancellable wait raises KeyboardInterrupt, leaving no trace."""
        code = SIGINT_PRELUDE + textwrap.dedent(
            """
            import _thread, threading
            from safethreads import CancelToken, spawn

            release = threading.Event()
            t = spawn(release.wait, 20)
            token = CancelToken()
            threading.Timer(0.2, _thread.interrupt_main).start()
            try:
                t.result(timeout=20, cancel=token)
            except KeyboardInterrupt as exc:
                import traceback
                frames = traceback.extract_tb(exc.__traceback__)
                print("interrupted", len(token._callbacks), [f.name for f in frames])
            release.set()
            print("result", t.result(timeout=20))
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.stdout.splitlines() == [
            "interrupted 0 ['<module>', 'result']",
            "result True",
        ], proc.stderr


def _cancel_once_parked(token: CancelToken, then: Callable[[], object]) -> None:
    """Run `then()` once a waiter has registered its wake-up on `token`."""
    deadline = time.monotonic() + TIMEOUT
    while not token._callbacks and time.monotonic() < deadline:
        time.sleep(0.0005)  # waiting for the waiter to park, not for a result
    then()


class TestCancellableWaitModel:
    """Cancellable result() against a sequential model of who came first."""

    @given(
        finish_first=st.booleans(),
        cancel_when=st.sampled_from(["before", "during", "never"]),
        explicit=st.booleans(),
        method=st.sampled_from(["result", "exception"]),
    )
    def test_outcome_or_cancelled_as_the_model_says(
        self, finish_first: bool, cancel_when: str, explicit: bool, method: str
    ) -> None:
        """Finished first: the outcome; else cancelled: Cancelled; else the value."""
        go = threading.Event()
        t = spawn(go.wait, TIMEOUT)
        token = CancelToken()
        if finish_first:
            go.set()
            t.join(TIMEOUT)
        if cancel_when == "before":
            token.cancel("before")
        helper = None
        if not finish_first and cancel_when != "before":
            then = token.cancel if cancel_when == "during" else go.set
            helper = spawn(_cancel_once_parked, token, then)
        wait = t.result if method == "result" else t.exception
        expect_cancelled = not finish_first and cancel_when != "never"
        try:
            if explicit:
                got = wait(TIMEOUT, cancel=token)
            else:
                with bind_token(token):
                    got = wait(TIMEOUT)
        except Cancelled:
            assert expect_cancelled
        else:
            assert not expect_cancelled
            assert got is (True if method == "result" else None)
        assert token._callbacks == {}
        go.set()
        if helper is not None:
            helper.result(timeout=TIMEOUT)
        assert t.result(timeout=TIMEOUT) is True
        assert t._parkers is None


class TestCtrlCAtEveryLine:
    """Ctrl-C striking at any line of the library leaves no trace behind."""

    def test_cancellable_wait_leaves_no_callback(self) -> None:
        """An interrupted result(cancel=...) unregisters its wake-up."""
        release = threading.Event()
        t = _blocked(release)
        try:
            for k in range(1, 300):
                token = CancelToken()
                struck = interrupt_at_line(
                    k,
                    functools.partial(
                        _ignore_timeout,
                        functools.partial(t.result, timeout=0.01, cancel=token),
                    ),
                )
                assert token._callbacks == {}, k
                assert not t._parkers, k
                token._check()
                if not struck:
                    break
        finally:
            release.set()
        t.result(timeout=TIMEOUT)

    def test_token_wait_leaves_no_callback(self) -> None:
        """An interrupted CancelToken.wait(cancel=...) unregisters its wake-ups."""
        for k in range(1, 300):
            token, other = CancelToken(), CancelToken()
            struck = interrupt_at_line(
                k, functools.partial(token.wait, 0.01, cancel=other)
            )
            assert token._callbacks == {}, k
            assert other._callbacks == {}, k
            if not struck:
                break

    def test_interrupted_cancel_still_wakes_every_waiter(self) -> None:
        """Waiters on a token whose cancel() was interrupted still wake up."""
        release = threading.Event()
        t = _blocked(release)
        try:
            for k in range(1, 300):
                token = CancelToken()
                child = token.child()
                waiters: list[ResultThread[Any]] = [
                    spawn(_outcome_or_cancelled, t, token),
                    spawn(_outcome_or_cancelled, t, child),
                    spawn(child.wait, TIMEOUT),
                ]
                _wait_for_callbacks(token, 2)  # one waiter and the child link
                _wait_for_callbacks(child, 1)
                struck = interrupt_at_line(k, token.cancel)
                if not token.cancelled:  # struck before it took effect: again
                    token.cancel()
                assert [w.result(timeout=TIMEOUT) for w in waiters] == [
                    "cancelled",
                    "cancelled",
                    True,
                ], k
                token._check()
                child._check()
                if not struck:
                    break
        finally:
            release.set()
        t.result(timeout=TIMEOUT)

    def test_bind_token_is_undone(self) -> None:
        """An interrupted bind_token block leaves the previous binding."""
        token = CancelToken()

        def bound() -> None:
            with bind_token(token):
                pass

        for k in range(1, 100):
            struck = interrupt_at_line(k, bound)
            assert current_token() is None, k
            if not struck:
                break


def _ignore_timeout(fn: Callable[[], object]) -> None:
    with contextlib.suppress(TimeoutError):
        fn()


def _outcome_or_cancelled(t: ResultThread[Any], token: CancelToken) -> str:
    try:
        t.result(timeout=TIMEOUT, cancel=token)
    except Cancelled:
        return "cancelled"
    return "outcome"


def _wait_for_callbacks(token: CancelToken, n: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while len(token._callbacks) < n and time.monotonic() < deadline:
        time.sleep(0.0005)  # waiting for the waiters to park, not for a result
    assert len(token._callbacks) >= n


def test_wait_cancel_must_be_a_token() -> None:
    """CancelToken.wait(cancel=...) refuses what is not a token, at the call."""
    token = CancelToken()
    token.cancel()
    with pytest.raises(TypeError, match="cancel must be a CancelToken or None"):
        token.wait(0, cancel=3)  # type: ignore[arg-type]


def test_ctrl_c_while_a_token_is_collected_is_not_swallowed() -> None:
    """Ctrl-C striking while a token is freed reaches the program.

    Python ignores (prints) an exception raised in `__del__`, so library code
    run when a token is freed would swallow a Ctrl-C that strikes there.
    """
    for k in range(1, 50):
        tokens = [CancelToken.after(100)]
        tokens[0].add_callback(lambda: None)  # with a deadline thread
        struck = False
        raised = False
        count = 0

        def tracer(frame: Any, event: str, arg: Any, k: int = k) -> Any:
            nonlocal struck, count
            del arg
            library = "safethreads" in frame.f_code.co_filename
            if library and event in ("call", "line"):
                count += 1
                if count == k and not struck:
                    struck = True
                    raise KeyboardInterrupt
            return tracer

        sys.settrace(tracer)
        try:
            tokens.clear()
        except KeyboardInterrupt:
            raised = True
        finally:
            sys.settrace(None)
        assert struck == raised, k
        if not struck:
            break
