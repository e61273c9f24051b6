"""Type-checked, never run: LockedDict's counting and expiring operations."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import assert_type

from safethreads import MISSING, LockedDict, Missing


def counters(hits: LockedDict[str, int]) -> None:
    # The natural counter type-checks: no `n is MISSING` branch is needed.
    assert_type(hits.merge("home", 1, operator.add), int)
    assert_type(hits.merge("home", 1, lambda old, n: old + n), int)
    assert_type(hits.merge("home", 1, max), int)
    # Deleting a count that reaches zero is compute_if_present's job.
    assert_type(
        hits.compute_if_present("home", lambda n: n - 1 or MISSING), int | Missing
    )


def present_only(hits: LockedDict[str, int]) -> None:
    assert_type(hits.compute_if_present("home", lambda n: n + 1), int | Missing)
    assert_type(hits.compute_if_present("home", lambda _: MISSING), int | Missing)
    new = hits.compute_if_present("home", abs)
    if new is not MISSING:
        assert_type(new, int)


@dataclass
class Entry:
    value: bytes
    deadline: float


def expiry(cache: LockedDict[str, Entry], now: float) -> None:
    expired = cache.remove_if(lambda _, entry: entry.deadline < now)
    assert_type(expired, list[tuple[str, Entry]])
    for key, entry in expired:
        assert_type(key, str)
        assert_type(entry, Entry)


def rejected(hits: LockedDict[str, int], cache: LockedDict[str, Entry]) -> None:
    hits.merge("home", "1", operator.add)  # type: ignore[arg-type]
    hits.merge("home", 1, lambda old, _: str(old))  # type: ignore[arg-type,return-value]
    hits.merge("home", 1, lambda *_: MISSING)  # type: ignore[arg-type]
    hits.compute_if_present("home", lambda n: n.upper())  # type: ignore[attr-defined]
    cache.remove_if(lambda _: True)  # type: ignore[arg-type,misc]
    hits.merge(1, 1, operator.add)  # type: ignore[arg-type]
