"""Type-checked, never run: the static types of LockedDict's public surface."""

from __future__ import annotations

import copy
from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from typing import Any, Literal, assert_type

from safethreads import MISSING, LockedDict, LockedDictGuard, Missing


def constructors() -> None:
    assert_type(LockedDict[str, int](), LockedDict[str, int])
    assert_type(LockedDict(a=1), LockedDict[str, int])
    assert_type(LockedDict({1: "x"}), LockedDict[int, str])
    assert_type(LockedDict({"a": 1}, b=2), LockedDict[str, int])
    assert_type(LockedDict([(1.5, b"x")]), LockedDict[float, bytes])
    assert_type(LockedDict([("a", 1)], b=2), LockedDict[str, int])
    assert_type(LockedDict(LockedDict(a=1)), LockedDict[str, int])
    assert_type(LockedDict.fromkeys(["a"]), LockedDict[str, Any | None])
    assert_type(LockedDict.fromkeys(range(3), 0.0), LockedDict[int, float])
    d: MutableMapping[str, int] = LockedDict(a=1)  # a MutableMapping
    assert_type(d, MutableMapping[str, int])


def single_operations(d: LockedDict[str, int]) -> None:
    assert_type(d["a"], int)
    d["a"] = 1
    del d["a"]
    assert_type("a" in d, bool)
    assert_type(len(d), int)
    assert_type(d.get("a"), int | None)
    assert_type(d.get("a", 0), int)
    assert_type(d.get("a", "none"), int | str)
    assert_type(d.pop("a"), int)
    assert_type(d.pop("a", 0), int)
    assert_type(d.pop("a", None), int | None)
    assert_type(d.popitem(), tuple[str, int])
    assert_type(d.setdefault("a", 1), int)
    maybe: LockedDict[str, int | None] = LockedDict()
    assert_type(maybe.setdefault("a"), int | None)
    assert_type(d.update({"b": 2}), None)
    assert_type(d.update([("b", 2)]), None)
    assert_type(d.update(b=2), None)
    assert_type(d.update(LockedDict(c=3)), None)
    assert_type(d.clear(), None)


def iteration(d: LockedDict[str, int]) -> None:
    assert_type(iter(d), Iterator[str])
    assert_type(reversed(d), Iterator[str])
    assert_type(d.keys(), KeysView[str])
    assert_type(d.values(), ValuesView[int])
    assert_type(d.items(), ItemsView[str, int])
    assert_type(d.snapshot(), dict[str, int])
    assert_type(d.copy(), LockedDict[str, int])
    assert_type(copy.copy(d), LockedDict[str, int])
    assert_type(copy.deepcopy(d), LockedDict[str, int])


def operators(d: LockedDict[str, int]) -> None:
    assert_type(d == {"a": 1}, bool)
    assert_type(d | {"b": 2}, LockedDict[str, int])
    assert_type(d | LockedDict(b=2), LockedDict[str, int])
    assert_type(d | {1: "x"}, LockedDict[str | int, int | str])
    assert_type({"b": 2} | d, LockedDict[str, int])
    d |= {"c": 3}
    d |= [("c", 3)]
    assert_type(d, LockedDict[str, int])


def transactions(d: LockedDict[str, int]) -> None:
    assert_type(d.locked(), LockedDictGuard[str, int])
    with d.locked() as m:
        assert_type(m, LockedDictGuard[str, int])
        assert_type(m["a"], int)
        m["a"] = 1
        assert_type(m.get("a"), int | None)
        assert_type(m.get("a", 0), int)
        assert_type(m.items(), ItemsView[str, int])
        assert_type(m.keys(), KeysView[str])
        assert_type(m.values(), ValuesView[int])
        assert_type(m.popitem(), tuple[str, int])
        mapping: MutableMapping[str, int] = m
        assert_type(mapping, MutableMapping[str, int])


def compound_operations(d: LockedDict[str, int]) -> None:
    assert_type(d.get_or_set("a", lambda: 1), int)
    assert_type(d.get_or_set("a", int), int)
    assert_type(d.compute("a", lambda n: 1 if n is MISSING else n + 1), int | Missing)

    def maybe_delete(n: int | Missing) -> int | Missing:
        if isinstance(n, Missing) or n > 10:
            return MISSING
        assert_type(n, int)
        return n + 1

    assert_type(d.compute("a", maybe_delete), int | Missing)
    assert_type(d.compare_and_set("a", 1, 2), bool)
    assert_type(d.compare_and_set("a", MISSING, 2), bool)
    assert_type(d.compare_and_delete("a", 1), bool)
    assert_type(MISSING, Literal[Missing.MISSING])

    def narrowed(n: int | Missing) -> int:
        if n is MISSING:
            return 0
        assert_type(n, int)
        return n


def rejected(d: LockedDict[str, int]) -> None:
    d["a"] = "x"  # type: ignore[assignment]
    d[1]  # type: ignore[index]
    d.compute("a", lambda n: n + 1)  # type: ignore[operator]
    d.get_or_set("a", str)  # type: ignore[arg-type]
    d.compare_and_set("a", 1, "x")  # type: ignore[arg-type]
    d.compute("a", lambda _: "x")  # type: ignore[arg-type,return-value]
