"""LockedDict is linearizable: concurrent histories replay on a sequential dict."""

from __future__ import annotations

import operator
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st

from linearizability import Call, linearize
from safethreads import MISSING, LockedDict, Missing, ResultThread

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping, Sequence

TIMEOUT = 10.0  # every wait in these tests is bounded

Op = tuple[Any, ...]
State = tuple[tuple[str, int], ...]  # the model's items, in insertion order
EMPTY: State = ()


def bump(n: int | Missing) -> int:
    return 1 if n is MISSING else n + 1


def decrement(n: int) -> int | Missing:
    return n - 1 if n > 1 else MISSING


def expire(m: MutableMapping[str, int], threshold: int) -> tuple[str, ...]:
    """The expiry loop: iterate and write in one pass (a transaction on m)."""
    removed = []
    for k, v in m.items():
        if v >= threshold:
            del m[k]
            removed.append(k)
        else:
            m[k] = v + 1
    return tuple(removed)


def run_op(d: LockedDict[str, int], op: Op) -> object:  # noqa: C901, PLR0911, PLR0912
    """Perform `op` on a LockedDict; return a comparable result."""
    name, *args = op
    if name == "get":
        return d.get(args[0])
    if name == "set":
        d[args[0]] = args[1]
        return None
    if name == "pop":
        return d.pop(args[0], None)
    if name == "contains":
        return args[0] in d
    if name == "len":
        return len(d)
    if name == "setdefault":
        return d.setdefault(args[0], args[1])
    if name == "get_or_set":
        return d.get_or_set(args[0], lambda: args[1])
    if name == "incr":
        return d.compute(args[0], bump)
    if name == "cas":
        return d.compare_and_set(args[0], args[1], args[2])
    if name == "cad":
        return d.compare_and_delete(args[0], args[1])
    if name == "items":
        return tuple(d.items())
    if name == "update":
        d.update(args[0])
        return None
    if name == "popitem":
        try:
            return d.popitem()
        except KeyError:
            return "empty"
    if name == "merge":
        return d.merge(args[0], args[1], operator.add)
    if name == "cip":
        return d.compute_if_present(args[0], decrement)
    if name == "remove_if":
        return tuple(d.remove_if(lambda _, v: v >= args[0]))
    if name == "expire":  # iteration inside locked() while the block writes
        with d.locked() as m:
            return expire(m, args[0])
    if name == "transfer":  # a multi-step transaction
        source, target = args
        with d.locked() as m:
            moved = (m.get(source, 0), m.get(target, 0))
            m[source] = moved[0] - 1
            m[target] = m.get(target, 0) + 1
            return moved
    raise AssertionError(f"unknown operation {op!r}")


def model_op(m: dict[str, int], op: Op) -> object:  # noqa: C901, PLR0911, PLR0912
    """Perform `op` on a plain dict, sequentially; the specification."""
    name, *args = op
    if name == "get":
        return m.get(args[0])
    if name == "set":
        m[args[0]] = args[1]
        return None
    if name == "pop":
        return m.pop(args[0], None)
    if name == "contains":
        return args[0] in m
    if name == "len":
        return len(m)
    if name in {"setdefault", "get_or_set"}:
        return m.setdefault(args[0], args[1])
    if name == "incr":
        m[args[0]] = m.get(args[0], 0) + 1
        return m[args[0]]
    if name == "cas":
        key, expected, new = args
        if m.get(key, MISSING) == expected:
            m[key] = new
            return True
        return False
    if name == "cad":
        key, expected = args
        if key in m and m[key] == expected:
            del m[key]
            return True
        return False
    if name == "items":
        return tuple(m.items())
    if name == "update":
        m.update(args[0])
        return None
    if name == "popitem":
        return m.popitem() if m else "empty"
    if name == "merge":
        m[args[0]] = m[args[0]] + args[1] if args[0] in m else args[1]
        return m[args[0]]
    if name == "cip":
        if args[0] not in m:
            return MISSING
        new = decrement(m[args[0]])
        if new is MISSING:
            del m[args[0]]
        else:
            m[args[0]] = new
        return new
    if name == "remove_if":
        removed = tuple((k, v) for k, v in m.items() if v >= args[0])
        for k, _ in removed:
            del m[k]
        return removed
    if name == "expire":  # the model iterates an explicit copy
        expired: list[str] = []
        for k, v in list(m.items()):
            if v >= args[0]:
                del m[k]
                expired.append(k)
            else:
                m[k] = v + 1
        return tuple(expired)
    if name == "transfer":
        source, target = args
        moved = (m.get(source, 0), m.get(target, 0))
        m[source] = moved[0] - 1
        m[target] = m.get(target, 0) + 1
        return moved
    raise AssertionError(f"unknown operation {op!r}")


def apply(state: State, op: Op) -> tuple[object, State]:
    m = dict(state)
    result = model_op(m, op)
    return result, tuple(m.items())


def record(
    programs: Sequence[Sequence[Op]], perform: Callable[[Op], object]
) -> list[Call[Op]]:
    """Run each program in its own thread; return the timed history."""
    start = threading.Barrier(len(programs), timeout=TIMEOUT)

    def worker(index: int) -> list[Call[Op]]:
        calls = []
        start.wait()
        for op in programs[index]:
            invoked = time.perf_counter_ns()
            result = perform(op)
            responded = time.perf_counter_ns()
            calls.append(Call(index, op, invoked, responded, result))
        return calls

    threads = [ResultThread(target=worker, args=(i,)) for i in range(len(programs))]
    for t in threads:
        t.start()
    return [call for t in threads for call in t.result(timeout=TIMEOUT)]


# --- the generated concurrent programs ----------------------------------------

key = st.sampled_from(["a", "b"])
value = st.integers(0, 2)
operation = st.one_of(
    st.tuples(st.just("get"), key),
    st.tuples(st.just("set"), key, value),
    st.tuples(st.just("pop"), key),
    st.tuples(st.just("contains"), key),
    st.tuples(st.just("len")),
    st.tuples(st.just("setdefault"), key, value),
    st.tuples(st.just("get_or_set"), key, value),
    st.tuples(st.just("incr"), key),
    st.tuples(st.just("cas"), key, st.just(MISSING) | value, value),
    st.tuples(st.just("cad"), key, value),
    st.tuples(st.just("items")),
    st.tuples(st.just("update"), st.dictionaries(key, value, max_size=2)),
    st.tuples(st.just("popitem")),
    st.tuples(st.just("transfer"), key, key),
    st.tuples(st.just("merge"), key, value),
    st.tuples(st.just("cip"), key),
    st.tuples(st.just("remove_if"), value),
    st.tuples(st.just("expire"), value),
)
programs = st.lists(st.lists(operation, min_size=1, max_size=4), min_size=2, max_size=4)
initial_states = st.dictionaries(key, value, max_size=2)


class TestLinearizability:
    @settings(max_examples=100)
    @given(initial=initial_states, programs=programs)
    def test_locked_dict_histories_are_linearizable(
        self, initial: dict[str, int], programs: list[list[Op]]
    ) -> None:
        """Every recorded history of concurrent operations replays sequentially."""
        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # interleave the threads as much as possible
        try:
            for _ in range(3):
                d = LockedDict(initial)

                def perform(op: Op, d: LockedDict[str, int] = d) -> object:
                    return run_op(d, op)

                history = record(programs, perform)
                final = tuple(d.items())
                d._check()
                # The final state is observed after every call: check it too.
                last = max(c.responded for c in history) + 1
                history.append(Call(-1, ("items",), last, last + 1, final))
                order = linearize(history, tuple(initial.items()), apply)
                assert order is not None, history
        finally:
            sys.setswitchinterval(old)


class TestChecker:
    def test_accepts_sequential_history(self) -> None:
        """A history of non-overlapping calls that replays is accepted."""
        history: list[Call[Op]] = [
            Call(0, ("set", "a", 1), 0, 1, None),
            Call(1, ("get", "a"), 2, 3, 1),
            Call(0, ("incr", "a"), 4, 5, 2),
        ]
        assert linearize(history, EMPTY, apply) == history

    def test_reorders_overlapping_calls(self) -> None:
        """Overlapping calls may take effect in either order."""
        history: list[Call[Op]] = [
            Call(0, ("get", "a"), 0, 10, 5),  # saw the set that began later
            Call(1, ("set", "a", 5), 1, 2, None),
        ]
        order = linearize(history, EMPTY, apply)
        assert order == [history[1], history[0]]

    def test_rejects_real_time_violation(self) -> None:
        """A call cannot see the effect of a call that began after it returned."""
        history: list[Call[Op]] = [
            Call(0, ("get", "a"), 0, 1, 5),
            Call(1, ("set", "a", 5), 2, 3, None),
        ]
        assert linearize(history, EMPTY, apply) is None

    def test_rejects_lost_update(self) -> None:
        """Two overlapping increments cannot both return 1."""
        history: list[Call[Op]] = [
            Call(0, ("incr", "a"), 0, 10, 1),
            Call(1, ("incr", "a"), 1, 11, 1),
        ]
        assert linearize(history, EMPTY, apply) is None


class RacyDict:
    """A deliberately broken dict: compute and items are not atomic.

    `pause` runs between the read and the write (or between reading two keys),
    so a test can force the interleaving that breaks them, every time.
    """

    def __init__(self, initial: dict[str, int], pause: Callable[[], object]) -> None:
        self.data = dict(initial)
        self.pause = pause

    def compute(self, key: str, fn: Callable[[int | Missing], int]) -> int:
        old = self.data.get(key, MISSING)
        self.pause()
        new = fn(old)
        self.data[key] = new
        return new

    def items(self) -> tuple[tuple[str, int], ...]:
        first = ("a", self.data["a"])
        self.pause()
        return (first, ("b", self.data["b"]))

    def remove_if(self, threshold: int) -> tuple[tuple[str, int], ...]:
        chosen = tuple((k, v) for k, v in self.data.items() if v >= threshold)
        self.pause()
        for k, _ in chosen:
            del self.data[k]
        return chosen

    def transfer(self, source: str, target: str) -> tuple[int, int]:
        moved = (self.data[source], self.data[target])
        self.data[source] -= 1
        self.data[target] += 1
        return moved


class TestCheckerRejectsBrokenDict:
    def test_non_atomic_compute_is_rejected(self) -> None:
        """Two increments that both read before either writes are caught."""
        both_read = threading.Barrier(2, timeout=TIMEOUT)
        racy = RacyDict({}, both_read.wait)

        def perform(op: Op) -> object:
            assert op[0] == "incr"
            return racy.compute(op[1], bump)

        history = record([[("incr", "a")], [("incr", "a")]], perform)
        assert [c.result for c in history] == [1, 1]  # the update was lost
        last = max(c.responded for c in history) + 1
        history.append(Call(-1, ("get", "a"), last, last + 1, racy.data["a"]))
        assert linearize(history, EMPTY, apply) is None

    def test_locked_dict_passes_the_same_program(self) -> None:
        """The same program on a LockedDict is accepted (the control)."""
        d: LockedDict[str, int] = LockedDict()
        history = record([[("incr", "a")], [("incr", "a")]], lambda op: run_op(d, op))
        assert [c.result for c in history] in ([1, 2], [2, 1])
        assert linearize(history, EMPTY, apply) is not None

    def test_torn_snapshot_is_rejected(self) -> None:
        """A snapshot that reads one key before a transfer and one after is caught."""
        first_read = threading.Event()
        transferred = threading.Event()

        def pause() -> None:
            first_read.set()
            assert transferred.wait(TIMEOUT)

        racy = RacyDict({"a": 5, "b": 5}, pause)

        def perform(op: Op) -> object:
            if op[0] == "items":
                return racy.items()
            assert first_read.wait(TIMEOUT)
            try:
                return racy.transfer(op[1], op[2])
            finally:
                transferred.set()

        history = record([[("items",)], [("transfer", "a", "b")]], perform)
        snapshot = next(c.result for c in history if c.op == ("items",))
        assert snapshot == (("a", 5), ("b", 6))  # torn: the sum is 11, not 10
        before: State = (("a", 5), ("b", 5))
        assert linearize(history, before, apply) is None

    def test_non_atomic_remove_if_is_rejected(self) -> None:
        """A bulk removal deciding before a concurrent write lands is caught."""
        decided = threading.Event()
        written = threading.Event()

        def pause() -> None:
            decided.set()
            assert written.wait(TIMEOUT)

        racy = RacyDict({"a": 2}, pause)

        def perform(op: Op) -> object:
            if op[0] == "remove_if":
                return racy.remove_if(op[1])
            assert decided.wait(TIMEOUT)
            try:
                racy.data[op[1]] = op[2]
            finally:
                written.set()
            return None

        history = record([[("remove_if", 2)], [("set", "a", 0)]], perform)
        assert next(c.result for c in history if c.op[0] == "remove_if") == (("a", 2),)
        last = max(c.responded for c in history) + 1
        history.append(Call(-1, ("items",), last, last + 1, tuple(racy.data.items())))
        assert racy.data == {}  # the new value 0 was removed on a stale decision
        before: State = (("a", 2),)
        assert linearize(history, before, apply) is None
