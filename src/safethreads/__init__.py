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

import typing as _typing

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
from ._thread_group import ThreadGroup
from ._worker_pool import OnFull, WorkerPool

if _typing.TYPE_CHECKING:
    from ._stats import ThreadGroupStats, WorkerPoolStats

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

# Tracebacks, reprs and pickles name the public path, not the private module.
for _name in __all__:
    if _name in globals():
        globals()[_name].__module__ = __name__
del _name


def __getattr__(name: str) -> object:
    """Load the names that are costly to import on first access (PEP 562)."""
    if name in ("WorkerPoolStats", "ThreadGroupStats"):
        from . import _stats  # noqa: PLC0415 - slow to import

        found_class: type = getattr(_stats, name)
        globals()[name] = found_class
        return found_class
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
