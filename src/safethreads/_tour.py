"""The tour shown by `python -m safethreads`: each primitive solving its problem."""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING

from ._result_thread import ResultThread, spawn

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main"]


def _heading(title: str) -> None:
    print(f"\n== {title}")


def _result_thread_tour() -> None:
    _heading("ResultThread: a thread that returns a value")

    def total(numbers: list[int]) -> int:
        return sum(numbers)

    plain_results: list[int] = []
    plain = threading.Thread(target=lambda: plain_results.append(total([1, 2, 3])))
    plain.start()
    plain.join()
    print("threading.Thread.join() returns None; the value needs a hand-made")
    print(f"  side channel: {plain_results}")

    t = spawn(total, [1, 2, 3])
    print(f"spawn(total, [1, 2, 3]).result() -> {t.result(timeout=5)}")

    _heading("ResultThread: an exception reaches the caller")

    def parse(text: str) -> int:
        return int(text)

    failing = spawn(parse, "forty-two")
    try:
        failing.result(timeout=5)
    except ValueError as exc:
        print(f"caught in the caller: {type(exc).__name__}: {exc}")
        print(f"  with the note: {exc.__notes__[-1]}")

    _heading("ResultThread: the class-based way")

    class Countdown(ResultThread[list[int]]):
        def __init__(self, start: int) -> None:
            super().__init__(name="countdown")
            self.start_at = start

        def compute(self) -> list[int]:
            return list(range(self.start_at, 0, -1))

    countdown = Countdown(5)
    countdown.start()
    print(f"Countdown(5).result() -> {countdown.result(timeout=5)}")


_SECTIONS: dict[str, Callable[[], None]] = {
    "thread": _result_thread_tour,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour or the quick benchmark; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m safethreads",
        description="A short tour of safethreads: each primitive solving the "
        "problem it exists for. Without a command, the whole tour runs.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    tour = commands.add_parser("tour", help="walk through the primitives (default)")
    tour.add_argument(
        "sections",
        nargs="*",
        choices=[*_SECTIONS, []],
        metavar="SECTION",
        help=f"parts of the tour to show (default: all of {', '.join(_SECTIONS)})",
    )
    bench = commands.add_parser(
        "bench", help="compare each primitive with the standard library, same run"
    )
    bench.add_argument(
        "--rounds", type=int, default=5, help="rounds per case (default: 5)"
    )
    args = parser.parse_args(argv)
    if args.command == "bench":
        from ._benchmark import quick_suite  # noqa: PLC0415 - not needed otherwise

        print("Median per operation over interleaved rounds; ratios vs the stdlib")
        quick_suite(args.rounds)
        return 0
    for name in getattr(args, "sections", None) or _SECTIONS:
        _SECTIONS[name]()
    print()
    return 0
