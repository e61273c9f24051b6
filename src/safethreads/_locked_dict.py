"""LockedDict: a mapping whose every operation, and every iteration, is atomic.

Design.  A `LockedDict` wraps a private `dict` and guards it with one
`threading.RLock`.  Every public method takes that lock, reads included: a
reader must never see half of a transaction made inside `with d.locked():`,
and on free-threaded CPython nothing else makes a dict read atomic with respect
to a multi-step writer.  The lock is re-entrant so that the owner of a
`locked()` block, and the callbacks run by the compound operations, may call
the dict's own methods without deadlocking on themselves.

Iteration is over a snapshot: `dict.copy()` taken under the lock is one C-level
operation (cheaper than iterating the dict once), after which the caller
iterates a private dict that nobody changes.  Nothing is iterated while the
lock is held, so no user code runs under the lock during iteration, and
iteration can never fail because another thread changed the mapping.  The
snapshot is kept in `_cache` and shared by every iteration until the next
change: only iterators and read-only views of it are handed out (never the
dict itself, not even to a `dict` subclass's `__eq__`), so nobody can change
it, and a dict that is read far more often than it is written pays for one
copy per change instead of one per iteration.

Inside `locked()` iteration is live, without a copy, and it must not fail
either when the block writes (the expiry loop `for k, v in m.items(): if
old(v): del m[k]`).  The mechanism is copy-on-write: handing out a live
iterator sets the `_iterating` flag; the first write made while the flag is
set first moves the contents to a fresh copy (`_data = _data.copy()`) and
clears the flag.  The iterators keep going over the old dict, which nobody
changes any more, so they see the mapping as it was when they were created,
exactly like iterators made outside the block.  A block that only reads
copies nothing; a block that writes pays at most one O(n) copy per iterator
it created before writing.  Because `_data` may be replaced, nothing keeps a
reference to it across a write: guards read `owner._data` on every use.

Every write drops the shared snapshot *before* it changes `_data`, so a
write that fails half-way (a key's `__eq__` raising inside `dict.update`,
or a KeyboardInterrupt) can never leave a stale snapshot behind: at every
point, iteration, `len`, `in` and `snapshot()` agree.

Callbacks (the factory of `get_or_set`, the function of `compute`, and the
`==` behind the `compare_and_*` operations) run under the lock, which is what
makes those operations atomic.  While one runs, the dict is read-only to it:
the `_frozen` flag makes every mutating method raise `RuntimeError`.  This is
the rule Java's `ConcurrentHashMap` enforces with its "recursive update"
check, and it is what lets a raising callback leave the mapping exactly as it
was, with no rollback.  `remove_if` goes further: it removes the chosen keys
from a copy and installs the copy, so even a key's `__hash__` or `__eq__`
raising half-way changes nothing.  Only the thread holding the lock ever
reads or writes the flags, so they need no lock of their own.  Writes test one
of them, `_slow` (frozen or iterating), so their fast path costs what a single
flag did; booleans rather than bits, because storing a constant is cheaper
than a read-modify-write on every callback.

A change drops the shared snapshot but keeps a reference to it in a local
variable until the lock is released, so the O(n) work of freeing an unused
snapshot never happens while other threads wait for the lock.

Ctrl-C.  CPython raises the KeyboardInterrupt of a signal in the main thread
where that thread checks for pending work: when a Python function starts,
after each call returns, and on a loop's backward jump (never between other
instructions).  So `lock.acquire()` followed by `try:` can leave the lock
held, the exception landing as `acquire()` returns, and so can a Python
`__exit__`, the exception landing as it starts.  Every method therefore
calls `acquire()` inside a `try` of its own, whose handler releases the lock
if the call took it (`release()` raises `RuntimeError` if the signal
interrupted the wait instead), and a guard's `__exit__` is the lock's own
C-level `__exit__` (see `LockedDictGuard.__exit__`).  No loop that runs with
the lock held has an `if` in it: CPython 3.12 and 3.13 place the backward
jump of a skipped iteration outside the enclosing `try`.

Speed.  The methods bind the lock to a local and use `acquire()`/`try`/
`finally` rather than a `with` statement: on CPython 3.11 the context-manager
protocol costs more than the dict operation it protects.  The `try` around
`acquire()` costs nothing until an exception is raised.
"""

from __future__ import annotations

import enum
import operator
import os
import reprlib
import sys
import threading
import weakref
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MutableMapping,
    ValuesView,
)
from itertools import compress
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Final,
    Generic,
    NoReturn,
    Protocol,
    SupportsIndex,
    TypeVar,
    cast,
    final,
    overload,
)

from ._waiting import check_callable

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import Self

    from _typeshed import SupportsKeysAndGetItem

__all__ = ["MISSING", "LockedDict", "LockedDictGuard", "Missing"]

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")
S = TypeVar("S")
K2 = TypeVar("K2")
V2 = TypeVar("V2")

_get_ident = threading.get_ident
_add = operator.add  # the counting merge, tested by identity on its hot path


class _RLock(Protocol):
    """`threading.RLock`, with the private methods (C RLock, 3.11+) used here."""

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool: ...
    def release(self) -> None: ...
    def __exit__(self, *args: object) -> None: ...
    def _is_owned(self) -> bool: ...
    def _recursion_count(self) -> int: ...
    def _at_fork_reinit(self) -> None: ...


# Every LockedDict, by id (they are unhashable), for the fork handler below.
_every_dict: weakref.WeakValueDictionary[int, LockedDict[Any, Any]] = (
    weakref.WeakValueDictionary()
)


def _after_fork_in_child() -> None:
    """Free the locks that threads which do not exist in the child held.

    Only the thread that called `fork()` lives on in the child.  A lock held
    by another thread at that moment would never be released, and the
    child's first use of the dict would hang.  Such a dict is given a fresh
    lock and flags; its contents are what they were at the fork (a
    `locked()` block that other thread was in has made only the changes it
    had made so far).  A lock held by the forking thread itself is left as
    it is: that thread goes on, and releases it, in the child.
    """
    for d in list(_every_dict.values()):
        lock = d._lock
        if lock._is_owned():  # by the forking thread
            continue
        if lock.acquire(blocking=False):  # free
            lock.release()
            continue
        lock._at_fork_reinit()
        d._frozen = d._iterating = d._slow = False
        d._cache = None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


# A guard's `_level` before it is entered: no thread holds a lock this often.
_NEVER: Final = sys.maxsize


@final
class Missing(enum.Enum):
    """The type of `MISSING`, the marker for "no value under this key".

    `compute` passes `MISSING` to its function when the key is absent, and
    deletes the key when the function returns it; `compare_and_set` accepts it
    as `expected` to mean "only if the key is absent".  It is an enum with one
    member so that type checkers narrow `value is MISSING` (and
    `isinstance(value, Missing)`) to the present value's type.

    `MISSING` is a marker, not a value: do not store it in a `LockedDict`
    (the compound operations would take such a key for absent).
    """

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing.MISSING
"""Passed to `compute`'s function for an absent key; returned to delete it."""


def _refuse_mutation(operation: str) -> NoReturn:
    raise RuntimeError(
        f"{operation} changes the LockedDict whose get_or_set(), compute(), "
        "merge(), remove_if() or compare_and_*() callback is running; "
        "callbacks may read the dict but not change it: return the new value "
        "instead, or change other keys after the call returns"
    )


def _refuse_missing(operation: str) -> NoReturn:
    raise ValueError(
        f"{operation} cannot store MISSING: it is the marker for an absent key, "
        "not a value; delete the key instead (del d[key], or return MISSING "
        "from a compute() function)"
    )


def _check_fn(fn: object) -> None:
    """Raise `TypeError` if `fn` is not callable."""
    if not callable(fn):
        check_callable(fn, "fn")


def _check_no_missing(values: Iterable[object], operation: str) -> None:
    """Refuse MISSING among `values`, by identity (no user `__eq__` runs)."""
    for value in values:
        if value is MISSING:
            _refuse_missing(operation)


def _as_dict(
    other: SupportsKeysAndGetItem[Any, Any] | Iterable[tuple[Any, Any]],
    kwargs: dict[str, Any],
    operation: str,
) -> dict[Any, Any]:
    """Materialise update() input outside the lock, atomically for LockedDicts."""
    if isinstance(other, LockedDict):
        data = other.snapshot()
        data.update(kwargs)
    else:
        data = dict(other, **kwargs)
    _check_no_missing(data.values(), operation)
    return data


@final
class LockedDict(MutableMapping[K, V], Generic[K, V]):
    """A dict for sharing between threads: atomic operations, safe iteration.

    A full `MutableMapping` with dict's constructor forms and methods, where
    every operation is atomic with respect to every other, from any number of
    threads, on GIL and free-threaded builds alike:

    ```python
    import operator

    from safethreads import LockedDict

    hits: LockedDict[str, int] = LockedDict(home=1)
    hits.merge("home", 1, operator.add)  # atomic +1
    assert hits == {"home": 2}

    for page, count in hits.items():  # a snapshot: never fails mid-iteration
        assert (page, count) == ("home", 2)

    with hits.locked() as m:  # exclusive access for a multi-step change
        m["about"] = m.pop("home")
    assert hits.snapshot() == {"about": 2}
    assert hits.remove_if(lambda page, count: count > 1) == [("about", 2)]
    ```

    Thread safety:

    - Every method is atomic: it takes the dict's lock for its whole duration.
    - `iter(d)`, `keys()`, `values()`, `items()` and `reversed(d)` work on a
      snapshot taken atomically when they are called: they never raise
      because of concurrent changes and never show a torn state.  The views
      keep dict's `len`, `in` and set operations, on that snapshot, and do not
      follow later changes.  The snapshot is an O(n) `dict.copy()` under the
      lock, shared by every iteration until the next change; to iterate
      without it, use `locked()`, where iteration never fails either.
    - `merge`, `compute_if_present`, `remove_if`, `get_or_set`, `compute`,
      `compare_and_set` and `compare_and_delete` are atomic read-modify-write
      operations.  Their callbacks run under the lock (keep them short; other
      threads wait) and may read this dict but not change it
      (`RuntimeError`).  A callback that raises, `KeyboardInterrupt`
      included, leaves the mapping unchanged; the exception propagates.
    - `==`, `repr()`, `copy()`, pickling and deep copies work on a snapshot,
      outside the lock.
    - Keys' `__hash__` and `__eq__` run under the lock, as in every dict
      operation; they must not wait for other threads using this dict, nor
      use this dict themselves.

    `dict(d)` and `{**d}` read a `LockedDict` key by key, not atomically
    (that is how `dict` reads any mapping): use `d.snapshot()` instead.
    `LockedDict` cannot be subclassed (`TypeError`), and `MISSING` cannot be
    stored in it (`ValueError`).

    Args:
        other: A mapping or an iterable of key-value pairs, as for `dict`.
        **kwargs: More items, as for `dict`.

    Raises:
        TypeError: if `other` is neither a mapping nor an iterable of pairs,
            or a key is unhashable (as `dict` raises).
    """

    __slots__ = (
        "__weakref__",
        "_cache",
        "_data",
        "_frozen",
        "_iterating",
        "_lock",
        "_slow",
    )

    __hash__: ClassVar[None]  # type: ignore[assignment]

    def __init_subclass__(cls, **kwargs: object) -> NoReturn:
        """Refuse subclassing: dict's protocols would bypass the lock."""
        raise TypeError(
            "LockedDict cannot be subclassed; wrap a LockedDict in your own "
            "class instead, or subclass collections.abc.MutableMapping"
        )

    @overload
    def __init__(self, /) -> None: ...
    @overload
    def __init__(self: LockedDict[str, V], /, **kwargs: V) -> None: ...
    @overload
    def __init__(self, other: SupportsKeysAndGetItem[K, V], /) -> None: ...
    @overload
    def __init__(
        self: LockedDict[str, V],
        other: SupportsKeysAndGetItem[str, V],
        /,
        **kwargs: V,
    ) -> None: ...
    @overload
    def __init__(self, other: Iterable[tuple[K, V]], /) -> None: ...
    @overload
    def __init__(
        self: LockedDict[str, V],
        other: Iterable[tuple[str, V]],
        /,
        **kwargs: V,
    ) -> None: ...
    def __init__(self, other: Any = (), /, **kwargs: Any) -> None:
        """Create the dict from a mapping or pairs, like `dict(...)`."""
        # The contents; read and written only with _lock held.  A write may
        # replace the dict object (copy-on-write for live iterators, and
        # remove_if), so no reference to it is kept across a write.
        self._data: dict[K, V] = _as_dict(other, kwargs, "LockedDict()")
        # Guards _data, _cache and the flags.  Re-entrant: the owner of a
        # locked() block and callbacks may call this dict's own methods.
        self._lock = cast("_RLock", threading.RLock())
        # A copy of _data for iteration, shared by every iterator and view
        # handed out since the last change, which sets it back to None.  Only
        # read-only views and iterators of it ever leave this object.
        self._cache: dict[K, V] | None = None
        _every_dict[id(self)] = self  # so that a forked child can free the lock
        # The flags below are read and written only by the lock's owner.
        # True while a callback runs: the dict is read-only.
        self._frozen = False
        # True once a guard handed out a live iterator over _data: the next
        # write made while a locked() block is open copies _data first.
        # Cleared by the next write, not when the block ends: a block's
        # exit only releases the lock (see LockedDictGuard.__exit__).
        self._iterating = False
        # _frozen or _iterating, kept in step with them: the one test that
        # keeps every write's fast path as fast as a single flag allows.
        self._slow = False

    @classmethod
    def _wrap(cls, data: dict[K, V]) -> LockedDict[K, V]:
        """Adopt `data` (which nobody else references) without copying it."""
        new: LockedDict[K, V] = cls()
        new._data = data
        return new

    @overload
    @classmethod
    def fromkeys(
        cls, iterable: Iterable[T], value: None = None, /
    ) -> LockedDict[T, Any | None]: ...
    @overload
    @classmethod
    def fromkeys(cls, iterable: Iterable[T], value: S, /) -> LockedDict[T, S]: ...
    @classmethod
    def fromkeys(cls, iterable: Iterable[Any], value: Any = None, /) -> Any:
        """Create a LockedDict with keys from `iterable`, each mapped to `value`.

        Args:
            iterable: The keys.
            value: The value of every key (the same object for all).

        Returns:
            A new LockedDict.

        Raises:
            TypeError: if a key is unhashable.
            ValueError: if `value` is `MISSING`.
        """
        if value is MISSING:
            _refuse_missing("fromkeys()")
        return cls._wrap(dict.fromkeys(iterable, value))

    def _before_write(self, operation: str, held: int = 1) -> None:
        """Called, with the lock held, before a write when `_slow` is set.

        Refuses the write from inside a callback.  Otherwise, if a
        `locked()` block is still open (the lock is held more than `held`
        times: once by the calling method, none by a guard, which takes
        nothing itself), moves the contents to a fresh dict, so that the
        live iterators it handed out keep going over the old one, unchanged.
        Once every block has ended, its iterators are dead (they must not be
        kept past the block) and the flag is simply cleared.
        """
        if self._frozen:
            _refuse_mutation(operation)
        if self._lock._recursion_count() > held:
            self._data = self._data.copy()
        self._iterating = self._slow = False

    # --- single-key operations (the hot path) -------------------------------

    def __getitem__(self, key: K, /) -> V:
        """Return `d[key]`.

        Raises:
            KeyError: if `key` is not in the dict.
            TypeError: if `key` is unhashable.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            return self._data[key]
        finally:
            lock.release()

    def __setitem__(self, key: K, value: V, /) -> None:
        """Set `d[key] = value`.

        Raises:
            TypeError: if `key` is unhashable.
            ValueError: if `value` is `MISSING`.
            RuntimeError: if called from a callback of this dict.
        """
        if value is MISSING:
            _refuse_missing("d[key] = value")
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._slow:
                self._before_write("d[key] = value")
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            self._data[key] = value
        finally:
            lock.release()

    def __delitem__(self, key: K, /) -> None:
        """Delete `d[key]`.

        Raises:
            KeyError: if `key` is not in the dict.
            TypeError: if `key` is unhashable.
            RuntimeError: if called from a callback of this dict.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._slow:
                self._before_write("del d[key]")
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            # The value is freed after the lock is released, too.
            _value = self._data.pop(key)
        finally:
            lock.release()

    def __contains__(self, key: object, /) -> bool:
        """Return whether `key` is in the dict.

        Raises:
            TypeError: if `key` is unhashable.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            return key in self._data
        finally:
            lock.release()

    def __len__(self) -> int:
        """Return the number of items."""
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            return len(self._data)
        finally:
            lock.release()

    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V, /) -> V: ...
    @overload
    def get(self, key: K, default: T, /) -> V | T: ...
    def get(self, key: K, default: Any = None, /) -> Any:
        """Return `d[key]` if `key` is in the dict, else `default`.

        Raises:
            TypeError: if `key` is unhashable.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            return self._data.get(key, default)
        finally:
            lock.release()

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, default: V, /) -> V: ...
    @overload
    def pop(self, key: K, default: T, /) -> V | T: ...
    def pop(self, key: K, *default: Any) -> Any:
        """Remove `key` and return its value, or `default` if it is absent.

        Raises:
            KeyError: if `key` is absent and no default is given.
            TypeError: if `key` is unhashable, or more than one default is
                given.
            RuntimeError: if called from a callback of this dict.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._slow:
                self._before_write("pop()")
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            return self._data.pop(key, *default)
        finally:
            lock.release()

    def popitem(self) -> tuple[K, V]:
        """Remove and return the most recently inserted `(key, value)` pair.

        Raises:
            KeyError: if the dict is empty.
            RuntimeError: if called from a callback of this dict.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._slow:
                self._before_write("popitem()")
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            return self._data.popitem()
        finally:
            lock.release()

    @overload
    def setdefault(
        self: LockedDict[K, T | None], key: K, default: None = None, /
    ) -> T | None: ...
    @overload
    def setdefault(self, key: K, default: V, /) -> V: ...
    def setdefault(self, key: K, default: Any = None, /) -> Any:
        """Return `d[key]`, first setting it to `default` if it is absent.

        `default` is evaluated by the caller in every case; to create the
        value only when it is needed, use `get_or_set`.

        Raises:
            TypeError: if `key` is unhashable.
            ValueError: if `default` is `MISSING`.
            RuntimeError: if called from a callback of this dict.
        """
        if default is MISSING:
            _refuse_missing("setdefault()")
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._slow:
                self._before_write("setdefault()")
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            return self._data.setdefault(key, default)
        finally:
            lock.release()

    # --- bulk operations ------------------------------------------------------

    @overload
    def update(self, other: SupportsKeysAndGetItem[K, V], /) -> None: ...
    @overload
    def update(
        self: LockedDict[str, V],
        other: SupportsKeysAndGetItem[str, V],
        /,
        **kwargs: V,
    ) -> None: ...
    @overload
    def update(self, other: Iterable[tuple[K, V]], /) -> None: ...
    @overload
    def update(
        self: LockedDict[str, V], other: Iterable[tuple[str, V]], /, **kwargs: V
    ) -> None: ...
    @overload
    def update(self: LockedDict[str, V], /, **kwargs: V) -> None: ...
    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Add every item of `other` and `kwargs` in one step, like `dict.update`.

        The input is read first, outside the lock (from a `LockedDict`, as a
        snapshot), so bad input changes nothing.  The items are then added in
        one atomic step: other threads see all of them or none.  The one
        exception is user code: if a key's own `__eq__` raises while the items
        are added (it runs when hashes collide), the items added before it
        stay, as with `dict.update`; the dict stays consistent.

        Raises:
            TypeError: if `other` is neither a mapping nor an iterable of pairs,
                or a key is unhashable.
            ValueError: if an element of `other` is not a pair, or a value is
                `MISSING`.
            RuntimeError: if called from a callback of this dict.
        """
        if type(other) is dict and not kwargs:
            items: dict[Any, Any] = other
            _check_no_missing(items.values(), "update()")
        else:
            items = _as_dict(other, kwargs, "update()")
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._slow:
                self._before_write("update()")
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            self._data.update(items)
        finally:
            lock.release()

    def clear(self) -> None:
        """Remove every item.

        Raises:
            RuntimeError: if called from a callback of this dict.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._frozen:
                _refuse_mutation("clear()")
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            # A new dict: live iterators keep the old one, and the items are
            # freed after the lock is released.
            _old, self._data = self._data, {}
            self._iterating = self._slow = False
        finally:
            lock.release()

    # --- snapshots and iteration ---------------------------------------------

    def snapshot(self) -> dict[K, V]:
        """Return an atomic shallow copy: the whole mapping at one instant.

        Costs one `dict.copy()` (O(n)) under the lock.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            return self._data.copy()
        finally:
            lock.release()

    def _shared_snapshot(self) -> dict[K, V]:
        """Return a snapshot that the caller must only read, never change.

        Consecutive calls with no change in between share one copy, so a
        dict that is iterated far more often than it changes pays for the
        copy once per change rather than once per iteration.
        """
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            cache = self._cache
            if cache is None:
                cache = self._cache = self._data.copy()
            return cache
        finally:
            lock.release()

    def copy(self) -> LockedDict[K, V]:
        """Return a new LockedDict holding an atomic shallow copy of this one."""
        return self._wrap(self.snapshot())

    def __iter__(self) -> Iterator[K]:
        """Iterate over the keys of a snapshot taken now."""
        return iter(self._shared_snapshot())

    def __reversed__(self) -> Iterator[K]:
        """Iterate over the keys of a snapshot taken now, newest first."""
        return reversed(self._shared_snapshot())

    def keys(self) -> KeysView[K]:
        """Return the keys of a snapshot taken now.

        The view supports `len`, `in`, `reversed` and set operations like a
        dict's, on the snapshot; it does not follow later changes.
        """
        return self._shared_snapshot().keys()

    def values(self) -> ValuesView[V]:
        """Return the values of a snapshot taken now (see `keys`)."""
        return self._shared_snapshot().values()

    def items(self) -> ItemsView[K, V]:
        """Return the `(key, value)` pairs of a snapshot taken now (see `keys`)."""
        return self._shared_snapshot().items()

    # --- transactions ---------------------------------------------------------

    def locked(self) -> LockedDictGuard[K, V]:
        """Return a context manager for exclusive access to the dict.

        ```python
        from safethreads import LockedDict

        accounts = LockedDict(alice=100, bob=0)
        with accounts.locked() as m:  # no other thread can read or write
            m["alice"] -= 30
            m["bob"] += 30
            total = sum(m.values())  # live iteration, no copy
        assert total == 100
        ```

        Inside the block, the guard `m` is a live `MutableMapping` over the
        dict's contents: no snapshot is copied, and other threads wait until
        the block ends.  Iterating `m` never fails, even when the block
        changes the dict meanwhile: an iterator shows the mapping as it was
        when the iterator was created.  Blocks that only read copy nothing;
        the first write made after an iterator was created copies the dict
        once (O(n)), and the iterator keeps the old contents.  The block is
        re-entrant: the owning thread may also
        call `d`'s own methods and nest `d.locked()`.  After the block, every
        use of `m` raises `RuntimeError`, so an escaped reference cannot touch
        the dict without the lock; so does using `m` from another thread.

        As with any lock, keep the block short, and if a thread holds two
        `locked()` blocks at once, take them in the same order everywhere.

        Returns:
            A guard to use in a `with` statement.
        """
        return LockedDictGuard(self)

    # --- compound atomic operations -----------------------------------------

    def get_or_set(self, key: K, factory: Callable[[], V], /) -> V:
        """Return `d[key]`, first setting it to `factory()` if it is absent.

        The check and the insertion are one atomic step: however many threads
        race for a missing key, `factory` is called once and every one of them
        gets the same value.  `factory` runs under the dict's lock (other
        threads wait; keep it short) and may read the dict but not change it.

        Args:
            key: The key.
            factory: Called with no arguments to create the missing value.

        Returns:
            The value now under `key`.

        Raises:
            TypeError: if `key` is unhashable, or `factory` is not callable.
            ValueError: if `factory` returns `MISSING`.
            RuntimeError: if called from a callback of this dict, or if
                `factory` tries to change this dict.
            Exception: whatever `factory` raises; nothing is inserted, and
                the next call for the key tries again.
        """
        given: object = factory  # typed callable, but checked at runtime
        if not callable(given):
            check_callable(given, "factory")
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._frozen:
                _refuse_mutation("get_or_set()")
            value = self._data.get(key, MISSING)
            if value is not MISSING:
                return value
            self._frozen = self._slow = True
            try:
                value = factory()
            finally:
                self._frozen = False
                self._slow = self._iterating
            if value is MISSING:
                raise ValueError(
                    "get_or_set() factory returned MISSING; return the value to "
                    "store (use compute() to decide whether to store one)"
                )
            self._store(key, value, "get_or_set()")
            return value
        finally:
            lock.release()

    def _store(self, key: K, new: V | Missing, operation: str) -> None:
        """Set `key` to `new`, or delete it for `MISSING`; call with the lock held."""
        if self._slow:  # a callback may have started a live iteration
            self._before_write(operation)
        if self._cache is not None:  # freed after the lock is released
            _stale, self._cache = self._cache, None
        if new is MISSING:
            self._data.pop(key, None)
        else:
            self._data[key] = new

    def compute(
        self, key: K, fn: Callable[[V | Missing], V | Missing], /
    ) -> V | Missing:
        """Atomically replace `d[key]` with `fn(d[key])`.

        `fn` receives the current value, or `MISSING` if the key is absent,
        and returns the new value, or `MISSING` to delete the key (or keep it
        absent).  The read, the call and the write are one atomic step:

        ```python
        from safethreads import MISSING, LockedDict

        counts: LockedDict[str, int] = LockedDict()
        counts.compute("a", lambda n: 1 if n is MISSING else n + 1)
        counts.compute("a", lambda n: 1 if n is MISSING else n + 1)
        assert counts["a"] == 2
        counts.compute("a", lambda n: MISSING)  # delete
        assert "a" not in counts
        ```

        For counters, `merge` is simpler; for changing only present keys,
        `compute_if_present`.  `fn` runs under the dict's lock (other threads
        wait; keep it short) and may read the dict but not change it.

        Args:
            key: The key.
            fn: Maps the current value (or `MISSING`) to the new one (or
                `MISSING`).

        Returns:
            What `fn` returned: the new value, or `MISSING` if the key is now
            absent.

        Raises:
            TypeError: if `key` is unhashable, or `fn` is not callable.
            RuntimeError: if called from a callback of this dict, or if `fn`
                tries to change this dict.
            Exception: whatever `fn` raises; the dict is left unchanged.
        """
        given: object = fn  # typed callable, but checked at runtime
        if not callable(given):
            check_callable(given, "fn")
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._frozen:
                _refuse_mutation("compute()")
            data = self._data
            current = data.get(key, MISSING)
            self._frozen = self._slow = True
            try:
                new = fn(current)
            finally:
                self._frozen = False
                self._slow = self._iterating
            if self._slow or self._cache is not None or new is MISSING:
                self._store(key, new, "compute()")
            else:  # the common case, inline
                data[key] = new
            return new
        finally:
            lock.release()

    def merge(self, key: K, value: V, fn: Callable[[V, V], V], /) -> V:
        """Atomically set `d[key]` to `value` if absent, else to `fn(d[key], value)`.

        The counting operation, as in Java's `ConcurrentHashMap.merge`:

        ```python
        import operator

        from safethreads import LockedDict

        hits: LockedDict[str, int] = LockedDict()
        hits.merge("home", 1, operator.add)  # absent: stores 1
        assert hits.merge("home", 1, operator.add) == 2  # present: 1 + 1
        assert hits.merge("home", 10, max) == 10
        ```

        `fn` is called only when the key is present, with the current value
        first, and exactly once per call: unlike a lock-free reduction, it
        need not be commutative, associative or free of side effects.  It runs
        under the dict's lock (other threads wait; keep it short) and may read
        the dict but not change it.  To delete a key depending on its value
        (a count that reaches zero), use `compute_if_present`.

        Args:
            key: The key.
            value: Stored as is if `key` is absent; otherwise the second
                argument of `fn`.
            fn: Combines the current value and `value` into the new value.

        Returns:
            The value now under `key`.

        Raises:
            TypeError: if `key` is unhashable, or `fn` is not callable.
            ValueError: if `value` is `MISSING`, or `fn` returns it.
            RuntimeError: if called from a callback of this dict, or if `fn`
                tries to change this dict.
            Exception: whatever `fn` raises; the dict is left unchanged.
        """
        # `fn` and `value` are checked where it matters, not up front: on a
        # counter's hot path an int is not MISSING, and a call to `fn` that
        # fails with TypeError is the check that `fn` is callable.
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            # The hot path of every counter, kept lean: the rare states are
            # tested before the call and after it (fn may cause them); the
            # shared snapshot, which a write just drops, after the write.
            data = self._data
            try:
                current = data[key]  # cheaper than get(); KeyError is rare
            except KeyError:  # absent (or a key's __eq__ raised KeyError)
                return self._merge_slowly(key, value, fn)
            if self._slow:
                return self._merge_slowly(key, value, fn)
            if fn is _add and type(current) is int and type(value) is int:
                # The counter: adding two ints runs no user code that could
                # reach this dict, so the guard flags below can stay down.
                data[key] = value = current + value  # type: ignore[operator]  # ints, tested above
                if self._cache is not None:  # freed after the lock is released
                    _stale, self._cache = self._cache, None
                return value
            rare = self._cache is not None or value is MISSING
            if rare:
                return self._merge_slowly(key, value, fn)
            self._frozen = self._slow = True
            try:
                value = fn(current, value)
            except TypeError:
                _check_fn(fn)  # not callable: say so; else fn's own error
                raise
            finally:
                self._frozen = False
                self._slow = self._iterating
            if self._slow or self._cache is not None or value is MISSING:
                return self._merged(key, value)
            data[key] = value
            return value
        finally:
            lock.release()

    def _merge_slowly(self, key: K, value: V, fn: Callable[[V, V], V]) -> V:
        """`merge` with every check; call with the lock held."""
        if value is MISSING:
            _refuse_missing("merge()")
        _check_fn(fn)
        if self._frozen:
            _refuse_mutation("merge()")
        current = self._data.get(key, MISSING)
        if current is not MISSING:
            self._frozen = self._slow = True
            try:
                value = fn(current, value)
            finally:
                self._frozen = False
                self._slow = self._iterating
        return self._merged(key, value)

    def _merged(self, key: K, new: V) -> V:
        """Store what `merge` computed; call with the lock held."""
        if new is MISSING:
            _refuse_missing("merge() function")
        self._store(key, new, "merge()")
        return new

    def compute_if_present(
        self, key: K, fn: Callable[[V], V | Missing], /
    ) -> V | Missing:
        """Atomically replace `d[key]` with `fn(d[key])` if `key` is present.

        `fn` is not called for an absent key, which stays absent; it returns
        the new value, or `MISSING` to delete the key:

        ```python
        from safethreads import MISSING, LockedDict

        stock = LockedDict(apples=2)
        assert stock.compute_if_present("apples", lambda n: n - 1) == 1
        assert stock.compute_if_present("pears", lambda n: n - 1) is MISSING
        stock.compute_if_present("apples", lambda n: n - 1 or MISSING)
        assert stock == {}
        ```

        `fn` runs under the dict's lock (other threads wait; keep it short)
        and may read the dict but not change it.

        Args:
            key: The key.
            fn: Maps the current value to the new one (or `MISSING`).

        Returns:
            The value now under `key`, or `MISSING` if the key is absent
            (it was, or `fn` deleted it).

        Raises:
            TypeError: if `key` is unhashable, or `fn` is not callable.
            RuntimeError: if called from a callback of this dict, or if `fn`
                tries to change this dict.
            Exception: whatever `fn` raises; the dict is left unchanged.
        """
        given: object = fn  # typed callable, but checked at runtime
        if not callable(given):
            check_callable(given, "fn")
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._frozen:
                _refuse_mutation("compute_if_present()")
            current = self._data.get(key, MISSING)
            if current is MISSING:
                return MISSING
            self._frozen = self._slow = True
            try:
                new = fn(current)
            finally:
                self._frozen = False
                self._slow = self._iterating
            self._store(key, new, "compute_if_present()")
            return new
        finally:
            lock.release()

    def remove_if(self, predicate: Callable[[K, V], object], /) -> list[tuple[K, V]]:
        """Atomically remove every item for which `predicate(key, value)` is true.

        The expiry loop, in one call that other threads see as one step:

        ```python
        import time

        from safethreads import LockedDict

        now = time.monotonic()
        deadlines = LockedDict(fresh=now + 60, stale=now - 1)
        expired = deadlines.remove_if(lambda key, deadline: deadline < now)
        assert expired == [("stale", now - 1)]
        assert list(deadlines) == ["fresh"]
        ```

        `predicate` is called once for every item, in insertion order, under
        the dict's lock (other threads wait; keep it short), and may read the
        dict but not change it.  Nothing is removed until it has seen every
        item, so if it raises (an exception, or a `KeyboardInterrupt`) the dict
        is left unchanged.  The removed items are returned rather than freed
        under the lock: release what they hold (close connections, ...) after
        the call.

        Args:
            predicate: Called as `predicate(key, value)`; a true result
                removes the item.

        Returns:
            The removed `(key, value)` pairs, in insertion order.

        Raises:
            TypeError: if `predicate` is not callable.
            RuntimeError: if called from a callback of this dict, or if
                `predicate` tries to change this dict.
            Exception: whatever `predicate`, or a key's `__hash__` or
                `__eq__`, raises; the dict is left unchanged.
        """
        given: object = predicate  # typed callable, but checked at runtime
        if not callable(given):
            check_callable(given, "predicate")
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._frozen:
                _refuse_mutation("remove_if()")
            data = self._data
            self._frozen = self._slow = True
            try:
                # No `if` in the loop: on CPython 3.12 and 3.13 the backward
                # jump of a skipped iteration lies outside the `try`, and a
                # Ctrl-C landing there would skip the `finally` clauses.
                chosen = [predicate(k, v) for k, v in data.items()]
                removed = list(compress(data.items(), chosen))  # runs __bool__
            finally:
                self._frozen = False
                self._slow = self._iterating
            if not removed:
                return removed
            # Remove from a copy and install it only when complete: a key's
            # __hash__ or __eq__ raising half-way leaves _data untouched, and
            # live iterators of a guard keep the old dict.
            kept = data.copy()
            for k, _ in removed:
                del kept[k]
            if self._cache is not None:  # freed after the lock is released
                _stale, self._cache = self._cache, None
            self._data = kept
            self._iterating = False
            self._slow = self._frozen
            return removed
        finally:
            lock.release()

    def compare_and_set(self, key: K, expected: V | Missing, new: V, /) -> bool:
        """Set `d[key] = new` if its current value is `expected`.

        Values match if they are the same object or compare equal (`==`), as
        `dict` compares values.  `expected=MISSING` means "only if `key` is
        absent".  The comparison runs under the lock, with the dict read-only.

        Args:
            key: The key.
            expected: The value `key` must have, or `MISSING` for absent.
            new: The value to store.

        Returns:
            Whether the value was set.

        Raises:
            TypeError: if `key` is unhashable.
            ValueError: if `new` is `MISSING` (use `compare_and_delete`).
            RuntimeError: if called from a callback of this dict.
            Exception: whatever the comparison raises; nothing is changed.
        """
        if new is MISSING:
            raise ValueError(
                "compare_and_set() needs a value to store, not MISSING; "
                "use compare_and_delete() to remove a key"
            )
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._frozen:
                _refuse_mutation("compare_and_set()")
            if not self._matches(self._data.get(key, MISSING), expected):
                return False
            self._store(key, new, "compare_and_set()")
            return True
        finally:
            lock.release()

    def compare_and_delete(self, key: K, expected: V, /) -> bool:
        """Delete `key` if its current value is `expected`.

        Values match as in `compare_and_set`.

        Args:
            key: The key.
            expected: The value `key` must have.

        Returns:
            Whether the key was deleted.

        Raises:
            TypeError: if `key` is unhashable.
            ValueError: if `expected` is `MISSING`.
            RuntimeError: if called from a callback of this dict.
            Exception: whatever the comparison raises; nothing is changed.
        """
        if expected is MISSING:
            raise ValueError(
                "compare_and_delete() needs the value to match, not MISSING; "
                "an absent key has nothing to delete"
            )
        lock = self._lock
        try:
            lock.acquire()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        try:
            if self._frozen:
                _refuse_mutation("compare_and_delete()")
            current = self._data.get(key, MISSING)
            if current is MISSING or not self._matches(current, expected):
                return False
            self._store(key, MISSING, "compare_and_delete()")
            return True
        finally:
            lock.release()

    def _matches(self, current: object, expected: object) -> bool:
        """Identity or equality, as dict compares values; call with the lock held."""
        if current is expected:
            return True
        if current is MISSING or expected is MISSING:
            return False
        self._frozen = self._slow = True
        try:
            return bool(current == expected)
        finally:
            self._frozen = False
            self._slow = self._iterating

    # --- comparison and operators --------------------------------------------

    def __eq__(self, other: object) -> bool:
        """Compare with a dict, a LockedDict or another mapping, as dict does.

        Both sides are snapshots (taken one after the other, never holding two
        locks at once) compared outside any lock; a dict compares equal to
        itself even while other threads change it.  A `dict` subclass with
        its own `__eq__` is given a private copy, never the shared snapshot.
        """
        if other is self:
            return True
        if isinstance(other, LockedDict):
            theirs: dict[Any, Any] = other._shared_snapshot()
        elif type(other) is dict:
            theirs = other
        elif isinstance(other, dict):
            # Python calls a subclass's reflected __eq__ first, with our side
            # as its argument: give it a copy that it may keep or change.
            return bool(self.snapshot() == other)
        elif isinstance(other, Mapping):
            theirs = dict(other.items())
        else:
            return NotImplemented
        # Two exact dicts: dict's own comparison, which hands neither away.
        return self._shared_snapshot() == theirs

    @overload
    def __or__(self, other: dict[K, V] | LockedDict[K, V], /) -> LockedDict[K, V]: ...
    @overload
    def __or__(
        self, other: dict[K2, V2] | LockedDict[K2, V2], /
    ) -> LockedDict[K | K2, V | V2]: ...
    def __or__(self, other: object, /) -> Any:
        """Return a new LockedDict with this dict's items, then `other`'s.

        Raises:
            ValueError: if a value of `other` is `MISSING`.
        """
        if isinstance(other, LockedDict):
            theirs: dict[Any, Any] = other._shared_snapshot()
        elif isinstance(other, dict):
            theirs = other if type(other) is dict else dict(other)
            _check_no_missing(theirs.values(), "|")
        else:
            return NotImplemented
        data: dict[Any, Any] = self.snapshot()
        data.update(theirs)
        return self._wrap(data)

    @overload
    def __ror__(self, other: dict[K, V], /) -> LockedDict[K, V]: ...
    @overload
    def __ror__(self, other: dict[K2, V2], /) -> LockedDict[K | K2, V | V2]: ...
    def __ror__(self, other: object, /) -> Any:
        """Return a new LockedDict with `other`'s items, then this dict's.

        Raises:
            ValueError: if a value of `other` is `MISSING`.
        """
        if not isinstance(other, dict):
            return NotImplemented
        data: dict[Any, Any] = dict(other)
        _check_no_missing(data.values(), "|")
        data.update(self._shared_snapshot())
        return self._wrap(data)

    # Like dict's: |= accepts more than | does, which type checkers flag.
    @overload  # type: ignore[misc]
    def __ior__(self, other: SupportsKeysAndGetItem[K, V], /) -> Self: ...
    @overload
    def __ior__(self, other: Iterable[tuple[K, V]], /) -> Self: ...
    def __ior__(self, other: Any, /) -> Self:  # type: ignore[misc]
        """Add `other`'s items atomically, as `update(other)` does.

        Raises:
            TypeError: if `other` is neither a mapping nor an iterable of pairs.
            RuntimeError: if called from a callback of this dict.
        """
        self.update(other)
        return self

    # --- representation, copying, pickling ------------------------------------

    @reprlib.recursive_repr("{...}")
    def __repr__(self) -> str:
        """Return `LockedDict({...})` with the items of a snapshot."""
        return f"LockedDict({self._shared_snapshot()!r})"

    def __copy__(self) -> LockedDict[K, V]:
        """Return a shallow copy (see `copy`)."""
        return self.copy()

    def __deepcopy__(self, memo: dict[int, Any]) -> LockedDict[K, V]:
        """Return a deep copy of a snapshot, with a lock of its own."""
        import copy as _copy  # noqa: PLC0415 - not imported by `import safethreads`

        new: LockedDict[K, V] = LockedDict()
        memo[id(self)] = new  # a dict that contains itself stays recursive
        new._data.update(
            (_copy.deepcopy(k, memo), _copy.deepcopy(v, memo))
            for k, v in self._shared_snapshot().items()
        )
        return new

    def __reduce__(
        self,
    ) -> tuple[type[LockedDict[K, V]], tuple[()], None, None, Iterator[tuple[K, V]]]:
        """Pickle the items of a snapshot; the unpickled dict gets a new lock."""
        return (LockedDict, (), None, None, iter(self._shared_snapshot().items()))

    def _check(self) -> None:
        """Assert the invariants (for tests)."""
        lock = self._lock
        assert lock.acquire(timeout=10), "the lock is stuck"
        try:
            frozen, iterating, slow = self._frozen, self._iterating, self._slow
            assert slow == (frozen or iterating), "_slow is out of step"
            assert type(self._data) is dict
            assert not frozen, "a callback flag outlived its callback"
            assert not any(v is MISSING for v in self._data.values())
            cache = self._cache
            if cache is not None:  # the shared snapshot is still current
                assert cache is not self._data
                assert list(cache.items()) == list(self._data.items())
        finally:
            lock.release()


@final
class LockedDictGuard(MutableMapping[K, V], Generic[K, V]):
    """Exclusive, live access to a `LockedDict` inside `with d.locked() as m:`.

    Made by `LockedDict.locked()`.  Entering it takes the dict's lock; leaving
    it releases the lock.  In between, `m` is a `MutableMapping` over the
    dict's contents, without copies: reads, writes and iteration (`iter(m)`,
    `m.items()`, ...) act on the live dict, which no other thread can touch
    until the block ends.

    Iteration never fails, even if the block changes the dict while it
    iterates (`for k, v in m.items(): if stale(v): del m[k]`): an iterator
    shows the mapping as it was when it was created.  A block that only reads
    copies nothing; the first write after an iterator was created copies the
    dict once, and the iterator keeps the old contents.

    A guard is good for one block, in the thread that entered it: using it
    before the block, after it, or from another thread raises `RuntimeError`,
    and it cannot be pickled or copied (`TypeError`).  (A guard of a block
    nested in another keeps working until the outer block ends, as the thread
    still holds the lock.)  Views and iterators it hands out belong to the
    block too; do not keep them past it.

    Leaving the block releases the lock even if Ctrl-C lands at that moment:
    the release is done by C code that a signal cannot interrupt.

    Args:
        owner: The dict to guard.
    """

    __slots__ = ("_count", "_entered", "_level", "_owner", "_thread")

    def __init__(self, owner: LockedDict[K, V]) -> None:
        """Prepare a guard for `owner`; the lock is taken by `__enter__`."""
        self._owner = owner
        # The guard works while the calling thread holds the owner's lock at
        # least `_level` times: from its entry to its exit, in the thread
        # that entered (`_recursion_count()` is 0 in other threads), and in
        # no other block (after the exit of a block nested in another, the
        # thread holds the lock one time fewer).  Never before the entry.
        self._count: Callable[[], int] = owner._lock._recursion_count
        self._level = _NEVER
        # The ident of the thread that entered the block (for messages).
        self._thread: int | None = None
        self._entered = False

    def __enter__(self) -> Self:
        """Take the dict's lock (waiting for it) and return the live guard.

        Raises:
            RuntimeError: if this guard has already been entered.
        """
        if self._entered:
            raise RuntimeError(
                "a LockedDict guard serves one 'with' block; "
                "call d.locked() again for another"
            )
        ident = _get_ident()
        lock = self._owner._lock
        try:
            lock.acquire()
            level = self._count()
        except BaseException:  # Ctrl-C: see the module docstring
            try:  # noqa: SIM105 - suppress() would run Python code first
                lock.release()  # it landed after the lock was taken
            except RuntimeError:  # it interrupted the wait: not taken
                pass
            raise
        # Nothing below can be interrupted: no call, no loop.
        self._entered = True
        self._thread = ident
        self._level = level
        if level == 1:
            # The outermost block: the iterators of earlier blocks are dead
            # (they must not be kept past their block), and no callback runs.
            owner = self._owner
            owner._iterating = owner._slow = False
        return self

    if TYPE_CHECKING:

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None:
            """Release the dict's lock; the guard is unusable from now on."""

    else:
        # Not a Python method: a Ctrl-C pending when the block ends would be
        # raised as such a method starts, before it released anything.  `with`
        # looks __exit__ up before entering the block, and gets the lock's
        # own C-level __exit__ through C code only (a property whose getter
        # is a C attrgetter), so nothing can run between the block's end and
        # the release.  Nothing else needs undoing: the guard works only
        # while its thread holds the lock, and the live-iteration flag is
        # cleared by the next write.
        __exit__ = property(
            operator.attrgetter("_owner._lock.__exit__"),
            doc="Release the dict's lock; the guard is unusable from now on.",
        )

    def __reduce_ex__(self, protocol: SupportsIndex, /) -> NoReturn:
        """Refuse pickling: a guard stands for a lock held by one thread."""
        raise TypeError(_NOT_PORTABLE)

    def __copy__(self) -> NoReturn:
        """Refuse copying: a guard stands for a lock held by one thread."""
        raise TypeError(_NOT_PORTABLE)

    def __deepcopy__(self, memo: dict[int, Any]) -> NoReturn:
        """Refuse copying: a guard stands for a lock held by one thread."""
        raise TypeError(_NOT_PORTABLE)

    def _live(self) -> dict[K, V]:
        """Return the live dict if the caller may use it, else raise."""
        if self._count() < self._level:
            self._refuse()
        return self._owner._data

    def _iterable(self) -> dict[K, V]:
        """Like `_live`, for handing out an iterator: later writes copy first."""
        if self._count() < self._level:
            self._refuse()
        owner = self._owner
        owner._iterating = owner._slow = True
        return owner._data

    def _writable(self, operation: str) -> dict[K, V]:
        """Prepare a write (see `LockedDict._before_write`); return the dict."""
        if self._count() < self._level:
            self._refuse()
        owner = self._owner
        if owner._slow:
            owner._before_write(operation, held=0)
        if owner._cache is not None:  # freed when the block ends
            owner._cache = None
        return owner._data

    def _refuse(self) -> NoReturn:
        if not self._entered:
            raise RuntimeError(
                "this LockedDict guard is not active yet; use it inside "
                "'with d.locked() as m:'"
            )
        if self._thread == _get_ident():
            raise RuntimeError(
                "this LockedDict guard was used after its 'with d.locked()' "
                "block ended; use it only inside the block, or use the "
                "LockedDict itself"
            )
        raise RuntimeError(
            "this LockedDict guard belongs to the thread that entered "
            "'with d.locked()'; other threads must use the LockedDict itself"
        )

    def __getitem__(self, key: K, /) -> V:
        """Return `m[key]`.

        Raises:
            KeyError: if `key` is not in the dict.
            RuntimeError: if used outside its block or from another thread.
        """
        if self._count() < self._level:  # _live(), inlined: the hot path
            self._refuse()
        return self._owner._data[key]

    def __setitem__(self, key: K, value: V, /) -> None:
        """Set `m[key] = value`.

        Raises:
            ValueError: if `value` is `MISSING`.
            RuntimeError: if used outside its block, from another thread, or
                from a callback of the dict.
        """
        if value is MISSING:
            _refuse_missing("m[key] = value")
        owner = self._owner
        if self._count() < self._level:  # _writable(), inlined: the hot path
            self._refuse()
        if owner._slow:
            owner._before_write("m[key] = value", held=0)
        owner._cache = None
        owner._data[key] = value

    def __delitem__(self, key: K, /) -> None:
        """Delete `m[key]`.

        Raises:
            KeyError: if `key` is not in the dict.
            RuntimeError: if used outside its block, from another thread, or
                from a callback of the dict.
        """
        del self._writable("del m[key]")[key]

    def __contains__(self, key: object, /) -> bool:
        """Return whether `key` is in the dict.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        if self._count() < self._level:  # _live(), inlined: the hot path
            self._refuse()
        return key in self._owner._data

    def __len__(self) -> int:
        """Return the number of items.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        return len(self._live())

    def __iter__(self) -> Iterator[K]:
        """Iterate over the keys, as they are now.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        return iter(self._iterable())

    def __reversed__(self) -> Iterator[K]:
        """Iterate over the keys, as they are now, newest first.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        return reversed(self._iterable())

    def keys(self) -> KeysView[K]:
        """Return a live view of the keys, usable inside the block.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        self._live()
        return _GuardKeys(self)

    def values(self) -> ValuesView[V]:
        """Return a live view of the values, usable inside the block.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        self._live()
        return _GuardValues(self)

    def items(self) -> ItemsView[K, V]:
        """Return a live view of the items, usable inside the block.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        self._live()
        return _GuardItems(self)

    @overload
    def get(self, key: K, default: None = None, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V, /) -> V: ...
    @overload
    def get(self, key: K, default: T, /) -> V | T: ...
    def get(self, key: K, default: Any = None, /) -> Any:
        """Return `m[key]` if `key` is in the dict, else `default`.

        Raises:
            RuntimeError: if used outside its block or from another thread.
        """
        if self._count() < self._level:  # _live(), inlined: the hot path
            self._refuse()
        return self._owner._data.get(key, default)

    def popitem(self) -> tuple[K, V]:
        """Remove and return the most recently inserted pair, as dict does.

        Raises:
            KeyError: if the dict is empty.
            RuntimeError: if used outside its block, from another thread, or
                from a callback of the dict.
        """
        return self._writable("popitem()").popitem()

    def clear(self) -> None:
        """Remove every item.

        Raises:
            RuntimeError: if used outside its block, from another thread, or
                from a callback of the dict.
        """
        self._live()
        self._owner.clear()

    def __repr__(self) -> str:
        """Show the contents while active; never raises."""
        if self._count() >= self._level:
            return f"LockedDictGuard({self._owner._data!r})"
        return "<LockedDictGuard (inactive)>"


_NOT_PORTABLE: Final = (
    "a LockedDict guard cannot be pickled or copied: it stands for the lock "
    "held by one thread inside one 'with d.locked()' block; pickle or copy "
    "the LockedDict, or m's items, instead"
)


class _GuardKeys(KeysView[K]):
    """Live keys of a guard; every use checks that the guard is active."""

    __slots__ = ()
    _mapping: LockedDictGuard[K, Any]

    def __iter__(self) -> Iterator[K]:
        return iter(self._mapping._iterable())

    def __reversed__(self) -> Iterator[K]:
        return reversed(self._mapping._iterable())


class _GuardValues(ValuesView[V]):
    """Live values of a guard; every use checks that the guard is active."""

    __slots__ = ()
    _mapping: LockedDictGuard[Any, V]

    def __iter__(self) -> Iterator[V]:
        return iter(self._mapping._iterable().values())

    def __reversed__(self) -> Iterator[V]:
        return reversed(self._mapping._iterable().values())

    def __contains__(self, value: object) -> bool:
        # Iterates while the values' __eq__ runs: a write it makes must copy.
        return value in self._mapping._iterable().values()


class _GuardItems(ItemsView[K, V]):
    """Live items of a guard; every use checks that the guard is active."""

    __slots__ = ()
    _mapping: LockedDictGuard[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        return iter(self._mapping._iterable().items())

    def __reversed__(self) -> Iterator[tuple[K, V]]:
        return reversed(self._mapping._iterable().items())

    def __contains__(self, item: object) -> bool:
        live = self._mapping._live().items()
        return isinstance(item, tuple) and item in live
