"""Typed, safe and fast building blocks for Python threads.

The four primitives, each a drop-in for the standard library piece it
improves on:

- `ResultThread` and `spawn`: a `threading.Thread` whose target's return
  value, or exception, comes back to whoever calls `result()`.
- `LockedDict`: a mapping to share between threads; every operation is
  atomic, iteration never fails under concurrent writes, and `get_or_set`,
  `compute` and `with d.locked():` transactions are built in.
- `ThreadGroup` and `CancelToken`: a `with` block whose threads do not
  outlive it, waited for under one deadline, with every failure raised in an
  `ExceptionGroup`; the token tells the siblings to stop.
- `WorkerPool`: a faster `concurrent.futures.Executor` with backpressure
  (`max_pending`, `on_full`), a lazy bounded `map` and `imap_unordered`.

A thread that returns its result, and a pool:

>>> from safethreads import WorkerPool, spawn
>>> spawn(sum, [1, 2, 3]).result(timeout=5)
6
>>> with WorkerPool(max_workers=2) as pool:
...     list(pool.map(abs, [-1, -2, 3]))
[1, 2, 3]

Documentation: https://safethreads.readthedocs.io (the guide, the
thread-safety guarantees and the API reference); `python -m safethreads` runs
a short tour.
"""

import _thread
import os as _os
import sys as _sys

# Not `typing.TYPE_CHECKING`: importing `typing` costs more than the rest of
# `import safethreads`; type checkers treat this name alike.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._cancel import CancelToken
    from ._errors import BrokenWorkerPool, Cancelled, PoolFull
    from ._fanout import (
        BoundedExecutor,
        FutureGroup,
        ResultStream,
        executor_imap_unordered,
        executor_map,
        submit_task,
    )
    from ._locked_dict import MISSING, LockedDict, LockedDictGuard, Missing
    from ._observe import RunningTask, TaskInfo
    from ._result_thread import ResultThread, spawn
    from ._stats import ThreadGroupStats, WorkerPoolStats
    from ._thread_group import ThreadGroup
    from ._worker_pool import OnFull, WorkerPool
del TYPE_CHECKING

# Plain sorted() order (checked by the tests), not isort order.
__all__ = (  # noqa: RUF022 - plain sorted() order, checked by tests/test_api.py
    "BoundedExecutor",
    "BrokenWorkerPool",
    "CancelToken",
    "Cancelled",
    "FutureGroup",
    "LockedDict",
    "LockedDictGuard",
    "MISSING",
    "Missing",
    "OnFull",
    "PoolFull",
    "ResultStream",
    "ResultThread",
    "RunningTask",
    "TaskInfo",
    "ThreadGroup",
    "ThreadGroupStats",
    "WorkerPool",
    "WorkerPoolStats",
    "executor_imap_unordered",
    "executor_map",
    "spawn",
    "submit_task",
)

# The installed version; read from the package metadata on first access,
# because `importlib.metadata` costs more to import than the whole package.
__version__: str

# Where each public name is defined.  A name's module is imported on first
# access (PEP 562), so `import safethreads` stays cheap for programs that use
# one primitive, or none yet: a threading utility is imported everywhere.
_HOMES: dict[str, str] = {
    "BoundedExecutor": "_fanout",
    "BrokenWorkerPool": "_errors",
    "CancelToken": "_cancel",
    "Cancelled": "_errors",
    "FutureGroup": "_fanout",
    "LockedDict": "_locked_dict",
    "LockedDictGuard": "_locked_dict",
    "MISSING": "_locked_dict",
    "Missing": "_locked_dict",
    "OnFull": "_worker_pool",
    "PoolFull": "_errors",
    "ResultStream": "_fanout",
    "ResultThread": "_result_thread",
    "RunningTask": "_observe",
    "TaskInfo": "_observe",
    "ThreadGroup": "_thread_group",
    "ThreadGroupStats": "_stats",
    "WorkerPool": "_worker_pool",
    "WorkerPoolStats": "_stats",
    "executor_imap_unordered": "_fanout",
    "executor_map": "_fanout",
    "spawn": "_result_thread",
    "submit_task": "_fanout",
}


_ABSENT = object()

# First accesses import one at a time.  Threads racing to import the same
# modules (ours, and the standard library's they import) can be handed a
# partly initialised module by CPython's import-deadlock avoidance: on 3.13.0
# about 3 runs in 100 of the racing-import test failed with ImportError or
# AttributeError from `typing` or `collections.abc`.  Reentrant: one lazy
# import may trigger another.
_loading = _thread.RLock()


def _fresh_loading_lock() -> None:
    """In a forked child: a thread importing at the fork held the lock."""
    global _loading  # noqa: PLW0603 - replaced, not shared with the parent
    _loading = _thread.RLock()


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_fresh_loading_lock)


def _publish_loaded() -> None:
    """Bind every public name whose module is loaded, under the public path.

    Run after each lazy import: modules import each other, so one access can
    load several.  Tracebacks, reprs and pickles then name `safethreads`,
    not the private module.  Idempotent, so racing first accesses agree.
    """
    namespace = globals()
    for name, home in _HOMES.items():
        if name in namespace:
            continue
        module = _sys.modules.get(f"{__name__}.{home}")
        # Another thread may be importing it: a name not yet defined is
        # bound by a later access.
        value = getattr(module, name, _ABSENT)
        if value is not _ABSENT:
            value.__module__ = __name__
            namespace[name] = value


def __getattr__(name: str) -> object:
    """Load a public name's module on first access (PEP 562)."""
    home = _HOMES.get(name)
    if home is not None:
        with _loading:
            __import__(f"{__name__}.{home}")
            _publish_loaded()
        return globals()[name]
    if name == "__version__":
        from importlib.metadata import (  # noqa: PLC0415 - slow to import
            PackageNotFoundError,
            version,
        )

        try:
            found = version("safethreads")
        except PackageNotFoundError:  # pragma: no cover - a bare source tree
            found = "0+unknown"
        globals()[name] = found
        return found
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "__version__"})
