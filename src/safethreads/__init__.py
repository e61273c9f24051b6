"""Typed, safe and fast building blocks for Python threads."""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from ._errors import BrokenWorkerPool, PoolFull
from ._result_thread import ResultThread, spawn
from ._worker_pool import WorkerPool, WorkerPoolStats

try:
    __version__ = _version("safethreads")
except _PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0+unknown"

__all__ = (
    "BrokenWorkerPool",
    "PoolFull",
    "ResultThread",
    "WorkerPool",
    "WorkerPoolStats",
    "spawn",
)

# Tracebacks, reprs and pickles name the public path, not the private module.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
