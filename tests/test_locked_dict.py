"""LockedDict: dict's behaviour, atomic operations and iteration that never fails."""

from __future__ import annotations

import _thread
import copy
import inspect
import operator
import os
import pickle
import re
import signal
import textwrap
import threading
import time
import weakref
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import safethreads
from safethreads import (
    MISSING,
    LockedDict,
    LockedDictGuard,
    Missing,
    ResultThread,
    spawn,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterable

T = TypeVar("T")

TIMEOUT = 10.0  # every wait in these tests is bounded

CALLBACK_MUTATION = r"callbacks may read the dict but not change it"
GUARD_AFTER = r"used after its 'with d\.locked\(\)' block ended"
GUARD_OTHER_THREAD = r"belongs to the thread that entered"
GUARD_NOT_ENTERED = r"not active yet; use it inside 'with d\.locked\(\) as m:'"


def start(fn: Callable[..., T], *args: Any, name: str) -> ResultThread[T]:
    """Start a named ResultThread running `fn(*args)`."""
    t = ResultThread(target=fn, args=args, name=name)
    t.start()
    return t


def fail(exc: BaseException) -> NoReturn:
    raise exc


def lock_is_free(d: LockedDict[Any, Any]) -> bool:
    """Whether another thread can take `d`'s lock right now."""
    return spawn(lambda: d.snapshot() is not None).result(timeout=TIMEOUT)


class Unequal:
    """A value whose comparison raises."""

    def __eq__(self, other: object) -> bool:
        raise ArithmeticError("cannot compare")

    __hash__ = object.__hash__


class TestConstruction:
    def test_dict_constructor_forms(self) -> None:
        """Mappings, pairs and keyword arguments build the same items as dict."""
        assert LockedDict().snapshot() == {}
        assert LockedDict({"a": 1}).snapshot() == {"a": 1}
        assert LockedDict([("a", 1), ("b", 2)]).snapshot() == {"a": 1, "b": 2}
        assert LockedDict(a=1, b=2).snapshot() == {"a": 1, "b": 2}
        assert LockedDict({"a": 1}, b=2).snapshot() == {"a": 1, "b": 2}
        assert LockedDict([("a", 1)], a=3).snapshot() == {"a": 3}

    def test_from_locked_dict_is_a_copy(self) -> None:
        """Building from a LockedDict copies its items; the two stay independent."""
        src = LockedDict(a=1)
        dst = LockedDict(src, b=2)
        src["a"] = 5
        assert dst.snapshot() == {"a": 1, "b": 2}

    def test_fromkeys(self) -> None:
        """fromkeys maps every key to the same value (None by default)."""
        assert LockedDict.fromkeys("ab").snapshot() == {"a": None, "b": None}
        shared: list[int] = []
        d = LockedDict.fromkeys(["x", "y"], shared)
        assert d["x"] is d["y"] is shared

    def test_bad_input_raises_like_dict(self) -> None:
        """Bad constructor input raises dict's own errors."""
        with pytest.raises(TypeError):
            LockedDict(42)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="length"):
            LockedDict(["abc"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unhashable"):
            LockedDict([([], 1)])

    def test_not_a_dict_subclass(self) -> None:
        """LockedDict is a MutableMapping but not a dict, and is unhashable."""
        d: LockedDict[str, int] = LockedDict()
        assert isinstance(d, MutableMapping)
        assert not isinstance(d, dict)  # type: ignore[unreachable]
        with pytest.raises(TypeError, match="unhashable"):
            hash(d)

    def test_generic_alias_and_weakref(self) -> None:
        """LockedDict[K, V] subscripts at runtime; instances take weak references."""
        alias = LockedDict[str, int]
        assert alias.__origin__ is LockedDict  # type: ignore[attr-defined]
        d = alias(a=1)
        assert weakref.ref(d)() is d


class TestSingleOperations:
    def test_item_access(self) -> None:
        """Get, set, delete, in and len behave as for dict."""
        d: LockedDict[str, int] = LockedDict()
        d["a"] = 1
        d["b"] = 2
        assert d["a"] == 1
        assert "a" in d
        assert "z" not in d
        assert len(d) == 2
        assert bool(d)
        del d["a"]
        assert d.snapshot() == {"b": 2}
        d.clear()
        assert not d

    def test_missing_key_raises_key_error_with_lock_released(self) -> None:
        """A missing key raises KeyError in the caller and leaves the lock free."""
        d: LockedDict[str, int] = LockedDict()
        with pytest.raises(KeyError, match="'nope'"):
            d["nope"]
        with pytest.raises(KeyError, match="'nope'"):
            del d["nope"]
        with pytest.raises(KeyError, match="'nope'"):
            d.pop("nope")
        assert lock_is_free(d)

    def test_unhashable_key_raises_type_error_with_lock_released(self) -> None:
        """An unhashable key raises TypeError from every method; the lock is free."""
        d: LockedDict[Any, int] = LockedDict(a=1)  # dict.pop skips hashing if empty
        calls: list[Callable[[], object]] = [
            lambda: d[[]],
            lambda: d.__setitem__([], 1),
            lambda: d.__delitem__([]),
            lambda: [] in d,
            lambda: d.get([]),
            lambda: d.pop([], 0),
            lambda: d.setdefault([], 0),
            lambda: d.get_or_set([], int),
            lambda: d.compute([], lambda _: 1),
            lambda: d.compare_and_set([], MISSING, 1),
            lambda: d.compare_and_delete([], 1),
        ]
        for call in calls:
            with pytest.raises(TypeError, match="unhashable"):
                call()
        assert lock_is_free(d)
        d._check()

    def test_get_pop_setdefault(self) -> None:
        """get, pop and setdefault follow dict, defaults included."""
        d = LockedDict(a=1)
        assert d.get("a") == 1
        assert d.get("z") is None
        assert d.get("z", 7) == 7
        assert d.setdefault("a", 5) == 1
        assert d.setdefault("b", 5) == 5
        assert d.pop("a") == 1
        assert d.pop("a", 9) == 9
        assert d.snapshot() == {"b": 5}
        with pytest.raises(TypeError):
            d.pop("a", 1, 2)  # type: ignore[call-overload]

    def test_popitem_is_lifo(self) -> None:
        """popitem removes the newest item, and raises KeyError when empty."""
        d = LockedDict(a=1, b=2)
        assert d.popitem() == ("b", 2)
        assert d.popitem() == ("a", 1)
        with pytest.raises(KeyError, match="empty"):
            d.popitem()

    def test_update_forms(self) -> None:
        """update accepts a dict, a LockedDict, pairs and keyword arguments."""
        d = LockedDict(a=1)
        d.update({"b": 2})
        d.update(LockedDict(c=3))
        d.update([("d", 4)], e=5)
        d.update(f=6)
        assert d.snapshot() == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}
        d.update(d)
        assert len(d) == 6

    def test_update_with_bad_input_changes_nothing(self) -> None:
        """update reads its input first: a failure halfway adds nothing."""
        d = LockedDict(a=1)

        def pairs() -> Any:
            yield ("b", 2)
            raise LookupError("source broke")

        with pytest.raises(LookupError, match="source broke"):
            d.update(pairs())
        with pytest.raises(ValueError, match="length"):
            d.update([("c", 3), ("x",)])  # type: ignore[list-item]
        assert d.snapshot() == {"a": 1}
        assert lock_is_free(d)


class TestOperatorsAndDunders:
    def test_equality(self) -> None:
        """== compares with dicts, LockedDicts, other mappings and itself."""
        d = LockedDict(a=1, b=2)
        assert d == {"b": 2, "a": 1}
        assert {"a": 1, "b": 2} == d  # noqa: SIM300 (dict's reflected ==)
        assert d == LockedDict(b=2, a=1)
        assert d != LockedDict(a=1)
        assert d != {"a": 1}
        assert d == d  # noqa: PLR0124
        assert d != [("a", 1), ("b", 2)]
        with d.locked() as m:
            assert d == m
        nan = float("nan")
        n = LockedDict(x=nan)
        assert n == n  # noqa: PLR0124
        assert n == {"x": nan}

    def test_or_operators(self) -> None:
        """|, reflected | and |= follow dict's semantics and result types."""
        d = LockedDict(a=1, b=2)
        merged = d | {"b": 3, "c": 4}
        assert isinstance(merged, LockedDict)
        assert merged == {"a": 1, "b": 3, "c": 4}
        assert d == {"a": 1, "b": 2}
        assert (d | LockedDict(c=5)) == {"a": 1, "b": 2, "c": 5}
        reflected = {"b": 0, "z": 9} | d
        assert isinstance(reflected, LockedDict)
        assert reflected == {"b": 2, "z": 9, "a": 1}
        assert list(reflected) == ["b", "z", "a"]
        same = d
        d |= [("z", 26)]
        d |= {"y": 25}
        assert d is same
        assert d == {"a": 1, "b": 2, "z": 26, "y": 25}
        with pytest.raises(TypeError):
            d | [("q", 1)]  # type: ignore[operator]

    def test_reversed_and_order(self) -> None:
        """Insertion order is kept; reversed() yields newest first."""
        d = LockedDict([("x", 1), ("y", 2), ("z", 3)])
        assert list(d) == ["x", "y", "z"]
        assert list(reversed(d)) == ["z", "y", "x"]
        items = reversed(d.items())  # type: ignore[call-overload]
        assert list(items) == [("z", 3), ("y", 2), ("x", 1)]

    def test_repr(self) -> None:
        """repr is dict's, wrapped; a dict that contains itself prints {...}."""
        d: LockedDict[str, Any] = LockedDict(a=1)
        assert repr(d) == "LockedDict({'a': 1})"
        d["self"] = d
        assert repr(d) == "LockedDict({'a': 1, 'self': {...}})"
        assert repr(MISSING) == "MISSING"

    def test_copy_is_independent_with_own_lock(self) -> None:
        """copy(), copy.copy() and copy.deepcopy() give independent dicts."""
        inner = [1]
        d = LockedDict(a=inner)
        for shallow in (d.copy(), copy.copy(d)):
            assert isinstance(shallow, LockedDict)
            assert shallow == d
            assert shallow["a"] is inner
            assert shallow._lock is not d._lock
        deep = copy.deepcopy(d)
        assert deep == d
        assert deep["a"] is not inner
        assert deep._lock is not d._lock
        d["b"] = [2]
        assert "b" not in deep
        deep._check()

    def test_deepcopy_keeps_recursion(self) -> None:
        """A LockedDict containing itself deep-copies into one containing itself."""
        d: LockedDict[str, Any] = LockedDict()
        d["me"] = d
        clone = copy.deepcopy(d)
        assert clone["me"] is clone

    def test_pickle_round_trip_with_fresh_lock(self) -> None:
        """Pickling keeps the items (even recursive ones), not the lock."""
        d: LockedDict[str, Any] = LockedDict(a=1, b=[1, 2])
        d["self"] = d
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            back = pickle.loads(pickle.dumps(d, protocol))  # noqa: S301
            assert isinstance(back, LockedDict)
            assert back["a"] == 1
            assert back["b"] == [1, 2]
            assert back["self"] is back
            assert back._lock is not d._lock
            back["c"] = 3  # the new lock works
            back._check()
        assert b"RLock" not in pickle.dumps(d)
        assert pickle.loads(pickle.dumps(MISSING)) is MISSING  # noqa: S301

    def test_public_module_names(self) -> None:
        """The classes and the marker present themselves under safethreads."""
        assert LockedDict.__module__ == "safethreads"
        assert LockedDictGuard.__module__ == "safethreads"
        assert Missing.__module__ == "safethreads"
        assert isinstance(MISSING, Missing)


class TestSnapshotIteration:
    def test_iteration_survives_own_mutation(self) -> None:
        """Changing the dict while iterating it never raises (a snapshot)."""
        d: LockedDict[Any, int] = LockedDict.fromkeys(range(10), 0)
        for k in d:
            d[k + 100] = 1
            del d[k]
        for k, v in d.items():
            assert d.pop(k) == v
        d["x"] = 0
        for _ in d.values():
            d["new"] = 2
        for k in d.keys():  # noqa: SIM118
            d[k] = 5
        assert d == {"x": 5, "new": 5}

    def test_views_are_snapshots_with_dict_conveniences(self) -> None:
        """Views keep len, in and set operations, and ignore later changes."""
        d = LockedDict(a=1, b=2)
        keys, values, items = d.keys(), d.values(), d.items()
        d["c"] = 3
        del d["a"]
        assert len(keys) == 2
        assert "a" in keys
        assert "c" not in keys
        assert keys & {"a", "z"} == {"a"}
        assert keys | {"z"} == {"a", "b", "z"}
        assert ("a", 1) in items
        assert items - {("a", 1)} == {("b", 2)}
        assert sorted(values) == [1, 2]
        assert set(d.keys()) == {"b", "c"}

    @pytest.mark.parametrize(
        ("via", "change", "expected"),
        [
            ("dict", lambda d: d.__setitem__("c", 3), {"a": 1, "b": 2, "c": 3}),
            ("dict", lambda d: d.__delitem__("a"), {"b": 2}),
            ("dict", lambda d: d.pop("a"), {"b": 2}),
            ("dict", lambda d: d.popitem(), {"a": 1}),
            ("dict", lambda d: d.setdefault("c", 3), {"a": 1, "b": 2, "c": 3}),
            ("dict", lambda d: d.update(c=3), {"a": 1, "b": 2, "c": 3}),
            ("dict", lambda d: d.__ior__({"c": 3}), {"a": 1, "b": 2, "c": 3}),
            ("dict", lambda d: d.clear(), {}),
            ("dict", lambda d: d.get_or_set("c", lambda: 3), {"a": 1, "b": 2, "c": 3}),
            ("dict", lambda d: d.compute("a", lambda _: 5), {"a": 5, "b": 2}),
            ("dict", lambda d: d.compute("a", lambda _: MISSING), {"b": 2}),
            ("dict", lambda d: d.compare_and_set("a", 1, 5), {"a": 5, "b": 2}),
            ("dict", lambda d: d.compare_and_delete("a", 1), {"b": 2}),
            ("guard", lambda d: d.__setitem__("c", 3), {"a": 1, "b": 2, "c": 3}),
            ("guard", lambda d: d.__delitem__("a"), {"b": 2}),
            ("guard", lambda d: d.popitem(), {"a": 1}),
            ("guard", lambda d: d.clear(), {}),
            ("guard", lambda d: d.update(c=3), {"a": 1, "b": 2, "c": 3}),
            ("guard", lambda d: d.pop("a"), {"b": 2}),
        ],
    )
    def test_iteration_after_a_change_sees_it(
        self, via: str, change: Callable[[Any], object], expected: dict[str, int]
    ) -> None:
        """Iterating after any change shows it: no stale shared snapshot."""
        d = LockedDict(a=1, b=2)
        before = list(d.items())  # the snapshot is now shared
        assert list(d) == ["a", "b"]
        with d.locked() as m:
            change(d if via == "dict" else m)
            assert list(d.items()) == list(expected.items())  # inside the block
        assert list(d.items()) == list(expected.items())
        assert list(d.items()) != before
        d._check()

    def test_snapshot_is_a_plain_independent_dict(self) -> None:
        """snapshot() returns a new plain dict each time."""
        d = LockedDict(a=1)
        s = d.snapshot()
        assert type(s) is dict
        s["b"] = 2
        assert d == {"a": 1}
        assert d.snapshot() is not d.snapshot()


class TestLocked:
    def test_guard_is_a_live_mutable_mapping(self) -> None:
        """Inside the block the guard reads, writes and iterates the live dict."""
        d = LockedDict(alice=100, bob=0)
        with d.locked() as m:
            assert isinstance(m, MutableMapping)
            m["alice"] -= 30
            m["bob"] += 30
            assert m["alice"] == 70
            assert "bob" in m
            assert len(m) == 2
            assert list(m) == ["alice", "bob"]
            assert list(reversed(m)) == ["bob", "alice"]
            assert sum(m.values()) == 100
            assert dict(m.items()) == {"alice": 70, "bob": 30}
            assert ("bob", 30) in m.items()
            assert ("bob", 31) not in m.items()
            assert "nope" not in m.items()  # type: ignore[operator]
            assert 70 in m.values()
            # The views are reversible like dict's, which their types do not say.
            backwards: list[Any] = [
                list(reversed(view))  # type: ignore[call-overload]
                for view in (m.keys(), m.values(), m.items())
            ]
            assert backwards == [
                ["bob", "alice"],
                [30, 70],
                [("bob", 30), ("alice", 70)],
            ]
            assert m.keys() & {"bob"} == {"bob"}
            assert m.get("carol") is None
            assert m.get("carol", 1) == 1
            assert m.setdefault("carol", 5) == 5
            assert m.pop("carol") == 5
            m.update(dave=1)
            assert m.popitem() == ("dave", 1)
            assert m == {"alice": 70, "bob": 30}
            assert repr(m) == "LockedDictGuard({'alice': 70, 'bob': 30})"
            del m["bob"]
            keys = m.keys()
            m.clear()
            assert len(keys) == 0
        assert d == {}

    def test_owner_may_use_the_dict_itself_and_nest(self) -> None:
        """The block is re-entrant: d's methods and nested locked() work inside it."""
        d = LockedDict(a=1)
        with d.locked() as outer:
            d["b"] = 2
            assert d.compute("a", lambda v: 0 if v is MISSING else v + 1) == 2
            with d.locked() as inner:
                inner["c"] = 3
            assert outer["c"] == 3
            with pytest.raises(RuntimeError, match=GUARD_AFTER):
                inner["x"]
            assert list(d.items()) == [("a", 2), ("b", 2), ("c", 3)]
        assert lock_is_free(d)

    def test_guard_unusable_after_block(self) -> None:
        """Every use of an escaped guard raises a clear RuntimeError."""
        d = LockedDict(a=1)
        with d.locked() as m:
            pass
        uses: list[Callable[[], object]] = [
            lambda: m["a"],
            lambda: m.__setitem__("a", 2),
            lambda: m.__delitem__("a"),
            lambda: "a" in m,
            lambda: len(m),
            lambda: iter(m),
            lambda: reversed(m),
            m.keys,
            m.values,
            m.items,
            lambda: m.get("a"),
            lambda: m.pop("a"),
            m.popitem,
            m.clear,
            lambda: m.update(a=3),
            lambda: m.setdefault("b", 1),
        ]
        for use in uses:
            with pytest.raises(RuntimeError, match=GUARD_AFTER):
                use()
        assert repr(m) == "<LockedDictGuard (inactive)>"
        assert d == {"a": 1}

    def test_escaped_views_unusable_after_block(self) -> None:
        """Views handed out by the guard stop working when the block ends."""
        d = LockedDict(a=1)
        with d.locked() as m:
            views = (m.keys(), m.values(), m.items())
        for view in views:
            with pytest.raises(RuntimeError, match=GUARD_AFTER):
                iter(view)
            with pytest.raises(RuntimeError, match=GUARD_AFTER):
                len(view)
            with pytest.raises(RuntimeError, match=GUARD_AFTER):
                reversed(view)  # type: ignore[call-overload]

    def test_guard_before_enter_and_reentry(self) -> None:
        """A guard is usable only inside its single with-block."""
        d = LockedDict(a=1)
        guard = d.locked()
        with pytest.raises(RuntimeError, match=GUARD_NOT_ENTERED):
            guard["a"]
        with guard:
            pass
        with pytest.raises(RuntimeError, match="serves one 'with' block"), guard:
            pass
        assert lock_is_free(d)

    def test_guard_refuses_other_threads(self) -> None:
        """A guard passed to another thread refuses to work there."""
        d = LockedDict(a=1)
        with d.locked() as m:
            error = spawn(lambda: m["a"]).exception(timeout=TIMEOUT)
        assert isinstance(error, RuntimeError)
        assert re.search(GUARD_OTHER_THREAD, str(error))

    def test_block_excludes_other_threads(self) -> None:
        """Other threads wait until the block ends, then see the whole change."""
        d = LockedDict(a=100, b=0)
        with d.locked() as m:
            m["a"] -= 40
            reader = spawn(d.snapshot)
            reader.join(timeout=0.05)
            assert reader.is_alive()  # still waiting for the lock
            m["b"] += 40
        assert reader.result(timeout=TIMEOUT) == {"a": 60, "b": 40}

    def test_exception_in_block_releases_lock(self) -> None:
        """An exception leaving the block releases the lock and propagates."""
        d = LockedDict(a=1)

        def change_then_fail() -> None:
            with d.locked() as m:
                m["a"] = 2
                fail(LookupError("abort"))

        with pytest.raises(LookupError, match="abort"):
            change_then_fail()
        assert lock_is_free(d)
        assert d == {"a": 2}  # no rollback: changes made before the error stay


class TestCompoundOperations:
    def test_get_or_set(self) -> None:
        """get_or_set calls the factory only for a missing key."""
        d: LockedDict[str, list[int]] = LockedDict()
        calls = []

        def factory() -> list[int]:
            calls.append(1)
            return [len(calls)]

        first = d.get_or_set("k", factory)
        assert first == [1]
        assert d.get_or_set("k", factory) is first
        assert len(calls) == 1

    def test_get_or_set_factory_raises(self) -> None:
        """A failing factory inserts nothing; its exception propagates."""
        d = LockedDict(a=1)
        with pytest.raises(LookupError, match="no value"):
            d.get_or_set("b", lambda: fail(LookupError("no value")))
        assert d == {"a": 1}
        with pytest.raises(ValueError, match="factory returned MISSING"):
            d.get_or_set("b", lambda: MISSING)  # type: ignore[arg-type,return-value]
        assert d == {"a": 1}
        assert lock_is_free(d)
        d._check()

    def test_compute(self) -> None:
        """compute inserts, updates and deletes through one function."""
        d: LockedDict[str, int] = LockedDict()

        def bump(n: int | Missing) -> int:
            return 1 if n is MISSING else n + 1

        assert d.compute("a", bump) == 1
        assert d.compute("a", bump) == 2
        seen: list[int | Missing] = []

        def record(n: int | Missing) -> Missing:
            seen.append(n)
            return MISSING

        assert d.compute("a", record) is MISSING
        assert "a" not in d
        assert d.compute("a", record) is MISSING
        assert "a" not in d
        assert seen == [2, MISSING]

    def test_compute_fn_raises_leaves_mapping_unchanged(self) -> None:
        """A failing compute function changes nothing; its exception propagates."""
        d = LockedDict(a=1)
        for key in ("a", "b"):
            with pytest.raises(ZeroDivisionError):
                d.compute(key, lambda _: 1 // 0)
        assert d == {"a": 1}
        assert lock_is_free(d)
        d._check()

    def test_callbacks_may_read_the_dict(self) -> None:
        """A callback reads the same dict from the same thread without deadlock."""
        d = LockedDict(a=1, b=2)
        total = d.compute("sum", lambda _: d["a"] + d.get("b", 0) + len(d))
        assert total == 5
        assert d.get_or_set("keys", lambda: len(list(d.items()))) == 3
        with d.locked() as m:
            assert d.compute("a", lambda _: m["b"] * 10) == 20

    def test_callbacks_may_not_change_the_dict(self) -> None:
        """A callback that changes its own dict gets RuntimeError; nothing changes."""
        d = LockedDict(a=1)
        mutations: list[Callable[[], object]] = [
            lambda: d.__setitem__("x", 1),
            lambda: d.__delitem__("a"),
            lambda: d.pop("a"),
            d.popitem,
            lambda: d.setdefault("x", 1),
            lambda: d.update(x=1),
            lambda: d.__ior__({"x": 1}),
            d.clear,
            lambda: d.get_or_set("x", int),
            lambda: d.compute("x", lambda _: 1),
            lambda: d.compare_and_set("a", 1, 2),
            lambda: d.compare_and_delete("a", 1),
        ]
        for mutate in mutations:
            with pytest.raises(RuntimeError, match=CALLBACK_MUTATION):
                d.compute("a", lambda _, mutate=mutate: mutate())  # type: ignore[misc]
            with pytest.raises(RuntimeError, match=CALLBACK_MUTATION):
                d.get_or_set("new", mutate)  # type: ignore[arg-type]
            assert d == {"a": 1}
        with d.locked() as m:
            with pytest.raises(RuntimeError, match=r"m\[key\] = value changes"):
                d.compute("a", lambda _: m.__setitem__("x", 1))  # type: ignore[arg-type,return-value]
            with pytest.raises(RuntimeError, match=r"clear\(\) changes"):
                d.compute("a", lambda _: m.clear())  # type: ignore[arg-type,return-value]
        assert d == {"a": 1}
        d._check()

    def test_other_dicts_may_change_in_callbacks(self) -> None:
        """A callback may change a different LockedDict."""
        log: LockedDict[str, int] = LockedDict()
        d = LockedDict(a=1)
        d.compute("a", lambda _: log.setdefault("seen", 7))
        assert d == {"a": 7}
        assert log == {"seen": 7}

    def test_compare_and_set(self) -> None:
        """compare_and_set swaps only on a match; MISSING means absent."""
        d = LockedDict(a=1)
        assert not d.compare_and_set("a", 2, 3)
        assert d.compare_and_set("a", 1, 3)
        assert d["a"] == 3
        assert not d.compare_and_set("a", MISSING, 4)
        assert d.compare_and_set("b", MISSING, 4)
        assert not d.compare_and_set("c", 0, 1)
        assert d == {"a": 3, "b": 4}
        f: LockedDict[str, float] = LockedDict(a=1.0)
        nan = float("nan")
        f["n"] = nan
        assert f.compare_and_set("n", nan, 0.0)  # identity matches, as in dict ==
        assert f.compare_and_set("n", 0, 1.0)  # equality matches
        assert f == {"a": 1, "n": 1}
        with pytest.raises(ValueError, match="use compare_and_delete"):
            d.compare_and_set("a", 3, MISSING)  # type: ignore[arg-type]

    def test_compare_and_delete(self) -> None:
        """compare_and_delete deletes only on a match."""
        d = LockedDict(a=1)
        assert not d.compare_and_delete("a", 2)
        assert not d.compare_and_delete("b", 1)
        assert d.compare_and_delete("a", 1)
        assert d == {}
        with pytest.raises(ValueError, match="an absent key has nothing to delete"):
            d.compare_and_delete("a", MISSING)  # type: ignore[arg-type]

    def test_failing_comparison_changes_nothing(self) -> None:
        """An __eq__ that raises propagates from compare_and_*; nothing changes."""
        odd = Unequal()
        d: LockedDict[str, object] = LockedDict(a=odd)
        with pytest.raises(ArithmeticError, match="cannot compare"):
            d.compare_and_set("a", 1, 2)
        with pytest.raises(ArithmeticError, match="cannot compare"):
            d.compare_and_delete("a", 1)
        assert d["a"] is odd
        assert d.compare_and_delete("a", odd)  # identity needs no __eq__
        assert lock_is_free(d)
        d._check()


class TestCountingAndExpiring:
    """Issue 11: merge, compute_if_present and remove_if."""

    def test_merge_counts(self) -> None:
        """merge stores the value for an absent key, else combines it with fn."""
        d: LockedDict[str, int] = LockedDict()
        assert d.merge("hits", 1, operator.add) == 1
        assert d.merge("hits", 1, operator.add) == 2
        assert d.merge("hits", 5, max) == 5
        seen: list[tuple[int, int]] = []

        def record(old: int, new: int) -> int:
            seen.append((old, new))
            return old - new

        assert d.merge("hits", 2, record) == 3
        assert seen == [(5, 2)]  # current value first, called once
        assert d == {"hits": 3}

    def test_merge_with_add_still_guards_ints_that_run_code(self) -> None:
        """The counter's shortcut (`operator.add` on two ints) is for exact
        ints only: an int subclass's `__add__` is user code, still refused
        when it changes the dict, and `MISSING` is still refused as a value.
        """

        class Sneaky(int):
            def __add__(self, other: int) -> int:
                d["other"] = 0
                return int(self) + other

            __radd__ = __add__

        d: LockedDict[str, int] = LockedDict(n=Sneaky(1), m=1)
        with pytest.raises(RuntimeError, match="merge"):
            d.merge("n", 1, operator.add)
        with pytest.raises(RuntimeError, match="merge"):
            d.merge("m", Sneaky(1), operator.add)
        with pytest.raises(ValueError, match="cannot store MISSING"):
            d.merge("m", MISSING, operator.add)  # type: ignore[arg-type]
        assert d == {"n": 1, "m": 1}
        assert d.merge("m", 2, operator.add) == 3
        assert d.merge("flag", True, operator.add) is True  # a bool stays a bool
        assert d.merge("flag", True, operator.add) == 2
        assert lock_is_free(d)
        assert_consistent(d)

    def test_merge_is_seen_by_the_next_iteration(self) -> None:
        """A merge drops the snapshot iterations share, on every path."""
        d: LockedDict[str, Any] = LockedDict(n=1, s="a")
        cases: list[tuple[Callable[[Any, Any], Any], str, Any, Any]] = [
            (operator.add, "n", 2, 3),  # the counter's shortcut
            (operator.add, "s", "b", "ab"),
            (max, "n", 7, 7),
            (operator.add, "new", 5, 5),
        ]
        for fn, key, value, expected in cases:
            assert dict(d.items())  # iteration takes (or reuses) a snapshot
            assert d.merge(key, value, fn) == expected
            assert dict(d.items())[key] == expected
            assert_consistent(d)

    def test_merge_function_may_not_return_missing(self) -> None:
        """A merge function returning MISSING raises ValueError; nothing changes."""
        d = LockedDict(held=2)
        with pytest.raises(
            ValueError, match="merge\\(\\) function cannot store MISSING"
        ):
            d.merge("held", -2, lambda *_: MISSING)  # type: ignore[arg-type]
        assert d == {"held": 2}
        assert_consistent(d)

    def test_compute_if_present(self) -> None:
        """compute_if_present changes or deletes present keys only."""
        d = LockedDict(a=1)
        calls: list[int] = []

        def bump(n: int) -> int:
            calls.append(n)
            return n + 1

        assert d.compute_if_present("a", bump) == 2
        assert d.compute_if_present("b", bump) is MISSING
        assert calls == [1]
        assert d.compute_if_present("a", lambda _: MISSING) is MISSING
        assert d == {}
        assert_consistent(d)

    def test_remove_if_returns_removed_items_in_order(self) -> None:
        """remove_if removes matching items, returns them, keeps the rest's order."""
        d = LockedDict(a=1, b=20, c=3, e=40)
        seen: list[tuple[str, int]] = []

        def big(key: str, value: int) -> bool:
            seen.append((key, value))
            return value > 10

        assert d.remove_if(big) == [("b", 20), ("e", 40)]
        assert seen == [("a", 1), ("b", 20), ("c", 3), ("e", 40)]
        assert list(d.items()) == [("a", 1), ("c", 3)]
        assert d.remove_if(big) == []
        assert_consistent(d)

    def test_remove_if_raising_key_hash_changes_nothing(self) -> None:
        """A key whose __hash__ raises during the removal leaves the dict whole."""
        keys = [ExplodingHash(name) for name in "abc"]
        d: LockedDict[ExplodingHash, int] = LockedDict.fromkeys(keys, 0)
        list(d)

        def arm_last(key: ExplodingHash, _: int) -> bool:
            key.explode = key is keys[-1]
            return True

        with pytest.raises(ArithmeticError, match="hash exploded"):
            d.remove_if(arm_last)
        keys[-1].explode = False
        assert list(d) == keys
        assert_consistent(d)

    def test_new_operations_refuse_bad_input(self) -> None:
        """Non-callables fail at the call, with the lock free and nothing changed."""
        d = LockedDict(a=1)
        for key in ("a", "absent"):  # fn is called, or not
            with pytest.raises(TypeError, match="fn must be callable, not int"):
                d.merge(key, 1, 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="fn"):
            d.compute_if_present("a", None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="predicate"):
            d.remove_if("a")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unhashable"):
            d.merge([], 1, operator.add)  # type: ignore[arg-type]
        assert d == {"a": 1}
        assert lock_is_free(d)
        d._check()

    def test_merge_keeps_the_type_errors_of_fn(self) -> None:
        """A callable fn that raises TypeError has its own error propagate."""
        d = LockedDict(a=1)
        with pytest.raises(TypeError, match="unsupported operand"):
            d.merge("a", "x", operator.add)  # type: ignore[arg-type]
        assert d == {"a": 1}
        assert lock_is_free(d)

    def test_new_callbacks_may_read_but_not_change(self) -> None:
        """merge, compute_if_present and remove_if callbacks are read-only."""
        d = LockedDict(a=1, b=2)
        assert d.merge("a", 1, lambda old, n: old + n + d["b"]) == 4
        assert d.compute_if_present("b", lambda n: n + len(d)) == 4
        assert d.remove_if(lambda _, v: v == d["a"]) == [("a", 4), ("b", 4)]
        d.update(a=1, b=2)
        changers: list[Callable[[], object]] = [
            lambda: d.merge("a", 1, lambda *_: d.pop("b")),
            lambda: d.compute_if_present("a", lambda _: d.popitem()[1]),
            lambda: d.remove_if(lambda *_: d.clear()),
            lambda: d.compute("a", lambda _: d.merge("b", 1, operator.add)),
            lambda: d.compute("a", lambda _: d.compute_if_present("b", abs)),
            lambda: d.compute("a", lambda _: len(d.remove_if(lambda *_: True))),
        ]
        for change in changers:
            with pytest.raises(RuntimeError, match=CALLBACK_MUTATION):
                change()
            assert d == {"a": 1, "b": 2}
        assert_consistent(d)


class CollidingKey:
    """A key that collides with "old" and whose `__eq__` raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __hash__(self) -> int:
        return hash("old")

    def __eq__(self, other: object) -> bool:
        raise self.error


class ExplodingHash:
    """A key whose `__hash__` starts raising once `explode` is set."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.explode = False

    def __hash__(self) -> int:
        if self.explode:
            raise ArithmeticError("hash exploded")
        return hash(self.name)


def assert_consistent(d: LockedDict[Any, Any]) -> None:
    """Snapshot, iteration, len and membership tell the same story."""
    snap = d.snapshot()
    assert list(d) == list(snap)
    assert list(d.items()) == list(snap.items())
    assert len(d) == len(snap) == len(list(d))
    assert all(k in d for k in snap)
    assert d == snap
    d._check()


class TestIterationInsideLocked:
    """Issue 11, defect 1: iteration inside locked() never fails either."""

    def test_expiry_loop_deletes_while_iterating(self) -> None:
        """The natural expiry loop inside locked() works and deletes every match."""
        d = LockedDict(a=1, b=5, c=2, e=9)
        with d.locked() as m:
            for k, v in m.items():
                if v > 1:
                    del m[k]
        assert d == {"a": 1}
        assert_consistent(d)

    @pytest.mark.parametrize(
        "iterate",
        [
            iter,
            reversed,
            lambda m: iter(m.keys()),
            lambda m: iter(m.values()),
            lambda m: iter(m.items()),
            lambda m: reversed(m.items()),
        ],
    )
    def test_iterators_show_the_block_as_it_was_when_created(
        self, iterate: Callable[[Any], Any]
    ) -> None:
        """Every kind of guard iterator survives writes and shows its creation state."""
        d = LockedDict(a=1, b=2, c=3)
        with d.locked() as m:
            it = iterate(m)
            expected = list(iterate(m))
            first = next(it)
            m["new"] = 4
            del m["c"]
            m["a"] = 10
            d["via-dict"] = 5  # the dict's own methods, inside the block
            d.compute("b", lambda _: MISSING)
            assert [first, *it] == expected
            assert list(m) == ["a", "new", "via-dict"]
        assert d == {"a": 10, "new": 4, "via-dict": 5}
        assert_consistent(d)

    def test_nested_loops_and_growth(self) -> None:
        """Nested loops that add keys terminate, each over its creation state."""
        d: LockedDict[object, int] = LockedDict.fromkeys(range(5), 0)
        model: dict[object, int] = dict.fromkeys(range(5), 0)
        with d.locked() as m:
            for i in m:
                for j in m:
                    m[(i, j)] = 1
        for i in list(model):  # the same loops over explicit copies
            for j in list(model):
                model[(i, j)] = 1
        assert len(d) == 160  # the dict doubles in each of 5 outer passes
        assert list(d.items()) == list(model.items())
        assert_consistent(d)

    def test_values_contains_with_writing_eq(self) -> None:
        """A value's __eq__ that writes during `x in m.values()` does not break it."""
        d: LockedDict[str, object] = LockedDict()

        class Writer:
            def __eq__(self, other: object) -> bool:
                m["written"] = 1
                return False

            __hash__ = object.__hash__

        d.update(a=Writer(), b=Writer())
        with d.locked() as m:
            assert 42 not in m.values()
            assert m["written"] == 1
        assert_consistent(d)

    def test_read_only_block_copies_nothing(self) -> None:
        """Blocks that only read, or only write, keep iterating the live dict."""
        d = LockedDict(a=1, b=2)
        live = d._data
        with d.locked() as m:
            assert sum(m.values()) == 3
            assert list(m.items()) == [("a", 1), ("b", 2)]
        with d.locked() as m:
            m["c"] = 3
            del m["a"]
        assert d._data is live  # no copy was needed
        with d.locked() as m:
            for _ in m:
                m["d"] = 4
        assert d._data is not live  # the write after iter() copied once
        assert_consistent(d)

    def test_remove_if_inside_the_loop(self) -> None:
        """remove_if and clear from inside a guard loop leave the loop going."""
        d = LockedDict.fromkeys("abcd", 1)
        seen = []
        with d.locked() as m:
            for k in m:
                seen.append(k)
                d.remove_if(lambda key, _: key > "b")
                m.clear()
        assert seen == ["a", "b", "c", "d"]
        assert d == {}
        assert_consistent(d)

    def test_ctrl_c_inside_the_loop_keeps_the_dict_consistent(self) -> None:
        """A KeyboardInterrupt mid-loop releases the lock; changes so far stay."""
        d = LockedDict.fromkeys(range(10), 0)

        def expire() -> None:
            with d.locked() as m:
                for k in m:
                    if k == 5:
                        raise KeyboardInterrupt
                    del m[k]

        with pytest.raises(KeyboardInterrupt):
            expire()
        assert lock_is_free(d)
        assert list(d) == [5, 6, 7, 8, 9]
        assert_consistent(d)


class TestRealCtrlC:
    """A real SIGINT, landing wherever the interpreter checks for signals."""

    def test_sigint_inside_remove_if_changes_nothing(self) -> None:
        """Ctrl-C while remove_if runs its predicate leaves the dict whole."""
        d = LockedDict.fromkeys(range(100), 0)
        list(d)

        def predicate(k: int, _: int) -> bool:
            if k == 50:
                signal.raise_signal(signal.SIGINT)
            return k % 2 == 0

        with pytest.raises(KeyboardInterrupt):
            d.remove_if(predicate)
        assert len(d) == 100
        assert lock_is_free(d)
        assert_consistent(d)

    def test_sigint_inside_a_writing_loop_in_locked(self) -> None:
        """Ctrl-C inside an expiry loop in locked() releases the lock."""
        d = LockedDict.fromkeys(range(100), 0)

        def expire() -> None:
            with d.locked() as m:
                for k in m:
                    if k == 50:
                        signal.raise_signal(signal.SIGINT)
                    del m[k]

        with pytest.raises(KeyboardInterrupt):
            expire()
        assert lock_is_free(d)
        # Keys 0-49 are gone; the signal lands before or just after `del m[50]`.
        assert list(d) in (list(range(50, 100)), list(range(51, 100)))
        assert_consistent(d)


# A child process that sends itself Ctrl-C at random: a helper thread calls
# interrupt_main() (what a SIGINT delivered to another thread amounts to)
# while the main thread runs every kind of operation and a rival thread
# contends for the lock.  After each operation the main thread must not own
# the lock.  Prints the number of interrupts and of locks left held, by
# operation, as JSON.
KI_STRESS_CHILD = """
import _thread, json, operator, random, signal, sys, threading, time
from safethreads import LockedDict

sys.setswitchinterval(1e-6)
armed = False


def handler(signum, frame):
    if armed:  # only inside the operations under test
        raise KeyboardInterrupt


signal.signal(signal.SIGINT, handler)
rng = random.Random(int(sys.argv[1]))
seconds = float(sys.argv[2])
d = LockedDict.fromkeys(range(20), 1)
stop = threading.Event()


def pester():
    while not stop.is_set():
        _thread.interrupt_main()
        time.sleep(rng.random() * 1e-4)


def rival():
    while not stop.is_set():
        with d.locked() as m:
            m[0] = m.get(0, 0) + 1
        d.merge(1, 1, operator.add)


def block(d):
    with d.locked() as m:
        m[3] = 1


def loop_block(d):
    with d.locked() as m:
        for k in m:
            m[k] = 1


ops = {
    "get": lambda d: d.get(5),
    "getitem": lambda d: d[5],
    "setitem": lambda d: d.__setitem__(2, 2),
    "contains": lambda d: 4 in d,
    "len": len,
    "pop": lambda d: d.pop(7, None),
    "setdefault": lambda d: d.setdefault(7, 1),
    "update": lambda d: d.update({8: 1}),
    "items": lambda d: list(d.items()),
    "snapshot": lambda d: d.snapshot(),
    "merge": lambda d: d.merge(2, 1, operator.add),
    "compute": lambda d: d.compute(2, lambda v: 1),
    "compute_if_present": lambda d: d.compute_if_present(2, lambda v: v),
    "get_or_set": lambda d: d.get_or_set(9, int),
    "remove_if": lambda d: d.remove_if(lambda k, v: k == 8),
    "compare_and_set": lambda d: d.compare_and_set(2, 1, 1),
    "block": block,
    "loop_block": loop_block,
}
names = list(ops)
helpers = [threading.Thread(target=f, daemon=True) for f in (pester, rival)]
for t in helpers:
    t.start()
interrupts = 0
leaked = {}
n = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    name = names[n % len(names)]
    n += 1
    try:
        armed = True
        ops[name](d)
    except KeyboardInterrupt:
        interrupts += 1
    finally:
        armed = False
    while d._lock._is_owned():  # the main thread is in no block: a leak
        leaked[name] = leaked.get(name, 0) + 1
        d._lock.release()
stop.set()
for t in helpers:
    t.join(10)
d._check()
print(json.dumps({"interrupts": interrupts, "leaked": leaked}))
"""


def wait_until_blocked_on_the_lock(thread_id: int) -> None:
    """Wait until thread `thread_id` waits in a LockedDict's `acquire()`."""
    import linecache

    from safethreads import _locked_dict
    from safethreads._observe import current_frames

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        frame = current_frames().get(thread_id)
        if frame is not None and frame.f_code.co_filename == _locked_dict.__file__:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if ".acquire()" in line:
                return
        time.sleep(0.001)
    raise AssertionError("the thread never waited for the lock")


class TestCtrlCNeverLeavesTheLockHeld:
    """Ctrl-C landing anywhere in an operation or a block releases the lock.

    CPython runs a Python signal handler, and so raises KeyboardInterrupt, at
    the points where the main thread checks for pending work: when a function
    starts, after each call returns, and on backward jumps.  A lock taken by
    `lock.acquire()` followed by `try:` is left held if the exception lands
    just after the call; a Python `__exit__` leaves it held if the exception
    lands as `__exit__` starts.
    """

    @pytest.mark.parametrize(
        "operation",
        [
            lambda d: d["a"],
            lambda d: d.__setitem__("a", 2),
            len,
            lambda d: list(d.items()),
            lambda d: d.merge("a", 1, operator.add),
            lambda d: d.remove_if(lambda *_: False),
            lambda d: d.update(b=2),
            lambda d: d.locked().__enter__(),
        ],
        ids=[
            "getitem",
            "setitem",
            "len",
            "items",
            "merge",
            "remove_if",
            "update",
            "locked",
        ],
    )
    def test_ctrl_c_while_waiting_for_the_lock(
        self, operation: Callable[[LockedDict[str, int]], object]
    ) -> None:
        """Ctrl-C that arrives while the lock is awaited leaves it free."""
        d = LockedDict(a=1)
        main = threading.get_ident()
        holding = threading.Event()

        def hold_then_interrupt() -> None:
            with d.locked():
                holding.set()
                wait_until_blocked_on_the_lock(main)
                # A SIGINT that the kernel hands to another thread: the main
                # thread sees it once it has the lock and its call returns.
                _thread.interrupt_main()

        holder = start(hold_then_interrupt, name="holder")
        # The holder must have the lock first, or the operation need not wait.
        assert holding.wait(TIMEOUT)
        with pytest.raises(KeyboardInterrupt):
            operation(d)  # a Ctrl-C pending after it lands at this call
        holder.result(timeout=TIMEOUT)
        assert not d._lock._is_owned(), "Ctrl-C left the lock held"
        assert lock_is_free(d)
        assert_consistent(d)

    def test_ctrl_c_pending_when_a_block_ends_still_releases_the_lock(self) -> None:
        """A Ctrl-C raised as the block's exit code starts cannot skip the release."""
        import sys

        from safethreads import _locked_dict

        d = LockedDict(a=1)
        raised: list[str] = []

        def tracer(frame: Any, event: str, arg: object) -> None:
            # A pending signal is raised where a function starts: model it by
            # raising from the first library function entered after the body.
            if event == "call" and frame.f_code.co_filename == _locked_dict.__file__:
                raised.append(frame.f_code.co_name)
                sys.settrace(None)
                raise KeyboardInterrupt

        try:
            with d.locked() as m:
                m["a"] = 2
                sys.settrace(tracer)
        except KeyboardInterrupt:
            pass
        finally:
            sys.settrace(None)
        assert not d._lock._is_owned(), f"Ctrl-C in {raised} left the lock held"
        assert lock_is_free(d)
        assert d == {"a": 2}
        assert_consistent(d)

    def test_no_loop_can_jump_past_the_code_that_releases(self) -> None:
        """Every backward jump (where Ctrl-C lands in a loop) has its handler.

        CPython 3.12 and 3.13 leave the backward jump of a loop's skipped
        iteration (`[x for x in xs if f(x)]`, `for ...: if f(x): ...`) out
        of the enclosing `try`'s exception table: a KeyboardInterrupt raised
        there leaves the function without running its `finally` (nor
        releasing the lock it guarded).  3.11 is not affected, so this
        checks the bytecode rather than waiting for the signal.
        """
        import dis
        import types

        def code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
            yield code
            for const in code.co_consts:
                if isinstance(const, types.CodeType):
                    yield from code_objects(const)

        def holes(code: types.CodeType) -> list[int | None]:
            table = dis._parse_exception_table(code)  # type: ignore[attr-defined]
            return [
                ins.positions.lineno if ins.positions else None
                for ins in dis.get_instructions(code)
                if ins.opname.startswith("JUMP_BACKWARD")
                and table
                and not any(e.start <= ins.offset < e.end for e in table)
            ]

        found = {
            f"{cls.__name__}.{name}": lines
            for cls in (LockedDict, LockedDictGuard)
            for name, attr in vars(cls).items()
            if isinstance(attr, types.FunctionType)
            for code in code_objects(attr.__code__)
            if (lines := holes(code))
        }
        assert found == {}

    @pytest.mark.stress
    @pytest.mark.subprocess
    def test_ctrl_c_at_random_points_never_leaves_the_lock_held(
        self, stress_rng: random.Random
    ) -> None:
        """Thousands of Ctrl-Cs at random points: the lock is never left held."""
        import json
        import subprocess
        import sys

        seed = stress_rng.randrange(2**32)
        done = subprocess.run(
            [sys.executable, "-c", KI_STRESS_CHILD, str(seed), "2.0"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["interrupts"] > 100, "too few Ctrl-Cs landed to tell"
        assert result["leaked"] == {}


# A child process forks while another of its threads holds a LockedDict's
# lock (inside a locked() block, and inside a merge callback); the grandchild
# must be able to use both dicts, and prints what it sees.
FORK_CHILD = """
import operator, os, sys, threading
from safethreads import LockedDict

in_block = LockedDict(a=1)
in_callback = LockedDict(n=1)
ready = threading.Barrier(3)
done = threading.Event()


def hold_block():
    with in_block.locked() as m:
        m["a"] = 2
        ready.wait()
        done.wait()


def hold_callback():
    def combine(old, new):
        ready.wait()
        done.wait()
        return old + new

    in_callback.merge("n", 1, combine)


threads = [threading.Thread(target=f) for f in (hold_block, hold_callback)]
for t in threads:
    t.start()
ready.wait()
pid = os.fork()
if pid == 0:  # the grandchild: the holders do not exist here
    import signal
    signal.alarm(20)  # a grandchild that hangs must not outlive the test
    in_block["b"] = 3
    in_callback.merge("n", 10, operator.add)
    with in_block.locked() as m:
        m["c"] = 4
    print(sorted(in_block.items()), sorted(in_callback.items()), flush=True)
    in_block._check()
    in_callback._check()
    os._exit(0)
done.set()
for t in threads:
    t.join()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


class TestFork:
    @pytest.mark.subprocess
    @pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
    def test_child_can_use_a_dict_locked_by_another_thread_at_fork(self) -> None:
        """After fork(), a lock held by a thread the child lacks is free again."""
        import subprocess
        import sys

        done = subprocess.run(
            # Forking with threads is deprecated (3.12+), which is the point.
            [sys.executable, "-W", "ignore::DeprecationWarning", "-c", FORK_CHILD],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        # The block had made one change when the process forked: the child
        # has it, and nothing of the callback, which had changed nothing yet.
        assert done.stdout.strip() == ("[('a', 2), ('b', 3), ('c', 4)] [('n', 11)]")


class TestConsistencyAfterFailures:
    """Issue 11, defect 2: a failing write never leaves a stale snapshot."""

    @pytest.mark.parametrize("error", [ValueError("eq"), KeyboardInterrupt()])
    def test_update_failing_half_way_keeps_snapshot_current(
        self, error: BaseException
    ) -> None:
        """update() whose key __eq__ raises half-way: iteration sees what was added."""
        d: LockedDict[object, int] = LockedDict({"old": 1})
        assert list(d) == ["old"]  # the shared snapshot exists
        with pytest.raises(type(error)):
            d.update({"new": 2, CollidingKey(error): 3})
        assert "new" in d
        assert list(d) == ["old", "new"]
        assert_consistent(d)

    @pytest.mark.parametrize("error", [LookupError("eq"), KeyboardInterrupt()])
    @pytest.mark.parametrize(
        "write",
        [
            lambda d, k: d.__setitem__(k, 1),
            lambda d, k: d.setdefault(k, 1),
            lambda d, k: d.pop(k, None),
            lambda d, k: d.__delitem__(k),
            lambda d, k: d.get_or_set(k, int),
            lambda d, k: d.compute(k, lambda _: 1),
            lambda d, k: d.merge(k, 1, max),
            lambda d, k: d.compute_if_present(k, lambda _: 1),
            lambda d, k: d.compare_and_set(k, MISSING, 1),
        ],
    )
    def test_raising_key_eq_leaves_dict_consistent(
        self, write: Callable[[Any, Any], object], error: BaseException
    ) -> None:
        """Every write whose key's __eq__ raises leaves a consistent dict."""
        d: LockedDict[Any, int] = LockedDict(old=1)
        list(d.items())
        with pytest.raises(type(error)):
            write(d, CollidingKey(error))
        assert d == {"old": 1}
        assert lock_is_free(d)
        assert_consistent(d)

    @pytest.mark.parametrize("error", [ArithmeticError("fn"), KeyboardInterrupt()])
    def test_raising_callbacks_leave_dict_unchanged(self, error: BaseException) -> None:
        """Callbacks raising an Exception or a KeyboardInterrupt change nothing."""
        d = LockedDict(a=1, b=2)
        list(d)
        calls: list[Callable[[], object]] = [
            lambda: d.merge("a", 1, lambda *_: fail(error)),
            lambda: d.compute_if_present("a", lambda _: fail(error)),
            lambda: d.compute("a", lambda _: fail(error)),
            lambda: d.remove_if(lambda k, _: k == "b" or fail(error)),
            lambda: d.get_or_set("z", lambda: fail(error)),
        ]
        for call in calls:
            with pytest.raises(type(error)):
                call()
            assert d == {"a": 1, "b": 2}
            assert lock_is_free(d)
            assert_consistent(d)


class TestSharedSnapshotNeverEscapes:
    """Issue 11, defect 3: user code never holds the shared snapshot."""

    def test_dict_subclass_eq_gets_a_private_copy(self) -> None:
        """A dict subclass's __eq__ may change what it is given; d is unaffected."""

        class Meddler(dict[str, int]):
            def __eq__(self, other: object) -> bool:
                assert isinstance(other, dict)
                other["ghost"] = 1
                return False

            __hash__ = None

        d = LockedDict(b=1)
        assert list(d) == ["b"]  # the shared snapshot exists
        assert not (d == Meddler())  # noqa: SIM201
        assert list(d) == ["b"]
        assert "ghost" not in d
        assert_consistent(d)

    def test_ordered_dict_still_compares(self) -> None:
        """Equality with dict subclasses keeps dict's answers."""
        from collections import OrderedDict

        d = LockedDict(a=1, b=2)
        assert d == OrderedDict(b=2, a=1)
        assert OrderedDict(a=1, b=2) == d
        assert d != OrderedDict(a=1)


class TestRefusals:
    def test_subclassing_is_refused(self) -> None:
        """Issue 11, defect 4: subclassing LockedDict fails at class creation."""
        with pytest.raises(TypeError, match="LockedDict cannot be subclassed"):

            class Sub(LockedDict[str, int]):  # type: ignore[misc]
                pass

    def test_generic_alias_fromkeys_still_works(self) -> None:
        """Refusing subclasses leaves LockedDict[K, V] and fromkeys working."""
        d = LockedDict[str, int].fromkeys("ab", 0)
        assert type(d) is LockedDict
        assert d == {"a": 0, "b": 0}

    def test_guard_cannot_be_pickled_or_copied(self) -> None:
        """Issue 11, defect 5: guards and their views refuse pickle and copy."""
        d = LockedDict(a=1)
        with d.locked() as m:
            for obj in (m, m.keys(), m.items(), m.values()):
                for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
                    with pytest.raises(TypeError, match="cannot be pickled or copied"):
                        pickle.dumps(obj, protocol)
            for copier in (copy.copy, copy.deepcopy):
                with pytest.raises(TypeError, match="cannot be pickled or copied"):
                    copier(m)
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            pickle.dumps(m)
        assert lock_is_free(d)

    def test_missing_cannot_be_stored(self) -> None:
        """Issue 11, defect 6: every way of storing MISSING raises ValueError."""
        d: LockedDict[str, Any] = LockedDict(a=1)
        stores: list[Callable[[], object]] = [
            lambda: d.__setitem__("x", MISSING),
            lambda: d.setdefault("x", MISSING),
            lambda: d.update(x=MISSING),
            lambda: d.update({"x": MISSING}),
            lambda: d.update([("x", MISSING)]),
            lambda: d.__ior__({"x": MISSING}),
            lambda: d | {"x": MISSING},
            lambda: {"x": MISSING} | d,
            lambda: d.merge("x", MISSING, max),
            lambda: LockedDict(x=MISSING),
            lambda: LockedDict({"x": MISSING}),
            lambda: LockedDict.fromkeys("x", MISSING),
        ]
        for store in stores:
            with pytest.raises(ValueError, match="cannot store MISSING"):
                store()
        with d.locked() as m:
            with pytest.raises(ValueError, match="cannot store MISSING"):
                m["x"] = MISSING
            with pytest.raises(ValueError, match="cannot store MISSING"):
                m.update(x=MISSING)
        assert d == {"a": 1}
        assert_consistent(d)


class TestDocstringExamples:
    @pytest.mark.parametrize(
        "obj",
        [
            LockedDict,
            LockedDict.locked,
            LockedDict.compute,
            LockedDict.merge,
            LockedDict.compute_if_present,
            LockedDict.remove_if,
        ],
        ids=lambda o: o.__qualname__,
    )
    def test_examples_run(self, obj: object) -> None:
        """The python examples in the docstrings run as written."""
        doc = inspect.getdoc(obj)
        assert doc
        blocks = re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
        assert blocks
        for block in blocks:
            exec(compile(textwrap.dedent(block), "<docstring>", "exec"), {})  # noqa: S102


# --- model-based test -------------------------------------------------------

keys = st.sampled_from(["a", "b", "c", "d", "e"])
values = st.integers(-3, 3)
FAILURES: list[type[BaseException]] = [ArithmeticError, KeyboardInterrupt]


class LockedDictMachine(RuleBasedStateMachine):
    """Every operation on a LockedDict matches the same one on a plain dict."""

    def __init__(self) -> None:
        super().__init__()
        self.d: LockedDict[str, int] = LockedDict()
        self.model: dict[str, int] = {}

    @rule(key=keys, value=values)
    def set_item(self, key: str, value: int) -> None:
        self.d[key] = value
        self.model[key] = value

    @rule(key=keys)
    def get_item(self, key: str) -> None:
        if key in self.model:
            assert self.d[key] == self.model[key]
        else:
            with pytest.raises(KeyError):
                self.d[key]

    @rule(key=keys)
    def del_item(self, key: str) -> None:
        if key in self.model:
            del self.d[key]
            del self.model[key]
        else:
            with pytest.raises(KeyError):
                del self.d[key]

    @rule(key=keys, default=st.none() | values)
    def get(self, key: str, default: int | None) -> None:
        assert self.d.get(key, default) == self.model.get(key, default)
        assert (key in self.d) == (key in self.model)

    @rule(key=keys, default=st.none() | values)
    def pop(self, key: str, default: int | None) -> None:
        if default is None and key not in self.model:
            with pytest.raises(KeyError):
                self.d.pop(key)
        elif default is None:
            assert self.d.pop(key) == self.model.pop(key)
        else:
            assert self.d.pop(key, default) == self.model.pop(key, default)

    @rule()
    def popitem(self) -> None:
        if self.model:
            assert self.d.popitem() == self.model.popitem()
        else:
            with pytest.raises(KeyError):
                self.d.popitem()

    @rule(key=keys, value=values)
    def setdefault(self, key: str, value: int) -> None:
        assert self.d.setdefault(key, value) == self.model.setdefault(key, value)

    @rule(other=st.dictionaries(keys, values, max_size=3), kind=st.integers(0, 4))
    def update(self, other: dict[str, int], kind: int) -> None:
        if kind == 0:
            self.d.update(other)
        elif kind == 1:
            self.d.update(list(other.items()))
        elif kind == 2:
            self.d.update(**other)
        elif kind == 3:
            self.d.update(LockedDict(other))
        else:
            self.d |= other
        self.model.update(other)

    @rule(other=st.dictionaries(keys, values, max_size=3))
    def union(self, other: dict[str, int]) -> None:
        merged = self.d | other
        assert merged == self.model | other
        assert list(merged.items()) == list((self.model | other).items())
        reflected = other | self.d
        assert list(reflected.items()) == list((other | self.model).items())

    @precondition(lambda self: len(self.model) > 3)
    @rule()
    def clear(self) -> None:
        self.d.clear()
        self.model.clear()

    @rule(key=keys, value=values)
    def get_or_set(self, key: str, value: int) -> None:
        calls: list[int] = []

        def factory() -> int:
            calls.append(value)
            return value

        expected_calls = 0 if key in self.model else 1
        assert self.d.get_or_set(key, factory) == self.model.setdefault(key, value)
        assert len(calls) == expected_calls

    @rule(key=keys, delta=values, delete=st.booleans(), raises=st.booleans())
    def compute(self, key: str, delta: int, delete: bool, raises: bool) -> None:
        def fn(n: int | Missing) -> int | Missing:
            if raises:
                raise ArithmeticError
            if delete:
                return MISSING
            return delta if n is MISSING else n + delta

        if raises:
            with pytest.raises(ArithmeticError):
                self.d.compute(key, fn)
            return
        result = self.d.compute(key, fn)
        if delete:
            self.model.pop(key, None)
            assert result is MISSING
        else:
            self.model[key] = self.model.get(key, 0) + delta
            assert result == self.model[key]

    @rule(key=keys, expected=st.just(MISSING) | values, new=values)
    def compare_and_set(self, key: str, expected: int | Missing, new: int) -> None:
        current = self.model.get(key, MISSING)
        match = current == expected
        assert self.d.compare_and_set(key, expected, new) == match
        if match:
            self.model[key] = new

    @rule(key=keys, expected=values)
    def compare_and_delete(self, key: str, expected: int) -> None:
        match = key in self.model and self.model[key] == expected
        assert self.d.compare_and_delete(key, expected) == match
        if match:
            del self.model[key]

    @rule(key=keys, value=values, other=keys)
    def transaction(self, key: str, value: int, other: str) -> None:
        with self.d.locked() as m:
            m[key] = value
            if other in m:
                m[other] = m[other] + 1
                self.d[other] -= 1
            assert list(m.items()) == list({**self.model, key: value}.items())
        self.model[key] = value

    @rule(key=keys, value=values, raises=st.booleans())
    def merge(self, key: str, value: int, raises: bool) -> None:
        def add(old: int, new: int) -> int:
            if raises:
                raise ArithmeticError
            return old + new

        if raises and key in self.model:
            with pytest.raises(ArithmeticError):
                self.d.merge(key, value, add)
            return
        self.model[key] = self.model[key] + value if key in self.model else value
        assert self.d.merge(key, value, add) == self.model[key]

    @rule(key=keys, delete=st.booleans(), error=st.sampled_from([None, *FAILURES]))
    def compute_if_present(
        self, key: str, delete: bool, error: type[BaseException] | None
    ) -> None:
        def fn(n: int) -> int | Missing:
            if error is not None:
                raise error
            return MISSING if delete else n * 2

        if key not in self.model:
            assert self.d.compute_if_present(key, fn) is MISSING
        elif error is not None:
            with pytest.raises(error):
                self.d.compute_if_present(key, fn)
        elif delete:
            assert self.d.compute_if_present(key, fn) is MISSING
            del self.model[key]
        else:
            self.model[key] *= 2
            assert self.d.compute_if_present(key, fn) == self.model[key]

    @rule(
        threshold=values,
        fail_at=st.none() | st.integers(0, 4),
        error=st.sampled_from(FAILURES),
    )
    def remove_if(
        self, threshold: int, fail_at: int | None, error: type[BaseException]
    ) -> None:
        calls = iter(range(100))

        def predicate(_: str, v: int) -> bool:
            if next(calls) == fail_at:
                raise error
            return v >= threshold

        if fail_at is not None and fail_at < len(self.model):
            with pytest.raises(error):
                self.d.remove_if(predicate)
            return  # all or nothing: the model is unchanged
        expected = [(k, v) for k, v in self.model.items() if v >= threshold]
        assert self.d.remove_if(predicate) == expected
        for k, _ in expected:
            del self.model[k]

    @rule(threshold=values, add=keys, interrupt_at=st.none() | st.integers(0, 4))
    def expire_in_block(
        self, threshold: int, add: str, interrupt_at: int | None
    ) -> None:
        """The expiry loop inside locked(): delete, update and add while iterating."""

        def expire(
            m: MutableMapping[str, int], items: Iterable[tuple[str, int]]
        ) -> None:
            for i, (k, v) in enumerate(items):
                if i == interrupt_at:
                    fail(KeyboardInterrupt())
                if v >= threshold:
                    del m[k]
                else:
                    m[k] = v + 1
                m[add] = i

        def in_block() -> None:
            with self.d.locked() as m:
                expire(m, m.items())  # live, while the loop writes

        interrupted = interrupt_at is not None and interrupt_at < len(self.model)
        if interrupted:
            with pytest.raises(KeyboardInterrupt):
                in_block()
            with pytest.raises(KeyboardInterrupt):
                expire(self.model, list(self.model.items()))
        else:
            in_block()
            # The specification: the loop runs over the items as they were.
            expire(self.model, list(self.model.items()))

    @rule()
    def copies(self) -> None:
        for clone in (
            self.d.copy(),
            copy.copy(self.d),
            copy.deepcopy(self.d),
            pickle.loads(pickle.dumps(self.d)),  # noqa: S301
            LockedDict.fromkeys(self.model, 0) | self.d,
        ):
            assert list(clone.items()) == list(self.model.items())
            assert clone == self.d
            clone._check()

    @invariant()
    def matches_model(self) -> None:
        self.d._check()
        assert len(self.d) == len(self.model)
        assert list(self.d) == list(self.model)
        assert list(self.d.keys()) == list(self.model.keys())
        assert self.d.keys() & {"a", "b"} == self.model.keys() & {"a", "b"}
        assert list(self.d.items()) == list(self.model.items())
        assert list(self.d.values()) == list(self.model.values())
        assert list(reversed(self.d)) == list(reversed(self.model))
        assert self.d == self.model
        assert self.d.snapshot() == self.model
        assert repr(self.d) == f"LockedDict({self.model!r})"


TestLockedDictMachine = LockedDictMachine.TestCase


# --- stress -----------------------------------------------------------------

ACCOUNTS = 50
START_BALANCE = 100
TOTAL = ACCOUNTS * START_BALANCE


def run_until(
    stop: threading.Event,
    deadline: float,
    body: Callable[[], None],
    running: threading.Barrier,
) -> Callable[[], int]:
    """A thread target repeating `body` until `stop` is set; returns the count.

    After the first call of `body` it waits at `running`, so that the test can
    start its writers once every reader is under way.
    """

    def loop() -> int:
        body()
        running.wait()
        n = 1
        while not stop.is_set() and time.monotonic() < deadline:
            body()
            n += 1
        return n

    return loop


@pytest.mark.stress
@pytest.mark.usefixtures("fast_switching")
class TestStress:
    def test_transactions_and_readers_see_whole_states(
        self, stress_rng: random.Random
    ) -> None:
        """Readers iterating during transfers, splits and merges always see the
        constant total, and nothing raises."""
        d = LockedDict((f"acct{i}", START_BALANCE) for i in range(ACCOUNTS))
        transactions_per_writer = 5_000
        seeds = [stress_rng.randrange(2**32) for _ in range(2)]
        stop = threading.Event()
        deadline = time.monotonic() + 8.0

        def writer(seed: int) -> int:
            import random as _random

            rng = _random.Random(seed)
            fresh = 0
            for _ in range(transactions_per_writer):
                with d.locked() as m:
                    names = list(m)
                    a, b = rng.sample(names, 2)
                    amount = rng.randint(0, m[a])
                    kind = rng.random()
                    if kind < 0.4:  # transfer
                        m[a] -= amount
                        m[b] += amount
                    elif kind < 0.7 or len(m) < 10:  # split into a new key
                        fresh += 1
                        m[a] -= amount
                        m[f"w{seed}-{fresh}"] = amount
                    else:  # merge a into b, deleting a
                        m[b] += m.pop(a)
            return transactions_per_writer

        def check_items() -> None:
            assert sum(v for _, v in d.items()) == TOTAL

        def check_values() -> None:
            total = 0
            for v in d.values():
                total += v
            assert total == TOTAL

        def check_keys() -> None:
            snap = d.snapshot()
            assert sum(snap.values()) == TOTAL
            assert len([k for k in d if k]) > 0

        bodies = (check_items, check_values, check_keys)
        running = threading.Barrier(len(bodies) + 1, timeout=TIMEOUT)
        readers = [
            start(run_until(stop, deadline, body, running), name=f"reader-{i}")
            for i, body in enumerate(bodies)
        ]
        running.wait()  # every reader is iterating: now start the writers
        writers = [
            start(writer, seed, name=f"writer-{i}") for i, seed in enumerate(seeds)
        ]
        try:
            done = [w.result(timeout=TIMEOUT * 3) for w in writers]
        finally:
            stop.set()
        reads = [r.result(timeout=TIMEOUT) for r in readers]
        assert done == [transactions_per_writer] * 2
        assert all(n > 0 for n in reads), reads  # readers ran during the writes
        assert sum(d.values()) == TOTAL
        d._check()

    def test_plain_dict_control_fails(self) -> None:
        """The same kind of reader on a plain dict does raise: the test can see
        the failure LockedDict prevents."""
        plain = dict.fromkeys(range(10_000), 1)
        stop = threading.Event()

        def churn() -> None:
            n = 10_000
            while not stop.is_set():
                plain[n] = 1
                del plain[n - 10_000]
                n += 1

        writer = threading.Thread(target=churn, name="churn")
        writer.start()
        errors: list[RuntimeError] = []
        deadline = time.monotonic() + 10.0
        try:
            while not errors and time.monotonic() < deadline:
                try:
                    for _ in plain.items():
                        pass
                except RuntimeError as exc:
                    errors.append(exc)
        finally:
            stop.set()
            writer.join(TIMEOUT)
        assert errors, "the plain dict never failed; the control cannot detect races"
        assert re.search(r"dictionary (changed size|keys changed)", str(errors[0]))

    def test_compute_counter_is_exact(self) -> None:
        """8 threads x 10,000 compute increments land at exactly 80,000."""
        threads, increments = 8, 10_000
        d: LockedDict[str, int] = LockedDict()
        start = threading.Barrier(threads, timeout=TIMEOUT)

        def bump(n: int | Missing) -> int:
            return 1 if n is MISSING else n + 1

        def work() -> None:
            start.wait()
            for _ in range(increments):
                d.compute("hits", bump)

        workers = [spawn(work) for _ in range(threads)]
        for w in workers:
            w.result(timeout=TIMEOUT * 3)
        assert d["hits"] == threads * increments
        d._check()

    def test_merge_counters_and_expiry_loops_lose_nothing(
        self, stress_rng: random.Random
    ) -> None:
        """Counting threads merge while janitors drain keys by iterating inside
        locked() and by remove_if: every increment ends up counted once."""
        counters, increments, keys_per_thread = 4, 5_000, 20
        d: LockedDict[str, int] = LockedDict()
        start = threading.Barrier(counters + 2, timeout=TIMEOUT)
        done = threading.Event()
        seeds = [stress_rng.randrange(2**32) for _ in range(counters)]

        def count(seed: int) -> int:
            import random as _random

            rng = _random.Random(seed)
            start.wait()
            for _ in range(increments):
                d.merge(f"k{rng.randrange(keys_per_thread)}", 1, operator.add)
            return increments

        def drain_in_block() -> int:
            start.wait()
            passes = 0
            while not done.is_set() or passes == 0:
                with d.locked() as m:
                    for k, v in m.items():  # writes while iterating
                        if k != "total":
                            del m[k]
                            m["total"] = m.get("total", 0) + v
                passes += 1
            return passes

        def drain_with_remove_if() -> int:
            start.wait()
            passes = 0
            while not done.is_set() or passes == 0:
                with d.locked():  # the removal and the merge as one step
                    removed = d.remove_if(lambda k, _: k != "total")
                    d.merge("total", sum(v for _, v in removed), operator.add)
                passes += 1
            return passes

        counting = [spawn(count, seed) for seed in seeds]
        janitors = [spawn(drain_in_block), spawn(drain_with_remove_if)]
        try:
            counted = [t.result(timeout=TIMEOUT * 6) for t in counting]
        finally:
            done.set()
        passes = [t.result(timeout=TIMEOUT) for t in janitors]
        assert counted == [increments] * counters
        assert all(n > 0 for n in passes), passes
        assert sum(d.values()) == counters * increments
        assert_consistent(d)

    def test_get_or_set_factory_once_per_key(self, stress_rng: random.Random) -> None:
        """Racing get_or_set calls run each key's factory once; all get its value."""
        threads, distinct = 6, 2_000
        d: LockedDict[int, object] = LockedDict()
        calls: dict[int, int] = {}
        orders = []
        for _ in range(threads):
            order = list(range(distinct))
            stress_rng.shuffle(order)
            orders.append(order)
        start = threading.Barrier(threads, timeout=TIMEOUT)

        def work(order: list[int]) -> list[object]:
            start.wait()
            seen: list[object] = [None] * distinct

            for key in order:

                def factory(key: int = key) -> object:
                    calls[key] = calls.get(key, 0) + 1
                    return object()

                seen[key] = d.get_or_set(key, factory)
            return seen

        workers = [spawn(work, order) for order in orders]
        results = [w.result(timeout=TIMEOUT * 3) for w in workers]
        assert sum(calls.values()) == distinct
        assert set(calls.values()) == {1}
        for key in range(distinct):
            assert all(r[key] is d[key] for r in results)
        d._check()


def test_tour_section_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The dict part of `python -m safethreads` runs and shows exact results."""
    from safethreads import _tour

    assert _tour.main(["tour", "dict"]) == 0
    out = capsys.readouterr().out
    assert "a LockedDict, same writer: 0 of 30 passes failed" in out
    assert "-> 20,000" in out


def test_exports() -> None:
    """The new names are exported from safethreads."""
    for name in ("LockedDict", "LockedDictGuard", "MISSING", "Missing"):
        assert name in safethreads.__all__
