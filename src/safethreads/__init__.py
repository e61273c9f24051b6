"""Typed, safe and fast building blocks for Python threads."""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

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
from ._result_thread import ResultThread, spawn
from ._thread_group import ThreadGroup
from ._worker_pool import WorkerPool, WorkerPoolStats

try:
    __version__ = _version("safethreads")
except _PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0+unknown"

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
    "PoolFull",
    "ResultStream",
    "ResultThread",
    "ThreadGroup",
    "WorkerPool",
    "WorkerPoolStats",
    "executor_imap_unordered",
    "executor_map",
    "spawn",
    "submit_task",
)

# Tracebacks, reprs and pickles name the public path, not the private module.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
