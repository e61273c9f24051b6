"""The tour shown by `python -m safethreads`: each primitive solving its problem."""

from __future__ import annotations

import argparse
import threading
import time
from typing import TYPE_CHECKING

from ._result_thread import ResultThread, spawn
from ._thread_group import ThreadGroup

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._cancel import CancelToken

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


def _thread_group_tour() -> None:
    _heading("ThreadGroup: no thread outlives its block, no failure is lost")

    def download(name: str, token: CancelToken) -> str:
        if name == "broken.txt":
            msg = f"{name}: connection reset"
            raise ConnectionError(msg)
        # A slow download that checks the token while it waits.
        if token.wait(timeout=5):
            token.raise_if_cancelled()
        return f"{name}: done"

    g = ThreadGroup("download")
    try:
        with g:
            for name in ["a.txt", "b.txt", "broken.txt"]:
                g.spawn(download, name, g.token)
    except* ConnectionError as group:
        for exc in group.exceptions:
            print(f"raised at the end of the block: {exc!r}, {exc.__notes__[-1]}")
    print(f"the failure cancelled the siblings: {g.token.reason}")
    alive = [t.name for t in g.members if t.is_alive()]
    print(f"members still running after the block: {alive}")

    _heading("ThreadGroup: one deadline for all members")
    release = threading.Event()
    with ThreadGroup("stuck") as g:
        for _ in range(20):
            g.spawn(release.wait)
        start = time.monotonic()
        finished = g.join_all(timeout=0.2)
        elapsed = time.monotonic() - start
        release.set()
    print(f"join_all(0.2) over 20 stuck threads -> {finished} after {elapsed:.2f} s")
    print("  (a loop of Thread.join(0.2) would have taken 20 x 0.2 = 4 s)")


_SECTIONS: dict[str, Callable[[], None]] = {
    "thread": _result_thread_tour,
    "group": _thread_group_tour,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tour; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m safethreads",
        description="A short tour of safethreads: each primitive solving the "
        "problem it exists for.",
    )
    parser.add_argument(
        "sections",
        nargs="*",
        choices=[*_SECTIONS, []],
        metavar="SECTION",
        help=f"parts of the tour to show (default: all of {', '.join(_SECTIONS)})",
    )
    args = parser.parse_args(argv)
    for name in args.sections or _SECTIONS:
        _SECTIONS[name]()
    print()
    return 0
