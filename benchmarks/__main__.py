"""`python -m benchmarks [NAME ...]`: run the benchmark suite."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
from pathlib import Path

import benchmarks
from safethreads import _benchmark as _harness


def main() -> int:
    """Run the selected benchmarks and print their tables."""
    names = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", choices=[*names, []], metavar="NAME")
    parser.add_argument("--rounds", type=int, default=9, help="rounds per case")
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as JSON to PATH"
    )
    args = parser.parse_args()
    print(f"## safethreads benchmarks on CPython {platform.python_version()}")
    print(f"\n{platform.platform()}, {platform.machine()}")
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"GIL {'enabled' if gil else 'disabled'}; medians of {args.rounds} rounds")
    for name in args.names or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        module.run(args.rounds)
    if args.json:
        meta = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "rounds": args.rounds,
        }
        with Path(args.json).open("w") as f:
            json.dump({"meta": meta, "comparisons": _harness.RECORDED}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
