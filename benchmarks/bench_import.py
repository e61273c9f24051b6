"""The cost of `import safethreads` against `import concurrent.futures`.

Every sample is one fresh interpreter that times its own import of the module
(so interpreter start-up is not counted), in CPU time: on a shared machine
the wall-clock time of a 10 ms import is mostly other processes' turns.

The interpreters run isolated (`-I`), which also lets them write bytecode
caches: the first, unrecorded round compiles the package once, as
`pip install` does, and the recorded rounds load it from `__pycache__` like
the standard library.  The two
modules alternate, so that load on the machine hits both alike.
"""

from __future__ import annotations

import subprocess
import sys

from ._harness import Result, progress, report

# The goal set in issue 14: at most this many times the standard library's.
TARGET_RATIO = 1.5

# Each public name loads its module on first access: the last row is what a
# program using all four primitives pays.
MODULES = (
    "concurrent.futures",
    "safethreads",
    "from safethreads import spawn",
    "from safethreads import WorkerPool",
    "from safethreads import ResultThread, LockedDict, ThreadGroup, WorkerPool",
)

_CHILD = """\
import time
start = time.process_time()
{statement}
print(time.process_time() - start)
"""


def import_seconds(module: str) -> float:
    """CPU seconds a fresh, isolated interpreter takes to import `module`."""
    statement = module if module.startswith("from ") else f"import {module}"
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed snippet
        [sys.executable, "-I", "-c", _CHILD.format(statement=statement)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout)


def measure_imports(runs: int) -> list[Result]:
    """Import each module in `runs` fresh interpreters, alternating."""
    for module in MODULES:  # warm-up: compile and cache the bytecode
        import_seconds(module)
    samples: dict[str, list[float]] = {m: [] for m in MODULES}
    for r in range(runs):
        order = MODULES if r % 2 == 0 else MODULES[::-1]
        for module in order:
            samples[module].append(import_seconds(module))
        progress(".")
    return [
        Result(m if m.startswith("from ") else f"import {m}", tuple(samples[m]))
        for m in MODULES
    ]


def run(rounds: int) -> None:
    """Import time, median of fresh interpreters, beside the stdlib's."""
    runs = max(rounds, 21)
    results = measure_imports(runs)
    report(
        f"Import CPU time in a fresh interpreter (median of {runs})",
        results,
        unit="import",
    )
    ratio = results[1].median / results[0].median
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"\nGoal: at most {TARGET_RATIO}× `import concurrent.futures`: {verdict}.")
    every = results[-1].median / results[0].median
    print(f"All four primitives: {every:.2f}× `import concurrent.futures`.")
