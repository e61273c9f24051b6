"""The harness lives in the package so that `python -m safethreads bench` has it."""

from safethreads._benchmark import (
    RECORDED,
    Case,
    Result,
    compare,
    format_time,
    measure,
    progress,
    report,
    table,
)

__all__ = [
    "RECORDED",
    "Case",
    "Result",
    "compare",
    "format_time",
    "measure",
    "progress",
    "report",
    "table",
]
