"""LockedDict against a plain dict and the hand-written dict + Lock wrappers."""

from __future__ import annotations

import itertools
import operator
import statistics
import sys
import threading
import time
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from safethreads import MISSING, LockedDict, Missing

from ._harness import Case, compare, progress, table

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping

K = TypeVar("K")
V = TypeVar("V")

N_KEYS = 1_000
PASSES = 100  # single-key operations per round: N_KEYS * PASSES
ITER_KEYS = 10_000
ITER_PASSES = 20
CONTENTION_SECONDS = 2.0
CONTENTION_ROUNDS = 3


class WithLockDict(Generic[K, V]):
    """The hand-written wrapper: a Lock taken in a `with` statement."""

    __slots__ = ("_data", "_lock")

    def __init__(self, data: Mapping[K, V]) -> None:
        self._data = dict(data)
        self._lock = threading.Lock()

    def __getitem__(self, key: K, /) -> V:
        with self._lock:
            return self._data[key]

    def __setitem__(self, key: K, value: V, /) -> None:
        with self._lock:
            self._data[key] = value

    def __contains__(self, key: K, /) -> bool:
        with self._lock:
            return key in self._data

    def get(self, key: K, /) -> V | None:
        with self._lock:
            return self._data.get(key)


class AcquireLockDict(Generic[K, V]):
    """The faster hand-written wrapper: acquire(), try, finally."""

    __slots__ = ("_data", "_lock")

    def __init__(self, data: Mapping[K, V]) -> None:
        self._data = dict(data)
        self._lock = threading.Lock()

    def __getitem__(self, key: K, /) -> V:
        lock = self._lock
        lock.acquire()
        try:
            return self._data[key]
        finally:
            lock.release()

    def __setitem__(self, key: K, value: V, /) -> None:
        lock = self._lock
        lock.acquire()
        try:
            self._data[key] = value
        finally:
            lock.release()

    def __contains__(self, key: K, /) -> bool:
        lock = self._lock
        lock.acquire()
        try:
            return key in self._data
        finally:
            lock.release()

    def get(self, key: K, /) -> V | None:
        lock = self._lock
        lock.acquire()
        try:
            return self._data.get(key)
        finally:
            lock.release()


class Contender(Protocol):
    """What the single-key benchmarks call: the operations all contenders share."""

    def __getitem__(self, key: str, /) -> int: ...
    def __setitem__(self, key: str, value: int, /) -> None: ...
    def __contains__(self, key: str, /) -> bool: ...
    def get(self, key: str, /) -> int | None: ...


KEYS = [f"key{i}" for i in range(N_KEYS)]
WORKLOAD = KEYS * PASSES


def contenders() -> list[tuple[str, Contender]]:
    data = dict.fromkeys(KEYS, 0)
    return [
        ("Lock in `with`", WithLockDict(data)),
        ("Lock acquire/try/finally", AcquireLockDict(data)),
        ("LockedDict", LockedDict(data)),
        ("plain dict (no lock)", dict(data)),
    ]


def getitem_round(d: Contender) -> Callable[[], None]:
    def run() -> None:
        for k in WORKLOAD:
            d[k]

    return run


def setitem_round(d: Contender) -> Callable[[], None]:
    def run() -> None:
        for k in WORKLOAD:
            d[k] = 1

    return run


def contains_round(d: Contender) -> Callable[[], None]:
    def run() -> None:
        for k in WORKLOAD:
            k in d  # noqa: B015

    return run


def get_round(d: Contender) -> Callable[[], None]:
    def run() -> None:
        for k in WORKLOAD:
            d.get(k)

    return run


def single_key(rounds: int) -> None:
    for title, make in (
        ("`d[k]`", getitem_round),
        ("`d[k] = v`", setitem_round),
        ("`k in d`", contains_round),
        ("`d.get(k)`", get_round),
    ):
        compare(
            f"{title} on {N_KEYS:,} keys",
            [Case(label, make(d)) for label, d in contenders()],
            ops=len(WORKLOAD),
            rounds=rounds,
        )


def iteration(rounds: int) -> None:  # noqa: C901 (one closure per case)
    data = {f"key{i}": i for i in range(ITER_KEYS)}
    plain = dict(data)
    locked = LockedDict(data)
    lock = threading.Lock()

    def plain_items() -> None:
        for _ in range(ITER_PASSES):
            for _k, _v in plain.items():
                pass

    def locked_items() -> None:
        for _ in range(ITER_PASSES):
            for _k, _v in locked.items():
                pass

    def locked_items_after_write() -> None:
        for i in range(ITER_PASSES):
            locked["key0"] = i  # a change: the next items() must copy again
            for _k, _v in locked.items():
                pass

    def plain_copy_items() -> None:
        for _ in range(ITER_PASSES):
            for _k, _v in plain.copy().items():
                pass

    def inside_locked() -> None:
        for _ in range(ITER_PASSES):
            with locked.locked() as m:
                for _k, _v in m.items():
                    pass

    def inside_locked_writing() -> None:
        for i in range(ITER_PASSES):
            with locked.locked() as m:
                items = iter(m.items())
                m["key0"] = i  # a write while an iterator is live: one copy
                for _k, _v in items:
                    pass

    def list_snapshot() -> None:
        for _ in range(ITER_PASSES):
            with lock:
                items = list(plain.items())
            for _k, _v in items:
                pass

    compare(
        f"Iterate the items of a {ITER_KEYS:,}-key mapping",
        [
            Case("plain dict `items()` (no lock)", plain_items),
            Case("LockedDict `items()`, unchanged (shared snapshot)", locked_items),
            Case(
                "LockedDict `items()` after a write (new snapshot)",
                locked_items_after_write,
            ),
            Case("LockedDict inside `locked()`", inside_locked),
            Case(
                "LockedDict inside `locked()`, block writes (copy-on-write)",
                inside_locked_writing,
            ),
            Case("plain `d.copy().items()` (the cost of any copy)", plain_copy_items),
            Case("Lock + `list(d.items())` snapshot", list_snapshot),
        ],
        ops=ITER_KEYS * ITER_PASSES,
        rounds=rounds,
        unit="item",
    )


def bump(n: int | Missing) -> int:
    return 1 if n is MISSING else n + 1


def counter(rounds: int) -> None:  # noqa: C901 (one closure per case)
    plain: dict[str, int] = {}
    lock = threading.Lock()
    locked: LockedDict[str, int] = LockedDict()
    keys = KEYS[:10] * (len(WORKLOAD) // 10)

    def with_lock() -> None:
        for k in keys:
            with lock:
                plain[k] = plain.get(k, 0) + 1

    def acquire_lock() -> None:
        for k in keys:
            lock.acquire()
            try:
                plain[k] = plain.get(k, 0) + 1
            finally:
                lock.release()

    def compute() -> None:
        for k in keys:
            locked.compute(k, bump)

    def merge() -> None:
        for k in keys:
            locked.merge(k, 1, operator.add)

    def transaction() -> None:
        for k in keys:
            with locked.locked() as m:
                m[k] = m.get(k, 0) + 1

    compare(
        "Counter increments",
        [
            Case("`with lock: d[k] = d.get(k, 0) + 1`", with_lock),
            Case("Lock acquire/try/finally, same body", acquire_lock),
            Case("LockedDict `merge(k, 1, operator.add)`", merge),
            Case("LockedDict `compute(k, bump)`", compute),
            Case("LockedDict `locked()`, same body", transaction),
        ],
        ops=len(keys),
        rounds=rounds,
    )


EXPIRE_EVERY = 100  # one key in a hundred has expired


def expiry(rounds: int) -> None:
    """Drop the expired 1% of a mapping, then put them back (for the next pass)."""
    data = {f"key{i}": i for i in range(ITER_KEYS)}
    expired = {k: v for k, v in data.items() if v % EXPIRE_EVERY == 0}
    plain = dict(data)
    lock = threading.Lock()
    locked = LockedDict(data)

    def with_lock() -> None:
        for _ in range(ITER_PASSES):
            with lock:
                for k in [k for k, v in plain.items() if v % EXPIRE_EVERY == 0]:
                    del plain[k]
                plain.update(expired)

    def loop_in_locked() -> None:
        for _ in range(ITER_PASSES):
            with locked.locked() as m:
                for k, v in m.items():
                    if v % EXPIRE_EVERY == 0:
                        del m[k]
            locked.update(expired)

    def remove_if() -> None:
        for _ in range(ITER_PASSES):
            locked.remove_if(lambda _, v: v % EXPIRE_EVERY == 0)
            locked.update(expired)

    compare(
        f"Expire 1% of a {ITER_KEYS:,}-key mapping (and put it back)",
        [
            Case("Lock + list of expired keys + `del`", with_lock),
            Case("LockedDict loop in `locked()` with `del m[k]`", loop_in_locked),
            Case("LockedDict `remove_if`", remove_if),
        ],
        ops=ITER_KEYS * ITER_PASSES,
        rounds=rounds,
        unit="item",
    )


def contention_run(
    write: Callable[[str, int], None], read: Callable[[], None]
) -> tuple[int, int]:
    """Two writers and two readers for CONTENTION_SECONDS; return their counts."""
    stop = threading.Event()
    counts = {"reads": 0, "writes": 0}
    count_lock = threading.Lock()  # guards counts

    def writer(offset: int) -> None:
        n = 0
        names = itertools.cycle(KEYS[offset::2])
        while not stop.is_set():
            for _ in range(100):
                write(next(names), n)
                n += 1
        with count_lock:
            counts["writes"] += n

    def reader() -> None:
        n = 0
        while not stop.is_set():
            read()
            n += 1
        with count_lock:
            counts["reads"] += n

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(CONTENTION_SECONDS)
    stop.set()
    for t in threads:
        t.join()
    progress(".")
    return counts["reads"], counts["writes"]


def contention() -> None:  # noqa: C901 (one closure per case)
    data = {f"key{i}": i for i in range(ITER_KEYS)}
    plain = dict(data)
    lock = threading.Lock()
    locked = LockedDict(data)

    def plain_write(k: str, v: int) -> None:
        with lock:
            plain[k] = v

    def plain_read() -> None:
        with lock:  # held for the whole iteration
            for _k, _v in plain.items():
                pass

    def locked_read() -> None:
        for _k, _v in locked.items():
            pass

    def live_read() -> None:
        with locked.locked() as m:  # held for the whole iteration
            for _k, _v in m.items():
                pass

    store: MutableMapping[str, int] = locked
    configs: list[tuple[str, Callable[[str, int], None], Callable[[], None]]] = [
        ("plain dict + Lock held while iterating", plain_write, plain_read),
        ("LockedDict, readers iterate `items()`", store.__setitem__, locked_read),
        ("LockedDict, readers iterate in `locked()`", store.__setitem__, live_read),
    ]
    runs: list[list[tuple[int, int]]] = [[] for _ in configs]
    order = list(range(len(configs)))
    for _ in range(CONTENTION_ROUNDS):  # interleaved, in a rotating order
        for i in order:
            _, write, read = configs[i]
            runs[i].append(contention_run(write, read))
        order = order[1:] + order[:1]
    progress("\n")
    print(
        f"\n### Contention: 2 writers + 2 readers iterating {ITER_KEYS:,} keys "
        f"for {CONTENTION_SECONDS:g} s (median [min–max] of {CONTENTION_ROUNDS})\n"
    )

    def spread(values: list[int]) -> str:
        return f"{statistics.median(values):,.0f} [{min(values):,}–{max(values):,}]"

    print(
        table(
            ["case", "reader iterations", "writer operations"],
            [
                [label, spread([r for r, _ in run]), spread([w for _, w in run])]
                for (label, _, _), run in zip(configs, runs, strict=True)
            ],
        )
    )
    sys.stdout.flush()


def run(rounds: int) -> None:
    """Single-key operations, iteration, counters, expiry and a contention run."""
    single_key(rounds)
    iteration(rounds)
    counter(rounds)
    expiry(rounds)
    contention()
