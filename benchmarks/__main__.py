"""`python -m benchmarks [NAME ...]`: run the benchmark suite."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import platform
import sys

import benchmarks


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
    args = parser.parse_args()
    print(f"## safethreads benchmarks on CPython {platform.python_version()}")
    print(f"\n{platform.platform()}, {platform.machine()}")
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(f"GIL {'enabled' if gil else 'disabled'}; medians of {args.rounds} rounds")
    for name in args.names or names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        module.run(args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
